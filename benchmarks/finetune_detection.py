"""Detection fine-tuned from scratch and from a CSPR backbone on real scans, boxes derived from the masks.

    python benchmarks/finetune_detection.py --setting reduced --device cpu --cspr-checkpoint CSPR/models/model.pt
        [--inits scratch cspr] [--seeds 0] [--folds 0 1] [--tasks brats spleen]

Tasks (``../shared/data``; boxes from the masks by the bundle itself, ``label_volume`` datalist entries):

- ``brats``: BraTS 2013 FLAIR, whole tumour (label > 0), one box per connected component of at least
  ``--min-box-voxels`` voxels. Fold 0 (the default) trains on pat0005/pat0006 and scores pat0003/pat0004; fold 1
  swaps them.
  The FLAIR is windowed to [0, 1] by its 0.5-99.5 percentiles inside the brain mask and resampled to the
  ``--spacing`` (3 mm: 80x80x52 voxels); the mask follows by nearest neighbour.
- ``spleen``: TotalSegmentator, the spleen (class 1 of its map): trained on the 20-slice DICOM series' map
  (0.98x0.98x2 mm) and scored on the 30-slice NIfTI crop (3 mm), both resampled to ``--spacing``; CT windowed
  [-1000, 1000]. One training and one scored volume: a check that the recipe transfers to CT, not an estimate.

Each run trains ``finetune_detection`` (``bundles/finetune_detection/configs/train.json`` over the shared base
``configs/base/train.json``) with the same seed, split and steps for every initialisation: ``scratch`` (random weights)
and ``cspr`` (the whole ResNet-18 encoder of a ``cspr_pretrain`` checkpoint). It validates after every epoch of
``--epoch-steps`` steps (plus once before training) and records COCO mAP@0.1, mAP@0.5 and mAR of every validation,
the learning curve. mAP@0.1 is the Model Zoo's key
metric for nodules; for objects as large as these tumours and organs a box of random place and size often overlaps
them by 10%, so mAP@0.5 is the stricter reading. The results go to
``benchmarks/results/finetune_detection_<setting>_<device>[_tag].{json,md}``, with one learning-curve PNG per task
and metric beside them (``--table RESULTS.json`` redraws the table and the curves from a results file).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import common

logger = logging.getLogger("benchmarks.finetune_detection")

BUNDLE = "finetune_detection"
BRATS = common.SHARED_DATA / "brats2013"
TOTALSEG = common.SHARED_DATA / "totalsegmentator"
BRATS_FOLDS = ((("pat0005", "pat0006"), ("pat0003", "pat0004")), (("pat0003", "pat0004"), ("pat0005", "pat0006")))
INITS = ("scratch", "cspr")
LABELS = {"scratch": "ResNet-18 RetinaNet, scratch", "cspr": "ResNet-18 RetinaNet, CSPR encoder"}
SETTINGS = {
    "smoke": {"epochs": 2, "epoch_steps": 2, "spacing": 4.0},
    "reduced": {"epochs": 10, "epoch_steps": 8, "spacing": 3.0},
    "full": {"epochs": 100, "epoch_steps": 20, "spacing": 2.0},
}


def _resample(array: np.ndarray, zooms, spacing: float, mode: str) -> np.ndarray:
    """``array`` from voxel sides ``zooms`` (mm) to ``spacing`` mm: trilinear for images, nearest for labels."""
    size = [max(1, int(round(n * z / spacing))) for n, z in zip(array.shape, zooms)]
    t = torch.as_tensor(np.ascontiguousarray(array), dtype=torch.float32)[None, None]
    out = F.interpolate(t, size=size, mode=mode, **({"align_corners": False} if mode == "trilinear" else {}))
    return out[0, 0].numpy()


def _write_pair(out: Path, name: str, image: np.ndarray, label: np.ndarray, affine: np.ndarray, zooms, spacing: float) -> dict:
    """Write the image (float32 in [0, 1]) and label (uint8) at ``spacing`` and return their datalist entry."""
    image = np.clip(_resample(image, zooms, spacing, "trilinear"), 0, 1).astype(np.float32)
    label = _resample(label.astype(np.float32), zooms, spacing, "nearest").astype(np.uint8)
    scaled = affine.copy()
    scaled[:3, :3] = affine[:3, :3] @ np.diag([spacing / z for z in zooms])
    nib.save(nib.Nifti1Image(image, scaled), str(out / f"{name}.nii.gz"))
    nib.save(nib.Nifti1Image(label, scaled), str(out / f"{name}_label.nii.gz"))
    return {"image": f"{name}.nii.gz", "label_volume": f"{name}_label.nii.gz"}


def prepare_brats(out: Path, spacing: float) -> dict[str, dict]:
    """The BraTS cases at ``spacing``: FLAIR windowed in the brain mask, whole tumour as label 1."""
    entries = {}
    for case in sorted(BRATS.glob("brats_2013_pat*_1")):
        key = case.name.split("_")[2]
        img = nib.load(str(case / "Flair_subtrMeanDivStd.nii.gz"))
        flair = np.asanyarray(img.dataobj).astype(np.float32)
        brain = np.asanyarray(nib.load(str(case / "brainmask.nii.gz")).dataobj) > 0
        lo, hi = np.percentile(flair[brain], (0.5, 99.5))
        flair = np.where(brain, (flair - lo) / (hi - lo), 0.0)
        tumour = np.asanyarray(nib.load(str(case / "OTMultiClass.nii.gz")).dataobj) > 0
        entries[key] = _write_pair(out, f"brats_{key}", flair, tumour, img.affine, img.header.get_zooms()[:3], spacing)
    return entries


def prepare_spleen(out: Path, spacing: float) -> tuple[dict, dict]:
    """The spleen of TotalSegmentator's DICOM series (training) and NIfTI crop (scored), CT window [-1000, 1000]."""
    from monai.transforms import LoadImage

    loader = LoadImage(image_only=True)
    pairs = []
    for image_path, label_path, name in (
        (TOTALSEG / "example_ct_dicom", TOTALSEG / "example_seg_dicom.nii.gz", "spleen_dicom"),
        (TOTALSEG / "example_ct_sm.nii.gz", TOTALSEG / "example_seg.nii.gz", "spleen_crop"),
    ):
        label_img = nib.load(str(label_path))
        label = np.asanyarray(label_img.dataobj) == 1
        ct = np.asarray(loader(str(image_path)), dtype=np.float32)
        if ct.shape != label.shape:
            raise ValueError(f"{image_path} ({ct.shape}) and {label_path} ({label.shape}) differ in shape.")
        ct = (np.clip(ct, -1000, 1000) + 1000) / 2000
        pairs.append(_write_pair(out, name, ct, label, label_img.affine, label_img.header.get_zooms()[:3], spacing))
    return pairs[0], pairs[1]


def run_one(task: str, datalist: Path, init: str, seed: int, args, device: torch.device, root: Path) -> dict:
    """Train one arm and return its record with the validation history."""
    from ignite.engine import Events

    overrides = {
        "datalist": str(datalist),
        "box_mode": "xyzxyz",
        "class_names": [task],
        "label_classes": [1],
        "min_box_voxels": args.min_box_voxels,
        "intensity": "none",
        "seed": seed,
        "epochs": args.epochs,
        "val_interval": 1,
        "batch_size": args.batch_size,
        "num_crops": 2,
        "num_workers": 0,
        "detection_patch_size": args.patch_size,
        "returned_layers": args.returned_layers,
        "detection_roi_size": args.roi_size,
        "learning_rate": args.learning_rate,
        "patience": 1000,
        "device": common.device_override(device),
        "train#handlers": common.train_handlers_without_progress(BUNDLE),
        "train#trainer#epoch_length": args.epoch_steps,
    }
    if init == "cspr":
        overrides["pretrained"] = str(args.cspr_checkpoint)
    workflow = common.bundle_workflow(BUNDLE, root, **overrides)
    history: list[dict] = []
    evaluator = workflow.parser.get_parsed_content("validate#evaluator")
    trainer = workflow.parser.get_parsed_content("train#trainer")
    evaluator.add_event_handler(Events.EPOCH_COMPLETED, lambda e: history.append({
        "epoch": trainer.state.epoch, "step": trainer.state.iteration,
        "map_0.1": float(e.state.metrics["val_mAP_IoU_0.1"]), "map_0.5": float(e.state.metrics["val_mAP_IoU_0.5"]),
        "mar": float(e.state.metrics["val_mAR_IoU_0.1_0.5"]),
    }))
    start = time.time()
    workflow.run()
    workflow.finalize()
    loader = workflow.parser.get_parsed_content("train#handlers")[0]
    loaded = 0 if loader.report is None else len([k for k in loader.report.loaded if k.startswith("feature_extractor.body.")])
    record = {"task": task, "init": init, "seed": seed, "history": history, "final": history[-1], "best_map_0.1": max(h["map_0.1"] for h in history),
              "backbone_tensors_loaded": loaded, "seconds": round(time.time() - start, 1)}
    logger.info(f"{task} {init} seed {seed}: mAP@0.1 per epoch {[round(h['map_0.1'], 3) for h in history]} ({record['seconds']} s)")
    return record


def results_table(payload: dict) -> str:
    """The Markdown table of a results payload: mAP@0.1 and mAP@0.5 before training, at the end and at best."""
    runs = payload["runs"]
    rows = []
    for split in dict.fromkeys(r["split"] for r in runs):
        for init in INITS:
            sel = [r for r in runs if r["split"] == split and r["init"] == init]
            if not sel:
                continue
            cells = []
            for metric in ("map_0.1", "map_0.5"):
                cells += [common.fmt(*common.mean_std([r["history"][0][metric] for r in sel])),
                          common.fmt(*common.mean_std([r["history"][-1][metric] for r in sel])),
                          common.fmt(*common.mean_std([max(h[metric] for h in r["history"]) for r in sel]))]
            rows.append([split, LABELS[init], *cells, sel[0]["history"][-1]["step"], sel[0]["backbone_tensors_loaded"], len(sel)])
    return common.markdown_table(
        ["task", "initialisation", "mAP@0.1 before", "mAP@0.1 final", "mAP@0.1 best", "mAP@0.5 before", "mAP@0.5 final",
         "mAP@0.5 best", "steps", "encoder tensors loaded", "seeds"], rows, ["l", "l"] + ["r"] * 9)


def plot_curves(payload: dict, json_path: Path, metrics=("map_0.1", "map_0.5")) -> list[Path]:
    """One learning-curve PNG per task and metric beside the JSON (``plot_learning_curves``' drawing), and the
    curves as Markdown tables (returned in the log)."""
    from benchmarks import plot_learning_curves as plc

    written = []
    for split in dict.fromkeys(r["split"] for r in payload["runs"]):
        subset = {"benchmark": payload["benchmark"], "runs": [r for r in payload["runs"] if r["split"] == split]}
        for metric in metrics:
            lines = plc.curves(subset, metric)
            out = json_path.with_name(f"{json_path.stem}_curve_{split}_{metric.replace('.', '')}.png")
            plc.draw(lines, LABELS, metric, f"{split}: validation {metric} ({payload['setting']}, {payload['parameters']['epoch_steps']} steps an epoch)").save(out)
            logger.info(f"wrote {out}\n{plc.table(lines, LABELS, metric)}")
            written.append(out)
    return written


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--setting", choices=tuple(SETTINGS), default="reduced", help="size preset")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    parser.add_argument("--tasks", nargs="+", choices=("brats", "spleen"), default=["brats", "spleen"])
    parser.add_argument("--inits", nargs="+", choices=INITS, default=list(INITS))
    parser.add_argument("--cspr-checkpoint", help="the cspr_pretrain checkpoint (models/model.pt) of the cspr arm")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--folds", nargs="+", type=int, choices=(0, 1), default=[0], help="BraTS folds (0, 1 or both)")
    parser.add_argument("--epochs", type=int, help="validations after the first (epochs of --epoch-steps steps)")
    parser.add_argument("--epoch-steps", type=int, help="training steps per epoch")
    parser.add_argument("--spacing", type=float, help="resample the volumes to this isotropic spacing in mm")
    parser.add_argument("--patch-size", type=int, nargs=3, default=[64, 64, 64], help="training crop, sides divisible by 32")
    parser.add_argument("--roi-size", type=int, nargs=3, default=[96, 96, 64], help="sliding-window ROI of validation")
    parser.add_argument("--batch-size", type=int, default=2, help="images per step (2 crops each)")
    parser.add_argument("--returned-layers", type=int, nargs="+", default=[2, 3, 4], help="ResNet stages in the pyramid")
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--min-box-voxels", type=int, default=30, help="smallest component that makes a box")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: steadier on a shared CPU)")
    parser.add_argument("--results", default=str(common.DEFAULT_RESULTS))
    parser.add_argument("--tag", default="")
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument("--table", help="only rewrite the Markdown table of this results JSON")
    args = parser.parse_args(argv)
    for key, value in SETTINGS[args.setting].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.table:
        payload = json.loads(Path(args.table).read_text())
        table = results_table(payload)
        name = Path(args.table).stem
        common.write_results(Path(args.table).parent, name, payload, table)
        common.setup_logging(args.verbose)
        plot_curves(payload, Path(args.table))
        print(table)
        return payload
    common.setup_logging(args.verbose)
    common.set_threads(args.threads)
    common.check_cspr_checkpoint(args)
    device = common.resolve_device(args.device)
    if not common.SHARED_DATA.is_dir():
        raise SystemExit(f"{common.SHARED_DATA} is absent: this benchmark needs the real scans.")
    runs = []
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="finetune_detection_") as tmp:
        tmp = Path(tmp)
        data = tmp / "data"
        data.mkdir()
        jobs = []
        if "brats" in args.tasks:
            cases = prepare_brats(data, args.spacing)
            for fold in args.folds:
                train, val = BRATS_FOLDS[fold]
                path = data / f"brats_fold{fold}.json"
                path.write_text(json.dumps({"box_mode": "xyzxyz", "training": [cases[c] for c in train],
                                            "validation": [cases[c] for c in val]}))
                jobs.append((f"brats_fold{fold}", "tumour", path))
        if "spleen" in args.tasks:
            train, val = prepare_spleen(data, args.spacing)
            path = data / "spleen.json"
            path.write_text(json.dumps({"box_mode": "xyzxyz", "training": [train], "validation": [val]}))
            jobs.append(("spleen", "spleen", path))
        for split, task, datalist in jobs:
            for seed in args.seeds:
                for init in args.inits:
                    record = run_one(task, datalist, init, seed, args, device, tmp / f"{split}_{init}_{seed}")
                    record["split"] = split
                    runs.append(record)
    payload = {
        "benchmark": "finetune_detection",
        "setting": args.setting,
        "command": common.command_line(__file__, argv),
        "machine": common.machine_info(device),
        "parameters": {k: v for k, v in vars(args).items() if k not in ("results", "verbose")},
        "labels": LABELS,
        "minutes": round((time.time() - started) / 60, 1),
        "runs": runs,
    }
    payload["load_average_at_end"] = [round(x, 2) for x in __import__("os").getloadavg()]
    table = results_table(payload)
    name = common.results_name("finetune_detection", args.setting, device, args.tag)
    json_path, md_path = common.write_results(args.results, name, payload, table)
    plot_curves(payload, json_path)
    print(table)
    logger.info(f"wrote {json_path} and {md_path}")
    return payload


if __name__ == "__main__":
    main()
