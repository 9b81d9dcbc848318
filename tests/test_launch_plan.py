"""The CUDA launch planning, on the CPU: the host code of every CUDA op
(csrc/cuda/<op>_cuda.cpp: checks, outputs, plan, packed arguments), run on
CPU tensors through the fastcolor_plan ops while fastcolor._C records its
launches instead of running them. Both launch paths (nvcc's kernels and the
JIT's) take exactly these launches, so this checks for both: the kernel
picked, grid, block, dynamic shared memory, and every packed argument
(kind, size, alignment, value), against expectations written out here; that
every planned kernel is in the one table (fastcolor/device/instances.h) and
every table entry is planned for some input; and, in a build with compiled
kernels, that each packing matches the compiled kernel's parameters.
"""

import math
import struct

import pytest
import torch

import fastcolor
from fastcolor.ops import jit

_C = pytest.importorskip("fastcolor._C")
pytestmark = pytest.mark.skipif(not fastcolor.backend_info()["compiled_cpu"], reason="fastcolor._C is not built")

PLAN = torch.ops.fastcolor_plan
TYPES = {torch.float32: "float", torch.float16: "__half", torch.bfloat16: "__nv_bfloat16", torch.float64: "double"}
BINS = [2, 32, 100, 313, 500, 700]
# Argument kinds of each kernel family (p pointer, s struct, i int, l int64,
# f float, d double): the kernels' parameter lists, spelt out independently.
SIGNATURES = {
    "nearest_bin_kernel": "pspislp",
    "soft_encode_kernel": "pspisiflp",
    "bin_histogram_kernel": "pspispslp",
    "annealed_mean_generic_kernel": "pspi{a}lpps",
    "annealed_mean_tile_kernel": "pspiflpps",
    "annealed_mean_warp_kernel": "pspiflpps",
    "annealed_mean_backward_generic_kernel": "pspspipspsdlps",
    "annealed_mean_backward_tile_kernel": "pspspipspsflps",
    "cross_entropy_generic_kernel": "pspsppispsif{a}lpps",
    "cross_entropy_tile_kernel": "pspsppispsifflpps",
    "cross_entropy_warp_kernel": "pspsppispsifflpps",
    "temporal_decode_generic_kernel": "pspspspifdlpsps",
    "temporal_decode_tile_kernel": "pspspspifdlpsps",
    "temporal_decode_warp_kernel": "pspspspifdlpsps",
}
SIZES = {"p": 8, "i": 4, "l": 8, "f": 4, "d": 8, "s": None}


def record(op, *args):
    out, launches = _C.record_launches(getattr(PLAN, op), args)
    assert len(launches) == 1
    return out, launches[0]


def base(kernel):
    return kernel.split("<")[0].rsplit("::", 1)[1]


def arg(launch, i):
    kind, size, offset = launch["params"][i]
    fmt = {"p": "Q", "i": "i", "l": "q", "f": "f", "d": "d"}[kind]
    return struct.unpack_from("<" + fmt, launch["args"], offset)[0]


def layout(launch, i):
    """(hw, w, s_n, s_c, s_h, s_w) of a packed PixelLayout."""
    kind, size, offset = launch["params"][i]
    assert (kind, size) == ("s", 48)
    return struct.unpack_from("<6q", launch["args"], offset)


def check_packing(launch, acc="f"):
    sig = SIGNATURES[base(launch["kernel"])].format(a=acc)
    assert "".join(k for k, _, _ in launch["params"]) == sig, launch["kernel"]
    end = 0
    for kind, size, offset in launch["params"]:
        if SIZES[kind] is not None:
            assert size == SIZES[kind]
        assert offset % min(size, 8) == 0 and offset >= end  # natural alignment, in order
        end = offset + size
    assert end == len(launch["args"])
    compiled = _C.compiled_kernels()
    if compiled:
        assert launch["kernel"] in compiled
        assert [(k, s) for k, s, _ in launch["params"]] == [tuple(p) for p in compiled[launch["kernel"]]]


def strides_of(t):
    return (t.shape[2] * t.shape[3], t.shape[3], *t.stride())


def codebook(gen, q):
    return torch.randn(q, 2, generator=gen) * 40


def one_d_grid(pixels):
    return min(max(math.ceil(pixels / 256), 1), 4096)


def cap(k):
    return "1" if k <= 1 else "8" if k <= 8 else "fastcolor::kMaxK"


def logits_in(gen, n, q, h, w, dtype, channels_last):
    z = torch.randn(n, q, h, w, generator=gen).to(dtype)
    return z.contiguous(memory_format=torch.channels_last) if channels_last else z


def tile_rows(q):
    return 8 if q <= 64 else 40


def warp_rows(q):
    return next(r for r in (1, 4, 10, 20) if 32 * r >= q)


def decode_plan(base, name, q, pixels, tile, warp, per_warp):
    """(kernel, grid, block, smem) of a per-pixel decode (annealed_mean,
    temporal_decode): per_warp floats of shared memory per warp of a tile
    besides the centres."""
    if tile:
        r, warps = tile_rows(q), math.ceil(q / tile_rows(q))
        return (f"fastcolor::device::{base}_tile_kernel<{name}, {r}>", (math.ceil(pixels / 32), 1, 1),
                (32, warps, 1), 4 * (2 * q + per_warp * warps))
    if warp:
        return (f"fastcolor::device::{base}_warp_kernel<{name}, {warp_rows(q)}>",
                (min(math.ceil(pixels / 8), 65536), 1, 1), (256, 1, 1), 8 * q)
    return f"fastcolor::device::{base}_generic_kernel<{name}>", (one_d_grid(pixels), 1, 1), (256, 1, 1), 8 * q


def test_every_table_entry_is_planned_and_every_plan_is_in_the_table(gen):
    table = jit.kernel_table()
    planned = {op: set() for op in table}
    n, h, w = 2, 5, 37
    pixels = n * h * w
    for q in BINS:
        c = codebook(gen, q)
        ab = torch.randn(n, 2, h, w, generator=gen) * 40
        out, l = record("nearest_bin", ab, c)
        planned["nearest_bin"].add(l["kernel"])
        check_packing(l)
        assert (l["grid"], l["block"], l["smem"]) == ((one_d_grid(pixels), 1, 1), (256, 1, 1), 8 * q)
        assert (arg(l, 0), layout(l, 1), arg(l, 3), arg(l, 5), arg(l, 6)) == (
            ab.data_ptr(), strides_of(ab), q, pixels, out.data_ptr())
        for weighted in (False, True):
            wt = torch.rand(n, h, w, generator=gen) if weighted else None
            _, l = record("bin_histogram", ab, c, wt)
            planned["bin_histogram"].add(l["kernel"])
            check_packing(l)
            assert l["kernel"].endswith("<true>" if weighted else "<false>")
            assert l["smem"] == 12 * q and arg(l, 5) == (wt.data_ptr() if weighted else 0)
        for k in sorted({1, min(5, q), min(16, q)}):
            _, l = record("soft_encode", ab, c, k, 4.0)
            planned["soft_encode"].add(l["kernel"])
            check_packing(l)
            assert l["kernel"] == f"fastcolor::device::soft_encode_kernel<{cap(k)}>"
            assert (arg(l, 5), arg(l, 6), l["smem"]) == (k, pytest.approx(1 / 32), 8 * q)
        weights = torch.rand(q, generator=gen) + 0.1
        for dtype, name in TYPES.items():
            acc = "d" if dtype == torch.float64 else "f"
            for channels_last in (False, True):
                z = logits_in(gen, n, q, h, w, dtype, channels_last)
                warp = channels_last and q > 1 and dtype != torch.float64 and q <= 640
                tile = not channels_last and dtype != torch.float64 and q <= 640
                for k in sorted({1, min(5, q), min(16, q)}):
                    _, l = record("rebalanced_cross_entropy", z, ab, c, weights, None, k, 5.0, "mean", True)
                    planned["rebalanced_cross_entropy"].add(l["kernel"])
                    check_packing(l, acc)
                    if tile:
                        r, warps = tile_rows(q), math.ceil(q / tile_rows(q))
                        want = (f"fastcolor::device::cross_entropy_tile_kernel<{name}, {r}, {cap(k)}>",
                                (math.ceil(pixels / 32), 1, 1), (32, warps, 1), 4 * (2 * q + 64 * warps + 64 * warps * k))
                    elif warp:
                        want = (f"fastcolor::device::cross_entropy_warp_kernel<{name}, {warp_rows(q)}, {cap(k)}>",
                                (math.ceil(pixels / 256), 1, 1), (256, 1, 1), 8 * q)
                    else:
                        want = (f"fastcolor::device::cross_entropy_generic_kernel<{name}, {cap(k)}>",
                                (one_d_grid(pixels), 1, 1), (256, 1, 1), 12 * q)
                    assert (l["kernel"], l["grid"], l["block"], l["smem"]) == want
                    assert (arg(l, 0), layout(l, 1), arg(l, 6), arg(l, 10), arg(l, 13)) == (
                        z.data_ptr(), strides_of(z), q, k, pixels)
                    assert arg(l, 12) == pytest.approx(1 / pixels)  # the mean's gradient scale
                _, l = record("rebalanced_cross_entropy", z, ab, c, weights, None, 1, 5.0, "sum", False)
                assert arg(l, 12) == 1.0 and arg(l, 15) == 0  # no gradient: a null pointer
                for temperature in (0.38, 0.0):
                    (ab_out, stats), l = record("annealed_mean", z, c, temperature)
                    planned["annealed_mean"].add(l["kernel"])
                    check_packing(l, acc)
                    want = decode_plan("annealed_mean", name, q, pixels, tile, warp, 4 * 32)
                    assert (l["kernel"], l["grid"], l["block"], l["smem"]) == want
                    inv_t = 1 / temperature if temperature else 0.0
                    assert arg(l, 4) == pytest.approx(inv_t, rel=1e-6) and arg(l, 5) == pixels
                    assert (arg(l, 6), arg(l, 7), layout(l, 8)) == (ab_out.data_ptr(), stats.data_ptr(),
                                                                    strides_of(ab_out))
                    if temperature:
                        grad = torch.ones_like(ab_out)
                        g, lb = record("annealed_mean_backward", grad, z, c, ab_out, stats, temperature)
                        planned["annealed_mean"].add(lb["kernel"])
                        check_packing(lb, acc)
                        if dtype == torch.float64:
                            want = ("annealed_mean_backward_generic_kernel<double>", one_d_grid(pixels))
                        elif channels_last:
                            want = (f"annealed_mean_backward_tile_kernel<{name}, true>", math.ceil(pixels / 8))
                        else:
                            want = (f"annealed_mean_backward_tile_kernel<{name}, false>", math.ceil(pixels / 32))
                        assert (lb["kernel"], lb["grid"], lb["block"], lb["smem"]) == (
                            "fastcolor::device::" + want[0], (want[1], 1, 1), (256, 1, 1), 8 * q)
                        assert (arg(lb, 2), layout(lb, 3), arg(lb, 11), arg(lb, 12), layout(lb, 13)) == (
                            z.data_ptr(), strides_of(z), pixels, g.data_ptr(), strides_of(g))
                # the state in the other layout, so that each layout is packed as its own
                state = torch.rand(n, q, h, w, generator=gen)
                if not channels_last:
                    state = state.contiguous(memory_format=torch.channels_last)
                weight = torch.rand(n, 1, h, w, generator=gen)
                for temperature in (0.38, 0.0):
                    (ab_out, new_state), l = record("temporal_decode", z, state, weight, c, temperature, 0.5)
                    planned["temporal_decode"].add(l["kernel"])
                    check_packing(l)
                    want = decode_plan("temporal_decode", name, q, pixels, tile, warp, 5 * 32)
                    assert (l["kernel"], l["grid"], l["block"], l["smem"]) == want
                    assert new_state.stride() == z.stride()  # the logits' memory format
                    assert (arg(l, 0), layout(l, 1), arg(l, 2), layout(l, 3), arg(l, 4), layout(l, 5)) == (
                        z.data_ptr(), strides_of(z), state.data_ptr(), strides_of(state), weight.data_ptr(),
                        strides_of(weight))
                    inv_t = 1 / temperature if temperature else 0.0
                    assert (arg(l, 6), arg(l, 7), arg(l, 9), arg(l, 10)) == (c.data_ptr(), q, 0.5, pixels)
                    assert arg(l, 8) == pytest.approx(inv_t, rel=1e-6)
                    assert (arg(l, 11), layout(l, 12), arg(l, 13), layout(l, 14)) == (
                        ab_out.data_ptr(), strides_of(ab_out), new_state.data_ptr(), strides_of(new_state))
    assert planned == {op: set(names) for op, names in table.items()}


def test_the_planning_ops_refuse_to_run_without_recording(gen):
    ab = torch.randn(1, 2, 3, 3, generator=gen)
    with pytest.raises(RuntimeError, match="not a CUDA device"):
        PLAN.nearest_bin(ab, codebook(gen, 5))


def test_the_planning_ops_check_their_arguments_as_the_cuda_ops_do(gen):
    ab = torch.randn(1, 2, 3, 3, generator=gen)
    with pytest.raises(ValueError, match="k must be between 1 and"):
        _C.record_launches(PLAN.soft_encode, (ab, codebook(gen, 5), 6, 5.0))
