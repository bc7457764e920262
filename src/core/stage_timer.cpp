#include "core/stage_timer.h"

#include "core/device.h"

namespace omnirt {
namespace {
thread_local StageTimer* t_active = nullptr;
}

void StageTimer::activate() { t_active = this; }
void StageTimer::deactivate() {
  if (t_active == this) t_active = nullptr;
}
StageTimer::~StageTimer() { deactivate(); }

void StageTimer::start() {
  device_synchronize();
  ++span_;
  last_ = std::chrono::steady_clock::now();
}

void StageTimer::mark(const char* stage) {
  if (t_active != nullptr) t_active->record(stage);
}

void StageTimer::record(const char* stage) {
  device_synchronize();
  const auto now = std::chrono::steady_clock::now();
  const double ms = std::chrono::duration<double, std::milli>(now - last_).count();
  last_ = now;
  auto it = stages_.begin();
  while (it != stages_.end() && it->first != stage) ++it;
  if (it == stages_.end()) {
    stages_.emplace_back(stage, std::vector<double>{});
    it = stages_.end() - 1;
  }
  // One sample per span: stages marked several times in a span (e.g. per layer) accumulate.
  if (static_cast<int>(it->second.size()) <= span_) it->second.resize(span_ + 1, 0.0);
  it->second[span_] += ms;
}

}  // namespace omnirt
