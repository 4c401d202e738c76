import errno
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.transforms import Compose, Orientationd, Spacingd

from monai_genesis.data import store as store_module
from monai_genesis.data.store import StoreSettings, VolumeStore, ensure_store, prepare_command, store_key
from monai_genesis.errors import GenesisInputError
from monai_genesis.transforms import LoadVolumed, intensity_transform

SHARED_CT = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "totalsegmentator" / "example_ct.nii.gz"
LABELS = (("L", "R"), ("P", "A"), ("I", "S"))
ROOT = Path(__file__).resolve().parents[2]


def _write_ct(path, shape=(40, 36, 20), seed=0, affine=None, channels=None):
    rng = np.random.default_rng(seed)
    hu = rng.integers(-1100, 1400, size=shape + ((channels,) if channels else ())).astype(np.int16)
    # an LPS-oriented affine, so that the store has to reorient it to RAS
    affine = np.diag([-0.8, -0.8, 2.0, 1.0]) if affine is None else affine
    nib.save(nib.Nifti1Image(hu, affine), str(path))
    return str(path)


def _old_path(path, setting="ct", pixdim=None):
    transforms = [LoadVolumed("image"), Orientationd("image", axcodes="RAS", labels=LABELS)]
    if pixdim:
        transforms.append(Spacingd("image", pixdim=pixdim, mode="bilinear"))
    transforms.append(intensity_transform(setting))
    return Compose(transforms)({"image": path})["image"].numpy()


def _mtimes(folder):
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in Path(folder).rglob("*") if p.is_file()}


def _prepare(datalist, folder, on_error="skip", verify=False, **settings):
    return VolumeStore.prepare(datalist, folder, StoreSettings(**settings), on_error=on_error, verify=verify,
                               progress=False)


def _npy(store):
    return sorted(p.name for p in Path(store.folder).glob("*.npy"))


@pytest.fixture
def volumes(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    return [_write_ct(src / f"ct{i}.nii.gz", seed=i) for i in range(3)]


def test_store_holds_half_the_bytes_and_the_old_intensities(tmp_path, volumes):
    store = _prepare([{"image": p} for p in volumes], tmp_path / "store")
    assert len(store) == 3 and store.keys == [os.path.abspath(p) for p in volumes]
    for path in volumes:
        volume = store[path]
        record = store.records[os.path.abspath(path)]
        old = _old_path(path)
        assert volume.dtype == np.uint16 and volume.read_raw().dtype == np.uint16
        assert record["shape"] == list(old.shape) == list(volume.shape)
        # the .npy header is 128 bytes; the data are exactly half of float32
        assert os.path.getsize(volume.path) == old.nbytes // 2 + 128
        assert os.path.dirname(volume.path) == store.folder == str(tmp_path / "store" / StoreSettings().digest)
        new = volume.read()
        assert new.dtype == np.float32
        assert np.abs(new - old).max() <= record["scale"] / 2 + 1e-7
        assert record["scale"] <= 1 / 65535 + 1e-12
        assert volume.spacing == pytest.approx([0.8, 0.8, 2.0])
        assert record["settings"]["intensity"] == "ct" and volume.source == os.path.abspath(path)
        # a region is the same values as the whole volume cut, by each way of reading: whole rows, rows read in
        # place (whole along the last axes), rows cut from a buffer
        whole = tuple(slice(0, s) for s in volume.shape[2:])
        for region in [
            (slice(None), slice(3, 20), slice(5, 9), slice(2, 18)),
            (slice(None), slice(3, 20)) + whole,
            (slice(None), slice(3, 20), slice(5, 9), whole[1]),
        ]:
            np.testing.assert_array_equal(volume.read(region), new[region])
            assert volume.read_raw(region).dtype == np.uint16
    # opened again (reading only), the same records
    again = VolumeStore(tmp_path / "store", StoreSettings(), data=volumes)
    assert again.keys == store.keys and again.records == store.records
    assert VolumeStore(tmp_path / "store").keys == sorted(store.keys)


@pytest.mark.parametrize("dtype", ["uint16", "float32", "float16"])
def test_compiled_reads_give_the_values_and_floats_of_the_python_reads(tmp_path, dtype, monkeypatch):
    pytest.importorskip("numba")
    path = _write_ct(tmp_path / "two.nii.gz", shape=(30, 26, 22), channels=2)
    volume = _prepare([path], tmp_path / "store", dtype=dtype)[0]
    assert volume.shape == (2, 30, 26, 22) and volume.dtype == np.dtype(dtype)
    z = slice(0, 22)
    regions = [
        (slice(None), slice(3, 20), slice(5, 9), slice(2, 18)),  # cut along every axis
        (slice(1, 2), slice(0, 30), slice(4, 26), slice(7, 8)),  # one channel, one slice along z
        (slice(None), slice(29, 30), slice(0, 1), z),  # one row, whole along z
        (slice(None), slice(2, 5), slice(0, 26), z),  # whole along the last axes
        None,  # the whole volume
    ]
    read = [(volume.read_raw(r), volume.read(r)) for r in regions]
    calls = []
    monkeypatch.setattr(store_module.kernels, "read_region", _counting(store_module.kernels.read_region, calls))
    read = [(volume.read_raw(r), volume.read(r)) for r in regions]
    # compiled: every float32 read, and the raw reads but those of whole rows (one read per channel); none of float16
    assert len(calls) == (8 if dtype != "float16" else 0)
    monkeypatch.setenv("MONAI_GENESIS_NUMBA", "0")
    for region, (raw, floats) in zip(regions, read):
        python_raw, python_floats = volume.read_raw(region), volume.read(region)
        assert raw.dtype == python_raw.dtype == volume.dtype and floats.dtype == python_floats.dtype == np.float32
        np.testing.assert_array_equal(raw, python_raw)
        np.testing.assert_array_equal(floats, python_floats)
    assert len(calls) == (8 if dtype != "float16" else 0)
    # into a given output (a cube of a batch), and the float32 of a cut region is its stored values scaled
    monkeypatch.delenv("MONAI_GENESIS_NUMBA")
    out = np.full((2, 17, 4, 16), np.nan, dtype=np.float32)
    assert volume.read_float(regions[0], out) is out
    np.testing.assert_array_equal(out, read[0][1])
    if dtype == "uint16":
        expected = read[0][0].astype(np.float32) * volume.scale + volume.offset
        np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("numba", ["1", "0"])
def test_threads_reading_at_once_get_their_own_values(tmp_path, volumes, monkeypatch, numba):
    from concurrent.futures import ThreadPoolExecutor

    monkeypatch.setenv("MONAI_GENESIS_NUMBA", numba)
    volume = _prepare(volumes[:1], tmp_path / "store")[0]
    whole = volume.read()
    rng = np.random.default_rng(0)
    regions = []
    for _ in range(64):
        start = [int(rng.integers(0, s - 8)) for s in volume.shape[1:]]
        regions.append((slice(None),) + tuple(slice(a, a + 8) for a in start))

    def read(region):
        # the reads release the GIL: two threads read at the same time
        return [volume.read(region) for _ in range(20)]

    with ThreadPoolExecutor(4) as pool:
        for region, values in zip(regions, pool.map(read, regions)):
            for v in values:
                np.testing.assert_array_equal(v, whole[region])


def _counting(fn, calls):
    def counted(*args, **kwargs):
        calls.append(args[4])
        return fn(*args, **kwargs)

    return counted


def test_a_short_file_is_named_by_the_compiled_read(tmp_path, volumes):
    pytest.importorskip("numba")
    volume = _prepare(volumes[:1], tmp_path / "store")[0]
    _, nx, ny, _ = volume.shape
    region = (slice(None), slice(nx - 3, nx), slice(ny - 8, ny), slice(3, 9))  # reaching the file's end
    volume.read_raw(region)
    os.truncate(volume.path, os.path.getsize(volume.path) - 200)
    for read in (volume.read_raw, volume.read):
        with pytest.raises(GenesisInputError, match="shorter than its record says") as err:
            read(region)
        assert os.path.basename(volume.path) in str(err.value)


def test_float16_and_resampling(tmp_path, volumes):
    store = _prepare(volumes[:1], tmp_path / "store", pixdim=(1.6, 1.6, 2.0), dtype="float16")
    volume = store[0]
    old = _old_path(volumes[0], pixdim=(1.6, 1.6, 2.0))
    assert volume.spacing == pytest.approx([1.6, 1.6, 2.0]) and list(volume.shape) == list(old.shape)
    assert old.shape[1:] == (21, 19, 20)
    assert np.abs(volume.read() - old).max() <= 2**-11


def test_rerun_touches_nothing(tmp_path, volumes):
    folder = tmp_path / "store"
    first = _prepare(volumes, folder)
    before = _mtimes(folder)
    again = _prepare(volumes, folder)
    assert _mtimes(folder) == before
    assert again.records == first.records


def test_changed_file_is_a_new_file_touched_file_is_not_redone(tmp_path, volumes):
    folder = tmp_path / "store"
    store = _prepare(volumes, folder)
    names = {p: store[p].path for p in volumes}
    before = _mtimes(folder)
    _write_ct(volumes[0], seed=99)
    stat = os.stat(volumes[1])
    os.utime(volumes[1], ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    store = _prepare(volumes, folder)
    after = _mtimes(folder)
    # a new content is a new file; the earlier file is left as it was for a reader that may hold it open
    assert store[volumes[0]].path != names[volumes[0]]
    assert after[os.path.relpath(names[volumes[0]], folder)] == before[os.path.relpath(names[volumes[0]], folder)]
    assert store[volumes[1]].path == names[volumes[1]] and store[volumes[2]].path == names[volumes[2]]
    for p in volumes[1:]:
        assert after[os.path.relpath(names[p], folder)] == before[os.path.relpath(names[p], folder)]
    assert np.abs(store[volumes[0]].read() - _old_path(volumes[0])).max() <= 1e-4
    # the touched file's new time is recorded, so the next run does not hash it again
    assert store.records[os.path.abspath(volumes[1])]["source_fingerprint"]["mtime_ns"] == stat.st_mtime_ns + 10**9


def test_other_settings_are_kept_apart_and_named(tmp_path, volumes, caplog):
    folder = tmp_path / "store"
    ct = _prepare(volumes[:1], folder)
    before = _mtimes(folder)
    with caplog.at_level(logging.WARNING, logger="monai_genesis.data.store"):
        minmax = _prepare(volumes[:1], folder, intensity="minmax")
    assert "other settings" in caplog.text and "intensity: minmax vs ct" in caplog.text
    assert "--intensity ct" in caplog.text
    # the CT preparation is untouched and still serves the CT values
    assert all(_mtimes(folder)[k] == v for k, v in before.items())
    assert np.abs(ct[0].read() - _old_path(volumes[0])).max() <= 1e-4
    assert np.abs(minmax[0].read() - _old_path(volumes[0], "minmax")).max() <= 1e-4
    assert minmax.folder != ct.folder
    # an entry's own setting is part of its settings too
    store = _prepare([{"image": volumes[0], "intensity": "minmax"}], folder, intensity="ct")
    (record,) = [store.records[k] for k in store.keys]
    assert record["settings"]["intensity"] == "minmax"
    # two preparations: opening without settings asks which
    with pytest.raises(GenesisInputError, match="2 preparations"):
        VolumeStore(folder)


def test_settings_of_the_command_and_of_a_bundle_are_one_object(tmp_path, volumes, caplog):
    """A store made by ``prepare --pixdim ... --dtype float16`` is reused by a run with the same settings and left
    alone by a run with others (#21 case 1)."""
    folder = tmp_path / "store"
    line = prepare_command(str(folder), dataset_dir=str(tmp_path / "src"), pixdim=(2, 2, 3), store_dtype="float16")
    settings = StoreSettings(pixdim=(2.0, 2.0, 3.0), dtype="float16")
    assert "3 volumes" in line and "--pixdim 2,2,3" in line and "--store_dtype float16" in line
    before = _mtimes(folder)
    reused = ensure_store({"training": volumes[:2], "validation": volumes[2:]}, str(folder), settings, progress=False)
    assert _mtimes(folder) == before and reused[0].spacing == pytest.approx([2.0, 2.0, 3.0])
    with caplog.at_level(logging.WARNING, logger="monai_genesis.data.store"):
        native = ensure_store(volumes, str(folder), StoreSettings(), progress=False)
    assert "--pixdim 2,2,3" in caplog.text and "--store_dtype float16" in caplog.text
    assert all(_mtimes(folder)[k] == v for k, v in before.items())
    assert native[0].spacing == pytest.approx([0.8, 0.8, 2.0])
    # the bundles' settings node is read by `prepare --config_file`
    config = tmp_path / "train.json"
    config.write_text(json.dumps({
        "intensity": "mri", "store_settings": {"_target_": "monai_genesis.data.StoreSettings",
                                               "intensity": "@intensity", "pixdim": [1.5, 1.5, 1.5]}}))
    assert StoreSettings.from_config(str(config)) == StoreSettings(intensity="mri", pixdim=(1.5,) * 3)
    assert StoreSettings.from_config(str(config), {"intensity": "ct"}).intensity == "ct"
    line = prepare_command(str(tmp_path / "s2"), dataset_dir=str(tmp_path / "src"), config_file=str(config),
                           store_dtype="float32")
    assert "--intensity mri --pixdim 1.5,1.5,1.5" in line and "--store_dtype float32" in line
    with pytest.raises(GenesisInputError, match="no 'store_settings'"):
        StoreSettings.from_config(str(tmp_path / "s2" / os.listdir(tmp_path / "s2")[0] / "settings.json"))


def test_interrupted_preparation_never_leaves_a_file_of_other_values(tmp_path, volumes, monkeypatch):
    """A re-preparation with other settings killed after one file; the default preparation then serves its own
    values, and a preparation killed before its first index write keeps the volumes it finished (#21 case 2)."""
    folder = tmp_path / "store"
    ct = _prepare(volumes, folder)
    means = [ct[p].read().mean() for p in volumes]
    real_save, calls = np.save, []

    def dies_on_the_second(f, array):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        real_save(f, array)

    monkeypatch.setattr(np, "save", dies_on_the_second)
    with pytest.raises(KeyboardInterrupt):
        _prepare(volumes, folder, intensity="minmax")
    monkeypatch.setattr(np, "save", real_save)
    again = _prepare(volumes, folder)
    assert [again[p].read().mean() for p in volumes] == means
    # the killed minmax preparation wrote no index yet; its finished volume is found by its record
    minmax_folder = tmp_path / "store" / StoreSettings(intensity="minmax").digest
    assert not (minmax_folder / "index.json").exists()
    mtimes = _mtimes(minmax_folder)
    minmax = _prepare(volumes, folder, intensity="minmax")
    finished = [p for p in mtimes if p.endswith(".npy")]
    assert len(finished) == 1 and _mtimes(minmax_folder)[finished[0]] == mtimes[finished[0]]
    assert len(_npy(minmax)) == 3 and not [p for p in os.listdir(minmax_folder) if p.endswith(".tmp")]


def test_a_running_reader_keeps_its_values_while_another_process_prepares(tmp_path, volumes):
    """Run A reads; process B re-prepares the same store folder with another setting and with a changed source:
    A's cubes keep A's values (#21 case 3)."""
    from monai_genesis.data.store_cubes import StoreCubeDataset

    folder = tmp_path / "store"
    store = _prepare(volumes, folder)
    ds = StoreCubeDataset(store, cubes_per_volume=2, cube_size=(16, 16, 8), border=0, fixed=True)
    first = [ds[i]["image"].clone() for i in range(len(ds))]
    code = (
        "import sys, numpy as np, nibabel as nib; from monai_genesis.data import VolumeStore, StoreSettings; "
        "p = sys.argv[2]; nib.save(nib.Nifti1Image(np.arange(28800, dtype=np.int16).reshape(40, 36, 20) % 7 * 300, np.eye(4)), p); "
        "VolumeStore.prepare([p], sys.argv[1], StoreSettings(intensity='minmax'), progress=False); "
        "VolumeStore.prepare([p], sys.argv[1], StoreSettings(), progress=False)"
    )
    subprocess.run([sys.executable, "-c", code, str(folder), volumes[0]], check=True, cwd=ROOT)
    again = [ds[i]["image"] for i in range(len(ds))]
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    # a new run sees the new source
    hu = np.unique((_prepare(volumes, folder)[0].read() * 2000 - 1000).round())
    assert hu.tolist() == [0, 300, 600, 900, 1000]


def test_paths_in_the_index_stay_inside_the_store(tmp_path, volumes):
    folder = tmp_path / "store"
    store = _prepare(volumes[:1], folder)
    index_path = Path(store.folder) / "index.json"
    index = json.loads(index_path.read_text())
    key = store.keys[0]
    for bad in ("../../../../etc/passwd", str(Path(store[0].path)), "../other/ct0-0123456789abcdef.npy"):
        index["volumes"][key]["file"] = bad
        index_path.write_text(json.dumps(index))
        with pytest.raises(GenesisInputError, match="not a volume of that folder") as err:
            VolumeStore(folder)
        assert key in str(err.value) and "index.json" in str(err.value)


def test_damaged_files_and_index_are_named_and_redone(tmp_path, volumes, caplog):
    from monai_genesis.data.store_cubes import StoreCubeDataset

    folder = tmp_path / "store"
    store = _prepare(volumes, folder)
    truncated, garbage = store[volumes[0]].path, store[volumes[1]].path
    os.truncate(truncated, os.path.getsize(truncated) // 2)
    Path(garbage).write_bytes(b"\x00garbage" * 100)
    # a reader names the file and the fix
    ds = StoreCubeDataset(VolumeStore(folder), cubes_per_volume=1, cube_size=(16, 16, 8), border=0)
    for i, name in ((0, truncated), (1, garbage)):
        with pytest.raises(GenesisInputError, match="run the preparation again") as err:
            ds[i]
        assert os.path.basename(name) in str(err.value)
    # the preparation checks what it reuses and redoes what is broken
    with caplog.at_level(logging.WARNING, logger="monai_genesis.data.store"):
        store = _prepare(volumes, folder)
    assert os.path.basename(truncated) in caplog.text and "cut short" in caplog.text
    assert os.path.basename(garbage) in caplog.text
    for p in volumes:
        assert np.abs(store[p].read() - _old_path(p)).max() <= 1e-4
    # values changed in place are seen by verify (CRC-32 of every stored file)
    changed = np.load(store[volumes[2]].path)
    changed[0, 0, 0, 0] += 1
    np.save(store[volumes[2]].path, changed)
    assert _prepare(volumes, folder).records == store.records
    with caplog.at_level(logging.WARNING, logger="monai_genesis.data.store"):
        _prepare(volumes, folder, verify=True)
    assert "CRC-32" in caplog.text
    # a damaged index: named when opened, rebuilt from the volume records by a preparation
    (Path(store.folder) / "index.json").write_text("{not json")
    with pytest.raises(GenesisInputError, match="index.json is damaged"):
        VolumeStore(folder)
    mtimes = {k: v for k, v in _mtimes(folder).items() if k.endswith(".npy")}
    rebuilt = _prepare(volumes, folder)
    assert len(rebuilt) == 3 and {k: v for k, v in _mtimes(folder).items() if k.endswith(".npy")} == mtimes
    assert VolumeStore(folder).records == rebuilt.records


def test_store_dir_that_is_a_file_and_read_only_stores(tmp_path, volumes, monkeypatch, caplog):
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    with pytest.raises(GenesisInputError, match="is a file, not a folder"):
        _prepare(volumes, a_file)
    folder = tmp_path / "store"
    _prepare(volumes[:2], folder)
    stat = os.stat(volumes[0])
    os.utime(volumes[0], ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))

    def refused(path, write):
        raise PermissionError(errno.EACCES, "Permission denied", path)

    monkeypatch.setattr(store_module, "_write_atomic", refused)
    # touched sources of a read-only store: the store is used as it is
    with caplog.at_level(logging.INFO, logger="monai_genesis.data.store"):
        assert len(_prepare(volumes[:2], folder)) == 2
    assert "read-only" in caplog.text
    # a volume to write: the error says what to do
    with pytest.raises(GenesisInputError, match="must be written.*writable --store_dir"):
        _prepare(volumes, folder)


def test_stale_temporary_files_are_removed_and_two_preparations_merge(tmp_path, volumes):
    folder = tmp_path / "store"
    store = _prepare(volumes[:1], folder)
    stale = Path(store.folder) / ".ct1-0123456789abcdef.npy.999999.tmp"
    stale.write_bytes(b"x" * 1000)
    # a second preparation of another datalist into the same store keeps the first one's volumes in the index
    _prepare(volumes[1:], folder)
    assert not stale.exists()
    assert sorted(VolumeStore(folder).keys) == sorted(os.path.abspath(p) for p in volumes)


def test_duplicates_and_volumes_in_two_parts_are_named(tmp_path, volumes, caplog):
    with caplog.at_level(logging.WARNING, logger="monai_genesis.data.store"):
        store = _prepare({"training": [volumes[0], volumes[0], volumes[1]], "validation": [volumes[1]]},
                         tmp_path / "store")
    assert len(store) == 2
    assert "more than once" in caplog.text and "training and validation" in caplog.text and "fix the split" in caplog.text


def test_bad_volumes_are_named(tmp_path, volumes, caplog):
    two_d = tmp_path / "src" / "slice.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((32, 32), np.int16), np.eye(4)), str(two_d))
    with pytest.raises(GenesisInputError, match=r"slice.nii.gz is a 2-D image.*3-D volumes"):
        _prepare([str(two_d)], tmp_path / "s", on_error="raise")
    nan = tmp_path / "src" / "nan.nii.gz"
    nib.save(nib.Nifti1Image(np.full((20, 20, 10), np.nan, np.float32), np.eye(4)), str(nan))
    # the reason is the intensity check's own message, not MONAI's "applying transform" wrapper, in both modes
    with pytest.raises(GenesisInputError, match=r"volume .*nan.nii.gz holds 4000 NaN"):
        _prepare([str(nan)], tmp_path / "s", on_error="raise", intensity="mri")
    with caplog.at_level(logging.WARNING, logger="monai_genesis.data.store"):
        store = _prepare([*volumes, str(nan)], tmp_path / "s", intensity="mri")
    assert len(store) == 3 and "nan.nii.gz holds 4000 NaN" in caplog.text and "1 of 4 volumes skipped" in caplog.text
    assert "applying transform" not in caplog.text


def test_channels_are_checked_against_the_network(tmp_path, volumes):
    two = _write_ct(tmp_path / "src" / "two.nii.gz", shape=(24, 24, 12), channels=2)
    store = ensure_store([two], str(tmp_path / "store"), StoreSettings(intensity="minmax"), progress=False)
    assert store[0].shape[0] == 2
    with pytest.raises(GenesisInputError, match=r"two.nii.gz has 2 channels, the network takes 1; pass --in_channels 2 --out_channels 2"):
        ensure_store([two], str(tmp_path / "store"), StoreSettings(intensity="minmax"), channels=1, progress=False)


def test_unreadable_file_is_named_and_skipped_or_refused(tmp_path, volumes, caplog):
    bad = tmp_path / "src" / "broken.nii.gz"
    bad.write_bytes(b"not a nifti file")
    folder = tmp_path / "store"
    with caplog.at_level(logging.WARNING, logger="monai_genesis.data.store"):
        store = _prepare([*volumes, str(bad)], folder)
    assert str(bad) in caplog.text and "cannot be read" in caplog.text
    assert store.keys == [os.path.abspath(p) for p in volumes]
    with pytest.raises(ValueError, match="broken.nii.gz"):
        _prepare([str(bad)], folder, on_error="raise")
    with pytest.raises(ValueError, match="no volume of the datalist"):
        _prepare([str(bad)], folder)
    with pytest.raises(ValueError, match="missing"):
        _prepare([str(tmp_path / "missing.nii.gz")], folder, on_error="raise")


def test_nothing_half_written_is_left_or_read(tmp_path, volumes, monkeypatch):
    folder = tmp_path / "store"
    _prepare(volumes[:1], folder)
    real_save = np.save

    def failing_save(f, array):
        real_save(f, array[..., : array.shape[-1] // 2])
        raise OSError("disk full")

    monkeypatch.setattr(np, "save", failing_save)
    with pytest.raises(ValueError, match="disk full"):
        _prepare(volumes, folder, on_error="raise")
    monkeypatch.setattr(np, "save", real_save)
    store = VolumeStore(folder)
    assert not [p for p in os.listdir(store.folder) if p.endswith(".tmp")]
    assert store.keys == [os.path.abspath(volumes[0])] and len(_npy(store)) == 1
    store = _prepare(volumes, folder)
    assert len(store) == 3 and not [p for p in os.listdir(store.folder) if ".tmp" in p]
    assert json.loads((Path(store.folder) / "index.json").read_text())["format"] == 2


def test_bad_arguments(tmp_path, volumes):
    with pytest.raises(ValueError, match="dtype"):
        StoreSettings(dtype="int8")
    with pytest.raises(ValueError, match="intensity"):
        StoreSettings(intensity="hu")
    with pytest.raises(ValueError, match="pixdim"):
        StoreSettings(pixdim=(1, -1, 1))
    with pytest.raises(ValueError, match="ct_window"):
        StoreSettings(ct_window=(100, -100))
    with pytest.raises(ValueError, match="orientation"):
        StoreSettings(orientation="RRS")
    assert StoreSettings(pixdim=2).pixdim == (2.0, 2.0, 2.0)
    assert StoreSettings(orientation="lps").orientation == "LPS"
    with pytest.raises(ValueError, match="on_error"):
        _prepare(volumes, tmp_path / "s", on_error="ignore")
    with pytest.raises(ValueError, match="empty"):
        _prepare([], tmp_path / "s")
    with pytest.raises(ValueError, match="either as settings"):
        ensure_store(volumes, str(tmp_path / "s"), StoreSettings(), intensity="ct")
    # a store of the earlier format is left alone and named
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "store.json").write_text(json.dumps({"format": 1, "volumes": {}}))
    with pytest.raises(GenesisInputError, match="holds 0 preparations"):
        VolumeStore(tmp_path / "old")


def test_prepare_command_from_folder_and_datalist(tmp_path, volumes):
    line = prepare_command(str(tmp_path / "a"), dataset_dir=str(tmp_path / "src"))
    assert "3 volumes" in line
    datalist = tmp_path / "src" / "datalist.json"
    datalist.write_text(json.dumps({"training": [{"image": "ct0.nii.gz"}], "validation": [{"image": "ct1.nii.gz"}]}))
    assert "2 volumes" in prepare_command(str(tmp_path / "b"), datalist=str(datalist))
    with pytest.raises(ValueError, match="--datalist"):
        prepare_command(str(tmp_path / "c"))


@pytest.mark.skipif(not SHARED_CT.is_file(), reason="../shared/data is absent")
def test_real_ct_within_quantisation(tmp_path):
    store = _prepare([str(SHARED_CT)], tmp_path / "store")
    old = _old_path(str(SHARED_CT))
    assert np.abs(store[0].read() - old).max() <= 1 / 65535 / 2 + 1e-7


@pytest.mark.slow
def test_prepare_runs_as_a_command(tmp_path, volumes):
    from tests.packaging.helpers import run_cli

    proc = run_cli(["-m", "monai_genesis", "prepare", "--store", str(tmp_path / "store"), "--dataset_dir",
                    str(tmp_path / "src"), "--intensity", "ct", "--pixdim", "1.6,1.6,2"])
    assert "3 volumes" in proc.stdout
    assert len(VolumeStore(tmp_path / "store", StoreSettings(pixdim=(1.6, 1.6, 2.0)))) == 3


def test_in_memory_volumes_are_stored_under_their_hash(tmp_path):
    from monai.data import MetaTensor

    from monai_genesis.data.store_cubes import StoreCubeDataset

    rng = np.random.default_rng(0)
    arrays = [MetaTensor(torch.as_tensor(rng.random((1, 20, 20, 12), dtype=np.float32))) for _ in range(2)]
    entries = [{"image": a, "label": i} for i, a in enumerate(arrays)]
    store = _prepare(entries, tmp_path / "store", intensity="minmax")
    assert store.keys == [store_key(e) for e in entries]
    assert all(k.startswith("array:") for k in store.keys)
    for entry in entries:
        values = store[entry].read()
        expected = entry["image"].numpy()
        expected = (expected - expected.min()) / (expected.max() - expected.min())
        assert np.abs(values - expected).max() <= 0.5 / 65535 + 1e-6
    # found again, not redone; a changed array is a new volume
    mtimes = _mtimes(tmp_path / "store")
    _prepare(entries, tmp_path / "store", intensity="minmax")
    assert _mtimes(tmp_path / "store") == mtimes
    changed = {"image": arrays[0] * 0.5 + 0.1}
    assert store_key(changed) not in _prepare(entries, tmp_path / "store", intensity="minmax").keys
    ds = StoreCubeDataset(store, entries, cubes_per_volume=2, cube_size=(8, 8, 8), border=0)
    ds.set_random_state(0)
    assert len(ds) == 4 and ds[3]["image"].shape == (1, 8, 8, 8)
