"""PretextPrepareBatch: one batch preparation for any pretext, the pretext built once and shared."""

import json

import pytest
import torch

from monai.bundle import ConfigParser

from monai_genesis.engines import GenesisPrepareBatch, MaskedPrepareBatch, PretextPrepareBatch
from monai_genesis.transforms import RandBlockMask, RandGenesisCorruption


def test_one_corruption_object_serves_both_prepare_batches_and_the_transform():
    """A config builds the corruption once; each prepare-batch draws from its own random state."""
    config = {
        "corruption": {"_target_": "monai_genesis.transforms.RandGenesisCorruption", "paint_rate": 0.0},
        "train": {"_target_": "monai_genesis.engines.PretextPrepareBatch", "pretext": "@corruption", "seed": 1},
        "validate": {"_target_": "monai_genesis.engines.PretextPrepareBatch", "pretext": "@corruption", "seed": 1},
        "per_sample": {
            "_target_": "monai_genesis.transforms.RandGenesisCorruptiond",
            "keys": "image",
            "corruption": "@corruption",
        },
    }
    parser = ConfigParser(json.loads(json.dumps(config)))
    corruption = parser.get_parsed_content("corruption")
    train, validate = parser.get_parsed_content("train"), parser.get_parsed_content("validate")
    per_sample = parser.get_parsed_content("per_sample")
    assert train.pretext is corruption and validate.pretext is corruption and per_sample.corruption is corruption
    batch = {"image": torch.rand(3, 1, 24, 24, 16)}
    first = train(batch)
    per_sample({"image": batch["image"][0]})  # the transform's draws do not move the prepare-batches'
    second = validate(batch)
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    assert not torch.equal(train(batch)[0], first[0])  # the next batch gets new draws
    assert not train.last_draw.inpaint.selected.any()  # the shared object's settings (paint_rate=0) apply


def test_same_values_as_the_thin_subclasses():
    batch = {"image": torch.rand(2, 2, 32, 32, 16)}
    generic = PretextPrepareBatch(RandGenesisCorruption(), seed=4)(batch)
    genesis = GenesisPrepareBatch(seed=4)(batch)
    assert all(torch.equal(a, b) for a, b in zip(generic, genesis))
    masking = RandBlockMask(8)
    generic = PretextPrepareBatch(masking, seed=2, network_kwargs={"m": "mask"})(batch)
    masked = MaskedPrepareBatch(masking, mask_kwarg="m", seed=2)(batch)
    assert torch.equal(generic[0], masked[0]) and torch.equal(generic[1], masked[1])
    assert generic[2] == () and torch.equal(generic[3]["m"], masked[3]["m"])
    assert generic[1].shape == (2, 3, 32, 32, 16) and torch.equal(generic[1][:, 2:], generic[3]["m"])


def test_off_device_only_moves_image_and_label():
    batch = {"image": torch.rand(2, 1, 16, 16, 16), "label": torch.rand(2, 1, 16, 16, 16)}
    image, label = PretextPrepareBatch(RandGenesisCorruption(), on_device="false", seed=0)(batch)
    assert torch.equal(image, batch["image"]) and torch.equal(label, batch["label"])


def test_bad_pretext_and_unknown_extra_are_refused():
    with pytest.raises(TypeError, match="the pretext Identity has no draw and no training_pair method"):
        PretextPrepareBatch(torch.nn.Identity())
    prepare = PretextPrepareBatch(RandGenesisCorruption(), seed=0, network_kwargs={"mask": "mask"})
    with pytest.raises(KeyError, match=r"network_kwargs names \['mask'\], which RandGenesisCorruption does not give"):
        prepare(torch.rand(1, 1, 16, 16, 16))


def test_block_size_that_does_not_divide_the_patch_is_refused_when_built():
    """#21: the bundle's flags, not an API fix, and before the first iteration when the patch size is given."""
    match = r"\(100, 96, 96\) is not a multiple of block_size \(16, 16, 16\).*--patch_size"
    with pytest.raises(ValueError, match=match):
        RandBlockMask(16, spatial_size=(100, 96, 96))
    with pytest.raises(ValueError, match=r"--mask_block_size \"\[4, 16, 16\]\""):
        MaskedPrepareBatch(RandBlockMask(16), seed=0)(torch.rand(1, 1, 100, 96, 96))
    assert RandBlockMask(16, spatial_size=(96, 96, 96)).grid_shape((96, 96, 96)) == (6, 6, 6)


@pytest.mark.parametrize("ratio, what", [(0.0, "masks no block, so MaskedMSELoss is 0"), (1.0, "masks every block")])
def test_degenerate_mask_ratios_are_warned(ratio, what):
    with pytest.warns(UserWarning, match=f"mask_ratio={ratio:g} {what}.*--mask_ratio"):
        masking = RandBlockMask(8, mask_ratio=ratio)
    masked, target = MaskedPrepareBatch(masking, seed=0)(torch.rand(1, 1, 16, 16, 16) + 1.0)
    assert target[:, 1].sum().item() == ratio * 16**3
    assert (masked == 0).float().mean().item() == ratio
