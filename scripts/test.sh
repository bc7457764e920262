#!/usr/bin/env bash
# The test command: set up, build (Release, CUDA when nvcc is found), run every test.
# GPU tests run when a GPU is present and print "skipped: no CUDA device" otherwise.
# Usage: scripts/test.sh [--no-python] [--sanitize]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=1; SAN=0
for a in "$@"; do
  case "$a" in
    --no-python) PY=0 ;;
    --sanitize) SAN=1 ;;
    *) echo "unknown option $a" >&2; exit 2 ;;
  esac
done
OMNIRT_SETUP_PYTHON=$PY bash scripts/setup.sh
JOBS=${JOBS:-$(nproc)}

if [ "$SAN" = "1" ]; then
  BUILD=build-asan
  cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Debug -DOMNIRT_SANITIZE=ON -DOMNIRT_BUILD_BENCH=OFF >/dev/null
else
  BUILD=${BUILD_DIR:-build}
  cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
fi
cmake --build "$BUILD" -j"$JOBS"
(cd "$BUILD" && ctest --output-on-failure -j"$JOBS")

if [ "$PY" = "1" ]; then
  if compgen -G "python/tests/test_*.py" >/dev/null; then python3 -m pytest -q python/tests; fi
fi
