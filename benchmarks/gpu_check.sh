#!/usr/bin/env bash
# GPU check in one command, for a machine with an NVIDIA GPU, nvcc and a CUDA
# build of torch (no network needed):
#
#   bash benchmarks/gpu_check.sh            # logs under $OUT (default /tmp/fastcolor-gpu)
#
# 1. builds fastcolor with its CUDA kernels for the visible GPU,
# 2. runs the CUDA tests (kernels against the reference and the CPU kernels,
#    gradcheck, opcheck, memory, torch.compile),
# 3. runs the benchmarks of DESIGN.md section 3,
# and prints the test summary and the benchmark table last.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/fastcolor-gpu}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
export MAX_JOBS=${MAX_JOBS:-$(nproc)}
export TORCHINDUCTOR_COMPILE_THREADS=${TORCHINDUCTOR_COMPILE_THREADS:-$(nproc)}
export PYTHONUNBUFFERED=1

# The lent H200 image sets CXX to a GCC in /opt/gcc that links libstdc++
# statically, which crashes next to torch (setup.py refuses such a build).
# Its system GCC links it dynamically (checked on that image, 2026-11-26).
if [ -x /usr/bin/g++ ] && [ "${CXX:-}" != /usr/bin/g++ ]; then
  export CXX=/usr/bin/g++ CC=/usr/bin/gcc
fi

nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv | tee "$OUT/gpu.txt"

t0=$(date +%s)
if ! FORCE_CUDA=1 $PY -m pip install --no-build-isolation --no-deps -e . >"$OUT/build.log" 2>&1; then
  tail -n 60 "$OUT/build.log"
  echo "gpu_check: build failed (log: $OUT/build.log)"
  exit 1
fi
echo "build: $(( $(date +%s) - t0 )) s"
$PY -c "import fastcolor, json; print(json.dumps(fastcolor.backend_info()))" | tee "$OUT/backend.json"

t0=$(date +%s)
$PY -m pytest -q -p no:cacheprovider tests benchmarks -k cuda >"$OUT/tests_cuda.log" 2>&1
tests_rc=$?
echo "cuda tests: $(( $(date +%s) - t0 )) s, rc=$tests_rc"

bench_rc=0
if [ "${SKIP_BENCH:-0}" != "1" ]; then
  t0=$(date +%s)
  $PY benchmarks/bench_ops.py --device cuda --json "$OUT/bench.json" >"$OUT/bench.txt" 2>"$OUT/bench.err"
  bench_rc=$?
  echo "benchmarks: $(( $(date +%s) - t0 )) s, rc=$bench_rc"
fi

if [ "${FULL:-0}" = "1" ]; then  # the whole suite, CPU tests under this machine's torch too
  deselect=()
  if [ ! -d ../shared/reference ]; then  # the released ECCV16 files live beside the repo, not in it
    deselect=(--deselect tests/test_codebook.py::test_zhang313_equals_released_points)
  fi
  $PY -m pytest -q -p no:cacheprovider tests benchmarks "${deselect[@]}" >"$OUT/tests_all.log" 2>&1
  echo "full suite: rc=$?"
  tail -n 3 "$OUT/tests_all.log"
fi

echo "=== CUDA tests ==="
grep -E "^(FAILED|ERROR)" "$OUT/tests_cuda.log" | head -n 30
tail -n 1 "$OUT/tests_cuda.log"
if [ "${SKIP_BENCH:-0}" != "1" ]; then
  echo "=== benchmarks ==="
  tail -n 5 "$OUT/bench.err"
  cat "$OUT/bench.txt"
fi
[ "$tests_rc" = 0 ] && [ "$bench_rc" = 0 ]
