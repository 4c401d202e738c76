"""Random block masking for masked image modelling of 3D CNNs (Wald et al., CVPR 2025).

The spatial input is cut into a regular grid of cubic blocks of ``block_size`` voxels per side (16 by default, so a
160³ patch is a 10×10×10 grid). Exactly ``round(mask_ratio × number of blocks)`` blocks (0.75 by default), drawn
without replacement, are masked, and the block mask is repeated up to voxel size. Masked voxels are set to ``fill``
(0, the mean of z-scored input), ``masked = where(mask, fill, image)``; the network then learns to restore them.

One kernel serves the per-sample transforms and the batch path of :py:class:`monai_genesis.engines.PretextPrepareBatch`:
:py:func:`draw_block_masks` draws the block masks of ``n`` items in one vectorised pass on the generator's device,
:py:func:`render_block_masks` repeats them up to voxel size, :py:func:`apply_block_masks` fills the masked voxels.
The voxel mask uses 1 for masked, 0 for visible voxels.

The loss :py:class:`monai_genesis.losses.MaskedMSELoss` needs the mask: it reads it from the last channel of the
target, ``cat([clean, mask])``. :py:class:`RandBlockMaskd` writes that target with ``mask_in_target=True`` (or
concatenate ``target_keys`` and ``mask_key`` with ``ConcatItemsd``);
:py:meth:`RandBlockMask.training_pair` (the batch path) always does.
"""

from __future__ import annotations

import warnings
from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import torch

from monai.config import KeysCollection, NdarrayOrTensor
from monai.data import MetaTensor
from monai.data.meta_obj import get_track_meta
from monai.transforms import MapTransform, RandomizableTransform
from monai.utils import TransformBackends, convert_to_dst_type, convert_to_tensor, ensure_tuple

from .utils import check_channel_first, torch_generator

__all__ = [
    "num_masked_blocks",
    "draw_block_masks",
    "render_block_masks",
    "apply_block_masks",
    "RandBlockMask",
    "RandBlockMaskd",
    "RandBlockMaskD",
    "RandBlockMaskDict",
]


def num_masked_blocks(num_blocks: int, mask_ratio: float) -> int:
    """The number of masked blocks, ``round(mask_ratio * num_blocks)`` (Python's rounding, half to even)."""
    return int(round(mask_ratio * num_blocks))


def draw_block_masks(
    generator: torch.Generator, n: int, grid_shape: Sequence[int], mask_ratio: float
) -> torch.Tensor:
    """Draw the block masks of ``n`` items: boolean ``(n, *grid_shape)``, exactly ``round(mask_ratio * blocks)`` True.

    Args:
        generator: draws the masks; they are made on its device.
        n: number of items.
        grid_shape: blocks per spatial axis.
        mask_ratio: fraction of the blocks to mask.
    """
    num_blocks = int(np.prod(grid_shape))
    k = num_masked_blocks(num_blocks, mask_ratio)
    device = generator.device
    # the k smallest of n uniform keys are k blocks drawn without replacement, for every item at once
    keys = torch.rand(n, num_blocks, generator=generator, device=device)
    chosen = keys.argsort(dim=1)[:, :k]
    masks = torch.zeros(n, num_blocks, dtype=torch.bool, device=device).scatter_(1, chosen, True)
    return masks.reshape(n, *grid_shape)


def render_block_masks(block_masks: torch.Tensor, block_size: Sequence[int]) -> torch.Tensor:
    """Repeat block masks ``(n, *grid)`` up to voxel size: ``(n, *(grid * block_size))``, same dtype and device.

    Args:
        block_masks: one mask per item, one entry per block.
        block_size: voxels per block along each spatial axis.
    """
    n, grid = block_masks.shape[0], block_masks.shape[1:]
    # interleave a singleton axis after every grid axis, expand it to the block side, then merge the pairs
    view = block_masks.reshape(n, *(s for g in grid for s in (g, 1)))
    expanded = view.expand(n, *(s for g, b in zip(grid, block_size) for s in (g, b)))
    return expanded.reshape(n, *(g * b for g, b in zip(grid, block_size)))


def apply_block_masks(x: torch.Tensor, voxel_masks: torch.Tensor, fill: float = 0.0) -> torch.Tensor:
    """Set the masked voxels of ``x`` (``(n, C, *spatial)``) to ``fill``; one mask per item for all its channels.

    Args:
        x: the items; not modified.
        voxel_masks: boolean ``(n, *spatial)``, True where masked.
        fill: the value of masked voxels.
    """
    return torch.where(voxel_masks[:, None], torch.as_tensor(fill, dtype=x.dtype, device=x.device), x)


_DEGENERATE_RATIO = {
    0.0: "RandBlockMask: mask_ratio=0 masks no block, so MaskedMSELoss is 0 on every batch and a network trained "
    "with it learns nothing; mae_pretrain: pass --mask_ratio in (0, 1), e.g. 0.75 as in the paper.",
    1.0: "RandBlockMask: mask_ratio=1 masks every block, so every input is all fill values and a network can only "
    "learn the mean image; mae_pretrain: pass --mask_ratio in (0, 1), e.g. 0.75 as in the paper.",
}


def _check_block_size(block_size: int | Sequence[int]) -> tuple[int, ...]:
    sizes = ensure_tuple(block_size)
    if len(sizes) not in (1, 2, 3) or not all(isinstance(s, (int, np.integer)) and s >= 1 for s in sizes):
        raise ValueError(
            f"block_size must be a positive int or one positive int per spatial axis (2 or 3), got {block_size!r}."
        )
    return tuple(int(s) for s in sizes)


class RandBlockMask(RandomizableTransform):
    """Mask a random ``mask_ratio`` of the cubic blocks of a regular grid, the same blocks in every channel.

    See :py:mod:`monai_genesis.transforms.masking`. ``randomize(spatial_shape)`` draws the block mask from
    ``self.R``; ``__call__(img, randomize=False)`` applies the last draw. :py:meth:`voxel_mask` gives the mask of
    the last draw; :py:meth:`mask_batch` masks a batch on its device, one draw per sample. Every spatial side must
    be a multiple of the block size. As a pretext of :py:class:`monai_genesis.engines.PretextPrepareBatch`,
    :py:meth:`draw` draws the block masks of a batch from a given random state and :py:meth:`training_pair` gives
    ``(masked, cat([clean, mask]), {"mask": mask})``.

    ``mask_ratio`` 0 masks nothing (:py:class:`monai_genesis.losses.MaskedMSELoss` is then 0 and a network
    learns nothing) and 1 masks everything (the inputs are all ``fill``): both are allowed, as a transform may
    be used to show a picture, but warned about when the transform is made.

    Args:
        block_size: voxels per block side, an int or one per spatial axis. Defaults to 16.
        mask_ratio: fraction of the blocks that are masked, in ``[0, 1]``. Defaults to 0.75.
        fill: the value of masked voxels. Defaults to 0 (the mean of z-scored input).
        spatial_dims: 2 or 3 to require that many spatial axes; None infers it from the image.
        spatial_size: the spatial size of the images it will mask, when it is known (a bundle's patch size):
            checked against ``block_size`` when the transform is made rather than at the first image.
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(
        self,
        block_size: int | Sequence[int] = 16,
        mask_ratio: float = 0.75,
        fill: float = 0.0,
        spatial_dims: int | None = None,
        spatial_size: Sequence[int] | None = None,
    ) -> None:
        RandomizableTransform.__init__(self, 1.0)
        self.block_size = _check_block_size(block_size)
        if not 0.0 <= mask_ratio <= 1.0:
            raise ValueError(f"mask_ratio must be a fraction in [0, 1], got {mask_ratio} (mae_pretrain: --mask_ratio).")
        if mask_ratio in (0.0, 1.0):
            warnings.warn(_DEGENERATE_RATIO[float(mask_ratio)], stacklevel=2)
        if not np.isfinite(fill):
            raise ValueError(f"fill must be a finite number, got {fill}.")
        if spatial_dims not in (None, 2, 3):
            raise ValueError(f"spatial_dims must be 2, 3 or None, got {spatial_dims}.")
        if spatial_dims is not None and len(self.block_size) not in (1, spatial_dims):
            raise ValueError(f"block_size {block_size!r} does not match spatial_dims={spatial_dims}.")
        self.mask_ratio, self.fill, self.spatial_dims = float(mask_ratio), float(fill), spatial_dims
        self._block_mask: torch.Tensor | None = None
        if spatial_size is not None:
            self.grid_shape(ensure_tuple(spatial_size))

    def _sizes(self, ndim: int) -> tuple[int, ...]:
        return self.block_size * ndim if len(self.block_size) == 1 else self.block_size

    def grid_shape(self, spatial_shape: Sequence[int]) -> tuple[int, ...]:
        """Blocks per axis of an image of ``spatial_shape``; a ``ValueError`` when a side is not a multiple."""
        spatial_shape = tuple(int(s) for s in spatial_shape)
        sizes = self._sizes(len(spatial_shape))
        if len(sizes) != len(spatial_shape):
            raise ValueError(
                f"{type(self).__name__}: block_size {self.block_size} has {len(sizes)} sides but the image has "
                f"{len(spatial_shape)} spatial axes {spatial_shape}."
            )
        if any(s % b for s, b in zip(spatial_shape, sizes)):
            multiple = tuple(-(-s // b) * b for s, b in zip(spatial_shape, sizes))
            divisor = tuple(int(np.gcd.reduce([s] + list(sizes[a : a + 1]))) for a, s in enumerate(spatial_shape))
            raise ValueError(
                f"{type(self).__name__}: spatial size {spatial_shape} is not a multiple of block_size {sizes}. "
                f"In the mae_pretrain bundle set the patch size to a multiple of the block size, "
                f"e.g. --patch_size \"{list(multiple)}\", or a block size that divides it, e.g. --mask_block_size "
                f"\"{list(divisor)}\" (the patch is cut to --patch_size and masked in blocks of --mask_block_size); "
                f"in your own pipeline crop or pad the images to a multiple "
                f"(`DivisiblePadd(keys='image', k={list(sizes)})`)."
            )
        return tuple(s // b for s, b in zip(spatial_shape, sizes))

    def draw(self, R: np.random.RandomState, shape: Sequence[int], device: torch.device | str = "cpu") -> torch.Tensor:
        """Draw from ``R`` the block masks of a batch of ``shape`` ``(B, C, *spatial)`` on ``device``: boolean
        ``(B, *grid)``; nothing of the transform changes."""
        shape = tuple(int(s) for s in shape)
        if len(shape) not in (4, 5) or (self.spatial_dims is not None and len(shape) != self.spatial_dims + 2):
            raise ValueError(f"{type(self).__name__}: expected a batch (B, C, H, W[, D]), got shape {shape}.")
        grid = self.grid_shape(shape[2:])
        return draw_block_masks(torch_generator(R, torch.device(device)), shape[0], grid, self.mask_ratio)

    def apply(self, x: torch.Tensor, block_masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mask a batch ``(B, C, *spatial)`` with its drawn ``block_masks`` ``(B, *grid)``.

        Returns:
            ``(masked, mask)``: the masked batch and the float mask ``(B, 1, *spatial)``, 1 where masked.
        """
        voxel_masks = render_block_masks(block_masks, self._sizes(block_masks.ndim - 1))
        if tuple(voxel_masks.shape[1:]) != tuple(x.shape[2:]):
            raise ValueError(
                f"{type(self).__name__}: block masks drawn for spatial size {tuple(voxel_masks.shape[1:])}, "
                f"got a batch of shape {tuple(x.shape)}."
            )
        dtype = x.dtype if x.is_floating_point() else torch.float32
        return apply_block_masks(x, voxel_masks, self.fill), voxel_masks[:, None].to(dtype)

    def training_pair(self, x: torch.Tensor, block_masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """``(masked, cat([clean, mask]), {"mask": mask})`` of a batch: the input, the target
        :py:class:`monai_genesis.losses.MaskedMSELoss` reads and the mask for a sparse network; the pretext interface
        of :py:class:`monai_genesis.engines.PretextPrepareBatch`."""
        masked, mask = self.apply(x, block_masks)
        return masked, torch.cat([x, mask.to(x.dtype)], dim=1), {"mask": mask}

    def randomize(self, spatial_shape: Sequence[int]) -> None:
        """Draw the block mask of an image of ``spatial_shape`` (sides multiples of the block size)."""
        self._block_mask = self.draw(self.R, (1, 1, *spatial_shape))[0]

    def voxel_mask(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """The voxel mask of the last draw, boolean ``(*spatial)``, True where masked."""
        if self._block_mask is None:
            raise RuntimeError(f"{type(self).__name__}: call randomize() first.")
        block_mask = self._block_mask.to(device)
        return render_block_masks(block_mask[None], self._sizes(block_mask.ndim))[0]

    def mask_batch(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mask each sample of a batch ``(B, C, *spatial)`` (plain tensor, any device) with its own draw.

        Returns:
            ``(masked, mask)``: the masked batch and the float mask ``(B, 1, *spatial)``, 1 where masked.
        """
        return self.apply(x, self.draw(self.R, x.shape, x.device))

    def __call__(self, img: NdarrayOrTensor, randomize: bool = True) -> NdarrayOrTensor:
        """Mask ``img`` (channel-first); returns a new image of the same type and device."""
        check_channel_first(img, self.spatial_dims, type(self).__name__)
        img_t = convert_to_tensor(img, track_meta=get_track_meta())
        spatial = tuple(img_t.shape[1:])
        if randomize:
            self.randomize(spatial)
        elif self._block_mask is None or self.grid_shape(spatial) != tuple(self._block_mask.shape):
            drawn = None if self._block_mask is None else tuple(self._block_mask.shape)
            raise ValueError(
                f"{type(self).__name__}: randomize() drew a block grid {drawn}, which does not fit the image of "
                f"spatial size {spatial}; call randomize(spatial_shape) for this size."
            )
        plain = img_t.as_tensor() if isinstance(img_t, MetaTensor) else img_t
        # a batch of one
        out = self.apply(plain[None], self._block_mask[None].to(plain.device))[0][0]
        return convert_to_dst_type(out, dst=img_t if isinstance(img, MetaTensor) else img)[0]


class RandBlockMaskd(RandomizableTransform, MapTransform):
    """Dictionary-based :py:class:`RandBlockMask`: one draw per call, applied to every key.

    For each key, the clean image is copied to its target key (``"label"`` by default, so ``SupervisedTrainer``
    trains restoration); the voxel mask (float ``(1, *spatial)``, 1 where masked, the image's type and meta) is
    written to ``mask_key``. With ``mask_in_target=True`` the target is ``cat([clean, mask])`` along the channels,
    the form :py:class:`monai_genesis.losses.MaskedMSELoss` reads; the same is
    ``ConcatItemsd(keys=["label", "mask"], name="label")`` after this transform. Keys must share their spatial shape.

    Args:
        keys: keys of the images to mask. Defaults to ``"image"``.
        target_keys: where to put the clean images, one per key; None to write none. Defaults to ``"label"``.
        mask_key: where to put the voxel mask; None to write none. Defaults to ``"mask"``.
        mask_in_target: append the mask as the last channel of each target. Defaults to False.
        block_size: voxels per block side, an int or one per spatial axis. Defaults to 16.
        mask_ratio: fraction of the blocks that are masked. Defaults to 0.75.
        fill: the value of masked voxels. Defaults to 0.
        spatial_dims: 2 or 3 to require that many spatial axes; None infers it from the image.
        allow_missing_keys: don't raise an error when a key is missing.
        masking: a :py:class:`RandBlockMask` built elsewhere (a config's one ``masking`` node, also given to
            :py:class:`monai_genesis.engines.PretextPrepareBatch`); it replaces ``block_size``, ``mask_ratio``,
            ``fill`` and ``spatial_dims``.
    """

    backend = RandBlockMask.backend

    def __init__(
        self,
        keys: KeysCollection = "image",
        target_keys: KeysCollection | None = "label",
        mask_key: Hashable | None = "mask",
        mask_in_target: bool = False,
        block_size: int | Sequence[int] = 16,
        mask_ratio: float = 0.75,
        fill: float = 0.0,
        spatial_dims: int | None = None,
        allow_missing_keys: bool = False,
        masking: RandBlockMask | None = None,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, 1.0)
        self.target_keys = () if target_keys is None else ensure_tuple(target_keys)
        if self.target_keys and len(self.target_keys) != len(self.keys):
            raise ValueError(f"give one target key per key, got keys {self.keys} and target_keys {self.target_keys}.")
        if set(self.target_keys) & set(self.keys) or mask_key in set(self.keys) | set(self.target_keys):
            raise ValueError(
                f"keys {self.keys}, target_keys {self.target_keys} and mask_key {mask_key!r} must all differ."
            )
        if mask_in_target and not self.target_keys:
            raise ValueError("mask_in_target=True needs target_keys to append the mask to.")
        self.mask_key, self.mask_in_target = mask_key, mask_in_target
        self.masker = RandBlockMask(block_size, mask_ratio, fill, spatial_dims) if masking is None else masking

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None):
        super().set_random_state(seed, state)
        self.masker.set_random_state(seed, state)
        return self

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        name = type(self).__name__
        missing = [k for k in self.keys if k not in d]
        if missing and not self.allow_missing_keys:
            raise KeyError(
                f"{name}: key(s) {missing} not found in the data, which has keys {list(d)}; "
                "fix `keys=` or pass `allow_missing_keys=True`."
            )
        pairs = [(k, t) for k, t in zip(self.keys, self.target_keys or (None,) * len(self.keys)) if k in d]
        if not pairs:
            return d
        for key, _ in pairs:
            check_channel_first(d[key], self.masker.spatial_dims, name)
        spatial = {k: tuple(d[k].shape[1:]) for k, _ in pairs}
        if len(set(spatial.values())) > 1:
            raise ValueError(f"{name}: the keys share one mask and must share their spatial shape, got {spatial}.")
        first = convert_to_tensor(d[pairs[0][0]], track_meta=get_track_meta())
        self.masker.randomize(first.shape[1:])
        plain = first.as_tensor() if isinstance(first, MetaTensor) else first
        dtype = plain.dtype if plain.is_floating_point() else torch.float32
        mask_t = self.masker.voxel_mask(plain.device)[None].to(dtype)
        dst = first if isinstance(d[pairs[0][0]], MetaTensor) else d[pairs[0][0]]
        mask = convert_to_dst_type(mask_t, dst=dst, dtype=mask_t.dtype)[0]
        for key, target_key in pairs:
            clean = d[key]
            d[key] = self.masker(clean, randomize=False)
            if target_key is not None:
                d[target_key] = self._target(clean, mask)
        if self.mask_key is not None:
            d[self.mask_key] = mask
        return d

    def _target(self, clean: NdarrayOrTensor, mask: NdarrayOrTensor) -> NdarrayOrTensor:
        """A copy of the clean image, with the mask as its last channel when ``mask_in_target``."""
        if isinstance(clean, np.ndarray):
            return np.concatenate([clean, mask.astype(clean.dtype)]) if self.mask_in_target else clean.copy()
        if not self.mask_in_target:
            return clean.clone()
        return torch.cat([clean, convert_to_tensor(mask, track_meta=False).to(device=clean.device, dtype=clean.dtype)])


RandBlockMaskD = RandBlockMaskDict = RandBlockMaskd
