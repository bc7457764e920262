// Per-stage breakdown of a frame for diagnosis (`omnirt bench vision --stages`).
//
// Engines call `StageTimer::mark("name")` at the end of each stage. Marks cost nothing unless a
// StageTimer is active on the calling thread. When one is, a mark records, for the stage that
// just ended:
//   * its host time: wall clock since the previous mark, without synchronising (the time the host
//     spent queuing the stage's work, or waiting in it when the stage itself waits);
//   * its GPU time (CUDA builds with a device): a CUDA event is recorded on the current stream at
//     each mark (and at start()), and at finish() the elapsed time between consecutive events is
//     attributed to the stages. Nothing is synchronised between marks, so the frame runs as it
//     does unprofiled and the GPU times add up to the frame's GPU span. A stage's GPU time is the
//     span from the previous event to its own on the GPU, idle gaps included: when the GPU waits
//     for the host to queue work (a launch-bound stage), its GPU time is close to its host time;
//   * its GPU work items: how many kernels, cuBLASLt calls and asynchronous copies/memsets it
//     queued (gpu_work_items(), i.e. calls of cuda::current_stream(), which every launch site
//     makes once; a CUDA graph replay counts as one);
// and per span (start() ... finish()): the host wall time including the final synchronisation,
// the host time until the last mark (how long queuing the frame took) and the GPU span.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace omnirt {

// GPU work items queued by this thread so far (see above); 0 without CUDA.
uint64_t gpu_work_items();

class StageTimer {
 public:
  StageTimer();
  ~StageTimer();
  StageTimer(const StageTimer&) = delete;
  StageTimer& operator=(const StageTimer&) = delete;

  // Makes this timer the thread's active one until deactivated (or destroyed).
  void activate();
  void deactivate();

  // Starts a new measured span: synchronises the device first (so that earlier work does not
  // count) and records the starting event. Finishes an unfinished previous span first.
  void start();
  // Ends the span: waits for the device and attributes the GPU times. Call after the frame.
  void finish();
  // Ends the stage running since the previous mark on the active timer, if any.
  static void mark(const char* stage);
  // While one exists on a thread, mark() does nothing there (e.g. during a CUDA graph capture,
  // where recording an event would become part of the graph).
  struct Pause {
    Pause();
    ~Pause();
    Pause(const Pause&) = delete;
    Pause& operator=(const Pause&) = delete;
  };

  struct Stage {
    std::string name;
    // One value per span; a stage marked several times in a span (e.g. per layer) accumulates.
    std::vector<double> host_ms, gpu_ms;  // gpu_ms empty when the GPU is not timed
    std::vector<double> work_items;
  };
  // Stages in first-seen order.
  const std::vector<Stage>& stages() const { return stages_; }
  // Per span: host wall time from start() to the end of finish(); host time from start() to the
  // last mark; GPU span from start() to the last mark (empty when the GPU is not timed).
  const std::vector<double>& frame_wall_ms() const { return frame_wall_ms_; }
  const std::vector<double>& frame_host_queue_ms() const { return frame_queue_ms_; }
  const std::vector<double>& frame_gpu_ms() const { return frame_gpu_ms_; }
  bool gpu_timed() const { return gpu_; }

 private:
  void record(const char* stage);
  Stage& stage_named(const char* stage);
  bool gpu_ = false;
  std::chrono::steady_clock::time_point span_start_{}, last_{};
  uint64_t last_items_ = 0;
  int span_ = -1;
  bool open_ = false;
  // CUDA events (cudaEvent_t) of the open span: [0] at start(), then one per mark, reused.
  std::vector<void*> events_;
  size_t used_events_ = 0;
  std::vector<int> event_stage_;  // stage index of event i (i >= 1)
  std::vector<Stage> stages_;
  std::vector<double> frame_wall_ms_, frame_queue_ms_, frame_gpu_ms_;
};

}  // namespace omnirt
