#!/usr/bin/env bash
# The main job on the bundled sample scene: set up, build omnirt, run it over
# examples/sample_scene with pictures. Without --model a seeded random checkpoint is made on
# first use (full size on a GPU, tiny on the CPU) — its boxes and text are meaningless.
# Extra arguments go to `omnirt run` (e.g. --model DIR, --device cuda, --max-frames 2).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
BUILD=${BUILD_DIR:-build}
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD" -j"$(nproc)" --target omnirt
"$BUILD/omnirt" run examples/sample_scene --out out/sample_scene --viz "$@"
echo "results: out/sample_scene (frame_*.json, *_bev.png, *_cameras.png, bev_contact_sheet.png)"
