#include <gtest/gtest.h>

#include <cmath>

#include "core/error.h"
#include "models/llm/trajectory.h"

namespace omnirt::llm {
namespace {

const char* kGood =
    "Here is the planning trajectory [PT, (+4.35, 0.0), (+8.72, -0.05), (+13.10, -0.12), "
    "(+17.51, -0.21), (+21.93, -0.33), (+26.37, -0.47)].";

std::string strict_error(std::string_view answer) {
  try {
    parse_trajectory_strict(answer);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(Trajectory, ParsesTheTrainingFormat) {
  std::vector<Waypoint> pts = parse_trajectory_strict(kGood);
  ASSERT_EQ(pts.size(), 6u);
  const double xs[] = {4.35, 8.72, 13.10, 17.51, 21.93, 26.37};
  const double ys[] = {0.0, -0.05, -0.12, -0.21, -0.33, -0.47};
  for (int i = 0; i < 6; ++i) {
    EXPECT_DOUBLE_EQ(pts[i].x, xs[i]);
    EXPECT_DOUBLE_EQ(pts[i].y, ys[i]);
  }
  EXPECT_EQ(parse_trajectory(kGood).size(), 6u);
}

TEST(Trajectory, RegexSemanticsOfEvalPlanning) {
  // Surrounding text is ignored, the first match counts, '+' optional, negative allowed.
  auto pts = parse_trajectory("blah [PT, (1.50, -2.25), (3.00, +0.75)] and [PT, (9.9, 9.9)]");
  ASSERT_EQ(pts.size(), 2u);
  EXPECT_DOUBLE_EQ(pts[0].x, 1.5);
  EXPECT_DOUBLE_EQ(pts[0].y, -2.25);
  EXPECT_DOUBLE_EQ(pts[1].y, 0.75);
  // No match at all: wrong spacing, missing PT, no closing bracket.
  EXPECT_TRUE(parse_trajectory("[PT,(1.0, 2.0)]").empty());
  EXPECT_TRUE(parse_trajectory("[(1.0, 2.0)]").empty());
  EXPECT_TRUE(parse_trajectory("[PT, (1.0, 2.0), (3.0, 4.0)").empty());
  EXPECT_FALSE(match_trajectory("[PT, (1.0, 2.0)").found);
  // An integer coordinate matches the outer regex but yields no -?\d+\.\d+ number.
  TrajectoryMatch m = match_trajectory("[PT, (+4.35, 0), (1.00, 2.00)]");
  ASSERT_TRUE(m.found);
  ASSERT_EQ(m.numbers.size(), 2u);
  EXPECT_EQ(m.numbers[0].size(), 1u);
  EXPECT_EQ(m.groups[0], "(+4.35, 0)");
  EXPECT_TRUE(parse_trajectory("[PT, (+4.35, 0), (1.00, 2.00)]").empty());
  // "1.0-2.0" inside one coordinate yields two numbers for that coordinate.
  m = match_trajectory("[PT, (1.0-2.0, 3.0)]");
  ASSERT_TRUE(m.found);
  EXPECT_EQ(m.numbers[0].size(), 3u);
}

TEST(Trajectory, StrictModeNamesWhatWasFound) {
  std::string e = strict_error("I would go straight.");
  EXPECT_NE(e.find("no \"[PT"), std::string::npos) << e;
  EXPECT_NE(e.find("I would go straight."), std::string::npos) << e;

  e = strict_error("[PT, (+1.00, 0.0), (+2.00, 0.0), (+3.00, 0.0), (+4.00, 0.0), (+5.00, 0.0)].");
  EXPECT_NE(e.find("expected 6 waypoints"), std::string::npos) << e;
  EXPECT_NE(e.find("found 5"), std::string::npos) << e;
  EXPECT_NE(e.find("(+5.00, 0.0)"), std::string::npos) << e;

  e = strict_error(
      "[PT, (+1.00, 0.0), (+2.00, 0), (+3.00, 0.0), (+4.00, 0.0), (+5.00, 0.0), (+6.00, 0.0)]");
  EXPECT_NE(e.find("waypoint 2"), std::string::npos) << e;
  EXPECT_NE(e.find("\"0\""), std::string::npos) << e;

  e = strict_error(
      "[PT, (+1.00, 0.0), (+2.00, 0.0), (+3.0.1, 0.0), (+4.00, 0.0), (+5.00, 0.0), (+6.00, 0.0)]");
  EXPECT_NE(e.find("waypoint 3"), std::string::npos) << e;
  EXPECT_NE(e.find("+3.0.1"), std::string::npos) << e;

  e = strict_error(
      "[PT, (+1.00, 0.0), (+2.00, 0.0), (+3.00, 0.0), (+4.00, 0.0), (+5.00, 0.0), (-, 0.0)]");
  EXPECT_NE(e.find("waypoint 6"), std::string::npos) << e;

  // Seven points are also wrong for the planner.
  e = strict_error("[PT, (1.00, 0.0), (1.00, 0.0), (1.00, 0.0), (1.00, 0.0), (1.00, 0.0), "
                   "(1.00, 0.0), (1.00, 0.0)]");
  EXPECT_NE(e.find("found 7"), std::string::npos) << e;
  EXPECT_EQ(parse_trajectory_strict("[PT, (1.00, 0.0)]", 1).size(), 1u);
}

TEST(Trajectory, NumberFormatRule) {
  // Expected strings worked out by hand from format_number(n, 2) in transform_3d.py.
  EXPECT_EQ(format_planning_number(4.35), "+4.35");
  EXPECT_EQ(format_planning_number(-0.05), "-0.05");
  EXPECT_EQ(format_planning_number(26.371), "+26.37");
  EXPECT_EQ(format_planning_number(0.0), "0.0");
  EXPECT_EQ(format_planning_number(-0.0), "0.0");
  EXPECT_EQ(format_planning_number(0.004), "0.0");
  EXPECT_EQ(format_planning_number(0.01), "0.0");    // |round| <= 0.01
  EXPECT_EQ(format_planning_number(-0.01), "0.0");
  EXPECT_EQ(format_planning_number(0.0149), "0.0");  // rounds to 0.01
  EXPECT_EQ(format_planning_number(0.016), "+0.02");
  EXPECT_EQ(format_planning_number(-0.02), "-0.02");
  EXPECT_EQ(format_planning_number(0.015), "0.0");   // binary 0.01499999... rounds to 0.01
  EXPECT_EQ(format_planning_number(-12.345678), "-12.35");
  EXPECT_EQ(format_planning_number(100.0), "+100.00");
  EXPECT_THROW(format_planning_number(NAN), Error);
}

TEST(Trajectory, FormatterRoundTripsThroughParser) {
  std::vector<Waypoint> pts = {{4.349, 0.003},   {8.72, -0.05}, {13.1, -0.12},
                               {17.514, -0.21}, {21.93, 0.33}, {26.37, -0.47}};
  std::string answer = format_planning_answer(pts);
  EXPECT_EQ(answer,
            "Here is the planning trajectory [PT, (+4.35, 0.0), (+8.72, -0.05), (+13.10, -0.12), "
            "(+17.51, -0.21), (+21.93, +0.33), (+26.37, -0.47)].");
  std::vector<Waypoint> back = parse_trajectory_strict(answer);
  ASSERT_EQ(back.size(), 6u);
  for (int i = 0; i < 6; ++i) {
    EXPECT_NEAR(back[i].x, pts[i].x, 0.005 + 1e-12);
    EXPECT_NEAR(back[i].y, pts[i].y, 0.01 + 1e-12);
  }
}

}  // namespace
}  // namespace omnirt::llm
