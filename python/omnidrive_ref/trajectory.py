"""Planning answer text <-> waypoints.

Two directions, both following OmniDrive's own code (spec omnidrive_model.md §4.5,
evaluation.md §2.2):

* `format_answer` renders six (x, y) waypoints the way the training pipeline
  (`LoadAnnoatationVQA.__call__` + `format_number`) wrote its target answers.
* `parse_trajectory` reads an answer the way `evaluation/eval_planning.py` does. The default
  (lenient) mode reproduces its quirks exactly; `strict=True` rejects anything that the lenient
  mode would silently mangle, with a message that says what is wrong.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np

NUM_WAYPOINTS = 6
WAYPOINT_DT_S = 0.5  # nuScenes keyframes, 2 Hz: t = 0.5, 1.0, ..., 3.0 s

# The evaluation script's patterns (eval_planning.py::main). A number token is an optional '+'
# followed by one or more of [0-9.-]; tuples are joined by exactly ", ".
_FULL_PATTERN = re.compile(
    r"\[PT, \((\+?[\d\.-]+, \+?[\d\.-]+)\)(, \(\+?[\d\.-]+, \+?[\d\.-]+\))*\]")
_TUPLE_PATTERN = re.compile(r"\(\+?[\d\.-]+, \+?[\d\.-]+\)")
_COORD_PATTERN = re.compile(r"-?\d+\.\d+")
# What a well-formed number looks like in strict mode: what format_number can print.
_STRICT_NUMBER = re.compile(r"[+-]?\d+\.\d+")
_STRICT_TUPLE = re.compile(r"\((?P<x>[^,()]*), (?P<y>[^,()]*)\)")


class TrajectoryParseError(ValueError):
    """An answer that does not hold a well-formed [PT, (x, y) x6] trajectory (strict mode)."""


def format_number(value: float, decimal_places: int = 2) -> str:
    """OmniDrive's `format_number`: explicit sign, fixed decimals, and "0.0" for values whose
    rounded magnitude is at most 0.01 (so +-0.01 also prints as 0.0)."""
    v = float(value)
    if abs(round(v, decimal_places)) <= 1e-2:
        return "0.0"
    return f"{v:+.{decimal_places}f}"


def format_answer(points: Sequence[Sequence[float]]) -> str:
    """The training target answer for six (x, y) waypoints (ego frame, metres)."""
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] < 2 or pts.shape[0] != NUM_WAYPOINTS:
        raise ValueError(
            f"format_answer: expected [{NUM_WAYPOINTS}, 2] waypoints, got shape {list(pts.shape)}")
    body = ", ".join(f"({format_number(x)}, {format_number(y)})" for x, y in pts[:, :2])
    return f"Here is the planning trajectory [PT, {body}]."


@dataclass
class ParsedTrajectory:
    """Result of the lenient parse.

    `tuples` is exactly what eval_planning.py builds (one tuple of floats per "(a, b)" group; a
    number without a decimal point is dropped, so a tuple can have 0, 1 or 2 entries).
    `points` is the [n, 2] float64 array when every tuple has two numbers, else None (the
    original would then build a ragged numpy array and the sample would fail later).
    `matched` is the substring the trajectory regex matched.
    """
    tuples: List[Tuple[float, ...]]
    points: Optional[np.ndarray]
    matched: str


def parse_trajectory(text: str, strict: bool = False):
    """Parse a planner answer.

    Lenient (default): eval_planning.py semantics. Returns None when the pattern does not match
    (the original skips such samples), otherwise a ParsedTrajectory.

    Strict: returns a float64 array [6, 2] or raises TrajectoryParseError when there is no
    trajectory, a coordinate is not a plain signed decimal number (e.g. "5", "1.2.3", "--1.0"),
    a tuple does not have exactly two coordinates, or the count of waypoints is not 6.
    """
    if not isinstance(text, str):
        raise TypeError(f"parse_trajectory: expected str, got {type(text).__name__}")
    if strict:
        return _parse_strict(text)
    m = _FULL_PATTERN.search(text)
    if m is None:
        return None
    matched = m.group(0)
    tuples = [tuple(float(c) for c in _COORD_PATTERN.findall(t))
              for t in _TUPLE_PATTERN.findall(matched)]
    points = None
    if all(len(t) == 2 for t in tuples):
        points = np.asarray(tuples, dtype=np.float64).reshape(-1, 2)
    return ParsedTrajectory(tuples=tuples, points=points, matched=matched)


def _parse_strict(text: str) -> np.ndarray:
    start = text.find("[PT, ")
    if start < 0:
        raise TrajectoryParseError(
            f"no '[PT, ' trajectory marker in answer {_shorten(text)!r}")
    end = text.find("]", start)
    if end < 0:
        raise TrajectoryParseError(
            f"trajectory starting at character {start} has no closing ']' in {_shorten(text)!r}")
    body = text[start + len("[PT, "):end]
    points = []
    pos = 0
    while True:
        m = _STRICT_TUPLE.match(body, pos)
        if m is None:
            raise TrajectoryParseError(
                f"waypoint {len(points) + 1}: expected '(x, y)' at {_shorten(body[pos:])!r} "
                f"in trajectory {text[start:end + 1]!r}")
        coords = []
        for axis in ("x", "y"):
            token = m.group(axis)
            if not _STRICT_NUMBER.fullmatch(token):
                raise TrajectoryParseError(
                    f"waypoint {len(points) + 1}: {axis} = {token!r} is not a signed decimal "
                    f"number like +4.35 / -0.05 / 0.0 in trajectory {text[start:end + 1]!r}")
            coords.append(float(token))
        points.append(coords)
        pos = m.end()
        if pos == len(body):
            break
        if not body.startswith(", ", pos):
            raise TrajectoryParseError(
                f"after waypoint {len(points)}: expected ', ' or ']' at {_shorten(body[pos:])!r} "
                f"in trajectory {text[start:end + 1]!r}")
        pos += 2
    if len(points) != NUM_WAYPOINTS:
        raise TrajectoryParseError(
            f"expected {NUM_WAYPOINTS} waypoints, got {len(points)} in trajectory "
            f"{text[start:end + 1]!r}")
    arr = np.asarray(points, dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        raise TrajectoryParseError(f"non-finite waypoint in {text[start:end + 1]!r}")
    return arr


def _shorten(s: str, n: int = 60) -> str:
    return s if len(s) <= n else s[:n] + "..."


def waypoint_times() -> List[float]:
    return [WAYPOINT_DT_S * (i + 1) for i in range(NUM_WAYPOINTS)]


__all__ = [
    "NUM_WAYPOINTS", "TrajectoryParseError", "ParsedTrajectory", "format_number", "format_answer",
    "parse_trajectory", "waypoint_times",
]
