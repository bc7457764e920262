import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from omnidrive_ref.trajectory import (TrajectoryParseError, format_answer, format_number,  # noqa: E402
                                      parse_trajectory)

SPEC_ANSWER = ("Here is the planning trajectory [PT, (+4.35, 0.0), (+8.72, -0.05), (+13.10, -0.12), "
               "(+17.51, -0.21), (+21.93, -0.33), (+26.37, -0.47)].")
SPEC_POINTS = [(4.35, 0.0), (8.72, -0.05), (13.10, -0.12), (17.51, -0.21), (21.93, -0.33),
               (26.37, -0.47)]


@pytest.mark.parametrize("value,text", [
    (4.349, "+4.35"), (-0.05, "-0.05"), (0.004, "0.0"), (-0.004, "0.0"), (0.0, "0.0"),
    (0.01, "0.0"), (-0.01, "0.0"),  # |round(v, 2)| <= 0.01 prints 0.0
    (0.02, "+0.02"), (-0.016, "-0.02"), (12.0, "+12.00"), (-26.371, "-26.37"),
    (np.float32(8.72), "+8.72"),
])
def test_format_number(value, text):
    assert format_number(value) == text


def test_format_answer_reproduces_spec_example():
    assert format_answer(SPEC_POINTS) == SPEC_ANSWER
    with pytest.raises(ValueError, match="expected \\[6, 2\\]"):
        format_answer(SPEC_POINTS[:5])


def test_lenient_parse_of_spec_example():
    r = parse_trajectory(SPEC_ANSWER)
    np.testing.assert_array_equal(r.points, np.array(SPEC_POINTS))
    assert r.matched.startswith("[PT, (+4.35, 0.0)") and r.matched.endswith("(+26.37, -0.47)]")


def test_lenient_parse_quirks_match_eval_planning():
    # No match -> None (the sample is skipped by the original).
    assert parse_trajectory("I cannot plan this.") is None
    assert parse_trajectory("[PT,(1.0, 2.0)]") is None  # needs "[PT, "
    # First match only; any number of tuples (no length check).
    r = parse_trajectory("a [PT, (1.5, -2.25)] b [PT, (9.0, 9.0), (8.0, 8.0)]")
    np.testing.assert_array_equal(r.points, [[1.5, -2.25]])
    # A number without a decimal point is silently dropped -> ragged tuples, no array.
    r = parse_trajectory("[PT, (+5, 0.0), (1.0, 2.0)]")
    assert r.tuples == [(0.0,), (1.0, 2.0)]
    assert r.points is None
    # [\d.-]+ tokens may hold several numbers; -?\d+\.\d+ then finds each of them.
    r = parse_trajectory("[PT, (1.5-2.5, 3.0)]")
    assert r.tuples == [(1.5, -2.5, 3.0)]
    # A '+' before the second coordinate is allowed; '+' inside a token is not matched.
    r = parse_trajectory("[PT, (+1.00, +2.00)]")
    np.testing.assert_array_equal(r.points, [[1.0, 2.0]])


def test_strict_accepts_well_formed_answers():
    np.testing.assert_array_equal(parse_trajectory(SPEC_ANSWER, strict=True), np.array(SPEC_POINTS))
    rng = np.random.default_rng(7)
    for _ in range(50):
        pts = np.cumsum(rng.normal(0, 3, size=(6, 2)), axis=0)
        got = parse_trajectory(format_answer(pts), strict=True)
        expect = [[float(format_number(v)) for v in p] for p in pts]
        np.testing.assert_array_equal(got, expect)


@pytest.mark.parametrize("text,msg", [
    ("no trajectory here", "no '\\[PT, ' trajectory marker"),
    ("[PT, (1.0, 2.0), (3.0, 4.0)", "no closing"),
    ("[PT, (1.0, 2.0), (3.0, 4.0)]", "expected 6 waypoints, got 2"),
    ("[PT, (+5, 0.0), (1.0, 2.0)]", "x = '\\+5' is not a signed decimal"),
    ("[PT, (1.2.3, 0.0)]", "x = '1.2.3'"),
    ("[PT, (1.0, --2.0)]", "y = '--2.0'"),
    ("[PT, (1.0,2.0)]", "expected '\\(x, y\\)'"),
    ("[PT, (1.0, 2.0),(3.0, 4.0)]", "expected ', ' or '\\]'"),
    ("[PT, (1.0, 2.0, 3.0)]", "expected '\\(x, y\\)'"),
])
def test_strict_rejects_malformed(text, msg):
    with pytest.raises(TrajectoryParseError, match=msg):
        parse_trajectory(text, strict=True)
