import json
import pytest
import torch

from monai_genesis.networks import GenesisUNet
from tests.packaging.helpers import run_cli

PROBE = "tests.distributed.cube_probe.CubeProbe"
LOGGING_OR_SAVING = {
    "CheckpointSaver",
    "ProgressBar",
    "StatsHandler",
    "TensorBoardStatsHandler",
    "RestorationImageHandler",
    "RestorationPNGSaver",
}


def _configs(repo_root, bundle, *extra):
    configs = [
        repo_root / "bundles" / bundle / "configs" / "train.json",
        repo_root / "configs" / "quick.json",
        repo_root / "bundles" / bundle / "configs" / "multi_gpu_train.json",
        repo_root / "configs" / "multi_gpu_cpu.json",
        *extra,
    ]
    for c in configs:
        if not c.is_file():
            pytest.skip(f"{c} is absent")
    return "[" + ",".join(f"'{c}'" for c in configs) + "]"


def test_pretrain_two_ranks_on_cpu(tmp_path, repo_root):
    """torchrun of genesis_pretrain with two gloo ranks: different cubes per rank, rank 0 alone logs and saves."""
    probe_dir = tmp_path / "probe"
    probe = tmp_path / "probe.json"
    probe.write_text(json.dumps({
        "probe": {
            "_target_": PROBE,
            "out_dir": str(probe_dir),
            "train_handlers": "@train#handlers",
            "val_handlers": "@validate#handlers",
            "prepare_batch": "@train#prepare_batch",
        },
        "train#trainer#train_handlers": "$@train#handlers + [@probe]",
    }))
    run_root = tmp_path / "run"
    run_root.mkdir()
    run_cli(["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "monai.bundle", "run",
             "--config_file", _configs(repo_root, "genesis_pretrain", probe), "--bundle_root", str(run_root)],
            cwd=repo_root)

    ranks = [json.loads((probe_dir / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["rank"] for r in ranks] == [0, 1] and {r["world_size"] for r in ranks} == {2}
    # each rank trained on its own cubes, corrupted from its own random stream
    assert ranks[0]["clean"] and ranks[1]["clean"]
    assert not set(ranks[0]["clean"]) & set(ranks[1]["clean"])
    assert not set(ranks[0]["corrupted"]) & set(ranks[1]["corrupted"])
    assert ranks[0]["corruption_state"] != ranks[1]["corruption_state"]
    # logging and saving handlers exist on rank 0 only; the ones every rank needs run everywhere
    assert LOGGING_OR_SAVING & set(ranks[0]["train_handlers"] + ranks[0]["val_handlers"]) == LOGGING_OR_SAVING
    assert not LOGGING_OR_SAVING & set(ranks[1]["train_handlers"] + ranks[1]["val_handlers"])
    assert {"ResumeHandler", "LrScheduleHandler", "ValidationHandler"} <= set(ranks[1]["train_handlers"])
    assert {"ReseedHandler", "EarlyStopHandler"} <= set(ranks[1]["val_handlers"])
    events = [p.name for p in run_root.rglob("events.out.tfevents.*")]
    assert events and all(f".{ranks[0]['pid']}." in name for name in events), events

    # the checkpoint of the DDP network holds the plain network's keys
    state = torch.load(run_root / "models" / "model.pt", map_location="cpu", weights_only=True)
    assert not any(k.startswith("module.") for k in state)
    quick = json.loads((repo_root / "configs" / "quick.json").read_text())
    GenesisUNet(features=quick["genesis_features"]).load_state_dict(state, strict=True)
