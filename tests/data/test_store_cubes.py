import gc
import os

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import DataLoader, MetaTensor, list_data_collate
from monai.transforms import Compose, Orientationd
from monai.utils import set_determinism

from monai_genesis.data.store import VolumeStore
from monai_genesis.data import worker_batches
from monai_genesis.data.store_cubes import StoreCubeBatch, StoreCubeDataset, collate_store_cubes
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
    return paths, VolumeStore.prepare(paths, tmp_path / "store", progress=False)


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
    volume = index[paths[0]].read()
    affine = index[paths[0]].affine
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


def _open_fds():
    return len(os.listdir("/proc/self/fd"))


def _mapped(folder):
    with open("/proc/self/maps") as f:
        return [line for line in f if str(folder) in line]


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")
def test_memory_and_open_files_do_not_grow_with_the_volumes(tmp_path):
    paths = [_write_ct(tmp_path / f"v{i}.nii.gz", shape=(40, 40, 20), seed=i) for i in range(12)]
    index = VolumeStore.prepare(paths, tmp_path / "store", progress=False)
    ds = StoreCubeDataset(index, cubes_per_volume=2, cube_size=CUBE, border=0, max_open=3)
    ds.set_random_state(0)
    before = _open_fds()
    for i in range(len(ds)):
        ds[i]
        assert ds.open_files() <= 3 and _open_fds() - before <= 3
    ds.__getitems__(list(range(len(ds))))
    assert ds.open_files() <= 3 and _open_fds() - before <= 3
    # the volumes as cubes are cut from them: the last ones used, as many as the files
    assert len(ds._volumes) == 3
    # nothing of the store is memory-mapped: the pages read never count in the process's resident memory
    assert not _mapped(tmp_path / "store")
    with pytest.raises(ValueError, match="max_open"):
        StoreCubeDataset(index, max_open=0)


def _loader(ds, fast, num_workers, persistent=True, **kwargs):
    extra = {"collate_fn": collate_store_cubes} if fast else {}
    return DataLoader(ds, num_workers=num_workers, persistent_workers=persistent and num_workers > 0, **extra,
                      **kwargs)


def _assert_same_batch(fast, slow):
    assert isinstance(fast, MetaTensor) and fast.dtype == torch.float32 and fast.is_batch
    assert torch.equal(fast.as_tensor(), slow.as_tensor())
    assert fast.meta["filename_or_obj"] == slow.meta["filename_or_obj"]
    assert torch.equal(fast.affine, slow.affine) and fast.meta["space"] == slow.meta["space"]
    assert fast.applied_operations == slow.applied_operations


@pytest.mark.parametrize("num_workers", [0, 2])
def test_batched_loader_gives_the_batches_of_the_item_path(store, num_workers):
    paths, index = store

    def epochs(fast, **kwargs):
        set_determinism(0)
        ds = StoreCubeDataset(index, paths, cubes_per_volume=8, cube_size=CUBE, border=(4, 4, 2), **kwargs)
        loader = _loader(ds, fast, num_workers, batch_size=5, shuffle=True)
        return [[b["image"] for b in loader] for _ in range(3)]

    for kwargs in ({}, {"min_fraction": 0.6}):
        fast, slow = epochs(True, **kwargs), epochs(False, **kwargs)
        for fast_epoch, slow_epoch in zip(fast, slow):
            assert len(fast_epoch) == len(slow_epoch) == 5
            for a, b in zip(fast_epoch, slow_epoch):
                _assert_same_batch(a, b)
    if num_workers:
        # the batches came through the workers' reused buffers, a few per worker
        assert 0 < len(worker_batches._Received.buffers) <= 2 * num_workers * 4
    set_determinism(None)


def test_batched_cubes_are_the_float32_intensities_within_quantisation(store):
    paths, index = store
    ds = StoreCubeDataset(index, paths, cubes_per_volume=4, fixed=True, seed=3, cube_size=CUBE, border=(4, 4, 2))
    read = ds.__getitems__(list(range(12)))
    assert read.images.dtype == np.float32 and read.images.shape == (12, 1, *CUBE) and read.slot is None
    # the batch takes the intensities as they were read, without a copy
    batch = collate_store_cubes(read)["image"]
    assert batch.data_ptr() == read.images.ctypes.data
    for k, path in enumerate(paths):
        old = FixedCubeSamplesd("image", seed=3, cube_size=CUBE, border=(4, 4, 2), num_samples=4)(_old_volume(path))
        for j in range(4):
            # uint16 scaled back: within half a step of the volume's range (1/65535 of [0, 1])
            assert torch.abs(batch[4 * k + j] - old[j]["image"]).max() <= 0.5 / 65535 + 1e-7
            np.testing.assert_allclose(batch.affine[4 * k + j].numpy(), old[j]["image"].affine.numpy(), atol=1e-6)


def test_fixed_cubes_through_workers_match_the_items(store):
    paths, index = store
    ds = StoreCubeDataset(index, paths, cubes_per_volume=4, fixed=True, seed=1, cube_size=CUBE, border=(4, 4, 2))
    items = [ds[i]["image"] for i in range(len(ds))]
    for _ in range(2):
        batches = torch.cat([b["image"] for b in _loader(ds, True, 2, batch_size=4)])
        assert all(torch.equal(batches[i], item) for i, item in enumerate(items))


def test_batch_mixing_a_padded_volume_is_float32_and_matches_the_items(tmp_path):
    small = _write_ct(tmp_path / "small.nii.gz", shape=(12, 20, 6))
    large = _write_ct(tmp_path / "large.nii.gz", shape=(30, 30, 12), seed=1)
    index = VolumeStore.prepare([small, large], tmp_path / "store", progress=False)
    ds = StoreCubeDataset(index, [small, large], cubes_per_volume=3, cube_size=CUBE, border=0)
    ds.set_random_state(5)
    batch = ds.__getitems__(list(range(6)))
    assert batch.images.dtype == np.float32 and len(batch) == 6
    ds.set_random_state(5)
    items = [ds[i] for i in range(6)]
    _assert_same_batch(collate_store_cubes(batch)["image"], list_data_collate(items)["image"])
    # any collate_fn takes the batch as its items
    _assert_same_batch(list_data_collate(batch)["image"], list_data_collate(items)["image"])


def test_workers_fall_back_to_fresh_tensors_and_forget_ended_workers(store, monkeypatch):
    paths, index = store
    ds = StoreCubeDataset(index, paths, cubes_per_volume=4, fixed=True, cube_size=CUBE, border=(4, 4, 2))
    expected = torch.cat([ds[i]["image"][None] for i in range(len(ds))])
    monkeypatch.setattr(worker_batches, "_POOL_LIMIT", 0)
    assert torch.equal(torch.cat([b["image"] for b in _loader(ds, True, 1, batch_size=4)]), expected)
    monkeypatch.setattr(worker_batches, "_POOL_LIMIT", 16)
    for _ in range(3):
        # workers that are not persistent start again every epoch; the buffers of the ended ones are let go
        loader = _loader(ds, True, 2, persistent=False, batch_size=4)
        assert torch.equal(torch.cat([b["image"] for b in loader]), expected)
    assert len(worker_batches._Received.pids) <= 4


def test_a_held_batch_keeps_its_values_and_its_buffer_goes_back_when_dropped(store, monkeypatch):
    paths, index = store
    ds = StoreCubeDataset(index, paths, cubes_per_volume=8, fixed=True, cube_size=CUBE, border=(4, 4, 2))
    expected = torch.cat([ds[i]["image"][None] for i in range(len(ds))])
    monkeypatch.setattr(worker_batches, "_POOL_LIMIT", 2)
    before = set(worker_batches._Received.buffers)
    loader = _loader(ds, True, 1, batch_size=4)
    # every batch of the epoch held at once: the worker never writes into a buffer a held batch views
    held = [b["image"] for b in loader]
    views = [b[1:3] for b in held]  # views outlive their batches
    assert len(set(worker_batches._Received.buffers) - before) == 2 and len(held) == 6
    del held
    gc.collect()
    assert torch.equal(torch.cat([v for v in views]), torch.cat([expected[4 * k + 1 : 4 * k + 3] for k in range(6)]))
    flags = [int(t.numpy()[:8].view(np.int64)[0]) for k, t in worker_batches._Received.buffers.items() if k not in before]
    assert flags == [1, 1]  # still viewed
    del views
    gc.collect()
    flags = [int(t.numpy()[:8].view(np.int64)[0]) for k, t in worker_batches._Received.buffers.items() if k not in before]
    assert flags == [0, 0]  # handed back
    # dropped as they come, two buffers carry every batch of three epochs
    for _ in range(3):
        assert torch.equal(torch.cat([b["image"] for b in loader]), expected)
    assert len(set(worker_batches._Received.buffers) - before) == 2


def test_transform_keeps_the_item_path(store):
    paths, index = store
    ds = StoreCubeDataset(index, paths, cubes_per_volume=2, cube_size=CUBE, border=(4, 4, 2),
                          transform=lambda d: {**d, "label": d["image"] * 2})
    ds.set_random_state(0)
    items = ds.__getitems__([0, 1, 2])
    assert isinstance(items, list) and set(items[0]) == {"image", "label"}
    batch = collate_store_cubes(items)
    assert batch["image"].shape == (3, 1, *CUBE) and torch.equal(batch["label"], batch["image"] * 2)
    # the bundle's Compose whose corruption is disabled (done on the device) keeps the batched path
    ds = StoreCubeDataset(index, paths, cubes_per_volume=2, cube_size=CUBE, border=(4, 4, 2), transform=Compose([]))
    assert isinstance(ds.__getitems__([0, 1]), StoreCubeBatch)


def test_small_volume_is_padded_and_missing_entries_are_named(tmp_path, caplog):
    small = _write_ct(tmp_path / "small.nii.gz", shape=(12, 20, 6))
    index = VolumeStore.prepare([small], tmp_path / "store", progress=False)
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


def test_padded_cubes_read_only_the_voxels_they_cover(tmp_path):
    # short along two axes: every cube has padding, and cubes at the ends cover less of the volume
    small = _write_ct(tmp_path / "small.nii.gz", shape=(12, 40, 6))
    volume = VolumeStore.prepare([small], tmp_path / "store", progress=False)[0]
    ds = StoreCubeDataset(VolumeStore(tmp_path / "store"), cubes_per_volume=40, cube_size=CUBE,
                          border=0, min_fraction=0.3, intensity_range=(0.0, 0.2), max_tries=3)
    source = ds.volume(0)
    assert source.padded and source.shape == (1, 16, 40, 8) and source.pad_before == (2, 0, 1)
    # what SpatialPadd gives: the whole volume padded, then cut
    whole = np.pad(volume.read(), [(0, 0), (2, 2), (0, 0), (1, 1)])
    ds.set_random_state(3)
    starts = []
    for i in range(len(ds)):
        _, start = ds._position(i)
        cube = np.empty((1, *CUBE), np.float32)
        source.read_float_into(start, CUBE, cube)
        np.testing.assert_array_equal(cube, whole[(slice(None),) + tuple(slice(a, a + c) for a, c in zip(start, CUBE))])
        starts.append(start)
        # nothing of the volume is kept once its cube is read
        assert source._last is None
    assert len({s[1] for s in starts}) > 5  # positions along the long axis vary
    # a region of the filter partly outside the volume, and one wholly in the padding
    np.testing.assert_array_equal(source[(slice(None), slice(0, 3), slice(0, 40), slice(6, 8))],
                                  whole[:, 0:3, :, 6:8])
    assert not source[(slice(None), slice(0, 2), slice(0, 4), slice(0, 1))].any()


def test_the_filter_keeps_no_cube_of_the_volumes_it_read(store):
    paths, index = store
    ds = StoreCubeDataset(index, paths, cubes_per_volume=3, cube_size=CUBE, border=(4, 4, 2), min_fraction=0.6)
    ds.set_random_state(0)
    for i in range(len(ds)):
        ds[i]
    ds.__getitems__(list(range(len(ds))))
    assert [ds.volume(i)._last for i in range(len(paths))] == [None] * len(paths)
