"""Helpers shared by the packaging and distributed tests."""

import os
import subprocess
import sys


def run_cli(args, cwd=None, check=True):
    """Run ``python ARGS`` in a subprocess that reaches 127.0.0.1 without any proxy; returns the completed process."""
    env = dict(os.environ, NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost", PYTHONWARNINGS="ignore",
               OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


TINY_NET = {
    "_target_": "monai.networks.nets.UNet",
    "spatial_dims": 3,
    "in_channels": 1,
    "out_channels": 1,
    "channels": [4, 8],
    "strides": [2],
    "num_res_units": 0,
}


def tiny_metadata(version="0.1.0", changelog=None):
    """A ``metadata.json`` with the keys the Model Zoo requires, for a bundle restoring 1-channel 16³ patches."""
    io = {"type": "image", "format": "magnitude", "modality": "CT", "num_channels": 1, "spatial_shape": [16, 16, 16],
          "dtype": "float32", "value_range": [0, 1], "is_patch_data": True, "channel_def": {"0": "image"}}
    return {
        "version": version,
        "changelog": {version: "first release"} if changelog is None else changelog,
        "monai_version": "1.5.0",
        "pytorch_version": "2.1.0",
        "numpy_version": "1.24.0",
        "required_packages_version": {"nibabel": "5.0.0"},
        "name": "Tiny restoration",
        "task": "image restoration",
        "description": "a tiny bundle for tests",
        "authors": "test",
        "copyright": "test",
        "data_source": "random",
        "data_type": "nibabel",
        "intended_use": "tests only",
        "references": [],
        "network_data_format": {"inputs": {"image": io}, "outputs": {"pred": dict(io, channel_def={"0": "restored"})}},
    }


def tiny_inference_config(network_def=None):
    """An ``inference.json`` in Model Zoo form: NIfTI volumes of ``dataset_dir`` → sliding window → NIfTI."""
    return {
        "imports": ["$import glob", "$import os"],
        "bundle_root": ".",
        "output_dir": "$@bundle_root + '/eval'",
        "dataset_dir": "/workspace/data",
        "datalist": "$sorted(glob.glob(@dataset_dir + '/*.nii.gz'))",
        "device": "$torch.device('cpu')",
        "network_def": TINY_NET if network_def is None else network_def,
        "network": "$@network_def.to(@device)",
        "preprocessing": {
            "_target_": "Compose",
            "transforms": [
                {"_target_": "LoadImaged", "keys": "image"},
                {"_target_": "EnsureChannelFirstd", "keys": "image"},
                {"_target_": "EnsureTyped", "keys": "image", "dtype": "$torch.float32"},
            ],
        },
        "dataset": {"_target_": "Dataset", "data": "$[{'image': i} for i in @datalist]", "transform": "@preprocessing"},
        "dataloader": {"_target_": "DataLoader", "dataset": "@dataset", "batch_size": 1, "num_workers": 0},
        "inferer": {"_target_": "SlidingWindowInferer", "roi_size": [16, 16, 16], "sw_batch_size": 1},
        "postprocessing": {
            "_target_": "Compose",
            "transforms": [
                {"_target_": "SaveImaged", "keys": "pred", "meta_keys": "image_meta_dict", "output_dir": "@output_dir",
                 "output_postfix": "pred", "separate_folder": False, "resample": False},
            ],
        },
        "handlers": [
            {"_target_": "CheckpointLoader", "load_path": "$@bundle_root + '/models/model.pt'",
             "load_dict": {"model": "@network"}, "map_location": "@device"},
        ],
        "evaluator": {
            "_target_": "SupervisedEvaluator", "device": "@device", "val_data_loader": "@dataloader",
            "network": "@network", "inferer": "@inferer", "postprocessing": "@postprocessing",
            "val_handlers": "@handlers", "amp": False,
        },
        "initialize": ["$monai.utils.set_determinism(seed=0)"],
        "run": ["$@evaluator.run()"],
    }


def make_tiny_bundle(root, name="tiny_restoration", version="0.1.0", with_weights=True):
    """Write a small Model Zoo bundle ``root/name`` (and its ``models/model.pt`` when asked); returns its path."""
    import json
    from pathlib import Path

    import torch
    from monai.networks.nets import UNet

    bundle = Path(root) / name
    (bundle / "configs").mkdir(parents=True)
    (bundle / "docs").mkdir()
    (bundle / "LICENSE").write_text("Apache License 2.0\n")
    (bundle / "docs" / "README.md").write_text("# tiny\n")
    (bundle / "configs" / "metadata.json").write_text(json.dumps(tiny_metadata(version), indent=4))
    (bundle / "configs" / "inference.json").write_text(json.dumps(tiny_inference_config(), indent=4))
    train = {"imports": ["$import glob"], "bundle_root": ".", "device": "$torch.device('cpu')", "network_def": TINY_NET,
             "network": "$@network_def.to(@device)", "initialize": ["$monai.utils.set_determinism(seed=0)"],
             "run": []}
    (bundle / "configs" / "train.json").write_text(json.dumps(train, indent=4))
    if with_weights:
        torch.manual_seed(7)
        net = UNet(**{k: v for k, v in TINY_NET.items() if k != "_target_"})
        (bundle / "models").mkdir()
        torch.save(net.state_dict(), bundle / "models" / "model.pt")
    return bundle
