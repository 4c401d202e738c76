"""Tiny end-to-end runs of the bundles, shared by the bundle tests."""

import pytest

from tests.bundles.workflows import run_workflow


@pytest.fixture(scope="session")
def pretrain_run(tmp_path_factory):
    """A two-epoch pretraining run on the embedded phantoms."""
    root = tmp_path_factory.mktemp("pretrain")
    workflow = run_workflow("genesis_pretrain", "train", root, epochs=2)
    return root, workflow


@pytest.fixture(scope="session")
def segmentation_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("segmentation")
    return root, run_workflow("finetune_segmentation", "train", root)


@pytest.fixture(scope="session")
def classification_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("classification")
    return root, run_workflow("finetune_classification", "train", root)


@pytest.fixture(scope="session")
def cspr_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("cspr")
    return root, run_workflow("cspr_pretrain", "train", root)
