#!/usr/bin/env bash
# `omnirt parity` at full size on a GPU: builds omnirt, makes the seeded random full-size
# checkpoint if it is missing (the one `omnirt run` uses by default), runs the ParityCuda test,
# then the accuracy + drift table for every vision x LLM precision over examples/sample_scene.
# Output: out/parity_full/{parity.md,parity.json,predictions_*.json}. Extra arguments go to
# `omnirt parity` (e.g. --frames 2, --max-new 86); another checkpoint: OMNIRT_PARITY_MODEL=DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD_DIR:-build}
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD" -j"$(nproc)" --target omnirt test_pipeline
MODEL=${OMNIRT_PARITY_MODEL:-$HOME/.cache/omnirt/models/random-full}
if [ ! -f "$MODEL/config.json" ]; then
  mkdir -p "$(dirname "$MODEL")"
  python3 python/omnidrive_export.py --random full --seed 0 --out "$MODEL"
fi
"$BUILD/tests/test_pipeline" --gtest_filter='Parity*'
mkdir -p out/parity_full
"$BUILD/omnirt" parity examples/sample_scene --model "$MODEL" --device cuda \
  --vision fp32,tf32,fp16,bf16 --llm fp32,fp16,bf16 --out out/parity_full "$@" |
  tee out/parity_full/parity.md
