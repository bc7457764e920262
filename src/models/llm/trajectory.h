// The planning answer: "Here is the planning trajectory [PT, (x1, y1), ..., (x6, y6)]."
//
// Parsing follows OmniDrive's evaluation/eval_planning.py (spec §4.5) so the runtime reads an
// answer exactly as the metric will: the first match of
//   \[PT, \((\+?[\d\.-]+, \+?[\d\.-]+)\)(, \(\+?[\d\.-]+, \+?[\d\.-]+\))*\]
// then every "(a, b)" group in it, and in each group every number matching -?\d+\.\d+ (so an
// explicit '+' is accepted and a number without a decimal point, e.g. "0", yields nothing).
// src/eval holds the evaluation's own copy of the same regexes; keep the two in step.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace omnirt::llm {

inline constexpr int kPlanningWaypoints = 6;  // t = 0.5 s .. 3.0 s, 0.5 s apart

struct Waypoint {
  double x = 0;  // metres forward (ego frame)
  double y = 0;  // metres left
};

// What eval_planning.py's regexes find in an answer.
struct TrajectoryMatch {
  bool found = false;                          // the [PT, ...] pattern matched
  std::string matched_text;                    // the whole "[PT, ...]" match
  std::vector<std::string> groups;             // every "(a, b)" group, as written
  std::vector<std::vector<double>> numbers;    // -?\d+\.\d+ values per group (usually 2)
};
TrajectoryMatch match_trajectory(std::string_view answer);

// Lenient parse (what the metric gets): the waypoints of a match in which every group holds exactly
// two numbers; empty when nothing matched or a group is malformed. May hold != 6 points.
std::vector<Waypoint> parse_trajectory(std::string_view answer);

// Strict parse: exactly `expected_points` groups, each exactly two well-formed numbers
// (\+?-?\d+\.\d+ per coordinate). Throws omnirt::Error saying what was found otherwise, e.g.
// "planning answer: expected 6 waypoints in [PT, ...], found 5: \"[PT, (+1.00, 0.0), ...]\"".
std::vector<Waypoint> parse_trajectory_strict(std::string_view answer,
                                              int expected_points = kPlanningWaypoints);

// OmniDrive's training-time number format (transform_3d.py format_number with 2 decimals): "0.0"
// when |round(v, 2)| <= 0.01, else printf("%+.2f") ("+4.35", "-0.05").
std::string format_planning_number(double v);

// "Here is the planning trajectory [PT, (+4.35, 0.0), ...]." for the given points.
std::string format_planning_answer(const std::vector<Waypoint>& points);

}  // namespace omnirt::llm
