"""The bundle configs read as recipes: few and short ``$`` expressions, no file repeated between bundles."""

import hashlib
import json

import pytest

from tests.bundles.workflows import BUNDLES, REPO

NAMES = ["genesis_pretrain", "mae_pretrain", "cspr_pretrain", "finetune_segmentation", "finetune_classification",
         "finetune_detection", "genesis_chest_ct"]
MAX_EXPRESSIONS, MAX_LENGTH = 20, 100


def _expressions(node, key=""):
    """Every ``$`` string of a parsed config but its imports."""
    if isinstance(node, dict):
        return [e for k, v in node.items() if k.lstrip("+") != "imports" for e in _expressions(v, k)]
    if isinstance(node, list):
        return [e for v in node for e in _expressions(v, key)]
    return [node] if isinstance(node, str) and node.startswith("$") else []


def _configs(name):
    return sorted(p for p in (BUNDLES / name / "configs").glob("*.json") if p.name != "metadata.json")


def test_expressions_counts_the_way_the_benchmark_does():
    config = {"imports": ["$import os"], "a": "$1 + 1", "b": [{"c": "$2"}, "@a", "x"], "+imports": ["$import sys"]}
    assert _expressions(config) == ["$1 + 1", "$2"]


@pytest.mark.parametrize("name", NAMES)
def test_bundle_configs_hold_few_short_expressions(name):
    assert _configs(name)
    for path in _configs(name):
        found = _expressions(json.loads(path.read_text()))
        assert len(found) <= MAX_EXPRESSIONS, f"{path}: {len(found)} expressions"
        too_long = [e for e in found if len(e) > MAX_LENGTH]
        assert not too_long, f"{path}: make these a named function or a _target_ component: {too_long}"


def test_shared_configs_hold_short_expressions():
    for path in sorted((REPO / "configs").rglob("*.json")):
        too_long = [e for e in _expressions(json.loads(path.read_text())) if len(e) > MAX_LENGTH]
        assert not too_long, f"{path}: {too_long}"


def test_no_config_is_repeated_between_bundles_and_ddp_is_one_file():
    seen = {}
    for name in NAMES:
        for path in _configs(name):
            seen.setdefault(hashlib.sha1(path.read_bytes()).hexdigest(), []).append(path.relative_to(REPO))
    repeated = [sorted(str(p) for p in paths) for paths in seen.values() if len(paths) > 1]
    # the two classifiers evaluate alike (probabilities.csv and every metric); nothing else is repeated
    assert repeated == [["bundles/cspr_pretrain/configs/evaluate.json",
                         "bundles/finetune_classification/configs/evaluate.json"]], repeated
    assert not any((BUNDLES / name / "configs" / "multi_gpu_train.json").exists() for name in NAMES)
    assert (REPO / "configs" / "multi_gpu_train.json").is_file()


@pytest.mark.parametrize("name", ["genesis_pretrain", "mae_pretrain", "cspr_pretrain", "finetune_segmentation",
                                  "finetune_classification", "finetune_detection"])
def test_training_bundles_leave_the_engine_to_the_base(name):
    train = json.loads((BUNDLES / name / "configs" / "train.json").read_text())
    assert "trainer" not in train["train"] and "evaluator" not in train["validate"]
    assert not {"bundle_root", "device", "network", "run", "finalize"} & set(train)
    assert train["key_metric_mode"] in ("min", "max")
    # the recipe names the engines the base builds: MONAI's supervised ones, or its own (detection)
    assert train["train"]["engine"] and train["validate"]["engine"]
    base = json.loads((REPO / "configs" / "base" / "train.json").read_text())
    assert base["train#trainer"]["_target_"] == "@train#engine"
    assert base["validate#evaluator"]["_target_"] == "@validate#engine"
