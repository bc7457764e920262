// The vision engine's outputs in pipeline terms (geometry in, boxes / lanes / tokens out), shared
// by the engine adapter (engines.cpp, `omnirt run`) and `omnirt parity` (parity.cpp), so both
// read the heads the same way.
#pragma once

#include <vector>

#include "models/vision/vision_engine.h"
#include "pipeline/engines.h"

namespace omnirt::pipeline {

// The engine's per-frame geometry from a prepared frame.
vision::FrameGeometry frame_geometry(const PreparedFrame& f, bool first_frame);

// Decoded top-k boxes (score order) as Box3D: geometric centre, (w, l, h), query index kept.
std::vector<Box3D> boxes_from_heads(const vision::HeadsOutput& h);

// The one-to-one lanes (query order) with their scores.
std::vector<Lane> lanes_from_heads(const vision::HeadsOutput& h);

// The vision tokens as F32 [R, hidden] for the splice (on the engine device when they already
// are F32 there, else copied to the host and converted).
Tensor vision_tokens_f32(const vision::HeadsOutput& h);

}  // namespace omnirt::pipeline
