"""Functional API of fastcolor's ops.

Each function validates its arguments (ValueError on bad shapes, devices or
values), then runs the compiled kernel for the tensors' device (C++ on the
CPU, CUDA on the GPU) or, where none was compiled, the pure-PyTorch
reference in fastcolor.ops.reference, which also defines the exact semantics.
Everything here traces under torch.compile(fullgraph=True).

``centres`` is the (Q, 2) tensor of bin centres in the chroma plane, or a
fastcolor.Codebook. ab is (N, 2, H, W) chroma (a*b* in Lab, or UV in YUV),
logits are (N, Q, H, W) in float32, float16, bfloat16 or float64, in any
memory layout (contiguous or channels_last), with float32 accumulation
(float64 for float64 logits).

Non-finite ab: on CPU tensors the ops raise ValueError. On CUDA tensors they
do not check (that would synchronise the device): such a pixel gets index -1,
NaN targets and a NaN loss, as documented in fastcolor.ops.reference.
"""

import math
import operator

import torch

from . import backend as _backend, reference
from .limits import MAX_BINS, MAX_K

__all__ = [
    "nearest_bin",
    "soft_encode",
    "bin_histogram",
    "rebalanced_cross_entropy",
    "annealed_mean",
]

_LOGIT_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)
_REDUCTIONS = ("mean", "sum", "none")


# ---------------------------------------------------------------- validation


def _is_tracing():
    return torch.compiler.is_compiling()


def _all_finite(t):
    """Whether every value of t is finite, in one vectorised pass over it: a sum
    is finite only when every term is (NaN and inf carry through a sum, and
    +inf + -inf is NaN), so the elementwise test runs only when the sum is not
    (non-finite values, or finite ones large enough to overflow it)."""
    return math.isfinite(t.sum().item()) or bool(torch.isfinite(t).all())


def checked_centres(centres, like, op):
    """The (Q, 2) float32 centres of a tensor or Codebook, on like's device."""
    c = getattr(centres, "centres", centres)  # a Codebook holds them
    if not isinstance(c, torch.Tensor):
        raise TypeError(f"{op}: centres must be a (Q, 2) tensor or a Codebook, got {type(centres).__name__}")
    if c.dim() != 2 or c.shape[1] != 2 or not 1 <= c.shape[0] <= MAX_BINS:
        raise ValueError(f"{op}: centres must have shape (Q, 2) with 1 <= Q <= {MAX_BINS}, got {tuple(c.shape)}")
    if c.device != like.device:
        raise ValueError(
            f"{op}: centres are on {c.device} but the data is on {like.device}; "
            "move the codebook first (codebook.to(device))"
        )
    c = c.to(torch.float32).contiguous()
    if c.device.type == "cpu" and not _is_tracing() and not _all_finite(c):
        raise ValueError(f"{op}: centres contain non-finite values")
    return c


def _ab(ab, op):
    if not isinstance(ab, torch.Tensor) or ab.dim() != 4 or ab.shape[1] != 2:
        shape = tuple(ab.shape) if isinstance(ab, torch.Tensor) else type(ab).__name__
        raise ValueError(f"{op}: ab must have shape (N, 2, H, W), got {shape}")
    if not ab.is_floating_point():
        raise ValueError(f"{op}: ab must be a floating-point tensor, got {ab.dtype}")
    ab = ab.to(torch.float32)
    if ab.device.type == "cpu" and not _is_tracing() and not _all_finite(ab):
        bad = (~torch.isfinite(ab)).sum().item()
        raise ValueError(f"{op}: ab contains {bad} non-finite values (NaN or inf)")
    return ab


def _logits_tensor(logits, op):
    if not isinstance(logits, torch.Tensor) or logits.dim() != 4:
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ValueError(f"{op}: logits must have shape (N, Q, H, W) (a tensor), got {shape}")
    if logits.dtype not in _LOGIT_DTYPES:
        raise ValueError(f"{op}: logits must be float32, float16, bfloat16 or float64, got {logits.dtype}")


def check_logits(logits, centres, op):
    """logits must be an (N, Q, H, W) tensor of a supported dtype with one
    channel per bin of centres (a checked (Q, 2) tensor); else ValueError."""
    _logits_tensor(logits, op)
    if logits.shape[1] != centres.shape[0]:
        raise ValueError(
            f"{op}: logits have {logits.shape[1]} channels but the codebook has {centres.shape[0]} bins"
        )


def _pixels(t, name, logits, op, channels=None):
    """t must cover the logits' batch and pixels: (N, H, W) or (N, C, H, W)."""
    n, _, h, w = logits.shape
    want = (n, h, w) if channels is None else (n, channels, h, w)
    if tuple(t.shape) != want:
        raise ValueError(
            f"{op}: {name} has shape {tuple(t.shape)} but must be {want} to match logits of shape "
            f"{tuple(logits.shape)} (subsample full-resolution targets first, as fastcolor.nn does)"
        )
    if t.device != logits.device:
        raise ValueError(f"{op}: {name} is on {t.device} but the logits are on {logits.device}")


def _k_sigma(k, sigma, bins, op):
    try:
        k_int = None if isinstance(k, bool) else operator.index(k)  # int, numpy and torch integers
    except TypeError:
        k_int = None
    if k_int is None or not 1 <= k_int <= min(MAX_K, bins):
        raise ValueError(f"{op}: k must be an integer between 1 and min({MAX_K}, number of bins = {bins}), got {k!r}")
    try:
        sigma = float(sigma)
    except (TypeError, ValueError):
        raise ValueError(f"{op}: sigma must be a positive finite number, got {sigma!r}") from None
    if not (sigma > 0 and sigma < float("inf")):
        raise ValueError(f"{op}: sigma must be a positive finite number, got {sigma}")
    return k_int, sigma


def check_temperature(temperature, what="temperature"):
    """The annealed mean's T as a float: a finite number >= 0 (0: the mode),
    else ValueError naming what it is for."""
    try:
        t = float(temperature)
    except (TypeError, ValueError):
        t = None
    if t is None or not 0 <= t < float("inf"):
        raise ValueError(f"{what}: temperature must be a finite number >= 0, got {temperature!r}")
    return t


def _not_differentiated(op, **tensors):
    """fastcolor's ops differentiate the logits only. A gradient asked of any
    other tensor would be silently missing on the kernels (and present on the
    reference): refuse it on both, with the way out."""
    if not torch.is_grad_enabled():
        return
    for name, t in tensors.items():
        t = getattr(t, "centres", t)
        if isinstance(t, torch.Tensor) and t.requires_grad:
            raise ValueError(
                f"{op}: {name} requires grad, but fastcolor's ops are differentiable in the logits only; "
                f"pass {name}.detach() (or compute it under torch.no_grad())"
            )


def _weights(t, name, op, nonneg=True):
    """A float32 weight tensor (bool masks become 0/1); checked on the CPU."""
    t = t.to(torch.float32)
    if t.device.type == "cpu" and t.numel() and not _is_tracing():
        if (nonneg and not bool(t.min() >= 0)) or not _all_finite(t):  # min is NaN where t has a NaN
            raise ValueError(f"{op}: {name} must be finite and non-negative")
    return t


# ------------------------------------------------------------------- the ops


def nearest_bin(ab, centres, *, backend=None):
    """Index of the nearest bin centre of every pixel.

    Args:
        ab: (N, 2, H, W) chroma, floating point (computed in float32).
        centres: (Q, 2) bin centres, or a Codebook.
        backend: "kernels", "reference" or None (the default; see
            fastcolor.ops.backend).

    Returns:
        (N, H, W) int64: argmin_q (a - ca_q)^2 + (b - cb_q)^2, ties to the
        lower index.
    """
    op = "nearest_bin"
    ab = _ab(ab, op)
    c = checked_centres(centres, ab, op)
    if _backend.use_kernels(ab.device.type, backend):
        return torch.ops.fastcolor.nearest_bin(ab, c)
    return reference.nearest_bin(ab, c)


def soft_encode(ab, centres, k=5, sigma=5.0, *, backend=None):
    """Dense soft-encoded targets (for inspection; the loss never builds them).

    t_pq = exp(-(d_pq - d_p,min) / (2 sigma^2)) / Z_p for the k nearest bins q
    of pixel p (by squared distance d, ties to the lower index), 0 elsewhere;
    Z_p normalises each pixel's targets to sum 1.

    Args:
        ab: (N, 2, H, W) chroma.
        centres: (Q, 2) bin centres, or a Codebook.
        k: number of nearest bins, 1 <= k <= min(16, Q) (paper: 5).
        sigma: Gaussian width in chroma units (paper: 5 for Lab).
        backend: "kernels", "reference" or None (the default).

    Returns:
        (N, Q, H, W) float32.
    """
    op = "soft_encode"
    _not_differentiated(op, ab=ab, centres=centres)
    ab = _ab(ab, op)
    c = checked_centres(centres, ab, op)
    k, sigma = _k_sigma(k, sigma, c.shape[0], op)
    if _backend.use_kernels(ab.device.type, backend):
        return torch.ops.fastcolor.soft_encode(ab, c, k, sigma)
    return reference.soft_encode(ab, c, k, sigma)


def bin_histogram(ab, centres, weight=None, *, backend=None):
    """Count pixels per nearest bin, for prior estimation over a dataset.

    Args:
        ab: (N, 2, H, W) chroma.
        centres: (Q, 2) bin centres, or a Codebook.
        weight: optional (N, H, W) bool mask or non-negative float weight.
        backend: "kernels", "reference" or None (the default).

    Returns:
        (Q,) float64: sum over pixels p with nearest(p) = q of weight_p (1
        without weight). Accumulate over batches and normalise to get a prior.
    """
    op = "bin_histogram"
    _not_differentiated(op, ab=ab, centres=centres, weight=weight)
    ab = _ab(ab, op)
    c = checked_centres(centres, ab, op)
    if weight is not None:
        n, _, h, w = ab.shape
        if tuple(weight.shape) != (n, h, w) or weight.device != ab.device:
            raise ValueError(
                f"{op}: weight must have shape {(n, h, w)} on {ab.device}, "
                f"got {tuple(weight.shape)} on {weight.device}"
            )
        weight = _weights(weight, "weight", op)
    if _backend.use_kernels(ab.device.type, backend):
        return torch.ops.fastcolor.bin_histogram(ab, c, weight)
    return reference.bin_histogram(ab, c, weight)


def rebalanced_cross_entropy(
    logits, ab, centres, class_weights, *, pixel_weight=None, k=5, sigma=5.0, reduction="mean", backend=None
):
    """Class-rebalanced cross-entropy against soft-encoded ab targets, fused.

    For pixel p with logits z_p, soft target t_p (see soft_encode) and
    nearest bin q*(p):

        loss_p = -w[q*(p)] * v_p * sum_q t_pq * log softmax(z_p)_q

    with w the class weights and v the optional pixel weight. The targets are
    never materialised; on the kernels the gradient w * v * (softmax(z) - t) is
    computed in the same pass as the loss and stored, and backward only scales
    it. Differentiable in logits (once: double backward raises).

    Args:
        logits: (N, Q, H, W) float32/float16/bfloat16/float64, any layout.
        ab: (N, 2, H, W) target chroma at the logits' resolution.
        centres: (Q, 2) bin centres, or a Codebook.
        class_weights: (Q,) non-negative rebalancing weights
            (fastcolor.rebalance_weights).
        pixel_weight: optional (N, H, W) bool mask or non-negative weight v,
            e.g. 0 for images without chroma or for padding.
        k, sigma: soft encoding, as soft_encode (paper: k=5, sigma=5).
        reduction: "mean" (sum over pixels / (N*H*W)), "sum", or "none"
            ((N, H, W) per-pixel losses).
        backend: "kernels", "reference" or None (the default).

    The arguments after class_weights are keyword-only, in the order of the
    op's schema (fastcolor::rebalanced_cross_entropy) and of the reference.

    Returns:
        float32 loss (float64 for float64 logits): a scalar, or (N, H, W).
    """
    op = "rebalanced_cross_entropy"
    _logits_tensor(logits, op)
    _not_differentiated(op, ab=ab, centres=centres, class_weights=class_weights, pixel_weight=pixel_weight)
    if isinstance(ab, torch.Tensor) and ab.device != logits.device:
        raise ValueError(f"{op}: ab is on {ab.device} but the logits are on {logits.device}")
    ab = _ab(ab, op)
    c = checked_centres(centres, logits, op)
    check_logits(logits, c, op)
    _pixels(ab, "ab", logits, op, channels=2)
    k, sigma = _k_sigma(k, sigma, c.shape[0], op)
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{op}: reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    if not isinstance(class_weights, torch.Tensor) or tuple(class_weights.shape) != (c.shape[0],):
        got = tuple(class_weights.shape) if isinstance(class_weights, torch.Tensor) else type(class_weights).__name__
        raise ValueError(f"{op}: class_weights must have shape ({c.shape[0]},), got {got}")
    if class_weights.device != logits.device:
        raise ValueError(f"{op}: class_weights are on {class_weights.device} but the logits are on {logits.device}")
    cw = _weights(class_weights, "class_weights", op)
    if pixel_weight is not None:
        _pixels(pixel_weight, "pixel_weight", logits, op)
        pixel_weight = _weights(pixel_weight, "pixel_weight", op)
    if _backend.use_kernels(logits.device.type, backend):
        compute_grad = logits.requires_grad and torch.is_grad_enabled()
        if reduction == "mean" and compute_grad and logits.dtype == torch.float16:
            # The kernels store the gradient in the logits' dtype, already scaled
            # by d(reduction). For "mean" that folds 1 / (N H W) in, and in
            # float16 the dense part of the gradient then falls below the
            # smallest subnormal (6e-8) and becomes 0 before a gradient
            # scaler's factor is applied. So the stored gradient is the "sum"
            # one, and autograd divides by the pixel count in float32 on the way
            # back, rounding once, after the incoming gradient's scale.
            loss, _ = torch.ops.fastcolor.rebalanced_cross_entropy(
                logits, ab, c, cw, pixel_weight, k, sigma, "sum", compute_grad
            )
            return loss / (logits.shape[0] * logits.shape[2] * logits.shape[3])
        loss, _ = torch.ops.fastcolor.rebalanced_cross_entropy(
            logits, ab, c, cw, pixel_weight, k, sigma, reduction, compute_grad
        )
        return loss
    loss = reference.rebalanced_cross_entropy(logits, ab, c, cw, pixel_weight=pixel_weight, k=k, sigma=sigma,
                                              reduction=reduction)
    return _FirstOrderOnly.apply(loss, op) if loss.requires_grad else loss


def annealed_mean(logits, centres, temperature=0.38, *, backend=None):
    """Decode logits to chroma with the annealed mean.

        ab_p = sum_q softmax((z_p - max z_p) / T)_q * c_q

    T = 1 gives the mean of the predicted distribution (desaturated), T -> 0
    its mode; T = 0 is accepted and returns the centre of the first largest
    logit. The kernels read the logits once (online softmax). Differentiable
    in logits (zero gradient at T = 0; double backward raises).

    Args:
        logits: (N, Q, H, W) float32/float16/bfloat16/float64, any layout.
        centres: (Q, 2) bin centres, or a Codebook.
        temperature: T >= 0 (paper: 0.38).
        backend: "kernels", "reference" or None (the default).

    Returns:
        (N, 2, H, W) float32 (float64 for float64 logits).
    """
    op = "annealed_mean"
    _logits_tensor(logits, op)
    _not_differentiated(op, centres=centres)
    c = checked_centres(centres, logits, op)
    check_logits(logits, c, op)
    temperature = check_temperature(temperature, op)
    if _backend.use_kernels(logits.device.type, backend):
        ab, _ = torch.ops.fastcolor.annealed_mean(logits, c, temperature)
        return ab
    ab = reference.annealed_mean(logits, c, temperature)
    return _FirstOrderOnly.apply(ab, op) if ab.requires_grad else ab


class _FirstOrderOnly(torch.autograd.Function):
    """Identity whose backward refuses double backward, as the kernels' does:
    the two backends then agree on what can be differentiated."""

    @staticmethod
    def forward(ctx, x, op):
        ctx.op = op
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return _first_order_only(grad, ctx.op), None


# ------------------------------------------- fake kernels and autograd of the ops


def _opmath(dtype):
    return torch.float64 if dtype == torch.float64 else torch.float32


def _is_one(t):
    """Whether the incoming gradient of a scalar loss is exactly 1 (as from
    loss.backward()), so that the stored gradient can be handed on as it is,
    without a scaled copy: peak memory stays at the logits plus one gradient.

    Reading a CUDA value synchronises with the device (a few microseconds, once
    per backward); a traced graph (fake or functional tensors) cannot branch on
    data, so there the multiply always runs."""
    return (
        type(t) is torch.Tensor
        and not _is_tracing()
        and t.numel() == 1
        and not (t.is_cuda and torch.cuda.is_current_stream_capturing())
        and bool(t.reshape(()) == 1.0)
    )


def _first_order_only(grad, op):
    """The stored first-order gradients of the fused ops do not carry their own
    dependence on the logits, so a differentiable gradient cannot be given."""
    # Grad mode is on inside backward only with create_graph=True.
    if torch.is_grad_enabled():
        raise RuntimeError(
            f"fastcolor: {op} supports first-order gradients only; backward with "
            "create_graph=True (double backward) is not supported"
        )
    return grad


def _register():
    lib = "fastcolor::"

    @torch.library.register_fake(lib + "nearest_bin")
    def _(ab, centres):
        return ab.new_empty((ab.shape[0], ab.shape[2], ab.shape[3]), dtype=torch.int64)

    @torch.library.register_fake(lib + "soft_encode")
    def _(ab, centres, k, sigma):
        return ab.new_empty((ab.shape[0], centres.shape[0], ab.shape[2], ab.shape[3]))

    @torch.library.register_fake(lib + "bin_histogram")
    def _(ab, centres, weight):
        return ab.new_empty((centres.shape[0],), dtype=torch.float64)

    @torch.library.register_fake(lib + "rebalanced_cross_entropy")
    def _(logits, ab, centres, class_weights, pixel_weight, k, sigma, reduction, compute_grad):
        n, _, h, w = logits.shape
        shape = (n, h, w) if reduction == "none" else ()
        loss = logits.new_empty(shape, dtype=_opmath(logits.dtype))
        grad = torch.empty_like(logits) if compute_grad else logits.new_empty((0,))
        return loss, grad

    def ce_setup(ctx, inputs, output):
        loss, grad = output
        # The stored gradient output is never differentiated; without this,
        # autograd would hand backward a zero tensor the size of the logits
        # for it (measured: peak memory 2x the logits instead of 1x).
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(grad)
        ctx.reduction = inputs[7]
        ctx.compute_grad = inputs[8]
        ctx.mark_non_differentiable(grad)

    def ce_backward(ctx, grad_loss, _):
        (grad,) = ctx.saved_tensors
        if grad_loss is None:
            return (None,) * 9
        if not ctx.compute_grad:
            raise RuntimeError(
                "rebalanced_cross_entropy: backward needs the gradient stored by the forward "
                "pass; call it with compute_grad=True (fastcolor.ops does so when logits "
                "require grad)"
            )
        if ctx.reduction == "none":
            out = (grad * grad_loss[:, None]).to(grad.dtype)
        elif _is_one(grad_loss):
            out = grad  # loss.backward() on the loss itself: the stored gradient is final
        else:
            out = (grad * grad_loss).to(grad.dtype)
        return _first_order_only(out, "rebalanced_cross_entropy"), None, None, None, None, None, None, None, None

    # CPU tensors take the same rule from C++ (csrc/autograd_cpu.cpp), whose
    # AutogradCPU kernel wins over this alias registration: it saves ~90 us a call.
    torch.library.register_autograd(lib + "rebalanced_cross_entropy", ce_backward, setup_context=ce_setup)

    @torch.library.register_fake(lib + "annealed_mean")
    def _(logits, centres, temperature):
        n, _, h, w = logits.shape
        acc = _opmath(logits.dtype)
        return logits.new_empty((n, 2, h, w), dtype=acc), logits.new_empty((n, 2, h, w), dtype=acc)

    @torch.library.register_fake(lib + "annealed_mean_backward")
    def _(grad_ab, logits, centres, ab, stats, temperature):
        return torch.empty_like(logits)

    def am_setup(ctx, inputs, output):
        logits, centres, temperature = inputs
        ab, stats = output
        ctx.set_materialize_grads(False)  # no zero gradient for the stats output
        ctx.save_for_backward(logits, centres, ab, stats)
        ctx.temperature = temperature
        ctx.mark_non_differentiable(stats)

    def am_backward(ctx, grad_ab, _):
        if grad_ab is None:
            return None, None, None
        logits, centres, ab, stats = ctx.saved_tensors
        grad = torch.ops.fastcolor.annealed_mean_backward(
            grad_ab, logits, centres, ab, stats, ctx.temperature
        )
        return _first_order_only(grad, "annealed_mean"), None, None

    torch.library.register_autograd(lib + "annealed_mean", am_backward, setup_context=am_setup)


if _backend.extension_loaded():
    _register()
