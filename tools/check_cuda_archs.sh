#!/usr/bin/env bash
# Checks that every CUDA source compiles for each architecture we promise: sm_80 (A100),
# sm_87 (Orin), sm_90 (H100/H200) and sm_110 (Thor). Compiles each .cu file on its own with nvcc
# (no CMake, no other dependencies), in parallel, and prints a pass/fail table.
#   bash tools/check_cuda_archs.sh ["80 87 90 110"]
set -uo pipefail
cd "$(dirname "$0")/.."
ARCHS=${1:-"80 87 90 110"}
NVCC=${NVCC:-nvcc}
out=$(mktemp -d)
files=$(ls src/ops/cuda/*.cu src/models/*/*.cu src/pipeline/*.cu src/quant/*.cu 2>/dev/null)
jobs=()
for a in $ARCHS; do
  for f in $files; do jobs+=("$a $f"); done
done
printf '%s\n' "${jobs[@]}" | xargs -P "$(nproc)" -L 1 bash -c '
  a=$0; f=$1; o='"$out"'/$(echo "$f" | tr / _).sm$a
  if '"$NVCC"' -std=c++20 -O2 --expt-relaxed-constexpr -DOMNIRT_WITH_CUDA=1 -Isrc \
       -gencode arch=compute_$a,code=sm_$a -c "$f" -o "$o.o" 2> "$o.err"; then echo "ok   sm_$a $f";
  else echo "FAIL sm_$a $f"; head -5 "$o.err"; fi'
fails=$(grep -l . "$out"/*.err 2>/dev/null | xargs -r grep -l "error" | wc -l)
echo "check_cuda_archs: $(ls "$out"/*.o 2>/dev/null | wc -l) objects built, $fails failed (archs: $ARCHS)"
[ "$fails" = "0" ]
