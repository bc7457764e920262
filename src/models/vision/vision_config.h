// Sizes of OmniDrive's vision part, read from the "vision" section of a checkpoint's config.json.
// Field names are those of python/omnidrive_ref/config.py (OmniDriveConfig), which writes it.
#pragma once

#include <array>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace omnirt::vision {

struct VisionConfig {
  // cameras / images
  int num_cams = 6, img_h = 640, img_w = 640;
  // EVA-02 ViT
  int patch = 16, embed_dim = 768, depth = 12, heads = 12, window_size = 16;
  std::vector<int> window_block_indexes{0, 1, 3, 4, 6, 7, 9, 10};
  int mlp_hidden = 2048, pretrain_grid = 14, pt_hw_seq_len = 16;
  float rope_theta = 10000.f, vit_ln_eps = 1e-6f;
  // decoders
  int dec_layers = 6, dec_dim = 256, dec_heads = 8, dec_ffn = 2048;
  float dec_ln_eps = 1e-5f;
  // box head
  int num_classes = 10, code_size = 10, num_query = 600, num_propagated = 300, memory_len = 600,
      topk = 300, num_extra = 256, can_bus_len = 2, max_boxes = 300;
  // lane head
  int num_lane = 1800, num_lane_one2one = 300, lane_memory_len = 600, lane_topk = 300,
      n_control = 11;
  // shared
  int out_dims = 2048, depth_num = 64;
  float depth_start = 1.f;
  std::array<float, 6> position_range{-61.2f, -61.2f, -10.f, 61.2f, 61.2f, 10.f};
  std::array<float, 6> pc_range{-51.2f, -51.2f, -5.f, 51.2f, 51.2f, 3.f};
  float memory_keep_seconds = 2.f;

  int grid_h() const { return img_h / patch; }
  int grid_w() const { return img_w / patch; }
  int vit_head_dim() const { return embed_dim / heads; }
  bool is_window_block(int i) const;

  // Parses the "vision" object (or a whole config.json holding one). `where` names the source
  // for error messages. Unknown fields are ignored with no error only if listed as known
  // Python-side extras; everything is validated.
  static VisionConfig from_json(const nlohmann::json& j, const std::string& where);
  static VisionConfig from_file(const std::string& config_json_path);
  void validate(const std::string& where) const;
};

}  // namespace omnirt::vision
