"""Dictionary twins of :py:mod:`monai_genesis.transforms.array`.

Each wraps one array transform, forwards ``set_random_state`` to it, draws once per call (the array transform's
``randomize``, with its checks) and applies the same draw (channels, blocks, curves, boxes, flips and noise seed) to
every key with ``__call__(img, randomize=False)``; the keys must then share the shape. :py:class:`RandGenesisCorruptiond` copies the clean image to
a target key (``"label"`` by default, so ``SupervisedTrainer`` trains restoration with no extra code) before
corrupting it.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import numpy as np

from monai.config import KeysCollection, NdarrayOrTensor
from monai.transforms import MapTransform, RandomizableTransform
from monai.utils import convert_to_tensor, ensure_tuple

from .array import (
    RandGenesisCorruption,
    RandGenesisFlip,
    RandInpaint,
    RandLocalPixelShuffle,
    RandNonlinearIntensity,
    RandOutpaint,
    _ItemCorruption,
)
from .utils import check_channel_first, check_intensity

__all__ = [
    "RandNonlinearIntensityd",
    "RandNonlinearIntensityD",
    "RandNonlinearIntensityDict",
    "RandLocalPixelShuffled",
    "RandLocalPixelShuffleD",
    "RandLocalPixelShuffleDict",
    "RandInpaintd",
    "RandInpaintD",
    "RandInpaintDict",
    "RandOutpaintd",
    "RandOutpaintD",
    "RandOutpaintDict",
    "RandGenesisFlipd",
    "RandGenesisFlipD",
    "RandGenesisFlipDict",
    "RandGenesisCorruptiond",
    "RandGenesisCorruptionD",
    "RandGenesisCorruptionDict",
]


def _check_keys(transform: MapTransform, data: Mapping, keys: Sequence[Hashable]) -> None:
    """A clear ``KeyError`` naming the missing keys and the available ones."""
    if transform.allow_missing_keys:
        return
    missing = [k for k in keys if k not in data]
    if missing:
        raise KeyError(
            f"{type(transform).__name__}: key(s) {missing} not found in the data, which has keys {list(data)}; "
            "fix `keys=` or pass `allow_missing_keys=True`."
        )


def _same_shape(transform: MapTransform, d: Mapping, keys: Sequence[Hashable]) -> None:
    shapes = {k: tuple(d[k].shape) for k in keys}
    if len(set(shapes.values())) > 1:
        raise ValueError(f"{type(transform).__name__}: the keys share one draw and must have one shape, got {shapes}.")


class _ItemCorruptiond(RandomizableTransform, MapTransform):
    """Dictionary wrapper of an :py:class:`_ItemCorruption`; the array transform draws per channel with ``prob``."""

    array_class: type = _ItemCorruption

    def __init__(self, keys: KeysCollection, allow_missing_keys: bool = False, **kwargs) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        self.transform = self.array_class(**kwargs)
        RandomizableTransform.__init__(self, self.transform.prob)

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None):
        super().set_random_state(seed, state)
        self.transform.set_random_state(seed, state)
        return self

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        _check_keys(self, d, self.keys)
        keys = list(self.key_iterator(d))
        if not keys:
            return d
        _same_shape(self, d, keys)
        first = d[keys[0]]
        spatial_dims = check_channel_first(first, self.transform.spatial_dims, type(self).__name__)
        for key in keys:
            check_intensity(convert_to_tensor(d[key], track_meta=False), self.transform.value_range, type(self).__name__)
        first_t = convert_to_tensor(first, track_meta=False)
        draw = self.transform.randomize(first_t.reshape(-1, *first_t.shape[-spatial_dims:]))
        self._do_transform = draw.active
        for key in keys:
            d[key] = self.transform(d[key], randomize=False)
        return d


class RandNonlinearIntensityd(_ItemCorruptiond):
    """Dictionary-based :py:class:`monai_genesis.transforms.RandNonlinearIntensity`.

    Args:
        keys: keys of the images to corrupt. See also: :py:class:`monai.transforms.MapTransform`.
        allow_missing_keys: don't raise an error when a key is missing.
        kwargs: the arguments of :py:class:`RandNonlinearIntensity` (``prob``, ``invert_prob``, ``value_range``,
            ``zscore``, ``spatial_dims``, ``num_points``, ``lut_size``).
    """

    array_class = RandNonlinearIntensity

    def __init__(self, keys: KeysCollection, prob: float = 0.9, allow_missing_keys: bool = False, **kwargs) -> None:
        super().__init__(keys, allow_missing_keys, prob=prob, **kwargs)


class RandLocalPixelShuffled(_ItemCorruptiond):
    """Dictionary-based :py:class:`monai_genesis.transforms.RandLocalPixelShuffle`.

    Args:
        keys: keys of the images to corrupt. See also: :py:class:`monai.transforms.MapTransform`.
        allow_missing_keys: don't raise an error when a key is missing.
        kwargs: the arguments of :py:class:`RandLocalPixelShuffle` (``prob``, ``num_blocks``, ``block_fraction``,
            ``value_range``, ``zscore``, ``spatial_dims``).
    """

    array_class = RandLocalPixelShuffle

    def __init__(self, keys: KeysCollection, prob: float = 0.5, allow_missing_keys: bool = False, **kwargs) -> None:
        super().__init__(keys, allow_missing_keys, prob=prob, **kwargs)


class RandInpaintd(_ItemCorruptiond):
    """Dictionary-based :py:class:`monai_genesis.transforms.RandInpaint`.

    Args:
        keys: keys of the images to corrupt. See also: :py:class:`monai.transforms.MapTransform`.
        allow_missing_keys: don't raise an error when a key is missing.
        kwargs: the arguments of :py:class:`RandInpaint` (``prob``, ``max_boxes``, ``continue_rate``,
            ``value_range``, ``zscore``, ``spatial_dims``).
    """

    array_class = RandInpaint

    def __init__(self, keys: KeysCollection, prob: float = 1.0, allow_missing_keys: bool = False, **kwargs) -> None:
        super().__init__(keys, allow_missing_keys, prob=prob, **kwargs)


class RandOutpaintd(_ItemCorruptiond):
    """Dictionary-based :py:class:`monai_genesis.transforms.RandOutpaint`.

    Args:
        keys: keys of the images to corrupt. See also: :py:class:`monai.transforms.MapTransform`.
        allow_missing_keys: don't raise an error when a key is missing.
        kwargs: the arguments of :py:class:`RandOutpaint` (``prob``, ``max_boxes``, ``continue_rate``,
            ``value_range``, ``zscore``, ``spatial_dims``).
    """

    array_class = RandOutpaint

    def __init__(self, keys: KeysCollection, prob: float = 1.0, allow_missing_keys: bool = False, **kwargs) -> None:
        super().__init__(keys, allow_missing_keys, prob=prob, **kwargs)


class RandGenesisFlipd(RandomizableTransform, MapTransform):
    """Flip an image and its target alike along random spatial axes (up to 3 flips, each with ``flip_rate``).

    Args:
        keys: keys flipped together, e.g. ``("image", "label")``. See also: :py:class:`monai.transforms.MapTransform`.
        flip_rate: probability of each further flip. Defaults to 0.4.
        max_flips: at most this many flips. Defaults to 3.
        spatial_dims: 2 or 3 to require that many spatial axes; None infers it from the image.
        allow_missing_keys: don't raise an error when a key is missing.
    """

    backend = RandGenesisFlip.backend

    def __init__(
        self,
        keys: KeysCollection = ("image", "label"),
        flip_rate: float = 0.4,
        max_flips: int = 3,
        spatial_dims: int | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, 1.0)
        self.flipper = RandGenesisFlip(flip_rate, max_flips, spatial_dims)

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None):
        super().set_random_state(seed, state)
        self.flipper.set_random_state(seed, state)
        return self

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        _check_keys(self, d, self.keys)
        keys = list(self.key_iterator(d))
        if not keys:
            return d
        spatial_dims = check_channel_first(d[keys[0]], self.flipper.spatial_dims, type(self).__name__)
        self.flipper.randomize(n=1, spatial_dims=spatial_dims)
        for key in keys:
            d[key] = self.flipper(d[key], randomize=False)
        return d


class RandGenesisCorruptiond(RandomizableTransform, MapTransform):
    """Dictionary-based :py:class:`monai_genesis.transforms.RandGenesisCorruption`: the whole Genesis corruption.

    For each key, the (flipped) clean image is copied to its target key, then the image is corrupted in place of
    the key; other keys (e.g. a segmentation) are not touched. One draw per call serves every key (the keys must
    share the shape): the same flips, shuffled blocks, curves, boxes and noise.

    Args:
        keys: keys of the images to corrupt. Defaults to ``"image"``.
        target_keys: where to put the clean images, one per key. Defaults to ``"label"``.
        allow_missing_keys: don't raise an error when a key is missing.
        corruption: a :py:class:`RandGenesisCorruption` built elsewhere (a config's one ``corruption`` node, also
            given to :py:class:`monai_genesis.engines.PretextPrepareBatch`); None builds one from ``kwargs``.
        kwargs: the arguments of :py:class:`RandGenesisCorruption` (``flip_rate``, ``local_rate``,
            ``nonlinear_rate``, ``paint_rate``, ``inpaint_rate``, ``value_range``, ``zscore``, ``spatial_dims``,
            ``num_blocks``), when ``corruption`` is None.
    """

    backend = RandGenesisCorruption.backend

    def __init__(
        self,
        keys: KeysCollection = "image",
        target_keys: KeysCollection = "label",
        allow_missing_keys: bool = False,
        corruption: RandGenesisCorruption | None = None,
        **kwargs,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, 1.0)
        if corruption is not None and kwargs:
            raise ValueError(
                "RandGenesisCorruptiond: give either corruption= or its arguments, got both "
                f"(arguments {sorted(kwargs)})."
            )
        self.target_keys = ensure_tuple(target_keys)
        if len(self.target_keys) != len(self.keys):
            raise ValueError(f"give one target key per key, got keys {self.keys} and target_keys {self.target_keys}.")
        if set(self.target_keys) & set(self.keys):
            raise ValueError(f"target_keys {self.target_keys} must differ from keys {self.keys}.")
        self.corruption = RandGenesisCorruption(**kwargs) if corruption is None else corruption

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None):
        super().set_random_state(seed, state)
        self.corruption.set_random_state(seed, state)
        return self

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        _check_keys(self, d, self.keys)
        pairs = list(self.key_iterator(d, self.target_keys))
        if not pairs:
            return d
        _same_shape(self, d, [key for key, _ in pairs])
        self.corruption.randomize(d[pairs[0][0]])
        for key, target_key in pairs:
            d[key], d[target_key] = self.corruption(d[key], randomize=False)
        return d


RandNonlinearIntensityD = RandNonlinearIntensityDict = RandNonlinearIntensityd
RandLocalPixelShuffleD = RandLocalPixelShuffleDict = RandLocalPixelShuffled
RandInpaintD = RandInpaintDict = RandInpaintd
RandOutpaintD = RandOutpaintDict = RandOutpaintd
RandGenesisFlipD = RandGenesisFlipDict = RandGenesisFlipd
RandGenesisCorruptionD = RandGenesisCorruptionDict = RandGenesisCorruptiond
