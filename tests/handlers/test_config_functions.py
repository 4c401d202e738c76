"""The small functions the bundle configs call instead of expressions of their own."""

import pytest
import torch
from ignite.engine import Engine

from monai_genesis.config import (
    key_metric_score,
    metric_cmp_fn,
    scaled_learning_rate,
    sparse_network_kwargs,
    training_state,
    world_size,
)
from monai_genesis.handlers import default_finetune


def test_metric_modes_compare_and_score_both_ways():
    assert metric_cmp_fn("min")(0.1, 0.2) and not metric_cmp_fn("min")(0.3, 0.2)
    assert metric_cmp_fn("max")(0.3, 0.2) and not metric_cmp_fn("max")(0.1, 0.2)
    engine = Engine(lambda e, b: None)
    engine.state.metrics, engine.state.key_metric_name = {"val_mse": 0.25}, "val_mse"
    assert key_metric_score("min")(engine) == -0.25 and key_metric_score("max")(engine) == 0.25
    with pytest.raises(ValueError, match="key_metric_mode must be 'min'.*or 'max'.*got 'lower'"):
        metric_cmp_fn("lower")


def test_training_state_holds_a_schedule_only_when_there_is_one():
    net = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    assert list(training_state(net, opt)) == ["model", "optimizer"]
    schedule = torch.optim.lr_scheduler.StepLR(opt, 1)
    assert training_state(net, opt, schedule)["lr_scheduler"] is schedule


def test_learning_rate_scales_with_the_global_batch():
    assert world_size() == 1
    assert scaled_learning_rate(0.1, 32, 256) == pytest.approx(0.0125)


def test_defaults_of_fine_tuning_and_sparse_masking():
    assert default_finetune("") == "scratch" and default_finetune("model.pt") == "full"
    assert sparse_network_kwargs(True) == {"mask": "mask"} and sparse_network_kwargs("false") == {}
    with pytest.raises(ValueError, match="--resenc_sparse must be true or false"):
        sparse_network_kwargs("maybe")
