import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from monai_genesis.transforms import ApplyIntensitySettingd, ClassTargetd, ForegroundPercentileWindow, LoadVolumed, intensity_transform


def test_ct_setting_windows_hu():
    out = intensity_transform("ct")({"image": torch.tensor([[-2000.0, -1000.0, 0.0, 1000.0, 3000.0]])})
    torch.testing.assert_close(out["image"], torch.tensor([[0.0, 0.0, 0.5, 1.0, 1.0]]))


def test_mri_setting_uses_foreground_percentiles():
    img = torch.zeros(1, 10, 10, 10)
    img[:, 2:8, 2:8, 2:8] = torch.linspace(100, 200, 216).reshape(1, 6, 6, 6)
    out = ForegroundPercentileWindow(lower=0.0, upper=100.0)(img)
    assert float(out.min()) == 0.0 and float(out.max()) == 1.0
    assert float(out[0, 2, 2, 2]) == 0.0  # the darkest foreground voxel, not the background, maps to 0
    d = intensity_transform("mri")({"image": MetaTensor(img)})
    assert isinstance(d["image"], MetaTensor) and 0.0 <= float(d["image"].min()) <= float(d["image"].max()) <= 1.0
    with pytest.raises(ValueError, match="intensity setting"):
        intensity_transform("pet")


def test_minmax_setting():
    out = intensity_transform("minmax")({"image": torch.tensor([[0.0, 127.5, 255.0]])})
    torch.testing.assert_close(out["image"], torch.tensor([[0.0, 0.5, 1.0]]))


def test_none_setting_keeps_unit_images_and_refuses_others():
    unit = MetaTensor(torch.tensor([[0.0, 0.25, 1.0]]), meta={"filename_or_obj": "unit.nii.gz"})
    out = intensity_transform("none")({"image": unit})["image"]
    assert torch.equal(out, unit)
    hu = MetaTensor(torch.tensor([[-1000.0, 0.0, 400.0]]), meta={"filename_or_obj": "ct_hu.nii.gz"})
    with pytest.raises(ValueError, match=r"'none' needs images in \[0, 1\], but ct_hu.nii.gz spans \[-1000, 400\]"):
        intensity_transform("none")({"image": hu})


def test_an_entry_names_its_own_setting():
    """One transform, CT by default, scales an MRI entry with the MRI window and a CT entry with the HU window."""
    scale = ApplyIntensitySettingd("ct")
    values = torch.tensor([[0.0, 100.0, 200.0, 300.0, 400.0]])
    ct = scale({"image": values.clone()})
    torch.testing.assert_close(ct["image"], (values.clamp(-1000, 1000) + 1000) / 2000)
    assert ct["intensity"] == "ct"
    mri = scale({"image": values.clone(), "intensity": "mri"})
    # the MRI window of the foreground (0 is background): 100 -> 0, 400 -> 1
    assert mri["intensity"] == "mri"
    assert float(mri["image"][0, 1]) == pytest.approx(0.0, abs=0.01)
    assert float(mri["image"][0, 4]) == pytest.approx(1.0, abs=0.01)
    minmax = scale({"image": values.clone(), "intensity": "minmax"})["image"]
    torch.testing.assert_close(minmax, values / 400)
    assert ApplyIntensitySettingd("ct", entry_key=None).setting_of({"intensity": "mri"}) == "ct"
    assert scale.setting_of({"intensity": ""}) == "ct"
    with pytest.raises(ValueError, match="'intensity' of a datalist entry must be one of"):
        scale({"image": values, "intensity": "pet"})
    with pytest.raises(ValueError, match="ct_window"):
        ApplyIntensitySettingd("ct", ct_window=(100, -100))


def test_load_volume_from_file_and_memory(tmp_path):
    path = str(tmp_path / "v.nii.gz")
    nib.save(nib.Nifti1Image(np.ones((5, 6, 7), dtype=np.int16), np.eye(4)), path)
    loader = LoadVolumed("image")
    from_file = loader({"image": path})["image"]
    assert tuple(from_file.shape) == (1, 5, 6, 7) and from_file.meta["filename_or_obj"].endswith("v.nii.gz")
    from_array = loader({"image": np.zeros((1, 3, 3, 3), dtype=np.uint8)})["image"]
    assert isinstance(from_array, MetaTensor) and from_array.dtype == torch.float32


def test_class_target():
    assert ClassTargetd("label", 1)({"label": 1})["label"].tolist() == [1.0]
    assert ClassTargetd("label", 3)({"label": 2})["label"].tolist() == [0.0, 0.0, 1.0]
    with pytest.raises(ValueError, match="num_classes"):
        ClassTargetd("label", 1)({"label": 4})


def test_load_real_dicom_series_and_nrrd(shared_data):
    from monai_genesis.data import find_volumes

    found = find_volumes(str(shared_data / "totalsegmentator"))
    series = str(shared_data / "totalsegmentator" / "example_ct_dicom")
    assert series in found and any(p.endswith("example_ct.nii.gz") for p in found)
    loader = LoadVolumed("image")
    volume = loader({"image": series})["image"]
    assert tuple(volume.shape) == (1, 512, 512, 20)
    out = intensity_transform("ct")({"image": volume})["image"]
    assert 0.0 <= float(out.min()) and float(out.max()) <= 1.0
    nrrd = loader({"image": str(shared_data / "brain_mri" / "brain1_image.nrrd")})["image"]
    assert nrrd.shape[0] == 1 and nrrd.shape[1:3] == (256, 256)


def test_array_twins():
    from monai_genesis.transforms import ClassTarget, LoadVolume

    assert ClassTarget(3)(2).tolist() == [0.0, 0.0, 1.0]
    with pytest.raises(ValueError, match="outside"):
        ClassTarget(3)(3)
    vol = LoadVolume()(np.ones((1, 4, 4, 4), dtype=np.int16))
    assert vol.dtype == torch.float32 and tuple(vol.shape) == (1, 4, 4, 4)
