#include "core/error.h"

#include <cstdlib>

namespace omnirt::detail {

void throw_error(const char* file, int line, const std::string& msg) {
  // Source location is useful to developers but noise to users; it is appended only when
  // OMNIRT_DEBUG_ERRORS is set.
  static const bool with_location = std::getenv("OMNIRT_DEBUG_ERRORS") != nullptr;
  if (with_location) throw Error(concat(msg, " [", file, ":", line, "]"));
  throw Error(msg);
}

}  // namespace omnirt::detail
