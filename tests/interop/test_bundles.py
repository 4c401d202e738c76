"""The bundles and nnssl: fine-tuning from nnssl-format files, exporting an mae_pretrain model (slow: bundle runs)."""

import json
import logging

import pytest
import torch

from tests.bundles.workflows import QUICK, REPO, TINY, run_workflow
from tests.interop.reference import (
    FEATURES,
    reference_unet,
    release_checkpoint,
    s3d_weights,
)
from tests.packaging.helpers import run_cli

pytestmark = pytest.mark.slow

dna = pytest.importorskip("dynamic_network_architectures.architectures.unet")

RESENC = str(REPO / "configs" / "networks" / "resenc_l.json")
QUICK_STRIDES = json.loads((REPO / "configs" / "quick.json").read_text())["resenc_strides"]
# ResEnc-L's depth at a narrow width: every one of the 224 encoder tensors of ResEnc-L, with the quick strides
NET = {"resenc_features": FEATURES}


def _zyx(strides):
    return [[s] * 3 if isinstance(s, int) else list(s)[::-1] for s in strides]


@pytest.fixture(scope="module")
def reference():
    return reference_unet(strides=_zyx(QUICK_STRIDES), kernels=[[3, 3, 3]] * 6)


def _fine_tune(tmp_path, checkpoint, caplog, extra=()):
    with caplog.at_level(logging.INFO, logger="monai_genesis"):
        # the README's command: train.json, then the ResEnc preset, then the quick settings
        workflow = run_workflow("finetune_segmentation", "train", tmp_path, [RESENC, *extra, QUICK],
                                pretrained=str(checkpoint), **NET)
    loader = next(h for h in workflow.parser.get_parsed_content("train#handlers") if hasattr(h, "finetune"))
    return workflow, loader.report


@pytest.mark.parametrize("form", ["release", "s3d"])
def test_segmentation_fine_tunes_from_an_nnssl_checkpoint(form, reference, tmp_path, caplog):
    weights = reference.state_dict() if form == "release" else s3d_weights(reference)
    path = tmp_path / "checkpoint_final.pth"
    torch.save(release_checkpoint(weights), path)
    # the S3D run merges the MAE fine-tuning fragment, which sets the z-score intensity of pretraining
    extra = [str(REPO / "configs" / "finetune_mae.json")] if form == "s3d" else []
    workflow, report = _fine_tune(tmp_path / "run", path, caplog, extra)
    network = workflow.parser.get_parsed_content("network")
    encoder = sorted(k for k in network.state_dict() if k.startswith("encoder."))
    assert len(encoder) == 224 and sorted(report.loaded) == encoder
    assert "224 of the 224 encoder tensors (encoder.*)" in caplog.text
    assert "pretrained as ResidualEncoderUNet (onemmiso): spacing [1.0, 1.0, 1.0] mm" in caplog.text
    assert (tmp_path / "run" / "models" / "model_final.pt").is_file()
    intensity_advice = "pass --intensity zscore, or merge configs/finetune_mae.json"
    if form == "s3d":
        assert len(report.stale) == 244 and "differ from their all_modules copy" in caplog.text
        assert intensity_advice not in caplog.text
    else:
        assert not report.stale and "all_modules copy" not in caplog.text
        # the bundle's default CT window differs from the z-score of pretraining: said, with the override
        assert "intensity='ct'" in caplog.text and intensity_advice in caplog.text


def test_exported_mae_model_loads_strictly_into_the_reference(tmp_path):
    root = tmp_path / "mae"
    run_workflow("mae_pretrain", "train", root, epochs=1)
    model = root / "models" / "model.pt"
    out = tmp_path / "nnssl"
    run_cli(["-m", "monai_genesis", "export", "--format", "nnssl", "--checkpoint", str(model), "--out", str(out),
             "--patch_size", "[16,16,16]"])
    assert sorted(p.name for p in out.iterdir()) == ["adaptation_plan.json", "checkpoint_final.pth"]
    ckpt = torch.load(out / "checkpoint_final.pth", weights_only=True)
    kwargs = ckpt["nnssl_adaptation_plan"]["architecture_plans"]["arch_kwargs"]
    assert kwargs["features_per_stage"] == TINY["mae_pretrain"]["resenc_features"]
    ref = reference_unet(features=kwargs["features_per_stage"], strides=kwargs["strides"], kernels=kwargs["kernel_sizes"])
    ref.load_state_dict(ckpt["network_weights"], strict=True)

    from monai_genesis.networks import ResEncUNet
    from monai_genesis.weights import extract_state_dict

    state = extract_state_dict(torch.load(model, weights_only=True))
    ours = ResEncUNet(features=kwargs["features_per_stage"], strides=TINY["mae_pretrain"]["resenc_strides"]).eval()
    ours.load_state_dict(state, strict=False)
    x = torch.randn(2, 1, 16, 16, 16, dtype=torch.float64)
    with torch.no_grad():
        want = ours.double()(x)
        got = ref.double()(x.permute(0, 1, 4, 3, 2)).permute(0, 1, 4, 3, 2)
    assert (got - want).abs().max().item() <= 1e-6
