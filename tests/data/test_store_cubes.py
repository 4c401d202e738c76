import os

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import DataLoader, MetaTensor
from monai.transforms import Compose, Orientationd
from monai.utils import set_determinism

from monai_genesis.data.store import prepare_store, read_store_volume
from monai_genesis.data.store_cubes import StoreCubeDataset
from monai_genesis.transforms import FixedCubeSamplesd, LoadVolumed, RandCubeSamples, intensity_transform

CUBE = (16, 16, 8)
LABELS = (("L", "R"), ("P", "A"), ("I", "S"))


def _write_ct(path, shape=(48, 40, 24), seed=0):
    rng = np.random.default_rng(seed)
    hu = np.full(shape, 400, np.int16)
    hu[: shape[0] // 2] = -900  # half lung, half tissue: the lung-rich filter has something to choose
    hu += rng.integers(-50, 50, size=shape).astype(np.int16)
    nib.save(nib.Nifti1Image(hu, np.diag([-1.0, -1.0, 2.0, 1.0])), str(path))
    return str(path)


@pytest.fixture
def store(tmp_path):
    paths = [_write_ct(tmp_path / f"ct{i}.nii.gz", seed=i) for i in range(3)]
    return paths, prepare_store(paths, tmp_path / "store", progress=False)


def _old_volume(path):
    return Compose([LoadVolumed("image"), Orientationd("image", axcodes="RAS", labels=LABELS), intensity_transform()])(
        {"image": path}
    )


def test_random_cubes_follow_the_cube_rule(store):
    paths, index = store
    kwargs = dict(cube_size=CUBE, border=(4, 4, 2), min_fraction=0.9, intensity_range=(0.0, 0.425))
    ds = StoreCubeDataset(index, paths, cubes_per_volume=5, **kwargs)
    ds.set_random_state(7)
    assert len(ds) == 15
    item = ds[6]
    image = item["image"]
    assert isinstance(image, MetaTensor) and image.dtype == torch.float32 and image.shape == (1, *CUBE)
    assert image.meta["filename_or_obj"] == os.path.abspath(paths[1])
    # the same draw as RandCubeSamples on the whole volume in memory, seeded alike
    reference = RandCubeSamples(num_samples=1, **kwargs)
    reference.set_random_state(7)
    volume = read_store_volume(index, paths[0])
    affine = np.asarray(index["volumes"][os.path.abspath(paths[0])]["affine"])
    for i in range(5):
        ds.set_random_state(100 + i)
        reference.set_random_state(100 + i)
        image = ds[i]["image"]
        reference.randomize(volume)
        ((x, y, z),) = reference.starts
        np.testing.assert_array_equal(image.numpy(), volume[:, x : x + 16, y : y + 16, z : z + 8])
        # lung-rich: the filter of the in-memory path is kept
        assert np.mean(image.numpy() <= 0.425) >= 0.9
        # the affine is moved to the cube's origin
        np.testing.assert_allclose(image.affine[:3, 3].numpy(), affine[:3, :3] @ (x, y, z) + affine[:3, 3], atol=1e-6)


def test_fixed_cubes_match_fixed_cube_samples(store):
    paths, index = store
    kwargs = dict(cube_size=CUBE, border=(4, 4, 2), num_samples=4)
    ds = StoreCubeDataset(index, paths, cubes_per_volume=4, fixed=True, seed=3, cube_size=CUBE, border=(4, 4, 2))
    old = FixedCubeSamplesd("image", seed=3, **kwargs)(_old_volume(paths[2]))
    for j in range(4):
        new = ds[8 + j]["image"]
        assert torch.abs(new - old[j]["image"]).max() <= 1 / 65535
        np.testing.assert_allclose(new.affine.numpy(), old[j]["image"].affine.numpy(), atol=1e-6)
    ds.set_random_state(1)
    again = [ds[i]["image"] for i in range(12)]
    ds.set_random_state(2)
    assert all(torch.equal(a, ds[i]["image"]) for i, a in enumerate(again))


def test_loader_is_seeded_per_worker_and_repeatable(store):
    paths, index = store

    def epochs(num_workers):
        set_determinism(0)
        ds = StoreCubeDataset(index, paths, cubes_per_volume=8, cube_size=CUBE, border=(4, 4, 2))
        loader = DataLoader(ds, batch_size=4, num_workers=num_workers, persistent_workers=num_workers > 0)
        return [torch.cat([b["image"] for b in loader]) for _ in range(2)]

    first, second = epochs(2), epochs(2)
    assert all(torch.equal(a, b) for a, b in zip(first, second))
    assert not torch.equal(first[0], first[1])  # a new epoch draws new cubes from the persistent workers
    assert first[0].shape == (24, 1, *CUBE)
    set_determinism(None)


def test_memory_does_not_grow_with_the_volumes(tmp_path):
    paths = [_write_ct(tmp_path / f"v{i}.nii.gz", shape=(20, 20, 10), seed=i) for i in range(12)]
    index = prepare_store(paths, tmp_path / "store", progress=False)
    ds = StoreCubeDataset(index, cubes_per_volume=2, cube_size=CUBE, border=0, max_open=3)
    ds.set_random_state(0)
    for i in range(len(ds)):
        ds[i]
        assert len(ds._open) <= 3
        assert all(isinstance(v.stored, np.memmap) for v in ds._open.values())
    with pytest.raises(ValueError, match="max_open"):
        StoreCubeDataset(index, max_open=0)


def test_small_volume_is_padded_and_missing_entries_are_named(tmp_path, caplog):
    small = _write_ct(tmp_path / "small.nii.gz", shape=(12, 20, 6))
    index = prepare_store([small], tmp_path / "store", progress=False)
    ds = StoreCubeDataset(tmp_path / "store", [small, str(tmp_path / "absent.nii.gz")], cubes_per_volume=1,
                          cube_size=CUBE, border=0)
    assert "absent.nii.gz" in caplog.text and len(ds) == 1
    ds.set_random_state(0)
    cube = ds[0]["image"].numpy()
    assert cube.shape == (1, *CUBE)
    # 2 and 1 zero voxels each side on the short axes, as SpatialPadd pads
    assert np.all(cube[:, :2] == 0) and np.all(cube[:, -2:] == 0) and np.all(cube[..., :1] == 0)
    assert cube[:, 2:-2, :, 1:-1].min() > 0
    with pytest.raises(ValueError, match="no volume to serve"):
        StoreCubeDataset(index, [str(tmp_path / "absent.nii.gz")])
