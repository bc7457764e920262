#!/usr/bin/env bash
# Packs a build folder for the GPU machine: binaries, test data links and bundled libraries, without
# objects, static libraries or CMake scratch, xz-compressed to fit the device tool's 64 MiB carry.
#   bash tools/pack_build.sh build /work/main/build-lead/build.tar.xz
# On the device: mkdir build && tar -C build -xJf build-lead/build.tar.xz
set -euo pipefail
BUILD=${1:-build}
DEST=${2:?destination .tar.xz}
bash "$(dirname "$0")/bundle_libs.sh" "$BUILD" >/dev/null
mkdir -p "$(dirname "$DEST")"
tar -C "$BUILD" --exclude='*.o' --exclude='*.a' --exclude='CMakeFiles' --exclude='Testing' \
  --exclude='_deps' --exclude='*.d' -cf - . | xz -T2 -6 > "$DEST"
du -h "$DEST"
