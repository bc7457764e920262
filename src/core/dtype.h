// Element types. Packed sub-byte types (int4, fp4-e2m1) store two values per byte, low nibble
// first; tensors of them must have an even innermost dimension.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace omnirt {

enum class DType : uint8_t {
  F64,
  F32,
  F16,
  BF16,
  F8E4M3,
  I64,
  I32,
  I16,
  I8,
  U8,
  Bool,
  I4,       // packed, 2 per byte, signed two's complement
  FP4E2M1,  // packed, 2 per byte
};

// Bits per element (4 for the packed types).
int dtype_bits(DType t);
// Name as used in safetensors headers ("F32", "BF16", "F8_E4M3", ...), plus "I4"/"F4_E2M1"
// which are omnirt extensions for packed engine weights.
std::string_view dtype_name(DType t);
std::optional<DType> dtype_from_name(std::string_view name);
bool dtype_is_packed(DType t);
bool dtype_is_float(DType t);
// Bytes for n logical elements (rounded up for packed types).
size_t dtype_nbytes(DType t, int64_t n);

// Scalar conversions used by CPU reference code and tests.
float half_to_float(uint16_t h);
uint16_t float_to_half(float f);  // round to nearest even
float bf16_to_float(uint16_t h);
uint16_t float_to_bf16(float f);  // round to nearest even
float fp8e4m3_to_float(uint8_t v);
uint8_t float_to_fp8e4m3(float f);  // round to nearest even, saturate to +-448
float fp4e2m1_to_float(uint8_t nibble);
uint8_t float_to_fp4e2m1(float f);  // round to nearest even, saturate to +-6

}  // namespace omnirt
