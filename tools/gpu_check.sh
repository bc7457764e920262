#!/usr/bin/env bash
# GPU check: on a machine with a CUDA GPU, build if needed and run the whole test suite including
# the CUDA tests, then print a summary. Fails if any test fails, or if a CUDA test was skipped
# although a GPU is present.
#
#   bash tools/gpu_check.sh            # build (if needed) + test
#   BUILD_DIR=build bash tools/gpu_check.sh
#
# A build made on another machine (same x86-64 Linux, CUDA 13) can be carried here: run
# tools/bundle_libs.sh there first; this script fixes the build's absolute source path with a
# symlink when the checkout lives elsewhere.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BUILD=${BUILD_DIR:-build}

if ! nvidia-smi -L >/dev/null 2>&1; then
  echo "gpu_check: no NVIDIA GPU visible (nvidia-smi -L failed)" >&2
  exit 1
fi
nvidia-smi -L

if [ -f "$BUILD/CMakeCache.txt" ]; then
  src=$(sed -n 's/^CMAKE_HOME_DIRECTORY:INTERNAL=//p' "$BUILD/CMakeCache.txt")
  if [ "$src" != "$ROOT" ] && [ ! -e "$src" ]; then
    mkdir -p "$(dirname "$src")" && ln -s "$ROOT" "$src"
    echo "gpu_check: linked $src -> $ROOT (prebuilt build folder)"
  fi
else
  echo "gpu_check: configuring and building in $BUILD"
  CC=${CC:-/usr/bin/gcc} CXX=${CXX:-/usr/bin/g++} cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release || exit 1
  cmake --build "$BUILD" -j"$(nproc)" || exit 1
fi
export LD_LIBRARY_PATH="$ROOT/$BUILD/bundled-libs:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"

"$BUILD/omnirt" info
log=$(mktemp)
(cd "$BUILD" && ctest --output-on-failure -j4 2>&1) | tee "$log"
rc=${PIPESTATUS[0]}
skipped_cuda=$(grep -c "(Skipped)" "$log" || true)
echo
echo "================ gpu_check summary ================"
grep -E "tests passed|tests failed" "$log" | tail -1
echo "tests skipped (on a GPU machine there should be none): $skipped_cuda"
if [ "$skipped_cuda" != "0" ]; then
  echo "gpu_check: FAILED (a GPU is present but tests were skipped)"; exit 1
fi
[ "$rc" = "0" ] && echo "gpu_check: PASSED" || echo "gpu_check: FAILED"
exit "$rc"
