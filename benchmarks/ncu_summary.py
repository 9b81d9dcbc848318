"""One line per profiled kernel from an Nsight Compute report's raw CSV page:
time, DRAM bytes and throughput, achieved occupancy, registers and the top
warp-stall reasons (cycles per issued instruction).

    ncu --import kernels.ncu-rep --csv --page raw > kernels.csv
    python benchmarks/ncu_summary.py kernels.csv
"""

import csv
import re
import sys

SCALE = {  # to microseconds / megabytes
    "nsecond": 1e-3, "usecond": 1.0, "msecond": 1e3, "second": 1e6,
    "byte": 1e-6, "Kbyte": 1e-3, "Mbyte": 1.0, "Gbyte": 1e3,
}
STALL = re.compile(r"^smsp__average_warps_issue_stalled_(\w+?)_per_issue_active\.ratio$")


def number(text, unit=""):
    try:
        value = float(text.replace(",", ""))
    except (AttributeError, ValueError):
        return None
    return value * SCALE.get(unit, 1.0)


def summarize(path):
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    start = next((i for i, r in enumerate(rows) if r and r[0] == "ID"), None)
    if start is None:
        raise SystemExit(f"{path}: no 'ID' header row (is it `ncu --csv --page raw` output?)")
    head, units = rows[start], rows[start + 1]
    col = {name: i for i, name in enumerate(head)}

    def get(row, name):
        i = col.get(name)
        return None if i is None or i >= len(row) else number(row[i], units[i])

    def text(row, name):
        i = col.get(name)
        return "-" if i is None or i >= len(row) else row[i]

    fmt = lambda v, f: "-" if v is None else f.format(v)
    lines = [f"{'id':>3} {'kernel':<42}{'grid':>14}{'block':>12}{'us':>9}{'DRAM MB':>9}{'DRAM %':>8}"
             f"{'SM %':>7}{'occ %':>7}{'regs':>6}  top stalls (cycles per issued instruction)"]
    for row in rows[start + 2:]:
        if not row or not row[0].strip().isdigit():
            continue
        name = text(row, "Kernel Name").replace("(anonymous namespace)::", "")
        name = re.sub(r"^(void )?(\w+::)*", "", name).split("(")[0][:41]
        mb = [get(row, "dram__bytes_read.sum"), get(row, "dram__bytes_write.sum")]
        stalls = sorted(((get(row, h) or 0.0, STALL.match(h).group(1)) for h in head if STALL.match(h)),
                        reverse=True)[:3]
        lines.append(
            f"{row[0]:>3} {name:<42}{text(row, 'launch__grid_size'):>14}{text(row, 'launch__block_size'):>12}"
            f"{fmt(get(row, 'gpu__time_duration.sum'), '{:.1f}'):>9}"
            f"{fmt(sum(mb) if None not in mb else None, '{:.1f}'):>9}"
            f"{fmt(get(row, 'dram__throughput.avg.pct_of_peak_sustained_elapsed'), '{:.0f}'):>8}"
            f"{fmt(get(row, 'sm__throughput.avg.pct_of_peak_sustained_elapsed'), '{:.0f}'):>7}"
            f"{fmt(get(row, 'sm__warps_active.avg.pct_of_peak_sustained_active'), '{:.0f}'):>7}"
            f"{text(row, 'launch__registers_per_thread'):>6}  "
            + ", ".join(f"{reason} {v:.1f}" for v, reason in stalls if v > 0)
        )
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    print(summarize(sys.argv[1]))
