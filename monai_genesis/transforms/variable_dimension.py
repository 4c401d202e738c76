"""The variable dimension transform of CSPR: a 2D photo read as a one-channel volume whose slices are its colours.

An RGB photo ``(3, H, W)`` (or ``(H, W, 3)`` as loaded) becomes a float32 volume ``(1, 3, H, W)``, normalised with
one mean and standard deviation for all colours (114.495 and 57.63 on the 0–255 scale); ``k`` channels give depth
``k``. :py:class:`RandChannelShuffle` permutes the colour order, which CSPR does for every image so that the
network does not learn a fixed slice order. Both take NumPy arrays, torch tensors and ``MetaTensor`` and return the
same kind; the input is never modified.
"""

from __future__ import annotations

import copy
from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import torch

from monai.config import KeysCollection, NdarrayOrTensor
from monai.data import MetaTensor
from monai.data.meta_obj import get_track_meta
from monai.data.utils import to_affine_nd
from monai.transforms import MapTransform, RandomizableTransform, Transform
from monai.utils import TransformBackends, convert_to_dst_type, convert_to_tensor

__all__ = [
    "CSPR_MEAN",
    "CSPR_STD",
    "VariableDimension",
    "RandChannelShuffle",
    "VariableDimensiond",
    "VariableDimensionD",
    "VariableDimensionDict",
    "RandChannelShuffled",
    "RandChannelShuffleD",
    "RandChannelShuffleDict",
]

# one mean and standard deviation for all colours, on the 0-255 scale (CSPR, from the ImageNet RGB statistics)
CSPR_MEAN = 114.495
CSPR_STD = 57.63

# channel counts recognised without channel_dim: grey and RGB
_COLOUR_SIZES = (1, 3)


def _check_channel_dim(channel_dim: int | None) -> int | None:
    if channel_dim not in (None, 0, -1):
        raise ValueError(
            f"channel_dim must be 0 (channel-first (k, H, W)), -1 (channel-last (H, W, k)) or None (detect), "
            f"got {channel_dim!r}."
        )
    return channel_dim


def colour_axis(shape: Sequence[int], channel_dim: int | None, name: str) -> int:
    """Return the axis (0 or 2) that holds the colours of a photo of shape ``(k, H, W)`` or ``(H, W, k)``.

    Args:
        shape: the shape of the photo, three axes.
        channel_dim: 0 or -1 to name the axis; None to detect it when exactly one of the first and last axes has
            1 or 3 entries (grey or RGB).
        name: the transform's name, used in error messages.
    """
    shape = tuple(int(s) for s in shape)
    first, last = shape[0] in _COLOUR_SIZES, shape[-1] in _COLOUR_SIZES
    if channel_dim is None:
        if first != last:
            return 0 if first else 2
        raise ValueError(
            f"{name}: cannot tell the colour axis of the image of shape {shape}; pass channel_dim=0 for a "
            "channel-first (k, H, W) photo or channel_dim=-1 for a channel-last (H, W, k) one."
        )
    axis = 0 if channel_dim == 0 else 2
    if shape[axis] not in _COLOUR_SIZES and shape[2 - axis] in _COLOUR_SIZES:
        other = -1 if axis == 0 else 0
        raise ValueError(
            f"{name}: channel_dim={channel_dim} reads the image of shape {shape} as {shape[axis]} colours, but it "
            f"looks {'channel-last' if other == -1 else 'channel-first'}; pass channel_dim={other}."
        )
    return axis


def _grey_error(name: str, shape: tuple) -> ValueError:
    return ValueError(
        f"{name}: the image of shape {shape} is grey (one channel); pass repeat_grey=True to repeat it to 3 "
        "channels, or repeat it first, e.g. with `EnsureChannelFirst()` then `RepeatChannel(repeats=3)`."
    )


def _volume_affine(affine: torch.Tensor) -> torch.Tensor:
    """The affine of the volume ``(k, H, W)`` made from a photo with spatial affine ``affine``.

    The colours take the photo's unused third spatial axis (unit spacing), moved in front of ``H`` and ``W``.
    """
    affine_3d = to_affine_nd(3, affine)
    return affine_3d[:, [2, 0, 1, 3]]


class VariableDimension(Transform):
    """Turn a 2D photo of ``k`` channels into a normalised one-channel volume ``(1, k, H, W)`` of float32.

    The colours become ``k`` neighbouring slices along the first spatial axis (the depth), and every value is
    normalised as ``(x - mean) / std`` with one mean and standard deviation for all colours. A ``MetaTensor``
    keeps its meta data; its affine gains the depth axis with unit spacing.

    Args:
        channel_dim: the axis of the colours: 0 for ``(k, H, W)``, -1 for ``(H, W, k)`` (as PIL, NumPy image files
            and MONAI's ``LoadImage`` give them), None (default) to detect it when exactly one of the first and
            last axes has 1 or 3 entries. Other channel counts need ``channel_dim``.
        mean: the mean subtracted, on the scale of the input. Defaults to 114.495 (the 0–255 scale).
        std: the standard deviation divided by, on the scale of the input. Defaults to 57.63 (the 0–255 scale);
            for photos in [0, 1] pass ``mean=114.495 / 255, std=57.63 / 255``.
        repeat_grey: repeat a grey image (``(H, W)`` or one channel) to 3 channels; False (default) raises a
            ``ValueError`` for it.
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(
        self,
        channel_dim: int | None = None,
        mean: float = CSPR_MEAN,
        std: float = CSPR_STD,
        repeat_grey: bool = False,
    ) -> None:
        self.channel_dim = _check_channel_dim(channel_dim)
        if not np.isfinite(mean):
            raise ValueError(f"mean must be a finite number, got {mean}.")
        if not (np.isfinite(std) and std > 0):
            raise ValueError(f"std must be a positive number, got {std}.")
        self.mean, self.std = float(mean), float(std)
        self.repeat_grey = bool(repeat_grey)

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        """Return the volume ``(1, k, H, W)`` of ``img``, of the same kind (NumPy, tensor or ``MetaTensor``)."""
        name = type(self).__name__
        shape = tuple(img.shape)
        img_t = convert_to_tensor(img, track_meta=False)
        if img_t.ndim == 2:
            colours = img_t[None]
        elif img_t.ndim == 3:
            colours = torch.movedim(img_t, colour_axis(shape, self.channel_dim, name), 0)
        else:
            raise ValueError(
                f"{name}: expected a 2D photo (k, H, W), (H, W, k) or a grey (H, W) image, got shape {shape}."
            )
        if colours.shape[0] == 1:
            if not self.repeat_grey:
                raise _grey_error(name, shape)
            colours = colours.expand(3, -1, -1)
        volume = ((colours.to(torch.float32) - self.mean) / self.std)[None].contiguous()
        if isinstance(img, MetaTensor) and get_track_meta():
            meta = copy.deepcopy(dict(img.meta))
            meta.pop("affine", None)
            meta["spatial_shape"] = np.asarray(volume.shape[1:])
            meta["original_channel_dim"] = 0
            return MetaTensor(
                volume,
                affine=_volume_affine(img.affine),
                meta=meta,
                applied_operations=copy.deepcopy(img.applied_operations),
            )
        if isinstance(img, np.ndarray):
            return volume.numpy()
        return volume


def _shuffle_axis(shape: tuple, channel_dim: int | None, name: str) -> int:
    """The axis holding the colours: of a volume ``(1, k, H, W)``, or of a photo ``(k, H, W)`` / ``(H, W, k)``."""
    if channel_dim is not None:
        if not -len(shape) <= channel_dim < len(shape):
            raise ValueError(f"{name}: channel_dim={channel_dim} is out of range for an image of shape {shape}.")
        return channel_dim % len(shape)
    if len(shape) == 4 and shape[0] == 1:
        return 1
    if len(shape) == 3:
        return colour_axis(shape, None, name)
    raise ValueError(
        f"{name}: cannot tell the colour axis of the image of shape {shape}; expected a volume (1, k, H, W) or a "
        "photo (k, H, W) / (H, W, k), or pass channel_dim (1 for the volume, 0 or -1 for a photo)."
    )


class RandChannelShuffle(RandomizableTransform):
    """Permute the colour channels of a photo or of its variable dimension volume in a random order.

    Every one of the ``k!`` orders, the original one included, is equally likely. The permutation is drawn from
    ``self.R`` by :py:meth:`randomize`, so ``set_random_state`` makes it reproducible; :py:attr:`permutation`
    holds the last one applied (the new channel ``i`` is the old channel ``permutation[i]``).

    Args:
        prob: probability of permuting. Defaults to 1.0 (CSPR permutes every image).
        channel_dim: the axis of the colours; None (default) takes axis 1 of a volume ``(1, k, H, W)`` made by
            :py:class:`VariableDimension`, or detects it in a photo ``(k, H, W)`` or ``(H, W, k)`` with 1 or 3
            colours, as :py:class:`VariableDimension` does.
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(self, prob: float = 1.0, channel_dim: int | None = None) -> None:
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f"prob must be a probability in [0, 1], got {prob}.")
        RandomizableTransform.__init__(self, prob)
        self.channel_dim = channel_dim
        self._num_channels: int | None = None
        self._permutation: np.ndarray | None = None

    @property
    def permutation(self) -> np.ndarray | None:
        """The last permutation drawn to be applied, or None when the last draw applies none."""
        return self._permutation if self._do_transform else None

    def randomize(self, num_channels: int) -> None:
        """Draw whether to permute and, if so, a permutation of ``num_channels`` channels.

        Args:
            num_channels: the number of colours ``k``.
        """
        super().randomize(None)
        self._num_channels = int(num_channels)
        self._permutation = self.R.permutation(self._num_channels) if self._do_transform else None

    def __call__(self, img: NdarrayOrTensor, randomize: bool = True) -> NdarrayOrTensor:
        """Return ``img`` with its colours permuted, as a new image of the same kind.

        Args:
            img: a volume ``(1, k, H, W)`` or a photo (see ``channel_dim``).
            randomize: False to apply the permutation of the last :py:meth:`randomize` call.
        """
        name = type(self).__name__
        axis = _shuffle_axis(tuple(img.shape), self.channel_dim, name)
        num_channels = int(img.shape[axis])
        if randomize:
            self.randomize(num_channels)
        elif self._num_channels != num_channels:
            raise ValueError(
                f"{name}: randomize() drew for {self._num_channels} channels, the image of shape "
                f"{tuple(img.shape)} has {num_channels} along axis {axis}."
            )
        img_t = convert_to_tensor(img, track_meta=False)
        if self._do_transform:
            out = img_t.index_select(axis, torch.as_tensor(self._permutation, device=img_t.device))
        else:
            out = img_t.clone()
        if isinstance(img, MetaTensor) and not get_track_meta():
            return out
        return convert_to_dst_type(out, dst=img)[0]


class VariableDimensiond(MapTransform):
    """Dictionary-based :py:class:`monai_genesis.transforms.VariableDimension`.

    Args:
        keys: keys of the photos to turn into volumes. See also: :py:class:`monai.transforms.MapTransform`.
        channel_dim: the axis of the colours, see :py:class:`VariableDimension`.
        mean: the mean subtracted. Defaults to 114.495 (the 0–255 scale).
        std: the standard deviation divided by. Defaults to 57.63 (the 0–255 scale).
        repeat_grey: repeat grey images to 3 channels instead of raising a ``ValueError``.
        allow_missing_keys: don't raise an error when a key is missing.
    """

    backend = VariableDimension.backend

    def __init__(
        self,
        keys: KeysCollection,
        channel_dim: int | None = None,
        mean: float = CSPR_MEAN,
        std: float = CSPR_STD,
        repeat_grey: bool = False,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.transform = VariableDimension(channel_dim, mean, std, repeat_grey)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.transform(d[key])
        return d


class RandChannelShuffled(RandomizableTransform, MapTransform):
    """Dictionary-based :py:class:`monai_genesis.transforms.RandChannelShuffle`: one permutation for all keys.

    Args:
        keys: keys of the images to permute; they must have the same number of colours.
            See also: :py:class:`monai.transforms.MapTransform`.
        prob: probability of permuting. Defaults to 1.0.
        channel_dim: the axis of the colours, see :py:class:`RandChannelShuffle`.
        allow_missing_keys: don't raise an error when a key is missing.
    """

    backend = RandChannelShuffle.backend

    def __init__(
        self,
        keys: KeysCollection,
        prob: float = 1.0,
        channel_dim: int | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob)
        self.shuffle = RandChannelShuffle(prob=1.0, channel_dim=channel_dim)

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None):
        super().set_random_state(seed, state)
        self.shuffle.set_random_state(seed, state)
        return self

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        keys = list(self.key_iterator(d))
        self.randomize(None)
        if not keys or not self._do_transform:
            return d
        name = type(self).__name__
        counts = {k: int(d[k].shape[_shuffle_axis(tuple(d[k].shape), self.shuffle.channel_dim, name)]) for k in keys}
        if len(set(counts.values())) > 1:
            raise ValueError(
                f"{name}: the keys share one permutation and must have one number of colours, got {counts}."
            )
        self.shuffle.randomize(counts[keys[0]])
        for key in keys:
            d[key] = self.shuffle(d[key], randomize=False)
        return d


VariableDimensionD = VariableDimensionDict = VariableDimensiond
RandChannelShuffleD = RandChannelShuffleDict = RandChannelShuffled
