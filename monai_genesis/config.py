"""Small functions that bundle configs call, so that the configs hold no control flow of their own."""

from __future__ import annotations

__all__ = [
    "METRIC_MODES",
    "as_bool",
    "end_process_group",
    "key_metric_score",
    "metric_cmp_fn",
    "scaled_learning_rate",
    "sparse_network_kwargs",
    "start_process_group",
    "training_state",
    "world_size",
]

_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off", "")


def as_bool(value, name: str = "flag") -> bool:
    """``value`` as a bool: a bool, a number, or a string from the command line (``--resume true``).

    Args:
        value: the value given.
        name: the setting's name, for the error message.

    Raises:
        ValueError: for a string that is neither true nor false.
    """
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise ValueError(f"--{name} must be true or false, got {value!r}.")
    return bool(value)


METRIC_MODES = ("min", "max")


def _check_mode(mode: str) -> str:
    if mode not in METRIC_MODES:
        raise ValueError(f"key_metric_mode must be 'min' (an error, e.g. MSE) or 'max' (e.g. Dice, AUC), got {mode!r}.")
    return mode


def metric_cmp_fn(mode: str = "max"):
    """The ``metric_cmp_fn`` of MONAI's engines for a key metric that is better when lower (``"min"``) or higher.

    Args:
        mode: ``"min"`` or ``"max"``.
    """
    if _check_mode(mode) == "min":
        return lambda current, prev: current < prev
    return lambda current, prev: current > prev


def key_metric_score(mode: str = "max"):
    """The ``score_function`` of ``EarlyStopHandler``: the evaluator's key metric, negated when lower is better.

    Args:
        mode: ``"min"`` or ``"max"``.
    """
    sign = -1.0 if _check_mode(mode) == "min" else 1.0
    return lambda engine: sign * float(engine.state.metrics[engine.state.key_metric_name])


def training_state(network, optimizer, lr_scheduler=None) -> dict:
    """The objects a resume state holds: the network, the optimiser and the learning-rate schedule when there is one.

    Args:
        network: the network being trained.
        optimizer: its optimiser.
        lr_scheduler: its schedule, or None (fine-tuning at a constant rate).
    """
    state = {"model": network, "optimizer": optimizer}
    if lr_scheduler is not None:
        state["lr_scheduler"] = lr_scheduler
    return state


def world_size() -> int:
    """The number of processes of the run: ``torch.distributed``'s world size, 1 without a process group."""
    import torch.distributed as dist

    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def scaled_learning_rate(base_learning_rate: float, batch_size: int, base_batch_size: int) -> float:
    """The linear scaling rule: ``base_learning_rate`` for a global batch of ``base_batch_size``, scaled to the global
    batch of this run (``batch_size`` per process × the processes of a ``torchrun`` run).

    Args:
        base_learning_rate: the rate of the recipe at its batch size.
        batch_size: samples per step of one process.
        base_batch_size: the recipe's global batch size.
    """
    return float(base_learning_rate) * int(batch_size) * world_size() / int(base_batch_size)


def start_process_group(backend: str, device) -> None:
    """Join the ``torchrun`` process group (once) with ``backend``, on ``device``'s GPU when it is one.

    Args:
        backend: ``"nccl"`` for GPUs, ``"gloo"`` for CPUs.
        device: this process's ``torch.device``.
    """
    import torch
    import torch.distributed as dist

    cuda = torch.device(device).type == "cuda"
    if cuda:
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, device_id=torch.device(device) if cuda else None)


def end_process_group() -> None:
    """Wait for every rank, then leave the process group (nothing without one)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def sparse_network_kwargs(sparse: bool | str) -> dict[str, str]:
    """The ``network_kwargs`` of ``PretextPrepareBatch`` for masked image modelling: a sparse (S3D) network takes the
    pretext's mask as its ``mask`` argument, a dense one takes nothing.

    Args:
        sparse: the network is the sparse variant (``--resenc_sparse true``).
    """
    return {"mask": "mask"} if as_bool(sparse, "resenc_sparse") else {}
