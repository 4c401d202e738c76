"""Small helpers shared by the package."""

from __future__ import annotations

import hashlib
import os
from typing import Union

__all__ = ["file_digest", "pid_alive"]

PathLike = Union[str, "os.PathLike[str]"]


def file_digest(path: PathLike, algorithm: str = "sha256", chunk_size: int = 1 << 20) -> str:
    """Return the hex digest of a file, read in chunks so that large files are not held in memory.

    Args:
        path: the file.
        algorithm: a name ``hashlib.new`` knows, e.g. ``"sha256"`` or ``"sha1"``.
        chunk_size: bytes read at a time.
    """
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists on this machine (one of another user counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
