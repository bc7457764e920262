#!/usr/bin/env bash
# Copies the shared libraries our binaries need that a bare GPU machine may lack (sentencepiece,
# OpenBLAS, protobuf, gfortran...) into BUILD/bundled-libs, so a build made on a development
# machine can be carried to a GPU machine and run there (tools/gpu_check.sh picks them up).
# The CUDA libraries (cudart, cuBLAS/cuBLASLt) and glibc are not bundled: the GPU machine has them.
set -euo pipefail
BUILD=${1:-build}
out="$BUILD/bundled-libs"
mkdir -p "$out"
bins=$(find "$BUILD" -maxdepth 3 -type f -perm -u+x \( -name 'omnirt' -o -name 'test_*' -o -name 'bench_*' \) 2>/dev/null)
for b in $bins; do
  ldd "$b" 2>/dev/null | awk '/=> \//{print $3}'
done | sort -u | while read -r lib; do
  case "$(basename "$lib")" in
    libc.so*|libm.so*|libdl.so*|libpthread.so*|librt.so*|ld-linux*|libcuda.so*|libcudart*|libcublas*|libgcc_s*|libstdc++*) ;;
    *) cp -L -u "$lib" "$out/" ;;
  esac
done
du -sh "$out"
