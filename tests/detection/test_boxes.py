import numpy as np
import pytest

from monai_genesis.detection import (
    blob_phantom,
    boxes_from_label,
    check_box_mode,
    check_boxes,
    connected_components,
    voxel_to_world_boxes,
    world_to_voxel_boxes,
)
from monai_genesis.errors import GenesisInputError

AFFINE = np.array([[2.0, 0, 0, -30.0], [0, 1.5, 0, 10.0], [0, 0, 3.0, 5.0], [0, 0, 0, 1]])


def test_connected_components_26_connectivity_and_numbering():
    mask = np.zeros((10, 10, 10), dtype=bool)
    mask[1:3, 1:3, 1:3] = True
    mask[3, 3, 3] = True  # touches the first cube by a corner: same component
    mask[6:9, 6:8, 2:4] = True
    labels, count = connected_components(mask)
    assert count == 2
    assert labels[1, 1, 1] == labels[3, 3, 3] != labels[7, 7, 3]
    assert sorted(np.unique(labels).tolist()) == [0, 1, 2]
    assert (labels > 0).sum() == mask.sum()
    assert connected_components(np.zeros((4, 4, 4)))[1] == 0


def test_boxes_from_label_one_box_per_component_per_class():
    label = np.zeros((20, 20, 20), dtype=np.uint8)
    label[2:5, 3:9, 4:6] = 1
    label[10:15, 10:12, 10:19] = 1
    label[16:19, 1:4, 1:4] = 3
    label[0, 0, 0] = 3  # a speck, below min_size
    boxes, classes = boxes_from_label(label, min_size=4)
    assert boxes.tolist() == [[2, 3, 4, 5, 9, 6], [10, 10, 10, 15, 12, 19], [16, 1, 1, 19, 4, 4]]
    assert classes.tolist() == [0, 0, 1]
    boxes, classes = boxes_from_label(label[None], classes=[3], min_size=1)
    assert classes.tolist() == [0, 0] and boxes[0].tolist() == [0, 0, 0, 1, 1, 1]


def test_label_volume_without_foreground_is_refused_with_its_name():
    with pytest.raises(GenesisInputError, match=r"case_7_seg.nii.gz has no foreground.*label_classes"):
        boxes_from_label(np.zeros((8, 8, 8)), source="case_7_seg.nii.gz")
    label = np.zeros((8, 8, 8))
    label[1:3, 1:3, 1:3] = 2
    with pytest.raises(GenesisInputError, match=r"classes \[1\].*values present: \[0, 2\]"):
        boxes_from_label(label, classes=[1], source="x")


@pytest.mark.parametrize("mode", ["xyzxyz", "xyzwhd", "cccwhd"])
def test_world_voxel_round_trip(mode):
    voxel = np.array([[2, 3, 4, 10, 12, 9], [0, 0, 0, 5, 5, 5]], dtype=np.float32)
    world = voxel_to_world_boxes(voxel, AFFINE, mode)
    np.testing.assert_allclose(world_to_voxel_boxes(world, AFFINE, mode), voxel, atol=1e-4)
    if mode == "cccwhd":
        # centre in mm through the affine, sizes in mm
        np.testing.assert_allclose(world[0], [-30 + 2 * 6, 10 + 1.5 * 7.5, 5 + 3 * 6.5, 16, 13.5, 15], atol=1e-4)


def test_flipped_axis_gives_a_valid_world_box():
    affine = np.diag([-2.0, 2.0, 2.0, 1.0])
    world = voxel_to_world_boxes(np.array([[1, 1, 1, 4, 4, 4]]), affine, "xyzxyz")
    assert world[0].tolist() == [-8, 2, 2, -2, 8, 8]


def test_check_boxes_accepts_and_converts():
    world = voxel_to_world_boxes(np.array([[2, 3, 4, 10, 12, 9]]), AFFINE, "cccwhd")
    voxel = check_boxes(world, "cccwhd", AFFINE, (20, 20, 20), source="a.nii.gz")
    np.testing.assert_allclose(voxel, [[2, 3, 4, 10, 12, 9]], atol=1e-4)


def test_box_outside_the_image_is_refused():
    world = voxel_to_world_boxes(np.array([[15, 3, 4, 25, 12, 9]]), AFFINE, "xyzxyz")
    with pytest.raises(GenesisInputError, match=r"a.nii.gz: box 0 spans voxels .* outside the image of \[20, 20, 20\] voxels"):
        check_boxes(world, "xyzxyz", AFFINE, (20, 20, 20), source="a.nii.gz")


def test_zero_size_box_is_refused():
    with pytest.raises(GenesisInputError, match=r"b.nii.gz: box 0 has size \[0.0, 4.0, 4.0\] \(zero or negative\)"):
        check_boxes([[10, 10, 10, 0, 4, 4]], "cccwhd", np.eye(4), (20, 20, 20), source="b.nii.gz")


def test_box_mode_not_matching_the_declared_one_is_refused_with_the_mode_that_fits():
    # corners written, sizes declared: x1 < x0 + w puts the box outside; as two corners it fits
    corners = [[4, 4, 4, 12, 14, 10]]
    with pytest.raises(GenesisInputError, match=r"valid as 'xyzxyz'.*box_mode 'xyzxyz'"):
        check_boxes(corners, "xyzwhd", np.eye(4), (16, 16, 16), source="c.nii.gz")
    # sizes written, corners declared: the second corner lies before the first
    sizes = [[8, 8, 8, 4, 4, 4]]
    with pytest.raises(GenesisInputError, match=r"c.nii.gz: box 0 has size \[-4.0, -4.0, -4.0\].*valid as 'xyzwhd'"):
        check_boxes(sizes, "xyzxyz", np.eye(4), (16, 16, 16), source="c.nii.gz")
    with pytest.raises(ValueError, match="box_mode 'ccwh' is not a 3D box mode"):
        check_box_mode("ccwh")


def test_blob_phantom_boxes_are_known_and_separate():
    image, label = blob_phantom((48, 48, 40), seed=3, num_blobs=3)
    boxes, classes = boxes_from_label(label)
    assert len(boxes) == 3 and classes.tolist() == [0, 0, 0]
    sides = boxes[:, 3:] - boxes[:, :3]
    assert sides.min() >= 2 * 4 - 1 and sides.max() <= 2 * 8 + 1
    inside = np.concatenate([image[tuple(slice(int(a), int(b)) for a, b in zip(box[:3], box[3:]))][label[
        tuple(slice(int(a), int(b)) for a, b in zip(box[:3], box[3:]))] > 0] for box in boxes])
    assert abs(float(np.mean(inside)) - 400) < 5
    np.testing.assert_array_equal(blob_phantom((48, 48, 40), seed=3, num_blobs=3)[0], image)
