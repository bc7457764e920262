#!/usr/bin/env bash
# Checks that the CUDA backend compiles for every architecture we promise: sm_80 (A100),
# sm_87 (Orin), sm_90 (H100/H200) and sm_110 (Thor). Compiles the library only (no tests).
set -euo pipefail
cd "$(dirname "$0")/.."
ARCHS=${1:-"80;87;90;110"}
cmake -S . -B build-archs -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES="$ARCHS" \
  -DOMNIRT_BUILD_TESTS=OFF -DOMNIRT_BUILD_BENCH=OFF >/dev/null
cmake --build build-archs -j"$(nproc)" --target omnirt_lib
echo "check_cuda_archs: the CUDA backend compiles for sm_{${ARCHS//;/,}}"
