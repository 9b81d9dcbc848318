#!/usr/bin/env bash
# Set up fastcolor in ./.venv: torch 2.14.1 (on the dev/CI machines pip takes
# its CUDA build from local disk), the runtime and test dependencies, and the
# extension fastcolor._C (C++ CPU kernels, plus CUDA kernels whenever nvcc is
# found; see setup.py for FASTCOLOR_CUDA / TORCH_CUDA_ARCH_LIST), and CuPy, through which
# the CUDA kernels compile at run time where nvcc did not build them (the JIT;
# tests/test_jit_compile.py compiles them all with it, no GPU needed).
# Idempotent: a second run rebuilds only if csrc/, setup.py or
# fastcolor/ops/limits.py changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${VENV:-.venv}

[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
pip_install() { "$VENV/bin/python" -m pip install -q --disable-pip-version-check "$@"; }
pip_install "torch==2.14.1" numpy pillow safetensors tqdm av opencv-python-headless scikit-image pytest pytest-benchmark ninja onnx onnxruntime \
  fastapi uvicorn httpx playwright "cupy-cuda13x[ctk]"
# fastcolor serve's browser test drives Debian's chromium (never a Playwright download).
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  echo "fastcolor: installing chromium for the browser test..."
  { if [ "$(id -u)" = 0 ]; then DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium 2>/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; };
    elif command -v sudo >/dev/null 2>&1; then sudo -n apt-get update -qq && sudo -n apt-get install -y -qq chromium; fi; } \
    >/dev/null 2>&1 || echo "fastcolor: could not install chromium; tests/test_serve.py's browser test will skip" >&2
fi

if [ -z "${CUDA_HOME:-}" ] && [ -x /usr/local/cuda/bin/nvcc ]; then
  export CUDA_HOME=/usr/local/cuda
fi
export MAX_JOBS=${MAX_JOBS:-$(nproc)}

stamp="$VENV/.fastcolor-build"
sources=$(cat setup.py fastcolor/ops/limits.py $(find csrc -type f | sort) | sha256sum | cut -d' ' -f1)
want="$sources ${FASTCOLOR_CUDA:-} ${FORCE_CUDA:-} ${FORCE_CPU:-} ${TORCH_CUDA_ARCH_LIST:-} ${FASTCOLOR_CPU_ARCH:-}"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && "$VENV/bin/python" -c "import fastcolor._C" 2>/dev/null; then
  echo "fastcolor: extension up to date"
else
  echo "fastcolor: building the extension (a few minutes with CUDA kernels)..."
  start=$(date +%s)
  log=$(mktemp)
  if ! "$VENV/bin/python" -m pip install --no-build-isolation --no-deps -e . >"$log" 2>&1; then
    tail -n 40 "$log"
    echo "fastcolor: build failed; full log in $log" >&2
    exit 1
  fi
  rm -f "$log"
  echo "$want" >"$stamp"
  echo "fastcolor: built in $(( $(date +%s) - start )) s"
fi
"$VENV/bin/python" -c "import fastcolor, json; print('fastcolor backends:', json.dumps(fastcolor.backend_info()))"
