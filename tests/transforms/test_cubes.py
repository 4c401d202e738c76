import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from monai_genesis.transforms import FixedCubeSamplesd, RandCubeSamplesd


def _volume(shape=(1, 40, 36, 20)):
    return MetaTensor(torch.arange(int(np.prod(shape)), dtype=torch.float32).reshape(shape), meta={"filename_or_obj": "v.nii"})


def test_rand_cubes_shape_border_and_pairing():
    vol = _volume()
    sampler = RandCubeSamplesd(["image", "label"], cube_size=(16, 16, 8), num_samples=6, border=(100, 100, 30))
    sampler.set_random_state(0)
    cubes = sampler({"image": vol, "label": vol * 2, "id": 7})
    assert len(cubes) == 6
    for cube in cubes:
        assert tuple(cube["image"].shape) == (1, 16, 16, 8)
        torch.testing.assert_close(cube["label"], cube["image"] * 2)
        assert cube["id"] == 7
        # margin shrinks to a quarter of the room: x room 24 -> starts in [6, 18]
        start_x = int(cube["image"][0, 0, 0, 0]) // (36 * 20)
        assert 6 <= start_x <= 18
    sampler.set_random_state(0)
    again = sampler({"image": vol, "label": vol})
    assert all(torch.equal(a["image"], b["image"]) for a, b in zip(cubes, again))


def test_rand_cubes_filter_prefers_range():
    vol = torch.zeros(1, 32, 32, 16)
    vol[:, :16] = 1.0  # only the low-x half lies in the range of interest
    sampler = RandCubeSamplesd("image", cube_size=(8, 8, 8), num_samples=8, border=0, min_fraction=0.9,
                               intensity_range=(0.5, 1.5), max_tries=50)
    sampler.set_random_state(1)
    assert all(float(c["image"].mean()) >= 0.9 for c in sampler({"image": vol}))


def test_rand_cubes_too_small_volume_errors():
    with pytest.raises(ValueError, match="pad it first"):
        RandCubeSamplesd("image", cube_size=(16, 16, 16), num_samples=1)({"image": torch.zeros(1, 8, 16, 16)})
    with pytest.raises(ValueError, match="min_fraction"):
        RandCubeSamplesd("image", min_fraction=2.0)


def test_fixed_cubes_repeat_per_volume():
    sampler = FixedCubeSamplesd("image", seed=3, cube_size=(8, 8, 8), num_samples=4, border=0)
    vol = _volume()
    first = sampler({"image": vol})
    second = sampler({"image": vol})
    assert all(torch.equal(a["image"], b["image"]) for a, b in zip(first, second))
    moved = _volume()
    moved.meta["filename_or_obj"] = "/elsewhere/v.nii"
    assert all(torch.equal(a["image"], b["image"]) for a, b in zip(first, sampler({"image": moved})))
    other = _volume()
    other.meta["filename_or_obj"] = "w.nii"
    assert not all(torch.equal(a["image"], b["image"]) for a, b in zip(first, sampler({"image": other})))


def test_array_cubes_replay_numpy_memmap_and_affine(tmp_path):
    from monai_genesis.transforms import RandCubeSamples

    data = np.arange(2 * 20 * 18 * 10, dtype=np.float32).reshape(2, 20, 18, 10)
    path = tmp_path / "v.npy"
    np.save(path, data)
    mapped = np.load(path, mmap_mode="r")
    sampler = RandCubeSamples(cube_size=(8, 8, 4), num_samples=3, border=0)
    sampler.set_random_state(5)
    cubes = sampler(mapped)
    assert all(type(c) is np.ndarray and c.shape == (2, 8, 8, 4) for c in cubes)
    # randomize=False replays the drawn starts, on another type of the same volume
    tensor_cubes = sampler(MetaTensor(torch.from_numpy(data)), randomize=False)
    for start, cube, tcube in zip(sampler.starts, cubes, tensor_cubes):
        expected = data[(slice(None),) + tuple(slice(s, s + c) for s, c in zip(start, (8, 8, 4)))]
        np.testing.assert_array_equal(cube, expected)
        np.testing.assert_array_equal(tcube.numpy(), expected)
        # the cube's affine places its first voxel where it lay in the volume
        np.testing.assert_allclose(tcube.affine[:3, 3].numpy(), np.asarray(start, dtype=float))
    with pytest.raises(ValueError, match="channel-first"):
        sampler(np.zeros((20, 18, 10), np.float32)[None, None])
