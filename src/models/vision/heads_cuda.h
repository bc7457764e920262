// CUDA kernels of the PETR heads' per-frame work that used to run on the host.
// Each has a host twin in petr_heads.cpp / host_math.cpp that the tests compare it with.
#pragma once

#include <array>
#include <functional>
#include <memory>
#include <vector>

#include "core/tensor.h"
#include "models/vision/host_math.h"
#include "models/vision/vision_config.h"

namespace omnirt::cuda {
class StreamGuard;
}

namespace omnirt::vision::cuda {

// PetrHeads::position_embedding_input on the GPU: the inverse-sigmoid of the normalised
// frustum points of every (camera, patch, depth bin), F32 [num_cams * gh * gw, 3 * depth_num]
// written into `out` (device, contiguous). Arithmetic in the host version's order, without
// fused multiply-adds, so the two agree to the last bit or two of logf.
void position_embedding_input(const VisionConfig& cfg, const std::vector<float>& coords_d,
                              const std::vector<host::Mat4>& img2lidars, Tensor& out);

// The inputs of PetrHeads::temporal_pos for `entries` memory entries, on the GPU:
//   nerf[e]  = host::nerf_pe(reference points of entry e, tiled to n_control points when the
//              entry has one point (per_entry == 3)),            [entries, 12 * 3 * n_control]
//   ego[e]   = host::nerf_pe([ts[e], pose[e] rows 0..2]),        [entries, 12 * 13]
//   tpe[e]   = host::pos2posemb1d(ts[e], d),                     [entries, d]
// norm_ref [entries * per_entry] F32, ts [entries] F64 and pose [entries * 16] F32 are device
// tensors; the outputs are contiguous device tensors of one float dtype (F32, F16 or BF16).
// dim_t: the host's float32 table 10000^(2 (k / 2) / d), k < d (passed so both sides use the
// same rounded values).
void temporal_encodings(const Tensor& norm_ref, int per_entry, int n_control, const Tensor& ts,
                        const Tensor& pose, const std::vector<float>& dim_t, Tensor& nerf,
                        Tensor& ego, Tensor& tpe);

// The box/lane branch outputs in float32, in one kernel: cls_out = float(cls) and
// reg_out = host::regression_to_ego(float(reg), ...) (see host_math.h for the formula; row r of
// reg uses row r % queries of ref_inv). cls [rows_c, *] and reg [rows, cols] are contiguous CUDA
// tensors of one float dtype (F32/F16/BF16); ref_inv is F32 [queries, ref_cols] on CUDA; the
// outputs are contiguous F32 CUDA tensors (typically views into one buffer that is then copied
// to the host at once).
void branch_outputs(const Tensor& cls, const Tensor& reg, const Tensor& ref_inv, int ref_cols,
                    const std::array<float, 6>& pc, Tensor& cls_out, Tensor& reg_out);

// out[i, :] = float(src[ids[i], :]): rows of a [rows, cols] CUDA tensor (F32/F16/BF16,
// contiguous) gathered by host indices (each checked against rows) into a contiguous F32 CUDA
// tensor [ids.size(), cols]. The indices travel in the launch parameters (chunks of 512): no
// upload, no synchronisation.
void gather_rows_f32(const Tensor& src, const std::vector<int>& ids, Tensor& out);

// A device -> host copy that the host collects later: start() queues the copy of a contiguous
// CUDA tensor into a pinned staging buffer (reused, grown when needed) on the current stream and
// returns at once; wait() blocks until it has arrived and returns it as a fresh host tensor of
// the same shape and dtype (the caller owns it; the staging buffer is reused by the next start).
// A start() while a copy is still uncollected waits for that copy and drops it.
class AsyncDownload {
 public:
  AsyncDownload();
  ~AsyncDownload();
  AsyncDownload(const AsyncDownload&) = delete;
  AsyncDownload& operator=(const AsyncDownload&) = delete;
  void start(const Tensor& src);
  Tensor wait();
  bool pending() const { return pending_; }

 private:
  void* pinned_ = nullptr;
  size_t capacity_ = 0;
  void* event_ = nullptr;  // cudaEvent_t
  Tensor src_;             // kept alive until the copy is collected
  bool pending_ = false;
};

// A stream of the heads' own (blocking, so that the legacy default stream stays ordered with
// it) and the hand-over with the caller's stream: the constructor makes `stream` wait for the
// work queued so far on the caller's current stream and makes `stream` current; the destructor
// (also on exceptions) makes the caller's stream wait for `stream` and restores it.
class HeadsStream {
 public:
  HeadsStream();
  ~HeadsStream();
  HeadsStream(const HeadsStream&) = delete;
  HeadsStream& operator=(const HeadsStream&) = delete;
  class Use {
   public:
    explicit Use(HeadsStream& s);
    ~Use();
    Use(const Use&) = delete;
    Use& operator=(const Use&) = delete;

   private:
    HeadsStream& s_;
    void* caller_;  // cudaStream_t
    std::unique_ptr<omnirt::cuda::StreamGuard> guard_;
  };

 private:
  void* stream_ = nullptr;                       // cudaStream_t
  void* in_ = nullptr;                           // cudaEvent_t
  void* out_ = nullptr;                          // cudaEvent_t
};

// A CUDA graph of one segment of device work, captured once and replayed per frame.
// capture(fn) runs fn with the current stream in capture mode (thread-local mode: other threads
// are unaffected, and any synchronising call on this thread fails the capture instead of
// silently escaping it) and instantiates the graph; fn's GPU allocations must outlive the graph
// (GraphMemoryPool). On an exception (e.g. a call that cannot be captured) the capture is
// ended, nothing is kept and the exception propagates. The current stream must not be the
// legacy default stream.
class SegmentGraph {
 public:
  SegmentGraph() = default;
  ~SegmentGraph();
  SegmentGraph(const SegmentGraph&) = delete;
  SegmentGraph& operator=(const SegmentGraph&) = delete;
  void capture(const std::function<void()>& fn);
  void launch();  // on the current stream
  bool ready() const { return exec_ != nullptr; }
  size_t nodes() const { return nodes_; }
  void reset();

 private:
  void* graph_ = nullptr;  // cudaGraph_t
  void* exec_ = nullptr;   // cudaGraphExec_t
  size_t nodes_ = 0;
};

}  // namespace omnirt::vision::cuda
