"""Finite or refuse: the one check that no NaN/inf weight, optimizer state or
prediction gets read, written or returned silently.

    name = first_nonfinite(tensors)        # None, or the first offending key
    check_finite(tensors, f"{path}", hint="a diverged run or a damaged file")

Used by the model file (fastcolor.models.save_model / load_model), the training
checkpoint (written and read), the training loop (before every write) and the
Colorizer (its network output, once per batch).
"""

import torch

__all__ = ["first_nonfinite", "describe_tensor", "check_finite"]


def first_nonfinite(tensors):
    """The key of the first floating-point tensor of ``tensors`` (a mapping
    name -> tensor, in its order) that holds a NaN or an infinity, or None.
    Other values (integer tensors, non-tensors) are skipped. One host sync per
    device the tensors live on, however many there are."""
    items = [(k, v) for k, v in tensors.items()
             if torch.is_tensor(v) and (v.is_floating_point() or v.is_complex())]
    by_device = {}
    for i, (_, v) in enumerate(items):
        by_device.setdefault(v.device, []).append(i)
    bad = []
    for indices in by_device.values():
        flags = torch.stack([torch.isfinite(items[i][1]).all() for i in indices]).tolist()
        bad += [i for i, ok in zip(indices, flags) if not ok]
    return items[min(bad)][0] if bad else None


def describe_tensor(name):
    """What a tensor of a model file or checkpoint is, in words: "weight X"
    for model.X, "optimizer state X" for optim.X, "tensor X" otherwise."""
    for prefix, kind in (("model.", "weight"), ("optim.", "optimizer state")):
        if name.startswith(prefix):
            return f"{kind} {name[len(prefix):]}"
    return f"tensor {name}"


def check_finite(tensors, context, hint=None, error=ValueError):
    """Raise ``error("<context>: <what> holds NaN/inf values (<hint>)")`` naming
    the first non-finite tensor of ``tensors``; return None when all are finite."""
    name = first_nonfinite(tensors)
    if name is not None:
        raise error(f"{context}: {describe_tensor(name)} holds NaN/inf values" + (f" ({hint})" if hint else ""))
