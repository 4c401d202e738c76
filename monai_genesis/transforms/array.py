"""Array transforms of the Models Genesis corruptions.

Every transform takes a channel-first image ``(C, H, W)`` or ``(C, H, W, D)`` (NumPy array, torch tensor on any
device, or ``MetaTensor``) and returns the same type on the same device; a ``MetaTensor`` keeps its meta data and
affine. Each channel is corrupted independently (its own decision and parameters). Small parameters are drawn from
``self.R``; bulk random numbers (noise, permutation keys) come from a torch generator on the image's device seeded
from ``self.R``, so ``set_random_state`` and ``monai.utils.set_determinism`` make runs repeatable. The input is
never modified.

The same methods corrupt a whole batch ``(B, C, *spatial)`` in one vectorised pass
(:py:meth:`RandGenesisCorruption.corrupt_batch`), which :py:class:`monai_genesis.engines.GenesisPrepareBatch` runs
on the training device.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from monai.config import NdarrayOrTensor
from monai.data import MetaTensor
from monai.transforms import RandomizableTransform
from monai.data.meta_obj import get_track_meta
from monai.utils import TransformBackends, convert_to_dst_type, convert_to_tensor

from .flip import draw_flips, flip_items
from .nonlinear import apply_lut, bezier_lut, draw_nonlinear, percentile_range
from .painting import INPAINT_MIN_SIZE, OUTPAINT_MIN_SIZE, draw_inpaint_boxes, draw_outpaint_boxes, paint
from .shuffle import blocks_touching, draw_blocks, local_shuffle
from .utils import check_channel_first, check_intensity, check_min_spatial_size, torch_generator

__all__ = [
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


class _ItemCorruption(RandomizableTransform):
    """Base of the corruptions applied to each channel ("item") independently, with a shared batched path.

    Subclasses implement ``draw(n, spatial_shape, device)`` (parameters of ``n`` items, from ``self.R``) and
    ``apply(items, params, low, high, generator)`` (a vectorised kernel over ``(n, *spatial)``).
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
        self._selected: np.ndarray | None = None
        self._params: Any = None
        self._shape: tuple[int, ...] | None = None

    def draw(self, n: int, spatial_shape: tuple[int, ...], device: torch.device) -> Any:
        raise NotImplementedError

    def apply(self, items: torch.Tensor, params: Any, low, high, generator: torch.Generator) -> torch.Tensor:
        raise NotImplementedError

    def bounds(self, items: torch.Tensor) -> tuple:
        """The value range ``(low, high)``: the declared one, or per item the 0.1st–99.9th percentiles in z-score
        mode."""
        return percentile_range(items) if self.zscore else self.value_range

    def randomize(self, data: torch.Tensor, selected: np.ndarray | None = None) -> None:
        """Draw which items to corrupt and their parameters.

        Args:
            data: the items ``(n, *spatial)``; parameters are drawn for their shape, on their device.
            selected: which items to corrupt; None draws each with probability ``prob``.
        """
        shape = tuple(data.shape)
        self._shape = shape
        self._selected = self.R.rand(shape[0]) < self.prob if selected is None else np.asarray(selected, dtype=bool)
        self._do_transform = bool(self._selected.any())
        self._params = None
        if self._do_transform:
            self._params = self.draw(int(self._selected.sum()), shape[1:], data.device)

    def corrupt_items(self, items: torch.Tensor, selected: np.ndarray | None = None, randomize: bool = True):
        """Corrupt the items ``(n, *spatial)`` (a plain tensor), each chosen with probability ``prob``.

        Args:
            items: the images, one per channel and sample.
            selected: which items to corrupt; None draws each with probability ``prob``.
            randomize: False to reuse the parameters of the last :py:meth:`randomize` call.
        """
        if randomize:
            check_min_spatial_size(items.shape[1:], self.min_size, type(self).__name__, self.min_size_reason)
            self.randomize(items, selected)
        elif self._shape != tuple(items.shape):
            raise ValueError(
                f"{type(self).__name__}: randomize() was called for items of shape {self._shape}, "
                f"got {tuple(items.shape)}."
            )
        if not self._do_transform:
            return items
        generator = torch_generator(self.R, items.device)
        if self._selected.all():
            return self.apply(items, self._params, *self.bounds(items), generator)
        index = torch.as_tensor(np.flatnonzero(self._selected), device=items.device)
        chosen = items.index_select(0, index)
        out = items.clone()
        out[index] = self.apply(chosen, self._params, *self.bounds(chosen), generator)
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
        items = img_t.reshape(-1, *img_t.shape[-spatial_dims:])
        out = self.corrupt_items(items, randomize=randomize)
        if out is items:
            out = img_t.clone()
        out = out.reshape(img_t.shape)
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

    def draw(self, n, spatial_shape, device):
        return draw_nonlinear(self.R, n, self.invert_prob)

    def apply(self, items, params, low, high, generator):
        lut = bezier_lut(params, items.device, self.num_points, self.lut_size)
        if isinstance(low, torch.Tensor):
            return apply_lut(items, lut, low, high)
        if (low, high) == (0.0, 1.0):
            return apply_lut(items, lut)
        n = items.shape[0]
        return apply_lut(items, lut, items.new_full((n,), low), items.new_full((n,), high))


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

    def draw(self, n, spatial_shape, device):
        generator = torch_generator(self.R, device)
        return draw_blocks(generator, n, spatial_shape, self.num_blocks, self.block_fraction, device)

    def apply(self, items, params, low, high, generator):
        return local_shuffle(items, params, generator, self.block_fraction)


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

    def draw(self, n, spatial_shape, device):
        return self.draw_boxes(self.R, n, spatial_shape, self.max_boxes, self.continue_rate)

    def apply(self, items, params, low, high, generator):
        return paint(items, params, self.keep_inside, low, high, generator)


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
        self._flips: np.ndarray | None = None

    def randomize(self, data: Any = None, n: int = 1, spatial_dims: int = 3) -> None:
        """Draw the flipped axes of ``n`` samples with ``spatial_dims`` spatial axes."""
        self._flips = draw_flips(self.R, n, spatial_dims, self.flip_rate, self.max_flips)
        self._do_transform = bool(self._flips.any())

    def flip_batch(self, x: torch.Tensor, randomize: bool = True) -> torch.Tensor:
        """Flip each sample of a batch ``(B, C, *spatial)``; returns ``x`` itself when nothing is flipped."""
        if randomize:
            self.randomize(n=x.shape[0], spatial_dims=x.ndim - 2)
        return flip_items(x, self._flips) if self._do_transform else x

    def __call__(self, img: NdarrayOrTensor, randomize: bool = True) -> NdarrayOrTensor:
        """Flip ``img``; returns a new image of the same type and device."""
        spatial_dims = check_channel_first(img, self.spatial_dims, type(self).__name__)
        img_t = convert_to_tensor(img, track_meta=False)
        if randomize:
            self.randomize(n=1, spatial_dims=spatial_dims)
        out = self.flip_batch(img_t[None], randomize=False)[0]
        out = img_t.clone() if out is img_t else out
        if isinstance(img, MetaTensor) and get_track_meta():
            return convert_to_dst_type(out, dst=img)[0]
        return convert_to_dst_type(out, dst=img)[0] if isinstance(img, np.ndarray) else out


class RandGenesisCorruption(RandomizableTransform):
    """The whole Models Genesis corruption: flip → local shuffle → non-linear intensity → in- or out-painting.

    Returns the restoration pair ``(corrupted, target)``, where ``target`` is the (flipped) clean image, as the
    original ``generate_pair``. Every channel gets its own draws of the four corruptions; flips apply to the whole
    sample. Overall rates: in-painting ``paint_rate * inpaint_rate`` (0.18), out-painting
    ``paint_rate * (1 - inpaint_rate)`` (0.72).

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
        self.set_random_state(state=self.R)

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None):
        super().set_random_state(seed, state)
        for part in getattr(self, "_parts", ()):
            part.set_random_state(state=self.R)
        return self

    def randomize(self, data: Any = None) -> None:
        """Nothing to draw up front: each step draws its parameters from the shared ``self.R`` as it runs."""

    def corrupt_batch(self, x: torch.Tensor, check: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """Corrupt a batch ``(B, C, *spatial)`` (plain tensor, any device) in one vectorised pass.

        Args:
            x: the clean batch, intensities in ``value_range``.
            check: check the intensities (NaN/inf, range) first.

        Returns:
            ``(corrupted, target)``, target being the flipped clean batch.
        """
        name = type(self).__name__
        if x.ndim not in (4, 5) or (self.spatial_dims is not None and x.ndim != self.spatial_dims + 2):
            raise ValueError(f"{name}: expected a batch (B, C, H, W[, D]), got shape {tuple(x.shape)}.")
        if not x.is_floating_point():
            raise ValueError(f"{name}: expected a floating-point batch, got dtype {x.dtype}; convert and scale it first.")
        spatial = tuple(x.shape[2:])
        check_min_spatial_size(spatial, self.outpaint.min_size, name, self.outpaint.min_size_reason)
        if check:
            check_intensity(x, self.value_range, name)
        target = self.flip.flip_batch(x)
        items = target.reshape(-1, *spatial)
        n = items.shape[0]
        # painting does not depend on the image, so it is drawn first: the shuffle then skips the blocks that
        # out-painting covers with noise anyway, which leaves every kept voxel's distribution as it was
        painted = self.R.rand(n) < self.paint_rate
        inpainted = painted & (self.R.rand(n) < self.inpaint_rate)
        self.inpaint.randomize(items, selected=inpainted)
        self.outpaint.randomize(items, selected=painted & ~inpainted)
        self.shuffle.randomize(items)
        self._skip_erased_blocks()
        items = self.shuffle.corrupt_items(items, randomize=False)
        items = self.nonlinear.corrupt_items(items)
        items = self.inpaint.corrupt_items(items, randomize=False)
        items = self.outpaint.corrupt_items(items, randomize=False)
        corrupted = items.reshape(x.shape)
        if corrupted.data_ptr() == target.data_ptr():
            corrupted = corrupted.clone()
        return corrupted, target

    def _skip_erased_blocks(self) -> None:
        """Keep only the shuffled blocks of out-painted items that overlap one of their kept boxes."""
        shuffled, outpainted = self.shuffle._selected, self.outpaint._selected
        if not (shuffled & outpainted).any():
            return
        blocks, boxes = self.shuffle._params, self.outpaint._params
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
        self.shuffle._params = blocks.select(keep)

    def __call__(self, img: NdarrayOrTensor) -> tuple[NdarrayOrTensor, NdarrayOrTensor]:
        """Corrupt ``img``; returns ``(corrupted, target)`` of the input's type and device."""
        name = type(self).__name__
        check_channel_first(img, self.spatial_dims, name)
        img_t = convert_to_tensor(img, track_meta=False)
        corrupted, target = self.corrupt_batch(img_t[None])
        corrupted, target = corrupted[0], target[0]
        target = img_t.clone() if target.data_ptr() == img_t.data_ptr() else target
        if isinstance(img, MetaTensor) and get_track_meta():
            return convert_to_dst_type(corrupted, dst=img)[0], convert_to_dst_type(target, dst=img)[0]
        if isinstance(img, np.ndarray):
            return convert_to_dst_type(corrupted, dst=img)[0], convert_to_dst_type(target, dst=img)[0]
        return corrupted, target
