// One error style for the whole runtime: an exception that carries context.
//
// Every failure a user can trigger (bad file, wrong shape, non-finite input) is reported by
// throwing omnirt::Error whose message names *what* (file, tensor, field) and says *expected vs
// actual*. The CLI catches it at the top, prints it and exits non-zero. Programming errors inside
// the runtime use the same macro; there is no separate assert style.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace omnirt {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

namespace detail {
template <typename... Args>
std::string concat(Args&&... args) {
  std::ostringstream os;
  (os << ... << std::forward<Args>(args));
  return os.str();
}
[[noreturn]] void throw_error(const char* file, int line, const std::string& msg);
}  // namespace detail

}  // namespace omnirt

// OMNIRT_CHECK(cond, "tensor ", name, ": expected ", a, ", got ", b);
#define OMNIRT_CHECK(cond, ...)                                                          \
  do {                                                                                   \
    if (!(cond)) {                                                                       \
      ::omnirt::detail::throw_error(__FILE__, __LINE__, ::omnirt::detail::concat(__VA_ARGS__)); \
    }                                                                                    \
  } while (0)

#define OMNIRT_FAIL(...) \
  ::omnirt::detail::throw_error(__FILE__, __LINE__, ::omnirt::detail::concat(__VA_ARGS__))
