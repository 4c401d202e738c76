import numpy as np
import pytest
import torch
from ignite.engine import Engine

from monai_genesis.handlers import RestorationImageHandler, RestorationPNGSaver, middle_slice_grid, restoration_images


def _output(batch=3, decollated=True):
    image, pred, label = (torch.full((batch, 1, 8, 6, 4), v) for v in (0.1, 0.5, 0.9))
    if not decollated:
        return {"image": image, "pred": pred, "label": label, "loss": 0.3}
    return [{"image": image[i], "pred": pred[i], "label": label[i], "loss": 0.3} for i in range(batch)]


def test_restoration_images_from_batches_and_decollated_outputs():
    for output in (_output(decollated=True), _output(decollated=False)):
        images = restoration_images(output, max_samples=2)
        assert list(images) == ["corrupted", "restored", "original"]
        assert tuple(images["restored"].shape) == (2, 1, 8, 6, 4)
        assert float(images["original"].mean()) == pytest.approx(0.9)
    assert restoration_images([{"image": torch.zeros(1, 4, 4, 4)}]) == {}


def test_middle_slice_grid_layout():
    images = restoration_images(_output(batch=2))
    grid = middle_slice_grid(images)
    assert grid.shape == (2 * 8, 3 * 6)
    np.testing.assert_allclose(grid[:, :6], 0.1, rtol=1e-6)
    np.testing.assert_allclose(grid[:, 12:], 0.9, rtol=1e-6)


class _Writer:
    def __init__(self):
        self.images = []

    def add_image(self, tag, image, step, dataformats):
        self.images.append((tag, image.shape, step, dataformats))

    def flush(self):
        pass


def _engine_with_output(output, epochs=2):
    engine = Engine(lambda e, b: output)
    return engine, lambda: engine.run([0], max_epochs=epochs)


def test_tensorboard_handler_writes_each_epoch():
    writer = _Writer()
    engine, run = _engine_with_output(_output())
    RestorationImageHandler(summary_writer=writer, max_samples=2).attach(engine)
    run()
    assert [(shape, step) for _, shape, step, _ in writer.images] == [((1, 16, 18), 1), ((1, 16, 18), 2)]
    assert "corrupted | restored | original" in writer.images[0][0]


def test_png_saver_writes_the_grid(tmp_path):
    engine, run = _engine_with_output(_output())
    RestorationPNGSaver(str(tmp_path / "out"), filename="r.png").attach(engine)
    run()
    assert (tmp_path / "out" / "r.png").read_bytes()[:4] == b"\x89PNG"


def test_png_saver_skips_outputs_without_restorations(tmp_path):
    engine, run = _engine_with_output({"loss": 1.0})
    RestorationPNGSaver(str(tmp_path)).attach(engine)
    run()
    assert not (tmp_path / "restorations.png").exists()
