#include "models/vision/heads_cuda.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cstring>

#include "core/cuda_check.h"
#include "core/error.h"
#include "ops/cuda/common.cuh"

namespace omnirt::vision::cuda {
namespace {

using ops::cuda::from_float;
using ops::cuda::to_float;

constexpr int kMaxCams = 8;
constexpr int kMaxDepth = 128;

struct PosEmbedParams {
  float img2lidar[kMaxCams][16];
  float coords_d[kMaxDepth];
  float range[6];
  int cams, grid_h, grid_w, depth, stride, img_h, img_w;
};

// One thread per (camera, row, column, depth bin): three outputs.
__global__ void position_embedding_input_kernel(const PosEmbedParams p, float* out) {
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t total = static_cast<int64_t>(p.cams) * p.grid_h * p.grid_w * p.depth;
  if (idx >= total) return;
  const int k = static_cast<int>(idx % p.depth);
  const int64_t pix = idx / p.depth;
  const int j = static_cast<int>(pix % p.grid_w);
  const int i = static_cast<int>((pix / p.grid_w) % p.grid_h);
  const int cam = static_cast<int>(pix / (static_cast<int64_t>(p.grid_w) * p.grid_h));
  // Same operation order as the host; __f*_rn keeps the compiler from fusing into FMAs.
  const float u = __fmul_rn(__fdiv_rn(__fadd_rn(float(p.stride * j), float(p.stride / 2)),
                                      float(p.img_w)),
                            float(p.img_w));
  const float v = __fmul_rn(__fdiv_rn(__fadd_rn(float(p.stride * i), float(p.stride / 2)),
                                      float(p.img_h)),
                            float(p.img_h));
  const float dep = p.coords_d[k];
  const float dc = fmaxf(dep, 1e-5f);
  const float pt[3] = {__fmul_rn(u, dc), __fmul_rn(v, dc), dep};
  const float* m = p.img2lidar[cam];
  float* o = out + idx * 3;
#pragma unroll
  for (int r = 0; r < 3; ++r) {
    const float xyz = __fadd_rn(
        __fadd_rn(__fadd_rn(__fmul_rn(m[r * 4 + 0], pt[0]), __fmul_rn(m[r * 4 + 1], pt[1])),
                  __fmul_rn(m[r * 4 + 2], pt[2])),
        m[r * 4 + 3]);
    float x = __fdiv_rn(xyz - p.range[r], p.range[r + 3] - p.range[r]);
    x = fminf(fmaxf(x, 0.f), 1.f);  // mmdet inverse_sigmoid, eps 1e-5
    const float x1 = fmaxf(x, 1e-5f), x2 = fmaxf(1.f - x, 1e-5f);
    o[r] = logf(__fdiv_rn(x1, x2));
  }
}

constexpr int kMaxFeats = 512;

struct BranchRange {
  float lo[3], hi[3];
};

struct TemporalParams {
  const float* norm_ref;  // [entries * per_entry]
  const double* ts;       // [entries]
  const float* pose;      // [entries * 16]
  int entries, per_entry, n_control, feats;
  float dim_t[kMaxFeats];
};

// host::nerf_pe, element `idx` of 12 * n: [sin(f x) all dims, cos(f x) all dims], f = 1..32.
__device__ __forceinline__ float nerf_element(const float* in, int n, int idx) {
  const int block = idx / n, i = idx % n;
  const float x = __fmul_rn(in[i], static_cast<float>(1 << (block / 2)));
  return (block % 2 == 0) ? sinf(x) : cosf(x);
}

// One block per memory entry.
template <typename T>
__global__ void temporal_encodings_kernel(const TemporalParams p, T* nerf, T* ego, T* tpe) {
  const int e = blockIdx.x;
  const int pts = 3 * p.n_control;
  __shared__ float ref[3 * 32];  // n_control <= 32 (checked on the host)
  __shared__ float motion[13];
  const double ts = p.ts[e];
  for (int i = threadIdx.x; i < pts; i += blockDim.x)
    ref[i] = p.per_entry == 3 ? p.norm_ref[e * 3 + i % 3] : p.norm_ref[int64_t(e) * pts + i];
  if (threadIdx.x < 13)
    motion[threadIdx.x] = threadIdx.x == 0 ? static_cast<float>(ts) : p.pose[e * 16 + threadIdx.x - 1];
  __syncthreads();
  for (int i = threadIdx.x; i < 12 * pts; i += blockDim.x)
    nerf[int64_t(e) * 12 * pts + i] = from_float<T>(nerf_element(ref, pts, i));
  for (int i = threadIdx.x; i < 12 * 13; i += blockDim.x)
    ego[int64_t(e) * 12 * 13 + i] = from_float<T>(nerf_element(motion, 13, i));
  // host::pos2posemb1d: the position in float64 against the float32 dim_t table.
  const double scaled = ts * (2 * 3.14159265358979323846);
  for (int k = threadIdx.x; k < p.feats; k += blockDim.x) {
    const double v = scaled / static_cast<double>(p.dim_t[k]);
    tpe[int64_t(e) * p.feats + k] = from_float<T>(static_cast<float>(k % 2 == 0 ? sin(v) : cos(v)));
  }
}

// Element i < n_cls: the class logit, widened; the rest: regression element i - n_cls.
template <typename T>
__global__ void branch_outputs_kernel(const T* cls, int64_t n_cls, const T* reg, int64_t n_reg,
                                      int cols, const float* ref_inv, int64_t queries,
                                      int ref_cols, BranchRange range, float* cls_out,
                                      float* reg_out) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n_cls) {
    cls_out[i] = to_float(cls[i]);
    return;
  }
  const int64_t j = i - n_cls;
  if (j >= n_reg) return;
  const int64_t row = j / cols;
  const int k = static_cast<int>(j % cols);
  float v = to_float(reg[j]);
  if (k < ref_cols) {
    const int axis = k % 3;
    // host::sigmoid is 1 / (1 + exp(-x)); expf (not __expf) stays within an ulp or two of it.
    const float x = __fadd_rn(v, ref_inv[(row % queries) * ref_cols + k]);
    const float s = __fdiv_rn(1.f, __fadd_rn(1.f, expf(-x)));
    v = __fadd_rn(__fmul_rn(s, __fsub_rn(range.hi[axis], range.lo[axis])), range.lo[axis]);
  }
  reg_out[j] = v;
}

constexpr int kGatherChunk = 512;
struct GatherIds {
  int ids[kGatherChunk];
};

// One block per gathered row.
template <typename T>
__global__ void gather_rows_kernel(const T* src, int64_t cols, const GatherIds g, float* out) {
  const T* in = src + static_cast<int64_t>(g.ids[blockIdx.x]) * cols;
  float* o = out + static_cast<int64_t>(blockIdx.x) * cols;
  for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) o[j] = to_float(in[j]);
}

}  // namespace

void position_embedding_input(const VisionConfig& c, const std::vector<float>& coords_d,
                              const std::vector<host::Mat4>& img2lidars, Tensor& out) {
  OMNIRT_CHECK(c.num_cams <= kMaxCams && c.depth_num <= kMaxDepth,
               "position embedding (CUDA): at most ", kMaxCams, " cameras and ", kMaxDepth,
               " depth bins, got ", c.num_cams, " and ", c.depth_num);
  OMNIRT_CHECK(static_cast<int>(img2lidars.size()) == c.num_cams &&
                   static_cast<int>(coords_d.size()) == c.depth_num,
               "position embedding (CUDA): expected ", c.num_cams, " camera matrices and ",
               c.depth_num, " depths, got ", img2lidars.size(), " and ", coords_d.size());
  const int64_t rows = int64_t(c.num_cams) * c.grid_h() * c.grid_w();
  expect_shape(out, {rows, 3 * int64_t(c.depth_num)}, "position embedding input");
  OMNIRT_CHECK(out.device() == Device::CUDA && out.dtype() == DType::F32 && out.is_contiguous(),
               "position embedding input: expected a contiguous F32 CUDA tensor, got ",
               out.describe());
  PosEmbedParams p{};
  for (int cam = 0; cam < c.num_cams; ++cam)
    for (int e = 0; e < 16; ++e) p.img2lidar[cam][e] = img2lidars[cam][e];
  for (int k = 0; k < c.depth_num; ++k) p.coords_d[k] = coords_d[k];
  for (int e = 0; e < 6; ++e) p.range[e] = c.position_range[e];
  p.cams = c.num_cams;
  p.grid_h = c.grid_h();
  p.grid_w = c.grid_w();
  p.depth = c.depth_num;
  p.stride = c.patch;
  p.img_h = c.img_h;
  p.img_w = c.img_w;
  const int64_t total = rows * c.depth_num;
  const int threads = 256;
  const unsigned blocks = static_cast<unsigned>((total + threads - 1) / threads);
  position_embedding_input_kernel<<<blocks, threads, 0, omnirt::cuda::current_stream()>>>(
      p, out.data<float>());
  OMNIRT_CUDA_CHECK_LAUNCH("position_embedding_input_kernel");
}

void temporal_encodings(const Tensor& norm_ref, int per_entry, int n_control, const Tensor& ts,
                        const Tensor& pose, const std::vector<float>& dim_t, Tensor& nerf,
                        Tensor& ego, Tensor& tpe) {
  const int64_t entries = ts.numel();
  const int64_t pts = 3 * int64_t(n_control), feats = int64_t(dim_t.size());
  OMNIRT_CHECK(n_control >= 1 && n_control <= 32 && feats <= kMaxFeats &&
                   (per_entry == 3 || per_entry == pts),
               "temporal encodings (CUDA): n_control ", n_control, " (1..32), ", feats,
               " features (<= ", kMaxFeats, "), per_entry ", per_entry, " (3 or ", pts, ")");
  auto check = [](const Tensor& t, DType dt, int64_t n, const char* what) {
    OMNIRT_CHECK(t.device() == Device::CUDA && t.dtype() == dt && t.is_contiguous() &&
                     t.numel() == n,
                 "temporal encodings (CUDA): ", what, ": expected ", n, " contiguous ",
                 dtype_name(dt), " values on CUDA, got ", t.describe());
  };
  check(norm_ref, DType::F32, entries * per_entry, "norm_ref");
  check(ts, DType::F64, entries, "ts");
  check(pose, DType::F32, entries * 16, "pose");
  const DType out_dt = nerf.dtype();
  check(nerf, out_dt, entries * 12 * pts, "nerf");
  check(ego, out_dt, entries * 12 * 13, "ego");
  check(tpe, out_dt, entries * feats, "tpe");
  if (entries == 0) return;
  TemporalParams p{};
  p.norm_ref = norm_ref.data<float>();
  p.ts = ts.data<double>();
  p.pose = pose.data<float>();
  p.entries = static_cast<int>(entries);
  p.per_entry = per_entry;
  p.n_control = n_control;
  p.feats = static_cast<int>(feats);
  for (int64_t k = 0; k < feats; ++k) p.dim_t[k] = dim_t[k];
  ops::cuda::dispatch_float(out_dt, "temporal encodings", [&](auto tag) {
    using T = decltype(tag);
    temporal_encodings_kernel<T><<<static_cast<unsigned>(entries), 128, 0,
                                   omnirt::cuda::current_stream()>>>(
        p, static_cast<T*>(nerf.raw()), static_cast<T*>(ego.raw()), static_cast<T*>(tpe.raw()));
    OMNIRT_CUDA_CHECK_LAUNCH("temporal_encodings_kernel");
  });
}

void branch_outputs(const Tensor& cls, const Tensor& reg, const Tensor& ref_inv, int ref_cols,
                    const std::array<float, 6>& pc, Tensor& cls_out, Tensor& reg_out) {
  auto check = [](const Tensor& t, bool f32, const char* what) {
    OMNIRT_CHECK(t.device() == Device::CUDA && t.is_contiguous() && t.ndim() >= 1 &&
                     (!f32 || t.dtype() == DType::F32),
                 "branch outputs (CUDA): ", what, ": expected a contiguous ",
                 f32 ? "F32 " : "", "CUDA tensor, got ", t.describe());
  };
  check(cls, false, "cls");
  check(reg, false, "reg");
  check(ref_inv, true, "ref_inv");
  check(cls_out, true, "cls_out");
  check(reg_out, true, "reg_out");
  OMNIRT_CHECK(cls.dtype() == reg.dtype(), "branch outputs (CUDA): cls is ",
               dtype_name(cls.dtype()), " but reg is ", dtype_name(reg.dtype()));
  const int64_t n_cls = cls.numel(), n_reg = reg.numel();
  const int cols = static_cast<int>(reg.dim(-1));
  OMNIRT_CHECK(cls_out.numel() == n_cls && reg_out.numel() == n_reg,
               "branch outputs (CUDA): outputs hold ", cls_out.numel(), " and ", reg_out.numel(),
               " values, expected ", n_cls, " and ", n_reg);
  const int64_t rows = n_reg / std::max(cols, 1);
  OMNIRT_CHECK(ref_cols >= 1 && ref_cols <= cols && ref_inv.numel() % ref_cols == 0 &&
                   ref_inv.numel() > 0 && rows % (ref_inv.numel() / ref_cols) == 0,
               "branch outputs (CUDA): ref_inv ", ref_inv.describe(), " does not fit reg ",
               reg.describe(), " with ", ref_cols, " reference columns");
  const int64_t queries = ref_inv.numel() / ref_cols;
  BranchRange range{};
  for (int a = 0; a < 3; ++a) {
    range.lo[a] = pc[a];
    range.hi[a] = pc[a + 3];
  }
  const int64_t total = n_cls + n_reg;
  if (total == 0) return;
  const int threads = 256;
  const unsigned blocks = static_cast<unsigned>((total + threads - 1) / threads);
  ops::cuda::dispatch_float(reg.dtype(), "branch outputs", [&](auto tag) {
    using T = decltype(tag);
    branch_outputs_kernel<T><<<blocks, threads, 0, omnirt::cuda::current_stream()>>>(
        static_cast<const T*>(cls.raw()), n_cls, static_cast<const T*>(reg.raw()), n_reg, cols,
        ref_inv.data<float>(), queries, ref_cols, range, cls_out.data<float>(),
        reg_out.data<float>());
    OMNIRT_CUDA_CHECK_LAUNCH("branch_outputs_kernel");
  });
}

void gather_rows_f32(const Tensor& src, const std::vector<int>& ids, Tensor& out) {
  OMNIRT_CHECK(src.device() == Device::CUDA && src.is_contiguous() && src.ndim() == 2,
               "gather rows (CUDA): src: expected a contiguous 2-D CUDA tensor, got ",
               src.describe());
  const int64_t rows = src.dim(0), cols = src.dim(1), k = static_cast<int64_t>(ids.size());
  OMNIRT_CHECK(out.device() == Device::CUDA && out.is_contiguous() && out.dtype() == DType::F32,
               "gather rows (CUDA): out: expected a contiguous F32 CUDA tensor, got ",
               out.describe());
  expect_shape(out, {k, cols}, "gather rows (CUDA): out");
  for (int64_t i = 0; i < k; ++i)
    OMNIRT_CHECK(ids[i] >= 0 && ids[i] < rows, "gather rows (CUDA): ids[", i, "] = ", ids[i],
                 " is outside [0, ", rows, ")");
  if (k == 0 || cols == 0) return;
  ops::cuda::dispatch_float(src.dtype(), "gather rows", [&](auto tag) {
    using T = decltype(tag);
    for (int64_t first = 0; first < k; first += kGatherChunk) {
      const int64_t n = std::min<int64_t>(kGatherChunk, k - first);
      GatherIds g{};
      for (int64_t i = 0; i < n; ++i) g.ids[i] = ids[first + i];
      gather_rows_kernel<T><<<static_cast<unsigned>(n), 128, 0, omnirt::cuda::current_stream()>>>(
          static_cast<const T*>(src.raw()), cols, g, out.data<float>() + first * cols);
      OMNIRT_CUDA_CHECK_LAUNCH("gather_rows_kernel");
    }
  });
}

AsyncDownload::AsyncDownload() {
  cudaEvent_t e = nullptr;
  OMNIRT_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
  event_ = e;
}

AsyncDownload::~AsyncDownload() {
  // No throwing from a destructor: finish a copy still in flight, then release quietly.
  if (event_ != nullptr) {
    if (pending_) (void)cudaEventSynchronize(static_cast<cudaEvent_t>(event_));
    (void)cudaEventDestroy(static_cast<cudaEvent_t>(event_));
  }
  if (pinned_ != nullptr) (void)cudaFreeHost(pinned_);
}

void AsyncDownload::start(const Tensor& src) {
  if (pending_) {  // a copy never collected (an error between start and wait): let it finish
    OMNIRT_CUDA_CHECK(cudaEventSynchronize(static_cast<cudaEvent_t>(event_)));
    src_ = Tensor();
    pending_ = false;
  }
  OMNIRT_CHECK(src.device() == Device::CUDA && src.is_contiguous(),
               "async download: expected a contiguous CUDA tensor, got ", src.describe());
  const size_t bytes = src.nbytes();
  if (bytes > capacity_) {
    if (pinned_ != nullptr) OMNIRT_CUDA_CHECK(cudaFreeHost(pinned_));
    pinned_ = nullptr;
    capacity_ = 0;
    OMNIRT_CUDA_CHECK(cudaMallocHost(&pinned_, bytes));
    capacity_ = bytes;
  }
  cudaStream_t stream = omnirt::cuda::current_stream();
  if (bytes > 0)
    OMNIRT_CUDA_CHECK(
        cudaMemcpyAsync(pinned_, src.raw(), bytes, cudaMemcpyDeviceToHost, stream));
  OMNIRT_CUDA_CHECK(cudaEventRecord(static_cast<cudaEvent_t>(event_), stream));
  src_ = src;
  pending_ = true;
}

Tensor AsyncDownload::wait() {
  OMNIRT_CHECK(pending_, "async download: wait() without start()");
  OMNIRT_CUDA_CHECK(cudaEventSynchronize(static_cast<cudaEvent_t>(event_)));
  Tensor out = Tensor::empty(src_.shape(), src_.dtype());
  if (out.nbytes() > 0) std::memcpy(out.raw(), pinned_, out.nbytes());
  src_ = Tensor();
  pending_ = false;
  return out;
}

HeadsStream::HeadsStream() {
  cudaStream_t s = nullptr;
  OMNIRT_CUDA_CHECK(cudaStreamCreate(&s));  // blocking: ordered with the legacy default stream
  stream_ = s;
  cudaEvent_t e = nullptr;
  OMNIRT_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
  in_ = e;
  OMNIRT_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
  out_ = e;
}

HeadsStream::~HeadsStream() {
  if (stream_ != nullptr) (void)cudaStreamSynchronize(static_cast<cudaStream_t>(stream_));
  if (in_ != nullptr) (void)cudaEventDestroy(static_cast<cudaEvent_t>(in_));
  if (out_ != nullptr) (void)cudaEventDestroy(static_cast<cudaEvent_t>(out_));
  if (stream_ != nullptr) (void)cudaStreamDestroy(static_cast<cudaStream_t>(stream_));
}

HeadsStream::Use::Use(HeadsStream& s) : s_(s), caller_(omnirt::cuda::current_stream()) {
  cudaStream_t caller = static_cast<cudaStream_t>(caller_);
  OMNIRT_CUDA_CHECK(cudaEventRecord(static_cast<cudaEvent_t>(s_.in_), caller));
  OMNIRT_CUDA_CHECK(cudaStreamWaitEvent(static_cast<cudaStream_t>(s_.stream_),
                                        static_cast<cudaEvent_t>(s_.in_), 0));
  guard_ = std::make_unique<omnirt::cuda::StreamGuard>(static_cast<cudaStream_t>(s_.stream_));
}

HeadsStream::Use::~Use() {
  guard_.reset();
  // No throwing from a destructor: a failure here resurfaces at the next checked CUDA call.
  (void)cudaEventRecord(static_cast<cudaEvent_t>(s_.out_), static_cast<cudaStream_t>(s_.stream_));
  (void)cudaStreamWaitEvent(static_cast<cudaStream_t>(caller_), static_cast<cudaEvent_t>(s_.out_), 0);
}

SegmentGraph::~SegmentGraph() { reset(); }

void SegmentGraph::reset() {
  if (exec_ != nullptr) (void)cudaGraphExecDestroy(static_cast<cudaGraphExec_t>(exec_));
  if (graph_ != nullptr) (void)cudaGraphDestroy(static_cast<cudaGraph_t>(graph_));
  exec_ = graph_ = nullptr;
  nodes_ = 0;
}

void SegmentGraph::capture(const std::function<void()>& fn) {
  reset();
  cudaStream_t stream = omnirt::cuda::current_stream();
  OMNIRT_CHECK(stream != nullptr,
               "CUDA graph capture: the current stream is the legacy default stream");
  OMNIRT_CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
  try {
    fn();
  } catch (...) {
    cudaGraph_t partial = nullptr;
    (void)cudaStreamEndCapture(stream, &partial);
    if (partial != nullptr) (void)cudaGraphDestroy(partial);
    (void)cudaGetLastError();
    throw;
  }
  cudaGraph_t graph = nullptr;
  const cudaError_t end = cudaStreamEndCapture(stream, &graph);
  if (end != cudaSuccess) {  // e.g. invalidated by a call that cannot be captured
    if (graph != nullptr) (void)cudaGraphDestroy(graph);
    (void)cudaGetLastError();  // not sticky: the stream works normally again
    OMNIRT_FAIL("CUDA graph capture failed: ", cudaGetErrorName(end), " (",
                cudaGetErrorString(end), ")");
  }
  graph_ = graph;
  size_t n = 0;
  cudaGraphExec_t exec = nullptr;
  const cudaError_t nodes = cudaGraphGetNodes(graph, nullptr, &n);
  const cudaError_t inst = nodes == cudaSuccess ? cudaGraphInstantiate(&exec, graph, 0) : nodes;
  if (inst != cudaSuccess) {
    reset();
    (void)cudaGetLastError();
    OMNIRT_FAIL("CUDA graph instantiation failed: ", cudaGetErrorName(inst), " (",
                cudaGetErrorString(inst), ")");
  }
  nodes_ = n;
  exec_ = exec;
}

void SegmentGraph::launch() {
  OMNIRT_CHECK(exec_ != nullptr, "CUDA graph: launch() before capture()");
  OMNIRT_CUDA_CHECK(
      cudaGraphLaunch(static_cast<cudaGraphExec_t>(exec_), omnirt::cuda::current_stream()));
}

}  // namespace omnirt::vision::cuda
