"""Simulated time: a phase's length in milliseconds becomes seconds to wait."""

from __future__ import annotations

from random import Random

__all__ = ["phase_seconds"]


def phase_seconds(ms: int, *, time_scale: float, jitter: float, rng: Random) -> float:
    """`ms` scaled by `time_scale` and a jitter factor drawn from [1 - jitter, 1 + jitter].

    The factor is drawn whatever the time scale, so a seed gives the same sequence of
    draws (and so the same identifiers later on) at every scale.
    """
    factor = rng.uniform(1.0 - jitter, 1.0 + jitter) if jitter else 1.0
    return max(0.0, ms / 1000 * factor * time_scale)
