"""Layers of the Genesis networks: the released batch norm and an output-activation wrapper."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.networks.layers.factories import Norm
from monai.networks.layers.utils import get_act_layer
from torch import nn

__all__ = ["EncoderFeatures", "GenesisBatchNorm", "NetWithActivation", "make_activation", "unwrap_parallel"]


class GenesisBatchNorm(nn.modules.batchnorm._BatchNorm):
    """
    Batch normalisation that always normalises with the statistics of the current batch.

    This is the behaviour of the released Models Genesis weights: in training *and* in eval mode the
    input is normalised with its own batch mean and variance; the running statistics are still updated
    (with ``momentum``) and saved, but never used. It accepts 1D, 2D and 3D inputs (``(B, C, *spatial)``)
    and has the same parameters and buffers as ``torch.nn.BatchNorm3d``, so state dicts are exchangeable.
    It is registered in MONAI's ``Norm`` factory under the name ``"genesis"``.

    Args:
        num_features: number of channels ``C``.
        eps: value added to the variance for numerical stability.
        momentum: factor of the running statistics update.
        affine: whether to learn a per-channel scale and shift.
        track_running_stats: whether to keep (and update) running statistics.
    """

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
    ) -> None:
        super().__init__(num_features, eps, momentum, affine, track_running_stats)

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 3 or input.dim() > 5:
            raise ValueError(
                f"GenesisBatchNorm expects a (B, C, *spatial) input with 1 to 3 spatial dims, got {input.dim()}D."
            )

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        """Normalise ``input`` with its batch statistics and update the running statistics."""
        self._check_input_dim(input)
        # the released network normalises with batch statistics even in eval mode
        return F.batch_norm(
            input, self.running_mean, self.running_var, self.weight, self.bias, True, self.momentum, self.eps
        )


def _genesis_norm_factory(dim: int) -> type[GenesisBatchNorm]:
    """Batch norm of the released Models Genesis weights (always batch statistics), any spatial dims."""
    return GenesisBatchNorm


if "GENESIS" not in Norm.names:
    Norm.add_factory_callable("genesis", _genesis_norm_factory)


def make_activation(activation: str | tuple | None) -> nn.Module:
    """
    Build an output activation layer from a MONAI ``Act`` name (e.g. ``"sigmoid"``), or identity for ``None``.

    Args:
        activation: a name or ``(name, args)`` pair of ``monai.networks.layers.Act``, or ``None`` for no activation.
    """
    if activation is None:
        return nn.Identity()
    try:
        return get_act_layer(activation)
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(
            f"unknown output activation {activation!r}; use 'sigmoid' (restoration), None (logits), "
            "or another name of monai.networks.layers.Act."
        ) from e


class NetWithActivation(nn.Module):
    """
    Wrap a network so that an activation is applied to its output, with the same parameter names either way.

    MONAI's segmentation networks return logits; Genesis restoration needs a sigmoid output. Wrapping the
    pretraining network as ``NetWithActivation(net, "sigmoid")`` and its segmentation twin as
    ``NetWithActivation(net, None)`` keeps every parameter name identical (``net.<name>``), so weights
    transfer between the two without a prefix map. To load such weights into a bare network, use
    ``monai_genesis.weights.load_pretrained(bare_net, ckpt, prefix_map={"net.": ""})``.

    Args:
        net: the wrapped network; its output must be a tensor.
        activation: a MONAI ``Act`` name such as ``"sigmoid"``, or ``None`` to return the output unchanged.
    """

    def __init__(self, net: nn.Module, activation: str | tuple | None = "sigmoid") -> None:
        super().__init__()
        self.net = net
        self.act = make_activation(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the wrapped network on ``x`` and apply the activation."""
        return self.act(self.net(x))


class EncoderFeatures(nn.Module):
    """
    The bottleneck features of a network with a Genesis encoder (``GenesisUNet``, ``GenesisClassifier``).

    ``net.encoder(x)`` returns ``(bottleneck, skips)``; this module returns the bottleneck alone, ``16 * features``
    channels at ``1 / downsampling`` of the input's resolution, so it can run under a sliding-window inferer to
    encode whole volumes. Its parameters are those of ``net``, which stays loadable as before.

    Args:
        net: a network whose ``encoder`` is a :py:class:`monai_genesis.networks.GenesisEncoder`.
    """

    downsampling = 8  # three 2x poolings

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        if not hasattr(net, "encoder"):
            raise ValueError(f"{type(net).__name__} has no Genesis `encoder` to take features from.")
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The encoder's bottleneck of ``x``."""
        return self.net.encoder(x)[0]


def unwrap_parallel(network: nn.Module) -> nn.Module:
    """The module inside ``DataParallel`` or ``DistributedDataParallel`` (its parameter names carry no ``module.``
    prefix), or ``network`` itself."""
    return network.module if isinstance(network, (nn.DataParallel, nn.parallel.DistributedDataParallel)) else network
