#include "core/stage_timer.h"

#include "core/device.h"
#include "core/error.h"
#ifdef OMNIRT_WITH_CUDA
#include "core/cuda_check.h"
#endif

namespace omnirt {
namespace {
thread_local StageTimer* t_active = nullptr;
thread_local int t_paused = 0;

double ms_between(std::chrono::steady_clock::time_point a,
                  std::chrono::steady_clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}
}  // namespace

StageTimer::Pause::Pause() { ++t_paused; }
StageTimer::Pause::~Pause() { --t_paused; }

StageTimer::StageTimer() : gpu_(cuda_available()) {}

StageTimer::~StageTimer() {
  deactivate();
#ifdef OMNIRT_WITH_CUDA
  if (open_) (void)cudaDeviceSynchronize();
  for (void* e : events_) (void)cudaEventDestroy(static_cast<cudaEvent_t>(e));
#endif
}

void StageTimer::activate() { t_active = this; }
void StageTimer::deactivate() {
  if (t_active == this) t_active = nullptr;
}

// The next event of the span, recorded now on the current stream.
#ifdef OMNIRT_WITH_CUDA
static void record_event(std::vector<void*>& events, size_t& used) {
  if (used == events.size()) {
    cudaEvent_t e = nullptr;
    OMNIRT_CUDA_CHECK(cudaEventCreate(&e));
    events.push_back(e);
  }
  OMNIRT_CUDA_CHECK(
      cudaEventRecord(static_cast<cudaEvent_t>(events[used]), cuda::current_stream()));
  ++used;
}
#endif

void StageTimer::start() {
  if (open_) finish();
  device_synchronize();
  ++span_;
  open_ = true;
  used_events_ = 0;
  event_stage_.clear();
#ifdef OMNIRT_WITH_CUDA
  if (gpu_) record_event(events_, used_events_);
#endif
  last_items_ = gpu_work_items();
  span_start_ = last_ = std::chrono::steady_clock::now();
}

void StageTimer::finish() {
  if (!open_) return;
  const auto queued = last_;
  device_synchronize();
  const auto done = std::chrono::steady_clock::now();
  frame_wall_ms_.push_back(ms_between(span_start_, done));
  frame_queue_ms_.push_back(ms_between(span_start_, queued));
  for (Stage& s : stages_) {  // a stage not marked in this span took 0
    s.host_ms.resize(span_ + 1, 0.0);
    s.work_items.resize(span_ + 1, 0.0);
  }
#ifdef OMNIRT_WITH_CUDA
  if (gpu_) {
    for (Stage& s : stages_)
      if (static_cast<int>(s.gpu_ms.size()) <= span_) s.gpu_ms.resize(span_ + 1, 0.0);
    for (size_t i = 1; i < used_events_; ++i) {
      float ms = 0;
      OMNIRT_CUDA_CHECK(cudaEventElapsedTime(&ms, static_cast<cudaEvent_t>(events_[i - 1]),
                                             static_cast<cudaEvent_t>(events_[i])));
      stages_[event_stage_[i - 1]].gpu_ms[span_] += ms;
    }
    float span_ms = 0;
    if (used_events_ > 1)
      OMNIRT_CUDA_CHECK(cudaEventElapsedTime(&span_ms, static_cast<cudaEvent_t>(events_[0]),
                                             static_cast<cudaEvent_t>(events_[used_events_ - 1])));
    frame_gpu_ms_.push_back(span_ms);
  }
#endif
  open_ = false;
}

void StageTimer::mark(const char* stage) {
  if (t_active != nullptr && t_paused == 0) t_active->record(stage);
}

StageTimer::Stage& StageTimer::stage_named(const char* stage) {
  auto it = stages_.begin();
  while (it != stages_.end() && it->name != stage) ++it;
  if (it == stages_.end()) {
    stages_.push_back(Stage{stage, {}, {}, {}});
    it = stages_.end() - 1;
  }
  // Every span has a value for every stage seen so far (0 when not marked in that span).
  if (static_cast<int>(it->host_ms.size()) <= span_) {
    it->host_ms.resize(span_ + 1, 0.0);
    it->work_items.resize(span_ + 1, 0.0);
  }
  return *it;
}

void StageTimer::record(const char* stage) {
  OMNIRT_CHECK(open_, "StageTimer: mark(\"", stage, "\") outside a span (call start() first)");
  const uint64_t items = gpu_work_items();
  Stage& s = stage_named(stage);
#ifdef OMNIRT_WITH_CUDA
  if (gpu_) {
    record_event(events_, used_events_);
    event_stage_.push_back(static_cast<int>(&s - stages_.data()));
  }
#endif
  const auto now = std::chrono::steady_clock::now();
  s.host_ms[span_] += ms_between(last_, now);
  s.work_items[span_] += static_cast<double>(items - last_items_);
  last_ = now;
  last_items_ = gpu_work_items();  // the event record above is not the next stage's work
}

}  // namespace omnirt
