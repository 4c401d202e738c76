import os

import nibabel as nib
import numpy as np
import pytest

from monai_genesis.data import check_datalist, find_volumes, read_spatial_shape


def _nifti(path, shape=(8, 9, 10)):
    nib.save(nib.Nifti1Image(np.zeros(shape, dtype=np.int16), np.eye(4)), str(path))
    return str(path)


def _dicom_like(path):
    path.write_bytes(b"\0" * 128 + b"DICM" + b"\0" * 16)


def test_find_volumes_lists_supported_files_and_dicom_series(tmp_path):
    _nifti(tmp_path / "a.nii.gz")
    (tmp_path / "b.nrrd").write_bytes(b"x")
    (tmp_path / "c.mha").write_bytes(b"x")
    (tmp_path / "readme.txt").write_text("no")
    series = tmp_path / "sub" / "series1"
    series.mkdir(parents=True)
    _dicom_like(series / "IM0001")
    _dicom_like(series / "IM0002")
    found = find_volumes(str(tmp_path))
    assert found == sorted(
        [str(tmp_path / "a.nii.gz"), str(tmp_path / "b.nrrd"), str(tmp_path / "c.mha"), str(series)]
    )


def test_find_volumes_errors_on_missing_or_empty(tmp_path):
    with pytest.raises(ValueError, match="is not a folder"):
        find_volumes(str(tmp_path / "nope"))
    (tmp_path / "x.txt").write_text("no")
    with pytest.raises(ValueError, match="holds no volume"):
        find_volumes(str(tmp_path))


def test_read_spatial_shape_nifti_and_unreadable(tmp_path):
    assert read_spatial_shape(_nifti(tmp_path / "a.nii.gz")) == (8, 9, 10)
    bad = tmp_path / "broken.nrrd"
    bad.write_bytes(b"garbage")
    with pytest.raises(ValueError, match="broken.nrrd"):
        read_spatial_shape(str(bad))
    bad_nii = tmp_path / "broken.nii.gz"
    bad_nii.write_bytes(b"garbage")
    with pytest.raises(ValueError, match="broken.nii.gz"):
        read_spatial_shape(str(bad_nii))


def test_read_spatial_shape_itk_header(tmp_path):
    import itk

    path = str(tmp_path / "v.mha")
    itk.imwrite(itk.image_from_array(np.zeros((5, 6, 7), dtype=np.float32)), path)
    assert read_spatial_shape(path) == (7, 6, 5)


def test_check_datalist_label_shape_mismatch(tmp_path):
    items = [{"image": _nifti(tmp_path / "i.nii.gz", (8, 8, 8)), "label": _nifti(tmp_path / "l.nii.gz", (8, 8, 7))}]
    with pytest.raises(ValueError, match="l.nii.gz has spatial shape"):
        check_datalist(items)
    good = [{"image": items[0]["image"], "label": _nifti(tmp_path / "l2.nii.gz", (8, 8, 8))}]
    assert check_datalist(good) == good
    with pytest.raises(ValueError, match="does not exist"):
        check_datalist([{"image": str(tmp_path / "missing.nii.gz")}])
    with pytest.raises(ValueError, match="empty"):
        check_datalist([])


def test_dicom_series_shape(shared_data):
    series = os.path.join(shared_data, "totalsegmentator", "example_ct_dicom")
    shape = read_spatial_shape(series)
    assert shape[:2] == (512, 512) and shape[2] == 20
