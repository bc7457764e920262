#!/usr/bin/env bash
# Installs everything omnirt needs to build and test, from Debian's packages and PyPI only.
# Idempotent: packages already present are not reinstalled. Safe to run on a fresh machine.
set -euo pipefail

APT_PACKAGES=(
  build-essential cmake pkg-config git
  nlohmann-json3-dev   # JSON: configs, safetensors headers, scene files, reports
  libcli11-dev         # CLI parsing
  libsentencepiece-dev sentencepiece  # LLaMA tokenizer (and spm_train for the test tokenizer)
  libstb-dev           # image decode/encode (JPEG/PNG)
  libopenblas-dev      # CPU GEMM for the reference backend
  libgtest-dev libgmock-dev  # unit tests
  libbenchmark-dev     # micro-benchmarks
  clang                # libFuzzer target for the safetensors header parser
  python3-pip
)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "[setup] installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Python side (the PyTorch reference, exporter, fixtures, ONNX check): only when asked, since
# the C++ build does not need it.
if [ "${OMNIRT_SETUP_PYTHON:-1}" = "1" ]; then
  py_missing=0
  python3 - <<'PY' || py_missing=1
import importlib, sys
for m in ["torch", "numpy", "safetensors", "sentencepiece", "transformers", "pytest", "onnx", "onnxruntime",
          "PIL", "cv2"]:
    importlib.import_module(m)
PY
  if [ "$py_missing" = "1" ]; then
    echo "[setup] installing Python packages from python/requirements.txt"
    python3 -m pip install -q --disable-pip-version-check -r "$(dirname "$0")/../python/requirements.txt"
  fi
fi
echo "[setup] ok"
