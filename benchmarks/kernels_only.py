"""Time fastcolor's kernels alone on the CPU cases of bench_ops.py and print
one JSON line {case: median ms}: for comparing two builds of the extension in
alternate processes, e.g. PYTHONPATH=/copy/with/old/_C.so python benchmarks/kernels_only.py."""

import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_ops as b  # noqa: E402


def main():
    out = {}
    gen = torch.Generator().manual_seed(0)
    bench = b.timer("cpu")
    for case in b.CPU_CASES:
        z, ab, c, w, sigma = b.make_inputs(case, "cpu", gen)
        fns = b.implementations(case, z, ab, c, w, sigma, False)
        name = f"{case.op}{'*' if case.label == 'Stanford' else ''} {case.shape} {str(case.dtype).replace('torch.', '')}"
        out[name] = bench(fns["kernel"])
    print(json.dumps(out))


if __name__ == "__main__":
    main()
