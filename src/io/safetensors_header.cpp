#include "io/safetensors_header.h"

#include <algorithm>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "core/error.h"

namespace omnirt {

namespace {

using json = nlohmann::json;

// Nesting deeper than this cannot be a valid header (object -> tensor entry -> shape array is 3).
constexpr int kMaxJsonDepth = 16;

std::string known_dtype_names() {
  std::string out;
  for (int i = 0; i <= static_cast<int>(DType::FP4E2M1); ++i) {
    if (!out.empty()) out += ", ";
    out += dtype_name(static_cast<DType>(i));
  }
  return out;
}

// nlohmann's messages start with "[json.exception.parse_error.101] "; users don't need that.
std::string strip_json_prefix(const std::string& what) {
  if (!what.empty() && what[0] == '[') {
    auto close = what.find("] ");
    if (close != std::string::npos) return what.substr(close + 2);
  }
  return what;
}

// Reads a JSON integer that must be >= 0. Returns false for anything else (negative, float,
// string, or beyond uint64).
bool read_non_negative(const json& v, uint64_t* out) {
  if (v.is_number_unsigned()) {
    *out = v.get<uint64_t>();
    return true;
  }
  if (v.is_number_integer()) {
    int64_t s = v.get<int64_t>();
    if (s < 0) return false;
    *out = static_cast<uint64_t>(s);
    return true;
  }
  return false;
}

class HeaderValidator {
 public:
  HeaderValidator(const std::string& file, uint64_t data_bytes)
      : file_(file), data_bytes_(data_bytes) {}

  SafetensorsTensorInfo tensor(const std::string& name, const json& entry) const {
    const std::string where = file_ + ": tensor '" + name + "'";
    OMNIRT_CHECK(entry.is_object(), where, ": entry must be a JSON object with dtype, shape and",
                 " data_offsets, got a ", entry.type_name());
    for (const auto& [field, value] : entry.items()) {
      OMNIRT_CHECK(field == "dtype" || field == "shape" || field == "data_offsets", where,
                   ": unexpected field '", field, "' (expected dtype, shape, data_offsets)");
    }
    SafetensorsTensorInfo info;
    info.name = name;

    // dtype
    auto it = entry.find("dtype");
    OMNIRT_CHECK(it != entry.end(), where, ": missing field 'dtype'");
    OMNIRT_CHECK(it->is_string(), where, ": 'dtype' must be a string, got ", it->dump());
    const std::string dtype_str = it->get<std::string>();
    auto dtype = dtype_from_name(dtype_str);
    OMNIRT_CHECK(dtype.has_value(), where, ": unknown dtype '", dtype_str,
                 "' (known: ", known_dtype_names(), ")");
    info.dtype = *dtype;

    // shape
    it = entry.find("shape");
    OMNIRT_CHECK(it != entry.end(), where, ": missing field 'shape'");
    OMNIRT_CHECK(it->is_array(), where, ": 'shape' must be an array of non-negative integers, got ",
                 it->dump());
    uint64_t numel = 1;
    bool numel_overflow = false;
    for (const json& d : *it) {
      uint64_t dim = 0;
      OMNIRT_CHECK(read_non_negative(d, &dim), where, ": shape ", it->dump(),
                   " must hold non-negative integers, but has ", d.dump());
      OMNIRT_CHECK(dim <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()), where,
                   ": shape dimension ", dim, " is too large");
      info.shape.push_back(static_cast<int64_t>(dim));
      if (__builtin_mul_overflow(numel, dim, &numel)) numel_overflow = true;
    }
    // Bytes are computed as numel * bits / 8, so numel * bits must fit as well.
    const uint64_t bits = static_cast<uint64_t>(dtype_bits(info.dtype));
    OMNIRT_CHECK(!numel_overflow &&
                     numel <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) / bits,
                 where, ": shape ", it->dump(), " has too many elements");
    if (dtype_is_packed(info.dtype)) {
      OMNIRT_CHECK(!info.shape.empty() && info.shape.back() % 2 == 0, where, ": packed dtype ",
                   dtype_str, " (two values per byte) needs an even innermost dimension, got ",
                   info.describe());
    }
    const uint64_t needed = (numel * bits + 7) / 8;

    // data_offsets
    it = entry.find("data_offsets");
    OMNIRT_CHECK(it != entry.end(), where, ": missing field 'data_offsets'");
    uint64_t begin = 0, end = 0;
    OMNIRT_CHECK(it->is_array() && it->size() == 2 && read_non_negative((*it)[0], &begin) &&
                     read_non_negative((*it)[1], &end),
                 where, ": 'data_offsets' must be [begin, end] with non-negative integers, got ",
                 it->dump());
    OMNIRT_CHECK(begin <= end, where, ": data_offsets [", begin, ", ", end,
                 "] end before they begin");
    OMNIRT_CHECK(end <= data_bytes_, where, ": data_offsets [", begin, ", ", end,
                 "] go beyond the data section, which holds ", data_bytes_,
                 " bytes (the file is truncated or the header is wrong)");
    OMNIRT_CHECK(end - begin == needed, where, ": data_offsets [", begin, ", ", end, "] hold ",
                 end - begin, " bytes but ", info.describe(), " needs ", needed);
    info.begin = begin;
    info.end = end;
    return info;
  }

  std::map<std::string, std::string> metadata(const json& entry) const {
    OMNIRT_CHECK(entry.is_object(), file_, ": '__metadata__' must be an object of strings, got a ",
                 entry.type_name());
    std::map<std::string, std::string> out;
    for (const auto& [key, value] : entry.items()) {
      OMNIRT_CHECK(value.is_string(), file_, ": '__metadata__' entry '", key,
                   "' must be a string, got ", value.dump());
      out[key] = value.get<std::string>();
    }
    return out;
  }

 private:
  const std::string& file_;
  uint64_t data_bytes_;
};

json parse_json(const char* begin, const char* end, const std::string& file) {
  // Per-object key sets: nlohmann keeps the last of duplicate keys silently, which would hide a
  // tensor listed twice, so duplicates are caught while parsing.
  std::vector<std::set<std::string>> keys;
  auto callback = [&](int depth, json::parse_event_t event, json& parsed) {
    switch (event) {
      case json::parse_event_t::object_start:
      case json::parse_event_t::array_start:
        OMNIRT_CHECK(depth < kMaxJsonDepth, file, ": header JSON is nested more than ",
                     kMaxJsonDepth, " levels deep, which no valid header is");
        if (event == json::parse_event_t::object_start) keys.emplace_back();
        break;
      case json::parse_event_t::object_end:
        if (!keys.empty()) keys.pop_back();
        break;
      case json::parse_event_t::key: {
        if (keys.empty()) break;
        const std::string& k = parsed.get_ref<const std::string&>();
        OMNIRT_CHECK(keys.back().insert(k).second, file, ": header JSON has the key '", k,
                     "' twice", keys.size() == 1 ? "" : " in one entry");
        break;
      }
      default:
        break;
    }
    return true;
  };
  try {
    return json::parse(begin, end, callback);
  } catch (const json::exception& e) {
    OMNIRT_FAIL(file, ": header is not valid JSON: ", strip_json_prefix(e.what()));
  }
}

}  // namespace

int64_t SafetensorsTensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string safetensors_shape_str(const std::vector<int64_t>& shape) {
  std::ostringstream os;
  os << "[";
  for (size_t i = 0; i < shape.size(); ++i) os << (i ? ", " : "") << shape[i];
  os << "]";
  return os.str();
}

std::string SafetensorsTensorInfo::describe() const {
  return std::string(dtype_name(dtype)) + safetensors_shape_str(shape);
}

const SafetensorsTensorInfo* SafetensorsHeader::find(const std::string& name) const {
  auto it = std::lower_bound(
      tensors.begin(), tensors.end(), name,
      [](const SafetensorsTensorInfo& t, const std::string& n) { return t.name < n; });
  return it != tensors.end() && it->name == name ? &*it : nullptr;
}

SafetensorsHeader parse_safetensors_header(const uint8_t* data, size_t size, uint64_t file_size,
                                           const std::string& file) {
  OMNIRT_CHECK(size <= file_size, file, ": ", size, " bytes given for a file of ", file_size);
  OMNIRT_CHECK(file_size >= 8, file, ": file is truncated: ", file_size,
               " bytes, too short for the 8-byte header length");
  OMNIRT_CHECK(size >= 8, file, ": the first 8 bytes of the file are needed, got ", size);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | data[i];  // little-endian on any host

  OMNIRT_CHECK(n <= file_size - 8, file, ": header length ", n,
               " goes beyond the end of the file (", file_size, " bytes, so at most ",
               file_size - 8, " header bytes): the file is truncated or not a safetensors file");
  OMNIRT_CHECK(n <= kSafetensorsMaxHeaderBytes, file, ": header length ", n,
               " is larger than the limit of ", kSafetensorsMaxHeaderBytes, " bytes");
  OMNIRT_CHECK(n >= 2, file, ": header length ", n, " is too short to hold a JSON object");
  OMNIRT_CHECK(size >= 8 + n, file, ": the whole header (", 8 + n, " bytes) is needed, got ", size);

  SafetensorsHeader header;
  header.header_bytes = n;
  header.data_start = 8 + n;
  header.data_bytes = file_size - header.data_start;

  const char* text = reinterpret_cast<const char*>(data + 8);
  json j = parse_json(text, text + n, file);
  OMNIRT_CHECK(j.is_object(), file, ": header must be a JSON object, got a ", j.type_name());

  HeaderValidator validator(file, header.data_bytes);
  for (const auto& [key, value] : j.items()) {
    if (key == "__metadata__") {
      header.metadata = validator.metadata(value);
    } else {
      header.tensors.push_back(validator.tensor(key, value));
    }
  }
  std::sort(header.tensors.begin(), header.tensors.end(),
            [](const auto& a, const auto& b) { return a.name < b.name; });

  // No two tensors may share a byte. Zero-size tensors hold no bytes and cannot overlap.
  std::vector<const SafetensorsTensorInfo*> by_offset;
  for (const auto& t : header.tensors)
    if (t.nbytes() > 0) by_offset.push_back(&t);
  std::sort(by_offset.begin(), by_offset.end(), [](const auto* a, const auto* b) {
    return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
  });
  const SafetensorsTensorInfo* reach = nullptr;  // the tensor reaching furthest so far
  for (const auto* t : by_offset) {
    if (reach != nullptr) {
      OMNIRT_CHECK(t->begin >= reach->end, file, ": tensor '", t->name, "' (data_offsets [",
                   t->begin, ", ", t->end, "]) overlaps tensor '", reach->name, "' (data_offsets [",
                   reach->begin, ", ", reach->end, "])");
    }
    if (reach == nullptr || t->end > reach->end) reach = t;
  }
  return header;
}

}  // namespace omnirt
