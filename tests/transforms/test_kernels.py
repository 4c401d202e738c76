"""The compiled CPU kernels return exactly what the torch code returns from the same draws."""

import itertools

import numpy as np
import pytest
import torch

from monai_genesis.transforms import RandGenesisCorruption, RandLocalPixelShuffle, RandNonlinearIntensity, kernels
from monai_genesis.transforms.nonlinear import apply_lut, bezier_lut, draw_nonlinear
from monai_genesis.transforms.shuffle import blocks_touching, draw_blocks, local_shuffle

pytest.importorskip("numba")


def _both(monkeypatch, fn):
    """``fn()`` with the kernels, then with the torch code."""
    monkeypatch.setenv("MONAI_GENESIS_NUMBA", "1")
    assert kernels.enabled()
    compiled = fn()
    monkeypatch.setenv("MONAI_GENESIS_NUMBA", "0")
    assert not kernels.enabled()
    return compiled, fn()


@pytest.mark.parametrize("shape, n, blocks", [((64, 64, 32), 1, 10000), ((20, 17, 9), 3, 800), ((40, 30), 2, 500)])
def test_shuffle_kernel_matches_torch(monkeypatch, shape, n, blocks):
    params = draw_blocks(torch.Generator().manual_seed(0), n, shape, num_blocks=blocks)
    image = torch.rand(n, *shape)
    compiled, reference = _both(monkeypatch, lambda: local_shuffle(image, params, torch.Generator().manual_seed(5)))
    assert torch.equal(compiled, reference)
    changed = (compiled != image).float().mean().item()
    assert 0.1 < changed < 1.0
    # every voxel is read from its own item
    for i in range(n):
        assert torch.isin(compiled[i], image[i]).all()


def test_shuffle_kernel_keeps_dtype_and_ignores_empty_draws(monkeypatch):
    params = draw_blocks(torch.Generator().manual_seed(1), 2, (16, 16, 8), num_blocks=300, block_fraction=0.3)
    image = torch.rand(2, 16, 16, 8, dtype=torch.float64).to(torch.bfloat16)
    compiled, reference = _both(
        monkeypatch, lambda: local_shuffle(image, params, torch.Generator().manual_seed(2), block_fraction=0.3)
    )
    assert compiled.dtype == torch.bfloat16 and torch.equal(compiled, reference)
    empty = params.select(torch.zeros(params.item.shape[0], dtype=torch.bool))
    compiled, reference = _both(monkeypatch, lambda: local_shuffle(image, empty))
    assert torch.equal(compiled, image) and torch.equal(reference, image)


@pytest.mark.parametrize("shape, n, fraction", [((64, 64, 32), 2, 0.1), ((40, 30), 3, 0.2), ((9, 11, 13), 1, 0.5)])
def test_draw_blocks_kernel_matches_torch(monkeypatch, shape, n, fraction):
    compiled, reference = _both(
        monkeypatch,
        lambda: draw_blocks(torch.Generator().manual_seed(3), n, shape, num_blocks=700, block_fraction=fraction),
    )
    for name in ("sizes", "origins", "item"):
        a, b = getattr(compiled, name), getattr(reference, name)
        assert a.dtype == b.dtype == torch.int32 and torch.equal(a, b), name
    # every block fits, and every size up to the largest is drawn
    assert (compiled.origins + compiled.sizes <= torch.tensor(shape, dtype=torch.int32)).all()
    assert compiled.origins.min() == 0 and compiled.sizes.min() == 1
    assert torch.equal(compiled.item.bincount(), torch.full((n,), 700))


def test_lut_kernel_matches_torch(monkeypatch):
    lut = bezier_lut(draw_nonlinear(np.random.RandomState(0), 3))
    x = torch.rand(3, 24, 20, 16)
    x[0, 0, 0, :4] = torch.tensor([0.0, 1.0, -0.5, 1.5])  # the ends and values clamped onto them
    low, high = torch.tensor([-1.0, -1.0, -2.0]), torch.tensor([2.0, 2.0, 3.0])
    cases = [((x, lut), torch.float32), ((x * 3 - 1, lut, low, high), torch.float32), ((x, lut), torch.float16)]
    for args, dtype in cases:
        items = args[0].to(dtype)
        compiled, reference = _both(monkeypatch, lambda: apply_lut(items, *args[1:]))
        assert compiled.dtype == dtype and compiled.shape == items.shape
        assert torch.equal(compiled, reference)
    # a crop (not contiguous), as the fused out-painting path maps
    crop = x[:1, 2:20, 3:15, 1:9]
    compiled, reference = _both(monkeypatch, lambda: apply_lut(crop, lut[:1]))
    assert torch.equal(compiled, reference)


def test_blocks_touching_kernel_matches_torch(monkeypatch):
    rng = np.random.RandomState(0)
    params = draw_blocks(torch.Generator().manual_seed(0), 4, (64, 64, 32), num_blocks=2000)
    starts = torch.as_tensor(rng.randint(0, 40, (4, 5, 3)))
    stops = starts + torch.as_tensor(rng.randint(1, 30, (4, 5, 3)))
    used = torch.as_tensor(rng.rand(4, 5) < 0.7)
    for rows in (4, 1):  # per item, and one set of boxes for every block
        args = (params, starts[:rows], stops[:rows], used[:rows])
        compiled, reference = _both(monkeypatch, lambda args=args: blocks_touching(*args))
        assert torch.equal(compiled, reference)
        assert 0.0 < compiled.float().mean().item() < 1.0


def test_pipeline_is_the_same_with_and_without_kernels(monkeypatch):
    images = [torch.rand(1, 64, 64, 32) for _ in range(12)]

    def run(transform):
        transform.set_random_state(7)
        return [transform(image) for image in images]

    makers = (RandGenesisCorruption, lambda: RandLocalPixelShuffle(prob=1.0), lambda: RandNonlinearIntensity(prob=1.0))
    for make in makers:
        compiled, reference = _both(monkeypatch, lambda: run(make()))
        for a, b in zip(compiled, reference):
            a, b = (a, b) if isinstance(a, torch.Tensor) else (torch.stack(a), torch.stack(b))
            assert torch.equal(a, b)


@pytest.mark.parametrize("shape", [(1,), (7,), (3, 5), (1, 64, 64, 32)])
def test_noise_kernel_is_numpy_pcg64(shape):
    expected = np.random.Generator(np.random.PCG64(123)).random(shape, dtype=np.float32)
    got = kernels.uniform_float32(123, shape)
    assert got.dtype == np.float32 and got.shape == shape
    assert np.array_equal(got, expected)
    assert 0.0 <= got.min() and got.max() < 1.0


@pytest.mark.parametrize("spatial, n", [((40, 36, 24), 1), ((40, 36, 24), 3), ((30, 28), 2)])
def test_painting_is_the_same_with_and_without_kernels(monkeypatch, spatial, n):
    from monai_genesis.transforms import painting

    rng = np.random.RandomState(0)
    x = torch.rand(n, *spatial)
    ranges = [(0.0, 1.0), (-1.0, 2.0), (torch.linspace(-1.0, 0.0, n), torch.linspace(1.0, 3.0, n))]
    for draw, keep in ((painting.draw_inpaint_boxes, False), (painting.draw_outpaint_boxes, True)):
        boxes = draw(rng, n, spatial)
        mask = painting.box_mask(spatial, boxes)
        counts = kernels.hole_voxels((n, *spatial), boxes.starts, boxes.stops, boxes.used)
        assert counts.tolist() == mask.reshape(n, -1).sum(1).tolist()
        for (low, high), dtype in itertools.product(ranges, (torch.float32, torch.float64)):
            items = x.to(dtype)
            compiled, reference = _both(
                monkeypatch, lambda: painting.paint(items, boxes, keep, low, high, torch.Generator().manual_seed(3))
            )
            assert compiled.dtype == dtype and torch.equal(compiled, reference)
            painted = ~mask if keep else mask
            assert torch.equal(compiled[~painted], items[~painted])  # the rest is kept
            changed = (compiled != items)[painted].float().mean().item()
            assert changed > 0.99  # noise everywhere it is painted
            lows = torch.as_tensor(low).expand(n).reshape(-1, *[1] * len(spatial)).to(dtype)
            highs = torch.as_tensor(high).expand(n).reshape(-1, *[1] * len(spatial)).to(dtype)
            assert ((compiled >= lows) & (compiled <= highs))[painted].all()


def test_stored_values_become_the_floats_of_numpy(monkeypatch):
    from monai_genesis.data.store import to_float32

    raw = np.random.default_rng(0).integers(0, 65536, (3, 1, 20, 17, 9), dtype=np.uint16)
    scales, offsets = np.float32([1 / 65535, 0.37, 3e-5]), np.float32([0.0, -0.25, 1e3])
    compiled, reference = _both(monkeypatch, lambda: to_float32(raw, scales, offsets))
    # bit for bit: one pass, no fused multiply-add
    np.testing.assert_array_equal(compiled.view(np.uint32), reference.view(np.uint32))
    expected = raw.astype(np.float32) * scales[:, None, None, None, None]
    expected += offsets[:, None, None, None, None]
    np.testing.assert_array_equal(reference, expected)
    # a float store is cast, not scaled
    half = raw.astype(np.float16)
    np.testing.assert_array_equal(to_float32(half, None, None), half.astype(np.float32))
