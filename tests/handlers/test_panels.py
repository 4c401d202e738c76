"""One picture handler for every pretext: what it draws is its ``panels`` argument."""

import numpy as np
import pytest
import torch
from ignite.engine import Engine
from PIL import Image

from monai_genesis.handlers import (
    PANELS,
    RestorationImageHandler,
    RestorationPNGSaver,
    engine_loss,
    masked_reconstructions,
    stacked_from_engine,
    stored_volume,
)
from monai_genesis.visualize import restoration_grid


def _masked_output(batch=3):
    """An engine output of masked image modelling: the target is cat([clean, mask])."""
    torch.manual_seed(0)
    clean = torch.randn(batch, 1, 8, 6, 4) * 2.0 + 5.0
    mask = (torch.rand(batch, 1, 8, 6, 4) > 0.5).float()
    return {"image": clean * (1 - mask), "pred": clean + 0.1, "label": torch.cat([clean, mask], 1)}, clean


def test_masked_panels_drop_the_mask_channel():
    output, clean = _masked_output()
    images = masked_reconstructions(output, max_samples=2)
    assert list(images) == ["masked", "reconstructed", "original"]
    assert tuple(images["original"].shape) == (2, 1, 8, 6, 4)
    torch.testing.assert_close(images["original"], clean[:2])
    assert masked_reconstructions({"image": clean}) == {}
    assert set(PANELS) == {"restoration", "masked"}


def test_png_saver_draws_masked_panels_on_the_percentile_window(tmp_path):
    output, clean = _masked_output()
    engine = Engine(lambda e, b: output)
    saver = RestorationPNGSaver(str(tmp_path), "reconstructions.png", max_samples=2, panels="masked", value_range=None)
    saver.attach(engine)
    engine.run([0], max_epochs=1)
    low, high = (float(v) for v in torch.quantile(clean[:2].flatten(), torch.tensor([0.01, 0.99])))
    expected = np.asarray(restoration_grid(masked_reconstructions(output, 2), (low, high), max_rows=2))
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "reconstructions.png").convert("RGB")),
                                  np.asarray(Image.fromarray(expected).convert("RGB")))


def test_tensorboard_handler_draws_masked_panels():
    output, _ = _masked_output()
    images = []
    writer = type("W", (), {"add_image": lambda self, tag, img, step, dataformats: images.append(tag),
                            "flush": lambda self: None})()
    engine = Engine(lambda e, b: output)
    RestorationImageHandler(summary_writer=writer, panels="masked", value_range=None).attach(engine)
    engine.run([0], max_epochs=1)
    assert images == ["restoration (masked | reconstructed | original)"]


def test_bad_drawing_settings_are_named(tmp_path):
    with pytest.raises(ValueError, match="panels must be one of \\['masked', 'restoration'\\].*'mask'"):
        RestorationPNGSaver(str(tmp_path), panels="mask")
    with pytest.raises(ValueError, match="interval must be a positive number of epochs, got 0"):
        RestorationPNGSaver(str(tmp_path), interval=0)
    with pytest.raises(ValueError, match="value_range must be \\(black, white\\)"):
        RestorationImageHandler(summary_writer=object(), value_range=(1.0, 0.0))


def test_stacked_from_engine_gives_batches():
    output = [{"prob": torch.tensor([0.2, 0.8]), "label": torch.tensor([0.0, 1.0])},
              {"prob": torch.tensor([0.6, 0.4]), "label": torch.tensor([1.0, 0.0])}]
    prob, label = stacked_from_engine(["prob", "label"])(output)
    torch.testing.assert_close(prob, torch.tensor([[0.2, 0.8], [0.6, 0.4]]))
    assert tuple(label.shape) == (2, 2)


def test_engine_loss_of_whole_and_decollated_outputs():
    loss = torch.tensor(0.25)
    # a detection trainer keeps its output whole, MONAI's supervised ones decollate it (the loss in every sample)
    assert engine_loss({"loss": loss, "image": [torch.zeros(1)]}) is loss
    assert engine_loss([{"loss": loss, "image": torch.zeros(1)}, {"loss": loss, "image": torch.ones(1)}]) is loss


def test_stored_volume_carries_the_affine_and_source(tmp_path):
    class _Stored:
        affine = np.diag([2.0, 2.0, 3.0, 1.0])
        source = "/data/ct_001.nii.gz"

        def read(self):
            return np.arange(24, dtype=np.float32).reshape(1, 2, 3, 4)

    volume = stored_volume({"entry": _Stored()}, "entry")
    assert tuple(volume.shape) == (1, 2, 3, 4) and float(volume.max()) == 23.0
    np.testing.assert_array_equal(volume.affine.numpy(), np.diag([2.0, 2.0, 3.0, 1.0]))
    assert volume.meta["filename_or_obj"] == "/data/ct_001.nii.gz"
