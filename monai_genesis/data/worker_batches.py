"""Moving batches of cubes from ``DataLoader`` workers to the receiving process.

A worker reads a batch's float32 intensities into one of a small pool of shared-memory buffers that it reuses: only
the buffer's number crosses the process boundary after the first batch a buffer carries, and the receiving process's
batch is a view of the buffer, neither copied nor converted there. The receiving process hands a buffer back when
the last view of its batch is gone (a finalizer of the array the batch's storage holds), and only then does the
worker write into it again; a worker whose buffers are all held (at most ``_POOL_LIMIT``) sends fresh shared tensors.
Moving a fresh tensor per batch through shared memory, PyTorch's default, cost more than reading the cubes: with 2
persistent workers the loader cut 11 046 cubes/s of 64×64×32 with reused buffers against 2 478 with PyTorch's
hand-over (``python benchmarks/pretraining_scale.py --volumes 8 --shape 256 256 96 --skip-train --loader-paths batched
batched_plain``, 2-core AMD EPYC VM, load average 0.8; ``benchmarks/results/pretraining_scale_handover_cpu.md``).
"""

from __future__ import annotations

import functools
import os
import uuid
import weakref

import numpy as np
import torch
from monai.data import MetaTensor
from monai.utils import TraceKeys

from monai_genesis.utils import pid_alive

__all__ = ["batch_tensor", "meta_tensor", "release", "shared_array", "ship"]


def meta_tensor(image: torch.Tensor, affine: np.ndarray, source: str) -> MetaTensor:
    return MetaTensor(image, affine=torch.as_tensor(affine), meta={"filename_or_obj": source})


@functools.lru_cache(maxsize=1)
def _item_meta() -> dict:
    """The meta data keys and default values of an item's ``MetaTensor``."""
    return dict(meta_tensor(torch.empty(0), np.eye(4), "").meta)


def batch_tensor(images: np.ndarray, affines, sources) -> MetaTensor:
    """The batch ``MetaTensor`` of float32 ``images`` ``(B, C, *cube)`` (sharing their memory), as
    ``list_data_collate`` makes of the items."""
    meta = {k: [v] * len(sources) for k, v in _item_meta().items() if k not in ("affine", "filename_or_obj")}
    meta["filename_or_obj"] = list(sources)
    meta["affine"] = torch.as_tensor(affines)
    batch = MetaTensor(torch.from_numpy(images), meta=meta, applied_operations=[TraceKeys.NONE] * len(sources))
    batch.is_batch = True
    return batch


# buffers of one worker beyond which a batch goes as a fresh shared tensor (a receiver that stopped releasing them)
_POOL_LIMIT = 16
# each buffer starts with a flag: 1 while the receiver has not yet read it
_HEADER = 64


class _Pool:
    """This process's shared buffers (one pool per worker process) and its token, unique to the process."""

    token: str | None = None
    pid: int = -1
    buffers: list[list] = []  # [shared uint8 tensor, sent to the receiver already]


def _pool() -> type[_Pool]:
    if _Pool.pid != os.getpid():
        # a forked process never shares its parent's buffers
        _Pool.token, _Pool.pid, _Pool.buffers = uuid.uuid4().hex, os.getpid(), []
    return _Pool


def _acquire(nbytes: int) -> int | None:
    """Index of a free buffer of at least ``nbytes`` in this process's pool, marked in use; ``None`` when full."""
    pool = _pool()
    for i, (buffer, _) in enumerate(pool.buffers):
        flag = buffer.numpy()[:8].view(np.int64)
        if flag[0] == 0 and buffer.numel() - _HEADER >= nbytes:
            flag[0] = 1
            return i
    if len(pool.buffers) >= _POOL_LIMIT:
        return None
    buffer = torch.zeros(_HEADER + nbytes, dtype=torch.uint8).share_memory_()
    buffer.numpy()[:8].view(np.int64)[0] = 1
    pool.buffers.append([buffer, False])
    return len(pool.buffers) - 1


def release(index: int) -> None:
    buffers = _pool().buffers
    if index < len(buffers):
        buffers[index][0].numpy()[:8].view(np.int64)[0] = 0


def shared_array(dtype: np.dtype, shape: tuple[int, ...]) -> tuple[np.ndarray, int | None]:
    """An array to read a batch into: in a loader worker a view of a free shared buffer (and its index)."""
    if torch.utils.data.get_worker_info() is not None:
        index = _acquire(int(np.prod(shape, dtype=np.int64)) * dtype.itemsize)
        if index is not None:
            return _view(_pool().buffers[index][0], dtype, shape), index
    return np.empty(shape, dtype=dtype), None


def _view(buffer: torch.Tensor, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    return buffer.numpy()[_HEADER : _HEADER + nbytes].view(dtype).reshape(shape)


class _Shipped:
    """A batch on its way out of a worker: unpickled in the receiving process as the float32 batch."""

    def __init__(self, batch, index: int | None) -> None:
        self.batch, self.index = batch, index
        # from now on the receiving process releases the buffer
        batch.slot = None
        self.buffer = None
        if index is None:
            self.buffer = torch.from_numpy(np.ascontiguousarray(batch.images))
            return
        entry = _pool().buffers[index]
        if not entry[1]:
            # the receiver keeps the buffer from the first batch it carries; later batches send only its number
            self.buffer, entry[1] = entry[0], True

    def __reduce__(self):
        b = self.batch
        return _receive, (_Pool.token, os.getpid(), self.index, self.buffer, b.images.shape, b.affines, b.sources)


def ship(batch) -> _Shipped:
    if batch.slot is not None:
        return _Shipped(batch, batch.slot)
    index = _acquire(batch.images.nbytes)
    if index is not None:
        _view(_pool().buffers[index][0], batch.images.dtype, batch.images.shape)[...] = batch.images
    return _Shipped(batch, index)


class _Received:
    """The buffers of the workers this process receives from: ``(token, index)`` → shared tensor; token → pid."""

    buffers: dict[tuple[str, int], torch.Tensor] = {}
    pids: dict[str, int] = {}


def _hand_back(shared: torch.Tensor) -> None:
    # the last view of a batch is gone: the worker may write the buffer again
    shared.numpy()[:8].view(np.int64)[0] = 0


def _receive(token, pid, index, buffer, shape, affines, sources) -> MetaTensor:
    if index is None:
        return batch_tensor(buffer.numpy(), affines, sources)
    if buffer is not None:
        if token not in _Received.pids:
            # a new worker: let go of the buffers of workers that ended (non-persistent loaders restart them)
            for gone in [t for t, p in _Received.pids.items() if not pid_alive(p)]:
                del _Received.pids[gone]
                for key in [k for k in _Received.buffers if k[0] == gone]:
                    del _Received.buffers[key]
            _Received.pids[token] = pid
        _Received.buffers[(token, index)] = buffer
    shared = _Received.buffers.get((token, index))
    if shared is None:
        raise RuntimeError(
            f"a batch of StoreCubeDataset names buffer {index} of worker {pid}, which this process never received; "
            "collate_store_cubes batches must be unpickled in the order the worker sent them."
        )
    images = _view(shared, np.dtype(np.float32), tuple(shape))
    # the batch's storage holds ``images``: it is collected with the batch's last view, and the buffer goes back
    weakref.finalize(images, _hand_back, shared)
    return batch_tensor(images, affines, sources)
