"""BraTS 2013 FLAIR whole-tumour segmentation with ``finetune_segmentation``: scratch vs Genesis-pretrained, by label share.

    python benchmarks/finetune_brats.py [--setting smoke|reduced|full] [--device cpu|cuda]
        [--data BRATS_ROOT --train-cases pat0005 pat0006 --val-cases pat0003 pat0004 | --datalist JSON]
        [--pretrain-data FILE_OR_FOLDER ...] [--genesis-chest-ct Genesis_Chest_CT.pt]
        [--inits scratch genesis_real genesis_chest_ct resnet18_scratch cspr] [--cspr-checkpoint model.pt]
        [--fractions 0.25 0.5 1.0] [--seeds 0 1 2]
        [--features F] [--steps N] [--norm batch|genesis|instance] [--results DIR]

The task of the paper's BMS target (BraTS 2013 FLAIR, whole tumour = every label > 0). Preparation, done once
per run in a work folder: each case is put in RAS, resampled to ``--spacing`` (the reduced setting's 2 mm; the
full setting keeps 1 mm), its FLAIR scaled to [0, 1] by the 0.5–99.5 percentile window of the voxels inside
the brain mask (``monai_genesis.transforms.ForegroundPercentileWindow``, the bundles' MRI setting) and set to 0
outside, and cropped to the brain. A fixed pool of training patches (half centred on tumour, half on brain,
``RandCropByPosNegLabeld`` with a fixed seed) is cut from the training cases; each run trains on a seeded
random 25%, 50% or 100% of that pool for whole epochs until at least ``--steps`` optimisation steps are done
(so a run makes up to one epoch more; the results record and print the steps each run made), then the final network is
validated once, on the whole validation volumes (sliding window): Dice and IoU of the tumour.

Initialisations:

- ``scratch``: random weights;
- ``genesis_real``: the final encoder-decoder of a ``genesis_pretrain`` run on the real volumes of
  ``../shared/data`` (chest and abdominal CT, abdominal and brain MRI, and the FLAIR and T1c of the training
  patients; no labels, and never the validation patients), all resampled and scaled the same way;
- ``genesis_chest_ct``: the released Genesis Chest CT weights, when ``--genesis-chest-ct`` names the file (or
  ``bundles/genesis_chest_ct/models/Genesis_Chest_CT.pt`` exists); it needs ``--features 32``;
- ``scratch_resenc``: random weights of the Residual Encoder U-Net (``configs/networks/resenc_l.json`` at
  ``--resenc-features``, strides that fit the patch);
- ``mae_resenc``: the encoder and stem of an ``mae_pretrain`` run of that ResEnc network on the same unlabelled
  volumes (masked image modelling), the decoder fresh;
- ``genesis_resenc``: the encoder and stem of a ``genesis_pretrain`` run of the same ResEnc network on the same
  volumes, transferred like the MAE arm, so that it differs from ``mae_resenc`` only in the pretext task and from
  ``genesis_real`` in the network;
- ``resnet18_scratch`` and ``cspr``: the U-Net around the 3D ResNet-18 of CSPR (``configs/networks/resnet18_unet.json``,
  decoder widths ``--resnet-decoder``) from random weights, or with the encoder of a ``cspr_pretrain`` checkpoint
  (``--cspr-checkpoint``, pretrained with labels on 2D photos), the decoder fresh. The network needs sides divisible
  by 32, so these arms cut their own pool of ``--resnet-patch-size`` patches from the same cases with the same
  pool seed, and choose the same shares of it with the same seeds. They validate ``--curve-points`` times per run
  (every ``val_interval`` epochs, the run rounded up to whole intervals so that the final network is among them)
  and record the curve (``history``) for ``benchmarks/plot_learning_curves.py``. They run only when ``--inits``
  names them.

Training, validation, metrics and the transfer of weights are the bundles' own (``ConfigWorkflow`` of
``bundles/finetune_segmentation/configs/train.json`` with overrides: the datalist, sizes, ``out_channels`` 2,
``pretrained`` and ``val_interval`` = the last epoch; the bundle reports Dice and IoU).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import common

BUNDLE = "finetune_segmentation"
INITS = ("scratch", "genesis_real", "genesis_chest_ct", "scratch_resenc", "mae_resenc", "genesis_resenc",
         "resnet18_scratch", "cspr")
RESENC_INITS = ("scratch_resenc", "mae_resenc", "genesis_resenc")
RESNET_INITS = ("resnet18_scratch", "cspr")
RESENC_PRESET = common.REPO / "configs" / "networks" / "resenc_l.json"
RESNET_PRESET = common.REPO / "configs" / "networks" / "resnet18_unet.json"
RESNET_DOWNSAMPLING = 32
BRATS = common.SHARED_DATA / "brats2013"
RELEASED = common.BUNDLES / "genesis_chest_ct" / "models" / "Genesis_Chest_CT.pt"
PRESETS = {
    "smoke": {
        "threads": 1, "features": 2, "patch_size": [16, 16, 16], "spacing": [4.0, 4.0, 4.0], "patches_per_case": 4,
        "batch_size": 2, "steps": 2, "learning_rate": 1e-3, "seeds": [0], "fractions": [0.5, 1.0],
        "pretrain_epochs": 1, "pretrain_cubes": 2, "pretrain_batch": 2, "sw_batch_size": 4,
        "resenc_features": [2, 4, 4, 4, 4, 4], "mask_block_size": 8,
        "resnet_patch_size": [32, 32, 32], "resnet_decoder": [8, 8, 8, 8, 8], "curve_points": 2,
    },
    "reduced": {
        "threads": 1, "features": 4, "patch_size": [32, 32, 16], "spacing": [2.0, 2.0, 2.0], "patches_per_case": 32,
        "batch_size": 4, "steps": 300, "learning_rate": 1e-3, "seeds": [0, 1, 2, 3, 4], "fractions": [0.25, 0.5, 1.0],
        "pretrain_epochs": 30, "pretrain_cubes": 12, "pretrain_batch": 6, "sw_batch_size": 4,
        "resenc_features": [4, 8, 16, 32, 32, 32], "mask_block_size": 8,
        "resnet_patch_size": [32, 32, 32], "resnet_decoder": [64, 32, 16, 8, 8], "curve_points": 10,
    },
    "full": {
        "threads": 0, "features": 32, "patch_size": [64, 64, 32], "spacing": None, "patches_per_case": 64,
        "batch_size": 4, "steps": 250, "learning_rate": 1e-3, "seeds": [0, 1, 2], "fractions": [0.25, 0.5, 1.0],
        "pretrain_epochs": 30, "pretrain_cubes": 16, "pretrain_batch": 6, "sw_batch_size": 16,
        "resenc_features": [32, 64, 128, 256, 320, 320], "mask_block_size": 16,
        "resnet_patch_size": [64, 64, 32], "resnet_decoder": [256, 128, 64, 32, 16], "curve_points": 10,
    },
}
# unlabelled volumes of ../shared/data for the pretraining, with the intensity setting of each
PRETRAIN_VOLUMES = (
    ("chest_ct/chest_ct_0.nii.gz", "ct"),
    ("totalsegmentator/example_ct.nii.gz", "ct"),
    ("totalsegmentator/example_mr_sm.nii.gz", "mri"),
    ("brain_mri/chris_t1.nii.gz", "mri"),
    ("brain_mri/brain1_image.nrrd", "mri"),
    ("brain_mri/brain2_image.nrrd", "mri"),
)

logger = logging.getLogger("benchmarks.finetune_brats")


def prepare_case(image: str, label: str | None, mask: str | None, spacing, intensity: str = "mri") -> dict:
    """Load one case as RAS ``MetaTensor``s, resampled to ``spacing``, the image scaled to [0, 1].

    With a ``mask`` the MRI window is taken inside it, the image is set to 0 outside it and every volume is
    cropped to it; the label becomes the whole-tumour mask (label > 0).

    Args:
        image: path of the image.
        label: path of the label map, or ``None``.
        mask: path of the brain (foreground) mask, or ``None``.
        spacing: target spacing in mm, or ``None`` to keep the volume's own.
        intensity: ``"mri"`` (0.5–99.5 percentile window), ``"ct"`` (HU window [−1000, 1000]), ``"minmax"``,
            or ``"auto"`` (CT when the volume reaches −500 or less, else MRI); with a ``mask`` the MRI window.

    Returns:
        ``{"image": (1, H, W, D) float in [0, 1], "label": (1, H, W, D) uint8}`` (``label`` only when given).
    """
    from monai.transforms import (
        Compose,
        CropForegroundd,
        EnsureChannelFirstd,
        LoadImaged,
        Orientationd,
        Spacingd,
    )

    from monai_genesis.transforms import ForegroundPercentileWindow, intensity_transform

    item = {"image": image, **({"label": label} if label else {}), **({"mask": mask} if mask else {})}
    keys = list(item)
    steps = [
        LoadImaged(keys, image_only=True),
        EnsureChannelFirstd(keys),
        Orientationd(keys, axcodes="RAS", labels=(("L", "R"), ("P", "A"), ("I", "S"))),
    ]
    if spacing:
        modes = ["bilinear" if k == "image" else "nearest" for k in keys]
        steps.append(Spacingd(keys, pixdim=spacing, mode=modes))
    d = Compose(steps)(item)
    img = d["image"].float()
    if intensity == "auto":
        intensity = "ct" if float(img.min()) <= -500 else "mri"
    if mask:
        brain = (d["mask"] > 0.5).float()
        img = ForegroundPercentileWindow(background=0.0)(img * brain) * brain
    elif intensity == "mri":
        img = ForegroundPercentileWindow(background=None)(img)
    else:
        img = intensity_transform(intensity, keys="image")({"image": img})["image"]
    d["image"] = img
    if label:
        d["label"] = (d["label"] > 0).to(torch.uint8)
    if mask:
        d = CropForegroundd([k for k in ("image", "label") if k in d], source_key="mask", margin=4, allow_smaller=True)(d)
        d.pop("mask", None)
    return d


def save_nifti(tensor, path: Path, dtype=np.float32) -> str:
    """Write a channel-first ``MetaTensor`` (channel 0) as NIfTI with its affine (uncompressed ``.nii``: these
    work files are written once and read many times)."""
    import nibabel as nib

    affine = np.asarray(tensor.affine, dtype=np.float64) if hasattr(tensor, "affine") else np.eye(4)
    array = np.asarray(tensor.detach().cpu())[0].astype(dtype)
    nib.save(nib.Nifti1Image(array, affine), str(path))
    return str(path)


def brats_cases(root: str, cases: list[str], image_name: str, label_name: str, mask_name: str) -> list[dict]:
    """Datalist entries of BraTS case folders ``root/brats_2013_CASE_1`` (or ``root/CASE``)."""
    items = []
    for case in cases:
        folder = Path(root) / f"brats_2013_{case}_1"
        folder = folder if folder.is_dir() else Path(root) / case
        item = {"image": folder / image_name, "label": folder / label_name, "mask": folder / mask_name, "case": case}
        for key in ("image", "label"):
            if not item[key].is_file():
                raise ValueError(f"case {case}: {item[key]} does not exist; check --data and the file names.")
        if not item["mask"].is_file():
            item["mask"] = None
        items.append({k: (str(v) if isinstance(v, Path) else v) for k, v in item.items()})
    return items


def read_datalist(path: str) -> tuple[list[dict], list[dict]]:
    """Training and validation entries (``image``, ``label``, optional ``mask``) of a JSON datalist."""
    listing = json.loads(Path(path).read_text())
    base = Path(path).resolve().parent
    parts = []
    for key in ("training", "validation"):
        if not listing.get(key):
            raise ValueError(f"datalist {path} needs a non-empty '{key}' list of {{'image', 'label'[, 'mask']}}.")
        entries = []
        for i, entry in enumerate(listing[key]):
            resolved = {k: str((base / entry[k]).resolve()) for k in ("image", "label", "mask") if entry.get(k)}
            entries.append({"mask": None, "case": entry.get("case", f"{key}{i}"), **resolved})
        parts.append(entries)
    return parts[0], parts[1]


def patch_pool(cases: list[dict], patch_size, per_case: int, out_dir: Path, seed: int = 0) -> list[dict]:
    """Cut ``per_case`` patches from every training case (half on tumour, half on brain) and save them."""
    from monai.transforms import RandCropByPosNegLabeld, SpatialPadd

    pad = SpatialPadd(["image", "label"], spatial_size=patch_size)
    crop = RandCropByPosNegLabeld(
        ["image", "label"], label_key="label", spatial_size=patch_size, pos=1, neg=1, num_samples=per_case,
        image_key="image", image_threshold=0.0,
    )
    crop.set_random_state(seed)
    pool = []
    for case in cases:
        for i, patch in enumerate(crop(pad({"image": case["image"], "label": case["label"]}))):
            stem = out_dir / f"{case['case']}_{i:03d}"
            pool.append({
                "image": save_nifti(patch["image"], Path(f"{stem}_image.nii")),
                "label": save_nifti(patch["label"], Path(f"{stem}_label.nii"), np.uint8),
            })
    return pool


def prepare_data(args, work: Path) -> dict:
    """Prepare the validation volumes, the training-patch pool and the pretraining volumes under ``work``."""
    if args.datalist:
        train_cases, val_cases = read_datalist(args.datalist)
    else:
        names = (args.image_name, args.label_name, args.mask_name)
        train_cases = brats_cases(args.data, args.train_cases, *names)
        val_cases = brats_cases(args.data, args.val_cases, *names)
    for sub in ("volumes", "patches", "patches_resnet", "pretrain", "runs", "pretrain_run"):
        # the benchmark's own sub-folders: nothing of an earlier run may leak into this one
        shutil.rmtree(work / sub, ignore_errors=True)
    for sub in ("volumes", "patches", "pretrain"):
        (work / sub).mkdir(parents=True)
    prepared = {"training": [], "validation": []}
    for part, cases in (("training", train_cases), ("validation", val_cases)):
        for case in cases:
            d = prepare_case(case["image"], case["label"], case["mask"], args.spacing, intensity=args.intensity)
            stem = work / "volumes" / case["case"]
            entry = {
                "case": case["case"],
                "image": save_nifti(d["image"], Path(f"{stem}_image.nii")),
                "label": save_nifti(d["label"], Path(f"{stem}_label.nii"), np.uint8),
                "shape": list(d["image"].shape[1:]),
                "tumour_voxels": int(d["label"].sum()),
            }
            prepared[part].append({**entry, "image_tensor": d["image"], "label_tensor": d["label"]})
    pool = patch_pool(
        [{"case": c["case"], "image": c["image_tensor"], "label": c["label_tensor"]} for c in prepared["training"]],
        args.patch_size, args.patches_per_case, work / "patches", seed=args.pool_seed,
    )
    resnet_pool = pool
    if set(RESNET_INITS) & set(args.inits) and list(args.resnet_patch_size) != list(args.patch_size):
        (work / "patches_resnet").mkdir(parents=True, exist_ok=True)
        resnet_pool = patch_pool(
            [{"case": c["case"], "image": c["image_tensor"], "label": c["label_tensor"]} for c in prepared["training"]],
            args.resnet_patch_size, args.patches_per_case, work / "patches_resnet", seed=args.pool_seed,
        )
    pretrain = []
    if ("genesis_real" in args.inits and not args.pretrained_checkpoint) or {"mae_resenc", "genesis_resenc"} & set(args.inits):
        sources = pretrain_sources(args, train_cases)
        for i, (path, intensity, mask) in enumerate(sources):
            d = prepare_case(path, None, mask, args.spacing, intensity=intensity)
            name = Path(path).name.split(".")[0]
            pretrain.append(save_nifti(d["image"], work / "pretrain" / f"{i:02d}_{name}.nii"))
    strip = ("image_tensor", "label_tensor")
    return {
        "training": [{k: v for k, v in c.items() if k not in strip} for c in prepared["training"]],
        "validation": [{k: v for k, v in c.items() if k not in strip} for c in prepared["validation"]],
        "pool": pool,
        "resnet_pool": resnet_pool,
        "pretrain_volumes": pretrain,
    }


def pretrain_sources(args, train_cases: list[dict]) -> list[tuple[str, str, str | None]]:
    """The unlabelled volumes of the pretraining: ``(path, intensity setting, brain mask or None)``."""
    if args.pretrain_data:
        from monai_genesis.data import find_volumes

        sources = []
        for entry in args.pretrain_data:
            paths = find_volumes(entry) if Path(entry).is_dir() else [entry]
            sources += [(p, "auto", None) for p in paths]
        return sources
    sources = [(str(common.SHARED_DATA / rel), intensity, None) for rel, intensity in PRETRAIN_VOLUMES]
    sources = [s for s in sources if Path(s[0]).is_file()]
    # the training patients' own scans, without labels; the validation patients stay unseen
    for case in train_cases:
        folder = Path(case["image"]).parent
        for name in (args.image_name, "T1c_subtrMeanDivStd.nii.gz"):
            if (folder / name).is_file():
                sources.append((str(folder / name), "mri", case["mask"]))
    if not sources:
        raise ValueError("no pretraining volume found; pass --pretrain-data FILE_OR_FOLDER.")
    return sources


def resenc_strides(patch_size) -> list:
    """Strides of the 6 ResEnc stages for ``patch_size``: 2 on an axis while the bottleneck keeps at least 2 voxels.

    Instance norm needs more than one voxel, so a 32×32×16 patch gets ``[1, 2, 2, 2, [2, 2, 1], 1]`` (the
    bottleneck is 2×2×2); the weights do not depend on the strides, so pretraining and fine-tuning may differ.
    """
    halvings = [max(0, min(5, int(math.log2(side // 2)))) for side in patch_size]
    strides = [1] + [[2 if stage < h else 1 for h in halvings] for stage in range(5)]
    return [s if isinstance(s, int) or len(set(s)) > 1 else s[0] for s in strides]


def resenc_overrides(args) -> dict:
    """Config ids of the ResEnc network of the benchmark (``configs/networks/resenc_l.json`` reads them)."""
    return {"resenc_features": list(args.resenc_features), "resenc_strides": resenc_strides(args.patch_size)}


def pretrain_resenc(args, device, work: Path, bundle: str, volumes: Path) -> dict:
    """Pretrain the benchmark's ResEnc network with ``mae_pretrain`` or ``genesis_pretrain`` on ``volumes``."""
    clock = common.Stopwatch()
    root = work / f"pretrain_{bundle}"
    shutil.rmtree(root, ignore_errors=True)
    overrides = {
        "device": common.device_override(device), "dataset_dir": str(volumes), "intensity": "minmax", "seed": 0,
        "epochs": args.pretrain_epochs, "patch_size": list(args.patch_size), "cubes_per_volume": args.pretrain_cubes,
        "val_cubes_per_volume": max(2, args.pretrain_cubes // 2), "batch_size": args.pretrain_batch,
        "num_workers": args.workers, "val_fraction": 0.2, **resenc_overrides(args),
    }
    extra = []
    if bundle == "mae_pretrain":
        overrides.update(mask_block_size=args.mask_block_size)
    else:
        # nnssl's Genesis on ResEnc: SGD 1e-2 (the GenesisUNet's 1.0 is far too large for this network)
        overrides["learning_rate"] = 0.01
        extra = [str(RESENC_PRESET)]
    if not args.verbose:
        overrides["train#handlers"] = common.train_handlers_without_progress(bundle)
    workflow = common.bundle_workflow(bundle, root, extra, **overrides)
    workflow.run()
    evaluator = workflow.parser.get_parsed_content("validate#evaluator")
    trainer = workflow.parser.get_parsed_content("train#trainer")
    workflow.finalize()
    models = root / "models"
    checkpoint = models / "model.pt" if (models / "model.pt").is_file() else models / "model_final.pt"
    return {"checkpoint": str(checkpoint), "best_val_metric": float(evaluator.state.best_metric),
            "metric": next(iter(evaluator.state.metrics), ""), "epochs_run": int(trainer.state.epoch),
            "seconds": clock()}


def finetune(args, device, work: Path, run_name: str, datalist: Path, pretrained: str, seed: int, num_patches: int,
             init: str = "scratch") -> dict:
    """One fine-tuning run of the segmentation bundle; returns the validation Dice and IoU of its final network.

    The run trains whole epochs, the fewest that make ``args.steps`` steps: the bundle validates at the end of an
    epoch, so stopping mid-epoch would skip the validation. ``steps`` in the result is what the trainer made.
    """
    iters_per_epoch = math.ceil(num_patches / args.batch_size)
    epochs = max(1, math.ceil(args.steps / iters_per_epoch))
    resnet = init in RESNET_INITS
    interval = epochs
    if resnet:
        # ``curve_points`` validations, the last of them on the final network
        interval = max(1, math.ceil(epochs / max(1, args.curve_points)))
        epochs = interval * math.ceil(epochs / interval)
    deterministic = [
        t for t in common.read_bundle_item(BUNDLE, "train#deterministic_transforms")
        if "intensity_transform" not in str(t)  # an expression or a _target_ component
    ]
    overrides = {
        "datalist": str(datalist),
        "device": common.device_override(device),
        "seed": seed,
        "epochs": epochs,
        "val_interval": interval,
        "patch_size": list(args.resnet_patch_size if resnet else args.patch_size),
        "num_samples": 1,
        "volumes_per_batch": args.batch_size,
        "sw_batch_size": args.sw_batch_size,
        "num_workers": args.workers,
        "learning_rate": args.learning_rate,
        "genesis_features": args.features,
        "out_channels": 2,
        "pretrained": pretrained,
        "train#dataset#progress": False,
        "validate#dataset#progress": False,
        # volumes and patches are already scaled to [0, 1] in the brain
        "train#deterministic_transforms": deterministic,
    }
    if args.norm:
        overrides["genesis_norm"] = args.norm
    if not args.verbose:
        overrides["train#handlers"] = common.train_handlers_without_progress(BUNDLE)
    extra = []
    if init in RESENC_INITS:
        # the pretrained arms of the ResEnc network transfer the stem and encoder only (Wald et al.), the decoder fresh
        overrides.update(resenc_overrides(args), pretrained_prefixes=["encoder."], repeat_input_channels=True)
        extra = [str(RESENC_PRESET)]
    if resnet:
        # the CSPR checkpoint is a classifier: its encoder.* tensors load, its head is reported as skipped
        overrides.update(resnet18_unet_decoder_channels=list(args.resnet_decoder), pretrained_prefixes=["encoder."])
        extra = [str(RESNET_PRESET)]
    clock = common.Stopwatch()
    workflow = common.bundle_workflow(BUNDLE, work / "runs" / run_name, extra, **overrides)
    history: list[dict] = []
    if resnet:
        from ignite.engine import Events

        trainer = workflow.parser.get_parsed_content("train#trainer")

        def record(engine):
            history.append({"epoch": int(trainer.state.epoch), "step": int(trainer.state.iteration),
                            "dice": float(engine.state.metrics["val_mean_dice"]),
                            "iou": float(engine.state.metrics["val_mean_iou"])})

        workflow.parser.get_parsed_content("validate#evaluator").add_event_handler(Events.COMPLETED, record)
    workflow.run()
    trainer = workflow.parser.get_parsed_content("train#trainer")
    evaluator = workflow.parser.get_parsed_content("validate#evaluator")
    loader = next(h for h in workflow.parser.get_parsed_content("train#handlers") if hasattr(h, "finetune"))
    norm = common.norm_layer(workflow.parser.get_parsed_content("network"))
    workflow.finalize()
    metrics = evaluator.state.metrics
    return {
        "dice": float(metrics["val_mean_dice"]),
        "iou": float(metrics["val_mean_iou"]),
        "epochs": epochs,
        "steps": int(trainer.state.iteration),
        "final_train_loss": float(trainer.state.output[-1]["loss"]) if trainer.state.output else float("nan"),
        "seconds": clock(),
        "tensors_loaded": loader.report.num_loaded if loader.report is not None else 0,
        "norm_layer": norm,
        "network": type(workflow.parser.get_parsed_content("network")).__name__,
        "history": history,
    }


def summary_rows(runs: list[dict], inits: list[str], fractions: list[float]) -> list[dict]:
    """Mean and standard deviation of Dice and IoU per initialisation and training share."""
    rows = []
    for init in inits:
        for fraction in fractions:
            chosen = [r for r in runs if r["init"] == init and r["fraction"] == fraction]
            if not chosen:
                continue
            dice, dice_std = common.mean_std([r["dice"] for r in chosen])
            iou, iou_std = common.mean_std([r["iou"] for r in chosen])
            rows.append({
                "init": init, "fraction": fraction, "patches": chosen[0]["patches"], "seeds": len(chosen),
                "steps": sorted({r["steps"] for r in chosen}),
                "dice_mean": dice, "dice_std": dice_std, "iou_mean": iou, "iou_std": iou_std,
            })
    return rows


LABELS = {"scratch": "scratch", "genesis_real": "Genesis, pretrained here (genesis_pretrain, no labels)",
          "genesis_chest_ct": "Genesis Chest CT (released)", "scratch_resenc": "ResEnc, scratch",
          "mae_resenc": "ResEnc, MAE pretrained here (mae_pretrain, no labels)",
          "genesis_resenc": "ResEnc, Genesis pretrained here (genesis_pretrain, no labels)",
          "resnet18_scratch": "ResNet-18 U-Net, scratch",
          "cspr": "ResNet-18 U-Net, CSPR encoder (cspr_pretrain on 2D photos, with labels)"}


def steps_words(steps) -> str:
    """``"304"``, or ``"300–304"`` when the runs made different numbers of steps."""
    if not steps:
        return "0"
    low, high = min(steps), max(steps)
    return f"{low}" if low == high else f"{low}–{high}"


def table(rows: list[dict]) -> str:
    lines = [
        [LABELS[r["init"]], f"{100 * r['fraction']:.0f}% ({r['patches']})", steps_words(r["steps"]),
         common.fmt(r["dice_mean"], r["dice_std"]), common.fmt(r["iou_mean"], r["iou_std"]), r["seeds"]]
        for r in rows
    ]
    return common.markdown_table(
        ["initialisation", "training patches", "steps run", "Dice (mean ± std)", "IoU (mean ± std)", "seeds"], lines,
        ["l", "r", "r", "r", "r", "r"],
    )


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--setting", choices=common.SETTINGS, default="reduced", help="size preset")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    parser.add_argument("--data", default=str(BRATS), help="folder of the BraTS case folders")
    parser.add_argument("--train-cases", nargs="+", default=["pat0005", "pat0006"])
    parser.add_argument("--val-cases", nargs="+", default=["pat0003", "pat0004"])
    parser.add_argument("--image-name", default="Flair_subtrMeanDivStd.nii.gz")
    parser.add_argument("--label-name", default="OTMultiClass.nii.gz")
    parser.add_argument("--mask-name", default="brainmask.nii.gz")
    parser.add_argument("--datalist", help="JSON with 'training' and 'validation' lists of {'image', 'label'[, 'mask']}")
    parser.add_argument("--intensity", choices=("mri", "ct", "minmax", "auto"), default="mri",
                        help="scaling of the cases' images to [0, 1] (with a mask: the MRI window inside it)")
    parser.add_argument("--pretrain-data", nargs="+", help="volumes or folders for the Genesis pretraining (default: ../shared/data)")
    parser.add_argument("--pretrained-checkpoint", help="reuse this genesis_pretrain checkpoint instead of pretraining")
    parser.add_argument("--genesis-chest-ct", help=f"released Genesis_Chest_CT.pt (default: {RELEASED} when present)")
    parser.add_argument("--inits", nargs="+", choices=INITS, default=[i for i in INITS if i not in RESNET_INITS],
                        help="initialisations to compare (default: all but the ResNet-18 arms, which run when named)")
    parser.add_argument("--fractions", nargs="+", type=float, help="shares of the training-patch pool")
    parser.add_argument("--seeds", nargs="+", type=int, help="seeds (network init, patch choice, order)")
    parser.add_argument("--features", type=int, help="U-Net width (32 = released network)")
    parser.add_argument("--resenc-features", type=int, nargs=6, help="widths of the 6 ResEnc stages (ResEnc arms)")
    parser.add_argument("--mask-block-size", type=int, help="block side of the MAE masking (mae_resenc)")
    parser.add_argument("--cspr-checkpoint", help="the cspr_pretrain checkpoint (models/model.pt) of the cspr arm")
    parser.add_argument("--resnet-patch-size", type=int, nargs=3, help="patch size of the ResNet-18 arms, sides divisible by 32")
    parser.add_argument("--resnet-decoder", type=int, nargs=5, help="decoder widths of the ResNet-18 U-Net")
    parser.add_argument("--curve-points", type=int, help="validations per run of the ResNet-18 arms (learning curve)")
    parser.add_argument("--patch-size", type=int, nargs=3, help="patch size, sides divisible by 8")
    parser.add_argument("--spacing", type=float, nargs=3, help="resample to this spacing in mm")
    parser.add_argument("--native-spacing", action="store_true", help="keep the volumes' own spacing")
    parser.add_argument("--patches-per-case", type=int, help="training patches cut from each training case")
    parser.add_argument("--pool-seed", type=int, default=0, help="seed of the patch pool")
    parser.add_argument("--batch-size", type=int)
    common.add_norm_argument(parser)
    parser.add_argument("--sw-batch-size", type=int, help="windows per batch in validation")
    parser.add_argument("--steps", type=int, help="least optimisation steps of every fine-tuning run (whole epochs)")
    parser.add_argument("--learning-rate", type=float)
    parser.add_argument("--pretrain-epochs", type=int)
    parser.add_argument("--pretrain-cubes", type=int, help="cubes per volume and pretraining epoch")
    parser.add_argument("--pretrain-batch", type=int)
    parser.add_argument("--workers", type=int, default=0, help="data-loader workers")
    parser.add_argument("--threads", type=int, help="torch threads of the main process (0: torch's default)")
    parser.add_argument("--results", default=str(common.DEFAULT_RESULTS), help="folder of the JSON and Markdown outputs")
    parser.add_argument("--tag", default="", help="suffix of the result file names")
    parser.add_argument("--work-dir", help="keep the prepared data and runs here (its sub-folders volumes/, patches/, "
                        "pretrain/, pretrain_run/ and runs/ are replaced; default: a temporary folder, removed at the end)")
    parser.add_argument("--verbose", action="store_true", help="also show the bundles' own log")
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    for key, value in PRESETS[args.setting].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.native_spacing:
        args.spacing = None
    if any(s % 8 for s in args.patch_size):
        raise ValueError(f"--patch-size sides must be divisible by 8 (three poolings), got {args.patch_size}.")
    if any(s % RESNET_DOWNSAMPLING for s in args.resnet_patch_size):
        raise ValueError(
            f"--resnet-patch-size sides must be divisible by {RESNET_DOWNSAMPLING} (the ResNet-18 encoder halves "
            f"them five times), got {args.resnet_patch_size}."
        )
    common.check_cspr_checkpoint(args)
    if any(not 0.0 < f <= 1.0 for f in args.fractions):
        raise ValueError(f"--fractions must lie in (0, 1], got {args.fractions}.")
    if args.genesis_chest_ct is None and RELEASED.is_file():
        args.genesis_chest_ct = str(RELEASED)
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    common.set_threads(args.threads)
    device = common.resolve_device(args.device)
    clock = common.Stopwatch()
    inits = list(args.inits)
    notes = []
    if "genesis_chest_ct" in inits:
        if not args.genesis_chest_ct or not Path(args.genesis_chest_ct).is_file():
            inits.remove("genesis_chest_ct")
            notes.append(
                "Genesis Chest CT not run: the released file was not found (pass --genesis-chest-ct PATH, or "
                "download it into bundles/genesis_chest_ct/models/)."
            )
        elif args.features != 32:
            inits.remove("genesis_chest_ct")
            notes.append(f"Genesis Chest CT not run: the released network has features 32, this run uses {args.features}.")
    args.inits = inits
    temporary = args.work_dir is None
    work = Path(tempfile.mkdtemp(prefix="genesis_brats_") if temporary else args.work_dir)
    try:
        logger.info(f"preparing the data in {work} ...")
        data = prepare_data(args, work)
        logger.info(f"{len(data['pool'])} training patches, {len(data['validation'])} validation volumes ({clock():.0f} s)")
        pretraining = None
        checkpoints = {"scratch": "", "genesis_chest_ct": args.genesis_chest_ct or ""}
        if "genesis_real" in inits:
            if args.pretrained_checkpoint:
                checkpoints["genesis_real"] = str(Path(args.pretrained_checkpoint).resolve())
                pretraining = {"checkpoint": checkpoints["genesis_real"], "reused": True}
            else:
                logger.info(f"Genesis pretraining on {len(data['pretrain_volumes'])} volumes ...")
                pretraining = common.run_pretraining(
                    work / "pretrain_run", device, args.verbose,
                    dataset_dir=str(work / "pretrain"), intensity="minmax", seed=0,
                    epochs=args.pretrain_epochs, genesis_features=args.features, patch_size=list(args.patch_size),
                    cubes_per_volume=args.pretrain_cubes, val_cubes_per_volume=max(2, args.pretrain_cubes // 2),
                    batch_size=args.pretrain_batch, num_workers=args.workers, val_fraction=0.2,
                )
                pretraining["volumes"] = [Path(p).name for p in data["pretrain_volumes"]]
                checkpoints["genesis_real"] = pretraining["checkpoint"]
                logger.info(f"  best validation MSE {pretraining['best_val_mse']:.5f} ({pretraining['seconds']:.0f} s)")
        pretraining_resenc = {}
        for init, bundle in (("mae_resenc", "mae_pretrain"), ("genesis_resenc", "genesis_pretrain")):
            if init in inits:
                logger.info(f"{bundle} of the ResEnc network on {len(data['pretrain_volumes'])} volumes ...")
                pretraining_resenc[init] = pretrain_resenc(args, device, work, bundle, work / "pretrain")
                checkpoints[init] = pretraining_resenc[init]["checkpoint"]
                logger.info(f"  best {pretraining_resenc[init]['metric']} {pretraining_resenc[init]['best_val_metric']:.5f} "
                            f"({pretraining_resenc[init]['seconds']:.0f} s)")
        checkpoints.setdefault("scratch_resenc", "")
        checkpoints["resnet18_scratch"] = ""
        if "cspr" in inits:
            checkpoints["cspr"] = str(Path(args.cspr_checkpoint).resolve())
        runs = []
        for fraction in args.fractions:
            for seed in args.seeds:
                order = np.random.default_rng(seed).permutation(len(data["pool"]))
                count = max(args.batch_size, round(fraction * len(data["pool"])))
                listings = {}
                # the datalist of each pool the chosen arms train on, written once per share and seed
                for pool_name in dict.fromkeys("resnet_pool" if i in RESNET_INITS else "pool" for i in inits):
                    chosen = [data[pool_name][i] for i in sorted(order[:count])]
                    listing = work / f"datalist_{pool_name}_{fraction:g}_{seed}.json"
                    listing.write_text(json.dumps({
                        "training": chosen,
                        "validation": [{"image": c["image"], "label": c["label"]} for c in data["validation"]],
                    }))
                    listings[pool_name] = listing, len(chosen)
                for init in inits:
                    name = f"{init}_{fraction:g}_{seed}"
                    listing, patches = listings["resnet_pool" if init in RESNET_INITS else "pool"]
                    result = finetune(args, device, work, name, listing, checkpoints[init], seed, patches, init)
                    result.update(init=init, fraction=fraction, seed=seed, patches=patches)
                    runs.append(result)
                    logger.info(f"{name}: Dice {result['dice']:.3f}, IoU {result['iou']:.3f} ({result['seconds']:.0f} s)")
        rows = summary_rows(runs, inits, args.fractions)
        norm = common.run_norm(BUNDLE, args.norm)
        steps_run = sorted({r["steps"] for r in runs})
        spacing = "native" if not args.spacing else "×".join(f"{v:g}" for v in args.spacing) + " mm"
        text = table(rows) + (
            f"\n\nSetting {args.setting}: GenesisUNet features {args.features} (norm {norm!r}), {args.device} with {torch.get_num_threads()} "
            f"torch threads; patches {'×'.join(map(str, args.patch_size))} at {spacing}, a pool of {len(data['pool'])} "
            f"from {', '.join(c['case'] for c in data['training'])}; {steps_words(steps_run)} steps of batch {args.batch_size} per run "
            f"(whole epochs, the fewest that make the {args.steps} steps asked for); "
            f"Dice and IoU of the final network on the whole volumes of {', '.join(c['case'] for c in data['validation'])}."
        )
        if pretraining and not pretraining.get("reused"):
            text += (
                f" Genesis pretraining: {len(data['pretrain_volumes'])} unlabelled volumes, {pretraining['epochs_run']} epochs, "
                f"best restoration MSE {pretraining['best_val_mse']:.4f}."
            )
        if set(RESENC_INITS) & set(inits):
            text += (
                f" ResEnc arms: ResEncUNet features {list(args.resenc_features)}, strides {resenc_strides(args.patch_size)}, "
                "stem and encoder transferred, decoder fresh."
            )
        if set(RESNET_INITS) & set(inits):
            text += (
                f" ResNet-18 arms: ResNetUNet (configs/networks/resnet18_unet.json, decoder {list(args.resnet_decoder)}), "
                f"patches {'×'.join(map(str, args.resnet_patch_size))} from their own pool cut the same way, "
                f"validated {args.curve_points} times per run; encoder transferred, decoder fresh."
            )
        for init, record in pretraining_resenc.items():
            text += (f" {LABELS[init]}: {record['epochs_run']} epochs, best {record['metric']} "
                     f"{record['best_val_metric']:.4f}.")
        if notes:
            text += "\n\n" + "\n".join(f"Note: {n}" for n in notes)
        payload = {
            "benchmark": "finetune_brats",
            "setting": args.setting,
            "command": common.command_line(__file__, args.argv),
            "machine": common.machine_info(device),
            "config": {
                "bundle": f"bundles/{BUNDLE}",
                "task": "BraTS 2013 FLAIR, whole tumour (label > 0)",
                "training_cases": [c["case"] for c in data["training"]],
                "validation_cases": [c["case"] for c in data["validation"]],
                "validation_shapes": [c["shape"] for c in data["validation"]],
                "spacing_mm": args.spacing,
                "features": args.features,
                "norm": norm,
                "patch_size": list(args.patch_size),
                "patch_pool": len(data["pool"]),
                "batch_size": args.batch_size,
                "steps_requested": args.steps,
                "steps_run": steps_run,
                "learning_rate": args.learning_rate,
                "fractions": args.fractions,
                "seeds": args.seeds,
                "metric": "Dice and IoU of the tumour on the whole validation volumes, final network, no model selection",
            },
            "pretraining": pretraining,
            "pretraining_resenc": pretraining_resenc,
            "resnet18": {"patch_size": list(args.resnet_patch_size), "decoder": list(args.resnet_decoder),
                         "curve_points": args.curve_points, "cspr_checkpoint": args.cspr_checkpoint},
            "resenc": {"features": list(args.resenc_features), "strides": resenc_strides(args.patch_size),
                       "mask_block_size": args.mask_block_size},
            "notes": notes,
            "summary": rows,
            "runs": runs,
            "total_seconds": clock(),
        }
        name = common.results_name("finetune_brats", args.setting, device, args.tag)
        json_path, md_path = common.write_results(args.results, name, payload, text)
        print(text)
        logger.info(f"wrote {json_path} and {md_path} in {clock():.0f} s")
        return payload
    finally:
        if temporary:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    # only as a script: configuring logging inside main() would change it for whoever imports the module
    common.setup_logging("--verbose" in sys.argv)
    main()
