"""Fixtures of the benchmark smoke tests."""

import json

import pytest


@pytest.fixture(scope="module")
def phantom_dir(tmp_path_factory):
    """Two CT phantoms with label maps and a datalist that trains on one and validates on the other."""
    from monai_genesis.data import write_ct_phantoms

    folder = tmp_path_factory.mktemp("phantoms")
    items = write_ct_phantoms(str(folder), 2, (40, 40, 32), seed=0, with_labels=True)
    (folder / "datalist.json").write_text(json.dumps({"training": items[:1], "validation": items[1:]}))
    return folder
