"""The learning-rate schedule: a pure function of the step (and, for runs on a
time budget, of the elapsed time), so a resumed run needs no scheduler state.

Linear warmup over ``warmup`` steps, then cosine decay from ``lr`` to
``final_lr_fraction * lr`` at ``steps`` (docs/design.md, section 5.1).
"""

import math

__all__ = ["lr_at", "time_limited_step"]


def lr_at(step, config):
    """Learning rate of step (0-based): linear warmup from lr / warmup to lr over
    the first `warmup` steps, then cosine decay from lr to final_lr_fraction * lr.
    config: anything with lr, warmup, steps and final_lr_fraction (a resolved
    TrainConfig)."""
    base, warmup, total = config.lr, config.warmup, config.steps
    if step < warmup:
        return base * (step + 1) / warmup
    span = max(1, total - warmup)
    t = min(1.0, (step - warmup) / span)
    floor = config.final_lr_fraction
    return base * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t)))


def time_limited_step(step, steps, elapsed, time_limit):
    """(schedule step, time up) of a run with --time-limit: the schedule runs on
    whichever is further along, the steps or the clock (elapsed / time_limit of
    the way to `steps`), and the time is up once elapsed >= time_limit."""
    return max(step, int(steps * min(1.0, elapsed / time_limit))), elapsed >= time_limit
