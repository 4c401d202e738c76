import logging

import numpy as np
import pytest
import torch
from ignite.engine import Engine
from monai.data import MetaTensor
from PIL import Image

from monai_genesis.handlers import (
    RestorationImageHandler,
    RestorationPNGSaver,
    SliceRestorationSaver,
    restoration_images,
)
from monai_genesis.visualize import restoration_grid


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


class _Writer:
    def __init__(self):
        self.images = []

    def add_image(self, tag, image, step, dataformats):
        self.images.append((tag, image, step, dataformats))

    def flush(self):
        pass


def _engine_with_output(output, epochs=2):
    engine = Engine(lambda e, b: output)
    return engine, lambda: engine.run([0], max_epochs=epochs)


def test_tensorboard_handler_writes_the_grid_each_epoch():
    writer = _Writer()
    engine, run = _engine_with_output(_output())
    RestorationImageHandler(summary_writer=writer, max_samples=2).attach(engine)
    run()
    expected = np.asarray(restoration_grid(restoration_images(_output(), 2)))
    assert [(step, fmt) for _, _, step, fmt in writer.images] == [(1, "HWC"), (2, "HWC")]
    np.testing.assert_array_equal(writer.images[0][1], expected)
    assert "corrupted | restored | original" in writer.images[0][0]


def test_png_saver_writes_the_grid_and_keeps_an_earlier_runs_file(tmp_path, caplog):
    engine, run = _engine_with_output(_output(decollated=False))
    saver = RestorationPNGSaver(str(tmp_path / "out"), filename="r.png")
    saver.attach(engine)
    run()
    written = np.asarray(Image.open(tmp_path / "out" / "r.png"))
    np.testing.assert_array_equal(written, np.asarray(restoration_grid(restoration_images(_output()))))
    earlier = (tmp_path / "out" / "r.png").read_bytes()
    engine, run = _engine_with_output(_output(batch=1))
    again = RestorationPNGSaver(str(tmp_path / "out"), filename="r.png")
    again.attach(engine)
    with caplog.at_level(logging.WARNING):
        run()
    assert (tmp_path / "out" / "r.png").read_bytes() == earlier
    assert again.path == tmp_path / "out" / "r_1.png" and again.path.is_file() and "earlier run" in caplog.text
    engine, run = _engine_with_output(_output(batch=1))
    RestorationPNGSaver(str(tmp_path / "out"), filename="r.png", overwrite="true").attach(engine)
    run()
    assert (tmp_path / "out" / "r.png").read_bytes() != earlier
    with pytest.raises(ValueError, match="--overwrite must be true or false"):
        RestorationPNGSaver(str(tmp_path), overwrite="maybe")


def test_png_saver_takes_the_spacing_of_the_cubes(tmp_path):
    out = _output(batch=1, decollated=False)
    out["label"] = MetaTensor(out["label"], affine=torch.diag(torch.tensor([1.0, 3.0, 1.0, 1.0])))
    engine, run = _engine_with_output(out)
    RestorationPNGSaver(str(tmp_path), filename="r.png").attach(engine)
    run()
    images = restoration_images(out)
    expected = restoration_grid(images, spacing=(1.0, 3.0, 1.0))
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "r.png")), np.asarray(expected))
    # 8 voxels of 1 mm wide and 6 of 3 mm tall: the panels are taller than wide, unlike with 1 mm voxels
    assert expected.height > restoration_grid(images).height + 100


def test_png_saver_skips_outputs_without_restorations(tmp_path):
    engine, run = _engine_with_output({"loss": 1.0})
    RestorationPNGSaver(str(tmp_path)).attach(engine)
    run()
    assert not (tmp_path / "restorations.png").exists()


def _volume(shape=(48, 40, 20)):
    v = torch.full((1, *shape), 0.2)
    v[0, shape[0] // 2 :, shape[1] // 2 :] = 0.8
    return MetaTensor(v, affine=torch.diag(torch.tensor([1.0, 1.0, 2.0, 1.0])), meta={"filename_or_obj": "/data/vol.nii.gz"})


class _Identity(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(()))
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return x * self.scale


def test_slice_saver_writes_once_per_validation_and_keeps_earlier_runs(tmp_path):
    net = _Identity()
    evaluator = Engine(lambda e, b: None)
    saver = SliceRestorationSaver(
        net, [{"image": _volume()}], (16, 16, 16), tmp_path / "run", corruption=lambda c: c, window=(0.0, 1.0)
    )
    saver.attach(evaluator)
    evaluator.run([0, 1], max_epochs=2)
    assert saver.path == tmp_path / "run" / "restorations.png"
    first = np.asarray(Image.open(saver.path))
    assert net.calls == 2 * 3  # 3 x 3 cubes in passes of 4 windows, at each of the two validations
    assert first.shape[1] >= 3 * 256 and first.shape[0] > 256  # three columns magnified to at least 256 px
    rgb = first.astype(int)
    grey = (rgb[..., 0] == rgb[..., 1]) & (rgb[..., 1] == rgb[..., 2])
    # the panels: rows holding long stretches of the body (0.2 under the window (0, 1)), not the antialiased text
    body_rows = np.nonzero((grey & (rgb[..., 0] == 51)).sum(1) > 100)[0]
    panels = rgb[body_rows.min() : body_rows.max() + 1]
    bright = grey[body_rows.min() : body_rows.max() + 1] & (panels[..., 0] == 204)  # 0.8
    # the right-anterior quadrant, 24 x 20 voxels magnified 6 times (48 voxels to 288 px), at each panel's top left
    cols, rows = np.nonzero(bright.any(0))[0], np.nonzero(bright.any(1))[0]
    assert len(cols) == 3 * 144 and (rows.min(), rows.max()) == (0, 119)
    assert cols.min() == np.nonzero((panels[..., 0] == 51).any(0))[0].min()  # starts at the first panel's left edge
    assert len(body_rows) == 240  # 40 voxels of 1 mm tall
    again = SliceRestorationSaver(net, {"image": _volume()}, (16, 16, 16), tmp_path / "run", corruption=lambda c: c)
    again(evaluator)
    assert again.path == tmp_path / "run" / "restorations_1.png" and again.path.is_file()
    np.testing.assert_array_equal(np.asarray(Image.open(saver.path)), first)


def test_slice_saver_reseeds_the_genesis_corruption(tmp_path):
    evaluator = Engine(lambda e, b: None)
    saver = SliceRestorationSaver(_Identity(), _volume(), (16, 16, 16), tmp_path, filename="a.png", window=(0, 1))
    saver(evaluator)
    first = np.asarray(Image.open(tmp_path / "a.png"))
    saver(evaluator)
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "a.png")), first)  # same draw every time


def test_slice_saver_names_bad_data(tmp_path):
    evaluator = Engine(lambda e, b: None)
    with pytest.raises(ValueError, match="has 0 items"):
        SliceRestorationSaver(_Identity(), [], (16, 16, 16), tmp_path)(evaluator)
    with pytest.raises(KeyError, match="'img' is not in the data item"):
        SliceRestorationSaver(_Identity(), {"image": _volume()}, (16, 16, 16), tmp_path, image_key="img")(evaluator)
    with pytest.raises(ValueError, match="three strings"):
        SliceRestorationSaver(_Identity(), _volume(), (16, 16, 16), tmp_path, titles=("a",))


def test_slice_saver_writes_on_rank_zero_only(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "get_rank", lambda group=None: 1)
    net = _Identity()
    SliceRestorationSaver(net, _volume(), (16, 16, 16), tmp_path, corruption=lambda c: c)(Engine(lambda e, b: None))
    assert net.calls == 0 and not list(tmp_path.iterdir())
