// CUDA GEMM through cuBLASLt.
//
// Row-major vs column-major. cuBLASLt is column-major: a buffer holding a row-major R x C
// matrix is, read column-major, the C x R matrix (its transpose) with leading dimension C.
// We want, row-major, C[M, N] = op(A)[M, K] op(B)[K, N]. Transposing both sides,
// C^T[N, M] = op(B)^T op(A)^T, and C^T is exactly what the C buffer holds when read
// column-major (N x M, ld N). So we hand cuBLASLt the *swapped* operands:
//   cuBLASLt "A" := our b buffer. Read column-major it is b^T, i.e. [N, K] when b was [K, N]
//                   (no transpose needed: op N), or [K, N] when b was [N, K] (trans_b: op T).
//   cuBLASLt "B" := our a buffer, by the same reasoning op N unless trans_a.
//   cuBLASLt m, n, k := N, M, K; "C"/"D" := our c buffer, N x M with ld N.
// For Linear (y = x W^T with W [N, K]) this is D^T = W X^T: cuBLASLt A = W buffer ([K, N]
// column-major, op T), B = x buffer ([K, M] column-major, op N).
// The bias epilogue adds a vector of length "rows of D" = N to every column of D, which in
// row-major terms is a bias per output feature added to every row of C -- what we want.
//
// Resources: one cublasLt handle per (thread, device); one workspace per (thread, device,
// stream) so that work queued on two streams from one thread never shares scratch memory; and
// a per-thread cache of descriptors plus the heuristic's chosen algorithm keyed by everything
// that affects the choice (shape, transposes, dtype, compute mode, epilogue, pointer
// alignment), so a decode step repeats no heuristic queries.
#include "ops/cuda/gemm.h"

#include <cublasLt.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <map>
#include <tuple>
#include <utility>
#include <vector>

#include "core/cuda_check.h"
#include "core/error.h"

#define OMNIRT_CUBLAS_CHECK(call)                                                          \
  do {                                                                                     \
    cublasStatus_t omnirt_st_ = (call);                                                    \
    if (omnirt_st_ != CUBLAS_STATUS_SUCCESS) {                                             \
      OMNIRT_FAIL("cuBLASLt error in ", #call, ": status ", static_cast<int>(omnirt_st_)); \
    }                                                                                      \
  } while (0)

namespace omnirt::ops::cuda {
namespace {

constexpr size_t kWorkspaceBytes = size_t{32} << 20;  // 32 MiB

// Everything that changes the descriptors or the algorithm choice.
struct PlanKey {
  int device;
  int64_t batch, m, n, k;  // our (row-major) problem
  bool trans_a, trans_b;
  DType dtype;
  Fp32Compute compute;
  bool has_bias;
  GemmActivation activation;
  uint32_t align_a, align_b, align_c, align_bias;
  bool autotune;
  // FP8 (linear_fp8): a and b are E4M3 and `dtype` is the output's (F16/BF16); per-tensor
  // scales are set on the descriptor per call.
  bool fp8;
  bool fast_accum;
  auto operator<=>(const PlanKey&) const = default;
};

struct Plan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t layout_a = nullptr, layout_b = nullptr, layout_c = nullptr;
  cublasLtMatmulAlgo_t algo{};
  // GemmOptions::autotune: the heuristic's candidates, best first, until the first call has
  // timed them (then cleared, and `algo` is the fastest).
  std::vector<cublasLtMatmulAlgo_t> candidates;
};

// Candidates timed per autotuned plan.
constexpr int kAutotuneCandidates = 8;

// Per-thread cuBLASLt state. Destroyed at thread exit; errors there are ignored (the CUDA
// context may already be gone at process exit).
struct LtState {
  std::map<int, cublasLtHandle_t> handles;
  std::map<std::pair<int, cudaStream_t>, void*> workspaces;
  std::map<PlanKey, Plan> plans;
  ~LtState() {
    for (auto& [key, plan] : plans) {
      cublasLtMatrixLayoutDestroy(plan.layout_a);
      cublasLtMatrixLayoutDestroy(plan.layout_b);
      cublasLtMatrixLayoutDestroy(plan.layout_c);
      cublasLtMatmulDescDestroy(plan.desc);
    }
    for (auto& [key, ws] : workspaces) cudaFree(ws);
    for (auto& [dev, h] : handles) cublasLtDestroy(h);
  }
};
thread_local LtState t_lt;

cublasLtHandle_t handle_for(int device) {
  auto it = t_lt.handles.find(device);
  if (it != t_lt.handles.end()) return it->second;
  cublasLtHandle_t h = nullptr;
  OMNIRT_CUBLAS_CHECK(cublasLtCreate(&h));
  t_lt.handles.emplace(device, h);
  return h;
}

void* workspace_for(int device, cudaStream_t stream) {
  auto key = std::make_pair(device, stream);
  auto it = t_lt.workspaces.find(key);
  if (it != t_lt.workspaces.end()) return it->second;
  void* ws = nullptr;
  OMNIRT_CUDA_CHECK(cudaMalloc(&ws, kWorkspaceBytes));
  t_lt.workspaces.emplace(key, ws);
  return ws;
}

// Largest power of two (<= 256) dividing the address and the batch stride in bytes: what
// cuBLASLt may assume about every matrix start.
uint32_t alignment_of(const void* p, int64_t batch_stride_bytes) {
  uint64_t v = reinterpret_cast<uintptr_t>(p) | static_cast<uint64_t>(batch_stride_bytes) | 256;
  return static_cast<uint32_t>(v & (~v + 1));  // lowest set bit
}

cudaDataType_t cuda_type(DType t) {
  switch (t) {
    case DType::F32:
      return CUDA_R_32F;
    case DType::F16:
      return CUDA_R_16F;
    case DType::BF16:
      return CUDA_R_16BF;
    default:
      OMNIRT_FAIL("gemm (CUDA): unsupported dtype ", dtype_name(t));
  }
}

cublasLtEpilogue_t epilogue_for(bool has_bias, GemmActivation act) {
  switch (act) {
    case GemmActivation::None:
      return has_bias ? CUBLASLT_EPILOGUE_BIAS : CUBLASLT_EPILOGUE_DEFAULT;
    case GemmActivation::Relu:
      return has_bias ? CUBLASLT_EPILOGUE_RELU_BIAS : CUBLASLT_EPILOGUE_RELU;
    case GemmActivation::GeluTanh:
      return has_bias ? CUBLASLT_EPILOGUE_GELU_BIAS : CUBLASLT_EPILOGUE_GELU;
  }
  OMNIRT_FAIL("gemm (CUDA): unknown activation");
}

cublasLtMatrixLayout_t make_layout(cudaDataType_t type, int64_t rows, int64_t cols, int64_t batch) {
  cublasLtMatrixLayout_t layout = nullptr;
  OMNIRT_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&layout, type, static_cast<uint64_t>(rows),
                                                 static_cast<uint64_t>(cols), rows));
  if (batch > 1) {
    const int32_t count = static_cast<int32_t>(batch);
    const int64_t stride = rows * cols;
    OMNIRT_CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(layout, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT,
                                                         &count, sizeof(count)));
    OMNIRT_CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(
        layout, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride, sizeof(stride)));
  }
  return layout;
}

// Sets the FP8 per-tensor scale pointers: cuBLASLt's A is our b (the weight), B is our a.
void set_fp8_scales(cublasLtMatmulDesc_t desc, const void* scale_a, const void* scale_b) {
  const void* lt_a = scale_b;
  const void* lt_b = scale_a;
  OMNIRT_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER,
                                                     &lt_a, sizeof(lt_a)));
  OMNIRT_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER,
                                                     &lt_b, sizeof(lt_b)));
}

// scale_a / scale_b: FP8 only, our a's and b's per-tensor scales (device pointers).
Plan make_plan(cublasLtHandle_t handle, const PlanKey& key, const void* bias_ptr,
               const void* scale_a = nullptr, const void* scale_b = nullptr) {
  const cudaDataType_t type = cuda_type(key.dtype);  // C, D and bias
  const cudaDataType_t input_type = key.fp8 ? CUDA_R_8F_E4M3 : type;  // A and B
  const cublasComputeType_t compute = key.dtype == DType::F32 && key.compute == Fp32Compute::TF32
                                          ? CUBLAS_COMPUTE_32F_FAST_TF32
                                          : CUBLAS_COMPUTE_32F;
  Plan plan;
  OMNIRT_CUBLAS_CHECK(cublasLtMatmulDescCreate(&plan.desc, compute, CUDA_R_32F));
  // Swapped operands (see the top of the file): cuBLASLt A = our b, cuBLASLt B = our a.
  const cublasOperation_t op_a = key.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t op_b = key.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  OMNIRT_CUBLAS_CHECK(
      cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_TRANSA, &op_a, sizeof(op_a)));
  OMNIRT_CUBLAS_CHECK(
      cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_TRANSB, &op_b, sizeof(op_b)));
  if (key.fp8) {
    const int8_t fast = key.fast_accum ? 1 : 0;
    OMNIRT_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_FAST_ACCUM,
                                                       &fast, sizeof(fast)));
    set_fp8_scales(plan.desc, scale_a, scale_b);
  }
  const cublasLtEpilogue_t epilogue = epilogue_for(key.has_bias, key.activation);
  OMNIRT_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_EPILOGUE,
                                                     &epilogue, sizeof(epilogue)));
  if (key.has_bias) {
    OMNIRT_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(
        plan.desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &type, sizeof(type)));
    OMNIRT_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                                                       &bias_ptr, sizeof(bias_ptr)));
  }
  // Column-major layouts of the stored buffers (rows = the row-major row length).
  const int64_t m = key.m, n = key.n, k = key.k;
  plan.layout_a = make_layout(input_type, key.trans_b ? k : n, key.trans_b ? n : k, key.batch);
  plan.layout_b = make_layout(input_type, key.trans_a ? m : k, key.trans_a ? k : m, key.batch);
  plan.layout_c = make_layout(type, n, m, key.batch);

  cublasLtMatmulPreference_t pref = nullptr;
  OMNIRT_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
  const uint64_t ws_bytes = kWorkspaceBytes;
  cublasLtMatmulHeuristicResult_t results[kAutotuneCandidates]{};
  const int wanted = key.autotune ? kAutotuneCandidates : 1;
  int found = 0;
  cublasStatus_t st = cublasLtMatmulPreferenceSetAttribute(
      pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws_bytes, sizeof(ws_bytes));
  // cuBLASLt A is our b and B is our a (swapped), C and D are our c.
  const std::pair<cublasLtMatmulPreferenceAttributes_t, uint32_t> aligns[] = {
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, key.align_b},
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, key.align_a},
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, key.align_c},
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, key.align_c}};
  for (const auto& [attr, value] : aligns) {
    if (st == CUBLAS_STATUS_SUCCESS) {
      st = cublasLtMatmulPreferenceSetAttribute(pref, attr, &value, sizeof(value));
    }
  }
  if (st == CUBLAS_STATUS_SUCCESS) {
    st = cublasLtMatmulAlgoGetHeuristic(handle, plan.desc, plan.layout_a, plan.layout_b,
                                        plan.layout_c, plan.layout_c, pref, wanted, results, &found);
  }
  cublasLtMatmulPreferenceDestroy(pref);
  if (st != CUBLAS_STATUS_SUCCESS || found == 0 || results[0].state != CUBLAS_STATUS_SUCCESS) {
    cublasLtMatrixLayoutDestroy(plan.layout_a);
    cublasLtMatrixLayoutDestroy(plan.layout_b);
    cublasLtMatrixLayoutDestroy(plan.layout_c);
    cublasLtMatmulDescDestroy(plan.desc);
    OMNIRT_FAIL("gemm (CUDA): cuBLASLt found no algorithm for M=", m, " N=", n, " K=", k,
                " batch=", key.batch, key.fp8 ? " FP8 E4M3 inputs, output " : " dtype ",
                dtype_name(key.dtype), " activation ",
                gemm_activation_name(key.activation), key.has_bias ? " with bias" : "", " (status ",
                static_cast<int>(st), ", alignments a/b/c ", key.align_a, "/", key.align_b, "/",
                key.align_c, ")");
  }
  plan.algo = results[0].algo;
  if (key.autotune) {
    for (int i = 0; i < found; ++i)
      if (results[i].state == CUBLAS_STATUS_SUCCESS) plan.candidates.push_back(results[i].algo);
    if (plan.candidates.size() < 2) plan.candidates.clear();  // nothing to choose between
  }
  return plan;
}

// Times each candidate of `plan` on the caller's operands and keeps the fastest in plan.algo.
// D goes to a scratch buffer, so c (read when beta != 0, e.g. a residual updated in place) is
// never modified here. A candidate that fails to launch is skipped. Not done while the stream
// is being captured into a graph (the events would be captured too): the heuristic's first
// choice is kept then.
void autotune(cublasLtHandle_t handle, Plan& plan, const void* alpha, const void* a,
              const void* b, const void* beta, const void* c, size_t c_bytes, void* workspace,
              cudaStream_t stream) {
  std::vector<cublasLtMatmulAlgo_t> candidates = std::move(plan.candidates);
  plan.candidates.clear();
  cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
  OMNIRT_CUDA_CHECK(cudaStreamIsCapturing(stream, &capture));
  if (capture != cudaStreamCaptureStatusNone) return;
  void* scratch = nullptr;
  OMNIRT_CUDA_CHECK(cudaMallocAsync(&scratch, c_bytes, stream));
  cudaEvent_t start = nullptr, stop = nullptr;
  OMNIRT_CUDA_CHECK(cudaEventCreate(&start));
  OMNIRT_CUDA_CHECK(cudaEventCreate(&stop));
  float best_ms = 0.f;
  bool have_best = false;
  constexpr int kReps = 3;
  for (const cublasLtMatmulAlgo_t& algo : candidates) {
    auto run = [&] {
      return cublasLtMatmul(handle, plan.desc, alpha, b, plan.layout_a, a, plan.layout_b, beta, c,
                            plan.layout_c, scratch, plan.layout_c, &algo, workspace,
                            kWorkspaceBytes, stream);
    };
    if (run() != CUBLAS_STATUS_SUCCESS) continue;  // warm-up; skip what cannot run
    OMNIRT_CUDA_CHECK(cudaEventRecord(start, stream));
    bool ok = true;
    for (int i = 0; i < kReps && ok; ++i) ok = run() == CUBLAS_STATUS_SUCCESS;
    OMNIRT_CUDA_CHECK(cudaEventRecord(stop, stream));
    OMNIRT_CUDA_CHECK(cudaEventSynchronize(stop));
    float ms = 0.f;
    OMNIRT_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
    if (ok && (!have_best || ms < best_ms)) {
      best_ms = ms;
      plan.algo = algo;
      have_best = true;
    }
  }
  OMNIRT_CUDA_CHECK(cudaEventDestroy(start));
  OMNIRT_CUDA_CHECK(cudaEventDestroy(stop));
  OMNIRT_CUDA_CHECK(cudaFreeAsync(scratch, stream));
}

}  // namespace

void gemm(const GemmDims& dims, const Tensor& a, const Tensor& b, Tensor& c, bool trans_a,
          bool trans_b, float alpha, float beta, const Tensor& bias, const GemmOptions& options) {
  int device = 0;
  OMNIRT_CUDA_CHECK(cudaGetDevice(&device));
  const int64_t elem = dtype_bits(a.dtype()) / 8;
  const int64_t batch_stride_a = dims.batch > 1 ? dims.m * dims.k * elem : 0;
  const int64_t batch_stride_b = dims.batch > 1 ? dims.k * dims.n * elem : 0;
  const int64_t batch_stride_c = dims.batch > 1 ? dims.m * dims.n * elem : 0;
  const void* bias_ptr = bias.defined() ? bias.raw() : nullptr;

  PlanKey key{};
  key.device = device;
  key.batch = dims.batch;
  key.m = dims.m;
  key.n = dims.n;
  key.k = dims.k;
  key.trans_a = trans_a;
  key.trans_b = trans_b;
  key.dtype = a.dtype();
  key.compute = options.fp32_compute;
  key.has_bias = bias.defined();
  key.activation = options.activation;
  key.align_a = alignment_of(a.raw(), batch_stride_a);
  key.align_b = alignment_of(b.raw(), batch_stride_b);
  key.align_c = alignment_of(c.raw(), batch_stride_c);
  key.align_bias = bias_ptr ? alignment_of(bias_ptr, 0) : 0;
  key.autotune = options.autotune;
  key.fp8 = false;
  key.fast_accum = false;

  cublasLtHandle_t handle = handle_for(device);
  auto it = t_lt.plans.find(key);
  if (it == t_lt.plans.end()) it = t_lt.plans.emplace(key, make_plan(handle, key, bias_ptr)).first;
  Plan& plan = it->second;
  if (bias_ptr) {
    OMNIRT_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                                                       &bias_ptr, sizeof(bias_ptr)));
  }
  cudaStream_t stream = omnirt::cuda::current_stream();
  void* workspace = workspace_for(device, stream);
  if (!plan.candidates.empty()) {
    autotune(handle, plan, &alpha, a.raw(), b.raw(), &beta, c.raw(),
             static_cast<size_t>(dims.batch * dims.m * dims.n * elem), workspace, stream);
  }
  // Swapped operands: cuBLASLt A = b, B = a (see the top of the file).
  OMNIRT_CUBLAS_CHECK(cublasLtMatmul(
      handle, plan.desc, &alpha, b.raw(), plan.layout_a, a.raw(), plan.layout_b, &beta, c.raw(),
      plan.layout_c, c.raw(), plan.layout_c, &plan.algo, workspace, kWorkspaceBytes, stream));
}

void linear_fp8(const GemmDims& dims, const Tensor& x_q, const Tensor& x_scale,
                const Tensor& w_q, const Tensor& w_scale, const Tensor& bias, Tensor& out,
                float beta, const Fp8GemmOptions& options) {
  int device = 0;
  OMNIRT_CUDA_CHECK(cudaGetDevice(&device));
  const void* bias_ptr = bias.defined() ? bias.raw() : nullptr;
  PlanKey key{};
  key.device = device;
  key.batch = 1;
  key.m = dims.m;
  key.n = dims.n;
  key.k = dims.k;
  // y = x W^T: a = x [M, K], b = W [N, K] transposed -> cuBLASLt A = W with op T, B = x with
  // op N: the "TN" form Hopper's FP8 kernels require.
  key.trans_a = false;
  key.trans_b = true;
  key.dtype = out.dtype();
  key.compute = Fp32Compute::Exact;
  key.has_bias = bias.defined();
  key.activation = options.activation;
  key.align_a = alignment_of(x_q.raw(), 0);
  key.align_b = alignment_of(w_q.raw(), 0);
  key.align_c = alignment_of(out.raw(), 0);
  key.align_bias = bias_ptr ? alignment_of(bias_ptr, 0) : 0;
  key.autotune = options.autotune;
  key.fp8 = true;
  key.fast_accum = options.fast_accum;

  cublasLtHandle_t handle = handle_for(device);
  auto it = t_lt.plans.find(key);
  if (it == t_lt.plans.end()) {
    it = t_lt.plans.emplace(key, make_plan(handle, key, bias_ptr, x_scale.raw(), w_scale.raw()))
             .first;
  }
  Plan& plan = it->second;
  if (bias_ptr) {
    OMNIRT_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                                                       &bias_ptr, sizeof(bias_ptr)));
  }
  set_fp8_scales(plan.desc, x_scale.raw(), w_scale.raw());
  cudaStream_t stream = omnirt::cuda::current_stream();
  void* workspace = workspace_for(device, stream);
  const float alpha = 1.f;  // the scales carry the magnitude
  if (!plan.candidates.empty()) {
    autotune(handle, plan, &alpha, x_q.raw(), w_q.raw(), &beta, out.raw(), out.nbytes(), workspace,
             stream);
  }
  OMNIRT_CUBLAS_CHECK(cublasLtMatmul(handle, plan.desc, &alpha, w_q.raw(), plan.layout_a,
                                     x_q.raw(), plan.layout_b, &beta, out.raw(), plan.layout_c,
                                     out.raw(), plan.layout_c, &plan.algo, workspace,
                                     kWorkspaceBytes, stream));
}

}  // namespace omnirt::ops::cuda
