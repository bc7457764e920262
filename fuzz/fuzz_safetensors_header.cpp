// libFuzzer target for parse_safetensors_header: any input must either parse into a header whose
// every promise holds, or throw omnirt::Error. Anything else (a crash, a sanitizer report, another
// exception type escaping, a broken invariant) is a bug.
//
// Each input is tried two ways:
//   1. as a whole file (8-byte length, JSON, data), so truncation and length handling are hit;
//   2. as the JSON header alone, wrapped with a correct length and a data section whose size
//      comes from the input, so mutations of the JSON are not all lost to a stale length prefix.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "core/error.h"
#include "io/safetensors_header.h"

namespace {

void check(bool ok) {
  if (!ok) __builtin_trap();
}

void check_invariants(const omnirt::SafetensorsHeader& h, uint64_t file_size) {
  check(h.data_start == 8 + h.header_bytes);
  check(h.data_start + h.data_bytes == file_size);
  for (size_t i = 0; i < h.tensors.size(); ++i) {
    const auto& t = h.tensors[i];
    check(t.begin <= t.end && t.end <= h.data_bytes);
    check(t.nbytes() == omnirt::dtype_nbytes(t.dtype, t.numel()));
    for (int64_t d : t.shape) check(d >= 0);
    if (i > 0) check(h.tensors[i - 1].name < t.name);  // sorted, unique
    check(h.find(t.name) == &t);
    // No shared bytes (quadratic, but fuzz inputs are small).
    for (size_t j = 0; j < i; ++j) {
      const auto& u = h.tensors[j];
      if (t.nbytes() > 0 && u.nbytes() > 0) check(t.end <= u.begin || u.end <= t.begin);
    }
  }
}

void try_parse(const uint8_t* data, size_t size) {
  try {
    omnirt::SafetensorsHeader h = omnirt::parse_safetensors_header(data, size, size, "fuzz");
    check_invariants(h, size);
  } catch (const omnirt::Error&) {
    // Rejected with a proper error: fine.
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try_parse(data, size);

  // Header-only mode: the first byte picks the data section size (0..255 bytes).
  if (size >= 1) {
    const size_t data_bytes = data[0];
    const size_t n = size - 1;
    std::vector<uint8_t> file(8 + n + data_bytes, 0xab);
    for (int i = 0; i < 8; ++i) file[i] = static_cast<uint8_t>(static_cast<uint64_t>(n) >> (8 * i));
    for (size_t i = 0; i < n; ++i) file[8 + i] = data[1 + i];
    try_parse(file.data(), file.size());
  }
  return 0;
}
