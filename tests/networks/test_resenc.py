"""ResEncUNet: the ResEnc-L layout, 2D/3D shapes, the S3D encoder, names across the S3D option, the config preset."""

import inspect

import pytest
import torch
from ignite.engine import Events
from monai.bundle import ConfigParser
from monai.engines import PrepareBatchExtraInput, SupervisedTrainer
from torch import nn

from monai_genesis.engines import MaskedPrepareBatch
from monai_genesis.losses import MaskedMSELoss
from monai_genesis.networks import RESENC_PRESETS, MaskedInstanceNorm, ResEncUNet
from monai_genesis.networks.resenc import mask_block_grid
from monai_genesis.transforms import RandBlockMask, RandBlockMaskd

# a small 3D network: 4 stages, total stride 8, so 32³ inputs reach 4³ at the bottom
SMALL = {"features": [4, 8, 16, 16], "blocks_per_stage": [1, 2, 2, 2], "strides": [1, 2, 2, 2]}


def _convs(module):
    return [m for m in module.modules() if isinstance(m, nn.Conv3d)]


def test_resenc_l_layout_is_part_a3():
    net = ResEncUNet()
    enc = net.encoder
    features, blocks, strides = [32, 64, 128, 256, 320, 320], [1, 3, 4, 6, 6, 6], [1, 2, 2, 2, 2, 2]
    stem = enc.stem.conv.conv
    assert (stem.in_channels, stem.out_channels, stem.kernel_size, stem.stride) == (1, 32, (3, 3, 3), (1, 1, 1))
    assert [len(stage) for stage in enc.stages] == blocks
    width = 32
    for s, stage in enumerate(enc.stages):
        for b, block in enumerate(stage):
            c1, c2 = block.conv1.conv.conv, block.conv2.conv.conv
            stride = strides[s] if b == 0 else 1
            assert c1.stride == (stride,) * 3 and c2.stride == (1, 1, 1)
            assert c1.kernel_size == c2.kernel_size == (3, 3, 3)
            assert (c1.in_channels, c1.out_channels, c2.out_channels) == (width, features[s], features[s])
            assert c1.bias is not None and isinstance(block.act, nn.LeakyReLU) and block.act.negative_slope == 0.01
            # ResNet-D skip: average pooling for a stride, a 1x1 conv + norm (no bias) for a change of width
            assert (block.pool is not None) == (stride != 1)
            if stride != 1:
                assert isinstance(block.pool, nn.AvgPool3d) and block.pool.kernel_size == (2, 2, 2)
            assert (block.projection is not None) == (width != features[s])
            if block.projection is not None:
                proj = block.projection.conv.conv
                assert proj.kernel_size == (1, 1, 1) and proj.bias is None
            width = features[s]
    norms = [m for m in enc.modules() if isinstance(m, MaskedInstanceNorm)]
    assert len(norms) == 1 + 2 * sum(blocks) + 4  # stem, two per block, four projections
    assert all(n.weight.requires_grad and n.bias.requires_grad for n in norms)
    # decoder: one stage per encoder stage but the first, transposed conv k=s=2, one conv block each
    assert len(net.decoder) == 5
    for stage, (cin, cout) in zip(net.decoder, [(320, 320), (320, 256), (256, 128), (128, 64), (64, 32)]):
        up = stage.upsample.conv
        assert isinstance(up, nn.ConvTranspose3d) and up.kernel_size == up.stride == (2, 2, 2)
        assert (up.in_channels, up.out_channels) == (cin, cout)
        assert len(stage.convs) == 1
        conv = stage.convs[0].conv.conv
        assert (conv.in_channels, conv.out_channels, conv.kernel_size) == (2 * cout, cout, (3, 3, 3))
    assert net.out.conv.kernel_size == (1, 1, 1) and net.out.conv.in_channels == 32
    assert net.downsampling == (32, 32, 32) and net.densify is None
    assert all(c.padding_mode == "zeros" for c in _convs(net))


def test_presets():
    assert RESENC_PRESETS["M"] == RESENC_PRESETS["L"]
    net = ResEncUNet.preset("cpu", in_channels=2, out_channels=3)
    assert [stage[-1].conv2.conv.conv.out_channels for stage in net.encoder.stages] == [8, 16, 32, 64, 64, 64]
    assert net.encoder.stem.conv.conv.in_channels == 2 and net.out.conv.out_channels == 3
    defaults = inspect.signature(ResEncUNet).parameters
    assert all(defaults[k].default == v for k, v in RESENC_PRESETS["L"].items())  # the defaults are ResEnc-L
    with pytest.raises(ValueError, match="unknown ResEnc preset 'XL'"):
        ResEncUNet.preset("XL")


@pytest.mark.slow
@torch.no_grad()
def test_forward_shapes_3d_and_2d():
    net3 = ResEncUNet.preset("cpu", out_channels=2).eval()
    assert net3(torch.randn(1, 1, 64, 64, 64)).shape == (1, 2, 64, 64, 64)
    net2 = ResEncUNet.preset("cpu", spatial_dims=2, in_channels=3).eval()
    assert net2(torch.randn(2, 3, 64, 96)).shape == (2, 1, 64, 96)
    assert isinstance(net2.encoder.stem.conv.conv, nn.Conv2d)
    sig = ResEncUNet(spatial_dims=2, **SMALL, out_activation="sigmoid").eval()
    out = sig(torch.randn(1, 1, 16, 16) * 10)
    assert out.min() >= 0 and out.max() <= 1


def test_encoder_returns_bottleneck_and_skips():
    net = ResEncUNet(spatial_dims=2, **SMALL).eval()
    with torch.no_grad():
        bottleneck, skips = net.encoder(torch.randn(2, 1, 32, 32))
    assert bottleneck.shape == (2, 16, 4, 4)
    assert [tuple(s.shape) for s in skips] == [(2, 4, 32, 32), (2, 8, 16, 16), (2, 16, 8, 8)]


def test_bad_sizes_and_arguments_raise():
    net = ResEncUNet(spatial_dims=2, **SMALL)
    with pytest.raises(ValueError, match=r"divisible by \[8, 8\].*DivisiblePad\(k=\[8, 8\]\)"):
        net(torch.randn(1, 1, 32, 20))
    with pytest.raises(ValueError, match="got a mask but sparse=False"):
        net(torch.randn(1, 1, 32, 32), torch.zeros(1, 1, 32, 32))
    with pytest.raises(ValueError, match=r"mask must have shape \(B, 1, \*spatial\)"):
        ResEncUNet(spatial_dims=2, **SMALL, sparse=True)(torch.randn(1, 1, 32, 32), torch.zeros(1, 2, 32, 32))
    with pytest.raises(ValueError, match="blocks_per_stage needs one positive count per stage"):
        ResEncUNet(features=[4, 8], blocks_per_stage=[1])
    with pytest.raises(ValueError, match="strides needs one entry per stage"):
        ResEncUNet(features=[4, 8], blocks_per_stage=[1, 1], strides=[1, 2, 2])
    with pytest.raises(ValueError, match="spatial_dims must be 2 or 3"):
        ResEncUNet(spatial_dims=1)


def test_parameter_names_identical_across_the_s3d_option():
    dense, sparse = ResEncUNet.preset("cpu"), ResEncUNet.preset("cpu", sparse=True)
    dense_shapes = {k: v.shape for k, v in dense.state_dict().items()}
    sparse_shapes = {k: v.shape for k, v in sparse.state_dict().items()}
    extra = set(sparse_shapes) - set(dense_shapes)
    assert set(dense_shapes) <= set(sparse_shapes)
    assert all(sparse_shapes[k] == s for k, s in dense_shapes.items())
    assert extra and all(k.startswith("densify.") for k in extra)
    # per stage a mask token, and a projection's weight and bias but on the full-resolution stage; no norm parameters
    assert len(extra) == 6 + 5 * 2 and sparse_shapes["densify.5.mask_token"] == (1, 64, 1, 1, 1)
    assert sorted(k for k in extra if k.startswith("densify.0.")) == ["densify.0.mask_token"]
    assert sparse_shapes["densify.1.proj.conv.weight"] == (16, 16, 3, 3, 3)


def test_masked_instance_norm_uses_visible_voxels_only():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 6, 6, generator=g) * 3 + 1
    keep = (torch.rand(2, 1, 6, 6, generator=g) > 0.5).float()
    norm = MaskedInstanceNorm(3)
    with torch.no_grad():
        norm.weight.copy_(torch.tensor([1.0, 2.0, 0.5]))
        norm.bias.copy_(torch.tensor([0.0, -1.0, 3.0]))
    out = norm(x, keep)
    for b in range(2):
        sel = keep[b, 0].bool()
        for c in range(3):
            v = x[b, c][sel]
            expected = (v - v.mean()) / torch.sqrt(v.var(unbiased=False) + 1e-5) * norm.weight[c] + norm.bias[c]
            assert torch.allclose(out[b, c][sel], expected, atol=1e-5)
    changed = torch.where(keep.bool(), x, x + 50.0)
    assert torch.equal(norm(changed, keep) * keep, out * keep)
    ref = nn.InstanceNorm2d(3, affine=True)
    ref.load_state_dict(norm.state_dict())
    assert torch.allclose(norm(x), ref(x), atol=1e-6)
    assert torch.allclose(norm(x, torch.ones(2, 1, 6, 6)), ref(x), atol=1e-5)


@pytest.mark.slow
def test_s3d_encoder_ignores_masked_voxels():
    torch.manual_seed(0)
    sparse = ResEncUNet(**SMALL, sparse=True).eval()
    dense = ResEncUNet(**SMALL).eval()
    dense.load_state_dict(sparse.state_dict(), strict=False)
    masker = RandBlockMask(block_size=4, mask_ratio=0.75)
    masker.set_random_state(0)
    x1 = torch.randn(2, 1, 32, 32, 32)
    _, mask = masker.mask_batch(x1)
    x2 = torch.where(mask.bool(), torch.randn_like(x1) * 5, x1)  # other values at the masked voxels only
    keeps = sparse.encoder.visible_masks(mask)[1:]
    with torch.no_grad():
        b1, s1 = sparse.encoder(x1, mask)
        b2, s2 = sparse.encoder(x2, mask)
        d1, ds1 = dense.encoder(x1)
        d2, ds2 = dense.encoder(x2)
        m1, m2 = sparse(x1, mask), sparse(x2, mask)
    for f1, f2, keep in zip([*s1, b1], [*s2, b2], keeps):
        assert torch.equal(f1 * keep, f2 * keep)
        assert torch.equal(f1 * (1 - keep), torch.zeros_like(f1))  # masked positions stay empty
    assert torch.equal(m1, m2)
    # the dense encoder on the same inputs does see the masked voxels
    assert not torch.allclose(ds1[0] * keeps[0], ds2[0] * keeps[0])
    # down to the block grid (1/4) a position is visible when its block is; at 1/8, coarser than the blocks of 4,
    # every position is visible, as in nnssl
    assert torch.equal(keeps[-2], 1 - mask[:, :, ::4, ::4, ::4]) and 0 < keeps[-2].mean() < 1
    assert torch.equal(keeps[-1], torch.ones_like(keeps[-1]))


@pytest.mark.slow
def test_s3d_statistics_differ_from_dense_on_zero_filled_input_and_match_without_mask():
    torch.manual_seed(1)
    sparse = ResEncUNet(spatial_dims=2, **SMALL, sparse=True).eval()
    x = torch.randn(2, 1, 32, 32)
    mask = torch.zeros(2, 1, 32, 32)
    mask[:, :, :16] = 1
    with torch.no_grad():
        visible = sparse.encoder(x, mask)[1][0]
        zero_filled = sparse.encoder(x * (1 - mask))[1][0]
        all_visible = sparse.encoder(x, torch.zeros_like(mask))
        no_mask = sparse.encoder(x)
    assert not torch.allclose(visible[:, :, 16:], zero_filled[:, :, 16:], atol=1e-3)
    assert torch.allclose(all_visible[0], no_mask[0], atol=1e-4)


def test_pretrained_encoder_loads_by_name_into_a_dense_twin():
    sparse = ResEncUNet(spatial_dims=2, **SMALL, sparse=True)
    twin = ResEncUNet(spatial_dims=2, **SMALL, out_channels=3)
    encoder = {k: v for k, v in sparse.state_dict().items() if k.startswith("encoder.")}
    result = twin.load_state_dict(encoder, strict=False)
    assert not result.unexpected_keys
    assert all(not k.startswith("encoder.") for k in result.missing_keys)
    x = torch.randn(1, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(twin.encoder(x)[0], sparse.encoder(x)[0])


@pytest.mark.slow
@pytest.mark.parametrize("sparse", [False, True])
def test_trains_in_supervised_trainer(sparse):
    torch.manual_seed(0)
    net = ResEncUNet(spatial_dims=2, **SMALL, sparse=sparse)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    prepare = MaskedPrepareBatch(RandBlockMask(block_size=8), mask_kwarg="mask" if sparse else None, seed=0)
    data = [{"image": torch.randn(2, 1, 32, 32)} for _ in range(2)]
    losses = []
    trainer = SupervisedTrainer(
        device=torch.device("cpu"),
        max_epochs=1,
        train_data_loader=data,
        network=net,
        optimizer=torch.optim.SGD(net.parameters(), lr=1e-2, momentum=0.99, nesterov=True),
        loss_function=MaskedMSELoss(),
        prepare_batch=prepare,
        decollate=False,
    )
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: losses.append(e.state.output["loss"].item()))
    got_mask = []
    net.register_forward_pre_hook(lambda m, args, kwargs: got_mask.append("mask" in kwargs), with_kwargs=True)
    trainer.run()
    assert got_mask == [sparse, sparse]  # the S3D network gets the mask as a keyword argument
    assert len(losses) == 2 and all(0 < l < 100 for l in losses)
    assert any(not torch.equal(v, before[k]) for k, v in net.state_dict().items())


def test_config_preset_merged_after_the_pretrain_bundle(repo_root):
    parser = ConfigParser()
    parser.read_config(
        [
            str(repo_root / "bundles" / "genesis_pretrain" / "configs" / "train.json"),
            str(repo_root / "configs" / "networks" / "resenc_l.json"),
        ]
    )
    assert parser["resenc_features"] == [32, 64, 128, 256, 320, 320]
    parser["resenc_features"] = [4, 8, 8, 16, 16, 16]
    parser["out_channels"] = 2
    net = parser.get_parsed_content("network_def")
    assert isinstance(net, ResEncUNet) and not net.sparse
    assert [stage[-1].conv2.conv.conv.out_channels for stage in net.encoder.stages] == [4, 8, 8, 16, 16, 16]
    assert [len(stage) for stage in net.encoder.stages] == [1, 3, 4, 6, 6, 6]
    assert net.out.conv.out_channels == 2 and isinstance(net.out_act, nn.Sigmoid)  # the bundle's out_activation
    parser["resenc_sparse"] = True
    assert parser.get_parsed_content("network_def", lazy=False).sparse


def test_dictionary_path_reaches_the_s3d_network_with_prepare_batch_extra_input():
    torch.manual_seed(0)
    masker = RandBlockMaskd(block_size=8, mask_in_target=True)
    masker.set_random_state(0)
    samples = [masker({"image": torch.randn(1, 32, 32)}) for _ in range(2)]
    batch = {k: torch.stack([s[k] for s in samples]) for k in ("image", "label", "mask")}
    masked, target, args, kwargs = PrepareBatchExtraInput(extra_keys={"mask": "mask"})(batch, torch.device("cpu"))
    assert target.shape == (2, 2, 32, 32) and torch.equal(kwargs["mask"], target[:, 1:])
    net = ResEncUNet(spatial_dims=2, **SMALL, sparse=True)
    loss = MaskedMSELoss()(net(masked, *args, **kwargs), target)
    loss.backward()
    assert 0 < loss.item() < 100


def test_block_grid_is_read_from_the_mask_and_decides_the_fully_visible_stages():
    masker = RandBlockMask(block_size=(4, 8), mask_ratio=0.5)
    masker.set_random_state(3)
    _, mask = masker.mask_batch(torch.randn(2, 1, 32, 32))
    assert mask_block_grid(mask) == (4, 8)
    assert mask_block_grid(torch.zeros(1, 1, 32, 16)) == (32, 16)  # nothing masked: one block
    net = ResEncUNet(spatial_dims=2, **SMALL, sparse=True)
    # steps 1, 2, 4, 8 against blocks (4, 8): only a stage coarser on both axes would be fully visible
    keeps = net.encoder.visible_masks(mask, (4, 8))
    assert [float(k.min()) for k in keeps[1:]] == [0.0, 0.0, 0.0, 0.0]
    # at step 8 a position covers two blocks of the first axis: visible when either is
    assert torch.equal(keeps[-1], torch.nn.functional.max_pool2d(1 - mask, 8))
    keeps = net.encoder.visible_masks(mask, 2)
    assert [bool((k == 1).all()) for k in keeps[1:]] == [False, False, True, True]
    assert ResEncUNet(spatial_dims=2, **SMALL, sparse=True, mask_block_size=2).mask_block_size == (2, 2)


def _reference_densify(features, keep, token, eps=1e-5):
    """nnssl's order written out voxel by voxel: statistics of the visible values, normalise them, token elsewhere."""
    out = torch.empty_like(features)
    for b in range(features.shape[0]):
        visible = keep[b, 0].bool()
        for c in range(features.shape[1]):
            values = features[b, c][visible]
            mean, var = values.mean(), ((values - values.mean()) ** 2).mean()
            out[b, c] = torch.where(visible, (features[b, c] - mean) / torch.sqrt(var + eps), token[0, c])
    return out


@torch.no_grad()
def test_densify_normalises_visible_voxels_then_fills_the_token_then_projects():
    torch.manual_seed(0)
    net = ResEncUNet(spatial_dims=2, **SMALL, sparse=True)
    features = torch.randn(2, 8, 16, 16) * 3 + 2
    keep = (torch.rand(2, 1, 16, 16) > 0.6).float()
    densify = net.densify[1]
    expected = _reference_densify(features, keep, densify.mask_token)
    torch.testing.assert_close(densify(features, keep), densify.proj(expected), rtol=1e-5, atol=1e-5)
    # the masked voxels' values do not matter, and the filled positions hold the token before the projection
    noisy = torch.where(keep.bool(), features, torch.randn_like(features) * 100)
    torch.testing.assert_close(densify(noisy, keep), densify(features, keep))
    first = net.densify[0]
    assert isinstance(first.proj, nn.Identity)  # no projection at full resolution
    filled = first(features[:, :4], keep)
    torch.testing.assert_close(filled, _reference_densify(features[:, :4], keep, first.mask_token))
    hidden = ~keep[0, 0].bool()
    assert torch.equal(filled[0][:, hidden], first.mask_token[0, :, 0].expand(4, int(hidden.sum())))
    # without a mask: a plain instance norm, no token
    torch.testing.assert_close(first(features[:, :4], None), nn.InstanceNorm2d(4)(features[:, :4]))
