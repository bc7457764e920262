// The runtime's answer parser (models/llm/trajectory) and the evaluation's copy
// (eval/planning, OmniDrive's eval_planning.py) must read every answer the same way.
#include <gtest/gtest.h>

#include <random>

#include "common/test_util.h"
#include "core/error.h"
#include "eval/planning.h"
#include "models/llm/trajectory.h"

namespace omnirt::llm {
namespace {

std::vector<std::string> answers(std::mt19937_64& rng) {
  std::vector<std::string> out = {
      "Here is the planning trajectory [PT, (+4.35, 0.0), (+8.72, -0.05), (+13.10, -0.12), "
      "(+17.51, -0.21), (+21.93, -0.33), (+26.37, -0.47)].",
      "[PT, (1.0, 2.0)]",
      "[PT, (+4.35, 0), (1.00, 2.00)]",
      "[PT, (1.0-2.0, 3.0), (1.0, 1.0), (1.0, 1.0), (1.0, 1.0), (1.0, 1.0), (1.0, 1.0)]",
      "[PT, (--1.0, 2.0), (1.0, 1.0), (1.0, 1.0), (1.0, 1.0), (1.0, 1.0), (1.0, 1.0)]",
      "[PT, (1.0., 2.0), (1.0, 1.0), (1.0, 1.0), (1.0, 1.0), (1.0, 1.0), (1.0, 1.0)]",
      "no trajectory here",
      "[PT,(1.0, 2.0)]",
      "x [PT, (1.50, -2.25)] y [PT, (9.9, 9.9)]",
  };
  // Random mutations of a good answer: drop / duplicate / corrupt characters.
  const std::string good = out[0];
  const std::string alphabet = "0123456789.-+, ()[]PTx";
  for (int i = 0; i < 300; ++i) {
    std::string s = good;
    const int edits = 1 + static_cast<int>(rng() % 3);
    for (int e = 0; e < edits; ++e) {
      const size_t pos = rng() % s.size();
      switch (rng() % 3) {
        case 0: s.erase(pos, 1); break;
        case 1: s.insert(pos, 1, alphabet[rng() % alphabet.size()]); break;
        default: s[pos] = alphabet[rng() % alphabet.size()]; break;
      }
    }
    out.push_back(s);
  }
  return out;
}

TEST(TrajectoryEvalConsistency, SameReadingAsTheEvaluation) {
  std::mt19937_64 rng(omnirt::testing::test_seed());
  int strict_ok = 0;
  for (const std::string& a : answers(rng)) {
    const TrajectoryMatch mine = match_trajectory(a);
    const auto theirs = eval::parse_planning_answer_raw(a);
    ASSERT_EQ(mine.found, theirs.has_value()) << a;
    if (mine.found) {
      EXPECT_EQ(mine.numbers, *theirs) << a;
    }
    // Whatever the strict runtime parser accepts, the metric reads as the same 6 points.
    const auto usable = eval::parse_planning_trajectory(a);
    try {
      const std::vector<Waypoint> pts = parse_trajectory_strict(a);
      ++strict_ok;
      ASSERT_TRUE(usable.has_value()) << a;
      for (int i = 0; i < 6; ++i) {
        EXPECT_EQ(pts[i].x, (*usable)[i][0]) << a;
        EXPECT_EQ(pts[i].y, (*usable)[i][1]) << a;
      }
    } catch (const Error&) {
    }
    // And the lenient parse gives the metric's points whenever the metric can use the answer.
    if (usable) {
      const std::vector<Waypoint> lenient = parse_trajectory(a);
      ASSERT_EQ(lenient.size(), 6u) << a;
    }
  }
  EXPECT_GT(strict_ok, 10);  // the mutations leave enough valid answers to compare
}

}  // namespace
}  // namespace omnirt::llm
