#include "core/dtype.h"

#include <cmath>
#include <cstring>

#include "core/error.h"

namespace omnirt {

namespace {
struct DTypeInfo {
  DType type;
  std::string_view name;
  int bits;
  bool is_float;
};
constexpr DTypeInfo kInfo[] = {
    {DType::F64, "F64", 64, true},         {DType::F32, "F32", 32, true},
    {DType::F16, "F16", 16, true},         {DType::BF16, "BF16", 16, true},
    {DType::F8E4M3, "F8_E4M3", 8, true},   {DType::I64, "I64", 64, false},
    {DType::I32, "I32", 32, false},        {DType::I16, "I16", 16, false},
    {DType::I8, "I8", 8, false},           {DType::U8, "U8", 8, false},
    {DType::Bool, "BOOL", 8, false},       {DType::I4, "I4", 4, false},
    {DType::FP4E2M1, "F4_E2M1", 4, true},
};
const DTypeInfo& info(DType t) {
  for (const auto& i : kInfo)
    if (i.type == t) return i;
  OMNIRT_FAIL("unknown dtype id ", static_cast<int>(t));
}
}  // namespace

int dtype_bits(DType t) { return info(t).bits; }
std::string_view dtype_name(DType t) { return info(t).name; }
bool dtype_is_packed(DType t) { return info(t).bits < 8; }
bool dtype_is_float(DType t) { return info(t).is_float; }

std::optional<DType> dtype_from_name(std::string_view name) {
  for (const auto& i : kInfo)
    if (i.name == name) return i.type;
  return std::nullopt;
}

size_t dtype_nbytes(DType t, int64_t n) {
  return (static_cast<size_t>(n) * static_cast<size_t>(dtype_bits(t)) + 7) / 8;
}

float half_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1f;
  const uint32_t mant = h & 0x3ff;
  uint32_t bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: value = mant * 2^-24
      float f = std::ldexp(static_cast<float>(mant), -24);
      std::memcpy(&bits, &f, 4);
      bits |= sign;
    }
  } else if (exp == 31) {
    bits = sign | 0x7f800000u | (mant << 13);
  } else {
    bits = sign | ((exp + 112) << 23) | (mant << 13);
  }
  float out;
  std::memcpy(&out, &bits, 4);
  return out;
}

uint16_t float_to_half(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
  const uint32_t absx = x & 0x7fffffffu;
  if (absx >= 0x7f800000u) {  // inf or nan
    return sign | 0x7c00u | (absx > 0x7f800000u ? 0x200u : 0u);
  }
  if (absx >= 0x477ff000u) return sign | 0x7c00u;  // rounds to >= 65520 -> inf
  if (absx < 0x38800000u) {                         // below smallest normal half (2^-14)
    // subnormal half: round(|f| * 2^24) with ties to even
    float a;
    std::memcpy(&a, &absx, 4);
    float scaled = a * 16777216.0f;  // exact (power of two)
    float r = std::nearbyint(scaled);  // default rounding mode: nearest even
    return sign | static_cast<uint16_t>(r);
  }
  uint32_t mant = absx & 0x7fffffu;
  uint32_t exp = (absx >> 23) - 112;
  uint32_t half = (exp << 10) | (mant >> 13);
  uint32_t rem = mant & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (half & 1u))) ++half;
  return sign | static_cast<uint16_t>(half);
}

float bf16_to_float(uint16_t h) {
  uint32_t bits = static_cast<uint32_t>(h) << 16;
  float out;
  std::memcpy(&out, &bits, 4);
  return out;
}

uint16_t float_to_bf16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((x >> 16) | 0x40u);  // nan
  uint32_t rounding = 0x7fffu + ((x >> 16) & 1u);
  return static_cast<uint16_t>((x + rounding) >> 16);
}

float fp8e4m3_to_float(uint8_t v) {
  const float sign = (v & 0x80) ? -1.0f : 1.0f;
  const int exp = (v >> 3) & 0xf;
  const int mant = v & 0x7;
  if (exp == 0xf && mant == 0x7) return NAN;
  if (exp == 0) return sign * std::ldexp(static_cast<float>(mant), -9);
  return sign * std::ldexp(1.0f + static_cast<float>(mant) / 8.0f, exp - 7);
}

uint8_t float_to_fp8e4m3(float f) {
  if (std::isnan(f)) return 0x7f;
  const uint8_t sign = std::signbit(f) ? 0x80 : 0x00;
  float a = std::fabs(f);
  if (a >= 448.0f) return sign | 0x7e;  // saturate (the e4m3fn convention used by cuBLASLt)
  // Search the 127 non-negative finite codes for the nearest, ties to even code.
  uint8_t best = 0;
  float best_err = INFINITY;
  for (uint8_t c = 0; c <= 0x7e; ++c) {
    float err = std::fabs(fp8e4m3_to_float(c) - a);
    if (err < best_err || (err == best_err && (c & 1) == 0)) {
      best_err = err;
      best = c;
    }
  }
  return sign | best;
}

float fp4e2m1_to_float(uint8_t nibble) {
  static constexpr float kValues[8] = {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f};
  const float v = kValues[nibble & 0x7];
  return (nibble & 0x8) ? -v : v;
}

uint8_t float_to_fp4e2m1(float f) {
  const uint8_t sign = std::signbit(f) ? 0x8 : 0x0;
  float a = std::fabs(f);
  if (std::isnan(a)) a = 0.0f;
  uint8_t best = 0;
  float best_err = INFINITY;
  for (uint8_t c = 0; c < 8; ++c) {
    float err = std::fabs(fp4e2m1_to_float(c) - a);
    if (err < best_err || (err == best_err && (c & 1) == 0)) {
      best_err = err;
      best = c;
    }
  }
  return sign | best;
}

}  // namespace omnirt
