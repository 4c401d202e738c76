"""The permutations inside the shuffled blocks: every one for small blocks, a uniform source for every voxel."""

import numpy as np
import torch

from monai_genesis.transforms.shuffle import ShuffleParams, local_shuffle


def _one_block(size, origin):
    return ShuffleParams(
        torch.as_tensor([size], dtype=torch.int32),
        torch.as_tensor([origin], dtype=torch.int32),
        torch.zeros(1, dtype=torch.int32),
    )


def test_a_five_voxel_block_gets_every_permutation():
    params = _one_block([1, 5], [2, 1])
    image = torch.arange(40, dtype=torch.float32).reshape(1, 5, 8)
    seen = set()
    for seed in range(2400):
        out = local_shuffle(image, params, torch.Generator().manual_seed(seed), block_fraction=1.0)
        seen.add(tuple(out[0, 2, 1:6].int().tolist()))
    assert len(seen) == 120


def test_every_voxel_of_a_large_block_draws_its_source_uniformly():
    params = _one_block([3, 3, 2], [1, 1, 1])
    image = torch.arange(6 * 6 * 4, dtype=torch.float32).reshape(1, 6, 6, 4)
    block = image[0, 1:4, 1:4, 1:3].reshape(-1)
    runs = 3600
    counts = np.zeros((18, 18))
    for seed in range(runs):
        out = local_shuffle(image, params, torch.Generator().manual_seed(seed), block_fraction=1.0)
        got = out[0, 1:4, 1:4, 1:3].reshape(-1)
        assert sorted(got.tolist()) == sorted(block.tolist())  # a permutation of the block
        source = torch.searchsorted(block, got).numpy()
        counts[np.arange(18), source] += 1
    expected = runs / 18
    assert np.abs(counts - expected).max() < 5 * np.sqrt(expected)


def test_every_block_shape_draws_from_at_least_512_permutations():
    """Blocks of up to 7 voxels draw from all their permutations, larger ones from at least 512 (the rotations of
    16 to 64 base permutations), in tables of about half a megabyte for a 64×64×32 image."""
    import math

    import torch

    from monai_genesis.transforms.shuffle import _tables

    tables = _tables((64, 64, 32), (6, 6, 3), torch.device("cpu"))
    count, choices = tables.count.numpy(), tables.choices.numpy()
    small = count <= 7
    assert all(c == math.factorial(k) for c, k in zip(choices[small], count[small]))
    assert choices[~small].min() >= 512 and choices[~small].max() == 16 * 108
    assert tables.permuted.numel() * tables.permuted.element_size() < 0.5 * 2**20
