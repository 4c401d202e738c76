"""The names of the transforms: every dictionary transform under NAMEd, NAMED and NAMEDict."""

from monai.transforms import MapTransform

import monai_genesis.transforms as transforms


def test_every_dictionary_transform_has_the_three_names():
    dictionary = [n for n in transforms.__all__ if n.endswith("d") and isinstance(getattr(transforms, n), type)]
    dictionary = [n for n in dictionary if issubclass(getattr(transforms, n), MapTransform)]
    assert len(dictionary) == 18, dictionary
    for name in dictionary:
        for alias in (name[:-1] + "D", name[:-1] + "Dict"):
            assert alias in transforms.__all__ and getattr(transforms, alias) is getattr(transforms, name), alias
    assert len(transforms.__all__) == len(set(transforms.__all__)) == 76


def test_removed_names_are_gone():
    # the deprecated Intensityd is ApplyIntensitySettingd
    assert not hasattr(transforms, "Intensityd")
    assert "ApplyIntensitySettingd" in transforms.__all__
