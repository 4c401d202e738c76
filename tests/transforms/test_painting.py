import numpy as np
import pytest
import torch

from monai_genesis.transforms import RandInpaint, RandInpaintd, RandOutpaint, RandOutpaintd
from monai_genesis.transforms.painting import box_mask, draw_inpaint_boxes, draw_outpaint_boxes


def test_inpaint_boxes_follow_the_recipe():
    R = np.random.RandomState(0)
    boxes = draw_inpaint_boxes(R, 4000, (64, 64, 32))
    sizes = boxes.stops - boxes.starts
    assert sizes.min(axis=(0, 1)).tolist() == [10, 10, 5] and sizes.max(axis=(0, 1)).tolist() == [21, 21, 10]
    assert boxes.starts.min() == 3
    assert (boxes.stops <= np.array([61, 61, 29])).all()
    assert (boxes.stops == np.array([61, 61, 29])).any(axis=(0, 1)).all()
    counts = boxes.used.sum(1)
    # while count < 5 and rand() < 0.95: P(5 holes) = 0.95^5, P(none) = 0.05
    assert abs((counts == 5).mean() - 0.95**5) < 0.03
    assert abs((counts == 0).mean() - 0.05) < 0.015


def test_outpaint_boxes_follow_the_recipe():
    R = np.random.RandomState(1)
    boxes = draw_outpaint_boxes(R, 4000, (64, 64, 32))
    sizes = boxes.stops - boxes.starts
    # side - randint(3 side // 7, 4 side // 7)
    assert sizes.min(axis=(0, 1)).tolist() == [64 - 36, 64 - 36, 32 - 18]
    assert sizes.max(axis=(0, 1)).tolist() == [64 - 27, 64 - 27, 32 - 13]
    assert boxes.starts.min() == 3 and (boxes.stops <= np.array([61, 61, 29])).all()
    counts = boxes.used.sum(1)
    assert counts.min() == 1
    assert abs((counts == 5).mean() - 0.95**4) < 0.03


def test_box_mask_is_the_union_of_boxes():
    from monai_genesis.transforms.painting import BoxParams

    boxes = BoxParams(
        starts=np.array([[[3, 4], [5, 5]]]), stops=np.array([[[6, 8], [7, 9]]]), used=np.array([[True, True]])
    )
    mask = box_mask((10, 12), boxes)[0].numpy()
    expected = np.zeros((10, 12), bool)
    expected[3:6, 4:8] = True
    expected[5:7, 5:9] = True
    np.testing.assert_array_equal(mask, expected)
    boxes.used[0, 1] = False
    expected[:] = False
    expected[3:6, 4:8] = True
    np.testing.assert_array_equal(box_mask((10, 12), boxes)[0].numpy(), expected)


@pytest.mark.parametrize("shape", [(1, 40, 40, 20), (2, 48, 36)])
def test_inpaint_changes_only_inside_the_margin_with_uniform_noise(shape):
    x = torch.full(shape, 0.25)
    t = RandInpaint()
    t.set_random_state(2)
    changed = torch.zeros(shape, dtype=torch.bool)
    noise = []
    for _ in range(20):
        out = t(x)
        diff = out != x
        changed |= diff
        noise.append(out[diff])
    for axis in range(1, len(shape)):
        along = changed.any(dim=[a for a in range(len(shape)) if a != axis])
        assert not along[:3].any() and not along[-3:].any()
    noise = torch.cat(noise)
    assert noise.min() >= 0 and noise.max() < 1
    assert abs(noise.mean().item() - 0.5) < 0.01


def test_outpaint_keeps_boxes_and_fills_the_rest_with_noise():
    x = torch.full((1, 40, 40, 20), 0.25)
    t = RandOutpaint()
    t.set_random_state(0)
    out = t(x)
    kept = out == 0.25
    # the border (3-voxel margin) is always noise, the kept region is made of boxes
    assert not kept[:, :3].any() and not kept[:, -3:].any() and not kept[..., :3].any()
    assert 0.05 < kept.float().mean() < 0.7
    assert abs(out[~kept].mean().item() - 0.5) < 0.02


def test_value_range_sets_the_noise_range():
    x = torch.full((1, 30, 30, 15), 5.0)
    out = RandOutpaint(value_range=(0, 10))(x)
    noise = out[out != 5.0]
    assert noise.min() >= 0 and noise.max() < 10 and noise.max() > 9
    assert abs(noise.mean().item() - 5) < 0.2


def test_dictionary_versions_paint_every_key_alike():
    x = torch.rand(1, 30, 30, 15)
    for cls in (RandInpaintd, RandOutpaintd):
        d = cls(keys=["a", "b"])
        d.set_random_state(0)
        out = d({"a": x, "b": x.clone()})
        assert torch.equal(out["a"] != x, out["b"] != x)


@pytest.mark.parametrize("items", [1, 3])
def test_cpu_box_by_box_path_gives_the_masked_values(items):
    """A few CPU items are masked and out-painted box by box; masks and painted values equal the batched path's."""
    from monai_genesis.transforms import painting
    from monai_genesis.transforms.backend import CompiledCPUBackend, TorchBackend, TorchCPUBackend

    pytest.importorskip("numba")
    rng = np.random.RandomState(0)
    x = torch.rand(items, 40, 36, 24)
    for draw, keep in ((painting.draw_inpaint_boxes, False), (painting.draw_outpaint_boxes, True)):
        boxes = draw(rng, items, (40, 36, 24))
        by_box = torch.zeros(items, 40, 36, 24, dtype=torch.bool)
        for i in range(items):
            for start, stop in zip(boxes.starts[i][boxes.used[i]], boxes.stops[i][boxes.used[i]]):
                by_box[i][tuple(slice(int(a), int(b)) for a, b in zip(start, stop))] = True
        mask = painting.box_mask((40, 36, 24), boxes)
        assert torch.equal(mask, by_box)
        assert torch.equal(TorchBackend("cpu").box_mask((40, 36, 24), boxes.starts, boxes.stops, boxes.used), by_box)
        for low, high in ((0.0, 1.0), (-1.0, 2.0)):
            args = (boxes.starts, boxes.stops, boxes.used, low, high, 3)
            compiled, batched = CompiledCPUBackend(), TorchCPUBackend()
            fast = (compiled.outpaint if keep else compiled.inpaint)(x, *args)
            with pytest.MonkeyPatch.context() as patch:
                patch.setattr(CompiledCPUBackend, "few_items", 0)
                assert torch.equal(fast, (compiled.outpaint if keep else compiled.inpaint)(x, *args))
            assert torch.equal(fast, (batched.outpaint if keep else batched.inpaint)(x, *args))
            assert torch.equal(fast, painting.paint(x, boxes, keep, low, high, torch.Generator().manual_seed(3)))
            assert 0 < int(mask.sum()) < mask.numel()
