"""Every MONAI transform of the project, array and dictionary twins.

- the Models Genesis corruptions: ``array``, ``dictionary`` (their kernels in ``flip``, ``shuffle``, ``nonlinear``,
  ``painting``, shared with the batched path of ``monai_genesis.engines``; their compiled CPU loops in ``kernels``);
- cube sampling (``cubes``), intensity settings (``intensity``), loading and class targets (``loading``), the grid of
  encoder features (``geometry``).
"""

from .array import (
    RandGenesisCorruption,
    RandGenesisFlip,
    RandInpaint,
    RandLocalPixelShuffle,
    RandNonlinearIntensity,
    RandOutpaint,
)
from .classification import class_postprocessing, class_probabilities
from .cubes import FixedCubeSamplesd, RandCubeSamples, RandCubeSamplesd
from .dictionary import (
    RandGenesisCorruptiond,
    RandGenesisCorruptionD,
    RandGenesisCorruptionDict,
    RandGenesisFlipd,
    RandGenesisFlipD,
    RandGenesisFlipDict,
    RandInpaintd,
    RandInpaintD,
    RandInpaintDict,
    RandLocalPixelShuffled,
    RandLocalPixelShuffleD,
    RandLocalPixelShuffleDict,
    RandNonlinearIntensityd,
    RandNonlinearIntensityD,
    RandNonlinearIntensityDict,
    RandOutpaintd,
    RandOutpaintD,
    RandOutpaintDict,
)
from .geometry import FeatureGridAffine, FeatureGridAffined
from .intensity import (
    INTENSITY_KEY,
    INTENSITY_SETTINGS,
    ApplyIntensitySettingd,
    ForegroundPercentileWindow,
    ForegroundPercentileWindowd,
    check_intensity_setting,
    intensity_transform,
)
from .loading import CheckLabelValues, CheckLabelValuesd, ClassTarget, ClassTargetd, LoadVolume, LoadVolumed
from .photo import LoadPhoto, LoadPhotod, LoadPhotoD, LoadPhotoDict
from .masking import RandBlockMask, RandBlockMaskd, RandBlockMaskD, RandBlockMaskDict
from .variable_dimension import (
    RandChannelShuffle,
    RandChannelShuffled,
    RandChannelShuffleD,
    RandChannelShuffleDict,
    VariableDimension,
    VariableDimensiond,
    VariableDimensionD,
    VariableDimensionDict,
)

__all__ = [
    "LoadPhoto",
    "LoadPhotod",
    "LoadPhotoD",
    "LoadPhotoDict",
    "class_postprocessing",
    "class_probabilities",
    "RandChannelShuffle",
    "RandChannelShuffled",
    "RandChannelShuffleD",
    "RandChannelShuffleDict",
    "VariableDimension",
    "VariableDimensiond",
    "VariableDimensionD",
    "VariableDimensionDict",
    "INTENSITY_KEY",
    "INTENSITY_SETTINGS",
    "ApplyIntensitySettingd",
    "CheckLabelValues",
    "CheckLabelValuesd",
    "ClassTarget",
    "ClassTargetd",
    "FeatureGridAffine",
    "FeatureGridAffined",
    "FixedCubeSamplesd",
    "ForegroundPercentileWindow",
    "ForegroundPercentileWindowd",
    "LoadVolume",
    "LoadVolumed",
    "RandCubeSamples",
    "RandCubeSamplesd",
    "check_intensity_setting",
    "intensity_transform",
    "RandGenesisCorruption",
    "RandGenesisFlip",
    "RandInpaint",
    "RandLocalPixelShuffle",
    "RandNonlinearIntensity",
    "RandOutpaint",
    "RandGenesisCorruptiond",
    "RandGenesisCorruptionD",
    "RandGenesisCorruptionDict",
    "RandGenesisFlipd",
    "RandGenesisFlipD",
    "RandGenesisFlipDict",
    "RandInpaintd",
    "RandInpaintD",
    "RandInpaintDict",
    "RandLocalPixelShuffled",
    "RandLocalPixelShuffleD",
    "RandLocalPixelShuffleDict",
    "RandNonlinearIntensityd",
    "RandNonlinearIntensityD",
    "RandNonlinearIntensityDict",
    "RandOutpaintd",
    "RandOutpaintD",
    "RandOutpaintDict",
    "RandBlockMask",
    "RandBlockMaskd",
    "RandBlockMaskD",
    "RandBlockMaskDict",
]
