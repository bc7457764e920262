// The heads' CUDA graphs (PetrHeads::set_cuda_graphs): frames replayed from the graphs must
// give what the same engine gives when every kernel is launched eagerly, over a sequence that
// changes every per-frame input (images, poses, timestamps, a memory reset), so that a graph
// reading a stale or wrong buffer shows up.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <memory>
#include <random>
#include <utility>
#include <vector>

#include "common/test_util.h"
#include "core/error.h"
#include "io/safetensors.h"
#include "models/vision/vision_engine.h"

using namespace omnirt;
using namespace omnirt::vision;

namespace {

const std::string kData = OMNIRT_TEST_DATA_DIR;

host::Mat4 mat(const Tensor& t, int64_t index) {
  host::Mat4 m;
  std::vector<float> v = t.to_float_vector();
  std::memcpy(m.data(), v.data() + index * 16, 64);
  return m;
}

FrameGeometry geometry(const SafetensorsFile& f, int cams) {
  FrameGeometry g;
  Tensor l2i = f.get("inputs.lidar2img");
  for (int c = 0; c < cams; ++c) g.lidar2img.push_back(mat(l2i, c));
  g.ego_pose = mat(f.get("inputs.ego_pose"), 0);
  g.ego_pose_inv = mat(f.get("inputs.ego_pose_inv"), 0);
  g.timestamp = f.get("inputs.timestamp").data<double>()[0];
  g.command = f.get("inputs.command").to_float_vector()[0];
  std::vector<float> cb = f.get("inputs.can_bus").to_float_vector();
  std::copy(cb.begin(), cb.end(), g.can_bus.begin());
  g.is_first_frame = f.get("inputs.is_first_frame").to_float_vector()[0] != 0.f;
  return g;
}

// The tiny checkpoint with one decoder head (head_dim 32 instead of 8): the CUDA attention
// kernels support 32/64/128, and only then can the decoders be captured (head_dim 8 runs the
// CPU fallback, which copies to the host). The weights do not depend on the head count.
std::unique_ptr<VisionEngine> tiny_engine_hd32(DType dtype, bool graphs, bool concurrent = false) {
  const std::string dir = kData + "/tiny_ckpt";
  VisionConfig cfg = VisionConfig::from_file(dir + "/config.json");
  cfg.dec_heads = 1;
  auto file = std::make_shared<SafetensorsFile>(SafetensorsFile::open(dir + "/vision.safetensors"));
  VisionEngineOptions opt;
  opt.device = Device::CUDA;
  opt.backbone_dtype = dtype;
  opt.heads_dtype = dtype;
  opt.heads_cuda_graphs = graphs;
  opt.heads_concurrent_decoders = concurrent;
  return std::make_unique<VisionEngine>(
      cfg, [file](const std::string& n) { return file->get(n); }, opt);
}

struct Frame {
  Tensor img;
  FrameGeometry geo;
};

// Six frames: the two fixture frames, then moving on with new images and poses every 0.5 s, a
// 2.5 s gap (memory reset) and one more frame after it.
std::vector<Frame> frame_sequence(const VisionConfig& c) {
  auto f0 = SafetensorsFile::open(kData + "/fixtures/frame0.safetensors");
  auto f1 = SafetensorsFile::open(kData + "/fixtures/frame1.safetensors");
  std::vector<Frame> frames;
  frames.push_back({f0.get("inputs.img").reshape({c.num_cams, 3, c.img_h, c.img_w}).contiguous(),
                    geometry(f0, c.num_cams)});
  frames.push_back({f1.get("inputs.img").reshape({c.num_cams, 3, c.img_h, c.img_w}).contiguous(),
                    geometry(f1, c.num_cams)});
  std::mt19937_64 rng(omnirt::testing::test_seed());
  std::normal_distribution<float> noise(0.f, 0.3f);
  for (int k = 0; k < 4; ++k) {
    Frame f = frames.back();
    f.img = f.img.clone();
    for (int64_t i = 0; i < f.img.numel(); ++i) f.img.data<float>()[i] += noise(rng);
    f.geo.timestamp += k == 2 ? 2.5 : 0.5;  // frame 4: gap >= 2 s, the memory is dropped
    f.geo.ego_pose[3] += 1.3f;              // drive forward and sideways
    f.geo.ego_pose[7] += 0.4f * k;
    f.geo.ego_pose_inv = host::inverse4(f.geo.ego_pose, "ego_pose");
    f.geo.command = static_cast<float>(k % 3);
    f.geo.can_bus[0] += 0.25f;
    f.geo.is_first_frame = false;
    frames.push_back(f);
  }
  return frames;
}

double rel_err(const Tensor& a, const Tensor& b) { return omnirt::testing::rel_error(a, b); }

}  // namespace

TEST(HeadsGraph, ReplayMatchesEagerLaunches) {
  OMNIRT_REQUIRE_CUDA();
  // Also with the box and lane graphs replayed concurrently on two streams (experimental).
  for (const auto& [dt, concurrent] : std::vector<std::pair<DType, bool>>{
           {DType::F32, false}, {DType::F16, false}, {DType::F32, true}, {DType::F16, true}}) {
    const std::string name =
        std::string(dtype_name(dt)) + (concurrent ? " concurrent decoders" : "");
    auto graphed = tiny_engine_hd32(dt, true, concurrent);
    auto eager = tiny_engine_hd32(dt, false);
    const std::vector<Frame> frames = frame_sequence(graphed->config());
    // Identical kernels on identical inputs: the results agree to the last bits (the
    // tolerance only allows for a different cuBLASLt algorithm on other buffer addresses).
    const double tol = dt == DType::F32 ? 1e-5 : 2e-3;
    Tensor previous_tokens;
    for (size_t i = 0; i < frames.size(); ++i) {
      SCOPED_TRACE(name + " frame " + std::to_string(i));
      VisionFrameResult g = graphed->run(frames[i].img, frames[i].geo);
      VisionFrameResult e = eager->run(frames[i].img, frames[i].geo);
      EXPECT_EQ(g.heads.memory_reset, e.heads.memory_reset);
      EXPECT_EQ(g.heads.memory_reset, i == 0 || i == 4);
      EXPECT_LE(rel_err(g.heads.vision_tokens, e.heads.vision_tokens), tol);
      EXPECT_LE(rel_err(g.heads.all_cls_scores, e.heads.all_cls_scores), tol);
      EXPECT_LE(rel_err(g.heads.all_bbox_preds, e.heads.all_bbox_preds), tol);
      EXPECT_LE(rel_err(g.heads.all_lane_cls_one2one, e.heads.all_lane_cls_one2one), tol);
      EXPECT_LE(rel_err(g.heads.all_lane_preds_one2one, e.heads.all_lane_preds_one2one), tol);
      EXPECT_LE(rel_err(g.heads.pos_embed, e.heads.pos_embed), tol);
      if (dt == DType::F32) {  // discrete selections: compared where the values are exact enough
        EXPECT_EQ(g.heads.topk_indexes_bbox, e.heads.topk_indexes_bbox);
        EXPECT_EQ(g.heads.topk_indexes_map, e.heads.topk_indexes_map);
        EXPECT_EQ(g.heads.boxes.query, e.heads.boxes.query);
      }
      const auto gm = graphed->state().as_map(), em = eager->state().as_map();
      for (const char* key : {"memory_embedding_bbox", "memory_embedding_map"})
        EXPECT_LE(rel_err(gm.at(key), em.at(key)), tol) << key;
      // The frames really differ (a replay that reads stale inputs cannot pass by accident).
      if (previous_tokens.defined())
        EXPECT_GT(rel_err(g.heads.vision_tokens, previous_tokens), 10 * tol);
      previous_tokens = g.heads.vision_tokens.clone();
    }
    // Frame 0 eager (warm-up), frame 1 captured and replayed, the rest replayed.
    EXPECT_EQ(graphed->heads_graph_replays(), static_cast<int64_t>(frames.size()) - 1) << name;
    EXPECT_GT(graphed->heads_graph_nodes(), 50u) << name;
    EXPECT_EQ(eager->heads_graph_replays(), 0) << name;
    EXPECT_EQ(eager->heads_graph_nodes(), 0u) << name;
  }
}

// Tokens handed out by a replayed frame stay valid after the next frame (the graph's output
// buffer is rewritten every replay; the engine hands out a copy).
TEST(HeadsGraph, ReturnedTokensSurviveTheNextReplay) {
  OMNIRT_REQUIRE_CUDA();
  auto engine = tiny_engine_hd32(DType::F32, true);
  const std::vector<Frame> frames = frame_sequence(engine->config());
  std::vector<Tensor> kept;
  std::vector<std::vector<float>> copies;
  for (const Frame& f : frames) {
    VisionFrameResult r = engine->run(f.img, f.geo);
    kept.push_back(r.heads.vision_tokens);
    copies.push_back(r.heads.vision_tokens.to_float_vector());
  }
  ASSERT_GE(engine->heads_graph_replays(), 3);
  for (size_t i = 0; i < kept.size(); ++i)
    EXPECT_EQ(kept[i].to_float_vector(), copies[i]) << "frame " << i;
}

// The head_dim-8 tiny checkpoint needs the CPU attention fallback: no graphs, same results.
TEST(HeadsGraph, NotUsedWhenTheAttentionFallsBackToTheCpu) {
  OMNIRT_REQUIRE_CUDA();
  VisionEngineOptions opt;
  opt.device = Device::CUDA;
  auto engine = VisionEngine::load(kData + "/tiny_ckpt", opt);
  const std::vector<Frame> frames = frame_sequence(engine->config());
  for (int i = 0; i < 3; ++i) (void)engine->run(frames[i].img, frames[i].geo);
  EXPECT_EQ(engine->heads_graph_replays(), 0);
  EXPECT_EQ(engine->heads_graph_nodes(), 0u);
}
