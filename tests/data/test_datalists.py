import json

import nibabel as nib
import numpy as np
import pytest

from monai_genesis.data import classification_datalist, pretrain_datalist, segmentation_datalist, split_datalist


def _nifti(path, shape=(20, 20, 20)):
    nib.save(nib.Nifti1Image(np.zeros(shape, dtype=np.int16), np.eye(4)), str(path))
    return str(path)


def test_split_is_fixed_and_disjoint():
    items = [{"image": str(i)} for i in range(10)]
    a, b = split_datalist(items, 0.2, seed=1), split_datalist(items, 0.2, seed=1)
    assert a == b
    assert len(a["validation"]) == 2 and len(a["training"]) == 8
    assert not {i["image"] for i in a["validation"]} & {i["image"] for i in a["training"]}
    single = split_datalist(items[:1])
    assert single["training"] == single["validation"] == items[:1]


def test_pretrain_datalist_defaults_to_phantoms(tmp_path, caplog):
    with caplog.at_level("INFO", logger="monai_genesis"):
        parts = pretrain_datalist(None, str(tmp_path), num_phantoms=3, phantom_shape=(16, 16, 16))
    assert len(parts["training"]) == 2 and len(parts["validation"]) == 1
    assert all(i["image"].startswith(str(tmp_path / "phantoms")) for i in parts["training"])
    assert "synthetic CT phantoms" in caplog.text


def test_pretrain_datalist_from_folder_and_errors(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for i in range(5):
        _nifti(data / f"v{i}.nii.gz")
    parts = pretrain_datalist(str(data), str(tmp_path / "out"))
    assert len(parts["training"]) + len(parts["validation"]) == 5
    assert not (tmp_path / "out").exists()
    with pytest.raises(ValueError, match="is not a folder"):
        pretrain_datalist(str(tmp_path / "missing"), str(tmp_path / "out"))
    (data / "v9.nii.gz").write_bytes(b"not a nifti")
    with pytest.raises(ValueError, match="v9.nii.gz"):
        pretrain_datalist(str(data), str(tmp_path / "out"))


def test_pretrain_datalist_from_json(tmp_path):
    _nifti(tmp_path / "a.nii.gz")
    _nifti(tmp_path / "b.nii.gz")
    listing = tmp_path / "list.json"
    listing.write_text(json.dumps({"training": [{"image": "a.nii.gz"}], "validation": [{"image": "b.nii.gz"}]}))
    parts = pretrain_datalist(None, str(tmp_path / "out"), datalist=str(listing))
    assert parts == {"training": [{"image": str(tmp_path / "a.nii.gz")}], "validation": [{"image": str(tmp_path / "b.nii.gz")}]}
    with pytest.raises(ValueError, match="does not exist"):
        pretrain_datalist(None, str(tmp_path / "out"), datalist=str(tmp_path / "nolist.json"))


def test_segmentation_datalist_phantoms_and_mismatch(tmp_path):
    parts = segmentation_datalist(None, str(tmp_path), num_phantoms=3, phantom_shape=(16, 16, 16))
    assert set(parts) == {"training", "validation", "test"}
    assert parts["test"] == parts["validation"]
    assert all("label" in i for i in parts["training"])
    _nifti(tmp_path / "img.nii.gz", (20, 20, 20))
    _nifti(tmp_path / "lab.nii.gz", (20, 20, 19))
    listing = tmp_path / "msd.json"
    listing.write_text(json.dumps({"training": [{"image": "img.nii.gz", "label": "lab.nii.gz"}] * 2}))
    with pytest.raises(ValueError, match="lab.nii.gz has spatial shape"):
        segmentation_datalist(str(listing), str(tmp_path / "out"))


def test_classification_datalist_phantoms_stratified(tmp_path):
    parts = classification_datalist(None, str(tmp_path), num_phantoms=8, phantom_shape=(16, 16, 16))
    assert sorted({i["label"] for i in parts["validation"]}) == [0, 1]
    assert len(parts["training"]) + len(parts["validation"]) == 8


def test_classification_datalist_medmnist(tmp_path):
    path = tmp_path / "tiny.npz"
    rng = np.random.default_rng(0)
    np.savez(path, train_images=rng.integers(0, 255, (6, 8, 8, 8), dtype=np.uint8), train_labels=np.array([[0], [1]] * 3),
             val_images=rng.integers(0, 255, (2, 8, 8, 8), dtype=np.uint8), val_labels=np.array([[0], [1]]))
    parts = classification_datalist(None, str(tmp_path / "out"), medmnist_npz=str(path))
    assert [len(parts[k]) for k in ("training", "validation", "test")] == [6, 2, 2]
    assert tuple(parts["training"][0]["image"].shape) == (1, 8, 8, 8)


def test_volume_datalist_sources(tmp_path):
    from monai_genesis.data import volume_datalist

    items = volume_datalist(None, str(tmp_path), num_phantoms=2, phantom_shape=(16, 16, 16))
    assert [sorted(i) for i in items] == [["image"], ["image"]]
    _nifti(tmp_path / "t.nii.gz")
    listing = tmp_path / "list.json"
    listing.write_text(json.dumps({"training": [], "test": ["t.nii.gz"]}))
    assert volume_datalist(None, str(tmp_path), datalist=str(listing)) == [{"image": str(tmp_path / "t.nii.gz")}]
    with pytest.raises(ValueError, match="no 'validation' list"):
        volume_datalist(None, str(tmp_path), datalist=str(listing), data_key="validation")


def test_dataset_dir_without_datalist_is_refused(tmp_path):
    with pytest.raises(ValueError, match="without a datalist"):
        segmentation_datalist(None, str(tmp_path / "out"), dataset_dir=str(tmp_path))
    with pytest.raises(ValueError, match="without a datalist"):
        classification_datalist(None, str(tmp_path / "out"), dataset_dir=str(tmp_path))
    assert not (tmp_path / "out").exists()


def test_pretrain_datalist_keeps_and_checks_an_entrys_intensity(tmp_path):
    _nifti(tmp_path / "ct.nii.gz")
    _nifti(tmp_path / "mr.nii.gz")
    listing = tmp_path / "list.json"
    listing.write_text(json.dumps({"training": [{"image": "ct.nii.gz"}, {"image": "mr.nii.gz", "intensity": "mri"}]}))
    parts = pretrain_datalist(None, str(tmp_path / "out"), datalist=str(listing), val_fraction=0.5)
    entries = sorted(parts["training"] + parts["validation"], key=lambda i: i["image"])
    assert entries == [
        {"image": str(tmp_path / "ct.nii.gz")},
        {"image": str(tmp_path / "mr.nii.gz"), "intensity": "mri"},
    ]
    listing.write_text(json.dumps({"training": [{"image": "mr.nii.gz", "intensity": "pet"}]}))
    with pytest.raises(ValueError, match=r"'intensity' of datalist entry .*mr.nii.gz must be one of"):
        pretrain_datalist(None, str(tmp_path / "out"), datalist=str(listing))
