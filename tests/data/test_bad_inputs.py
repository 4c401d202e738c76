"""Bad inputs are caught where they are read, with an error naming the file and the fix."""

import os
import warnings

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import CacheDataset

from monai_genesis.data import check_datalist
from monai_genesis.errors import GenesisInputError
from monai_genesis.transforms import (
    CheckLabelValuesd,
    LoadVolume,
    LoadVolumed,
    RandGenesisCorruption,
    intensity_transform,
)

SHARED = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "data")


def _write(path, array):
    nib.save(nib.Nifti1Image(np.asarray(array), np.eye(4)), str(path))
    return str(path)


def _truncated(tmp_path):
    rng = np.random.default_rng(0)
    path = _write(tmp_path / "cut.nii.gz", rng.normal(0, 300, (40, 40, 20)).astype(np.float32))
    data = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])
    return path


def test_labels_above_out_channels_are_named(tmp_path):
    labels = np.zeros((8, 8, 4), np.uint8)
    labels[0, 0, :] = [0, 2, 41, 255]
    path = _write(tmp_path / "aseg.nii.gz", labels)
    loaded = LoadVolumed("label")({"label": path})
    with pytest.raises(GenesisInputError) as err:
        CheckLabelValuesd("label", num_classes=3)(loaded)
    message = str(err.value)
    assert message.startswith(f"label {path} holds 2 value(s) that are not classes 0 … 2 of out_channels=3: 41, 255")
    assert "range [0, 255]" in message and "Set --out_channels" in message and "(256 if the labels" in message
    assert "MapLabelValued" in message


def test_label_values_within_classes_pass():
    label = torch.tensor([[[0, 1], [2, 1]]], dtype=torch.uint8)
    assert CheckLabelValuesd("label", num_classes=3)({"label": label})["label"] is label
    # one sigmoid output: a binary mask
    CheckLabelValuesd("label", num_classes=1)({"label": label.clamp(max=1)})
    with pytest.raises(GenesisInputError, match=r"that are not classes 0 … 1 of out_channels=2: 0.5 \(range"):
        CheckLabelValuesd("label", num_classes=2)({"label": torch.tensor([[0.0, 0.5, 1.0]])})
    with pytest.raises(GenesisInputError, match=r"map holds 1 value\(s\) .*: -1 \(range \[-1, 1\]\)"):
        CheckLabelValuesd("label", num_classes=2)({"label": torch.tensor([[-1, 0, 1]])})


def test_truncated_nifti_is_named_by_discovery(tmp_path):
    path = _truncated(tmp_path)
    with pytest.raises(GenesisInputError, match=rf"volume {path} could not be read \(EOFError: .*incomplete") as err:
        check_datalist([{"image": path}])
    assert isinstance(err.value.__cause__, EOFError)
    # a complete file passes, and so does an uncompressed one; a cut uncompressed one does not
    whole = _write(tmp_path / "whole.nii", np.zeros((6, 6, 6), np.int16))
    assert check_datalist([{"image": whole}]) == [{"image": whole}]
    data = open(whole, "rb").read()
    with open(whole, "wb") as f:
        f.write(data[:-100])
    with pytest.raises(GenesisInputError, match="holds 684 bytes, its header describes 784"):
        check_datalist([{"image": whole}])


def test_truncated_nifti_is_named_when_loaded(tmp_path):
    path = _truncated(tmp_path)
    with pytest.raises(GenesisInputError, match=rf"volume {path} could not be read \(EOFError") as err:
        LoadVolume()(path)
    assert isinstance(err.value.__cause__, EOFError)


def test_truncated_nifti_is_named_in_a_cache_dataset_worker(tmp_path):
    good = _write(tmp_path / "good.nii.gz", np.zeros((8, 8, 8), np.float32))
    path = _truncated(tmp_path)
    with pytest.raises(RuntimeError) as err:
        CacheDataset([{"image": good}, {"image": path}], LoadVolumed("image"), num_workers=2, progress=False)
    cause = err.value
    while cause is not None and not isinstance(cause, GenesisInputError):
        cause = cause.__cause__
    assert cause is not None and f"volume {path} could not be read" in str(cause)


def test_non_finite_voxels_are_counted_when_loaded(tmp_path):
    volume = np.full((10, 10, 5), -1000.0, np.float32)
    volume[0, 0, :3] = np.nan
    volume[1, 1, 0] = np.inf
    path = _write(tmp_path / "nan.nii.gz", volume)
    # the header pre-check cannot see the voxels: it passes
    check_datalist([{"image": path}])
    with pytest.raises(GenesisInputError) as err:
        LoadVolumed("image")({"image": path})
    assert str(err.value).startswith(f"volume {path} holds 4 NaN or infinite voxel(s) of 500 (3 NaN, 1 infinite)")
    assert "nan_to_num" in str(err.value)
    with pytest.raises(GenesisInputError, match=r"the in-memory ndarray holds 1 NaN or infinite voxel\(s\) of 8 \(1 NaN"):
        LoadVolume()(np.array([[[[np.nan, 0], [0, 0]], [[0, 0], [0, 0]]]]))


def test_in_memory_volume_without_channel_axis_is_refused():
    with pytest.raises(GenesisInputError, match=r"ndarray of shape \(64, 64, 32\) has no channel axis: .*x\[None\]"):
        LoadVolume()(np.zeros((64, 64, 32), np.float32))
    with pytest.raises(GenesisInputError, match=r"Tensor has shape \(1, 1, 8, 8, 8\), but an in-memory volume"):
        LoadVolume()(torch.zeros(1, 1, 8, 8, 8))
    assert LoadVolume()(np.zeros((1, 8, 8, 4))).shape == (1, 8, 8, 4)
    assert LoadVolume(spatial_dims=None)(np.zeros((8, 8, 4))).shape == (8, 8, 4)
    assert LoadVolume(spatial_dims=2)(np.zeros((3, 8, 8))).shape == (3, 8, 8)


def test_ambiguous_plain_array_warns_in_the_transforms():
    with pytest.warns(UserWarning, match=r"\(64, 64, 32\) is taken as 64 channels of a 2-D 64x32 image; .*x\[None\]"):
        RandGenesisCorruption()(np.random.rand(64, 64, 32).astype(np.float32))
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        RandGenesisCorruption()(np.random.rand(3, 32, 32).astype(np.float32))


@pytest.mark.parametrize(
    "values, shown",
    [((0.0, 1.0), r"\[0, 1\]"), ((-2.7, 13.6), r"\[-2.7, 13.6\]"), ((5000.0, 6000.0), r"\[5000, 6000\]")],
)
def test_ct_setting_refuses_values_that_cannot_be_hounsfield_units(values, shown):
    image = torch.linspace(values[0], values[1], 1000).reshape(1, 10, 10, 10)
    with pytest.raises(GenesisInputError, match=rf"volume image spans {shown}, which cannot be Hounsfield units") as err:
        intensity_transform("ct")({"image": image})
    assert "uniform grey image" in str(err.value) and "--intensity mri" in str(err.value)


def test_ct_setting_warns_on_volumes_without_negative_values(caplog):
    image = torch.linspace(0.0, 3000.0, 1000).reshape(1, 10, 10, 10)
    out = intensity_transform("ct")({"image": image})["image"]
    assert float(out.min()) == pytest.approx(0.5)
    assert "without a negative value, unlike CT" in caplog.text and "--intensity mri" in caplog.text


@pytest.mark.slow
@pytest.mark.skipif(not os.path.isdir(SHARED), reason="needs ../shared/data")
def test_ct_rule_on_real_scans(caplog):
    ct = [os.path.join(SHARED, "chest_ct", "chest_ct_0.nii.gz"), os.path.join(SHARED, "totalsegmentator", "example_ct.nii.gz")]
    load = LoadVolumed("image")
    for path in ct:
        out = intensity_transform("ct")(load({"image": path}))["image"]
        assert float(out.min()) == 0.0 and float(out.max()) == 1.0
    assert "unlike CT" not in caplog.text
    zscored = os.path.join(SHARED, "brats2013", "brats_2013_pat0003_1", "T1c_subtrMeanDivStd.nii.gz")
    with pytest.raises(GenesisInputError, match=r"T1c_subtrMeanDivStd.nii.gz spans \[-2.74\d*, 13.6\d*\], which cannot"):
        intensity_transform("ct")(load({"image": zscored}))
    intensity_transform("ct")(load({"image": os.path.join(SHARED, "brain_mri", "chris_t1.nii.gz")}))
    assert "chris_t1.nii.gz spans [0, 255] without a negative value" in caplog.text
