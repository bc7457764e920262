#include "models/vision/vision_config.h"

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"

namespace omnirt::vision {

bool VisionConfig::is_window_block(int i) const {
  return std::find(window_block_indexes.begin(), window_block_indexes.end(), i) !=
         window_block_indexes.end();
}

namespace {
template <typename T>
void read(const nlohmann::json& j, const char* key, T& out, const std::string& where) {
  if (!j.contains(key)) return;  // absent: keep the eva_base_tinyllama default
  try {
    out = j.at(key).get<T>();
  } catch (const nlohmann::json::exception& e) {
    OMNIRT_FAIL(where, ": field vision.", key, " has the wrong type (", e.what(), ")");
  }
}
}  // namespace

VisionConfig VisionConfig::from_json(const nlohmann::json& root, const std::string& where) {
  const nlohmann::json& j = root.contains("vision") ? root.at("vision") : root;
  OMNIRT_CHECK(j.is_object(), where, ": the vision config must be a JSON object");
  VisionConfig c;
  read(j, "num_cams", c.num_cams, where);
  read(j, "img_h", c.img_h, where);
  read(j, "img_w", c.img_w, where);
  read(j, "patch", c.patch, where);
  read(j, "embed_dim", c.embed_dim, where);
  read(j, "depth", c.depth, where);
  read(j, "heads", c.heads, where);
  read(j, "window_size", c.window_size, where);
  read(j, "window_block_indexes", c.window_block_indexes, where);
  read(j, "mlp_hidden", c.mlp_hidden, where);
  read(j, "pretrain_grid", c.pretrain_grid, where);
  read(j, "pt_hw_seq_len", c.pt_hw_seq_len, where);
  read(j, "rope_theta", c.rope_theta, where);
  read(j, "vit_ln_eps", c.vit_ln_eps, where);
  read(j, "dec_layers", c.dec_layers, where);
  read(j, "dec_dim", c.dec_dim, where);
  read(j, "dec_heads", c.dec_heads, where);
  read(j, "dec_ffn", c.dec_ffn, where);
  read(j, "dec_ln_eps", c.dec_ln_eps, where);
  read(j, "num_classes", c.num_classes, where);
  read(j, "code_size", c.code_size, where);
  read(j, "num_query", c.num_query, where);
  read(j, "num_propagated", c.num_propagated, where);
  read(j, "memory_len", c.memory_len, where);
  read(j, "topk", c.topk, where);
  read(j, "num_extra", c.num_extra, where);
  read(j, "can_bus_len", c.can_bus_len, where);
  read(j, "max_boxes", c.max_boxes, where);
  read(j, "num_lane", c.num_lane, where);
  read(j, "num_lane_one2one", c.num_lane_one2one, where);
  read(j, "lane_memory_len", c.lane_memory_len, where);
  read(j, "lane_topk", c.lane_topk, where);
  read(j, "n_control", c.n_control, where);
  read(j, "out_dims", c.out_dims, where);
  read(j, "depth_num", c.depth_num, where);
  read(j, "depth_start", c.depth_start, where);
  read(j, "position_range", c.position_range, where);
  read(j, "pc_range", c.pc_range, where);
  read(j, "memory_keep_seconds", c.memory_keep_seconds, where);
  c.validate(where);
  return c;
}

VisionConfig VisionConfig::from_file(const std::string& path) {
  std::ifstream f(path);
  OMNIRT_CHECK(f.good(), path, ": cannot open the model config");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(f);
  } catch (const nlohmann::json::exception& e) {
    OMNIRT_FAIL(path, ": not valid JSON (", e.what(), ")");
  }
  return from_json(j, path);
}

void VisionConfig::validate(const std::string& where) const {
  auto need = [&](bool ok, const char* msg) { OMNIRT_CHECK(ok, where, ": vision config: ", msg); };
  need(num_cams > 0 && img_h > 0 && img_w > 0 && patch > 0, "sizes must be positive");
  need(img_h % patch == 0 && img_w % patch == 0, "image size must be a multiple of patch");
  need(grid_h() == grid_w(), "the global RoPE table needs a square patch grid");
  need(heads > 0 && embed_dim % heads == 0, "embed_dim must be a multiple of heads");
  need(vit_head_dim() % 4 == 0, "ViT head_dim must be a multiple of 4 (2-D RoPE pairs)");
  need(window_size > 0, "window_size must be positive");
  for (int i : window_block_indexes) need(i >= 0 && i < depth, "window_block_indexes out of range");
  need(dec_heads > 0 && dec_dim % dec_heads == 0, "dec_dim must be a multiple of dec_heads");
  need(topk > 0 && memory_len % topk == 0, "memory_len must be a multiple of topk");
}

}  // namespace omnirt::vision
