"""The volume store through ``python -m monai.bundle run``: a prepared store is reused or left alone, never prepared
again in place; bad stores and volumes end the run on a message naming the file and the fix (#21)."""

import json
from pathlib import Path

import nibabel as nib
import numpy as np

from monai_genesis.data import StoreSettings
from tests.bundles.workflows import BASE, QUICK, TINY, config
from tests.packaging.helpers import run_cli

BUNDLE = "genesis_pretrain"


def _volumes(folder: Path, channels: int | None = None) -> Path:
    folder.mkdir(parents=True)
    for i in range(3):
        shape = (40, 36, 24) + ((channels,) if channels else ())
        hu = np.random.default_rng(i).integers(-1000, 1000, shape).astype(np.int16)
        nib.save(nib.Nifti1Image(hu, np.diag([0.8, 0.8, 2.0, 1.0])), str(folder / f"ct{i}.nii.gz"))
    return folder


def _run(root: Path, check: bool = True, **override):
    args = ["-m", "monai.bundle", "run", "--config_file", f"['{config(BUNDLE, 'train')}','{BASE}','{QUICK}']",
            "--bundle_root", str(root), "--epochs", "1"]
    for key, value in {**TINY[BUNDLE], **override}.items():
        args += [f"--{key}", json.dumps(value).replace(" ", "") if not isinstance(value, str) else value]
    return run_cli(args, check=check)


def _files(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*.npy")}


def test_a_prepared_store_is_reused_or_left_alone(tmp_path):
    data = _volumes(tmp_path / "data")
    store = tmp_path / "store"
    run_cli(["-m", "monai_genesis", "prepare", "--store", str(store), "--dataset_dir", str(data), "--pixdim", "1.6,1.6,2",
             "--store_dtype", "float16"])
    prepared = _files(store)
    assert len(prepared) == 3
    # the bundle's default settings differ: it prepares beside the store and names the flags that reuse it
    log = _run(tmp_path / "a", dataset_dir=str(data), store_dir=str(store)).stdout
    assert "--pixdim 1.6,1.6,2" in log and "--store_dtype float16" in log
    assert {k: v for k, v in _files(store).items() if k in prepared} == prepared and len(_files(store)) == 6
    # with the command's settings the bundle reuses the prepared volumes as they are; a damaged one is redone
    damaged = store / next(iter(prepared))
    damaged.write_bytes(damaged.read_bytes()[:1000])
    log = _run(tmp_path / "b", dataset_dir=str(data), store_dir=str(store), pixdim=[1.6, 1.6, 2], store_dtype="float16").stdout
    assert damaged.name in log and "preparing it again" in log
    after = _files(store)
    assert len(after) == 6 and all(after[k] == v for k, v in prepared.items() if k != next(iter(prepared)))
    settings = StoreSettings(pixdim=(1.6, 1.6, 2.0), dtype="float16")
    assert all(k.startswith(settings.digest) for k in prepared)


def test_bad_stores_and_volumes_end_the_run_on_their_name(tmp_path):
    a_file = tmp_path / "store_file"
    a_file.write_text("")
    proc = _run(tmp_path / "a", check=False, store_dir=str(a_file))
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines()[-1].endswith("pass a folder path (--store_dir) that is absent or a folder.")
    assert str(a_file) in proc.stderr.strip().splitlines()[-1]
    two = _volumes(tmp_path / "two", channels=2)
    proc = _run(tmp_path / "b", check=False, dataset_dir=str(two), intensity="minmax")
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode != 0 and "ct0.nii.gz has 2 channels, the network takes 1; pass --in_channels 2 --out_channels 2" in last
    assert not (tmp_path / "b" / "models" / "model_final.pt").exists()
