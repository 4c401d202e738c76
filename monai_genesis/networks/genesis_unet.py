"""The Models Genesis U-Net (Zhou et al., MedIA 2021) built from MONAI blocks."""

from __future__ import annotations

import torch
from monai.networks.blocks import Convolution
from monai.networks.layers.factories import Pool
from torch import nn

from monai_genesis.networks.layers import make_activation

__all__ = ["GenesisEncoder", "GenesisUpBlock", "GenesisUNet", "genesis_norm", "GENESIS_NORMS"]

GENESIS_NORMS = ("genesis", "batch", "instance")


def genesis_norm(norm: str) -> str | tuple:
    """
    Return the MONAI ``Norm`` specifier of a Genesis ``norm`` choice.

    Args:
        norm: ``"genesis"`` (batch norm that always uses batch statistics, as the released weights),
            ``"batch"`` (ordinary batch norm) or ``"instance"`` (instance norm with learnable scale and shift,
            so that it has the same parameters as the batch norms and pretrained weights transfer).
    """
    if norm not in GENESIS_NORMS:
        raise ValueError(f"norm must be one of {GENESIS_NORMS}, got {norm!r}.")
    if norm == "instance":
        return ("instance", {"affine": True})
    return norm


def _conv_block(spatial_dims: int, in_channels: int, out_channels: int, norm: str | tuple) -> Convolution:
    """Conv(k3, p1, bias) -> norm -> ReLU, the block of the released network."""
    return Convolution(
        spatial_dims, in_channels, out_channels, kernel_size=3, adn_ordering="NA", act="relu", norm=norm, bias=True
    )


def _level(
    spatial_dims: int, in_channels: int, mid_channels: int, out_channels: int, norm: str | tuple
) -> nn.Sequential:
    """Two convolution blocks, ``in -> mid -> out`` channels."""
    return nn.Sequential(
        _conv_block(spatial_dims, in_channels, mid_channels, norm),
        _conv_block(spatial_dims, mid_channels, out_channels, norm),
    )


class GenesisEncoder(nn.Module):
    """
    Encoder of the Genesis U-Net: three levels with max-pooling and a bottleneck of ``16 * features`` channels.

    With ``features=f`` the levels give ``2f``, ``4f`` and ``8f`` channels (the skips) and the bottleneck
    ``16f`` (512 for the released ``f=32``). Its forward returns ``(bottleneck, [skip1, skip2, skip3])``,
    the skips ordered from full to 1/4 resolution.

    Args:
        spatial_dims: number of spatial dimensions, 2 or 3.
        in_channels: number of input channels.
        features: width ``f``; 32 gives the released network.
        norm: ``"genesis"``, ``"batch"`` or ``"instance"``, see :py:func:`genesis_norm`.
    """

    def __init__(self, spatial_dims: int = 3, in_channels: int = 1, features: int = 32, norm: str = "genesis") -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}.")
        if features < 1:
            raise ValueError(f"features must be a positive int, got {features}.")
        f = features
        n = genesis_norm(norm)
        self.spatial_dims = spatial_dims
        self.out_channels = 16 * f
        self.skip_channels = (2 * f, 4 * f, 8 * f)
        self.down1 = _level(spatial_dims, in_channels, f, 2 * f, n)
        self.down2 = _level(spatial_dims, 2 * f, 2 * f, 4 * f, n)
        self.down3 = _level(spatial_dims, 4 * f, 4 * f, 8 * f, n)
        self.bottleneck = _level(spatial_dims, 8 * f, 8 * f, 16 * f, n)
        self.pool = Pool["max", spatial_dims](kernel_size=2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Encode ``x``; return the bottleneck features and the three skips (full, 1/2, 1/4 resolution)."""
        skip1 = self.down1(x)
        skip2 = self.down2(self.pool(skip1))
        skip3 = self.down3(self.pool(skip2))
        bottleneck = self.bottleneck(self.pool(skip3))
        return bottleneck, [skip1, skip2, skip3]


class GenesisUpBlock(nn.Module):
    """
    Decoder level of the Genesis U-Net: transposed conv (k2, s2), concatenation with the skip, two conv blocks.

    Args:
        spatial_dims: number of spatial dimensions, 2 or 3.
        in_channels: channels of the coarser input (kept by the transposed convolution).
        skip_channels: channels of the skip concatenated after upsampling.
        out_channels: channels of the output of both convolution blocks.
        norm: a MONAI ``Norm`` specifier, see :py:func:`genesis_norm`.
    """

    def __init__(
        self, spatial_dims: int, in_channels: int, skip_channels: int, out_channels: int, norm: str | tuple
    ) -> None:
        super().__init__()
        self.upsample = Convolution(
            spatial_dims,
            in_channels,
            in_channels,
            strides=2,
            kernel_size=2,
            padding=0,
            output_padding=0,
            is_transposed=True,
            conv_only=True,
            bias=True,
        )
        self.convs = _level(spatial_dims, in_channels + skip_channels, out_channels, out_channels, norm)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """Upsample ``x``, concatenate ``skip`` on the channel axis and convolve."""
        return self.convs(torch.cat([self.upsample(x), skip], dim=1))


class GenesisUNet(nn.Module):
    """
    The 3D (or 2D) U-Net of Models Genesis, with the architecture of the released Genesis Chest CT weights.

    Conv(k3)-norm-ReLU blocks, two per level; encoder ``in -> f -> 2f``, pool, ``2f -> 2f -> 4f``, pool,
    ``4f -> 4f -> 8f``, pool, bottleneck ``8f -> 8f -> 16f``; decoder levels of a transposed conv (k2, s2),
    concatenation with the skip and two blocks (``24f -> 8f -> 8f``, ``12f -> 4f -> 4f``, ``6f -> 2f -> 2f``);
    a 1x1 output conv and the output activation. The defaults give the released network (19 073 665
    parameters); :py:func:`monai_genesis.weights.load_official_checkpoint` loads its weights.
    Input sides must be divisible by 8.

    Args:
        spatial_dims: number of spatial dimensions, 2 or 3.
        in_channels: number of input channels.
        out_channels: number of output channels.
        features: width ``f``; 32 gives the released network.
        norm: ``"genesis"`` (batch norm that always normalises with batch statistics, also in eval mode,
            as the released weights), ``"batch"`` or ``"instance"``.
        out_activation: ``"sigmoid"`` for restoration, ``None`` for segmentation logits (or another name of
            ``monai.networks.layers.Act``). It has no parameters, so weights transfer between the two.
    """

    def __init__(
        self,
        spatial_dims: int = 3,
        in_channels: int = 1,
        out_channels: int = 1,
        features: int = 32,
        norm: str = "genesis",
        out_activation: str | None = "sigmoid",
    ) -> None:
        super().__init__()
        self.encoder = GenesisEncoder(spatial_dims, in_channels, features, norm)
        n = genesis_norm(norm)
        f = features
        self.up3 = GenesisUpBlock(spatial_dims, 16 * f, 8 * f, 8 * f, n)
        self.up2 = GenesisUpBlock(spatial_dims, 8 * f, 4 * f, 4 * f, n)
        self.up1 = GenesisUpBlock(spatial_dims, 4 * f, 2 * f, 2 * f, n)
        self.out = Convolution(spatial_dims, 2 * f, out_channels, kernel_size=1, conv_only=True, bias=True)
        self.out_act = make_activation(out_activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the network output for ``x`` of shape ``(B, C, *spatial)`` with every side divisible by 8."""
        for side in x.shape[2:]:
            if side % 8 != 0:
                raise ValueError(
                    f"GenesisUNet needs input sides divisible by 8 (three poolings), got spatial shape "
                    f"{list(x.shape[2:])}; pad or crop the input, e.g. with monai.transforms.DivisiblePad(k=8)."
                )
        bottleneck, skips = self.encoder(x)
        y = self.up3(bottleneck, skips[2])
        y = self.up2(y, skips[1])
        y = self.up1(y, skips[0])
        return self.out_act(self.out(y))
