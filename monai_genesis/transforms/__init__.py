"""The Models Genesis corruptions as MONAI array and dictionary transforms."""

from .array import (
    RandGenesisCorruption,
    RandGenesisFlip,
    RandInpaint,
    RandLocalPixelShuffle,
    RandNonlinearIntensity,
    RandOutpaint,
)
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
