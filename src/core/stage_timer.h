// Per-stage wall-clock breakdown for diagnosis (`omnirt bench vision --stages`).
//
// Engines call `StageTimer::mark("name")` at the end of each stage. Marks cost nothing unless a
// StageTimer is active on the calling thread; when one is, each mark synchronises the device and
// adds the wall time since the previous mark (or since start()) to the named stage. The
// synchronisation removes the overlap between stages, so a breakdown's total is a little above
// the unprofiled latency: use it to find where time goes, not as the latency itself.
#pragma once

#include <chrono>
#include <string>
#include <utility>
#include <vector>

namespace omnirt {

class StageTimer {
 public:
  // Makes this timer the thread's active one until deactivated (or destroyed).
  void activate();
  void deactivate();
  ~StageTimer();

  // Starts a new measured span (synchronises the device first).
  void start();
  // Adds the time since the previous mark to `stage` on the active timer, if any.
  static void mark(const char* stage);

  // Accumulated milliseconds per stage, in first-seen order, and how many spans were started.
  const std::vector<std::pair<std::string, std::vector<double>>>& samples() const { return stages_; }

 private:
  void record(const char* stage);
  std::chrono::steady_clock::time_point last_{};
  std::vector<std::pair<std::string, std::vector<double>>> stages_;
  int span_ = -1;
};

}  // namespace omnirt
