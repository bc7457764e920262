// The safetensors header: parsing and validation as a pure function of bytes.
//
// Kept apart from the mmap/Tensor code (safetensors.h) so the fuzzer can compile just this file
// plus core/dtype and core/error. Everything a header claims is checked here, so the code that
// later points tensors into the file can trust every offset it is given.
//
// File layout: [u64 little-endian N][N bytes of JSON header][data section]. See
// docs/safetensors.md.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/dtype.h"

namespace omnirt {

// Headers larger than this are rejected before parsing (the reference implementation uses the
// same 100 MB bound); a real 1B-parameter checkpoint header is well under 1 MB.
constexpr uint64_t kSafetensorsMaxHeaderBytes = 100ull * 1000 * 1000;

struct SafetensorsTensorInfo {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  // Byte range [begin, end) relative to the start of the data section.
  uint64_t begin = 0;
  uint64_t end = 0;

  uint64_t nbytes() const { return end - begin; }
  int64_t numel() const;
  std::string describe() const;  // "F32[5, 7]"
};

struct SafetensorsHeader {
  uint64_t header_bytes = 0;                    // N, the JSON length (including any padding spaces)
  uint64_t data_start = 0;                      // 8 + N: file offset of the data section
  uint64_t data_bytes = 0;                      // file size - data_start
  std::vector<SafetensorsTensorInfo> tensors;   // sorted by name
  std::map<std::string, std::string> metadata;  // "__metadata__", empty when absent

  // nullptr when there is no tensor of that name.
  const SafetensorsTensorInfo* find(const std::string& name) const;
};

// Parses and validates the header of a safetensors file.
//   data, size:  the first `size` bytes of the file (at least the 8-byte length and the JSON)
//   file_size:   the size of the whole file (data_offsets are checked against it)
//   file_name:   used in error messages
// Throws omnirt::Error naming the file (and tensor) on any violation: truncation, header length
// beyond the file, malformed JSON, non-object header, duplicate keys, unknown dtype, bad shape,
// data_offsets out of range or not matching dtype x shape, overlapping tensors, bad metadata.
SafetensorsHeader parse_safetensors_header(const uint8_t* data, size_t size, uint64_t file_size,
                                           const std::string& file_name);

// "[2, 3]" without depending on core/tensor (keeps the fuzz build small).
std::string safetensors_shape_str(const std::vector<int64_t>& shape);

}  // namespace omnirt
