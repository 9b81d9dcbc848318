"""temporal_decode: the per-frame step of temporal filtering, fused.

Video colorization that does not flicker blends each frame's predicted
distribution with the previous frames' (warped to this frame) before decoding
it. That step is one pass over a pixel's Q logits, like annealed_mean, so it is
one op: the softmax, the blend with the state and the annealed mean of the
blended distribution, with the new state written on the way. Inference only.
"""

import torch

from . import backend as _backend, reference
from .functional import check_logits, check_temperature, checked_centres

__all__ = ["temporal_decode"]

_OP = "temporal_decode"
# A build of the extension older than this op lacks it: fall back, never fail.
_COMPILED = _backend.extension_loaded() and hasattr(torch.ops.fastcolor, _OP)


def _check_sharpness(sharpness):
    try:
        s = float(sharpness)
    except (TypeError, ValueError):
        s = None
    if s is None or not 0 <= s < float("inf"):
        raise ValueError(f"{_OP}: sharpness must be a finite number >= 0, got {sharpness!r}")
    return s


def _check_state(state, logits):
    if not isinstance(state, torch.Tensor) or tuple(state.shape) != tuple(logits.shape):
        got = tuple(state.shape) if isinstance(state, torch.Tensor) else type(state).__name__
        raise ValueError(f"{_OP}: state must have the logits' shape {tuple(logits.shape)}, got {got}")
    if state.device != logits.device:
        raise ValueError(f"{_OP}: state is on {state.device} but the logits are on {logits.device}")
    if not state.is_floating_point():
        raise ValueError(f"{_OP}: state must be a floating-point tensor of probabilities, got {state.dtype}")
    return state.to(torch.float32)


def _check_weight(weight, logits):
    n, _, h, w = logits.shape
    if not isinstance(weight, torch.Tensor) or tuple(weight.shape) != (n, 1, h, w):
        got = tuple(weight.shape) if isinstance(weight, torch.Tensor) else type(weight).__name__
        raise ValueError(f"{_OP}: weight must have shape {(n, 1, h, w)} to match the logits, got {got}")
    if weight.device != logits.device:
        raise ValueError(f"{_OP}: weight is on {weight.device} but the logits are on {logits.device}")
    if not (weight.is_floating_point() or weight.dtype == torch.bool):
        raise ValueError(f"{_OP}: weight must be a floating-point tensor in [0, 1], got {weight.dtype}")
    weight = weight.to(torch.float32)
    # Checked on the CPU only: on a GPU the check would synchronise the device.
    if weight.device.type == "cpu" and not torch.compiler.is_compiling():
        if not bool(((weight >= 0) & (weight <= 1)).all()):
            raise ValueError(f"{_OP}: weight must lie in [0, 1] (and not be NaN)")
    return weight


def temporal_decode(logits, state, weight, centres, temperature=0.38, sharpness=0.0, *, backend=None):
    """Blend this frame's distribution with the (warped) state, then decode.

    Per pixel, with z its Q logits:

        p = softmax(z)
        w = weight * (1 - max_q p) ** sharpness    (sharpness 0: w = weight)
        new_state = w * state + (1 - w) * p        (new_state = p where w = 0)
        ab = sum_q c_q s_q^(1/T) / sum_q s_q^(1/T),  s = new_state

    i.e. ab is the annealed mean of log(new_state): T = 1 its mean, T -> 0 its
    mode, T = 0 the centre of the first largest entry. sharpness > 0 lowers
    the weight of the past where this frame is confident. The kernels read the
    logits and the state once and write the new state once (docs/design.md
    sections 3.5 and 4.7); on the CPU the log and exp of s^(1/T) make the step
    cost about four times annealed_mean.

    Edge values follow softmax and annealed_mean: a pixel with a NaN or +inf
    logit, or only -inf logits, gets a NaN distribution, state and ab; a NaN
    or negative state entry (where w > 0) makes ab NaN; a state of zeros kept
    whole (w = 1) gives NaN ab for T > 0 and the first centre for T = 0. Where
    w = 0 the state is not used, so the first frame of a clip may pass any
    state (torch.empty_like(logits) will do) with a weight of 0.

    Inference only: it is not differentiable (backward raises).

    Args:
        logits: (N, Q, H, W) float32/float16/bfloat16/float64, any layout.
        state: (N, Q, H, W) probabilities, the previous frame's new_state
            warped to this frame (converted to float32).
        weight: (N, 1, H, W) weight of the state, in [0, 1] (checked on the
            CPU): 0 where the warp is unreliable or at a scene cut.
        centres: (Q, 2) bin centres, or a Codebook.
        temperature: T >= 0 of the annealed mean (paper: 0.38).
        sharpness: exponent of the confidence gating, >= 0.
        backend: "kernels", "reference" or None (the default; see
            fastcolor.ops.backend).

    Returns:
        ab (N, 2, H, W) float32 and new_state (N, Q, H, W) float32 in the
        logits' memory format (softmax and blend in float64 for float64
        logits, rounded once).
    """
    if not isinstance(logits, torch.Tensor):
        raise ValueError(f"{_OP}: logits must be an (N, Q, H, W) tensor, got {type(logits).__name__}")
    c = checked_centres(centres, logits, _OP)
    check_logits(logits, c, _OP)
    state = _check_state(state, logits)
    weight = _check_weight(weight, logits)
    temperature = check_temperature(temperature, _OP)
    sharpness = _check_sharpness(sharpness)
    if _COMPILED and _backend.use_kernels(logits.device.type, backend):
        return torch.ops.fastcolor.temporal_decode(logits, state, weight, c, temperature, sharpness)
    ab, new_state = reference.temporal_decode(logits, state, weight, c, temperature, sharpness)
    if torch.is_grad_enabled() and (ab.requires_grad or new_state.requires_grad):
        ab, new_state = _InferenceOnly.apply(ab, new_state)
    return ab, new_state


def _refuse_backward(*_):
    raise RuntimeError(
        f"fastcolor: {_OP} is inference only and not differentiable; run it under torch.no_grad() "
        "(or torch.inference_mode())"
    )


class _InferenceOnly(torch.autograd.Function):
    """Identity on the reference's outputs whose backward refuses, as the
    kernels' does."""

    @staticmethod
    def forward(ctx, ab, new_state):
        return ab.view_as(ab), new_state.view_as(new_state)

    @staticmethod
    def backward(ctx, *grads):
        _refuse_backward()


def _register():
    @torch.library.register_fake("fastcolor::" + _OP)
    def _(logits, state, weight, centres, temperature, sharpness):
        n, _, h, w = logits.shape
        ab = logits.new_empty((n, 2, h, w), dtype=torch.float32)
        return ab, torch.empty_like(logits, dtype=torch.float32)

    def setup(ctx, inputs, output):
        pass

    def backward(ctx, grad_ab, grad_state):
        _refuse_backward()

    torch.library.register_autograd("fastcolor::" + _OP, backward, setup_context=setup)


if _COMPILED:
    _register()
