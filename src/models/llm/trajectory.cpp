#include "models/llm/trajectory.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <regex>

#include "core/error.h"

namespace omnirt::llm {

namespace {

// The three regexes of eval_planning.py, in ECMAScript syntax (same meaning here).
const std::regex& full_pattern() {
  static const std::regex re(
      R"(\[PT, \((\+?[\d\.-]+, \+?[\d\.-]+)\)(, \(\+?[\d\.-]+, \+?[\d\.-]+\))*\])");
  return re;
}
const std::regex& group_pattern() {
  static const std::regex re(R"(\(\+?[\d\.-]+, \+?[\d\.-]+\))");
  return re;
}
const std::regex& number_pattern() {
  static const std::regex re(R"(-?\d+\.\d+)");
  return re;
}
// Strict form of one coordinate: optional '+', optional '-', digits '.' digits, nothing else.
const std::regex& strict_coordinate() {
  static const std::regex re(R"(\+?-?\d+\.\d+)");
  return re;
}

std::string shorten(std::string_view s, size_t max_len = 160) {
  if (s.size() <= max_len) return std::string(s);
  return std::string(s.substr(0, max_len)) + "...";
}

}  // namespace

TrajectoryMatch match_trajectory(std::string_view answer) {
  TrajectoryMatch m;
  const std::string text(answer);
  std::smatch full;
  if (!std::regex_search(text, full, full_pattern())) return m;
  m.found = true;
  m.matched_text = full.str(0);
  for (auto it = std::sregex_iterator(m.matched_text.begin(), m.matched_text.end(), group_pattern());
       it != std::sregex_iterator(); ++it) {
    const std::string group = it->str(0);
    std::vector<double> values;
    for (auto nit = std::sregex_iterator(group.begin(), group.end(), number_pattern());
         nit != std::sregex_iterator(); ++nit) {
      values.push_back(std::strtod(nit->str(0).c_str(), nullptr));
    }
    m.groups.push_back(group);
    m.numbers.push_back(std::move(values));
  }
  return m;
}

std::vector<Waypoint> parse_trajectory(std::string_view answer) {
  TrajectoryMatch m = match_trajectory(answer);
  std::vector<Waypoint> points;
  if (!m.found) return points;
  for (const auto& values : m.numbers) {
    if (values.size() != 2) return {};
    points.push_back({values[0], values[1]});
  }
  return points;
}

std::vector<Waypoint> parse_trajectory_strict(std::string_view answer, int expected_points) {
  TrajectoryMatch m = match_trajectory(answer);
  OMNIRT_CHECK(m.found, "planning answer: no \"[PT, (x, y), ...]\" trajectory found in \"",
               shorten(answer), "\"");
  OMNIRT_CHECK(static_cast<int>(m.groups.size()) == expected_points, "planning answer: expected ",
               expected_points, " waypoints in [PT, ...], found ", m.groups.size(), ": \"",
               shorten(m.matched_text), "\"");
  std::vector<Waypoint> points;
  for (size_t i = 0; i < m.groups.size(); ++i) {
    // "(a, b)" -> "a" and "b"
    const std::string& g = m.groups[i];
    const size_t comma = g.find(", ");
    const std::string a = g.substr(1, comma - 1);
    const std::string b = g.substr(comma + 2, g.size() - comma - 3);
    for (const std::string* c : {&a, &b}) {
      OMNIRT_CHECK(std::regex_match(*c, strict_coordinate()), "planning answer: waypoint ", i + 1,
                   " ", g, ": coordinate \"", *c, "\" is not a number of the form [+|-]d.d");
    }
    OMNIRT_CHECK(m.numbers[i].size() == 2, "planning answer: waypoint ", i + 1, " ", g,
                 ": expected 2 numbers, found ", m.numbers[i].size());
    points.push_back({m.numbers[i][0], m.numbers[i][1]});
  }
  return points;
}

std::string format_planning_number(double v) {
  OMNIRT_CHECK(std::isfinite(v), "planning answer: cannot format non-finite value ", v);
  // Python's round(v, 2) is correctly rounded from the exact binary value, half to even, and so
  // is printf's "%.2f": comparing the printed magnitude reproduces |round(v, 2)| <= 0.01.
  char rounded[64];
  std::snprintf(rounded, sizeof(rounded), "%.2f", std::fabs(v));
  if (std::strtod(rounded, nullptr) <= 1e-2) return "0.0";
  char out[64];
  std::snprintf(out, sizeof(out), "%+.2f", v);
  return out;
}

std::string format_planning_answer(const std::vector<Waypoint>& points) {
  OMNIRT_CHECK(!points.empty(), "planning answer: no waypoints to format");
  std::string s = "Here is the planning trajectory [PT";
  for (const Waypoint& p : points) {
    s += ", (";
    s += format_planning_number(p.x);
    s += ", ";
    s += format_planning_number(p.y);
    s += ")";
  }
  s += "].";
  return s;
}

}  // namespace omnirt::llm
