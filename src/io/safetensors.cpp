#include "io/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "core/error.h"

namespace omnirt {

namespace fs = std::filesystem;
using json = nlohmann::json;

// ---- the mapping ------------------------------------------------------------------------------

struct SafetensorsFile::Mapping {
  const uint8_t* base = nullptr;  // nullptr for an empty file (nothing to map)
  size_t size = 0;
  ~Mapping() {
    if (base != nullptr) munmap(const_cast<uint8_t*>(base), size);
  }
};

namespace {

// Bytes a pointer to elements of `t` must be aligned to for typed access. Packed types are read
// as bytes.
size_t element_alignment(DType t) {
  const int bits = dtype_bits(t);
  return bits <= 8 ? 1 : static_cast<size_t>(bits / 8);
}

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t subst = prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, subst});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

std::string missing_tensor_message(const std::string& where, const std::string& name,
                                   const std::vector<std::string>& names) {
  std::string msg =
      where + ": no tensor named '" + name + "' (" + std::to_string(names.size()) + " tensors)";
  auto close = close_names(name, names);
  if (!close.empty()) {
    msg += "; did you mean ";
    for (size_t i = 0; i < close.size(); ++i) msg += (i ? ", '" : "'") + close[i] + "'";
    msg += "?";
  }
  return msg;
}

}  // namespace

std::vector<std::string> close_names(const std::string& name,
                                     const std::vector<std::string>& candidates, size_t max) {
  // Close means at most a third of the name's characters differ (at least 2 edits allowed).
  const size_t limit = std::max<size_t>(2, name.size() / 3);
  std::vector<std::pair<size_t, std::string>> scored;
  for (const auto& c : candidates) {
    const size_t len_gap = c.size() > name.size() ? c.size() - name.size() : name.size() - c.size();
    if (len_gap > limit) continue;  // cheap reject: the distance is at least the length gap
    const size_t d = edit_distance(name, c);
    if (d <= limit) scored.emplace_back(d, c);
  }
  std::sort(scored.begin(), scored.end());
  std::vector<std::string> out;
  for (size_t i = 0; i < scored.size() && i < max; ++i) out.push_back(scored[i].second);
  return out;
}

// ---- SafetensorsFile ---------------------------------------------------------------------------

SafetensorsFile SafetensorsFile::open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  OMNIRT_CHECK(fd >= 0, path, ": cannot open: ", std::strerror(errno));
  struct stat st {};
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    const int err = errno;
    ::close(fd);
    OMNIRT_FAIL(path, ": not a regular file", S_ISDIR(st.st_mode) ? " (it is a folder)" : "",
                err && !S_ISDIR(st.st_mode) ? std::string(": ") + std::strerror(err) : "");
  }
  auto mapping = std::make_shared<Mapping>();
  mapping->size = static_cast<size_t>(st.st_size);
  if (mapping->size > 0) {
    // Read-only and private: nothing can write back to the file through a tensor.
    void* p = mmap(nullptr, mapping->size, PROT_READ, MAP_PRIVATE, fd, 0);
    const int err = errno;
    ::close(fd);
    OMNIRT_CHECK(p != MAP_FAILED, path, ": mmap of ", mapping->size,
                 " bytes failed: ", std::strerror(err));
    mapping->base = static_cast<const uint8_t*>(p);
  } else {
    ::close(fd);
  }
  SafetensorsFile f;
  f.path_ = path;
  f.header_ = parse_safetensors_header(mapping->base, mapping->size, mapping->size, path);
  f.mapping_ = std::move(mapping);
  return f;
}

const uint8_t* SafetensorsFile::mapped_bytes() const { return mapping_ ? mapping_->base : nullptr; }

std::vector<std::string> SafetensorsFile::names() const {
  std::vector<std::string> out;
  out.reserve(header_.tensors.size());
  for (const auto& t : header_.tensors) out.push_back(t.name);
  return out;
}

const SafetensorsTensorInfo& SafetensorsFile::info(const std::string& name) const {
  const SafetensorsTensorInfo* t = header_.find(name);
  if (t == nullptr) OMNIRT_FAIL(missing_tensor_message(path_, name, names()));
  return *t;
}

Tensor SafetensorsFile::get(const std::string& name, Device device) const {
  const SafetensorsTensorInfo& t = info(name);
  // The header was validated against the file size, so this range lies inside the mapping.
  const uint8_t* bytes = mapping_->base + header_.data_start + t.begin;
  void* ptr = const_cast<uint8_t*>(bytes);  // read-only mapping; see the header comment
  // The view shares ownership of the mapping: the file stays mapped while any view lives.
  std::shared_ptr<void> keep_alive = std::const_pointer_cast<Mapping>(mapping_);
  Tensor view = Tensor::from_blob(ptr, t.shape, t.dtype, Device::CPU, keep_alive);
  if (device != Device::CPU) return view.to(device);  // upload copies bytewise: any alignment
  // Safetensors does not align tensor data (the data section starts at 8 + header length, and
  // offsets are arbitrary), but typed CPU code needs element-aligned pointers; a misaligned
  // tensor is therefore copied into an owned, aligned buffer instead of viewed in place.
  if (reinterpret_cast<uintptr_t>(bytes) % element_alignment(t.dtype) != 0) return view.clone();
  return view;
}

// ---- WeightStore -------------------------------------------------------------------------------

namespace {

json read_json_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  OMNIRT_CHECK(in.good(), path, ": cannot open: ", std::strerror(errno));
  std::stringstream ss;
  ss << in.rdbuf();
  try {
    return json::parse(ss.str());
  } catch (const json::exception& e) {
    OMNIRT_FAIL(path, ": not valid JSON: ", e.what());
  }
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

void WeightStore::add_file(const std::string& path) {
  SafetensorsFile f = SafetensorsFile::open(path);
  for (const auto& t : f.header().tensors) {
    auto it = index_.find(t.name);
    OMNIRT_CHECK(it == index_.end(), "tensor '", t.name, "' is in both ", files_[it->second].path(),
                 " and ", path, ": names must be unique across the files of a checkpoint");
  }
  const size_t id = files_.size();
  for (const auto& t : f.header().tensors) index_[t.name] = id;
  files_.push_back(std::move(f));
  if (description_.empty()) description_ = path;
}

WeightStore WeightStore::open(const std::string& path) {
  std::error_code ec;
  const fs::file_status st = fs::status(path, ec);
  OMNIRT_CHECK(!ec && fs::exists(st), path, ": no such file or folder");
  WeightStore store;

  auto open_index = [&store](const std::string& index_path) {
    const json j = read_json_file(index_path);
    OMNIRT_CHECK(j.is_object() && j.contains("weight_map") && j["weight_map"].is_object(),
                 index_path, ": expected an object with a \"weight_map\" object (tensor name -> ",
                 "shard file)");
    const json& wm = j["weight_map"];
    const fs::path dir = fs::path(index_path).parent_path();
    std::set<std::string> shards;
    for (const auto& [name, shard] : wm.items()) {
      OMNIRT_CHECK(shard.is_string(), index_path, ": weight_map entry '", name,
                   "' must name a shard file, got ", shard.dump());
      shards.insert(shard.get<std::string>());
    }
    OMNIRT_CHECK(!shards.empty(), index_path, ": weight_map is empty");
    std::map<std::string, std::string> shard_path;
    for (const auto& s : shards) {
      shard_path[s] = (dir / s).string();
      store.add_file(shard_path[s]);
    }
    // The index and the shards must agree exactly.
    for (const auto& [name, shard] : wm.items()) {
      const std::string& want = shard_path[shard.get<std::string>()];
      auto it = store.index_.find(name);
      OMNIRT_CHECK(it != store.index_.end(), index_path, ": lists tensor '", name, "' in ", want,
                   ", but no shard holds it");
      OMNIRT_CHECK(store.files_[it->second].path() == want, index_path, ": lists tensor '", name,
                   "' in ", want, ", but it is in ", store.files_[it->second].path());
    }
    for (const auto& [name, id] : store.index_) {
      OMNIRT_CHECK(wm.contains(name), index_path, ": does not list tensor '", name, "' held by ",
                   store.files_[id].path());
    }
    store.description_ = index_path;
  };

  if (fs::is_directory(st)) {
    std::vector<std::string> indexes, shards;
    for (const auto& e : fs::directory_iterator(path)) {
      const std::string p = e.path().string();
      if (!e.is_regular_file()) continue;
      if (ends_with(p, ".safetensors.index.json")) indexes.push_back(p);
      if (ends_with(p, ".safetensors")) shards.push_back(p);
    }
    std::sort(shards.begin(), shards.end());
    if (indexes.size() == 1) {
      open_index(indexes[0]);
    } else {
      OMNIRT_CHECK(!shards.empty(), path, ": folder has no *.safetensors files");
      for (const auto& s : shards) store.add_file(s);
      store.description_ = path;
    }
  } else if (ends_with(path, ".json")) {
    open_index(path);
  } else {
    store.add_file(path);
  }
  return store;
}

std::vector<std::string> WeightStore::names() const {
  std::vector<std::string> out;
  out.reserve(index_.size());
  for (const auto& [name, id] : index_) out.push_back(name);
  return out;
}

const SafetensorsFile& WeightStore::lookup(const std::string& name) const {
  auto it = index_.find(name);
  if (it == index_.end()) {
    OMNIRT_FAIL(missing_tensor_message(description_.empty() ? "weight store" : description_, name,
                                       names()));
  }
  return files_[it->second];
}

const SafetensorsTensorInfo& WeightStore::info(const std::string& name) const {
  return lookup(name).info(name);
}
const SafetensorsFile& WeightStore::file_of(const std::string& name) const { return lookup(name); }
Tensor WeightStore::get(const std::string& name, Device device) const {
  return lookup(name).get(name, device);
}

// ---- writer ------------------------------------------------------------------------------------

namespace {

// Removes the temporary file unless the write completed.
struct TempFile {
  std::string path;
  int fd = -1;
  bool committed = false;
  ~TempFile() {
    if (fd >= 0) ::close(fd);
    if (!committed && !path.empty()) ::unlink(path.c_str());
  }
};

void write_all(int fd, const void* data, size_t n, const std::string& path) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    const ssize_t w = ::write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    OMNIRT_CHECK(w > 0, path, ": write failed: ", std::strerror(errno));
    p += w;
    n -= static_cast<size_t>(w);
  }
}

}  // namespace

void write_safetensors(const std::string& path,
                       const std::vector<std::pair<std::string, Tensor>>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  // Validate everything before touching the disk.
  std::set<std::string> seen;
  for (const auto& [name, t] : tensors) {
    OMNIRT_CHECK(!name.empty(), path, ": a tensor has an empty name");
    OMNIRT_CHECK(name != "__metadata__", path, ": '__metadata__' is reserved, not a tensor name");
    OMNIRT_CHECK(seen.insert(name).second, path, ": tensor '", name, "' is given twice");
    OMNIRT_CHECK(t.defined(), path, ": tensor '", name, "' is undefined");
    if (dtype_is_packed(t.dtype())) {
      OMNIRT_CHECK(t.ndim() > 0 && t.shape().back() % 2 == 0 && t.is_contiguous(), path,
                   ": tensor '", name, "': packed ", t.describe(),
                   " must be contiguous with an even innermost dimension");
    }
  }

  // Data order: larger element alignment first, then by name, so packing without gaps keeps every
  // tensor aligned (each tensor's size is a multiple of its own alignment).
  std::vector<size_t> order(tensors.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    const size_t aa = element_alignment(tensors[a].second.dtype());
    const size_t ab = element_alignment(tensors[b].second.dtype());
    return aa != ab ? aa > ab : tensors[a].first < tensors[b].first;
  });

  json header = json::object();  // std::map-backed: keys come out sorted by name
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (size_t i : order) {
    const auto& [name, t] = tensors[i];
    const uint64_t n = t.nbytes();
    header[name] = {{"dtype", std::string(dtype_name(t.dtype()))},
                    {"shape", t.shape()},
                    {"data_offsets", {offset, offset + n}}};
    offset += n;
  }
  std::string text;
  try {
    text = header.dump();
  } catch (const json::exception& e) {  // e.g. a name or metadata value that is not UTF-8
    OMNIRT_FAIL(path, ": cannot encode the header: ", e.what());
  }
  // The format allows trailing spaces in the header; they make the data section 8-byte aligned.
  while ((8 + text.size()) % 8 != 0) text.push_back(' ');
  uint8_t len_bytes[8];
  for (int i = 0; i < 8; ++i) len_bytes[i] = static_cast<uint8_t>(text.size() >> (8 * i));

  const fs::path target(path);
  const fs::path dir = target.has_parent_path() ? target.parent_path() : fs::path(".");
  TempFile tmp;
  std::string tmpl = (dir / ("." + target.filename().string() + ".tmp-XXXXXX")).string();
  tmp.fd = mkstemp(tmpl.data());
  OMNIRT_CHECK(tmp.fd >= 0, path, ": cannot create a temporary file in ", dir.string(), ": ",
               std::strerror(errno));
  tmp.path = tmpl;
  fchmod(tmp.fd, 0644);  // mkstemp makes 0600; weight files are meant to be shared

  write_all(tmp.fd, len_bytes, 8, path);
  write_all(tmp.fd, text.data(), text.size(), path);
  for (size_t i : order) {
    const Tensor& t = tensors[i].second;
    // One tensor at a time on the host keeps peak memory at the largest tensor.
    const Tensor host = t.device() == Device::CPU ? t.contiguous() : t.to(Device::CPU);
    write_all(tmp.fd, host.raw(), host.nbytes(), path);
  }
  OMNIRT_CHECK(::fsync(tmp.fd) == 0, path, ": fsync failed: ", std::strerror(errno));
  const int rc = ::close(tmp.fd);
  tmp.fd = -1;
  OMNIRT_CHECK(rc == 0, path, ": close failed: ", std::strerror(errno));
  OMNIRT_CHECK(std::rename(tmp.path.c_str(), path.c_str()) == 0, path, ": cannot rename ", tmp.path,
               " into place: ", std::strerror(errno));
  tmp.committed = true;
}

}  // namespace omnirt
