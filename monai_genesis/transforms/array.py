"""Array transforms of the Models Genesis corruptions.

Every transform takes a channel-first image ``(C, H, W)`` or ``(C, H, W, D)`` (NumPy array, torch tensor on any
device, or ``MetaTensor``) and returns the same type on the same device; a ``MetaTensor`` keeps its meta data and
affine. Each channel is corrupted independently (its own decision and parameters). Small parameters are drawn from
``self.R``; bulk random numbers (noise, permutation keys) come from a torch generator on the image's device seeded
by a number drawn from ``self.R``, so ``set_random_state`` and ``monai.utils.set_determinism`` make runs
repeatable. The input is never modified.

Each corruption is a batch-first functional core: ``draw(R, shape, device)`` draws every parameter of a batch
``(B, C, *spatial)`` from the random state ``R`` (which channels, blocks, curves, boxes, flips and the seed of the
noise) and ``apply(x, params)`` applies them to a batch, the backend (compiled CPU loops or torch on any device,
:py:mod:`monai_genesis.transforms.backend`) chosen once per apply. ``__call__`` draws from ``self.R``, wraps the
image as a batch of one, applies and unwraps; :py:class:`monai_genesis.engines.PretextPrepareBatch` draws and
applies whole batches on the training device. MONAI's contract: ``randomize(img)`` draws and keeps the parameters
in ``last_draw``; ``__call__(img, randomize=False)`` applies the last draw again, to the same image or to another
of the same shape.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from monai.config import NdarrayOrTensor
from monai.data import MetaTensor
from monai.data.meta_obj import get_track_meta
from monai.transforms import Flip, RandomizableTransform
from monai.utils import TransformBackends, convert_to_dst_type, convert_to_tensor

from .backend import TorchBackend, backend_for
from .flip import draw_flips, flip_items
from .nonlinear import draw_nonlinear, percentile_range
from .painting import INPAINT_MIN_SIZE, OUTPAINT_MIN_SIZE, draw_inpaint_boxes, draw_outpaint_boxes
from .shuffle import blocks_touching, draw_blocks, local_shuffle
from .utils import check_channel_first, check_intensity, check_min_spatial_size, draw_seed, torch_generator

__all__ = [
    "GenesisDraw",
    "ItemDraw",
    "RandNonlinearIntensity",
    "RandLocalPixelShuffle",
    "RandInpaint",
    "RandOutpaint",
    "RandGenesisFlip",
    "RandGenesisCorruption",
]


def _check_prob(name: str, value: float) -> float:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {value}.")
    return float(value)


def _check_range(value_range: Sequence[float] | None, zscore: bool) -> tuple[float, float] | None:
    if zscore:
        return None
    if value_range is None or len(value_range) != 2 or not value_range[0] < value_range[1]:
        raise ValueError(f"value_range must be (low, high) with low < high, got {value_range}; or set zscore=True.")
    return float(value_range[0]), float(value_range[1])


@dataclass(frozen=True)
class ItemDraw:
    """What one corruption drew for ``n`` items ``(n, *spatial)``.

    Attributes:
        shape: the shape ``(n, *spatial)`` it was drawn for.
        selected: which items it corrupts, a boolean array ``(n,)``.
        params: the parameters of the selected items (blocks, curves or boxes); None when none is selected.
        seed: the seed of the torch generator of its bulk random numbers (noise, permutation keys).
    """

    shape: tuple[int, ...]
    selected: np.ndarray
    params: Any
    seed: int

    @property
    def active(self) -> bool:
        return bool(self.selected.any())


@dataclass(frozen=True)
class GenesisDraw:
    """Everything :py:class:`RandGenesisCorruption` drew for a batch: the flips ``(B, spatial_dims)`` and one
    :py:class:`ItemDraw` per corruption over the ``B * C`` items."""

    flips: np.ndarray
    shuffle: ItemDraw
    nonlinear: ItemDraw
    inpaint: ItemDraw
    outpaint: ItemDraw


class _ItemCorruption(RandomizableTransform):
    """Base of the corruptions applied to each channel ("item") independently.

    Subclasses implement ``draw_params(R, n, spatial_shape, device)`` (parameters of ``n`` items, from ``R``) and
    ``apply_params(items, params, low, high, seed, backend, regions)`` (the computation over ``(n, *spatial)``).
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]
    min_size = 1
    min_size_reason = ""

    def __init__(
        self,
        prob: float,
        value_range: Sequence[float] | None = (0.0, 1.0),
        zscore: bool = False,
        spatial_dims: int | None = None,
    ) -> None:
        RandomizableTransform.__init__(self, _check_prob("prob", prob))
        self.value_range = _check_range(value_range, zscore)
        self.zscore = zscore
        self.spatial_dims = spatial_dims
        self.last_draw: ItemDraw | None = None

    def draw_params(self, R: np.random.RandomState, n: int, spatial_shape: tuple[int, ...], device) -> Any:
        raise NotImplementedError

    def apply_params(
        self, items: torch.Tensor, params: Any, low, high, seed: int, backend: TorchBackend, regions=None
    ) -> torch.Tensor:
        raise NotImplementedError

    def bounds(self, items: torch.Tensor) -> tuple:
        """The value range ``(low, high)``: the declared one, or per item the 0.1st–99.9th percentiles in z-score
        mode."""
        return percentile_range(items) if self.zscore else self.value_range

    def draw(self, R: np.random.RandomState, shape: Sequence[int], device: torch.device | str = "cpu") -> ItemDraw:
        """Draw from ``R`` the parameters of a batch of ``shape`` ``(B, C, *spatial)`` on ``device`` (one item per
        channel and sample); nothing of the transform changes."""
        shape = tuple(int(s) for s in shape)
        return self.draw_items(R, (shape[0] * shape[1], *shape[2:]), device)

    def apply(self, x: torch.Tensor, draw: ItemDraw) -> torch.Tensor:
        """Corrupt a batch ``(B, C, *spatial)`` (a plain tensor) with ``draw``; returns a view of ``x`` when the draw
        corrupts nothing."""
        return self.apply_items(x.reshape(-1, *x.shape[2:]), draw).reshape(x.shape)

    def draw_items(
        self,
        R: np.random.RandomState,
        shape: Sequence[int],
        device: torch.device | str = "cpu",
        selected: np.ndarray | None = None,
    ) -> ItemDraw:
        """Draw from ``R`` which items of ``shape`` ``(n, *spatial)`` to corrupt, their parameters and the seed of
        their noise, for items on ``device``; nothing of the transform changes.

        Args:
            R: the random state to draw from.
            shape: the items' shape ``(n, *spatial)``.
            device: where the items are (the shuffled blocks are drawn there).
            selected: which items to corrupt; None draws each with probability ``prob``.
        """
        shape = tuple(int(s) for s in shape)
        check_min_spatial_size(shape[1:], self.min_size, type(self).__name__, self.min_size_reason)
        chosen = R.rand(shape[0]) < self.prob if selected is None else np.asarray(selected, dtype=bool)
        params = self.draw_params(R, int(chosen.sum()), shape[1:], torch.device(device)) if chosen.any() else None
        return ItemDraw(shape, chosen, params, draw_seed(R))

    def randomize(self, data: torch.Tensor, selected: np.ndarray | None = None) -> ItemDraw:
        """Draw which items to corrupt, their parameters and the seed of their noise; returns and keeps the draw.

        Args:
            data: the items ``(n, *spatial)``; parameters are drawn for their shape, on their device.
            selected: which items to corrupt; None draws each with probability ``prob``.
        """
        self.last_draw = self.draw_items(self.R, data.shape, data.device, selected)
        self._do_transform = self.last_draw.active
        return self.last_draw

    def apply_items(
        self,
        items: torch.Tensor,
        draw: ItemDraw | None = None,
        backend: TorchBackend | None = None,
        regions: list | None = None,
    ) -> torch.Tensor:
        """Corrupt the items ``(n, *spatial)`` (a plain tensor) with ``draw`` (the last draw when None).

        Args:
            items: one image per channel and sample.
            draw: the draw of these items.
            backend: how to compute; None for :py:func:`monai_genesis.transforms.backend.backend_for` the items'
                device.
            regions: per item None or the box ``(start, stop)`` outside of which its values are not needed.
        """
        draw = self.last_draw if draw is None else draw
        name = type(self).__name__
        if draw is None:
            raise RuntimeError(f"{name}: call randomize() before applying with randomize=False.")
        if draw.shape != tuple(items.shape):
            raise ValueError(f"{name}: the draw was made for items of shape {draw.shape}, got {tuple(items.shape)}.")
        if not draw.active:
            return items
        backend = backend_for(items.device) if backend is None else backend
        if draw.selected.all():
            return self.apply_params(items, draw.params, *self.bounds(items), draw.seed, backend, regions)
        rows = np.flatnonzero(draw.selected)
        index = torch.as_tensor(rows, device=items.device)
        chosen = items.index_select(0, index)
        chosen_regions = None if regions is None else [regions[i] for i in rows]
        out = items.clone()
        out[index] = self.apply_params(chosen, draw.params, *self.bounds(chosen), draw.seed, backend, chosen_regions)
        return out

    def __call__(self, img: NdarrayOrTensor, randomize: bool = True) -> NdarrayOrTensor:
        """Corrupt each channel of ``img``; returns a new image of the same type and device."""
        name = type(self).__name__
        spatial_dims = check_channel_first(img, self.spatial_dims, name)
        img_t = convert_to_tensor(img, track_meta=False)
        if not img_t.is_floating_point():
            raise ValueError(f"{name}: expected a floating-point image, got dtype {img_t.dtype}; convert and scale it first.")
        if randomize:
            check_intensity(img_t, self.value_range, name)
            self.randomize(img_t.reshape(-1, *img_t.shape[-spatial_dims:]))
        out = self.apply(img_t.reshape(1, -1, *img_t.shape[-spatial_dims:]), self.last_draw)[0]
        out = img_t.clone() if out.data_ptr() == img_t.data_ptr() else out.reshape(img_t.shape)
        if isinstance(img, MetaTensor) and get_track_meta():
            return convert_to_dst_type(out, dst=img)[0]
        return convert_to_dst_type(out, dst=img, dtype=img_t.dtype)[0] if isinstance(img, np.ndarray) else out


class RandNonlinearIntensity(_ItemCorruption):
    """Map intensities through a random cubic Bézier curve, increasing or (with ``invert_prob``) decreasing.

    See :py:mod:`monai_genesis.transforms.nonlinear` for the curve.

    Args:
        prob: probability of corrupting each channel. Defaults to 0.9 (the paper's ``nonlinear_rate``).
        invert_prob: probability that the map is decreasing, an intensity inversion. Defaults to 0.5.
        value_range: the intensity range of the input and of the curve's end points. Defaults to ``(0, 1)``.
        zscore: use the 0.1st and 99.9th percentiles of each channel as end points (for z-scored input).
        spatial_dims: 2 or 3 to require that many spatial axes; None infers it from the image.
        num_points: samples of the curve. Defaults to 4096.
        lut_size: entries of the uniform table through which voxels are mapped. Defaults to 4097.
    """

    def __init__(
        self,
        prob: float = 0.9,
        invert_prob: float = 0.5,
        value_range: Sequence[float] | None = (0.0, 1.0),
        zscore: bool = False,
        spatial_dims: int | None = None,
        num_points: int = 4096,
        lut_size: int = 4097,
    ) -> None:
        super().__init__(prob, value_range, zscore, spatial_dims)
        self.invert_prob = _check_prob("invert_prob", invert_prob)
        if num_points < 2 or lut_size < 2:
            raise ValueError(f"num_points and lut_size must be at least 2, got {num_points} and {lut_size}.")
        self.num_points, self.lut_size = int(num_points), int(lut_size)

    def draw_params(self, R, n, spatial_shape, device):
        return draw_nonlinear(R, n, self.invert_prob)

    def apply_params(self, items, params, low, high, seed, backend, regions=None):
        lut = backend.curve_tables(params.control_points, params.increasing, self.num_points, self.lut_size)
        if not isinstance(low, torch.Tensor):
            if (low, high) == (0.0, 1.0):
                return backend.map_lut(items, lut, regions=regions)
            low, high = items.new_full((items.shape[0],), low), items.new_full((items.shape[0],), high)
        return backend.map_lut(items, lut, low, high, regions)


class RandLocalPixelShuffle(_ItemCorruption):
    """Shuffle the voxels inside many small random blocks, read from the unmodified input.

    See :py:mod:`monai_genesis.transforms.shuffle` for the algorithm.

    Args:
        prob: probability of corrupting each channel. Defaults to 0.5 (the paper's ``local_rate``).
        num_blocks: blocks per channel. Defaults to 10 000.
        block_fraction: the largest block side as a fraction of the image side. Defaults to 0.1.
        value_range: the declared intensity range, checked on input. Defaults to ``(0, 1)``.
        zscore: accept any finite intensities (for z-scored input).
        spatial_dims: 2 or 3 to require that many spatial axes; None infers it from the image.
    """

    def __init__(
        self,
        prob: float = 0.5,
        num_blocks: int = 10000,
        block_fraction: float = 0.1,
        value_range: Sequence[float] | None = (0.0, 1.0),
        zscore: bool = False,
        spatial_dims: int | None = None,
    ) -> None:
        super().__init__(prob, value_range, zscore, spatial_dims)
        if num_blocks < 1 or not 0.0 < block_fraction <= 1.0:
            raise ValueError(f"num_blocks must be >= 1 and block_fraction in (0, 1], got {num_blocks}, {block_fraction}.")
        self.num_blocks, self.block_fraction = int(num_blocks), float(block_fraction)

    def bounds(self, items):
        return None, None  # a permutation needs no value range

    def draw_params(self, R, n, spatial_shape, device):
        generator = torch_generator(R, device)
        return draw_blocks(generator, n, spatial_shape, self.num_blocks, self.block_fraction, device)

    def apply_params(self, items, params, low, high, seed, backend, regions=None):
        generator = torch.Generator(device=items.device).manual_seed(seed)
        return local_shuffle(items, params, generator, self.block_fraction, backend)


class _Paint(_ItemCorruption):
    """Base of in- and out-painting: boxes drawn by ``draw_boxes``, noise inside (or outside) them."""

    keep_inside = False

    def __init__(
        self,
        prob: float = 1.0,
        max_boxes: int = 5,
        continue_rate: float = 0.95,
        value_range: Sequence[float] | None = (0.0, 1.0),
        zscore: bool = False,
        spatial_dims: int | None = None,
    ) -> None:
        super().__init__(prob, value_range, zscore, spatial_dims)
        if max_boxes < 1:
            raise ValueError(f"max_boxes must be at least 1, got {max_boxes}.")
        self.max_boxes, self.continue_rate = int(max_boxes), _check_prob("continue_rate", continue_rate)

    def draw_params(self, R, n, spatial_shape, device):
        return self.draw_boxes(R, n, spatial_shape, self.max_boxes, self.continue_rate)

    def apply_params(self, items, params, low, high, seed, backend, regions=None):
        step = backend.outpaint if self.keep_inside else backend.inpaint
        return step(items, params.starts, params.stops, params.used, low, high, seed)


class RandInpaint(_Paint):
    """Fill up to 5 random boxes with uniform noise (3-voxel margin, each further box with probability 0.95).

    See :py:mod:`monai_genesis.transforms.painting`.

    Args:
        prob: probability of corrupting each channel. Defaults to 1.0; in the full pipeline it is
            ``paint_rate * inpaint_rate``.
        max_boxes: at most this many holes. Defaults to 5.
        continue_rate: probability of each further hole. Defaults to 0.95.
        value_range: the intensity range of the input and of the noise. Defaults to ``(0, 1)``.
        zscore: draw the noise between the 0.1st and 99.9th percentiles of each channel.
        spatial_dims: 2 or 3 to require that many spatial axes; None infers it from the image.
    """

    min_size = INPAINT_MIN_SIZE
    draw_boxes = staticmethod(draw_inpaint_boxes)
    min_size_reason = "in-painting keeps boxes of up to a third of a side 3 voxels from the border"


class RandOutpaint(_Paint):
    """Replace everything by uniform noise except one to 5 random boxes of the original (3-voxel margin).

    See :py:mod:`monai_genesis.transforms.painting`.

    Args:
        prob: probability of corrupting each channel. Defaults to 1.0; in the full pipeline it is
            ``paint_rate * (1 - inpaint_rate)``.
        max_boxes: at most this many kept boxes. Defaults to 5.
        continue_rate: probability of each further box. Defaults to 0.95.
        value_range: the intensity range of the input and of the noise. Defaults to ``(0, 1)``.
        zscore: draw the noise between the 0.1st and 99.9th percentiles of each channel.
        spatial_dims: 2 or 3 to require that many spatial axes; None infers it from the image.
    """

    keep_inside = True
    min_size = OUTPAINT_MIN_SIZE
    draw_boxes = staticmethod(draw_outpaint_boxes)
    min_size_reason = "out-painting keeps boxes of up to 4/7 of a side 3 voxels from the border"


class RandGenesisFlip(RandomizableTransform):
    """Flip along random spatial axes: up to ``max_flips`` flips, each further one with probability ``flip_rate``.

    Use :py:class:`monai_genesis.transforms.RandGenesisFlipd` to flip an image and its target alike.

    Args:
        flip_rate: probability of each further flip. Defaults to 0.4.
        max_flips: at most this many flips. Defaults to 3.
        spatial_dims: 2 or 3 to require that many spatial axes; None infers it from the image.
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(self, flip_rate: float = 0.4, max_flips: int = 3, spatial_dims: int | None = None) -> None:
        RandomizableTransform.__init__(self, 1.0)
        self.flip_rate = _check_prob("flip_rate", flip_rate)
        self.max_flips, self.spatial_dims = int(max_flips), spatial_dims
        self.flips: np.ndarray | None = None

    def randomize(self, data: Any = None, n: int = 1, spatial_dims: int = 3) -> np.ndarray:
        """Draw the flipped axes of ``n`` samples with ``spatial_dims`` spatial axes; returns and keeps them as a
        boolean array ``(n, spatial_dims)``."""
        self.flips = draw_flips(self.R, n, spatial_dims, self.flip_rate, self.max_flips)
        self._do_transform = bool(self.flips.any())
        return self.flips

    def draw(self, R: np.random.RandomState, shape: Sequence[int], device: torch.device | str = "cpu") -> np.ndarray:
        """Draw from ``R`` the flipped axes of a batch of ``shape`` ``(B, C, *spatial)``: boolean
        ``(B, spatial_dims)``; nothing of the transform changes."""
        return draw_flips(R, int(shape[0]), len(shape) - 2, self.flip_rate, self.max_flips)

    def apply(self, x: torch.Tensor, flips: np.ndarray) -> torch.Tensor:
        """Flip each sample of a batch ``(B, C, *spatial)`` along the axes of ``flips``; returns ``x`` itself when
        nothing is flipped."""
        if flips is None or flips.shape != (x.shape[0], x.ndim - 2):
            raise ValueError(f"{type(self).__name__}: no flips drawn for a batch of shape {tuple(x.shape)}.")
        return flip_items(x, flips) if flips.any() else x

    def __call__(self, img: NdarrayOrTensor, randomize: bool = True) -> NdarrayOrTensor:
        """Flip ``img``; returns a new image of the same type and device.

        A ``MetaTensor`` is flipped by ``monai.transforms.Flip``: its affine follows the flip and the flip is
        recorded in its ``applied_operations`` (so ``Invertd`` can undo it).
        """
        spatial_dims = check_channel_first(img, self.spatial_dims, type(self).__name__)
        if randomize:
            self.randomize(n=1, spatial_dims=spatial_dims)
        if self.flips is None or self.flips.shape != (1, spatial_dims):
            raise ValueError(f"{type(self).__name__}: no flips drawn for an image of shape {tuple(img.shape)}.")
        if isinstance(img, MetaTensor) and get_track_meta():
            axes = np.flatnonzero(self.flips[0]).tolist()
            return Flip(spatial_axis=axes)(img) if axes else img.clone()
        img_t = convert_to_tensor(img, track_meta=False)
        out = self.apply(img_t[None], self.flips)[0]
        out = img_t.clone() if out.data_ptr() == img_t.data_ptr() else out
        return convert_to_dst_type(out, dst=img)[0] if isinstance(img, np.ndarray) else out


class RandGenesisCorruption(RandomizableTransform):
    """The whole Models Genesis corruption: flip → local shuffle → non-linear intensity → in- or out-painting.

    Returns the restoration pair ``(corrupted, target)``, where ``target`` is the (flipped) clean image, as the
    original ``generate_pair``. Every channel gets its own draws of the four corruptions; flips apply to the whole
    sample. Overall rates: in-painting ``paint_rate * inpaint_rate`` (0.18), out-painting
    ``paint_rate * (1 - inpaint_rate)`` (0.72).

    As a pretext of :py:class:`monai_genesis.engines.PretextPrepareBatch`: ``draw(R, shape, device)`` draws a batch
    from ``R`` and ``training_pair(x, draw)`` gives ``(corrupted, target, {})``; the object itself does not change,
    so one corruption built by a config serves the per-sample transform (``RandGenesisCorruptiond(corruption=)``)
    and every prepare-batch.

    Args:
        flip_rate: probability of each further flip (up to 3). Defaults to 0.4.
        local_rate: probability of local pixel shuffling. Defaults to 0.5.
        nonlinear_rate: probability of the non-linear intensity map. Defaults to 0.9.
        paint_rate: probability of painting. Defaults to 0.9.
        inpaint_rate: share of in-painting within painting (the rest is out-painting). Defaults to 0.2.
        value_range: the intensity range of the input, of the curve and of the noise. Defaults to ``(0, 1)``.
        zscore: per-channel 0.1st–99.9th percentiles instead of ``value_range`` (for z-scored input).
        spatial_dims: 2 or 3 to require that many spatial axes; None infers it from the image.
        num_blocks: blocks of local shuffling per channel. Defaults to 10 000.
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(
        self,
        flip_rate: float = 0.4,
        local_rate: float = 0.5,
        nonlinear_rate: float = 0.9,
        paint_rate: float = 0.9,
        inpaint_rate: float = 0.2,
        value_range: Sequence[float] | None = (0.0, 1.0),
        zscore: bool = False,
        spatial_dims: int | None = None,
        num_blocks: int = 10000,
    ) -> None:
        RandomizableTransform.__init__(self, 1.0)
        self.paint_rate = _check_prob("paint_rate", paint_rate)
        self.inpaint_rate = _check_prob("inpaint_rate", inpaint_rate)
        self.value_range = _check_range(value_range, zscore)
        self.spatial_dims = spatial_dims
        common = {"value_range": value_range, "zscore": zscore}
        self.flip = RandGenesisFlip(flip_rate)
        self.shuffle = RandLocalPixelShuffle(prob=local_rate, num_blocks=num_blocks, **common)
        self.nonlinear = RandNonlinearIntensity(prob=nonlinear_rate, **common)
        self.inpaint = RandInpaint(**common)
        self.outpaint = RandOutpaint(**common)
        self._parts = (self.flip, self.shuffle, self.nonlinear, self.inpaint, self.outpaint)
        self.last_draw: GenesisDraw | None = None
        self.set_random_state(state=self.R)

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None):
        super().set_random_state(seed, state)
        for part in getattr(self, "_parts", ()):
            part.set_random_state(state=self.R)
        return self

    def draw(self, R: np.random.RandomState, shape: Sequence[int], device: torch.device | str = "cpu") -> GenesisDraw:
        """Draw from ``R`` every parameter of the corruption of a batch of ``shape`` ``(B, C, *spatial)`` on
        ``device``; nothing of the transform changes, so one corruption serves several users, each with its own
        random state (:py:class:`monai_genesis.engines.PretextPrepareBatch`)."""
        shape = tuple(int(s) for s in shape)
        name = type(self).__name__
        if len(shape) not in (4, 5) or (self.spatial_dims is not None and len(shape) != self.spatial_dims + 2):
            raise ValueError(f"{name}: expected a batch (B, C, H, W[, D]), got shape {shape}.")
        spatial = shape[2:]
        check_min_spatial_size(spatial, self.outpaint.min_size, name, self.outpaint.min_size_reason)
        # a zero-stride stand-in for the items: the draws need only their shape and device
        items = torch.zeros((), device=device).expand(shape[0] * shape[1], *spatial)
        flips = self.flip.draw(R, shape)
        n = items.shape[0]
        # painting does not depend on the image, so it is drawn first: the shuffle then skips the blocks that
        # out-painting covers with noise anyway, which leaves every kept voxel's distribution as it was
        painted = R.rand(n) < self.paint_rate
        inpainted = painted & (R.rand(n) < self.inpaint_rate)
        inpaint = self.inpaint.draw_items(R, items.shape, device, selected=inpainted)
        outpaint = self.outpaint.draw_items(R, items.shape, device, selected=painted & ~inpainted)
        shuffle = self._skip_erased_blocks(self.shuffle.draw_items(R, items.shape, device), outpaint)
        nonlinear = self.nonlinear.draw_items(R, items.shape, device)
        return GenesisDraw(flips, shuffle, nonlinear, inpaint, outpaint)

    def randomize(self, data: NdarrayOrTensor) -> GenesisDraw:
        """Draw every parameter of the corruption of one channel-first image ``data``; returns and keeps it."""
        check_channel_first(data, self.spatial_dims, type(self).__name__)
        device = data.device if isinstance(data, torch.Tensor) else "cpu"
        self.last_draw = self.draw(self.R, (1, *data.shape), device)
        return self.last_draw

    def apply(self, x: torch.Tensor, draw: GenesisDraw) -> tuple[torch.Tensor, torch.Tensor]:
        """Corrupt a batch ``(B, C, *spatial)`` (a plain tensor, any device) with ``draw``; returns
        ``(corrupted, target)``, target being the flipped clean batch."""
        target = self.flip.apply(x, draw.flips)
        return self._corrupt_flipped(target, draw), target

    def _corrupt_flipped(self, target: torch.Tensor, draw: GenesisDraw) -> torch.Tensor:
        """The corrupted batch of the flipped clean batch ``target``, the backend chosen once for all steps."""
        items = target.reshape(-1, *target.shape[2:])
        backend = backend_for(items.device)
        items = self.shuffle.apply_items(items, draw.shuffle, backend)
        items = self.nonlinear.apply_items(items, draw.nonlinear, backend, self._kept_regions(draw.outpaint))
        items = self.inpaint.apply_items(items, draw.inpaint, backend)
        items = self.outpaint.apply_items(items, draw.outpaint, backend)
        corrupted = items.reshape(target.shape)
        return corrupted.clone() if corrupted.data_ptr() == target.data_ptr() else corrupted

    def _kept_regions(self, outpaint: ItemDraw) -> list | None:
        """Per item, the bounding box of the boxes out-painting keeps (None for items it does not touch): the
        non-linear map is needed only there. None in z-score mode, where out-painting's noise range is read from
        the whole mapped item."""
        if not outpaint.active or self.value_range is None:
            return None
        regions = [None] * len(outpaint.selected)
        boxes = outpaint.params
        for j, i in enumerate(np.flatnonzero(outpaint.selected)):
            used = boxes.used[j]
            regions[i] = (boxes.starts[j][used].min(0), boxes.stops[j][used].max(0))
        return regions

    def training_pair(self, x: torch.Tensor, draw: GenesisDraw) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """The restoration pair of a batch ``(B, C, *spatial)`` for ``draw``: ``(corrupted, target, {})`` (no extra
        network argument), after checking the intensities; the pretext interface of
        :py:class:`monai_genesis.engines.PretextPrepareBatch`."""
        name = type(self).__name__
        if not x.is_floating_point():
            raise ValueError(f"{name}: expected a floating-point batch, got dtype {x.dtype}; convert and scale it first.")
        check_intensity(x, self.value_range, name)
        corrupted, target = self.apply(x, draw)
        return corrupted, target, {}

    def corrupt_batch(
        self, x: torch.Tensor, check: bool = True, randomize: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Corrupt a batch ``(B, C, *spatial)`` (plain tensor, any device) in one vectorised pass, drawing from
        ``self.R`` (the draw is kept in ``last_draw``).

        Args:
            x: the clean batch, intensities in ``value_range``.
            check: check the intensities (NaN/inf, range) first.
            randomize: False to apply the last draw again.

        Returns:
            ``(corrupted, target)``, target being the flipped clean batch.
        """
        name = type(self).__name__
        if not x.is_floating_point():
            raise ValueError(f"{name}: expected a floating-point batch, got dtype {x.dtype}; convert and scale it first.")
        if randomize:
            self.last_draw = self.draw(self.R, x.shape, x.device)
        elif self.last_draw is None:
            raise RuntimeError(f"{name}: call randomize() before applying with randomize=False.")
        if check:
            check_intensity(x, self.value_range, name)
        return self.apply(x, self.last_draw)

    def _skip_erased_blocks(self, shuffle: ItemDraw, outpaint: ItemDraw) -> ItemDraw:
        """Keep only the shuffled blocks of out-painted items that overlap one of their kept boxes."""
        shuffled, outpainted = shuffle.selected, outpaint.selected
        if not (shuffled & outpainted).any():
            return shuffle
        blocks, boxes = shuffle.params, outpaint.params
        starts, stops, used = boxes.starts, boxes.stops, boxes.used
        if not (shuffled == outpainted).all():
            # per shuffled item: its out-painting boxes, or one box over the whole image
            rows = np.flatnonzero(shuffled)
            erased = outpainted[rows]
            source = (np.cumsum(outpainted) - 1)[rows][erased]
            starts = np.zeros((len(rows), *boxes.starts.shape[1:]), dtype=np.int64)
            stops = np.full_like(starts, np.iinfo(np.int32).max)
            used = np.zeros(starts.shape[:2], dtype=bool)
            used[:, 0] = True
            starts[erased], stops[erased], used[erased] = boxes.starts[source], boxes.stops[source], boxes.used[source]
        as_tensor = functools.partial(torch.as_tensor, device=blocks.sizes.device)
        keep = blocks_touching(blocks, as_tensor(starts), as_tensor(stops), as_tensor(used))
        return replace(shuffle, params=blocks.select(keep))

    def __call__(self, img: NdarrayOrTensor, randomize: bool = True) -> tuple[NdarrayOrTensor, NdarrayOrTensor]:
        """Corrupt ``img``; returns ``(corrupted, target)`` of the input's type and device.

        ``randomize=False`` applies the last draw again. A ``MetaTensor``'s affine follows the flips (through
        ``monai.transforms.Flip``, which also records them) in both outputs.
        """
        name = type(self).__name__
        check_channel_first(img, self.spatial_dims, name)
        img_t = convert_to_tensor(img, track_meta=False)
        if not img_t.is_floating_point():
            raise ValueError(f"{name}: expected a floating-point image, got dtype {img_t.dtype}; convert and scale it first.")
        if randomize:
            self.randomize(img_t)
        elif self.last_draw is None or self.last_draw.flips.shape[0] != 1:
            raise RuntimeError(f"{name}: call randomize(img) before __call__(img, randomize=False).")
        check_intensity(img_t, self.value_range, name)
        if isinstance(img, MetaTensor) and get_track_meta():
            self.flip.flips = self.last_draw.flips
            target = self.flip(img, randomize=False)
            corrupted = self._corrupt_flipped(target.as_tensor()[None], self.last_draw)[0]
            return convert_to_dst_type(corrupted, dst=target)[0], target
        corrupted, target = (t[0] for t in self.apply(img_t[None], self.last_draw))
        target = img_t.clone() if target.data_ptr() == img_t.data_ptr() else target
        if isinstance(img, np.ndarray):
            return convert_to_dst_type(corrupted, dst=img)[0], convert_to_dst_type(target, dst=img)[0]
        return corrupted, target
