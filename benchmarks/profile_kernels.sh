#!/usr/bin/env bash
# Nsight Compute over one call of each GPU case of bench_ops.py (fastcolor's
# kernels only; the clocks left alone), then a one-line-per-kernel summary:
# time, DRAM bytes and % of peak, SM %, achieved occupancy, registers and the
# top warp-stall reasons. Needs ncu with access to the hardware counters
# (the Firecracker device machines have it; gVisor ones do not).
#
#   bash benchmarks/profile_kernels.sh      # writes $OUT/logs/kernels.{ncu-rep,csv,txt}
set -uo pipefail
cd "$(dirname "$0")/.."
LOG=${OUT:-/tmp/fastcolor-gpu}/logs && mkdir -p "$LOG"
PY=${PYTHON:-python3}
NCU=$(command -v ncu || echo /usr/local/cuda/bin/ncu)
kernels='regex:cross_entropy|annealed_mean|nearest_bin|soft_encode|bin_histogram'
"$NCU" --profile-from-start off --clock-control none --target-processes all -k "$kernels" \
  --section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats \
  --section MemoryWorkloadAnalysis --metrics dram__bytes_read.sum,dram__bytes_write.sum,gpu__time_duration.sum \
  -f -o "$LOG/kernels" \
  $PY benchmarks/bench_ops.py --device cuda --once >"$LOG/ncu.log" 2>&1
rc=$?
if [ "$rc" != 0 ] || [ ! -f "$LOG/kernels.ncu-rep" ]; then
  tail -n 30 "$LOG/ncu.log"
  echo "profile_kernels: ncu failed (rc=$rc; log: $LOG/ncu.log)"
  exit 1
fi
"$NCU" --import "$LOG/kernels.ncu-rep" --csv --page raw >"$LOG/kernels.csv"
grep -E "^  ran " "$LOG/ncu.log" | tee "$LOG/kernels.txt"  # the cases, in launch order
$PY benchmarks/ncu_summary.py "$LOG/kernels.csv" | tee -a "$LOG/kernels.txt"
