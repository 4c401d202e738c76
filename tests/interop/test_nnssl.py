"""nnssl / nnU-Net checkpoints: names, the axis order, S3D's stale copies, the adaptation plan, refusals, export.

The tests against the reference network need ``dynamic-network-architectures`` (the ``test`` extra; ``.ci/run``
installs it without its dependencies) and skip without it; the name table is tested without it.
"""

import json
import logging

import pytest
import torch

from monai_genesis.errors import GenesisInputError
from monai_genesis.interop import (
    export_nnssl,
    is_nnssl_checkpoint,
    load_nnssl_network,
    nnssl_to_resenc_key,
    read_nnssl_checkpoint,
    resenc_architecture,
    resenc_to_nnssl_key,
    reverse_spatial_axes,
    to_nnssl_state_dict,
)
from monai_genesis.networks import ResEncUNet
from monai_genesis.weights import load_pretrained
from tests.interop.reference import (
    FEATURES,
    KERNELS_ZYX,
    STRIDES_ZYX,
    adaptation_plan,
    reference_unet,
    release_checkpoint,
    s3d_weights,
)

STRIDES_XYZ = [s[::-1] for s in STRIDES_ZYX]
KERNELS_XYZ = [k[::-1] for k in KERNELS_ZYX]


def ours(**kwargs):
    return ResEncUNet(**{"features": FEATURES, "strides": STRIDES_XYZ, "kernel_size": KERNELS_XYZ, **kwargs}).eval()


def _encoder(state_dict):
    return sorted(k for k in state_dict if k.startswith("encoder."))


@pytest.fixture(scope="module")
def reference():
    pytest.importorskip("dynamic_network_architectures.architectures.unet")
    return reference_unet()


def test_name_table_both_ways_without_the_reference_package():
    net = ours()
    sd = net.state_dict()
    written, arch = to_nnssl_state_dict(sd)
    # ResEnc-L's layout: 956 keys for 264 distinct tensors (256 of ours and the four unused deep-supervision heads)
    assert len(written) == 956 and len(sd) == 256 and len(_encoder(sd)) == 224
    assert sum(k.startswith("decoder.encoder.") for k in written) == 2 * 224
    assert arch["strides"] == STRIDES_ZYX and arch["kernel_size"] == KERNELS_ZYX and arch["features"] == FEATURES
    for key in sd:
        refs = resenc_to_nnssl_key(key, strided_stages=[1, 2, 3, 5], out_layer=4)
        assert refs and all(nnssl_to_resenc_key(r, out_layer=4) == key for r in refs if not r.startswith("decoder.enc"))
    assert resenc_to_nnssl_key("encoder.stages.1.0.projection.norm.weight", strided_stages=[1]) == [
        "encoder.stages.1.blocks.0.skip.1.norm.weight",
        "encoder.stages.1.blocks.0.skip.1.all_modules.1.weight",
        "decoder.encoder.stages.1.blocks.0.skip.1.norm.weight",
        "decoder.encoder.stages.1.blocks.0.skip.1.all_modules.1.weight",
    ]
    # a width change without a stride has no pooling in front: skip.0
    assert resenc_to_nnssl_key("encoder.stages.1.0.projection.conv.conv.weight")[0] == "encoder.stages.1.blocks.0.skip.0.conv.weight"
    assert nnssl_to_resenc_key("encoder.stem.convs.0.all_modules.0.bias") == "encoder.stem.conv.conv.bias"
    assert nnssl_to_resenc_key("decoder.transpconvs.0.weight") == "decoder.0.upsample.conv.weight"
    assert nnssl_to_resenc_key("decoder.seg_layers.4.weight", out_layer=4) == "out.conv.weight"
    assert nnssl_to_resenc_key("decoder.seg_layers.2.weight", out_layer=4) is None
    assert resenc_to_nnssl_key("densify.1.mask_token") == []
    assert resenc_architecture(sd)["blocks_per_stage"] == [1, 3, 4, 6, 6, 6]


def test_kernels_reverse_their_spatial_axes():
    kernel = torch.arange(2 * 3 * 1 * 3 * 5.0).reshape(2, 3, 1, 3, 5)
    flipped = reverse_spatial_axes(kernel)
    assert flipped.shape == (2, 3, 5, 3, 1) and flipped[1, 2, 4, 1, 0] == kernel[1, 2, 0, 1, 4]
    assert torch.equal(reverse_spatial_axes(flipped), kernel)
    bias = torch.randn(4)
    assert reverse_spatial_axes(bias) is bias


def test_reference_weights_give_the_reference_outputs(reference, tmp_path):
    """Import: nnssl's file -> ResEncUNet -> the same outputs; axes kept, then reversed with the input."""
    path = tmp_path / "checkpoint_final.pth"
    torch.save(release_checkpoint(reference.state_dict()), path)
    x = torch.randn(1, 1, 16, 16, 24)  # nnssl's (z, y, x) arrays
    with torch.no_grad():
        want = reference(x)
        same = ours(strides=STRIDES_ZYX, kernel_size=KERNELS_ZYX)
        ckpt = read_nnssl_checkpoint(path, reverse_axes=False)
        same.load_state_dict(ckpt.state_dict, strict=True)
        assert (same(x) - want).abs().max().item() <= 1e-6
        # MONAI's (x, y, z) arrays: kernels and strides reversed on import give the same numbers, transposed
        xyz = load_nnssl_network(path).double()
        got = xyz(x.double().permute(0, 1, 4, 3, 2)).permute(0, 1, 4, 3, 2)
        assert (got - reference.double()(x.double())).abs().max().item() <= 1e-6
    reference.float()
    assert ckpt.features == FEATURES and ckpt.strides == STRIDES_ZYX and not ckpt.stale
    assert xyz.encoder.strides[3] == (2, 2, 1) and xyz.encoder.strides[5] == (1, 1, 2)
    assert "encoder.stages.4.blocks.0.skip.0.all_modules.0.weight" in reference.state_dict()
    assert tuple(xyz.state_dict()["encoder.stages.3.0.conv1.conv.conv.weight"].shape[2:]) == (3, 3, 1)
    assert sum(why.startswith("the encoder again") for why in ckpt.skipped.values()) == 2 * 224
    assert sum(why.startswith("a deep-supervision head") for why in ckpt.skipped.values()) == 8


def test_load_pretrained_takes_stem_and_encoder_and_reports_the_plan(reference, tmp_path, caplog):
    path = tmp_path / "checkpoint_final.pth"
    torch.save(release_checkpoint(reference.state_dict(), adaptation_plan(spacing=(1.0, 0.8, 0.5))), path)
    net = ours(out_channels=3)
    decoder = {k: v.clone() for k, v in net.state_dict().items() if not k.startswith("encoder.")}
    with caplog.at_level(logging.INFO, logger="monai_genesis"):
        report = load_pretrained(net, path, intensity="ct")
    assert sorted(report.loaded) == _encoder(net.state_dict()) and len(report.loaded) == 224
    assert all(torch.equal(net.state_dict()[k], v) for k, v in decoder.items())  # the decoder starts fresh
    setting = report.pretraining
    assert setting.spacing == [0.5, 0.8, 1.0] and setting.patch_size == [160, 160, 160]  # (x, y, z)
    assert setting.normalization == ["ZScoreNormalization"] and setting.in_channels == 1 and setting.zscore
    assert "spacing [0.5, 0.8, 1.0] mm" in str(report)
    assert "--intensity zscore, or merge configs/finetune_mae.json" in caplog.text
    assert "resample the images to [0.5, 0.8, 1.0] mm" in caplog.text
    quiet = setting.advice(intensity="zscore", spacing=(0.5, 0.8, 1.0))
    assert quiet == []


def test_multi_channel_stem_is_repeated_and_divided(reference):
    net = ours(in_channels=3)
    report = load_pretrained(net, release_checkpoint(reference.state_dict()), repeat_input_channels=True)
    stem = reverse_spatial_axes(reference.state_dict()["encoder.stem.convs.0.all_modules.0.weight"])
    assert report.repeated_input_channels == ["encoder.stem.conv.conv.weight"]
    torch.testing.assert_close(net.state_dict()["encoder.stem.conv.conv.weight"], stem.repeat(1, 3, 1, 1, 1) / 3)


def test_s3d_checkpoint_reads_the_trained_copy_and_warns(reference, tmp_path, caplog):
    weights = s3d_weights(reference)
    path = tmp_path / "s3d.pth"
    torch.save({**release_checkpoint(weights), "optimizer_state": {"state": {}, "param_groups": []},
                "current_epoch": 1000, "grad_scaler_state": None, "_best_ema": None}, path)
    assert is_nnssl_checkpoint(torch.load(path, weights_only=True))
    net = ours()
    with caplog.at_level(logging.WARNING, logger="monai_genesis"):
        report = load_pretrained(net, path)
    assert len(report.loaded) == 224 and len(report.stale) == 256 - 10 - 2  # all but the 5 transposed convs and the head
    assert "encoder.stem.convs.0.conv.weight" in report.stale
    assert "differ from their all_modules copy" in caplog.text and "encoder.stem.convs.0.conv.weight" in caplog.text
    trained = reverse_spatial_axes(weights["encoder.stages.2.blocks.1.conv2.all_modules.0.weight"])
    assert torch.equal(net.state_dict()["encoder.stages.2.1.conv2.conv.conv.weight"], trained)


def test_bare_reference_state_dict_is_recognised(reference):
    net = ours(strides=STRIDES_ZYX, kernel_size=KERNELS_ZYX)
    report = load_pretrained(net, reference.state_dict(), reverse_axes=False)
    assert len(report.loaded) == 224 and report.pretraining is None
    # read in the other axis order, the flat kernels of the fourth stage no longer fit: refused, saying why
    with pytest.raises(GenesisInputError, match=r"\(24, 16, 3, 3, 1\) in the checkpoint, \(24, 16, 1, 3, 3\) in the "
                       r"network\. The widths agree, the kernels do not"):
        load_pretrained(net, reference.state_dict())


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda w: release_checkpoint({"eva.blocks.0.attn.qkv.weight": torch.zeros(3, 3),
                                       "down_projection.proj.weight": torch.zeros(8, 1, 8, 8, 8)},
                                      adaptation_plan("PrimusM")),
         r"bad\.pth: a Primus \(transformer\) checkpoint \(PrimusM\); only ResEnc checkpoints"),
        (lambda w: release_checkpoint(w, adaptation_plan("PlainConvUNet")),
         r"bad\.pth: its adaptation plan's architecture is PlainConvUNet; only \['ResEncL', 'ResidualEncoderUNet'\]"),
        (lambda w: {"network_weights": {"decoder.seg_layers.0.weight": torch.zeros(1)}},
         r"bad\.pth: no ResEnc stem \(encoder\.stem\.convs\.0\.\*\).*not a ResidualEncoderUNet checkpoint"),
        (lambda w: {"spark_weights": {}, "nnssl_adaptation_plan": adaptation_plan(), "trainer_name": "SparkTrainer"},
         r"bad\.pth: no network_weights found \(top level: \['spark_weights', 'nnssl_adaptation_plan', "
         r"'trainer_name'\]\); an nnssl checkpoint holds its network's state dict there"),
    ],
)
def test_what_cannot_load_is_refused_naming_file_and_reason(reference, tmp_path, make, match):
    path = tmp_path / "bad.pth"
    torch.save(make(reference.state_dict()), path)
    with pytest.raises(GenesisInputError, match=match):
        load_pretrained(ours(), path)


def test_another_width_is_refused_with_the_preset_to_build(reference, tmp_path):
    path = tmp_path / "wide.pth"
    torch.save(release_checkpoint(reference.state_dict()), path)
    narrow = ResEncUNet(features=[2, 4, 8, 12, 16, 16], strides=STRIDES_XYZ, kernel_size=KERNELS_XYZ)
    with pytest.raises(GenesisInputError) as err:
        load_pretrained(narrow, path)
    message = str(err.value)
    assert message.startswith(f"{path}: a ResEnc checkpoint of stage widths [4, 8, 16, 24, 32, 32]")
    assert "widths [2, 4, 8, 12, 16, 16]" in message
    assert message.endswith("configs/networks/resenc_l.json with --resenc_features [4, 8, 16, 24, 32, 32].")


def test_export_loads_strictly_into_the_reference_with_equal_outputs(tmp_path):
    dna = pytest.importorskip("dynamic_network_architectures.architectures.unet")
    torch.manual_seed(3)
    net = ours(sparse=True)  # an S3D model: its densify steps are left out
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    torch.save(net.state_dict(), tmp_path / "model.pt")
    path = export_nnssl(tmp_path / "model.pt", tmp_path / "out", spacing=(1.0, 1.0, 1.0), patch_size=(64, 64, 32))
    ckpt = torch.load(path, weights_only=True)
    assert sorted(ckpt) == ["init_args", "network_weights", "nnssl_adaptation_plan", "trainer_name"]
    plan = ckpt["nnssl_adaptation_plan"]
    kwargs = plan["architecture_plans"]["arch_kwargs"]
    assert kwargs["strides"] == STRIDES_ZYX and kwargs["kernel_sizes"] == KERNELS_ZYX
    assert plan["pretrain_plan"]["configurations"]["onemmiso"]["patch_size"] == [32, 64, 64]
    assert plan["keys_to_in_proj"] == ["encoder.stem.convs.0.conv", "encoder.stem.convs.0.all_modules.0"]
    assert json.loads((tmp_path / "out" / "adaptation_plan.json").read_text()) == {**plan, "trainer_name": "monai_genesis"}
    ref = reference_unet(strides=kwargs["strides"], kernels=kwargs["kernel_sizes"])
    ref.load_state_dict(ckpt["network_weights"], strict=True)
    assert isinstance(ref, dna.ResidualEncoderUNet)
    dense = ours()  # the network nnssl's file describes: the S3D model without its densify steps
    dense.load_state_dict(net.state_dict(), strict=False)
    x = torch.randn(1, 1, 24, 16, 16, dtype=torch.float64)
    with torch.no_grad():
        # in float64: the transposed input changes only the order of the sums, whose float32 rounding is ~1e-6
        want = dense.double()(x)
        got = ref.double()(x.permute(0, 1, 4, 3, 2)).permute(0, 1, 4, 3, 2)
        assert (got - want).abs().max().item() <= 1e-6
        # written in our axis order, the same network in float32 gives the same numbers to the last bit
        same, _ = to_nnssl_state_dict(dense.float().state_dict(), reverse_axes=False)
        ref = reference_unet(strides=STRIDES_XYZ, kernels=KERNELS_XYZ)
        ref.load_state_dict(same, strict=True)
        assert (ref(x.float()) - dense(x.float())).abs().max().item() <= 1e-6
    with pytest.raises(FileExistsError, match="--overwrite True"):
        export_nnssl(tmp_path / "model.pt", tmp_path / "out")
    # without a spacing (mae_pretrain's default pixdim: no resampling), nnssl's "noresample" style
    again = torch.load(export_nnssl(tmp_path / "model.pt", tmp_path / "out", overwrite=True), weights_only=True)
    (name, config), = again["nnssl_adaptation_plan"]["pretrain_plan"]["configurations"].items()
    assert name == "noresample" and config["spacing"] is None and config["patch_size"] == [160, 160, 160]


def test_export_refuses_a_model_that_is_not_resenc(tmp_path):
    from monai_genesis.networks import GenesisUNet

    torch.save(GenesisUNet(features=2).state_dict(), tmp_path / "genesis.pt")
    with pytest.raises(GenesisInputError, match=r"genesis\.pt: no ResEncUNet stem .*only ResEncUNet models"):
        export_nnssl(tmp_path / "genesis.pt", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_nnunet_loads_the_export_with_its_pretrained_weights_function(tmp_path, capsys):
    """nnU-Net 2.8.1's ``load_pretrained_weights`` (``nnUNetv2_train -pretrained_weights``): it requires every key of
    the network but the output heads, with its shape, and copies them; the output heads keep their own values."""
    nnunet = pytest.importorskip("nnunetv2.run.load_pretrained_weights")
    pytest.importorskip("dynamic_network_architectures.architectures.unet")
    torch.manual_seed(4)
    net = ours()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    torch.save(net.state_dict(), tmp_path / "model.pt")
    path = export_nnssl(tmp_path / "model.pt", tmp_path / "out")
    kwargs = torch.load(path, weights_only=True)["nnssl_adaptation_plan"]["architecture_plans"]["arch_kwargs"]
    target = reference_unet(strides=kwargs["strides"], kernels=kwargs["kernel_sizes"], num_classes=3, seed=9)
    heads = {k: v.clone() for k, v in target.state_dict().items() if ".seg_layers." in k}
    nnunet.load_pretrained_weights(target, str(path))
    written = torch.load(path, weights_only=True)["network_weights"]
    got = target.state_dict()
    copied = [k for k in got if ".seg_layers." not in k]
    assert len(copied) == 956 - 10 and all(torch.equal(got[k], written[k]) for k in copied)
    assert all(torch.equal(got[k], v) for k, v in heads.items())
    assert sum(k.startswith(("encoder.stem.", "encoder.stages.")) for k in copied) == 2 * 224
    assert "Loading pretrained weights from file" in capsys.readouterr().out


def test_nnunet_loads_the_export_with_its_own_pretrained_weights_loader(tmp_path):
    """nnU-Net's loader of nnssl checkpoints (what ``nnUNetv2_train_pretrained`` calls; in nnU-Net's repository,
    not in the 2.8.1 release on PyPI): every stem and encoder tensor arrives."""
    trainer = pytest.importorskip("nnunetv2.training.nnUNetTrainer.pretraining.pretrainedTrainer")
    net = ours()
    torch.save(net.state_dict(), tmp_path / "model.pt")
    path = export_nnssl(tmp_path / "model.pt", tmp_path / "out")
    kwargs = torch.load(path, weights_only=True)["nnssl_adaptation_plan"]["architecture_plans"]["arch_kwargs"]
    target = reference_unet(strides=kwargs["strides"], kernels=kwargs["kernel_sizes"], num_classes=3, seed=9)
    loaded, _ = trainer.PretrainedTrainer.load_pretrained_weights(
        target, str(path), 1, 1, [160, 160, 160], [160, 160, 160], "encoder.stages", "encoder.stem",
        ("encoder.stem.convs.0.conv", "encoder.stem.convs.0.all_modules.0"), None,
    )
    written = torch.load(path, weights_only=True)["network_weights"]
    encoder = [k for k in loaded.state_dict() if k.startswith(("encoder.stem.", "encoder.stages."))]
    assert len(encoder) > 224
    assert all(torch.equal(loaded.state_dict()[k], written[k]) for k in encoder)


def test_a_plan_that_transposed_the_arrays_is_undone_on_import(reference, tmp_path):
    """nnU-Net-style plans may transpose the (z, y, x) arrays before the network (``transpose_forward``)."""
    plan = adaptation_plan(spacing=(3.0, 0.5, 0.7))  # spacing and patch in the network's (transposed) order
    plan["pretrain_plan"]["transpose_forward"] = [2, 0, 1]  # the network sees (x, z, y)
    plan["pretrain_plan"]["transpose_backward"] = [1, 2, 0]
    path = tmp_path / "transposed.pth"
    torch.save(release_checkpoint(reference.state_dict(), plan), path)
    net = load_nnssl_network(path).double()
    x_zyx = torch.randn(1, 1, 24, 16, 16, dtype=torch.float64)
    with torch.no_grad():
        want = reference.double()(x_zyx.permute(0, 1, 4, 2, 3))  # network axes (x, z, y)
        got = net(x_zyx.permute(0, 1, 4, 3, 2))  # MONAI's (x, y, z)
    reference.float()
    assert (got - want.permute(0, 1, 2, 4, 3)).abs().max().item() <= 1e-6
    setting = read_nnssl_checkpoint(path).setting
    assert setting.spacing == [3.0, 0.7, 0.5]  # x, y, z


def test_classifier_takes_the_encoder_of_an_nnssl_checkpoint(reference):
    from monai_genesis.networks import ResEncClassifier

    classifier = ResEncClassifier(num_classes=2, features=FEATURES, strides=STRIDES_XYZ, kernel_size=KERNELS_XYZ)
    report = load_pretrained(classifier, release_checkpoint(reference.state_dict()))
    assert len(report.loaded) == 224 and sorted(report.loaded) == _encoder(classifier.state_dict())
