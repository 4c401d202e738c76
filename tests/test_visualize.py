import os
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from PIL import Image

from monai_genesis.networks import GenesisUNet
from monai_genesis.transforms import RandBlockMask, RandGenesisCorruption
from monai_genesis.visualize import (
    View,
    available_path,
    preview,
    render_grid,
    restoration_grid,
    restore_slice,
    save_restoration_grid,
    slice_restoration_picture,
    slice_view,
    to_ras,
)


def _phantom(shape=(40, 36, 20)):
    """An asymmetric RAS phantom: a soft body, a bright block right-anterior-superior, a dim one left-posterior-inferior."""
    v = np.full(shape, 0.2, dtype=np.float32)
    x, y, z = shape
    v[x * 3 // 4 :, y // 2 :, z // 2 :] = 1.0
    v[: x // 4, : y // 2, : z // 2] = 0.5
    return v


def _save(path, data, affine):
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, affine), str(path))
    return path


def _ras_and_twin(tmp_path, spacing=(1.0, 1.0, 2.0)):
    """The phantom as a RAS NIfTI and as its twin stored with the x axis flipped and the x, y axes swapped."""
    data = _phantom()
    affine = np.diag([*spacing, 1.0])
    ras = _save(tmp_path / "ras" / "scan.nii.gz", data, affine)
    flip = np.eye(4)
    flip[0, 0], flip[0, 3] = -1.0, data.shape[0] - 1  # twin voxel i holds RAS voxel X-1-i
    swap = np.eye(4)[[1, 0, 2, 3]]  # twin axes (j, i, k)
    twin_data = np.ascontiguousarray(data[::-1].transpose(1, 0, 2))
    twin = _save(tmp_path / "twin" / "scan.nii.gz", twin_data, affine @ flip @ swap)
    assert nib.aff2axcodes(nib.load(str(twin)).affine) == ("A", "L", "S")
    return ras, twin


def test_slice_view_is_radiological():
    v = np.zeros((1, 8, 6, 4), dtype=np.float32)
    v[0, 7, 0, 2] = 1.0  # the right-most, most posterior voxel of the middle axial slice
    axial = slice_view(v, "axial", spacing=(0.5, 1.0, 2.0))
    assert axial.pixels.shape == (6, 8) and axial.edges == ("A", "P", "R", "L") and axial.spacing == (1.0, 0.5)
    assert axial.pixels[5, 0] == 1.0 and axial.pixels.sum() == 1.0  # patient's right on the left, posterior down
    coronal = slice_view(v, "coronal", index=0, spacing=(0.5, 1.0, 2.0))
    assert coronal.pixels.shape == (4, 8) and coronal.edges == ("S", "I", "R", "L") and coronal.spacing == (2.0, 0.5)
    assert coronal.pixels[1, 0] == 1.0  # z = 2 of 4 is the second row from the top
    sagittal = slice_view(v, "sagittal", index=7)
    assert sagittal.pixels.shape == (4, 6) and sagittal.edges == ("S", "I", "A", "P")
    assert sagittal.pixels[1, 5] == 1.0  # posterior on the right
    with pytest.raises(ValueError, match="outside the 4 axial"):
        slice_view(v, "axial", index=4)


def test_to_ras_undoes_a_flipped_affine():
    data = torch.as_tensor(_phantom())[None]
    affine = torch.diag(torch.tensor([-0.5, 1.5, 1.0, 1.0], dtype=torch.float64))
    flipped = MetaTensor(torch.flip(data, [1]), affine=affine)
    ras, spacing = to_ras(flipped)
    assert spacing == (0.5, 1.5, 1.0)
    torch.testing.assert_close(ras, data)
    with pytest.raises(ValueError, match="channel-first volume"):
        to_ras(MetaTensor(data[0]))


def _panel_box(picture):
    """Bounding box (top, left, bottom, right) of the pure black or white grey pixels of a rendered panel."""
    rgb = np.asarray(picture).astype(int)
    grey = (rgb[..., 0] == rgb[..., 1]) & (rgb[..., 1] == rgb[..., 2]) & np.isin(rgb[..., 0], (0, 255))
    rows, cols = np.nonzero(grey)
    return rows.min(), cols.min(), rows.max() + 1, cols.max() + 1


def test_render_grid_keeps_the_aspect_and_magnifies_by_nearest_neighbour():
    checker = (np.indices((10, 20)).sum(0) % 2).astype(np.float32)
    picture = render_grid([[View(checker, spacing=(3.0, 1.0))]], min_size=100)
    top, left, bottom, right = _panel_box(picture)
    # 20 mm wide and 30 mm tall at 1 px/mm, magnified 5 times to reach 100 px
    assert (right - left, bottom - top) == (100, 150)
    panel = np.asarray(picture)[top:bottom, left:right, 0]
    np.testing.assert_array_equal(panel[::15, ::5], checker * 255)
    np.testing.assert_array_equal(panel, np.repeat(np.repeat(checker * 255, 15, axis=0), 5, axis=1))


def test_render_grid_shares_a_window_across_a_row_and_checks_its_arguments():
    flat = np.full((4, 4), 0.5, dtype=np.float32)
    picture = render_grid([[flat, flat * 2], [flat, flat * 2]], windows=[(0.0, 1.0), (0.0, 2.0)], min_size=8)
    assert picture.mode == "RGB"
    values = set(np.unique(np.asarray(picture)[..., 0]).tolist())
    assert {128, 255, 64} <= values  # 0.5 and 1.0 in (0, 1); 0.5 and 1.0 in (0, 2)
    with pytest.raises(ValueError, match="2 titles for 1 columns"):
        render_grid([[flat]], titles=["a", "b"])
    with pytest.raises(ValueError, match="low < high"):
        render_grid([[flat]], windows=(1.0, 1.0))


def test_preview_matches_its_ras_twin(tmp_path):
    ras, twin = _ras_and_twin(tmp_path)
    assert not np.array_equal(nib.load(str(ras)).get_fdata(), nib.load(str(twin)).get_fdata().transpose(1, 0, 2))
    pictures = [
        np.asarray(Image.open(preview(str(p), out=str(tmp_path / f"{p.parent.name}.png"), window=(0, 1), pipelines=1)))
        for p in (ras, twin)
    ]
    assert pictures[0].shape == pictures[1].shape
    np.testing.assert_array_equal(pictures[0], pictures[1])


def test_twin_shows_the_phantom_in_orientation_and_aspect(tmp_path):
    twin = nib.load(str(_ras_and_twin(tmp_path)[1]))
    volume, spacing = to_ras(MetaTensor(torch.as_tensor(twin.get_fdata())[None].float(), affine=torch.as_tensor(twin.affine)))
    coronal = slice_view(volume, "coronal", spacing=spacing)
    # the bright block is right (image left) and superior (top); 20 slices of 2 mm are as tall as 40 voxels of 1 mm
    assert coronal.pixels.shape == (20, 40) and coronal.spacing == (2.0, 1.0)
    bright = np.zeros((20, 40), dtype=bool)
    bright[:10, :10] = True
    np.testing.assert_array_equal(coronal.pixels, np.where(bright, 1.0, 0.2).astype(np.float32))
    picture = render_grid([[coronal]], windows=(0.0, 1.0), min_size=40)
    rows, cols = np.nonzero((np.asarray(picture) == 255).all(-1))
    assert rows.max() - rows.min() + 1 == 20 and cols.max() - cols.min() + 1 == 10  # 10 slices of 2 mm, 10 voxels


def test_preview_writes_a_labelled_grid_and_keeps_an_existing_file(tmp_path):
    out = preview(str(_ras_and_twin(tmp_path)[0]), out=str(tmp_path / "grid.png"), window=(0, 1), pipelines=2)
    img = np.asarray(Image.open(out))
    assert img.shape[1] > 7 * 192 and img.shape[0] > 3 * 100  # 1 + 5 + 2 columns of at least 192 px; 3 views
    assert (np.abs(img.astype(int) - (255, 210, 0)).sum(-1) == 0).any()  # the orientation letters
    with pytest.raises(FileExistsError, match="--overwrite"):
        preview(str(_ras_and_twin(tmp_path)[0]), out=out)


@pytest.mark.slow
def test_preview_cli(tmp_path):
    out = tmp_path / "cli.png"
    cmd = [sys.executable, "-m", "monai_genesis", "preview", "--image", str(_ras_and_twin(tmp_path)[0]), "--out", str(out)]
    subprocess.run(cmd + ["--window", "[0,1]", "--pipelines", "1"], check=True, capture_output=True)
    assert out.stat().st_size > 1000


def test_preview_of_a_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        preview(str(tmp_path / "none.nii.gz"))


@pytest.mark.slow
def test_real_dicom_and_its_nifti_preview_alike(shared_data, tmp_path):
    from monai.transforms import LoadImage

    dicom = shared_data / "totalsegmentator" / "example_ct_dicom"
    ct = LoadImage(image_only=True)(str(dicom))
    # the same scan as a RAS NIfTI: the array the DICOM reader gave, reordered by nibabel
    nifti = nib.as_closest_canonical(nib.Nifti1Image(ct.numpy(), ct.affine.numpy()))
    assert nib.aff2axcodes(ct.affine.numpy()) == ("L", "P", "S") and nib.aff2axcodes(nifti.affine) == ("R", "A", "S")
    path = tmp_path / "ct.nii.gz"
    nib.save(nifti, str(path))
    kw = {"window": (-1000, 1000), "pipelines": 1}
    a = np.asarray(Image.open(preview(str(dicom), out=str(tmp_path / "dicom.png"), **kw)))
    b = np.asarray(Image.open(preview(str(path), out=str(tmp_path / "nifti.png"), **kw)))
    assert a.shape == b.shape
    np.testing.assert_array_equal(a[45:], b[45:])  # below the header line naming the file


def test_real_ct_and_organ_map_agree_in_the_radiological_view(shared_data):
    from monai.transforms import LoadImage

    load = LoadImage(image_only=True, ensure_channel_first=True)
    folder = shared_data / "totalsegmentator"
    (ct, ct_spacing), (seg, seg_spacing) = (to_ras(load(str(p))) for p in (folder / "example_ct_dicom", folder / "example_seg_dicom.nii.gz"))
    ct_view, seg_view = slice_view(ct, spacing=ct_spacing), slice_view(seg, spacing=seg_spacing)
    assert ct_view.pixels.shape == seg_view.pixels.shape == (512, 512) and ct_view.spacing == seg_view.spacing
    liver = seg_view.pixels == 5  # TotalSegmentator's liver, on the patient's right
    assert np.nonzero(liver)[1].mean() < 256  # radiological: the patient's right is on the image's left
    assert 30 < ct_view.pixels[liver].mean() < 200  # the DICOM's liver lies under the NIfTI's liver (contrast CT)
    assert (ct_view.pixels[seg_view.pixels > 0] > -500).mean() > 0.95


@pytest.mark.slow
def test_preview_of_a_dicom_folder(shared_data, tmp_path):
    out = preview(str(shared_data / "totalsegmentator" / "example_ct_dicom"), out=str(tmp_path / "d.png"), pipelines=1)
    assert Image.open(out).width > 1000


def test_restoration_grid_of_cubes(tmp_path):
    batch = torch.rand(5, 1, 16, 16, 8)
    named = {"corrupted": batch, "restored": batch, "original": batch}
    grid = restoration_grid(named, max_rows=4, spacing=(1.0, 2.0, 1.0))
    assert grid.height > 4 * 256 and grid.width > 3 * 128  # rows of panels 128 px wide, twice as tall (2 mm along y)
    path = save_restoration_grid(named, tmp_path / "r.png")
    assert np.asarray(Image.open(path)).shape[:2] == np.asarray(restoration_grid(named)).shape[:2]
    with pytest.raises(ValueError, match="batches of volumes"):
        restoration_grid({"a": torch.rand(2, 1, 8, 8)})


def test_available_path(tmp_path):
    assert available_path(tmp_path / "r.png") == tmp_path / "r.png"
    (tmp_path / "r.png").write_bytes(b"x")
    (tmp_path / "r_1.png").write_bytes(b"x")
    assert available_path(tmp_path / "r.png") == tmp_path / "r_2.png"


class _Identity(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(()))
        self.shapes = []

    def forward(self, x):
        self.shapes.append(tuple(x.shape))
        return x * self.scale


def test_restore_slice_through_windows_of_the_cube_size():
    volume = MetaTensor(torch.flip(torch.as_tensor(_phantom((40, 36, 20)))[None], [1]), affine=torch.diag(torch.tensor([-1.0, 1, 2, 1])))
    net = _Identity().train()
    views = restore_slice(net, volume, (16, 16, 8), lambda cubes: 1.0 - cubes, max_windows=None)
    assert net.training and {s[2:] for s in net.shapes} == {(16, 16, 8)}  # put back in training mode
    assert sum(s[0] for s in net.shapes) == 3 * 3  # 40 x 36 voxels need 3 x 3 cubes
    expected = slice_view(torch.as_tensor(_phantom((40, 36, 20)))[None], "axial", spacing=(1.0, 1.0, 2.0))
    np.testing.assert_array_equal(views["original"].pixels, expected.pixels)
    np.testing.assert_allclose(views["corrupted"].pixels, 1.0 - expected.pixels)
    np.testing.assert_allclose(views["restored"].pixels, views["corrupted"].pixels)  # the identity network
    cropped = restore_slice(net, volume, (16, 16, 8), lambda cubes: cubes, max_windows=4)
    assert cropped["original"].pixels.shape == (32, 32)  # the central 2 x 2 cubes


def test_restore_slice_with_the_genesis_corruption_and_a_block_mask():
    volume = torch.as_tensor(_phantom((32, 32, 16)))[None]
    net = GenesisUNet(features=4)
    genesis = RandGenesisCorruption(flip_rate=0.0)
    genesis.set_random_state(0)
    views = restore_slice(net, volume, (16, 16, 16), genesis)
    changed = views["corrupted"].pixels != views["original"].pixels
    assert changed.mean() > 0.1 and views["restored"].pixels.shape == (32, 32)
    masked = restore_slice(net, volume, (16, 16, 16), RandBlockMask(block_size=8, mask_ratio=0.5))
    assert (masked["corrupted"].pixels == 0).mean() > 0.2  # masked blocks are filled with 0
    with pytest.raises(ValueError, match="flip_rate=0.0"):
        restore_slice(net, volume, (16, 16, 16), RandGenesisCorruption())
    with pytest.raises(ValueError, match="three positive ints"):
        restore_slice(net, volume, (16, 16), genesis)


def _runs(flags):
    """(start, stop) of each run of True in a 1D boolean array."""
    edges = np.diff(np.concatenate([[0], flags.astype(int), [0]]))
    return list(zip(np.nonzero(edges == 1)[0], np.nonzero(edges == -1)[0]))


def test_slice_restoration_picture_has_three_titled_columns_on_one_window():
    volume = torch.as_tensor(_phantom((32, 32, 16)))[None]
    titles = ("original", "masked", "reconstructed")
    picture = slice_restoration_picture(_Identity(), volume, (16, 16, 8), lambda c: c, titles=titles, window=(0.0, 1.0))
    rgb = np.asarray(picture).astype(int)
    grey = (rgb[..., 0] == rgb[..., 1]) & (rgb[..., 1] == rgb[..., 2])
    red = rgb[..., 0]
    phantom = grey & np.isin(red, (51, 128, 255))  # 0.2, 0.5 and 1.0 under the window (0, 1)
    columns, rows = _runs(phantom.any(0)), _runs(phantom.any(1))
    # three panels of 32 voxels magnified 8 times, identical pixel for pixel under one window
    assert [b - a for a, b in columns] == [256] * 3 and [b - a for a, b in rows] == [256]
    panels = [red[rows[0][0] : rows[0][1], a:b] for a, b in columns]
    np.testing.assert_array_equal(panels[0], panels[1])
    np.testing.assert_array_equal(panels[0], panels[2])
    with pytest.raises(ValueError, match="three strings"):
        slice_restoration_picture(_Identity(), volume, (16, 16, 8), lambda c: c, titles=("a", "b"))


@pytest.mark.slow
@pytest.mark.parametrize("command, flag", [("preview", "--window"), ("package", "--bundle")])
def test_cli_help(command, flag):
    done = subprocess.run(
        [sys.executable, "-m", "monai_genesis", command, "--help"], capture_output=True, text=True, env={**os.environ, "PAGER": "cat"}
    )
    assert done.returncode == 0 and flag in done.stdout + done.stderr  # fire pages its help to stderr without a tty
