"""The JIT path against the compiled kernels, on one GPU (benchmarks/gpu_check.sh).

1. First use: in a fresh cache (FASTCOLOR_CACHE_DIR, set by the caller to an
   empty directory), the wall time of the first call of the loss (forward and
   backward) and of the decode, which compile their kernels, and of the calls
   after it; then the time to compile every kernel of the table for this GPU
   into the cache over all cores (jit.warm_cache), as a fresh install would.
2. Speed: every GPU case of bench_ops.py through fastcolor's kernels, once on
   the compiled path and once on the JIT's, interleaved (three rounds,
   medians of medians); the two run the same device code, so the ratio should
   be 1 within noise.

    python benchmarks/bench_jit.py [--json out.json] [--skip-first-use | --first-use-only]
"""

import argparse
import json
import os
import statistics
import sys
import time

import torch

import fastcolor
from fastcolor.ops import backend, jit

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_ops import GPU_CASES, implementations, make_inputs, timer  # noqa: E402


def first_use():
    """Seconds of the first and second call of the loss and the decode on the
    JIT path, from an empty disk cache."""
    gen = torch.Generator().manual_seed(0)
    c = fastcolor.Codebook.zhang313().centres.cuda()
    w = fastcolor.rebalance_weights(fastcolor.imagenet_prior()).cuda()
    z = torch.randn(40, 313, 56, 56, generator=gen).cuda().to(torch.bfloat16).requires_grad_()
    ab = (torch.randn(40, 2, 56, 56, generator=gen) * 40).cuda()
    calls = {
        "loss bf16 fwd+bwd, 40x313x56x56": lambda: torch.autograd.grad(
            fastcolor.ops.rebalanced_cross_entropy(z, ab, c, w), z),
        "annealed mean bf16 fwd+bwd, 40x313x56x56": lambda: torch.autograd.grad(
            fastcolor.ops.annealed_mean(z, c).sum(), z),
    }
    out = {}
    for name, fn in calls.items():
        times = []
        for _ in range(2):
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            fn()
            torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
        out[name] = {"first_s": times[0], "second_s": times[1]}
    major, minor = torch.cuda.get_device_capability()
    t0 = time.perf_counter()
    n = jit.warm_cache(major * 10 + minor)
    out["warm_cache"] = {"kernels": n, "arch": f"sm_{major}{minor}", "processes": os.cpu_count(),
                         "seconds": time.perf_counter() - t0}
    return out


def speed():
    bench = timer("cuda")
    rows = []
    gen = torch.Generator().manual_seed(1)
    for case in GPU_CASES:
        z, ab, centres, weights, sigma = make_inputs(case, "cuda", gen)
        fn = implementations(case, z, ab, centres, weights, sigma, compile_ok=False)["kernel"]
        times = {"compiled": [], "jit": []}
        for _ in range(3):
            for path in times:
                backend.set_cuda_path(path)
                times[path].append(bench(fn))
        backend.set_cuda_path("auto")
        row = {"op": case.op, "label": case.label, "shape": case.shape, "dtype": str(case.dtype).replace("torch.", ""),
               "channels_last": case.channels_last, "k": case.k,
               **{f"{p}_ms": statistics.median(t) for p, t in times.items()}}
        row["jit/compiled"] = row["jit_ms"] / row["compiled_ms"]
        rows.append(row)
        print(f"  done {case.op} {case.shape}", file=sys.stderr, flush=True)
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json")
    p.add_argument("--skip-first-use", action="store_true")
    p.add_argument("--first-use-only", action="store_true")
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        sys.exit("bench_jit: needs a CUDA device")
    info = fastcolor.backend_info()
    if not (info["compiled_cuda"] and jit.available()):
        sys.exit(f"bench_jit: needs compiled CUDA kernels and the JIT (compiled_cuda={info['compiled_cuda']}, "
                 f"JIT: {jit.unavailable_reason() or 'available'})")
    result = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "nvrtc": jit.nvrtc_version(),
              "cache": jit.cache_dir()}
    if not args.skip_first_use:
        backend.set_cuda_path("jit")
        result["first_use"] = first_use()
        backend.set_cuda_path("auto")
        for name, r in result["first_use"].items():
            print(f"first use, {name}: " + ", ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}"
                                                    for k, v in r.items()))
    if args.first_use_only:
        if args.json:
            with open(args.json, "w") as f:
                json.dump(result, f, indent=1)
        return
    result["speed"] = speed()
    print(f"\nJIT vs compiled kernels on {result['device']} (torch {result['torch']}, NVRTC {result['nvrtc']}), "
          "median ms of do_bench, 3 interleaved rounds")
    print(f"{'op':<12}{'label':<10}{'shape':<20}{'dtype':<10}{'compiled':>10}{'jit':>10}{'jit/compiled':>14}")
    for r in result["speed"]:
        label = r["label"] + (" NHWC" if r["channels_last"] and "NHWC" not in r["label"] else "")
        print(f"{r['op']:<12}{label:<10}{r['shape']:<20}{r['dtype']:<10}{r['compiled_ms']:>10.3f}{r['jit_ms']:>10.3f}"
              f"{r['jit/compiled']:>14.3f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
