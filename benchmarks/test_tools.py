"""The benchmark helpers: ncu_summary's parsing and bench_ops --once."""

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import ncu_summary  # noqa: E402

CSV = '''"ID","Kernel Name","launch__grid_size","launch__block_size","gpu__time_duration.sum",\
"dram__bytes_read.sum","dram__bytes_write.sum","dram__throughput.avg.pct_of_peak_sustained_elapsed",\
"sm__warps_active.avg.pct_of_peak_sustained_active","launch__registers_per_thread",\
"smsp__average_warps_issue_stalled_barrier_per_issue_active.ratio",\
"smsp__average_warps_issue_stalled_long_scoreboard_per_issue_active.ratio",\
"smsp__average_warps_issue_stalled_wait_per_issue_active.ratio"
"","","","","nsecond","Mbyte","Kbyte","%","%","register/thread","ratio","ratio","ratio"
"0","void fastcolor::(anonymous namespace)::cross_entropy_tile_kernel<float, 40>(int, const float *)",\
"3920","256","1,012,500","157.2","2,500","12.3","22.5","118","3.2","10.5","0"
'''


def test_ncu_summary_reads_units_and_ranks_stalls(tmp_path):
    path = tmp_path / "k.csv"
    path.write_text(CSV)
    line = ncu_summary.summarize(path).splitlines()[1].split()
    assert line[:4] == ["0", "cross_entropy_tile_kernel<float,", "40>", "3920"]
    assert line[5:10] == ["1012.5", "159.7", "12", "-", "22"]  # ns -> us, MB + KB, no SM % column
    assert " ".join(line[11:]) == "long_scoreboard 10.5, barrier 3.2"  # zero stalls left out


def test_bench_ops_once_runs_every_cpu_case():
    done = subprocess.run([sys.executable, str(HERE / "bench_ops.py"), "--device", "cpu", "--once"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    import bench_ops

    assert done.stderr.count("  ran ") == len(bench_ops.CPU_CASES)
