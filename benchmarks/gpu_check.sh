#!/usr/bin/env bash
# GPU check in one command, for a machine with an NVIDIA GPU, nvcc and a CUDA
# build of torch (no network needed):
#
#   bash benchmarks/gpu_check.sh            # logs under $OUT/logs (default /tmp/fastcolor-gpu)
#
# 1. builds fastcolor with its CUDA kernels for the visible GPU (nvcc);
# 1b. with CuPy installed (nothing is installed from the network), the JIT path
#    (the same kernels compiled by NVRTC at first use, fastcolor/ops/jit.py):
#    first-call compile times from an empty cache, and the whole kernel table
#    compiled for this GPU (benchmarks/bench_jit.py); without CuPy every JIT
#    step says SKIPPED and why;
# 2. runs, side by side (correctness only, no timings): the CUDA tests, each on
#    the compiled path and (test ids "cuda-jit") the JIT path (every
#    kernel variant against the reference and the CPU kernels, poisoned
#    outputs, gradcheck, opcheck, memory, torch.compile; temporal_decode's in
#    tests/test_temporal_decode.py) and compute-sanitizer memcheck and
#    racecheck over the kernel-variant tests (compiled path; temporal_decode's
#    included, its opcheck and torch.compile tests left to the plain run);
# 3. optionally (TRAIN_SCRIPT=path) a training script, alone (run next to the
#    tests on 16 cores, four trainings never got past decoding their photos);
# 4. then, alone on the GPU, the op benchmarks (docs/design.md section 6; the
#    "temporal" rows time temporal_decode), the ECCV16 training-step benchmark,
#    and the JIT against the compiled kernels on every op benchmark case (equal
#    within noise: the same device code);
# and prints the summaries and the benchmark tables last.
# 5. optionally (PROFILE=1) Nsight Compute over one call of each benchmark case
#    (benchmarks/profile_kernels.sh: DRAM %, occupancy, stall reasons per kernel).
# SKIP_BENCH=1 skips 4; SKIP_SANITIZER=1 skips the sanitizers; FULL=1 also runs the whole suite.
# Each stage has a time limit (JIT_TIMEOUT, TEST_TIMEOUT, SANITIZER_TIMEOUT, BENCH_TIMEOUT, STEP_TIMEOUT, JIT_BENCH_TIMEOUT,
# PROFILE_TIMEOUT, seconds).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/fastcolor-gpu}
LOG="$OUT/logs"
mkdir -p "$LOG"
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

nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv | tee "$LOG/gpu.txt"

t0=$(date +%s)
if ! FASTCOLOR_CUDA=compiled $PY -m pip install --no-build-isolation --no-deps -e . >"$LOG/build.log" 2>&1; then
  tail -n 60 "$LOG/build.log"
  echo "gpu_check: build failed (log: $LOG/build.log)"
  exit 1
fi
echo "build: $(( $(date +%s) - t0 )) s"
$PY -c "import fastcolor, json; print(json.dumps(fastcolor.backend_info()))" | tee "$LOG/backend.json"

# ---- 1b. the JIT: first use from an empty cache, then every kernel for this GPU
export FASTCOLOR_CACHE_DIR="$OUT/jit-cache"
rm -rf "$FASTCOLOR_CACHE_DIR"
JIT_REASON=$($PY -c "from fastcolor.ops import jit; print(jit.unavailable_reason() or '')" 2>&1 | tail -n 1)
JIT_K=""
if [ -n "$JIT_REASON" ]; then
  echo "jit: SKIPPED: $JIT_REASON (nothing is installed here; the JIT path was not run)"
  JIT_K=" and not cuda-jit"
else
  t0=$(date +%s)
  timeout "${JIT_TIMEOUT:-240}" $PY benchmarks/bench_jit.py --json "$LOG/jit_first_use.json" --first-use-only \
    >"$LOG/jit_first_use.txt" 2>&1
  jit_first_rc=$?
  echo "jit first use + whole table: $(( $(date +%s) - t0 )) s, rc=$jit_first_rc"
  cat "$LOG/jit_first_use.txt"
fi

# ---- 2. correctness, side by side
t0=$(date +%s)
pids=()
timeout "${TEST_TIMEOUT:-300}" $PY -m pytest -q -p no:cacheprovider tests benchmarks -k "cuda$JIT_K" >"$LOG/tests_cuda.log" 2>&1 &
tests_pid=$!
if [ "${SKIP_SANITIZER:-0}" != "1" ]; then
  SAN=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
  for tool in memcheck racecheck; do
    timeout "${SANITIZER_TIMEOUT:-240}" "$SAN" --tool "$tool" --error-exitcode 86 --print-limit 20 \
      $PY -m pytest -q -p no:cacheprovider tests/test_kernel_variants.py tests/test_lookup.py tests/test_temporal_decode.py \
      -k "cuda and not cuda-jit and not opcheck and not compile" >"$LOG/sanitizer_$tool.log" 2>&1 &
    pids+=($!)
  done
fi
wait "$tests_pid"; tests_rc=$?
echo "cuda tests: $(( $(date +%s) - t0 )) s, rc=$tests_rc"
san_rc=0
for pid in "${pids[@]}"; do wait "$pid" || san_rc=$?; done
[ "${SKIP_SANITIZER:-0}" = "1" ] || echo "compute-sanitizer memcheck + racecheck: $(( $(date +%s) - t0 )) s, rc=$san_rc"
if [ -n "${TRAIN_SCRIPT:-}" ]; then
  t0=$(date +%s)
  bash "$TRAIN_SCRIPT" >"$LOG/train.log" 2>&1
  echo "training: $(( $(date +%s) - t0 )) s, rc=$?"
fi

# ---- 4. timings, alone on the GPU
bench_rc=0
if [ "${SKIP_BENCH:-0}" != "1" ]; then
  t0=$(date +%s)
  timeout "${BENCH_TIMEOUT:-400}" $PY benchmarks/bench_ops.py --device cuda --json "$LOG/bench.json" >"$LOG/bench.txt" 2>"$LOG/bench.err"
  bench_rc=$?
  echo "op benchmarks: $(( $(date +%s) - t0 )) s, rc=$bench_rc"
  t0=$(date +%s)
  timeout "${STEP_TIMEOUT:-150}" $PY benchmarks/bench_train_step.py --json "$LOG/train_step.json" >"$LOG/train_step.txt" 2>"$LOG/train_step.err"
  step_rc=$?
  echo "training-step benchmark: $(( $(date +%s) - t0 )) s, rc=$step_rc"
  [ "$step_rc" = 0 ] || bench_rc=$step_rc
  if [ -z "$JIT_REASON" ]; then
    t0=$(date +%s)
    timeout "${JIT_BENCH_TIMEOUT:-150}" $PY benchmarks/bench_jit.py --skip-first-use --json "$LOG/jit_bench.json" \
      >"$LOG/jit_bench.txt" 2>"$LOG/jit_bench.err"
    jit_rc=$?
    echo "JIT vs compiled benchmark: $(( $(date +%s) - t0 )) s, rc=$jit_rc"
    [ "$jit_rc" = 0 ] || bench_rc=$jit_rc
  fi
fi

profile_rc=0
if [ "${PROFILE:-0}" = "1" ]; then
  t0=$(date +%s)
  OUT="$OUT" timeout "${PROFILE_TIMEOUT:-240}" bash benchmarks/profile_kernels.sh >"$LOG/profile.txt" 2>&1
  profile_rc=$?
  echo "ncu profile: $(( $(date +%s) - t0 )) s, rc=$profile_rc"
fi

if [ "${FULL:-0}" = "1" ]; then  # the whole suite, CPU tests under this machine's torch too
  deselect=()
  if [ ! -d ../shared/reference ]; then  # the released ECCV16 files live beside the repo, not in it
    deselect=(--deselect tests/test_codebook.py::test_zhang313_equals_released_points)
  fi
  $PY -m pytest -q -p no:cacheprovider tests benchmarks "${deselect[@]}" >"$LOG/tests_all.log" 2>&1
  echo "full suite: rc=$?"
  tail -n 3 "$LOG/tests_all.log"
fi

echo "=== CUDA tests ==="
grep -E "^(FAILED|ERROR)" "$LOG/tests_cuda.log" | head -n 30
tail -n 1 "$LOG/tests_cuda.log"
if [ "${SKIP_SANITIZER:-0}" != "1" ]; then
  for tool in memcheck racecheck; do
    echo "=== compute-sanitizer $tool ==="
    grep -E "ERROR SUMMARY|RACECHECK SUMMARY|Hazard|Invalid|passed|failed" "$LOG/sanitizer_$tool.log" | tail -n 6
  done
fi
if [ "${SKIP_BENCH:-0}" != "1" ]; then
  echo "=== benchmarks ==="
  grep -v "^  done" "$LOG/bench.err" | tail -n 5
  cat "$LOG/bench.txt"
  tail -n 3 "$LOG/train_step.err"
  cat "$LOG/train_step.txt"
  if [ -z "$JIT_REASON" ]; then
    tail -n 3 "$LOG/jit_bench.err"
    cat "$LOG/jit_bench.txt"
  else
    echo "JIT vs compiled: SKIPPED ($JIT_REASON)"
  fi
fi
if [ "${PROFILE:-0}" = "1" ]; then
  echo "=== ncu profile ==="
  cat "$LOG/profile.txt"
fi
[ "$tests_rc" = 0 ] && [ "$san_rc" = 0 ] && [ "$bench_rc" = 0 ] && [ "$profile_rc" = 0 ] && [ "${jit_first_rc:-0}" = 0 ]
