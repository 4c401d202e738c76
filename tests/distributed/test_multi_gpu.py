import json

import pytest
import torch
from monai.bundle import ConfigParser

from monai_genesis.networks import GenesisUNet
from monai_genesis.weights import save_official_checkpoint
from tests.packaging.helpers import run_cli

TRAINING_BUNDLES = ("genesis_pretrain", "finetune_segmentation", "finetune_classification", "mae_pretrain", "cspr_pretrain",
                    "finetune_detection")
# handlers that write logs or images; every other handler takes part in the training on all ranks (checkpoint
# savers too: ignite's DiskSaver writes on rank 0 only, so that every rank keeps the same best-model record)
LOGGING_OR_SAVING = {
    "ProgressBar",
    "StatsHandler",
    "TensorBoardStatsHandler",
    "RestorationImageHandler",
    "RestorationPNGSaver",
    "SliceRestorationSaver",
    "BoxSlicePNGSaver",
}
RANK_ZERO_ONLY = "@not_rank_zero"


def _configs(repo_root, bundle, *extra):
    configs = [
        repo_root / "bundles" / bundle / "configs" / "train.json",
        repo_root / "configs" / "base" / "train.json",
        repo_root / "configs" / "quick.json",
        repo_root / "configs" / "multi_gpu_train.json",
        repo_root / "configs" / "multi_gpu_cpu.json",
        *extra,
    ]
    for c in configs:
        if not c.is_file():
            pytest.skip(f"{c} is absent")
    return "[" + ",".join(f"'{c}'" for c in configs) + "]"


def _probe_config(path, probe_dir, prepare_batch=None):
    probe = {
        "_target_": "tests.distributed.cube_probe.CubeProbe",
        "out_dir": str(probe_dir),
        "train_handlers": "@train#handlers",
        "val_handlers": "@validate#handlers",
    }
    if prepare_batch:
        probe["prepare_batch"] = prepare_batch
    path.write_text(json.dumps({"probe": probe, "train#trainer#train_handlers": "$@train#handlers + [@probe]"}))
    return path


def _ranks(probe_dir):
    ranks = [json.loads((probe_dir / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["rank"] for r in ranks] == [0, 1] and {r["world_size"] for r in ranks} == {2}
    return ranks


def _assert_mostly_different(seen0, seen1):
    """Two ranks drew their own samples: a cube may repeat by chance, a shared random stream would repeat most."""
    assert len(set(seen0) & set(seen1)) <= len(seen0) // 4, (len(set(seen0) & set(seen1)), len(seen0))


def _assert_rank_zero_writes(ranks, run_root):
    assert LOGGING_OR_SAVING & set(ranks[0]["train_handlers"] + ranks[0]["val_handlers"])
    assert not LOGGING_OR_SAVING & set(ranks[1]["train_handlers"] + ranks[1]["val_handlers"])
    assert "ValidationHandler" in ranks[1]["train_handlers"] and "EarlyStopHandler" in ranks[1]["val_handlers"]
    events = [p.name for p in run_root.rglob("events.out.tfevents.*")]
    assert events and all(f".{ranks[0]['pid']}." in name for name in events), events


@pytest.mark.parametrize("bundle", TRAINING_BUNDLES)
def test_multi_gpu_overrides_match_the_bundle(repo_root, bundle):
    """Every logging handler, and only those, is switched off on ranks > 0 in the bundle's train.json merged with the
    shared base (so that no override refers to a handler by its position); DDP pieces are in place."""
    configs = repo_root / "bundles" / bundle / "configs"
    if not (configs / "train.json").is_file():
        pytest.skip(f"{bundle} is absent")
    base, multi_gpu = repo_root / "configs" / "base" / "train.json", repo_root / "configs" / "multi_gpu_train.json"
    merged = ConfigParser.load_config_files([configs / "train.json", base, multi_gpu])
    assert not [k for k in ConfigParser.load_config_file(multi_gpu) if "handlers#" in k]
    assert merged["not_rank_zero"] == "$not monai_genesis.distributed.is_rank_zero()"
    for section in ("train", "validate"):
        for i, handler in enumerate(merged[section]["handlers"]):
            if not isinstance(handler, dict):
                continue
            rank_zero = handler["_target_"].split(".")[-1] in LOGGING_OR_SAVING
            assert (handler.get("_disabled_") == RANK_ZERO_ONLY) == rank_zero, f"{section}#handlers#{i}: {handler}"
        assert merged[section]["dataloader"]["sampler"] == f"@{section}#sampler"
        assert merged[section]["sampler"]["_target_"] == "DistributedSampler"
    assert merged["train"]["dataloader"]["shuffle"] is False
    assert merged["network"]["_target_"] == "torch.nn.parallel.DistributedDataParallel"
    assert merged["dist_backend"] == "nccl" and "LOCAL_RANK" in merged["device"]
    # the process group starts first, with the chosen backend; each rank seeds its own random streams
    start = merged["initialize"].index("@process_group")
    later = [i for i, e in enumerate(merged["initialize"]) if "claim_run" in e or "set_determinism" in e]
    assert len(later) == 2 and min(later) > start
    assert "start_process_group(@dist_backend" in merged["process_group"]
    assert any("set_determinism(seed=@seed + monai_genesis.distributed.rank())" in e for e in merged["initialize"])
    assert any("end_process_group" in e for e in merged["finalize"])
    cpu = ConfigParser.load_config_files([configs / "train.json", base, multi_gpu,
                                          repo_root / "configs" / "multi_gpu_cpu.json"])
    assert cpu["dist_backend"] == "gloo" and cpu["network"]["device_ids"] is None and "cpu" in cpu["device"]


def test_pretrain_two_ranks_on_cpu(tmp_path, repo_root):
    """torchrun of genesis_pretrain with two gloo ranks: different cubes per rank, rank 0 alone logs and saves."""
    probe = _probe_config(tmp_path / "probe.json", tmp_path / "probe", prepare_batch="@train#prepare_batch")
    run_root = tmp_path / "run"
    run_root.mkdir()
    run_cli(["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "monai.bundle", "run",
             "--config_file", _configs(repo_root, "genesis_pretrain", probe), "--bundle_root", str(run_root),
             "--epochs", "2", "--val_interval", "1", "--num_phantoms", "4"],
            cwd=repo_root)

    ranks = _ranks(tmp_path / "probe")
    # each rank trained on its own cubes, corrupted from its own random stream
    assert len(ranks[0]["clean"]) == len(ranks[1]["clean"]) > 0
    _assert_mostly_different(ranks[0]["clean"], ranks[1]["clean"])
    _assert_mostly_different(ranks[0]["corrupted"], ranks[1]["corrupted"])
    assert ranks[0]["corruption_state"] != ranks[1]["corruption_state"]
    assert {"ResumeHandler", "LrScheduleHandler"} <= set(ranks[1]["train_handlers"])
    assert "ReseedHandler" in ranks[1]["val_handlers"]
    pretrain_logging = {"ProgressBar", "StatsHandler", "TensorBoardStatsHandler", "RestorationImageHandler",
                        "SliceRestorationSaver"}
    assert pretrain_logging <= set(ranks[0]["train_handlers"] + ranks[0]["val_handlers"])
    _assert_rank_zero_writes(ranks, run_root)

    # the checkpoint of the DDP network holds the plain network's keys
    state = torch.load(run_root / "models" / "model.pt", map_location="cpu", weights_only=True)
    assert not any(k.startswith("module.") for k in state)
    quick = json.loads((repo_root / "configs" / "quick.json").read_text())
    GenesisUNet(features=quick["genesis_features"]).load_state_dict(state, strict=True)


def test_segmentation_two_ranks_frozen_encoder(tmp_path, repo_root):
    """DDP fine-tuning from a released-format checkpoint with the encoder frozen after wrapping."""
    quick = json.loads((repo_root / "configs" / "quick.json").read_text())
    torch.manual_seed(5)
    pretrained = save_official_checkpoint(GenesisUNet(features=quick["genesis_features"]), tmp_path / "genesis.pt")
    probe = _probe_config(tmp_path / "probe.json", tmp_path / "probe")
    run_root = tmp_path / "run"
    run_root.mkdir()
    run_cli(["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "monai.bundle", "run",
             "--config_file", _configs(repo_root, "finetune_segmentation", probe), "--bundle_root", str(run_root),
             "--pretrained", str(pretrained), "--finetune", "frozen_encoder", "--epochs", "2", "--val_interval", "1", "--num_label_phantoms", "4", "--phantom_size", "[48, 48, 32]"], cwd=repo_root)

    ranks = _ranks(tmp_path / "probe")
    assert ranks[0]["corrupted"]
    _assert_mostly_different(ranks[0]["corrupted"], ranks[1]["corrupted"])
    _assert_rank_zero_writes(ranks, run_root)
    final = torch.load(run_root / "models" / "model_final.pt", map_location="cpu", weights_only=True)
    assert not any(k.startswith("module.") for k in final)
    source = GenesisUNet(features=quick["genesis_features"])
    from monai_genesis.weights import load_official_checkpoint

    load_official_checkpoint(pretrained, net=source)
    reference = source.state_dict()
    encoder = [k for k in final if k.startswith("encoder.") and not k.endswith(("running_mean", "running_var",
                                                                              "num_batches_tracked"))]
    assert encoder and all(torch.equal(final[k], reference[k]) for k in encoder)
    decoder = [k for k in final if k.startswith("up1.") and k.endswith("weight")]
    assert any(not torch.equal(final[k], reference[k]) for k in decoder)


def test_detection_two_ranks_on_cpu(tmp_path, repo_root):
    """torchrun of finetune_detection over the shared base and DDP override with two gloo ranks: each rank trains on
    its own images, rank 0 alone logs and saves, the checkpoint holds the plain network's keys. Of 5 phantoms one is
    validated, so the padded validation sampler gives it to both ranks (the metric counts it once)."""
    from monai_genesis.detection import BACKBONE_PREFIX

    probe = _probe_config(tmp_path / "probe.json", tmp_path / "probe")
    run_root = tmp_path / "run"
    run_root.mkdir()
    run_cli(["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "monai.bundle", "run",
             "--config_file", _configs(repo_root, "finetune_detection", probe), "--bundle_root", str(run_root),
             "--epochs", "2", "--val_interval", "1", "--num_detection_phantoms", "5", "--batch_size", "1"],
            cwd=repo_root)

    ranks = _ranks(tmp_path / "probe")
    assert len(ranks[0]["corrupted"]) == len(ranks[1]["corrupted"]) > 0
    _assert_mostly_different(ranks[0]["corrupted"], ranks[1]["corrupted"])
    assert {"PretrainedLoader", "ValidateAtStart", "ResumeHandler"} <= set(ranks[1]["train_handlers"])
    _assert_rank_zero_writes(ranks, run_root)
    assert (run_root / "eval" / "boxes.png").is_file()
    state = torch.load(run_root / "models" / "model.pt", map_location="cpu", weights_only=True)
    assert not any(k.startswith("module.") for k in state)
    assert len([k for k in state if k.startswith(BACKBONE_PREFIX)]) == 120
