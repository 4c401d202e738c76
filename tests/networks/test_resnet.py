"""The 3D ResNet-18 of CSPR: depth stride, parameter names, the U-Net around it and the network preset."""

import pytest
import torch
from monai.bundle import ConfigParser
from monai.networks.nets import resnet18

from monai_genesis.networks import ResNet18Classifier, ResNet18Encoder, ResNetUNet
from monai_genesis.weights import load_pretrained


@pytest.fixture(scope="module")
def pretraining_classifier():
    """The CSPR pretraining network: depth stride off, 10 classes, its weights moved away from their init."""
    torch.manual_seed(0)
    net = ResNet18Classifier(num_classes=10, depth_stride=False)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.01)
    return net


def shapes(net):
    return {k: tuple(v.shape) for k, v in net.state_dict().items()}


def test_depth_stride_changes_strides_only(pretraining_classifier):
    flat = pretraining_classifier.encoder
    deep = ResNet18Encoder(depth_stride=True)
    assert shapes(flat) == shapes(deep)
    assert list(flat.state_dict()) == list(deep.state_dict())
    assert len(flat.strided_modules()) == 8
    for a, b in zip(flat.strided_modules(), deep.strided_modules()):
        assert torch.nn.modules.utils._triple(a.stride) == (1, 2, 2)
        assert torch.nn.modules.utils._triple(b.stride) == (2, 2, 2)
    # the 7³ stem, 3³ blocks and 1³ shortcut convolutions of ResNet-18 (full 3D kernels)
    assert tuple(flat.conv1.weight.shape) == (64, 1, 7, 7, 7)
    assert tuple(flat.layer1[0].conv1.weight.shape) == (64, 64, 3, 3, 3)
    assert tuple(flat.layer2[0].downsample[0].weight.shape) == (128, 64, 1, 1, 1)
    assert isinstance(flat.bn1, torch.nn.BatchNorm3d)
    assert [len(s) for s in (flat.layer1, flat.layer2, flat.layer3, flat.layer4)] == [2, 2, 2, 2]


@pytest.mark.slow
def test_output_shapes_with_and_without_depth_stride(pretraining_classifier):
    flat = pretraining_classifier.eval()
    with torch.no_grad():
        photo = torch.rand(2, 1, 3, 32, 32)
        maps = flat.encoder.features(photo)
        assert [tuple(m.shape[1:]) for m in maps] == [
            (64, 3, 16, 16),
            (64, 3, 8, 8),
            (128, 3, 4, 4),
            (256, 3, 2, 2),
            (512, 3, 1, 1),
        ]
        assert flat(photo).shape == (2, 10)
        deep = ResNet18Classifier(num_classes=2, depth_stride=True).eval()
        maps = deep.encoder.features(torch.rand(1, 1, 48, 48, 48))
        assert [tuple(m.shape[2:]) for m in maps] == [(24,) * 3, (12,) * 3, (6,) * 3, (3,) * 3, (2,) * 3]
        assert deep(torch.rand(1, 1, 32, 32, 32)).shape == (1, 2)


@pytest.mark.slow
def test_monai_resnet18_weights_load_unchanged():
    monai_net = resnet18(
        n_input_channels=1, conv1_t_stride=2, shortcut_type="B", bias_downsample=False, feed_forward=False
    )
    encoder = ResNet18Encoder(depth_stride=False)
    assert shapes(monai_net) == shapes(encoder)
    encoder.load_state_dict(monai_net.state_dict(), strict=True)
    assert torch.equal(encoder.layer4[1].conv2.weight, monai_net.layer4[1].conv2.weight)


@pytest.mark.slow
def test_pretrained_classifier_loads_into_target_classifier_and_unet(pretraining_classifier, tmp_path):
    path = tmp_path / "model.pt"
    torch.save({"model": pretraining_classifier.state_dict()}, path)
    encoder_keys = [f"encoder.{k}" for k in pretraining_classifier.encoder.state_dict()]
    pretrained = pretraining_classifier.state_dict()

    target = ResNet18Classifier(num_classes=2, depth_stride=True)
    report = load_pretrained(target, path)
    assert report.loaded == encoder_keys
    assert sorted(report.skipped) == ["head.bias", "head.weight"]
    assert all(why.startswith("shape") for why in report.skipped.values())

    unet = ResNetUNet(out_channels=3)
    report = load_pretrained(unet, path)
    assert report.loaded == encoder_keys and len(encoder_keys) == 120
    assert report.skipped == {
        "head.weight": "no tensor of this name in the network",
        "head.bias": "no tensor of this name in the network",
    }
    assert report.missing and all(k.startswith(("decoder.", "out.")) for k in report.missing)
    for key in encoder_keys:
        assert torch.equal(unet.state_dict()[key], pretrained[key]), key
    unet.eval()
    with torch.no_grad():
        assert unet(torch.rand(1, 1, 32, 32, 32)).shape == (1, 3, 32, 32, 32)
    with pytest.raises(ValueError, match=r"\(32, 32, 40\) must be 3D with every side divisible by 32"):
        unet(torch.rand(1, 1, 32, 32, 40))


def test_invalid_arguments():
    with pytest.raises(ValueError, match="num_classes must be a positive"):
        ResNet18Classifier(num_classes=0)
    with pytest.raises(ValueError, match="decoder_channels must be five"):
        ResNetUNet(decoder_channels=(16, 8))


@pytest.mark.parametrize("num_classes, depth_stride", [(1, True), (4, False)])
def test_preset_after_classification_bundle_builds_the_resnet18(repo_root, num_classes, depth_stride):
    parser = ConfigParser()
    parser.read_config(
        [
            str(repo_root / "bundles" / "finetune_classification" / "configs" / "train.json"),
            str(repo_root / "configs" / "networks" / "resnet18.json"),
        ]
    )
    assert parser["resnet18_depth_stride"] is True
    parser.update({"num_classes": num_classes, "resnet18_depth_stride": depth_stride})
    net = parser.get_parsed_content("network_def")
    assert type(net) is ResNet18Classifier
    assert net.head.out_features == num_classes and net.encoder.conv1.in_channels == 1
    assert tuple(net.encoder.conv1.stride) == ((2, 2, 2) if depth_stride else (1, 2, 2))
    # the bundle freezes this prefix in frozen_encoder mode
    assert parser["encoder_prefix"] == "encoder."
    assert all(k.startswith(("encoder.", "head.")) for k in net.state_dict())
