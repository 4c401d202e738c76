import json
import logging
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.transforms import Compose, Orientationd, Spacingd

from monai_genesis.data.store import (
    STORE_INDEX,
    load_store_index,
    open_store_volume,
    prepare_command,
    prepare_store,
    read_store_volume,
    store_key,
)
from monai_genesis.transforms import LoadVolumed, intensity_transform

SHARED_CT = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "totalsegmentator" / "example_ct.nii.gz"
LABELS = (("L", "R"), ("P", "A"), ("I", "S"))


def _write_ct(path, shape=(40, 36, 20), seed=0, affine=None):
    rng = np.random.default_rng(seed)
    hu = rng.integers(-1100, 1400, size=shape).astype(np.int16)
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
    return {p.name: p.stat().st_mtime_ns for p in Path(folder).iterdir()}


@pytest.fixture
def volumes(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    return [_write_ct(src / f"ct{i}.nii.gz", seed=i) for i in range(3)]


def test_store_holds_half_the_bytes_and_the_old_intensities(tmp_path, volumes):
    index = prepare_store([{"image": p} for p in volumes], tmp_path / "store", progress=False)
    assert len(index["volumes"]) == 3
    for path in volumes:
        record = index["volumes"][os.path.abspath(path)]
        old = _old_path(path)
        stored = open_store_volume(index, path)
        assert isinstance(stored, np.memmap) and stored.dtype == np.uint16
        assert record["shape"] == list(old.shape) == list(stored.shape)
        # the .npy header is 128 bytes; the data are exactly half of float32
        assert os.path.getsize(tmp_path / "store" / record["file"]) == old.nbytes // 2 + 128
        new = read_store_volume(index, path)
        assert new.dtype == np.float32
        assert np.abs(new - old).max() <= record["scale"] / 2 + 1e-7
        assert record["scale"] <= 1 / 65535 + 1e-12
        assert record["spacing"] == pytest.approx([0.8, 0.8, 2.0])
        assert record["settings"]["intensity"] == "ct" and record["source"] == os.path.abspath(path)


def test_float16_and_resampling(tmp_path, volumes):
    index = prepare_store(volumes[:1], tmp_path / "store", pixdim=(1.6, 1.6, 2.0), dtype="float16", progress=False)
    record = index["volumes"][os.path.abspath(volumes[0])]
    old = _old_path(volumes[0], pixdim=(1.6, 1.6, 2.0))
    assert record["spacing"] == pytest.approx([1.6, 1.6, 2.0]) and record["shape"] == list(old.shape)
    assert old.shape[1:] == (21, 19, 20)
    assert np.abs(read_store_volume(index, volumes[0]) - old).max() <= 2**-11


def test_rerun_touches_nothing(tmp_path, volumes):
    store = tmp_path / "store"
    first = prepare_store(volumes, store, progress=False)
    before = _mtimes(store)
    again = prepare_store(volumes, store, progress=False)
    assert _mtimes(store) == before
    assert again["volumes"] == first["volumes"]


def test_changed_file_is_redone_touched_file_is_not(tmp_path, volumes):
    store = tmp_path / "store"
    index = prepare_store(volumes, store, progress=False)
    names = {p: index["volumes"][os.path.abspath(p)]["file"] for p in volumes}
    before = _mtimes(store)
    _write_ct(volumes[0], seed=99)
    stat = os.stat(volumes[1])
    os.utime(volumes[1], ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    index = prepare_store(volumes, store, progress=False)
    after = _mtimes(store)
    assert after[names[volumes[0]]] != before[names[volumes[0]]]
    assert after[names[volumes[1]]] == before[names[volumes[1]]]
    assert after[names[volumes[2]]] == before[names[volumes[2]]]
    assert np.abs(read_store_volume(index, volumes[0]) - _old_path(volumes[0])).max() <= 1e-4
    # the touched file's new time is recorded, so the next run does not hash it again
    assert index["volumes"][os.path.abspath(volumes[1])]["source_fingerprint"]["mtime_ns"] == stat.st_mtime_ns + 10**9


def test_other_settings_are_detected_and_redone(tmp_path, volumes, caplog):
    store = tmp_path / "store"
    prepare_store(volumes[:1], store, progress=False)
    with caplog.at_level(logging.INFO, logger="monai_genesis.data.store"):
        index = prepare_store(volumes[:1], store, intensity="minmax", progress=False)
    assert "other settings" in caplog.text and volumes[0] in caplog.text
    record = index["volumes"][os.path.abspath(volumes[0])]
    assert record["settings"]["intensity"] == "minmax"
    assert np.abs(read_store_volume(index, volumes[0]) - _old_path(volumes[0], "minmax")).max() <= 1e-4
    # an entry's own setting is part of its settings too
    index = prepare_store([{"image": volumes[0], "intensity": "minmax"}], store, intensity="ct", progress=False)
    (record,) = index["volumes"].values()
    assert record["settings"]["intensity"] == "minmax"


def test_unreadable_file_is_named_and_skipped_or_refused(tmp_path, volumes, caplog):
    bad = tmp_path / "src" / "broken.nii.gz"
    bad.write_bytes(b"not a nifti file")
    store = tmp_path / "store"
    with caplog.at_level(logging.WARNING, logger="monai_genesis.data.store"):
        index = prepare_store([*volumes, str(bad)], store, progress=False)
    assert str(bad) in caplog.text and "cannot be read" in caplog.text
    assert sorted(index["volumes"]) == sorted(os.path.abspath(p) for p in volumes)
    with pytest.raises(ValueError, match="broken.nii.gz"):
        prepare_store([str(bad)], store, on_error="raise", progress=False)
    with pytest.raises(ValueError, match="no volume of the datalist"):
        prepare_store([str(bad)], store, progress=False)
    with pytest.raises(ValueError, match="missing"):
        prepare_store([str(tmp_path / "missing.nii.gz")], store, on_error="raise", progress=False)


def test_nothing_half_written_is_left_or_read(tmp_path, volumes, monkeypatch):
    store = tmp_path / "store"
    prepare_store(volumes[:1], store, progress=False)
    real_save = np.save

    def failing_save(f, array):
        real_save(f, array[..., : array.shape[-1] // 2])
        raise OSError("disk full")

    monkeypatch.setattr(np, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        prepare_store(volumes, store, progress=False)
    monkeypatch.setattr(np, "save", real_save)
    assert not [p for p in os.listdir(store) if p.endswith(".tmp")]
    index = load_store_index(store)
    assert list(index["volumes"]) == [os.path.abspath(volumes[0])]
    assert len([p for p in os.listdir(store) if p.endswith(".npy")]) == 1
    index = prepare_store(volumes, store, progress=False)
    assert len(index["volumes"]) == 3 and not [p for p in os.listdir(store) if ".tmp" in p]
    assert json.loads((store / STORE_INDEX).read_text())["format"] == 1


def test_bad_arguments(tmp_path, volumes):
    with pytest.raises(ValueError, match="dtype"):
        prepare_store(volumes, tmp_path / "s", dtype="int8")
    with pytest.raises(ValueError, match="intensity"):
        prepare_store(volumes, tmp_path / "s", intensity="hu")
    with pytest.raises(ValueError, match="on_error"):
        prepare_store(volumes, tmp_path / "s", on_error="ignore")
    with pytest.raises(ValueError, match="empty"):
        prepare_store([], tmp_path / "s")
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / STORE_INDEX).write_text(json.dumps({"format": 0, "volumes": {}}))
    with pytest.raises(ValueError, match="format"):
        load_store_index(tmp_path / "old")


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
    index = prepare_store([str(SHARED_CT)], tmp_path / "store", progress=False)
    old = _old_path(str(SHARED_CT))
    assert np.abs(read_store_volume(index, SHARED_CT) - old).max() <= 1 / 65535 / 2 + 1e-7


@pytest.mark.slow
def test_prepare_runs_as_a_command(tmp_path, volumes):
    from tests.packaging.helpers import run_cli

    proc = run_cli(["-m", "monai_genesis", "prepare", "--store", str(tmp_path / "store"), "--dataset_dir",
                    str(tmp_path / "src"), "--intensity", "ct"])
    assert "3 volumes" in proc.stdout
    assert len(load_store_index(tmp_path / "store")["volumes"]) == 3


def test_in_memory_volumes_are_stored_under_their_hash(tmp_path):
    from monai.data import MetaTensor

    from monai_genesis.data.store_cubes import StoreCubeDataset

    rng = np.random.default_rng(0)
    arrays = [MetaTensor(torch.as_tensor(rng.random((1, 20, 20, 12), dtype=np.float32))) for _ in range(2)]
    entries = [{"image": a, "label": i} for i, a in enumerate(arrays)]
    index = prepare_store(entries, tmp_path / "store", intensity="minmax", progress=False)
    assert sorted(index["volumes"]) == sorted(store_key(e) for e in entries)
    assert all(k.startswith("array:") for k in index["volumes"])
    for entry in entries:
        values = read_store_volume(index, entry["image"])
        expected = entry["image"].numpy()
        expected = (expected - expected.min()) / (expected.max() - expected.min())
        assert np.abs(values - expected).max() <= 0.5 / 65535 + 1e-6
    # found again, not redone; a changed array is a new volume
    mtimes = _mtimes(tmp_path / "store")
    prepare_store(entries, tmp_path / "store", intensity="minmax", progress=False)
    assert _mtimes(tmp_path / "store") == mtimes
    changed = {"image": arrays[0] * 0.5 + 0.1}
    assert store_key(changed) not in prepare_store(entries, tmp_path / "store", intensity="minmax",
                                                   progress=False)["volumes"]
    ds = StoreCubeDataset(index, entries, cubes_per_volume=2, cube_size=(8, 8, 8), border=0)
    ds.set_random_state(0)
    assert len(ds) == 4 and ds[3]["image"].shape == (1, 8, 8, 8)
