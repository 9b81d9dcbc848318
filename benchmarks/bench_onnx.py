"""Images/s of fastcolor and of its ONNX export in onnxruntime, on the CPU.

Two rows per batch size, both float32 on the CPU with the same thread count:

* network + decode: normalised lightness (N, 1, S, S) -> chroma at the
  network's output resolution. fastcolor: predict_padded + the annealed-mean
  kernel (backend "kernels", torch.inference_mode); onnxruntime: the exported
  graph (fastcolor.export), CPUExecutionProvider, all graph optimisations.
  The same work on both sides.
* end to end (fastcolor only, for context): Colorizer.colorize_batch on
  S x S RGB uint8 images (lightness, resize, network, decode, upsample,
  conversion to RGB).

    python benchmarks/bench_onnx.py [--model PATH] [--size 256] [--batches 1 4 8]
                                    [--threads N] [--seconds 3] [--json out.json]

Not part of CI. Each number is the median images/s over timed repeats (about
--seconds each); the three rows of a batch size are timed in turn, call by
call, so that a busy machine slows them alike.
"""

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def cpu_name():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"


def rates(fns, n_images, seconds):
    """Median images/s of each fn, called in turn (a, b, c, a, b, c, ...) so
    that all see the same machine load; one warm-up call each first."""
    for fn in fns:
        fn()
    times, start = [[] for _ in fns], time.perf_counter()
    while time.perf_counter() - start < seconds * len(fns) or len(times[0]) < 5:
        for fn, t in zip(fns, times):
            t0 = time.perf_counter()
            fn()
            t.append(time.perf_counter() - t0)
    return [(n_images / statistics.median(t), len(t)) for t in times]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model file or run directory (default: the bundled model)")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)

    import onnxruntime as ort

    from fastcolor.export import INPUT_NAME, OUTPUT_NAME, export_onnx
    from fastcolor.inference import Colorizer
    from fastcolor.models import predict_padded

    torch.set_num_threads(args.threads)
    colorizer = Colorizer.load(args.model, device="cpu", backend="kernels")
    tmp = tempfile.mkdtemp(prefix="bench_onnx-")
    onnx_file = export_onnx(colorizer, Path(tmp) / "model.onnx")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = args.threads, 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(onnx_file), opts, providers=["CPUExecutionProvider"])

    device = f"CPU ({cpu_name()}), {args.threads} thread{'s' if args.threads > 1 else ''}"
    print(f"model: {colorizer!r}")
    print(f"device: {device}; torch {torch.__version__}, onnxruntime {ort.__version__}; dtype float32")
    header = f"{'what':<34} {'runtime':<12} {'input shape':<20} {'dtype':<8} {'images/s':>9}  device"
    print(header)
    print("-" * len(header))
    rows = []
    g = torch.Generator().manual_seed(0)
    s = args.size
    for n in args.batches:
        x = torch.rand(n, 1, s, s, generator=g) - 0.5
        xn = x.numpy()
        rgb = [torch.randint(0, 256, (3, s, s), dtype=torch.uint8, generator=g) for _ in range(n)]

        @torch.inference_mode()
        def fastcolor_net():
            out = predict_padded(colorizer.model, x)
            return colorizer.decoder(out) if colorizer.decoder is not None else out[:, :2]

        def ort_net():
            return session.run([OUTPUT_NAME], {INPUT_NAME: xn})

        def fastcolor_e2e():
            return colorizer.colorize_batch(rgb, batch_size=n)

        cases = [
            ("network + decode", "fastcolor", fastcolor_net, (n, 1, s, s), "float32"),
            ("network + decode", "onnxruntime", ort_net, (n, 1, s, s), "float32"),
            ("end to end (Colorizer)", "fastcolor", fastcolor_e2e, (n, 3, s, s), "uint8"),
        ]
        measured = rates([case[2] for case in cases], n, args.seconds)
        for (what, runtime, _, shape, dtype), (ips, repeats) in zip(cases, measured):
            rows.append({"what": what, "runtime": runtime, "shape": list(shape), "dtype": dtype,
                         "images_per_s": ips, "repeats": repeats, "device": device})
            print(f"{what:<34} {runtime:<12} {str(shape):<20} {dtype:<8} {ips:9.2f}  {device}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"model": repr(colorizer), "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
