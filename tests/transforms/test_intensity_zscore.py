import pytest
import torch

from monai_genesis.transforms import INTENSITY_SETTINGS, intensity_transform


def test_zscore_setting_normalises_the_foreground_and_keeps_the_background():
    volume = torch.zeros(1, 8, 8, 8)
    volume[0, 2:6, 2:6, 2:6] = torch.arange(64.0).reshape(4, 4, 4) + 100.0
    out = intensity_transform("zscore")({"image": volume})["image"]
    inside = out[0, 2:6, 2:6, 2:6]
    assert "zscore" in INTENSITY_SETTINGS
    assert float(inside.mean()) == pytest.approx(0.0, abs=1e-5)
    assert float(inside.std(unbiased=False)) == pytest.approx(1.0, abs=1e-4)
    assert float(out[0, 0].abs().max()) == 0.0


def test_an_entry_may_name_the_zscore_setting():
    volume = torch.linspace(-1000.0, 1000.0, 512).reshape(1, 8, 8, 8)
    out = intensity_transform("ct")({"image": volume, "intensity": "zscore"})
    assert out["intensity"] == "zscore" and float(out["image"].min()) < -1.0
