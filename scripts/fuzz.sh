#!/usr/bin/env bash
# Builds the libFuzzer targets in their own build folder (clang, CPU only, only the fuzz targets)
# and fuzzes the safetensors header parser for SECONDS (default 60), starting from the committed
# seeds in fuzz/corpus. New interesting inputs go to build-fuzz/corpus (not committed); a crash
# leaves build-fuzz/crash-* and makes this script fail.
# Usage: scripts/fuzz.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_TO_RUN=${1:-60}
BUILD=${FUZZ_BUILD_DIR:-build-fuzz}

CC=clang CXX=clang++ cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DOMNIRT_CUDA=OFF \
  -DOMNIRT_FUZZ=ON -DOMNIRT_BUILD_TESTS=OFF -DOMNIRT_BUILD_BENCH=OFF >/dev/null
cmake --build "$BUILD" -j"${JOBS:-$(nproc)}" --target fuzz_safetensors_header

mkdir -p "$BUILD/corpus"
"$BUILD/fuzz/fuzz_safetensors_header" -max_total_time="$SECONDS_TO_RUN" -max_len=4096 \
  -timeout=10 -rss_limit_mb=2048 -dict=fuzz/safetensors.dict -artifact_prefix="$BUILD/" \
  -print_final_stats=1 "$BUILD/corpus" fuzz/corpus
echo "fuzz_safetensors_header ran ${SECONDS_TO_RUN}s without a finding"
echo "fuzz: 1 passed, 0 failed"
