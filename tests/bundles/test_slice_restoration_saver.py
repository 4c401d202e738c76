import json

import numpy as np
from PIL import Image

from tests.bundles.workflows import run_workflow

# the entry the pretraining bundle's validation handlers take
ENTRY = {
    "_target_": "monai_genesis.handlers.SliceRestorationSaver",
    "_disabled_": "@not_rank_zero",
    "network": "@network",
    "data": "@validate#picture_volume",
    "cube_size": "@patch_size",
    "output_dir": "@output_dir",
    "filename": "slice_restorations.png",
    "seed": "@seed",
    "overwrite": "@resume",
}


def test_pretraining_bundle_draws_a_whole_validation_slice(tmp_path):
    override = tmp_path / "slice_saver.json"
    override.write_text(json.dumps({"slice_saver": ENTRY, "validate#evaluator#val_handlers": "$@validate#handlers + [@slice_saver]"}))
    run_workflow("genesis_pretrain", "train", tmp_path / "run", extra_configs=[str(override)], epochs=1)
    picture = np.asarray(Image.open(tmp_path / "run" / "eval" / "slice_restorations.png"))
    # a 32 x 32 phantom slice: three panels magnified 8 times to 256 px, side by side, under the header
    assert picture.shape[1] >= 3 * 256 and picture.shape[0] > 256
    rgb = picture.astype(int)
    grey = (rgb[..., 0] == rgb[..., 1]) & (rgb[..., 1] == rgb[..., 2]) & (rgb[..., 0] != 24)
    assert (grey.sum(0) > 200).sum() >= 3 * 240  # columns crossed by a panel from top to bottom
