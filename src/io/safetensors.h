// Safetensors files: validated, memory-mapped reading (zero-copy CPU tensors), multi-file weight
// stores (checkpoint folders, Hugging Face index files), and an atomic writer.
//
// Reading: SafetensorsFile::open mmaps the file read-only and validates the whole header up front
// (parse_safetensors_header), so get() can trust every offset. CPU tensors returned by get() point
// straight into the mapping and keep it alive; they are read-only (writing through them faults):
// clone() one before modifying it. See docs/safetensors.md for the rules enforced.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"
#include "io/safetensors_header.h"

namespace omnirt {

class SafetensorsFile {
 public:
  // Maps and validates `path`; throws omnirt::Error naming the file (and tensor) on any problem.
  static SafetensorsFile open(const std::string& path);

  const std::string& path() const { return path_; }
  uint64_t file_size() const { return header_.data_start + header_.data_bytes; }
  const SafetensorsHeader& header() const { return header_; }
  // Start of the mapped file (nullptr for an empty file); zero-copy tensors point inside it.
  const uint8_t* mapped_bytes() const;

  std::vector<std::string> names() const;  // sorted
  bool contains(const std::string& name) const { return header_.find(name) != nullptr; }
  // Throws (naming the file, the tensor and close names) when there is no such tensor.
  const SafetensorsTensorInfo& info(const std::string& name) const;
  const std::map<std::string, std::string>& metadata() const { return header_.metadata; }

  // CPU: a zero-copy view into the mapping when the bytes are aligned for the element size,
  // otherwise an aligned owned copy. CUDA: a fresh device tensor uploaded from the mapping.
  Tensor get(const std::string& name, Device device = Device::CPU) const;

 private:
  struct Mapping;
  std::string path_;
  std::shared_ptr<const Mapping> mapping_;
  SafetensorsHeader header_;
};

// Name -> tensor over several safetensors files (a sharded checkpoint or an engine folder).
// Every name must be unique across the files.
class WeightStore {
 public:
  WeightStore() = default;
  // `path` may be: one .safetensors file; a folder (uses its *.safetensors.index.json when it has
  // exactly one, else every *.safetensors in it); or a Hugging Face index json
  // ({"weight_map": {tensor: shard file}}), which is checked against the shards' contents.
  static WeightStore open(const std::string& path);

  // Adds one file; throws if it holds a name that an earlier file already has.
  void add_file(const std::string& path);

  std::vector<std::string> names() const;  // sorted
  bool contains(const std::string& name) const { return index_.count(name) != 0; }
  const SafetensorsTensorInfo& info(const std::string& name) const;
  const SafetensorsFile& file_of(const std::string& name) const;
  Tensor get(const std::string& name, Device device = Device::CPU) const;
  const std::vector<SafetensorsFile>& files() const { return files_; }
  size_t size() const { return index_.size(); }

 private:
  const SafetensorsFile& lookup(const std::string& name) const;
  std::string description_;  // what was opened, for error messages
  std::vector<SafetensorsFile> files_;
  std::map<std::string, size_t> index_;  // name -> position in files_
};

// Writes tensors (any device; copied to host one at a time) to `path` atomically: the bytes go
// to a temporary file beside it which is renamed over `path` only when complete. The header is
// sorted by name and padded with spaces so the data section starts 8-byte aligned; tensor data
// is ordered by element alignment (8-, 4-, 2-, then 1-byte types, by name within each) so every
// tensor stays aligned with no gaps, as other safetensors readers require.
void write_safetensors(const std::string& path,
                       const std::vector<std::pair<std::string, Tensor>>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

// Up to `max` names from `candidates` close to `name` (edit distance), best first; for hints.
std::vector<std::string> close_names(const std::string& name,
                                     const std::vector<std::string>& candidates, size_t max = 3);

}  // namespace omnirt
