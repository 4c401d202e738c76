"""Helpers to run the bundles end to end in tiny settings (all outputs under pytest's tmp folders)."""

from __future__ import annotations

from pathlib import Path

import json
import signal
import subprocess
import sys
import time

from ignite.engine import Events
from monai.bundle import ConfigWorkflow

REPO = Path(__file__).resolve().parents[2]
BUNDLES = REPO / "bundles"
QUICK = str(REPO / "configs" / "quick.json")
# the shared base every bundle's own train.json is merged with (trainer, evaluator, checkpoints, logging)
BASE = str(REPO / "configs" / "base" / "train.json")

# tinier than configs/quick.json so that the whole folder runs in well under two minutes on 2 cores
TINY = {
    "genesis_pretrain": {
        "genesis_features": 2,
        "patch_size": [16, 16, 16],
        "phantom_size": [32, 32, 24],
        "num_phantoms": 3,
        "cubes_per_volume": 2,
        "val_cubes_per_volume": 2,
        "batch_size": 2,
        "sw_batch_size": 8,
        "num_workers": 0,
        "restoration_interval": 1,
    },
    "finetune_segmentation": {
        "genesis_features": 2,
        "patch_size": [16, 16, 16],
        "phantom_size": [32, 32, 24],
        "num_label_phantoms": 3,
        "num_samples": 2,
        "volumes_per_batch": 2,
        "sw_batch_size": 8,
        "num_workers": 0,
        "epochs": 1,
    },
    "finetune_classification": {
        "genesis_features": 2,
        "patch_size": [16, 16, 16],
        "patch_phantom_size": [16, 16, 16],
        "num_patch_phantoms": 4,
        "batch_size": 2,
        "num_workers": 0,
        "epochs": 1,
    },
    "mae_pretrain": {
        "resenc_features": [2, 4, 4, 4, 4, 4],
        "resenc_strides": [1, 2, 2, 2, 1, 1],
        "patch_size": [16, 16, 16],
        "mask_block_size": 8,
        "phantom_size": [32, 32, 24],
        "num_phantoms": 3,
        "cubes_per_volume": 2,
        "val_cubes_per_volume": 2,
        "batch_size": 2,
        "sw_batch_size": 8,
        "num_workers": 0,
    },
    "finetune_detection": {
        "num_detection_phantoms": 4,
        "batch_size": 2,
        "num_workers": 0,
        "epochs": 1,
    },
    "cspr_pretrain": {
        "num_classes": 2,
        "synthetic_per_class": 8,
        "synthetic_size": 16,
        "image_size": 16,
        "batch_size": 4,
        "num_workers": 0,
        "epochs": 1,
    },
}


# the tiny runs validate after every epoch, whatever configs/quick.json says
for _settings in TINY.values():
    _settings["val_interval"] = 1


def config(bundle: str, name: str) -> str:
    return str(BUNDLES / bundle / "configs" / f"{name}.json")


def make_workflow(bundle: str, kind: str, root: Path, extra_configs: list | None = None, **override) -> ConfigWorkflow:
    """A workflow of ``bundle`` ('train', 'evaluate' or 'inference') with the quick and tiny settings, rooted at ``root``.

    ``extra_configs`` are merged last (e.g. a network preset).
    """
    files = {
        "train": [config(bundle, "train"), BASE, QUICK],
        "evaluate": [config(bundle, "train"), BASE, config(bundle, "evaluate"), QUICK],
        "inference": [config(bundle, "inference"), QUICK],
    }[kind] + list(extra_configs or [])
    settings = {**TINY[bundle], "bundle_root": str(root), **override}
    workflow = ConfigWorkflow(
        config_file=files,
        meta_file=config(bundle, "metadata"),
        logging_file=False,
        workflow_type="train" if kind == "train" else "infer",
        **settings,
    )
    workflow.initialize()
    return workflow


def run_workflow(bundle: str, kind: str, root: Path, extra_configs: list | None = None, **override) -> ConfigWorkflow:
    """Initialise, check the properties, run and finalise a workflow; returns it for inspection."""
    workflow = make_workflow(bundle, kind, root, extra_configs, **override)
    assert workflow.check_properties() == []
    workflow.run()
    workflow.finalize()
    return workflow


def root_cause(error: BaseException) -> BaseException:
    """The innermost exception of a chain (config evaluation wraps errors in RuntimeError)."""
    while error.__cause__ is not None:
        error = error.__cause__
    return error


def kill_and_resume(bundle: str, root: Path, timeout: float = 180.0) -> tuple[int, list[int]]:
    """Train ``bundle`` from the command line, kill it once it has saved an epoch, resume one more epoch in process.

    Returns the last saved epoch and the epochs the resumed run started.
    """
    args = [f"--{key}={json.dumps(value).replace(' ', '')}" for key, value in TINY[bundle].items()]
    cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file", f"['{config(bundle, 'train')}','{BASE}','{QUICK}']",
           "--bundle_root", str(root), "--epochs", "100", *args]
    proc = subprocess.Popen(cmd, cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + timeout
        while not list((root / "models").glob("resume_checkpoint_epoch=*.pt")) and time.time() < deadline:
            assert proc.poll() is None, "the training stopped before saving its first epoch"
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    saved = max(int(p.stem.split("=")[1]) for p in (root / "models").glob("resume_checkpoint_epoch=*.pt"))
    workflow = make_workflow(bundle, "train", root, epochs=saved + 1, resume=True)
    epochs: list[int] = []
    workflow.trainer.add_event_handler(Events.EPOCH_STARTED, lambda e: epochs.append(e.state.epoch))
    workflow.run()
    return saved, epochs
