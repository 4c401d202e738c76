"""The GPU suite's smoke setting on the CPU, run as a user runs it: every bundle and variant measured, FLOPs that
agree with an independent count, the bound from a given peak, and the result files."""

from __future__ import annotations

import json

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from monai_genesis.networks import GenesisUNet
from tests.conftest import REPO_ROOT
from tests.packaging.helpers import run_cli

pytestmark = pytest.mark.slow


def test_gpu_suite_smoke(tmp_path):
    run_cli(["benchmarks/gpu_suite.py", "--smoke", "--peak-tflops", "1", "--results", str(tmp_path), "--work",
             str(tmp_path / "work")], cwd=REPO_ROOT)
    payload = json.loads((tmp_path / "gpu_suite_smoke_cpu.json").read_text())
    table = (tmp_path / "gpu_suite_smoke_cpu.md").read_text()
    assert payload["command"].startswith("python benchmarks/gpu_suite.py --smoke")
    rows = payload["results"]
    assert [(r["bundle"], r["variant"]) for r in rows] == [
        (b, v) for b in ("genesis", "mae", "cspr") for v in ("fp32", "bf16", "channels_last")
    ]
    assert not payload["skipped"] and all("error" not in r for r in rows)
    for r in rows:
        assert r["cubes_per_s"] > 0 and 0 <= r["data_wait_share"] < 1
        assert r["achieved_tflops"] == pytest.approx(r["flops_per_step"] * r["steps"] / r["seconds"] / 1e12)
        # the bound of a 1 TFLOP/s device: 1e12 / FLOPs per cube
        assert r["bound_cubes_per_s"] == pytest.approx(1e12 / r["flops_per_cube"])
        assert r["of_bound"] == pytest.approx(r["cubes_per_s"] / r["bound_cubes_per_s"])
        assert r["flops_per_step"] == pytest.approx(r["flops_per_cube"] * r["batch"])
    # float32 eager is the reference itself
    assert all(r["loss_difference"] < 1e-6 and r["safe"] for r in rows if r["variant"] == "fp32")
    # a training step is the forward and its backward, about three forward passes (the input needs no gradient)
    net = GenesisUNet(spatial_dims=3, in_channels=1, out_channels=1, features=2, norm="genesis",
                      out_activation="sigmoid")
    with FlopCounterMode(display=False) as counter:
        net(torch.zeros(2, 1, 32, 32, 16))
    genesis = rows[0]["flops_per_step"]
    assert 2.5 * counter.get_total_flops() < genesis <= 3 * counter.get_total_flops()
    assert set(payload["recommended"]) == {"genesis", "mae", "cspr"}
    # the bound on paper (also what --flops-only writes) counts the same FLOPs on the meta device, without data
    paper = payload["paper"]
    measured = {r["bundle"]: r["flops_per_cube"] for r in rows}
    assert {r["bundle"]: r["flops_per_cube"] for r in paper} == pytest.approx(measured)
    assert paper[0]["bound_cubes_per_s"]["H200"] == pytest.approx(989.4e12 / measured["genesis"])
    assert table.startswith("# gpu_suite_smoke_cpu\n") and "| genesis | 2 | fp32 |" in table
    assert "Recommended (fastest safe variant)" in table
