"""Loading a 2D photo as stored, ``(H, W, 3)`` uint8, from a file or from memory, for the variable dimension transform."""

from __future__ import annotations

import os
from collections.abc import Hashable, Mapping

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, Transform
from PIL import Image

from monai_genesis.errors import GenesisInputError

__all__ = ["LoadPhoto", "LoadPhotod", "LoadPhotoD", "LoadPhotoDict"]


class LoadPhoto(Transform):
    """Read a photo file (PNG, JPEG, anything PIL opens) as an RGB ``MetaTensor`` ``(H, W, 3)`` of uint8.

    Grey and palette images are converted to RGB, as :py:func:`monai_genesis.data.load_image_folder` reads them, so
    every photo has 3 colours. The file name is kept as ``filename_or_obj``. An in-memory photo (a NumPy array, a
    tensor or a ``MetaTensor``, e.g. from :py:func:`monai_genesis.data.natural_datalist`) is passed through
    unchanged: rows and columns stay in the order ``(H, W)`` either way (MONAI's ``PILReader`` would transpose them).
    """

    def __call__(self, value):
        if not isinstance(value, (str, os.PathLike)):
            return value
        try:
            with Image.open(value) as im:
                photo = np.asarray(im.convert("RGB"))
        except Exception as e:  # PIL raises OSError, SyntaxError, ValueError... for truncated or foreign files
            raise GenesisInputError(
                f"photo {value} could not be read ({type(e).__name__}: {e}); the file is incomplete, corrupt or not "
                "an image. Copy it again or leave it out of the data."
            ) from e
        return MetaTensor(torch.from_numpy(photo.copy()), meta={"filename_or_obj": str(value)})


class LoadPhotod(MapTransform):
    """Dictionary-based :py:class:`LoadPhoto`.

    Args:
        keys: keys of the photos (paths or in-memory photos). See also: :py:class:`monai.transforms.MapTransform`.
        allow_missing_keys: don't raise an error when a key is missing.
    """

    def __init__(self, keys: KeysCollection, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.loader = LoadPhoto()

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.loader(d[key])
        return d


LoadPhotoD = LoadPhotoDict = LoadPhotod
