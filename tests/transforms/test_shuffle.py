import itertools

import numpy as np
import pytest
import torch

from monai_genesis.transforms import RandLocalPixelShuffle
from monai_genesis.transforms.shuffle import ShuffleParams, draw_blocks, local_shuffle


def _blocks(sizes, origins):
    return ShuffleParams(
        torch.as_tensor(sizes, dtype=torch.int32),
        torch.as_tensor(origins, dtype=torch.int32),
        torch.zeros(len(sizes), dtype=torch.int32),
    )


def _literal_owner(shape, params):
    """Index of the last block covering each voxel (-1: none), by a plain loop over the blocks."""
    owner = -np.ones(shape, dtype=np.int64)
    for b, (size, origin) in enumerate(zip(params.sizes.tolist(), params.origins.tolist())):
        owner[tuple(slice(o, o + s) for o, s in zip(origin, size))] = b
    return owner


@pytest.mark.parametrize("shape, n", [((20, 20, 10), 1), ((30, 24), 1), ((16, 12, 10), 3)])
def test_last_block_wins_with_sources_inside_it(shape, n):
    nb = 300
    params = draw_blocks(torch.Generator().manual_seed(3), n, shape, num_blocks=nb, block_fraction=0.2)
    nvox = int(np.prod(shape))
    image = torch.arange(n * nvox, dtype=torch.float32).reshape(n, *shape)
    out = local_shuffle(image, params, torch.Generator().manual_seed(4), block_fraction=0.2)
    for i in range(n):
        blocks = params.select(params.item == i)
        source = out[i].numpy().astype(np.int64) - i * nvox
        assert source.min() >= 0 and source.max() < nvox  # nothing leaks between the items of a batch
        owner = _literal_owner(shape, blocks)
        flat_ids = np.arange(nvox).reshape(shape)
        uncovered = owner < 0
        assert uncovered.any() and (~uncovered).any()
        np.testing.assert_array_equal(source[uncovered], flat_ids[uncovered])
        coords = np.stack(np.unravel_index(source, shape), -1)
        for b in np.unique(owner[~uncovered]):
            size, origin = blocks.sizes[b].numpy(), blocks.origins[b].numpy()
            won = owner == b
            src = coords[won]
            # every source lies in the block that last covered the voxel, and no source is used twice
            assert ((src >= origin) & (src < origin + size)).all()
            assert len(np.unique(source[won])) == won.sum()


def test_permutation_inside_a_block_is_uniform():
    params = _blocks([[2, 2]], [[1, 1]])
    image = torch.arange(16, dtype=torch.float32).reshape(1, 4, 4)
    counts = {}
    runs = 2400
    for seed in range(runs):
        out = local_shuffle(image, params, torch.Generator().manual_seed(seed), block_fraction=0.5)
        key = tuple(out[0, 1:3, 1:3].reshape(-1).int().tolist())
        counts[key] = counts.get(key, 0) + 1
    assert set(counts) == set(itertools.permutations([5, 6, 9, 10]))
    expected = runs / 24
    assert max(abs(c - expected) for c in counts.values()) < 5 * np.sqrt(expected)


def test_block_sizes_follow_the_recipe():
    params = draw_blocks(torch.Generator().manual_seed(0), 3, (64, 64, 32), num_blocks=10000)
    assert params.sizes.shape == (30000, 3)
    assert params.sizes.min(0).values.tolist() == [1, 1, 1]
    assert params.sizes.max(0).values.tolist() == [6, 6, 3]
    end = params.origins + params.sizes
    assert params.origins.min() >= 0 and (end <= torch.tensor([64, 64, 32])).all()
    # positions are uniform over where the block fits: block of side 1 starts anywhere in [0, 63]
    ones = params.sizes[:, 0] == 1
    assert params.origins[ones, 0].max() == 63 and params.origins[ones, 0].min() == 0


def test_shuffle_keeps_values_and_changes_most_voxels():
    image = torch.rand(1, 64, 64, 32)
    t = RandLocalPixelShuffle(prob=1.0)
    t.set_random_state(0)
    out = t(image)
    assert torch.isin(out, image).all()
    changed = (out != image).float().mean().item()
    assert 0.76 < changed < 0.80  # 1 - P(uncovered) - P(mapped to itself), as the reference's 0.779


def test_same_result_without_the_cpu_workspace():
    # other devices get no workspace buffers: that path of the torch code must give the same shuffle
    from monai_genesis.transforms.backend import TorchBackend, TorchCPUBackend

    image = torch.rand(2, 24, 20, 12)
    params = draw_blocks(torch.Generator().manual_seed(0), 2, (24, 20, 12), num_blocks=2000)
    with_workspace = local_shuffle(image, params, torch.Generator().manual_seed(1), backend=TorchCPUBackend())
    without = local_shuffle(image, params, torch.Generator().manual_seed(1), backend=TorchBackend("cpu"))
    assert torch.equal(with_workspace, without)
    single = local_shuffle(image[:1], params.select(params.item == 0))
    assert single.shape == (1, 24, 20, 12)


def test_blocks_touching_keeps_exactly_the_blocks_overlapping_a_used_box():
    from monai_genesis.transforms.shuffle import blocks_touching

    params = draw_blocks(torch.Generator().manual_seed(5), 2, (30, 30, 20), num_blocks=400)
    starts = torch.tensor([[[3, 3, 3], [10, 12, 4]], [[5, 6, 7], [0, 0, 0]]])
    stops = torch.tensor([[[9, 9, 9], [20, 25, 10]], [[15, 16, 17], [30, 30, 20]]])
    used = torch.tensor([[True, True], [True, False]])
    keep = blocks_touching(params, starts, stops, used)
    for b in range(len(keep)):
        i = int(params.item[b])
        lo, hi = params.origins[b], params.origins[b] + params.sizes[b]
        touches = any(
            bool(used[i, k]) and bool(((lo < stops[i, k]) & (hi > starts[i, k])).all()) for k in range(2)
        )
        assert bool(keep[b]) == touches
    assert 0 < keep.float().mean() < 1


@pytest.mark.slow
def test_pipeline_shuffles_the_kept_boxes_as_the_shuffle_alone():
    from monai_genesis.transforms import RandGenesisCorruption
    from monai_genesis.transforms.painting import box_mask

    c = RandGenesisCorruption(flip_rate=0, local_rate=1, nonlinear_rate=0, paint_rate=1, inpaint_rate=0)
    c.set_random_state(0)
    alone = RandLocalPixelShuffle(prob=1.0)
    alone.set_random_state(1)
    x = torch.arange(64 * 64 * 32, dtype=torch.float32).reshape(1, 1, 64, 64, 32) / (64 * 64 * 32)
    pipeline_changed, alone_changed = [], []
    for _ in range(12):
        out, _ = c.corrupt_batch(x)
        kept = box_mask((64, 64, 32), c.last_draw.outpaint.params)[0]
        assert c.last_draw.shuffle.params.sizes.shape[0] < 10000  # blocks out of the kept boxes were skipped
        inside = out[0, 0][kept]
        assert torch.isin(inside, x).all()  # kept voxels come from the image, not from the noise
        pipeline_changed.append((inside != x[0, 0][kept]).float().mean().item())
        alone_changed.append((alone(x[0])[0][kept] != x[0, 0][kept]).float().mean().item())
    assert abs(np.mean(pipeline_changed) - np.mean(alone_changed)) < 0.01
