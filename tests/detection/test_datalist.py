import json

import nibabel as nib
import numpy as np
import pytest

from monai_genesis.detection import detection_datalist, inference_datalist, read_box_datalist, voxel_to_world_boxes
from monai_genesis.errors import GenesisInputError

AFFINE = np.diag([1.5, 1.5, 3.0, 1.0])


def _volume(path, array, affine=AFFINE):
    nib.save(nib.Nifti1Image(array, affine), str(path))
    return str(path)


@pytest.fixture
def case(tmp_path):
    """An image and its label volume of two components of class 1 and one of class 2."""
    label = np.zeros((24, 20, 16), dtype=np.uint8)
    label[2:6, 3:9, 1:4] = 1
    label[12:20, 10:18, 8:14] = 1
    label[20:23, 1:4, 1:4] = 2
    image = _volume(tmp_path / "ct.nii.gz", np.zeros(label.shape, dtype=np.int16))
    seg = _volume(tmp_path / "ct_seg.nii.gz", label)
    return tmp_path, image, seg


def _write(tmp_path, content, name="datalist.json"):
    path = tmp_path / name
    path.write_text(json.dumps(content))
    return str(path)


def test_boxes_from_label_volumes_in_world_coordinates(case):
    root, image, seg = case
    datalist = _write(root, {"box_mode": "xyzxyz", "training": [{"image": "ct.nii.gz", "label_volume": "ct_seg.nii.gz"}]})
    out = read_box_datalist(datalist, box_mode="xyzxyz", min_box_voxels=8)
    entry = out["training"][0]
    assert entry["image"] == image and entry["label"] == [0, 0, 1]
    np.testing.assert_allclose(entry["box"][0], [3.0, 4.5, 3.0, 9.0, 13.5, 12.0])
    # only label 2 as a class, in the Model Zoo's centre mode
    out = read_box_datalist(datalist.replace("datalist", "datalist"), box_mode="xyzxyz", label_classes=[2], min_box_voxels=8)
    assert out["training"][0]["label"] == [0] and len(out["training"][0]["box"]) == 1


def test_given_boxes_are_checked_and_kept(case):
    root, image, _ = case
    world = voxel_to_world_boxes(np.array([[2, 3, 1, 6, 9, 4]]), AFFINE, "cccwhd").tolist()
    datalist = _write(root, {"training": [{"image": image, "box": world, "label": [0]}] * 4})
    splits = detection_datalist(datalist, str(root / "out"), box_mode="cccwhd", val_fraction=0.25, seed=1)
    assert [len(splits[k]) for k in ("training", "validation", "test")] == [3, 1, 1]
    np.testing.assert_allclose(splits["training"][0]["box"], world)
    assert inference_datalist("", datalist, str(root / "out"), box_mode="cccwhd") == [{"image": image}]
    assert inference_datalist([image]) == [{"image": image}]


def test_box_outside_the_image_names_the_file_and_the_entry(case):
    root, image, _ = case
    world = voxel_to_world_boxes(np.array([[20, 3, 1, 30, 9, 4]]), AFFINE, "xyzxyz").tolist()
    datalist = _write(root, {"training": [{"image": image, "box": world, "label": [0]}]})
    with pytest.raises(GenesisInputError, match=r"datalist .*datalist.json training\[0\]: image .*ct.nii.gz: box 0 spans voxels .* outside the image of \[24, 20, 16\] voxels"):
        read_box_datalist(datalist, box_mode="xyzxyz")


def test_declared_box_mode_must_match_the_datalists(case):
    root, image, _ = case
    datalist = _write(root, {"box_mode": "xyzwhd", "training": [{"image": image, "box": [[1, 1, 1, 2, 2, 2]]}]})
    with pytest.raises(GenesisInputError, match=r"declares box_mode 'xyzwhd' but the bundle reads boxes as 'cccwhd'; pass --box_mode xyzwhd"):
        read_box_datalist(datalist, box_mode="cccwhd")


def test_label_volume_without_foreground_is_refused(case):
    root, image, _ = case
    empty = _volume(root / "empty_seg.nii.gz", np.zeros((24, 20, 16), dtype=np.uint8))
    datalist = _write(root, {"training": [{"image": image, "label_volume": empty}]})
    with pytest.raises(GenesisInputError, match=r"label volume .*empty_seg.nii.gz has no foreground to make a box from"):
        read_box_datalist(datalist)


def test_other_bad_entries(case):
    root, image, seg = case
    moved = _volume(root / "moved_seg.nii.gz", np.ones((24, 20, 16), dtype=np.uint8), np.diag([1.0, 1.0, 1.0, 1.0]))
    with pytest.raises(GenesisInputError, match=r"moved_seg.nii.gz .* does not lie on the grid of its image .*resample"):
        read_box_datalist(_write(root, {"training": [{"image": image, "label_volume": moved}]}))
    with pytest.raises(GenesisInputError, match=r"image .*missing.nii.gz does not exist"):
        read_box_datalist(_write(root, {"training": [{"image": "missing.nii.gz", "box": [[1, 1, 1, 2, 2, 2]]}]}))
    with pytest.raises(GenesisInputError, match=r"has 1 boxes but 2 labels"):
        read_box_datalist(_write(root, {"training": [{"image": image, "box": [[4, 4, 4, 2, 2, 2]], "label": [0, 1]}]}))
    with pytest.raises(GenesisInputError, match=r"neither 'box' .* nor 'label_volume'"):
        read_box_datalist(_write(root, {"training": [{"image": image}]}))


def test_phantoms_when_no_datalist(tmp_path):
    splits = detection_datalist("", str(tmp_path), num_phantoms=4, phantom_shape=(48, 48, 40), val_fraction=0.25)
    assert [len(splits[k]) for k in ("training", "validation", "test")] == [3, 1, 1]
    entry = splits["training"][0]
    assert entry["image"].startswith(str(tmp_path / "blob_phantoms")) and len(entry["box"]) == len(entry["label"]) >= 1
    # the boxes are the label volumes' components, in world millimetres (2 mm voxels), centre mode
    manifest = json.loads((tmp_path / "blob_phantoms" / "blob_phantoms.json").read_text())
    assert manifest["parameters"]["box_mode"] == "cccwhd"
    assert all(s % 2 == 0 for box in entry["box"] for s in box[3:])
