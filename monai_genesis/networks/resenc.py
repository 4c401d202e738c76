"""nnU-Net's Residual Encoder U-Net (ResEnc) from MONAI blocks, with the sparse (S3D) encoder of masked pretraining.

The encoder is a stem (conv-norm-act) and stages of residual basic blocks: ``conv-norm-act-conv-norm`` plus a skip,
then the activation. The first block of a stage carries the stage's stride in its first convolution; its skip is
an average pooling when it has a stride and a 1×1 convolution with a norm when the width changes (ResNet-D, as
nnU-Net's ``BasicBlockD``). The decoder has one stage per encoder stage but the first: a transposed convolution
(kernel = stride) to the skip's width, concatenation with the skip, and ``decoder_convs`` conv-norm-act blocks.
A 1×1 convolution gives the output; no deep supervision. Norms are instance norms with a learned scale and shift,
activations LeakyReLU (slope 0.01), convolutions have a bias except in the skips.

With ``sparse=True`` (S3D) the encoder simulates sparse convolution on block-masked input as nnssl's SparK
conversion does (Wald et al., CVPR 2025; SparK, Tian et al., ICLR 2023): after every convolution and
normalisation the masked positions are zeroed again, and the instance-norm statistics are taken over the visible
voxels only. At a stage whose resolution is at least that of the mask's block grid a position is visible when its
block is (a max-pooling of the visible mask); a stage coarser than the block grid on every axis is fully visible,
as in nnssl. Before the decoder, each stage's features are "densified" in nnssl's order: normalised over the
visible positions only (no learned scale), the masked positions filled with a learned mask token, then projected
by a convolution (none on the first, full-resolution stage). One choice differs from nnssl and follows SparK: the
masked input voxels are zeroed before the stem (nnssl's trainer feeds the unmasked image; the stem's output is
masked either way, but its 3³ kernel reads masked voxels next to visible ones). The network receives the mask as
``forward(x, mask)``; inside ``SupervisedTrainer`` :py:class:`monai_genesis.engines.MaskedPrepareBatch` with
``mask_kwarg="mask"`` passes it. The block grid is ``mask_block_size`` when given, otherwise read from the mask
(the greatest common divisor of the positions where it changes, per axis).

Parameter names do not depend on ``sparse``: the S3D network has the dense one's parameters plus ``densify.*``, so
the stem and encoder (``encoder.*``) of a pretrained S3D or MAE network load by name into a dense twin for
fine-tuning.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from monai.networks.blocks import Convolution
from monai.networks.layers.factories import Pool
from torch import nn

from monai_genesis.networks.layers import make_activation

__all__ = [
    "MaskedInstanceNorm",
    "ResidualBlock",
    "ResEncClassifier",
    "ResEncoder",
    "ResEncUNet",
    "RESENC_PRESETS",
    "mask_block_grid",
    "visible_instance_norm",
]

# nnU-Net's ResEnc M and L planners give the same 6-stage network for a 160³ patch: they differ in the GPU memory
# they plan for, hence in patch and batch size, not in the layers; "cpu" is a narrow width for tests and CPU runs
RESENC_PRESETS = {
    "M": {"features": (32, 64, 128, 256, 320, 320), "blocks_per_stage": (1, 3, 4, 6, 6, 6)},
    "L": {"features": (32, 64, 128, 256, 320, 320), "blocks_per_stage": (1, 3, 4, 6, 6, 6)},
    "cpu": {"features": (8, 16, 32, 64, 64, 64), "blocks_per_stage": (1, 3, 4, 6, 6, 6)},
}
_SLOPE = 0.01


def _masked(x: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
    """Zero the masked positions of ``x`` (``keep`` is 1 where visible); dense when ``keep`` is None."""
    return x if keep is None else x * keep


def visible_instance_norm(x: torch.Tensor, keep: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Normalise ``x`` ``(B, C, *spatial)`` per sample and channel with the mean and biased variance of its visible
    voxels (``keep`` ``(B, 1, *spatial)``, 1 where visible); the masked positions get the same affine map.

    Args:
        x: the features.
        keep: the visible mask.
        eps: added to the variance.
    """
    dims = tuple(range(2, x.ndim))
    count = keep.sum(dims, keepdim=True).clamp_min(1.0)
    mean = (x * keep).sum(dims, keepdim=True) / count
    var = ((x - mean) ** 2 * keep).sum(dims, keepdim=True) / count
    return (x - mean) * torch.rsqrt(var + eps)


def mask_block_grid(mask: torch.Tensor) -> tuple[int, ...]:
    """The block side of a block mask ``(B, 1, *spatial)`` per axis, read from the mask itself.

    On each axis it is the greatest common divisor of the side and of every position where the mask changes
    along that axis (over the whole batch): the block size of a block mask, or a multiple of it when the draw
    happens to change only at coarser steps (the stages it decides about then look the same either way).

    Args:
        mask: the mask (1 or True where masked).
    """
    grid = []
    m = mask.bool()
    for axis in range(2, m.ndim):
        side = m.shape[axis]
        changes = (m.narrow(axis, 1, side - 1) != m.narrow(axis, 0, side - 1))
        other = tuple(d for d in range(m.ndim) if d != axis)
        positions = (torch.nonzero(changes.any(dim=other) if other else changes).flatten() + 1).tolist()
        grid.append(math.gcd(side, *positions))
    return tuple(grid)


class MaskedInstanceNorm(nn.Module):
    """Instance norm with a learned scale and shift whose statistics can be restricted to the visible voxels.

    Without ``keep`` it is ``torch.nn.InstanceNormNd(num_features, affine=True)`` (same parameters and names);
    with ``keep`` (``(B, 1, *spatial)``, 1 where visible) the mean and the biased variance of each channel are
    taken over the visible voxels only.

    Args:
        num_features: number of channels.
        eps: added to the variance.
    """

    def __init__(self, num_features: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.num_features, self.eps = num_features, eps
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))

    def forward(self, x: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """Normalise ``x`` ``(B, C, *spatial)`` per sample and channel, over the visible voxels if ``keep`` is given."""
        if keep is None:
            return F.instance_norm(x, weight=self.weight, bias=self.bias, eps=self.eps)
        shape = (1, -1) + (1,) * (x.ndim - 2)
        return visible_instance_norm(x, keep, self.eps) * self.weight.view(shape) + self.bias.view(shape)


class ConvNormAct(nn.Module):
    """Convolution, masked instance norm and (optionally) LeakyReLU; masked positions zeroed after each when sparse.

    Args:
        spatial_dims: 2 or 3.
        in_channels: input channels.
        out_channels: output channels.
        kernel_size: convolution kernel, an int or one per axis.
        stride: convolution stride, an int or one per axis.
        act: whether to end with the activation.
        bias: whether the convolution has a bias.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        kernel_size: int | Sequence[int] = 3,
        stride: int | Sequence[int] = 1,
        act: bool = True,
        bias: bool = True,
    ) -> None:
        super().__init__()
        self.conv = Convolution(
            spatial_dims, in_channels, out_channels, strides=stride, kernel_size=kernel_size, conv_only=True, bias=bias
        )
        self.norm = MaskedInstanceNorm(out_channels)
        self.act = nn.LeakyReLU(_SLOPE, inplace=True) if act else nn.Identity()

    def forward(self, x: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """Apply the block; ``keep`` (visible mask at the output's resolution) makes it sparse."""
        x = _masked(self.conv(x), keep)
        # LeakyReLU keeps zeros, so the activation needs no masking of its own
        return self.act(_masked(self.norm(x, keep), keep))


class ResidualBlock(nn.Module):
    """Residual basic block ``act(conv-norm-act-conv-norm(x) + skip(x))``, ResNet-D skip (nnU-Net's ``BasicBlockD``).

    Args:
        spatial_dims: 2 or 3.
        in_channels: input channels.
        out_channels: output channels.
        kernel_size: kernel of both convolutions.
        stride: stride of the first convolution and of the skip's average pooling.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        kernel_size: int | Sequence[int] = 3,
        stride: int | Sequence[int] = 1,
    ) -> None:
        super().__init__()
        self.conv1 = ConvNormAct(spatial_dims, in_channels, out_channels, kernel_size, stride)
        self.conv2 = ConvNormAct(spatial_dims, out_channels, out_channels, kernel_size, act=False)
        strided = any(s != 1 for s in _per_axis(stride, spatial_dims))
        self.pool = Pool["avg", spatial_dims](kernel_size=stride, stride=stride) if strided else None
        self.projection = (
            ConvNormAct(spatial_dims, in_channels, out_channels, 1, act=False, bias=False)
            if in_channels != out_channels
            else None
        )
        self.act = nn.LeakyReLU(_SLOPE, inplace=True)

    def forward(self, x: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """Apply the block; ``keep`` (visible mask at the output's resolution) makes it sparse."""
        residual = x if self.pool is None else _masked(self.pool(x), keep)
        if self.projection is not None:
            residual = self.projection(residual, keep)
        return self.act(self.conv2(self.conv1(x, keep), keep) + residual)


def _per_axis(value: int | Sequence[int], spatial_dims: int) -> tuple[int, ...]:
    return (int(value),) * spatial_dims if isinstance(value, int) else tuple(int(v) for v in value)


def _per_stage(value, n: int, name: str) -> list:
    """One entry per stage: an int (or per-axis tuple) repeated, or a sequence of ``n`` entries."""
    if isinstance(value, int):
        return [value] * n
    value = list(value)
    if len(value) != n:
        raise ValueError(f"{name} needs one entry per stage ({n}), got {value}.")
    return value


class ResEncoder(nn.Module):
    """The residual encoder: a stem and stages of residual blocks; returns the bottleneck and the skips.

    Its forward returns ``(bottleneck, skips)``: the output of the last stage and those of the others, from full
    resolution down, like :py:class:`monai_genesis.networks.GenesisEncoder`.

    Args:
        spatial_dims: 2 or 3.
        in_channels: input channels.
        features: output channels of each stage (the stem has those of the first).
        blocks_per_stage: residual blocks of each stage.
        strides: stride of each stage (an int or one per axis), applied by its first block.
        kernel_size: kernel of every convolution but the skips' 1×1: an int, or one int or per-axis tuple per stage.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        features: Sequence[int],
        blocks_per_stage: Sequence[int],
        strides: Sequence[int | Sequence[int]],
        kernel_size: int | Sequence = 3,
    ) -> None:
        super().__init__()
        n = len(features)
        kernels = _per_stage(kernel_size, n, "kernel_size")
        self.spatial_dims = spatial_dims
        self.strides = [_per_axis(s, spatial_dims) for s in strides]
        self.stem = ConvNormAct(spatial_dims, in_channels, features[0], kernels[0])
        stages = []
        width = features[0]
        for s in range(n):
            blocks = [ResidualBlock(spatial_dims, width, features[s], kernels[s], self.strides[s])]
            blocks += [
                ResidualBlock(spatial_dims, features[s], features[s], kernels[s]) for _ in range(1, blocks_per_stage[s])
            ]
            stages.append(nn.Sequential(*blocks))
            width = features[s]
        self.stages = nn.ModuleList(stages)

    def visible_masks(
        self, mask: torch.Tensor | None, block_size: int | Sequence[int] | None = None
    ) -> list[torch.Tensor | None]:
        """The visible mask (1 = visible) at the input and at each stage's resolution; Nones when ``mask`` is None.

        A stage coarser than the block grid on every axis is fully visible (as in nnssl); at the other stages a
        position is visible when any voxel it pools is (the block's value when the stage's step divides the block).

        Args:
            mask: ``(B, 1, *spatial)``, 1 (or True) where masked, or None.
            block_size: side of the mask's blocks, an int or one per axis; None reads it from the mask
                (:py:func:`mask_block_grid`).
        """
        if mask is None:
            return [None] * (len(self.stages) + 1)
        blocks = mask_block_grid(mask) if block_size is None else _per_axis(block_size, self.spatial_dims)
        keeps = [(mask <= 0.5).to(torch.float32)]
        step = (1,) * self.spatial_dims
        pool = F.max_pool3d if self.spatial_dims == 3 else F.max_pool2d
        for stride in self.strides:
            keep = keeps[-1]
            step = tuple(a * s for a, s in zip(step, stride))
            if any(s != 1 for s in stride):
                keep = pool(keep, stride, stride)
            if all(a > b for a, b in zip(step, blocks)):
                keep = torch.ones_like(keep)
            keeps.append(keep)
        return keeps

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None = None, block_size: int | Sequence[int] | None = None
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Encode ``x``; with ``mask`` (``(B, 1, *spatial)``, 1 where masked) sparsely, from the visible voxels only.

        ``block_size`` is the side of the mask's blocks (see :py:meth:`visible_masks`); None reads it from the mask.
        """
        keeps = self.visible_masks(mask, block_size)
        if keeps[0] is not None:
            keeps = [k.to(x.dtype) for k in keeps]
        x = self.stem(_masked(x, keeps[0]), keeps[0])
        outputs = []
        for stage, keep in zip(self.stages, keeps[1:]):
            for block in stage:
                x = block(x, keep)
            outputs.append(x)
        return outputs[-1], outputs[:-1]


class Densify(nn.Module):
    """nnssl's densify step of S3D: normalise over the visible positions, fill the masked ones with a learned mask
    token, then project.

    The norm has no learned scale or shift (nnssl's sparse instance norm); without a visible mask it normalises
    every position and no token is used, as for fine-tuning.

    Args:
        spatial_dims: 2 or 3.
        channels: channels of the stage.
        kernel_size: kernel of the projection.
        project: whether to end with the projection convolution (nnssl has none on the full-resolution stage).
    """

    def __init__(
        self, spatial_dims: int, channels: int, kernel_size: int | Sequence[int] = 3, project: bool = True
    ) -> None:
        super().__init__()
        self.mask_token = nn.Parameter(torch.zeros(1, channels, *([1] * spatial_dims)))
        nn.init.trunc_normal_(self.mask_token, std=0.02, a=-0.02, b=0.02)
        self.proj = (
            Convolution(spatial_dims, channels, channels, kernel_size=kernel_size, conv_only=True, bias=True)
            if project
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
        """Normalise ``x`` over its visible positions (``keep`` is 1 there), put the token elsewhere, project."""
        if keep is None:
            return self.proj(F.instance_norm(x))
        x = torch.where(keep > 0.5, visible_instance_norm(x, keep), self.mask_token.to(x.dtype))
        return self.proj(x)


class ResEncUpStage(nn.Module):
    """Decoder stage: transposed conv (kernel = stride) to the skip's width, concatenation, conv-norm-act blocks.

    Args:
        spatial_dims: 2 or 3.
        in_channels: channels of the coarser input.
        skip_channels: channels of the skip, and of the output.
        stride: the upsampling factor (the stride of the encoder stage it undoes).
        kernel_size: kernel of the convolutions.
        convs: number of conv-norm-act blocks.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        skip_channels: int,
        stride: Sequence[int],
        kernel_size: int | Sequence[int] = 3,
        convs: int = 1,
    ) -> None:
        super().__init__()
        self.upsample = Convolution(
            spatial_dims,
            in_channels,
            skip_channels,
            strides=stride,
            kernel_size=stride,
            padding=0,
            output_padding=0,
            is_transposed=True,
            conv_only=True,
            bias=True,
        )
        blocks = [ConvNormAct(spatial_dims, 2 * skip_channels, skip_channels, kernel_size)]
        blocks += [ConvNormAct(spatial_dims, skip_channels, skip_channels, kernel_size) for _ in range(1, convs)]
        self.convs = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """Upsample ``x``, concatenate ``skip`` on the channel axis and convolve."""
        return self.convs(torch.cat([self.upsample(x), skip], dim=1))


class ResEncUNet(nn.Module):
    """nnU-Net's Residual Encoder U-Net (ResEnc), 2D or 3D, optionally with the sparse S3D encoder for pretraining.

    The defaults give ResEnc-L as pretrained by Wald et al. (CVPR 2025): 6 stages of [32, 64, 128, 256, 320, 320]
    features with [1, 3, 4, 6, 6, 6] residual blocks, 3×3×3 kernels, strides 1, 2, 2, 2, 2, 2, one convolution per
    decoder stage, instance norm (affine), LeakyReLU, no deep supervision. See :py:mod:`monai_genesis.networks.resenc`
    for the blocks and the S3D variant, :py:meth:`preset` for named widths. Input sides must be divisible by the
    product of the strides (32 for ResEnc-L). ``net.encoder`` holds the stem and the stages.

    Args:
        spatial_dims: 2 or 3.
        in_channels: input channels.
        out_channels: output channels.
        features: output channels of each stage.
        blocks_per_stage: residual blocks of each stage.
        strides: stride of each stage, an int or one per axis.
        kernel_size: kernel of the convolutions: an int, or one int or per-axis tuple per stage.
        decoder_convs: conv-norm-act blocks per decoder stage.
        sparse: the S3D encoder (masked positions zeroed, statistics over visible voxels) and the densify steps.
        mask_block_size: side of the mask's blocks for S3D (which stages are coarser than the block grid, hence
            fully visible), an int or one per axis; None reads it from each mask.
        out_activation: ``None`` for the restoration of z-scored intensities and for logits, or a name of
            ``monai.networks.layers.Act`` such as ``"sigmoid"``. It has no parameters.
    """

    def __init__(
        self,
        spatial_dims: int = 3,
        in_channels: int = 1,
        out_channels: int = 1,
        features: Sequence[int] = (32, 64, 128, 256, 320, 320),
        blocks_per_stage: Sequence[int] = (1, 3, 4, 6, 6, 6),
        strides: Sequence[int | Sequence[int]] = (1, 2, 2, 2, 2, 2),
        kernel_size: int | Sequence = 3,
        decoder_convs: int = 1,
        sparse: bool = False,
        out_activation: str | tuple | None = None,
        mask_block_size: int | Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}.")
        features, blocks_per_stage = list(features), list(blocks_per_stage)
        n = len(features)
        if n < 2 or any(int(f) < 1 for f in features):
            raise ValueError(f"features must give at least 2 stages of positive widths, got {features}.")
        if len(blocks_per_stage) != n or any(int(b) < 1 for b in blocks_per_stage):
            raise ValueError(f"blocks_per_stage needs one positive count per stage ({n}), got {blocks_per_stage}.")
        strides = _per_stage(strides, n, "strides")
        if any(len(_per_axis(s, spatial_dims)) != spatial_dims or min(_per_axis(s, spatial_dims)) < 1 for s in strides):
            raise ValueError(f"strides must be positive ints or {spatial_dims}-tuples of them, got {strides}.")
        if decoder_convs < 1:
            raise ValueError(f"decoder_convs must be at least 1, got {decoder_convs}.")
        kernels = _per_stage(kernel_size, n, "kernel_size")
        self.spatial_dims, self.sparse = spatial_dims, sparse
        self.mask_block_size = None if mask_block_size is None else _per_axis(mask_block_size, spatial_dims)
        self.encoder = ResEncoder(spatial_dims, in_channels, features, blocks_per_stage, strides, kernels)
        self.downsampling = tuple(math.prod(s[a] for s in self.encoder.strides) for a in range(spatial_dims))
        self.densify = (
            nn.ModuleList([Densify(spatial_dims, f, kernels[s], project=s > 0) for s, f in enumerate(features)])
            if sparse
            else None
        )
        self.decoder = nn.ModuleList(
            [
                ResEncUpStage(
                    spatial_dims, features[s], features[s - 1], self.encoder.strides[s], kernels[s - 1], decoder_convs
                )
                for s in range(n - 1, 0, -1)
            ]
        )
        self.out = Convolution(spatial_dims, features[0], out_channels, kernel_size=1, conv_only=True, bias=True)
        self.out_act = make_activation(out_activation)

    @classmethod
    def preset(cls, name: str = "L", **kwargs) -> ResEncUNet:
        """The network of a named preset of :py:data:`RESENC_PRESETS`: ``"M"`` and ``"L"`` (the same layers, see
        there), ``"cpu"`` (features [8, 16, 32, 64, 64, 64]).

        Args:
            name: the preset.
            kwargs: other arguments of :py:class:`ResEncUNet` (``spatial_dims``, ``in_channels``, ``sparse``, ...).
        """
        if name not in RESENC_PRESETS:
            raise ValueError(f"unknown ResEnc preset {name!r}; choose one of {sorted(RESENC_PRESETS)}.")
        return cls(**{**RESENC_PRESETS[name], **kwargs})

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """The output for ``x`` ``(B, C, *spatial)``; ``mask`` ``(B, 1, *spatial)`` (1 = masked) for the S3D network.

        Without ``mask`` the S3D network treats every voxel as visible, as for fine-tuning or inference.
        """
        spatial = tuple(x.shape[2:])
        if len(spatial) != self.spatial_dims or any(s % d for s, d in zip(spatial, self.downsampling)):
            raise ValueError(
                f"ResEncUNet needs a (B, C, *spatial) input with {self.spatial_dims} spatial sides divisible by "
                f"{list(self.downsampling)} (the product of the strides), got shape {list(x.shape)}; pad or crop the "
                f"input, e.g. with monai.transforms.DivisiblePad(k={list(self.downsampling)})."
            )
        if mask is not None:
            if not self.sparse:
                raise ValueError("ResEncUNet got a mask but sparse=False; build it with sparse=True for S3D.")
            if mask.shape != (x.shape[0], 1, *spatial):
                raise ValueError(
                    f"ResEncUNet: the mask must have shape (B, 1, *spatial) = {(x.shape[0], 1, *spatial)}, "
                    f"got {tuple(mask.shape)}."
                )
        blocks = self.mask_block_size
        if mask is not None and blocks is None:
            blocks = mask_block_grid(mask)  # read once for the encoder and the densify steps
        bottleneck, skips = self.encoder(x, mask, blocks)
        if self.densify is not None:
            keeps = self.encoder.visible_masks(mask, blocks)[1:]
            keeps = [None if k is None else k.to(x.dtype) for k in keeps]
            features = [d(f, k) for d, f, k in zip(self.densify, [*skips, bottleneck], keeps)]
            skips, bottleneck = features[:-1], features[-1]
        y = bottleneck
        for stage, skip in zip(self.decoder, reversed(skips)):
            y = stage(y, skip)
        return self.out_act(self.out(y))


class ResEncClassifier(nn.Module):
    """The ResEnc encoder with a classification head: encoder -> global average pooling -> linear layer.

    ``encoder`` is the :py:class:`ResEncoder` of :py:class:`ResEncUNet` with the same parameter names
    (``encoder.*``), so the stem and encoder of a pretrained ``ResEncUNet`` (``mae_pretrain``) load by name with
    ``monai_genesis.weights.load_pretrained``. The input sides must leave more than one voxel at the bottleneck
    (instance norm): at least twice the product of the strides, e.g. 64 for ResEnc-L. The outputs are logits.

    Args:
        spatial_dims: 2 or 3.
        in_channels: input channels.
        num_classes: number of outputs.
        features: output channels of each stage.
        blocks_per_stage: residual blocks of each stage.
        strides: stride of each stage, an int or one per axis.
        kernel_size: kernel of the convolutions: an int, or one int or per-axis tuple per stage.
    """

    def __init__(
        self,
        spatial_dims: int = 3,
        in_channels: int = 1,
        num_classes: int = 1,
        features: Sequence[int] = (32, 64, 128, 256, 320, 320),
        blocks_per_stage: Sequence[int] = (1, 3, 4, 6, 6, 6),
        strides: Sequence[int | Sequence[int]] = (1, 2, 2, 2, 2, 2),
        kernel_size: int | Sequence = 3,
    ) -> None:
        super().__init__()
        features = list(features)
        n = len(features)
        if len(list(blocks_per_stage)) != n:
            raise ValueError(f"blocks_per_stage needs one count per stage ({n}), got {list(blocks_per_stage)}.")
        self.encoder = ResEncoder(
            spatial_dims, in_channels, features, blocks_per_stage, _per_stage(strides, n, "strides"),
            _per_stage(kernel_size, n, "kernel_size"),
        )
        self.pool = Pool["adaptiveavg", spatial_dims](1)
        self.head = nn.Linear(features[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The logits ``(B, num_classes)`` of ``x`` ``(B, C, *spatial)``."""
        bottleneck, _ = self.encoder(x)
        return self.head(torch.flatten(self.pool(bottleneck), 1))
