import os
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image

from monai_genesis.visualize import middle_slices, preview, save_restoration_grid


def _volume(tmp_path, shape=(70, 66, 40)):
    rng = np.random.RandomState(0)
    hu = rng.uniform(-1000, 1000, shape).astype(np.float32)
    path = tmp_path / "ct.nii.gz"
    nib.save(nib.Nifti1Image(hu, np.eye(4)), str(path))
    return path


def test_preview_writes_a_grid(tmp_path):
    out = preview(str(_volume(tmp_path)), out=str(tmp_path / "grid.png"), window=(-1000, 1000), pipelines=3, scale=1)
    img = Image.open(out)
    # 5 single corruptions + 3 pipelines, each 64 px wide, 2 px apart; the three views of the 64×64×32 cube
    # stacked (64 + 32 + 32 rows, each view followed by a 1-px gap) under a 14-px title line
    assert img.width == 8 * 64 + 7 * 2
    assert img.height == 14 + (65 + 33 + 33) + 2
    assert np.asarray(img).std() > 10
    with pytest.raises(FileExistsError, match="--overwrite"):
        preview(str(_volume(tmp_path)), out=out)


def test_preview_cli(tmp_path):
    out = tmp_path / "cli.png"
    cmd = [sys.executable, "-m", "monai_genesis", "preview", "--image", str(_volume(tmp_path)), "--out", str(out)]
    subprocess.run(cmd + ["--window", "[-1000,1000]"], check=True, capture_output=True)
    assert out.stat().st_size > 1000


def test_preview_of_a_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        preview(str(tmp_path / "none.nii.gz"))


def test_preview_of_a_dicom_folder(shared_data, tmp_path):
    out = preview(str(shared_data / "totalsegmentator" / "example_ct_dicom"), out=str(tmp_path / "d.png"))
    assert Image.open(out).width > 500


def test_restoration_grid(tmp_path):
    batch = torch.rand(5, 1, 16, 16, 8)
    named = {"corrupted": batch, "restored": batch, "original": batch}
    path = save_restoration_grid(named, tmp_path / "r.png", scale=1)
    img = Image.open(path)
    # three columns of 16 px; four rows (max_rows) of the stacked views 16 + 8 + 8 (+1 px each)
    assert img.width == 3 * 16 + 2 * 2
    assert img.height == 14 + 4 * (35 + 2)
    assert middle_slices(torch.rand(1, 10, 12)).shape == (10, 12)


@pytest.mark.parametrize("command, flag", [("preview", "--window"), ("package", "--bundle")])
def test_cli_help(command, flag):
    done = subprocess.run(
        [sys.executable, "-m", "monai_genesis", command, "--help"], capture_output=True, text=True, env={**os.environ, "PAGER": "cat"}
    )
    assert done.returncode == 0 and flag in done.stdout + done.stderr  # fire pages its help to stderr without a tty
