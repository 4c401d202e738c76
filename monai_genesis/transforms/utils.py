"""Input checks and small helpers shared by the Genesis corruptions."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
import torch

from monai.data import MetaTensor


__all__ = [
    "check_channel_first",
    "check_intensity",
    "check_min_spatial_size",
    "draw_seed",
    "seeded_generator",
    "torch_generator",
]

# more channels than this in a 3-axis array without meta data look like a channel-less 3-D volume
_MAX_2D_CHANNELS = 4

_RANGE_HINT = (
    "scale the image into the declared range first, e.g. for CT "
    "`ScaleIntensityRanged(keys='image', a_min=-1000, a_max=1000, b_min=0.0, b_max=1.0, clip=True)`, "
    "for MRI `ScaleIntensityRangePercentilesd(keys='image', lower=0.5, upper=99.5, b_min=0.0, b_max=1.0, clip=True)`; "
    "or pass `zscore=True` for z-scored input"
)


def check_channel_first(img: torch.Tensor | np.ndarray, spatial_dims: int | None, name: str) -> int:
    """Check that ``img`` is channel-first ``(C, H, W[, D])`` and return its number of spatial dimensions.

    Args:
        img: the image to check.
        spatial_dims: 2 or 3 to require that many spatial dimensions, None to infer it from ``img.ndim``.
        name: the transform's name, used in error messages.
    """
    shape = tuple(img.shape)
    if spatial_dims is None:
        meta_shape = img.meta.get("spatial_shape") if isinstance(img, MetaTensor) else None
        if meta_shape is not None and len(shape) == len(np.atleast_1d(meta_shape)) and len(shape) in (2, 3):
            raise ValueError(
                f"{name}: the image of shape {shape} has no channel axis; add one with "
                "`EnsureChannelFirstd(keys='image')` (or `LoadImaged(..., ensure_channel_first=True)`)."
            )
        if meta_shape is None and len(shape) == 3 and shape[0] > _MAX_2D_CHANNELS:
            warnings.warn(
                f"{name}: the image of shape {shape} is taken as {shape[0]} channels of a 2-D {shape[1]}x{shape[2]} "
                f"image; if it is a 3-D volume without a channel axis, add one (x[None]) or pass spatial_dims=3.",
                stacklevel=3,
            )
        spatial_dims = len(shape) - 1
    if spatial_dims not in (2, 3) or len(shape) != spatial_dims + 1:
        raise ValueError(
            f"{name}: expected a channel-first image (C, H, W) or (C, H, W, D), got shape {shape}"
            + (f" for spatial_dims={spatial_dims}" if len(shape) in (3, 4) else "")
            + "; add a channel axis with `EnsureChannelFirstd(keys='image')`."
        )
    return spatial_dims


def check_intensity(x: torch.Tensor, value_range: Sequence[float] | None, name: str) -> None:
    """Raise a ``ValueError`` for NaN/inf values, or values outside ``value_range`` (None: finite values only).

    Args:
        x: the values to check (any shape; one reduction, one host sync).
        value_range: the declared ``(low, high)`` intensity range, or None.
        name: the transform's name, used in error messages.
    """
    if x.numel() == 0:
        raise ValueError(f"{name}: the image is empty (shape {tuple(x.shape)}).")
    lo, hi = (float(v) for v in torch.aminmax(x.detach().float()))
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(
            f"{name}: the image contains NaN or infinite values; replace them first, "
            "e.g. with `torch.nan_to_num` or MONAI's `ScaleIntensityRanged(..., clip=True)` after masking."
        )
    if value_range is not None:
        low, high = value_range
        tol = 1e-5 * (high - low)
        if lo < low - tol or hi > high + tol:
            raise ValueError(
                f"{name}: intensities span [{lo:.6g}, {hi:.6g}] but value_range is ({low:g}, {high:g}); {_RANGE_HINT}."
            )


def check_min_spatial_size(spatial_shape: Sequence[int], min_size: int, name: str, why: str) -> None:
    """Raise a ``ValueError`` when a spatial side is smaller than ``min_size``.

    Args:
        spatial_shape: the spatial shape of the image.
        min_size: the smallest side the corruption supports.
        name: the transform's name, used in error messages.
        why: what needs that size, used in error messages.
    """
    if min(spatial_shape) < min_size:
        raise ValueError(
            f"{name}: spatial size {tuple(spatial_shape)} is too small; every side must be at least {min_size} "
            f"voxels ({why}). Crop larger patches or pad them, e.g. with `SpatialPadd`."
        )


def draw_seed(R: np.random.RandomState) -> int:
    """A seed for a torch generator, drawn from ``R``."""
    return int(R.randint(0, 2**31 - 1))


def seeded_generator(seed: int, device: torch.device | str) -> torch.Generator:
    """A torch generator on ``device`` seeded with ``seed``."""
    return torch.Generator(device=device).manual_seed(int(seed))


def torch_generator(R: np.random.RandomState, device: torch.device | str) -> torch.Generator:
    """A torch generator on ``device`` seeded from ``R``, so that bulk noise drawn on the device follows ``R``."""
    return seeded_generator(draw_seed(R), device)
