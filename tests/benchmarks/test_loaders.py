"""The loaders side by side, run as a user runs it at a tiny size: every loader's figures, the ratio of ours to the
best peer of each cell, the copy limit, and the table and plot written."""

from __future__ import annotations

import importlib.util
import json

import pytest

from tests.conftest import REPO_ROOT
from tests.packaging.helpers import run_cli

pytestmark = pytest.mark.slow
pytest.importorskip("numba")


def test_loaders_smoke(tmp_path):
    # TorchIO and blosc2 are benchmark extras: their loaders run where they are installed
    peers = ["monai_cache_nocopy", "monai_persistent"] + [
        name for name, module in (("torchio", "torchio"), ("nnssl_blosc2", "blosc2"))
        if importlib.util.find_spec(module)
    ]
    run_cli(["benchmarks/loaders.py", "--volumes", "2", "--shape", "80", "72", "40", "--patches", "cube",
             "--workers", "0", "2", "--loaders", "ours", *peers, "--real-copies", "0", "--seconds", "0.5",
             "--warmup", "1", "--cubes-per-volume", "6", "--work", str(tmp_path / "work"),
             "--results", str(tmp_path)], cwd=REPO_ROOT)
    payload = json.loads((tmp_path / "loaders_cpu.json").read_text())
    assert payload["command"].startswith("python benchmarks/loaders.py")
    runs = payload["runs"]
    assert sorted((r["loader"], r["workers"]) for r in runs) == sorted(
        (loader, w) for loader in ["ours", *peers] for w in (0, 2)
    )
    for r in runs:
        assert "error" not in r, r
        assert r["cubes_per_s"] > 0 and r["peak_tree_gib"] > 0.05 and r["volumes"] == 2
        assert r["disk_bytes"] > 0 and r["startup_s"] >= 0
    # one ratio per cell: ours over the fastest peer of the same run
    by = {(r["loader"], r["workers"]): r["cubes_per_s"] for r in runs}
    assert len(payload["ratios"]) == 2
    for cell in payload["ratios"]:
        best = max(by[(p, cell["workers"])] for p in peers)
        assert by[(cell["best_peer"], cell["workers"])] == best
        assert cell["ratio"] == pytest.approx(by[("ours", cell["workers"])] / best)
    limit = payload["limit"]["cube"]
    assert limit["bytes_stored"] == 64 * 64 * 32 * 2 and limit["pread_cubes_per_s"] > 0
    text = (tmp_path / "loaders_cpu.md").read_text()
    assert "| data | volumes | patch | workers | loader | cubes/s |" in text and "ours / best peer" in text
    assert (tmp_path / "loaders_cpu.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the volumes and caches are removed afterwards (no --keep)
    assert not (tmp_path / "work").exists()
