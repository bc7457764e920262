// Minimal levelled logging to stderr. OMNIRT_LOG_LEVEL=debug|info|warn|error (default info).
#pragma once

#include <string>

#include "core/error.h"

namespace omnirt::log {
enum class Level { Debug = 0, Info = 1, Warn = 2, Error = 3 };
void set_level(Level l);
Level level();
void write(Level l, const std::string& msg);
}  // namespace omnirt::log

#define OMNIRT_LOG(lvl, ...)                                                        \
  do {                                                                              \
    if (::omnirt::log::Level::lvl >= ::omnirt::log::level())                        \
      ::omnirt::log::write(::omnirt::log::Level::lvl, ::omnirt::detail::concat(__VA_ARGS__)); \
  } while (0)
#define LOG_DEBUG(...) OMNIRT_LOG(Debug, __VA_ARGS__)
#define LOG_INFO(...) OMNIRT_LOG(Info, __VA_ARGS__)
#define LOG_WARN(...) OMNIRT_LOG(Warn, __VA_ARGS__)
#define LOG_ERROR(...) OMNIRT_LOG(Error, __VA_ARGS__)
