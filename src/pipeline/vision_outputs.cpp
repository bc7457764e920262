#include "pipeline/vision_outputs.h"

namespace omnirt::pipeline {

vision::FrameGeometry frame_geometry(const PreparedFrame& f, bool first_frame) {
  vision::FrameGeometry geo;
  geo.lidar2img = f.lidar2img;
  geo.ego_pose = f.ego_pose;
  geo.ego_pose_inv = f.ego_pose_inv;
  geo.timestamp = f.timestamp;
  geo.command = f.command;
  geo.can_bus = f.can_bus;
  geo.is_first_frame = first_frame;
  return geo;
}

std::vector<Box3D> boxes_from_heads(const vision::HeadsOutput& h) {
  std::vector<Box3D> out;
  for (size_t i = 0; i < h.boxes.boxes.size(); ++i) {
    const auto& b = h.boxes.boxes[i];  // x, y, z_bottom, size0 (l), size1 (w), size2 (h), ...
    Box3D o;
    o.center = {b[0], b[1], b[2] + 0.5f * b[5]};
    o.size_wlh = {b[4], b[3], b[5]};
    o.yaw = b[6];
    o.velocity = {b[7], b[8]};
    o.score = h.boxes.scores[i];
    o.label = h.boxes.labels[i];
    o.query = i < h.boxes.query.size() ? h.boxes.query[i] : -1;
    out.push_back(o);
  }
  return out;
}

std::vector<Lane> lanes_from_heads(const vision::HeadsOutput& h) {
  std::vector<Lane> out;
  if (!h.lanes.points.defined()) return out;
  const Tensor pts = h.lanes.points.to(Device::CPU).contiguous();
  const Tensor sc = h.lanes.scores.to(Device::CPU).contiguous();
  const int64_t n = pts.shape()[0], k = pts.shape()[1];
  const float* p = pts.data<float>();
  for (int64_t i = 0; i < n; ++i) {
    Lane l;
    l.score = sc.data<float>()[i];
    for (int64_t j = 0; j < k; ++j)
      l.points.push_back({p[(i * k + j) * 3], p[(i * k + j) * 3 + 1], p[(i * k + j) * 3 + 2]});
    out.push_back(std::move(l));
  }
  return out;
}

Tensor vision_tokens_f32(const vision::HeadsOutput& h) {
  Tensor tokens = h.vision_tokens;
  if (tokens.dtype() != DType::F32) tokens = tokens.to(Device::CPU).to_dtype(DType::F32);
  return tokens.contiguous().reshape({tokens.dim(-2), tokens.dim(-1)});
}

}  // namespace omnirt::pipeline
