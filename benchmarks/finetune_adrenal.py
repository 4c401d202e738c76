"""AdrenalMNIST3D classification with ``finetune_classification``: scratch vs Genesis-pretrained, AUC and accuracy.

    python benchmarks/finetune_adrenal.py [--setting smoke|reduced|full] [--device cpu|cuda]
        [--npz adrenalmnist3d_trainval.npz | --datalist JSON] [--inits scratch genesis resnet18_scratch cspr]
        [--cspr-checkpoint bundles/cspr_pretrain/models/model.pt]
        [--seeds 0 1 2] [--features F] [--epochs N] [--pretrain-epochs N] [--norm batch|genesis|instance]
        [--results DIR]

Both arms are the classification bundle (``bundles/finetune_classification/configs/train.json``: the Genesis
encoder, global pooling, Linear(16f, 32f), ReLU, Linear(32f, 1), BCE) with its MedMNIST reader and min–max
scaling, trained for the same epochs and validated once at the end on the validation split (AUC and accuracy
at 0.5, the bundle's ``ROCAUC`` and ``ConfusionMatrix`` handlers):

- ``scratch``: random weights;
- ``genesis``: the encoder of a ``genesis_pretrain`` run on the training images alone, without their labels
  (90% for training, 10% for the restoration validation), transferred through the bundle's ``pretrained``;
- ``resnet18_scratch`` and ``cspr``: the 3D ResNet-18 of CSPR (``configs/networks/resnet18.json``, depth stride on)
  from random weights, or with the encoder of a ``cspr_pretrain`` checkpoint (``--cspr-checkpoint``, pretrained
  with labels on 2D photos). These two arms validate after every epoch and record the curve (``history``), the
  data for ``benchmarks/plot_learning_curves.py``.

When the file holds the official test split (``test_images`` / ``test_labels``, or a ``"test"`` list in
``--datalist``), the final network of every run is also scored on it, once, after training (nothing is chosen on
it); those figures have their own rows, labelled "official test", beside the "val" ones. The published MedMNIST v2
figures (ResNet-50+3D, Yang et al., Scientific Data 2023) are for that split; without it in the file they are
shown for orientation, not as a like-for-like comparison.
The 28³ images are padded (or, in the reduced setting, centre-cropped) to ``--input-size``, a multiple of 8.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import common

BUNDLE = "finetune_classification"
INITS = ("scratch", "genesis", "resnet18_scratch", "cspr")
# the arms that fine-tune CSPR's 3D ResNet-18 instead of the Genesis classifier
RESNET_INITS = ("resnet18_scratch", "cspr")
RESNET18_PRESET = common.REPO / "configs" / "networks" / "resnet18.json"
DEFAULT_NPZ = common.SHARED_DATA / "medmnist" / "adrenalmnist3d_trainval.npz"
PUBLISHED = {"model": "ResNet-50+3D (MedMNIST v2)", "auc": 0.828, "accuracy": 0.745, "split": "official test"}
PRESETS = {
    "smoke": {
        "threads": 1, "features": 2, "input_size": 16, "epochs": 1, "batch_size": 16, "learning_rate": 1e-3, "seeds": [0],
        "pretrain_epochs": 1, "pretrain_batch": 16, "max_train": 64,
    },
    "reduced": {
        "threads": 1, "features": 4, "input_size": 24, "epochs": 12, "batch_size": 16, "learning_rate": 1e-3, "seeds": [0, 1, 2, 3, 4],
        "pretrain_epochs": 8, "pretrain_batch": 16, "max_train": 0,
    },
    "full": {
        "threads": 0, "features": 32, "input_size": 32, "epochs": 30, "batch_size": 32, "learning_rate": 1e-3, "seeds": [0, 1, 2],
        "pretrain_epochs": 30, "pretrain_batch": 32, "max_train": 0,
    },
}

logger = logging.getLogger("benchmarks.finetune_adrenal")


def data_overrides(args) -> dict:
    """The classification bundle's data ids for ``--npz`` or ``--datalist`` (``--max-train`` keeps the first N)."""
    if args.datalist:
        split = f"monai_genesis.data.classification_datalist({str(Path(args.datalist).resolve())!r}, @output_dir)"
    else:
        split = f"monai_genesis.data.classification_datalist('', @output_dir, medmnist_npz={args.npz!r})"
    if not args.max_train:
        return {"data_split": f"${split}", "intensity": "minmax"}
    return {
        "data_split": f"$dict({split}, training={split}['training'][:{int(args.max_train)}])",
        "intensity": "minmax",
    }


def has_test_split(args) -> bool:
    """Whether the data holds an official test split of its own.

    The bundle's ``data_split['test']`` falls back to the validation list when there is none, so its length
    cannot tell; the file itself is asked.
    """
    if args.datalist:
        return bool(json.loads(Path(args.datalist).read_text()).get("test"))
    with np.load(args.npz) as npz:
        return "test_images" in npz.files and len(npz["test_images"]) > 0


def score_test(workflow, items: list) -> dict:
    """AUC and accuracy of the workflow's network as it is now on ``items``, with the validation's transforms.

    A separate evaluator: the bundle's own one carries the best-model saver and the early stop, which must never
    see the test split.
    """
    from monai.data import CacheDataset, DataLoader
    from monai.engines import SupervisedEvaluator
    from monai.handlers import ROCAUC, ConfusionMatrix, from_engine

    parsed = workflow.parser.get_parsed_content
    dataset = CacheDataset(items, parsed("validate#preprocessing"), cache_rate=1.0, num_workers=0, progress=False)
    evaluator = SupervisedEvaluator(
        device=parsed("device"),
        val_data_loader=DataLoader(dataset, batch_size=parsed("batch_size"), shuffle=False, num_workers=0),
        network=parsed("network"),
        postprocessing=parsed("validate#postprocessing"),
        key_val_metric={"test_auc": ROCAUC(output_transform=from_engine(["prob", "label"]))},
        additional_metrics={"test_accuracy": ConfusionMatrix(metric_name="accuracy",
                                                             output_transform=from_engine(["pred", "label"]))},
        amp=parsed("amp"),
    )
    evaluator.run()
    metrics = evaluator.state.metrics
    return {"test_auc": float(metrics["test_auc"]), "test_accuracy": float(metrics["test_accuracy"]),
            "test_samples": len(items)}


def pretrain_split(args) -> str:
    """The pretraining bundle's ``data_split``: the training images without labels, 90% / 10%."""
    split = data_overrides(args)["data_split"][1:]
    return f"$monai_genesis.data.split_datalist([{{'image': i['image']}} for i in ({split})['training']], 0.1, @seed)"


def finetune(args, device, root: Path, pretrained: str, seed: int, init: str = "scratch", test: bool = False) -> dict:
    """One run of the classification bundle; returns the validation AUC and accuracy of its final network.

    With ``test``, the same final network is then scored once on the official test split (``test_*`` keys).

    The ResNet-18 arms validate after every epoch and return the curve as ``history``; the Genesis arms validate
    once at the end, as their published figures were made (a validation draws from torch's generator).
    """
    size = [args.input_size] * 3
    resnet = init in RESNET_INITS
    overrides = {
        **data_overrides(args),
        "device": common.device_override(device),
        "seed": seed,
        "epochs": args.epochs,
        "val_interval": 1 if resnet else args.epochs,
        "patch_size": size,
        "batch_size": args.batch_size,
        "num_workers": args.workers,
        "learning_rate": args.learning_rate,
        "genesis_features": args.features,
        "pretrained": pretrained,
        "train#dataset#progress": False,
        "validate#dataset#progress": False,
    }
    if args.norm:
        overrides["genesis_norm"] = args.norm
    if not args.verbose:
        overrides["train#handlers"] = common.train_handlers_without_progress(BUNDLE)
    clock = common.Stopwatch()
    workflow = common.bundle_workflow(BUNDLE, root, [str(RESNET18_PRESET)] if resnet else [], **overrides)
    history: list[dict] = []
    if resnet:
        from ignite.engine import Events

        def record(engine):
            history.append({"epoch": len(history) + 1, "auc": float(engine.state.metrics["val_auc"]),
                            "accuracy": float(engine.state.metrics["val_accuracy"])})

        workflow.parser.get_parsed_content("validate#evaluator").add_event_handler(Events.COMPLETED, record)
    workflow.run()
    trainer = workflow.parser.get_parsed_content("train#trainer")
    evaluator = workflow.parser.get_parsed_content("validate#evaluator")
    loader = next(h for h in workflow.parser.get_parsed_content("train#handlers") if hasattr(h, "finetune"))
    norm = common.norm_layer(workflow.parser.get_parsed_content("network"))
    split = workflow.parser.get_parsed_content("data_split")
    scores = score_test(workflow, split["test"]) if test else {}
    workflow.finalize()
    metrics = evaluator.state.metrics
    return {
        **scores,
        "auc": float(metrics["val_auc"]),
        "accuracy": float(metrics["val_accuracy"]),
        "epochs": int(trainer.state.epoch),
        "steps": int(trainer.state.iteration),
        "train_samples": len(split["training"]),
        "val_samples": len(split["validation"]),
        "seconds": clock(),
        "tensors_loaded": loader.report.num_loaded if loader.report is not None else 0,
        "norm_layer": norm,
        "network": type(workflow.parser.get_parsed_content("network")).__name__,
        "history": history,
    }


LABELS = {
    "scratch": "scratch",
    "genesis": "Genesis, pretrained on the training images (no labels)",
    "resnet18_scratch": "ResNet-18, scratch",
    "cspr": "ResNet-18, CSPR (cspr_pretrain on 2D photos, with labels)",
}


def table(rows: list[dict]) -> str:
    lines = [
        [LABELS[r["init"]], "val", common.fmt(r["auc_mean"], r["auc_std"]), common.fmt(r["accuracy_mean"], r["accuracy_std"]),
         r["seeds"]]
        for r in rows
    ]
    lines += [
        [LABELS[r["init"]], "official test", common.fmt(r["test_auc_mean"], r["test_auc_std"]),
         common.fmt(r["test_accuracy_mean"], r["test_accuracy_std"]), r["seeds"]]
        for r in rows if "test_auc_mean" in r
    ]
    lines.append([f"published {PUBLISHED['model']}", PUBLISHED["split"], f"{PUBLISHED['auc']:.3f}",
                  f"{PUBLISHED['accuracy']:.3f}", "–"])
    return common.markdown_table(
        ["initialisation", "split", "AUC (mean ± std)", "accuracy (mean ± std)", "seeds"], lines,
        ["l", "l", "r", "r", "r"],
    )


def network_words(args) -> str:
    """The networks of the arms run, for the text under the table."""
    words = []
    if set(args.inits) - set(RESNET_INITS):
        words.append(f"GenesisClassifier features {args.features}")
    if set(args.inits) & set(RESNET_INITS):
        words.append("ResNet18Classifier (configs/networks/resnet18.json, validated after every epoch)")
    return " and ".join(words)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--setting", choices=common.SETTINGS, default="reduced", help="size preset")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    parser.add_argument("--npz", default=str(DEFAULT_NPZ), help="MedMNIST 3D .npz with train and val splits")
    parser.add_argument("--datalist", help="JSON with 'training' (and 'validation') lists of {'image', 'label'}")
    parser.add_argument("--inits", nargs="+", choices=INITS, default=["scratch", "genesis"],
                        help="arms to run (default: the Genesis comparison; the ResNet-18 arms need their own sizes)")
    parser.add_argument("--pretrained-checkpoint", help="reuse this genesis_pretrain checkpoint instead of pretraining")
    parser.add_argument("--cspr-checkpoint", help="the cspr_pretrain checkpoint (models/model.pt) of the cspr arm")
    parser.add_argument("--seeds", nargs="+", type=int)
    parser.add_argument("--features", type=int, help="encoder width (32 = released network)")
    common.add_norm_argument(parser)
    parser.add_argument("--input-size", type=int, help="side of the network input, a multiple of 8")
    parser.add_argument("--epochs", type=int, help="fine-tuning epochs")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--learning-rate", type=float)
    parser.add_argument("--pretrain-epochs", type=int)
    parser.add_argument("--pretrain-batch", type=int)
    parser.add_argument("--max-train", type=int, help="use only the first N training samples (0: all)")
    parser.add_argument("--workers", type=int, default=0, help="data-loader workers")
    parser.add_argument("--threads", type=int, help="torch threads of the main process (0: torch's default)")
    parser.add_argument("--results", default=str(common.DEFAULT_RESULTS), help="folder of the JSON and Markdown outputs")
    parser.add_argument("--tag", default="", help="suffix of the result file names")
    parser.add_argument("--work-dir", help="keep the runs here (its sub-folders pretrain_run/ and runs/ are replaced; "
                        "default: a temporary folder, removed at the end)")
    parser.add_argument("--verbose", action="store_true", help="also show the bundles' own log")
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    for key, value in PRESETS[args.setting].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.input_size % 8:
        raise ValueError(f"--input-size must be a multiple of 8 (three poolings), got {args.input_size}.")
    if not args.datalist and not Path(args.npz).is_file():
        raise ValueError(f"--npz {args.npz} does not exist; pass a MedMNIST 3D .npz file or --datalist JSON.")
    args.npz = str(Path(args.npz).resolve())
    common.check_cspr_checkpoint(args)
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    common.set_threads(args.threads)
    device = common.resolve_device(args.device)
    clock = common.Stopwatch()
    temporary = args.work_dir is None
    work = Path(tempfile.mkdtemp(prefix="genesis_adrenal_") if temporary else args.work_dir)
    for sub in ("pretrain_run", "runs"):
        shutil.rmtree(work / sub, ignore_errors=True)
    try:
        pretraining = None
        checkpoints = {"scratch": "", "resnet18_scratch": ""}
        if "cspr" in args.inits:
            checkpoints["cspr"] = str(Path(args.cspr_checkpoint).resolve())
        if "genesis" in args.inits:
            if args.pretrained_checkpoint:
                checkpoints["genesis"] = str(Path(args.pretrained_checkpoint).resolve())
                pretraining = {"checkpoint": checkpoints["genesis"], "reused": True}
            else:
                logger.info("Genesis pretraining on the training images ...")
                size = [args.input_size] * 3
                pretraining = common.run_pretraining(
                    work / "pretrain_run", device, args.verbose,
                    data_split=pretrain_split(args), intensity="minmax", seed=0, epochs=args.pretrain_epochs,
                    genesis_features=args.features, patch_size=size, cubes_per_volume=1, val_cubes_per_volume=1,
                    batch_size=args.pretrain_batch, num_workers=args.workers,
                )
                checkpoints["genesis"] = pretraining["checkpoint"]
                logger.info(f"  best validation MSE {pretraining['best_val_mse']:.5f} ({pretraining['seconds']:.0f} s)")
        test = has_test_split(args)
        runs = []
        for seed in args.seeds:
            for init in args.inits:
                result = finetune(args, device, work / "runs" / f"{init}_{seed}", checkpoints[init], seed, init, test)
                result.update(init=init, seed=seed)
                runs.append(result)
                scored = f", official test AUC {result['test_auc']:.3f}" if test else ""
                logger.info(f"{init} seed {seed}: val AUC {result['auc']:.3f}, accuracy {result['accuracy']:.3f}{scored} "
                            f"({result['seconds']:.0f} s)")
        rows = []
        for init in args.inits:
            chosen = [r for r in runs if r["init"] == init]
            row = {"init": init, "seeds": len(chosen)}
            for key in ("auc", "accuracy") + (("test_auc", "test_accuracy") if test else ()):
                row[f"{key}_mean"], row[f"{key}_std"] = common.mean_std([r[key] for r in chosen])
            rows.append(row)
        text = table(rows)
        norm = common.run_norm(BUNDLE, args.norm)
        if test:
            where = (
                "\n\nThe published figures are on the official test split, which is in this file: the final network "
                "of every run is scored on it once, after training, with no model selection on it (rows \"official "
                "test\"); the rows \"val\" are the validation split."
            )
        else:
            where = (
                "\n\nThe published figures are on the official test split (not in these files); this benchmark validates "
                "on the validation split."
            )
        text += where + (
            f" Setting {args.setting}: {network_words(args)} (norm {norm!r}), input "
            f"{args.input_size}³, {args.epochs} epochs of batch {args.batch_size}, {args.device} with "
            f"{torch.get_num_threads()} torch threads; AUC and accuracy of the final network."
        )
        if pretraining and not pretraining.get("reused"):
            text += (
                f" Genesis pretraining: {pretraining['epochs_run']} epochs on the training images, "
                f"best restoration MSE {pretraining['best_val_mse']:.4f}."
            )
        payload = {
            "benchmark": "finetune_adrenal",
            "setting": args.setting,
            "command": common.command_line(__file__, args.argv),
            "machine": common.machine_info(device),
            "config": {
                "bundle": f"bundles/{BUNDLE}",
                "data": args.datalist or args.npz,
                "features": args.features,
                "norm": norm,
                "input_size": args.input_size,
                "epochs": args.epochs,
                "batch_size": args.batch_size,
                "learning_rate": args.learning_rate,
                "pretrain_epochs": args.pretrain_epochs,
                "cspr_checkpoint": args.cspr_checkpoint,
                "max_train": args.max_train,
                "seeds": args.seeds,
                "metric": "AUC and accuracy (threshold 0.5) on the validation split"
                + (" and, once, on the official test split" if test else "") + ", final network, no model selection",
                "official_test_split": test,
            },
            "published": PUBLISHED,
            "pretraining": pretraining,
            "summary": rows,
            "runs": runs,
            "total_seconds": clock(),
        }
        name = common.results_name("finetune_adrenal", args.setting, device, args.tag)
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
