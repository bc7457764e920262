#include "core/progress.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>

namespace omnirt {

ProgressBar::ProgressBar(std::string label, int64_t total)
    : label_(std::move(label)), total_(std::max<int64_t>(total, 1)), tty_(isatty(2) != 0) {
  start_ = last_draw_ = std::chrono::steady_clock::now();
}

ProgressBar::~ProgressBar() {
  if (!finished_) finish();
}

void ProgressBar::advance(int64_t n) { set(done_ + n); }

void ProgressBar::set(int64_t done) {
  done_ = std::min(done, total_);
  auto now = std::chrono::steady_clock::now();
  if (tty_ && now - last_draw_ > std::chrono::milliseconds(100)) {
    last_draw_ = now;
    draw(false);
  }
}

void ProgressBar::finish() {
  finished_ = true;
  draw(true);
}

void ProgressBar::draw(bool final) {
  constexpr int kWidth = 30;
  const double frac = static_cast<double>(done_) / static_cast<double>(total_);
  const int filled = static_cast<int>(frac * kWidth);
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  std::string bar(filled, '#');
  bar.resize(kWidth, '.');
  if (!tty_ && !final) return;
  std::fprintf(stderr, "%s%s [%s] %lld/%lld %.1fs%s", tty_ ? "\r" : "", label_.c_str(), bar.c_str(),
               static_cast<long long>(done_), static_cast<long long>(total_), secs,
               final ? "\n" : "");
  std::fflush(stderr);
}

}  // namespace omnirt
