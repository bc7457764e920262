// A terminal progress bar for long CLI work (import, build, scenes, benchmarks).
// Draws to stderr only when stderr is a terminal, so logs and pipes stay clean; otherwise it
// prints nothing but the final line.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace omnirt {

class ProgressBar {
 public:
  ProgressBar(std::string label, int64_t total);
  ~ProgressBar();
  void advance(int64_t n = 1);
  void set(int64_t done);
  void finish();

 private:
  void draw(bool final);
  std::string label_;
  int64_t total_;
  int64_t done_ = 0;
  bool tty_;
  bool finished_ = false;
  std::chrono::steady_clock::time_point start_, last_draw_;
};

}  // namespace omnirt
