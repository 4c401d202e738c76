import pytest
import torch
from monai.apps.detection.utils.anchor_utils import AnchorGeneratorWithAnchorShape
from monai.networks.nets import resnet18

from monai_genesis.detection import (
    BACKBONE_PREFIX,
    ATSSRetinaNetDetector,
    backbone_prefix_map,
    check_backbone_checkpoint,
    resnet18_retinanet,
    size_divisible,
)
from monai_genesis.errors import GenesisInputError
from monai_genesis.networks import GenesisUNet, ResNet18Classifier
from monai_genesis.weights import load_pretrained


@pytest.fixture(scope="module")
def retinanet():
    torch.manual_seed(0)
    return resnet18_retinanet(num_classes=2, num_anchors=3, fpn_channels=16, extra_level=False)


def test_retinanet_levels_and_backbone_names(retinanet):
    backbone = [k for k in retinanet.state_dict() if k.startswith(BACKBONE_PREFIX)]
    # the whole ResNet-18 trunk, named as MONAI's ResNet under the prefix
    assert len(backbone) == 120 and f"{BACKBONE_PREFIX}layer4.1.bn2.running_var" in backbone
    assert retinanet.size_divisible == (32, 32, 32) and size_divisible([2, 3, 4]) == 64
    with torch.no_grad():
        out = retinanet(torch.rand(1, 1, 64, 32, 32))
    assert [tuple(t.shape) for t in out["classification"]] == [(1, 6, 8, 4, 4), (1, 6, 4, 2, 2), (1, 6, 2, 1, 1)]
    assert [tuple(t.shape) for t in out["box_regression"]] == [(1, 18, 8, 4, 4), (1, 18, 4, 2, 2), (1, 18, 2, 1, 1)]
    with pytest.raises(ValueError, match="returned_layers must be increasing"):
        resnet18_retinanet(returned_layers=[3, 2])


def test_detector_trains_and_predicts_without_torchvision(retinanet):
    anchors = AnchorGeneratorWithAnchorShape(feature_map_scales=[1, 2, 4], base_anchor_shapes=[[8, 8, 8], [12, 12, 12], [16, 16, 16]])
    detector = ATSSRetinaNetDetector(retinanet, anchors)
    detector.set_atss_matcher(num_candidates=4, center_in_gt=False)
    detector.set_hard_negative_sampler(batch_size_per_image=64, positive_fraction=0.3, pool_size=20, min_neg=16)
    detector.set_target_keys(box_key="box", label_key="label")
    detector.train()
    target = {"box": torch.tensor([[4.0, 4, 4, 16, 18, 14]]), "label": torch.tensor([1])}
    losses = detector([torch.rand(1, 32, 32, 32), torch.rand(1, 32, 32, 32)], [target, target])
    assert set(losses) == {"classification", "box_regression"} and all(torch.isfinite(v) for v in losses.values())
    detector.eval()
    detector.set_box_selector_parameters(score_thresh=0.0, topk_candidates_per_level=10, nms_thresh=0.5, detections_per_img=5)
    with torch.no_grad():
        pred = detector([torch.rand(1, 32, 32, 32)])
    assert pred[0]["box"].shape == (5, 6) and pred[0]["label_scores"].shape == (5,)


def test_cspr_checkpoint_loads_every_encoder_tensor(retinanet, tmp_path):
    cspr = ResNet18Classifier(1, 10, depth_stride=False)
    path = tmp_path / "cspr.pt"
    torch.save(cspr.state_dict(), path)
    assert check_backbone_checkpoint(str(path)) == str(path)
    assert backbone_prefix_map(str(path)) == {"encoder.": BACKBONE_PREFIX}
    report = load_pretrained(retinanet, str(path), prefix_map=backbone_prefix_map(str(path)))
    loaded = [k for k in report.loaded if k.startswith(BACKBONE_PREFIX)]
    assert len(loaded) == 120 and len(report.skipped) == 2  # the head's weight and bias
    torch.testing.assert_close(retinanet.state_dict()[f"{BACKBONE_PREFIX}layer3.0.conv1.weight"], cspr.encoder.layer3[0].conv1.weight)


def test_monai_resnet_state_dict_loads_by_name(retinanet, tmp_path):
    path = tmp_path / "monai_resnet18.pt"
    torch.save({"state_dict": resnet18(spatial_dims=3, n_input_channels=1, shortcut_type="B", bias_downsample=False).state_dict()}, path)
    assert backbone_prefix_map(str(path)) == {"": BACKBONE_PREFIX}
    check_backbone_checkpoint(str(path))
    report = load_pretrained(retinanet, str(path), prefix_map=backbone_prefix_map(str(path)))
    assert len([k for k in report.loaded if k.startswith(BACKBONE_PREFIX)]) == 120 and list(report.skipped) == [
        f"{BACKBONE_PREFIX}fc.weight", f"{BACKBONE_PREFIX}fc.bias"]


def test_checkpoint_of_another_architecture_is_refused(tmp_path):
    unet = tmp_path / "genesis_unet.pt"
    torch.save(GenesisUNet(features=2).state_dict(), unet)
    with pytest.raises(GenesisInputError, match=r"genesis_unet.pt holds no ResNet trunk.*another architecture.*cspr_pretrain.*--pretrained ''"):
        check_backbone_checkpoint(str(unet))
    # a ResNet-34's trunk: the ResNet-18's tensors and a third block in layer1
    state = resnet18(spatial_dims=3, n_input_channels=1, shortcut_type="B", bias_downsample=False).state_dict()
    state["layer1.2.conv1.weight"] = state["layer1.1.conv1.weight"]
    resnet34 = tmp_path / "resnet34.pt"
    torch.save(state, resnet34)
    with pytest.raises(GenesisInputError, match=r"resnet34.pt is a MONAI or MedicalNet ResNet state dict but not a ResNet-18.*layer1.2"):
        check_backbone_checkpoint(str(resnet34))
    wide = tmp_path / "two_channels.pt"
    torch.save({"encoder.conv1.weight": torch.zeros(64, 2, 7, 7, 7), "encoder.layer1.0.conv1.weight": torch.zeros(64, 64, 3, 3, 3)}, wide)
    with pytest.raises(GenesisInputError, match=r"stem takes 2 input channel\(s\): set --in_channels 2"):
        check_backbone_checkpoint(str(wide), in_channels=1)


def test_bundle_detector_is_set_up_as_the_model_zoo_one(retinanet):
    from monai.apps.detection.utils.ATSS_matcher import ATSSMatcher
    from monai.apps.detection.utils.hard_negative_sampler import HardNegativeSampler

    from monai_genesis.detection import retinanet_detector

    anchors = AnchorGeneratorWithAnchorShape(feature_map_scales=[1, 2, 4], base_anchor_shapes=[[8, 8, 8], [12, 12, 12], [16, 16, 16]])
    detector = retinanet_detector(retinanet, anchors, num_classes=2, returned_layers=(2, 3, 4), roi_size=(32, 32, 32))
    assert detector.size_divisible == (32, 32, 32) and detector.num_classes == 2
    assert isinstance(detector.proposal_matcher, ATSSMatcher) and isinstance(detector.fg_bg_sampler, HardNegativeSampler)
    assert (detector.target_box_key, detector.target_label_key, detector.pred_score_key) == ("box", "label", "label_scores")
    assert detector.box_selector.nms_thresh == 0.22 and detector.box_selector.score_thresh == 0.02
    assert tuple(detector.inferer.roi_size) == (32, 32, 32)
