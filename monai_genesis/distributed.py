"""Helpers for runs under ``torchrun``: which rank writes, and work that rank 0 must finish before the others read."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import torch.distributed as dist

__all__ = ["is_rank_zero", "rank", "rank_zero_first"]

T = TypeVar("T")


def rank() -> int:
    """This process's rank, 0 without an initialised process group."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_rank_zero() -> bool:
    """True on the process that writes logs, checkpoints and pictures (and in a run of one process)."""
    return rank() == 0


def rank_zero_first(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call ``fn(*args, **kwargs)`` on rank 0 first, then on the other ranks, and return its result.

    For steps that write files the other ranks then read (synthetic phantoms, a volume store): the other
    ranks wait at a barrier until rank 0 is done. Without a process group it is a plain call.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return fn(*args, **kwargs)
    if dist.get_rank() > 0:
        dist.barrier()
        return fn(*args, **kwargs)
    try:
        return fn(*args, **kwargs)
    finally:
        # released even when rank 0 fails, so the other ranks reach the same error instead of waiting forever
        dist.barrier()
