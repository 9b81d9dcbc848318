"""One full ECCV16 training step with each loss, on a GPU (docs/design.md section 6,
"End to end"): batch 40, 176x176 crops, bf16 autocast, channels_last, Adam.

Losses compared: a trivial one (logits.mean(): the ceiling any loss can
reach), fastcolor's fused loss (fastcolor.nn.RebalancedCrossEntropy), the
straightforward eager formulation (benchmarks/baselines.py) and
torch.compile of it, and the spec (fastcolor.ops.reference) eagerly. Reported:
median step time and peak memory, and their ratios to the trivial loss.

    python benchmarks/bench_train_step.py [--batch 40] [--size 176] [--steps 20] [--json out.json]
"""

import argparse
import json
import os
import statistics
import sys

import torch

import fastcolor
from fastcolor import reference
from fastcolor.models import ECCV16, normalize_light
from fastcolor.nn import RebalancedCrossEntropy, subsample_to

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from baselines import plain_rebalanced_cross_entropy  # noqa: E402


def make_losses(codebook, weights, compile_ok):
    fused = RebalancedCrossEntropy(codebook, class_weights=weights, prior=None).cuda()
    centres, w = fused.centres, fused.class_weights

    def plain(logits, ab):
        return plain_rebalanced_cross_entropy(logits, subsample_to(ab, logits.shape[-2:]), centres, w)

    def spec(logits, ab):
        return reference.rebalanced_cross_entropy(logits, subsample_to(ab, logits.shape[-2:]), centres, w,
                                                  k=5, sigma=5.0, reduction="mean")

    losses = {
        "trivial": lambda logits, ab: logits.float().mean(),
        "fastcolor": fused,
        "eager": plain,
        "eager (spec)": spec,
    }
    if compile_ok:
        losses["compile"] = torch.compile(plain, fullgraph=True, dynamic=False)
    return losses


def measure(model, opt, loss_fn, light, ab, steps, warmup=5):
    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits = model(light)
        loss = loss_fn(logits, ab)
        loss.backward()
        opt.step()

    for _ in range(warmup):  # cudnn autotuning, compilation, allocator warm-up
        step()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(steps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        step()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times), torch.cuda.max_memory_allocated() / 2**30


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=40)
    p.add_argument("--size", type=int, default=176)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--no-compile", action="store_true")
    p.add_argument("--json")
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        p.error("needs a CUDA device")
    torch.backends.cudnn.benchmark = True
    gen = torch.Generator().manual_seed(0)
    codebook = fastcolor.Codebook.zhang313()
    weights = fastcolor.rebalance_weights(fastcolor.imagenet_prior())
    rgb = torch.rand(args.batch, 3, args.size, args.size, generator=gen).cuda()
    lab = fastcolor.rgb_to_lab(rgb)
    light = normalize_light(lab[:, :1], "lab").contiguous(memory_format=torch.channels_last)
    ab = lab[:, 1:].contiguous()
    results = {}
    for name, loss_fn in make_losses(codebook, weights, not args.no_compile).items():
        torch.manual_seed(0)
        model = ECCV16().cuda().to(memory_format=torch.channels_last)
        opt = torch.optim.Adam(model.parameters(), lr=3e-5, betas=(0.9, 0.99), weight_decay=1e-3)
        try:
            results[name] = measure(model, opt, loss_fn, light, ab, args.steps)
        except Exception as exc:  # one failing baseline must not hide the rest
            print(f"{name}: failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        del model, opt
        torch.cuda.empty_cache()
        print(f"  done {name}", file=sys.stderr, flush=True)

    base_t, base_m = results["trivial"]
    lines = [f"ECCV16 training step | {torch.cuda.get_device_name()} | torch {torch.__version__} | "
             f"batch {args.batch}, {args.size}x{args.size}, bf16 autocast, channels_last, Adam",
             f"{'loss':<14}{'step ms':>9}{'peak GiB':>10}{'time / trivial':>16}{'mem / trivial':>15}"]
    for name, (t, m) in results.items():
        lines.append(f"{name:<14}{t:>9.2f}{m:>10.2f}{t / base_t:>16.3f}{m / base_m:>15.3f}")
    if "fastcolor" in results:
        ft = results["fastcolor"][0]
        for other in ("eager", "compile", "eager (spec)"):
            if other in results:
                lines.append(f"fastcolor step is {results[other][0] / ft:.2f}x faster than with the {other} loss")
    text = "\n".join(lines)
    if args.json:
        tmp = args.json + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"device": torch.cuda.get_device_name(), "args": vars(args),
                       "results": {k: {"ms": v[0], "peak_gib": v[1]} for k, v in results.items()}}, f, indent=1)
        os.replace(tmp, args.json)
    print(text)


if __name__ == "__main__":
    main()
