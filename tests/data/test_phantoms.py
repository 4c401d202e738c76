import json

import nibabel as nib
import numpy as np
import pytest

from monai_genesis.data import (
    PHANTOM_LABELS,
    ct_phantom,
    nodule_patch_phantom,
    write_ct_phantoms,
    write_nodule_patch_phantoms,
)


def test_ct_phantom_is_deterministic_and_ct_like():
    image, label = ct_phantom((48, 40, 24), seed=3, num_nodules=2)
    image2, label2 = ct_phantom((48, 40, 24), seed=3, num_nodules=2)
    np.testing.assert_array_equal(image, image2)
    np.testing.assert_array_equal(label, label2)
    assert image.shape == label.shape == (48, 40, 24)
    assert image.dtype == np.float32 and label.dtype == np.uint8
    assert -1024.0 <= image.min() and image.max() <= 3071.0
    assert image[0, 0, 0] < -900  # air outside the body
    lung = label == PHANTOM_LABELS["lung"]
    assert lung.mean() > 0.05
    assert np.median(image[lung]) < -700
    assert (label == PHANTOM_LABELS["nodule"]).sum() > 0
    assert image.max() > 500  # bone
    other, _ = ct_phantom((48, 40, 24), seed=4)
    assert not np.array_equal(image, other)


def test_ct_phantom_rejects_tiny_shape():
    with pytest.raises(ValueError, match="at least 16"):
        ct_phantom((8, 32, 32))


def test_nodule_patch_has_dense_centre_only_with_nodule():
    with_nodule = nodule_patch_phantom((24, 24, 24), seed=1, has_nodule=True, noise_hu=0.0)
    without = nodule_patch_phantom((24, 24, 24), seed=1, has_nodule=False, noise_hu=0.0)
    assert with_nodule[12, 12, 12] > -100
    assert (with_nodule > -100).sum() > (without > -100).sum()


def test_write_ct_phantoms_writes_nifti_and_reuses(tmp_path):
    items = write_ct_phantoms(str(tmp_path / "ph"), num_volumes=2, shape=(32, 32, 20), seed=5)
    assert [sorted(i) for i in items] == [["image", "label"], ["image", "label"]]
    img = nib.load(items[0]["image"])
    assert img.shape == (32, 32, 20)
    np.testing.assert_allclose(img.get_fdata(), np.round(ct_phantom((32, 32, 20), seed=5)[0]), atol=1)
    assert nib.load(items[1]["label"]).get_fdata().max() == PHANTOM_LABELS["nodule"]
    mtime = (tmp_path / "ph" / "phantom_000.nii.gz").stat().st_mtime_ns
    again = write_ct_phantoms(str(tmp_path / "ph"), num_volumes=2, shape=(32, 32, 20), seed=5)
    assert again == items
    assert (tmp_path / "ph" / "phantom_000.nii.gz").stat().st_mtime_ns == mtime
    assert json.loads((tmp_path / "ph" / "phantoms.json").read_text())["parameters"]["seed"] == 5


def test_write_phantoms_refuses_foreign_folder(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="notes.txt"):
        write_ct_phantoms(str(tmp_path), num_volumes=1, shape=(16, 16, 16))


def test_write_nodule_patches_alternate_labels(tmp_path):
    items = write_nodule_patch_phantoms(str(tmp_path), num_volumes=4, shape=(16, 16, 16))
    assert [i["label"] for i in items] == [0, 1, 0, 1]
    assert nib.load(items[3]["image"]).shape == (16, 16, 16)


def test_phantom_anatomy_lies_in_ras():
    """Written with a diagonal RAS affine, the spine is posterior (low y) and the sternum anterior (high y)."""
    image, _ = ct_phantom((64, 64, 32), seed=0)
    bone = image > 500
    ys = np.nonzero(bone)[1]
    centre = image.shape[1] / 2
    posterior, anterior = ys[ys < centre], ys[ys >= centre]
    # the spine (radius 0.11) holds far more bone than the sternum (radius 0.05)
    assert len(posterior) > 2 * len(anterior) > 0
