"""Benchmark every fastcolor op against the fastest pure-PyTorch code a user would write.

For each op and shape, in one run: the "cdist" baseline (benchmarks/baselines.py:
torch.cdist + argmin / topk / bincount, and for the loss topk + Gaussian +
scatter + log_softmax, or argmin + F.cross_entropy when k = 1) and its
torch.compile; fastcolor's kernel; and, as a separate row, the exact
specification (fastcolor.ops.reference, which breaks distance ties by bin
index and is slower) with its torch.compile. Median times and ratios; on a GPU
also the memory-bandwidth floor (bytes that must move / measured copy
bandwidth) and, for the loss, peak memory. Shapes are those of docs/design.md
section 6.2 on a GPU and smaller ones on the CPU.

    python benchmarks/bench_ops.py                 # the GPU if there is one
    python benchmarks/bench_ops.py --device cpu --json out.json
    python benchmarks/bench_ops.py --no-compile    # skip the torch.compile column
    python benchmarks/bench_ops.py --op temporal   # only some ops
    python benchmarks/bench_ops.py --once          # call each fastcolor op once, no timing
                                                   # (for a profiler: benchmarks/profile_kernels.sh)
"""

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import dataclass, field

import torch

import fastcolor
from fastcolor import ops, reference
from fastcolor.color.codebook import Codebook
from fastcolor.color.prior import imagenet_prior, rebalance_weights

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import baselines  # noqa: E402


@dataclass
class Case:
    op: str  # "loss", "decode", "decode_fb", "nearest", "soft_encode", "histogram", "temporal"
    n: int
    q: int
    h: int
    w: int
    dtype: torch.dtype = torch.float32
    k: int = 5
    label: str = ""
    compile: bool = True  # also time torch.compile of the reference
    channels_last: bool = False  # logits in NHWC, as a network emits them
    reference: bool = True  # also time fastcolor.ops.reference (its dense distances do not fit at 256x256x256)
    results: dict = field(default_factory=dict)

    @property
    def shape(self):
        if self.op in ("nearest", "histogram"):
            return f"{self.n}x{self.h}x{self.w}"
        return f"{self.n}x{self.q}x{self.h}x{self.w}"

    def floor_bytes(self):
        px = self.n * self.h * self.w
        z = px * self.q * torch.finfo(self.dtype).bits // 8
        if self.op == "loss":  # logits read, gradient written, ab read
            return 2 * z + 8 * px
        if self.op == "decode":  # logits read, ab written (float32)
            return z + 8 * px
        if self.op == "decode_fb":  # forward reads the logits; backward reads them again, writes the gradient
            return 3 * z + 16 * px
        if self.op == "soft_encode":  # ab read, dense float32 targets written
            return 8 * px + 4 * self.q * px
        if self.op == "histogram":  # ab read
            return 8 * px
        if self.op == "temporal":  # logits, state and weight read; new state and ab written
            return z + 8 * self.q * px + 12 * px
        return 8 * px + 8 * px  # nearest: ab read, int64 index written


GPU_CASES = [
    Case("loss", 40, 313, 56, 56, torch.float32),
    Case("loss", 40, 313, 56, 56, torch.bfloat16),
    Case("loss", 16, 313, 128, 128, torch.bfloat16),
    Case("decode", 40, 313, 56, 56, torch.float32),
    Case("decode", 16, 313, 128, 128, torch.bfloat16),
    Case("nearest", 40, 313, 56, 56),
    Case("loss", 64, 32, 256, 256, torch.float32, k=1, label="Stanford"),
    Case("loss", 64, 32, 256, 256, torch.bfloat16, k=1, label="Stanford"),
    Case("decode", 64, 32, 256, 256, torch.float32, label="Stanford"),
    # beyond the design document's table: channels_last logits, decode with its backward, the ab-only ops
    Case("loss", 40, 313, 56, 56, torch.bfloat16, label="NHWC", compile=False, channels_last=True),
    Case("decode", 40, 313, 56, 56, torch.float32, label="NHWC", compile=False, channels_last=True),
    Case("decode_fb", 40, 313, 56, 56, torch.float32, compile=False),
    Case("decode_fb", 16, 313, 128, 128, torch.bfloat16, compile=False),
    Case("soft_encode", 40, 313, 56, 56, compile=False),
    Case("histogram", 256, 313, 256, 256, compile=False),
    Case("temporal", 40, 313, 56, 56, torch.float32),
    Case("temporal", 16, 313, 128, 128, torch.bfloat16, compile=False),
    Case("temporal", 40, 313, 56, 56, torch.bfloat16, label="NHWC", compile=False, channels_last=True),
]
CPU_CASES = [
    Case("loss", 8, 313, 56, 56, torch.float32),
    Case("loss", 8, 313, 56, 56, torch.bfloat16),
    Case("decode", 8, 313, 56, 56, torch.float32),
    Case("decode_fb", 8, 313, 56, 56, torch.float32),
    Case("nearest", 8, 313, 56, 56),
    Case("histogram", 16, 313, 128, 128),
    Case("histogram", 256, 313, 256, 256, compile=False, reference=False),
    Case("soft_encode", 8, 313, 56, 56, compile=False),
    Case("loss", 4, 32, 128, 128, torch.float32, k=1, label="Stanford"),
    Case("decode", 4, 32, 128, 128, torch.float32, label="Stanford"),
    Case("temporal", 8, 313, 64, 64, torch.float32),
]


def stanford_codebook(q, device):
    # 32 bins over the YUV chroma plane, as the data-driven Stanford codebook.
    g = torch.Generator().manual_seed(0)
    uv = torch.rand(q, 2, generator=g) * torch.tensor([0.9, 1.3]) - torch.tensor([0.45, 0.65])
    return uv.to(device), torch.rand(q, generator=g).to(device) + 0.5


def make_inputs(case, device, gen):
    if case.q == 313:
        cb = Codebook.zhang313()
        centres = cb.centres.to(device)
        weights = rebalance_weights(imagenet_prior()).to(device)
        scale = 40.0
    else:
        centres, weights = stanford_codebook(case.q, device)
        scale = 0.2
    ab = (torch.randn(case.n, 2, case.h, case.w, generator=gen) * scale).to(device)
    if case.op in ("nearest", "histogram", "soft_encode"):
        return None, ab, centres, weights, 5.0
    z = torch.randn(case.n, case.q, case.h, case.w, generator=gen).to(device=device, dtype=case.dtype)
    if case.channels_last:
        z = z.contiguous(memory_format=torch.channels_last)
    sigma = 5.0 if case.q == 313 else 0.05
    if case.op == "temporal":  # ab stands for (state, weight): the previous distribution, its weight
        state = torch.softmax(torch.randn(z.shape, generator=gen) * 2, dim=1).to(device)
        ab = (state, torch.rand(case.n, 1, case.h, case.w, generator=gen).to(device))
    return z, ab, centres, weights, sigma


def timer(device):
    """A function that returns the median time in ms of calling fn."""
    if device == "cuda":
        try:
            from triton.testing import do_bench

            return lambda fn: do_bench(fn, warmup=25, rep=200, return_mode="median")
        except ImportError:
            pass

        def cuda_time(fn):
            for _ in range(3):
                fn()
            times = []
            for _ in range(20):
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                fn()
                end.record()
                torch.cuda.synchronize()
                times.append(start.elapsed_time(end))
            return statistics.median(times)

        return cuda_time

    def cpu_time(fn, budget_s=3.0):
        fn()
        times, t_end = [], time.perf_counter() + budget_s
        # at least 5 runs, or 3 of a call slower than a second
        while len(times) < (3 if times and min(times) > 1e3 else 5) or (
                time.perf_counter() < t_end and len(times) < 50):
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
        return statistics.median(times)

    return cpu_time


def copy_bandwidth(device, bench):
    """Measured copy bandwidth in bytes/ms (bytes read + bytes written)."""
    x = torch.empty(256 * 2**20 if device == "cuda" else 32 * 2**20, dtype=torch.uint8, device=device)
    y = torch.empty_like(x)
    ms = bench(lambda: y.copy_(x))
    return 2 * x.numel() / ms


def implementations(case, z, ab, centres, weights, sigma, compile_ok):
    """name -> callable doing the op (forward + backward for the loss)."""

    def loss_fn(impl):
        if impl == "kernel":
            return lambda zz: ops.rebalanced_cross_entropy(zz, ab, centres, weights, k=case.k, sigma=sigma)
        return lambda zz: reference.rebalanced_cross_entropy(zz, ab, centres, weights, pixel_weight=None, k=case.k, sigma=sigma, reduction="mean")

    out = {}
    cd = {}  # the cdist baselines: the fastest pure-PyTorch code a user would write
    if case.op == "loss" and case.k == 1:  # one-hot targets: F.cross_entropy is what a user writes
        cd["cdist"] = lambda zz: baselines.hard_rebalanced_cross_entropy(zz, ab, centres, weights)
    elif case.op == "loss":
        cd["cdist"] = lambda zz: baselines.plain_rebalanced_cross_entropy(zz, ab, centres, weights, case.k, sigma)
    elif case.op == "nearest":
        cd["cdist"] = lambda: baselines.cdist_nearest_bin(ab, centres)
    elif case.op == "histogram":
        cd["cdist"] = lambda: baselines.cdist_bin_histogram(ab, centres)
    elif case.op == "soft_encode":
        cd["cdist"] = lambda: baselines.cdist_soft_encode(ab, centres, case.k, sigma)
    elif case.op == "temporal":
        cd["cdist"] = lambda: baselines.plain_temporal_decode(z, *ab, centres, 0.38)
    if cd and compile_ok:
        cd["cdist_compile"] = torch.compile(cd["cdist"], fullgraph=True, dynamic=False)
    if case.op == "loss":
        zg0 = z.detach().requires_grad_()
        for name, f in cd.items():
            out[name] = lambda f=f: torch.autograd.grad(f(zg0), zg0)
    else:
        out.update(cd)
    if case.op == "loss":
        zg = z.detach().requires_grad_()
        fns = {"eager": loss_fn("eager"), "kernel": loss_fn("kernel")}
        if compile_ok:
            fns["compile"] = torch.compile(loss_fn("eager"), fullgraph=True, dynamic=False)
        for name, f in fns.items():
            out[name] = lambda f=f: torch.autograd.grad(f(zg), zg)
    elif case.op == "decode":
        out["eager"] = lambda: reference.annealed_mean(z, centres, 0.38)
        out["kernel"] = lambda: ops.annealed_mean(z, centres, 0.38)
        if compile_ok:
            f = torch.compile(lambda zz: reference.annealed_mean(zz, centres, 0.38), fullgraph=True, dynamic=False)
            out["compile"] = lambda: f(z)
    elif case.op == "decode_fb":
        zg = z.detach().requires_grad_()
        g = torch.randn(z.shape[0], 2, *z.shape[2:], device=z.device)
        fns = {"eager": lambda zz: reference.annealed_mean(zz, centres, 0.38),
               "kernel": lambda zz: ops.annealed_mean(zz, centres, 0.38)}
        if compile_ok:
            fns["compile"] = torch.compile(fns["eager"], fullgraph=True, dynamic=False)
        for name, f in fns.items():
            out[name] = lambda f=f: torch.autograd.grad(f(zg), zg, g)
    elif case.op == "soft_encode":
        out["eager"] = lambda: reference.soft_encode(ab, centres, case.k, sigma)
        out["kernel"] = lambda: ops.soft_encode(ab, centres, case.k, sigma)
        if compile_ok:
            f = torch.compile(reference.soft_encode, fullgraph=True, dynamic=False)
            out["compile"] = lambda: f(ab, centres, case.k, sigma)
    elif case.op == "temporal":
        out["eager"] = lambda: reference.temporal_decode(z, *ab, centres, 0.38)
        out["kernel"] = lambda: ops.temporal_decode(z, *ab, centres, 0.38)
        if compile_ok:
            f = torch.compile(reference.temporal_decode, fullgraph=True, dynamic=False)
            out["compile"] = lambda: f(z, *ab, centres, 0.38)
    elif case.op == "histogram":
        out["eager"] = lambda: reference.bin_histogram(ab, centres)
        out["kernel"] = lambda: ops.bin_histogram(ab, centres)
        if compile_ok:
            f = torch.compile(reference.bin_histogram, fullgraph=True, dynamic=False)
            out["compile"] = lambda: f(ab, centres)
    else:
        out["eager"] = lambda: reference.nearest_bin(ab, centres)
        out["kernel"] = lambda: ops.nearest_bin(ab, centres)
        if compile_ok:
            f = torch.compile(reference.nearest_bin, fullgraph=True, dynamic=False)
            out["compile"] = lambda: f(ab, centres)
    return out


def peak_memory_mb(fn, device):
    if device != "cuda":
        return None
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - base) / 2**20


def run(device, cases, compile_ok, on_case=None):
    bench = timer(device)
    bw = copy_bandwidth(device, bench) if device == "cuda" else None
    gen = torch.Generator().manual_seed(0)
    for case in cases:
        z, ab, centres, weights, sigma = make_inputs(case, device, gen)
        with torch.no_grad() if case.op not in ("loss", "decode_fb") else torch.enable_grad():
            fns = implementations(case, z, ab, centres, weights, sigma, compile_ok and case.compile)
            if not case.reference:
                fns = {n: f for n, f in fns.items() if n not in ("eager", "compile")}
            for name, fn in fns.items():
                try:
                    case.results[name] = bench(fn)
                    if case.op == "loss":
                        case.results[name + "_mem"] = peak_memory_mb(fn, device)
                except Exception as exc:  # report and go on: one failing baseline must not hide the rest
                    print(f"  {case.op} {case.shape} {name}: failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        if bw:
            case.results["floor"] = case.floor_bytes() / bw
        print(f"  done {case.op} {case.shape} {str(case.dtype).replace('torch.', '')}: "
              + ", ".join(f"{k} {v:.4g}" for k, v in case.results.items() if v is not None),
              file=sys.stderr, flush=True)
        if on_case:
            on_case(bw)
        del z, ab
    return bw


def table(device, cases, bw):
    info = fastcolor.backend_info()
    where = info["cuda_device"] if device == "cuda" else f"CPU ({info['cpu_threads']} threads)"
    lines = [
        f"fastcolor {fastcolor.__version__} | torch {info['torch']} | {where} | "
        f"kernels: cpu={info['compiled_cpu']} cuda={info['compiled_cuda']} ({info['cuda_archs']})",
    ]
    if bw:
        lines.append(f"measured copy bandwidth: {bw / 1e9:.2f} TB/s (read + write)")
    head = (f"{'op':<12}{'shape':<18}{'dtype':<9}{'eager ms':>10}{'compile ms':>11}{'cdist ms':>10}"
            f"{'cdist-c ms':>11}{'fastcolor ms':>13}{'x eager':>9}{'x compile':>10}{'x cdist':>9}{'x cdist-c':>10}")
    if bw:
        head += f"{'floor ms':>10}{'/ floor':>8}"
    lines.append(head)
    for c in cases:
        r = c.results
        e, k, cp = r.get("eager"), r.get("kernel"), r.get("compile")
        cd, cdc = r.get("cdist"), r.get("cdist_compile")
        fmt = lambda v, f="{:.3f}": f.format(v) if v is not None else "-"
        row = (
            f"{(c.op + ('*' if c.label == 'Stanford' else '') + (' NHWC' if c.channels_last else '')):<12}{c.shape:<18}{str(c.dtype).replace('torch.', ''):<9}"
            f"{fmt(e):>10}{fmt(cp):>11}{fmt(cd):>10}{fmt(cdc):>11}{fmt(k):>13}"
            f"{fmt(e / k if e and k else None, '{:.1f}'):>9}{fmt(cp / k if cp and k else None, '{:.1f}'):>10}"
            f"{fmt(cd / k if cd and k else None, '{:.1f}'):>9}{fmt(cdc / k if cdc and k else None, '{:.1f}'):>10}"
        )
        if bw:
            row += f"{fmt(r.get('floor'), '{:.4f}'):>10}{fmt(k / r['floor'] if k else None, '{:.1f}'):>8}"
        lines.append(row)
    mem = [c for c in cases if c.results.get("kernel_mem") is not None]
    if mem:
        lines.append("peak extra memory of loss fwd+bwd (MiB): eager / compile / fastcolor [logits size]")
        for c in mem:
            r = c.results
            size = c.n * c.q * c.h * c.w * torch.finfo(c.dtype).bits / 8 / 2**20
            lines.append(
                f"  {c.shape} {str(c.dtype).replace('torch.', '')}: {r.get('eager_mem', 0):.0f} / "
                f"{r.get('compile_mem') or 0:.0f} / {r['kernel_mem']:.0f} [{size:.0f}]"
            )
    lines.append("loss = rebalanced_cross_entropy forward+backward; decode = annealed_mean (T=0.38), "
                 "decode_fb = its forward+backward; histogram = bin_histogram; "
                 "temporal = temporal_decode (T=0.38), its cdist = softmax, lerp_, pow, conv2d; "
                 "* = Stanford config (32 bins, k=1); NHWC = channels_last logits; "
                 "cdist = torch.cdist + argmin/topk (+ bincount, + Gaussian, scatter, log_softmax), "
                 "cdist-c = its torch.compile")
    return "\n".join(lines)


def run_once(device, cases):
    """Each case's fastcolor implementation called once more after a warm-up
    call; on a GPU only that second call runs between cudaProfilerStart and
    cudaProfilerStop, so `ncu --profile-from-start off` sees just it."""
    gen = torch.Generator().manual_seed(0)
    for case in cases:
        z, ab, centres, weights, sigma = make_inputs(case, device, gen)
        with torch.no_grad() if case.op not in ("loss", "decode_fb") else torch.enable_grad():
            fn = implementations(case, z, ab, centres, weights, sigma, False)["kernel"]
            fn()
            if device == "cuda":
                torch.cuda.synchronize()
                torch.cuda.cudart().cudaProfilerStart()
            fn()
            if device == "cuda":
                torch.cuda.synchronize()
                torch.cuda.cudart().cudaProfilerStop()
        print(f"  ran {case.op} {case.label} {case.shape} {str(case.dtype).replace('torch.', '')}"
              f"{' NHWC' if case.channels_last else ''}", file=sys.stderr, flush=True)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--no-compile", action="store_true", help="skip torch.compile of the reference")
    p.add_argument("--json", help="also write the results to this file")
    p.add_argument("--once", action="store_true", help="call each fastcolor op once, untimed (for a profiler)")
    p.add_argument("--op", action="append", metavar="OP",
                   help="only these ops (loss, decode, decode_fb, nearest, soft_encode, histogram, temporal)")
    args = p.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda, but no CUDA device is visible")
    cases = GPU_CASES if args.device == "cuda" else CPU_CASES
    if args.op:
        cases = [c for c in cases if c.op in args.op]
    print(json.dumps(fastcolor.backend_info()), file=sys.stderr)
    if args.once:
        run_once(args.device, cases)
        return

    def write_json(bw):  # after every case, so that a run cut short keeps what it measured
        if not args.json:
            return
        rows = [dict(op=c.op, shape=c.shape, dtype=str(c.dtype), k=c.k, label=c.label, **c.results)
                for c in cases if c.results]
        tmp = args.json + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"device": args.device, "backend": fastcolor.backend_info(), "copy_bytes_per_ms": bw,
                       "rows": rows}, f, indent=1)
        os.replace(tmp, args.json)

    bw = run(args.device, cases, not args.no_compile, on_case=write_json)
    print(table(args.device, cases, bw))


if __name__ == "__main__":
    main()
