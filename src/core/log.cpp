#include "core/log.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>

namespace omnirt::log {
namespace {
Level initial_level() {
  const char* e = std::getenv("OMNIRT_LOG_LEVEL");
  if (e == nullptr) return Level::Info;
  if (!std::strcmp(e, "debug")) return Level::Debug;
  if (!std::strcmp(e, "warn")) return Level::Warn;
  if (!std::strcmp(e, "error")) return Level::Error;
  return Level::Info;
}
Level g_level = initial_level();
std::mutex g_mutex;
}  // namespace

void set_level(Level l) { g_level = l; }
Level level() { return g_level; }
void write(Level l, const std::string& msg) {
  static const char* names[] = {"debug", "info", "warn", "error"};
  std::lock_guard<std::mutex> lock(g_mutex);
  std::fprintf(stderr, "[omnirt %s] %s\n", names[static_cast<int>(l)], msg.c_str());
}
}  // namespace omnirt::log
