#!/usr/bin/env python3
"""Expected cv2.fillPoly rasters for the C++ polygon filler (src/eval/raster.cpp), which the
planning metrics use in place of OpenCV (OmniDrive draws agent and ego boxes with cv2.fillPoly).

Writes tests/data/eval/fillpoly_cv.json: for each case the integer vertices (x = col, y = row),
the canvas size and the filled mask as row-major run lengths (0s first). Cases: rotated
rectangles like the planning boxes (rounded corners, several angles), random convex and concave
quads/pentagons, a self-intersecting bow-tie, degenerate (flat, single-point) polygons and polygons
reaching outside the canvas. Deterministic (seeded numpy).

    python python/make_eval_fixtures.py [--out tests/data/eval]
"""
import argparse
import json
import math
import os

import cv2
import numpy as np

ROWS, COLS = 40, 48  # not square, so a row/column swap cannot pass


def rle(mask):
    flat = (mask.reshape(-1) != 0).astype(np.uint8)
    runs, value, count = [], 0, 0
    for v in flat:
        if v == value:
            count += 1
        else:
            runs.append(count)
            value, count = v, 1
    runs.append(count)
    return runs


def rect(cx, cy, yaw, length, width):
    c, s = math.cos(yaw), math.sin(yaw)
    pts = []
    for a, b in ((length / 2, width / 2), (-length / 2, width / 2), (-length / 2, -width / 2),
                 (length / 2, -width / 2)):
        pts.append([int(np.round(cx + c * a - s * b)), int(np.round(cy + s * a + c * b))])
    return pts


def cases(rng):
    out = []
    for yaw in np.linspace(0, math.pi, 13):
        out.append(rect(23.3, 19.6, float(yaw), 20.0, 7.0))
    for yaw in (0.3, 1.1, 2.5):
        out.append(rect(2.0, 37.0, yaw, 16.0, 6.0))  # crosses the left/bottom border
    for _ in range(40):
        out.append(rng.integers(-20, 68, size=(4, 2)).tolist())
    for _ in range(6):
        out.append(rng.integers(0, 40, size=(5, 2)).tolist())
    out.append([[5, 5], [30, 30], [30, 5], [5, 30]])  # bow-tie
    out.append([[3, 10], [40, 10], [20, 10]])  # flat
    out.append([[7, 7]])  # single point
    out.append([[-20, -20], [70, -20], [70, 60], [-20, 60]])  # covers everything
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--out', default=os.path.join(os.path.dirname(__file__), '..', 'tests', 'data',
                                                  'eval'))
    args = ap.parse_args()
    rng = np.random.default_rng(20240611)
    records = []
    for pts in cases(rng):
        img = np.zeros((ROWS, COLS), dtype=np.float64)  # float64 like OmniDrive's segmentation
        cv2.fillPoly(img, [np.asarray(pts, dtype=np.int32)], 1)
        records.append({'points': pts, 'rle': rle(img)})
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, 'fillpoly_cv.json'), 'w') as f:
        json.dump({'generator': 'python/make_eval_fixtures.py', 'opencv': cv2.__version__,
                   'rows': ROWS, 'cols': COLS, 'cases': records}, f)
        f.write('\n')


if __name__ == '__main__':
    main()
