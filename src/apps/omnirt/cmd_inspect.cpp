// `omnirt inspect PATH [--json]`: what a safetensors file (or a checkpoint/engine folder, or a
// Hugging Face index json) holds: every tensor's dtype, shape and size, totals, and metadata.
// The file is fully validated on the way (see io/safetensors.h), so inspect also checks a file.
#include <algorithm>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>

#include "apps/omnirt/command.h"
#include "io/safetensors.h"

namespace {

using omnirt::SafetensorsTensorInfo;
using omnirt::WeightStore;

std::string human_bytes(uint64_t b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(b);
  int u = 0;
  while (v >= 1024.0 && u < 4) {
    v /= 1024.0;
    ++u;
  }
  char buf[32];
  if (u == 0)
    std::snprintf(buf, sizeof buf, "%llu B", static_cast<unsigned long long>(b));
  else
    std::snprintf(buf, sizeof buf, "%.2f %s", v, units[u]);
  return buf;
}

int run_inspect(const std::string& path, bool as_json) {
  const WeightStore store = WeightStore::open(path);
  const auto names = store.names();
  const bool several_files = store.files().size() > 1;
  uint64_t total_params = 0, total_bytes = 0;
  for (const auto& n : names) {
    const SafetensorsTensorInfo& t = store.info(n);
    total_params += static_cast<uint64_t>(t.numel());
    total_bytes += t.nbytes();
  }

  if (as_json) {
    nlohmann::json out;
    out["path"] = path;
    out["files"] = nlohmann::json::array();
    for (const auto& f : store.files()) {
      out["files"].push_back({{"path", f.path()},
                              {"bytes", f.file_size()},
                              {"tensors", f.header().tensors.size()},
                              {"metadata", f.metadata()}});
    }
    out["tensors"] = nlohmann::json::array();
    for (const auto& n : names) {
      const SafetensorsTensorInfo& t = store.info(n);
      out["tensors"].push_back({{"name", n},
                                {"dtype", std::string(omnirt::dtype_name(t.dtype))},
                                {"shape", t.shape},
                                {"bytes", t.nbytes()},
                                {"data_offsets", {t.begin, t.end}},
                                {"file", store.file_of(n).path()}});
    }
    out["total"] = {{"tensors", names.size()}, {"params", total_params}, {"bytes", total_bytes}};
    // Replace invalid UTF-8 rather than fail: inspect should show whatever a valid file holds.
    std::printf("%s\n", out.dump(2, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
    return 0;
  }

  size_t name_w = 4, dtype_w = 5, shape_w = 5;
  for (const auto& n : names) {
    const SafetensorsTensorInfo& t = store.info(n);
    name_w = std::max(name_w, n.size());
    dtype_w = std::max(dtype_w, omnirt::dtype_name(t.dtype).size());
    shape_w = std::max(shape_w, omnirt::safetensors_shape_str(t.shape).size());
  }
  name_w = std::min<size_t>(name_w, 80);
  std::printf("%-*s  %-*s  %-*s  %14s%s\n", static_cast<int>(name_w), "name",
              static_cast<int>(dtype_w), "dtype", static_cast<int>(shape_w), "shape", "bytes",
              several_files ? "  file" : "");
  for (const auto& n : names) {
    const SafetensorsTensorInfo& t = store.info(n);
    std::string file;
    if (several_files) file = "  " + store.file_of(n).path();
    std::printf("%-*s  %-*s  %-*s  %14llu%s\n", static_cast<int>(name_w), n.c_str(),
                static_cast<int>(dtype_w), std::string(omnirt::dtype_name(t.dtype)).c_str(),
                static_cast<int>(shape_w), omnirt::safetensors_shape_str(t.shape).c_str(),
                static_cast<unsigned long long>(t.nbytes()), file.c_str());
  }
  std::printf("\ntotal: %zu tensors, %llu params, %llu bytes (%s) in %zu file%s\n", names.size(),
              static_cast<unsigned long long>(total_params),
              static_cast<unsigned long long>(total_bytes), human_bytes(total_bytes).c_str(),
              store.files().size(), several_files ? "s" : "");
  for (const auto& f : store.files()) {
    if (f.metadata().empty()) continue;
    std::printf("\nmetadata (%s):\n", f.path().c_str());
    for (const auto& [k, v] : f.metadata()) std::printf("  %s: %s\n", k.c_str(), v.c_str());
  }
  return 0;
}

omnirt::cli::Command inspect_cmd(
    "inspect",
    "List the tensors of a .safetensors file, a folder of them or an index json (validates them)",
    [](CLI::App& sub) {
      auto path = std::make_shared<std::string>();
      auto as_json = std::make_shared<bool>(false);
      sub.add_option("path", *path, "a .safetensors file, a folder, or a *.safetensors.index.json")
          ->required();
      sub.add_flag("--json", *as_json, "print JSON instead of a table");
      return [path, as_json]() { return run_inspect(*path, *as_json); };
    });

}  // namespace
