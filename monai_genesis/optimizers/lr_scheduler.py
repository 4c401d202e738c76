"""Linear warm-up then polynomial decay, and its "sawtooth" variant for fine-tuning (Wald et al., CVPR 2025).

A step is whatever ``scheduler.step()`` is called for: an epoch with MONAI's
``LrScheduleHandler(lr_scheduler, epoch_level=True)`` (the recipe counts in epochs), an iteration with
``epoch_level=False`` (then give the lengths in iterations). At step ``t`` the learning rate is ``base_lr`` times

- warm-up, ``t < warmup_steps``: ``(t + 1) / warmup_steps`` (the first step already learns);
- decay, ``warmup_steps <= t < total_steps``: ``(1 - (t - warmup_steps) / (total_steps - warmup_steps)) ** 0.9``;
- after ``total_steps``: 0.

With ``warmup_steps=0`` it is nnU-Net's polynomial schedule of pretraining.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

__all__ = ["warmup_poly_factor", "WarmupPolySchedule", "SawtoothWarmupPolySchedule", "encoder_param_groups"]


def warmup_poly_factor(step: int, warmup_steps: int, total_steps: int, exponent: float = 0.9) -> float:
    """The factor of the base learning rate at ``step``: linear warm-up, then polynomial decay to 0 at ``total_steps``.

    Args:
        step: the step, from 0.
        warmup_steps: steps of linear warm-up; 0 for none.
        total_steps: the step at which the rate reaches 0.
        exponent: exponent of the polynomial decay.
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if step >= total_steps:
        return 0.0
    return (1.0 - (step - warmup_steps) / (total_steps - warmup_steps)) ** exponent


def _check(total_steps: int, warmup_steps: int, exponent: float, what: str = "warmup_steps") -> None:
    if warmup_steps < 0 or total_steps <= warmup_steps:
        raise ValueError(f"need 0 <= {what} < total_steps, got {what}={warmup_steps} and total_steps={total_steps}.")
    if exponent <= 0:
        raise ValueError(f"exponent must be positive, got {exponent}.")


class WarmupPolySchedule(LambdaLR):
    """Linear warm-up of every parameter group, then polynomial decay (exponent 0.9) to 0 at ``total_steps``.

    See :py:mod:`monai_genesis.optimizers.lr_scheduler` for the formula. The fine-tuning recipe warms up for 50
    epochs from lr 1e-3 (SGD, Nesterov momentum 0.99).

    Args:
        optimizer: the wrapped optimizer.
        total_steps: the step (epoch or iteration) at which the rate reaches 0, e.g. the number of epochs.
        warmup_steps: steps of linear warm-up. Defaults to 50.
        exponent: exponent of the polynomial decay. Defaults to 0.9.
        last_epoch: the index of the last step, -1 to start.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        total_steps: int,
        warmup_steps: int = 50,
        exponent: float = 0.9,
        last_epoch: int = -1,
    ) -> None:
        _check(total_steps, warmup_steps, exponent)
        self.total_steps, self.warmup_steps, self.exponent = int(total_steps), int(warmup_steps), float(exponent)
        super().__init__(optimizer, self.lr_lambda, last_epoch)

    def lr_lambda(self, step: int) -> float:
        """The factor of the base learning rate at ``step``."""
        return warmup_poly_factor(step, self.warmup_steps, self.total_steps, self.exponent)


class SawtoothWarmupPolySchedule(LambdaLR):
    """The "sawtooth" fine-tuning schedule: the decoder alone warms up and decays, then the whole network does.

    Phase 1, steps ``[0, decoder_steps)``: the encoder's groups have lr 0; the others warm up linearly for
    ``decoder_warmup_steps`` and decay polynomially to 0 at ``decoder_steps``. Phase 2, from ``decoder_steps``:
    every group warms up for ``warmup_steps`` and decays to 0 at ``total_steps``. The recipe's values are 25, 50
    and 50 epochs (decoder warm-up 0–25, decay to 50, whole network warm-up 50–100, then decay).

    The encoder's parameter groups are those whose ``"name"`` is ``encoder_group``; build them with
    :py:func:`encoder_param_groups`, e.g. in a bundle config::

        "optimizer": {"_target_": "torch.optim.SGD", "lr": 1e-3, "momentum": 0.99, "nesterov": true,
                      "params": "$monai_genesis.optimizers.encoder_param_groups(@network)"},
        "lr_scheduler": {"_target_": "monai_genesis.optimizers.SawtoothWarmupPolySchedule",
                         "optimizer": "@optimizer", "total_steps": "@epochs"}

    Args:
        optimizer: the wrapped optimizer, with at least one encoder group and one other group.
        total_steps: the step (epoch or iteration) at which the rate reaches 0.
        decoder_warmup_steps: warm-up of the decoder alone. Defaults to 25.
        decoder_steps: length of the decoder-only phase. Defaults to 50.
        warmup_steps: warm-up of the whole network after it. Defaults to 50.
        exponent: exponent of the polynomial decays. Defaults to 0.9.
        encoder_group: the ``"name"`` of the encoder's parameter groups. Defaults to ``"encoder"``.
        last_epoch: the index of the last step, -1 to start.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        total_steps: int,
        decoder_warmup_steps: int = 25,
        decoder_steps: int = 50,
        warmup_steps: int = 50,
        exponent: float = 0.9,
        encoder_group: str = "encoder",
        last_epoch: int = -1,
    ) -> None:
        _check(decoder_steps, decoder_warmup_steps, exponent, "decoder_warmup_steps")
        _check(total_steps - decoder_steps, warmup_steps, exponent, "warmup_steps")
        names = [group.get("name") for group in optimizer.param_groups]
        is_encoder = [name == encoder_group for name in names]
        if not any(is_encoder) or all(is_encoder):
            raise ValueError(
                f"SawtoothWarmupPolySchedule needs parameter groups named {encoder_group!r} (the encoder) and others "
                f"(the decoder), got group names {names}; build the optimizer's params with "
                "monai_genesis.optimizers.encoder_param_groups(network)."
            )
        self.total_steps, self.exponent = int(total_steps), float(exponent)
        self.decoder_warmup_steps, self.decoder_steps = int(decoder_warmup_steps), int(decoder_steps)
        self.warmup_steps = int(warmup_steps)
        lambdas = [self.encoder_lambda if e else self.decoder_lambda for e in is_encoder]
        super().__init__(optimizer, lambdas, last_epoch)

    def _whole_network(self, step: int) -> float:
        return warmup_poly_factor(
            step - self.decoder_steps, self.warmup_steps, self.total_steps - self.decoder_steps, self.exponent
        )

    def decoder_lambda(self, step: int) -> float:
        """The factor of the decoder's base learning rate at ``step``."""
        if step < self.decoder_steps:
            return warmup_poly_factor(step, self.decoder_warmup_steps, self.decoder_steps, self.exponent)
        return self._whole_network(step)

    def encoder_lambda(self, step: int) -> float:
        """The factor of the encoder's base learning rate at ``step``: 0 while the decoder trains alone."""
        return 0.0 if step < self.decoder_steps else self._whole_network(step)


def encoder_param_groups(
    network: nn.Module, encoder_prefixes: str | Sequence[str] = "encoder.", name: str = "encoder"
) -> list[dict]:
    """Two parameter groups: the encoder's (parameters named with one of ``encoder_prefixes``) and the rest.

    The groups are named ``name`` and ``"decoder"``, as :py:class:`SawtoothWarmupPolySchedule` expects. The default
    prefix is the stem and encoder of :py:class:`monai_genesis.networks.ResEncUNet` and
    :py:class:`monai_genesis.networks.GenesisUNet`; a network wrapped by ``NetWithActivation`` needs
    ``"net.encoder."``. Frozen parameters are left out.

    Args:
        network: the network to fine-tune.
        encoder_prefixes: name prefixes of the pretrained part.
        name: the name of the encoder's group.
    """
    prefixes = (encoder_prefixes,) if isinstance(encoder_prefixes, str) else tuple(encoder_prefixes)
    encoder, rest = [], []
    for key, param in network.named_parameters():
        if param.requires_grad:
            (encoder if key.startswith(prefixes) else rest).append(param)
    if not encoder or not rest:
        tops = sorted({key.split(".")[0] for key, _ in network.named_parameters()})
        raise ValueError(
            f"encoder_param_groups: the prefixes {list(prefixes)} select {len(encoder)} of the "
            f"{len(encoder) + len(rest)} trainable parameters; both groups must be non-empty. The network's top-level "
            f"modules are {tops}."
        )
    return [{"params": encoder, "name": name}, {"params": rest, "name": "decoder"}]
