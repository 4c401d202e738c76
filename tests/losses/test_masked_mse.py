"""The masked MSE: its value by hand, no gradient at visible voxels, clear errors, no division by zero."""

import pytest
import torch

from monai_genesis.losses import MaskedMSELoss


def _pair():
    g = torch.Generator().manual_seed(0)
    pred = torch.randn(2, 2, 4, 4, generator=g)
    clean = torch.randn(2, 2, 4, 4, generator=g)
    mask = torch.zeros(2, 1, 4, 4)
    mask[0, 0, :2, :2] = 1  # 4 masked voxels in the first sample
    mask[1, 0, 3, :] = 1  # 4 in the second
    return pred, clean, mask


def test_value_equals_hand_computation():
    pred, clean, mask = _pair()
    loss = MaskedMSELoss()(pred, torch.cat([clean, mask], 1))
    total = 0.0
    for b in range(2):
        for c in range(2):
            for i in range(4):
                for j in range(4):
                    if mask[b, 0, i, j] == 1:
                        total += float(pred[b, c, i, j] - clean[b, c, i, j]) ** 2
    assert loss.item() == pytest.approx(total / (8 * 2), rel=1e-6)


def test_single_masked_voxel_value():
    pred = torch.zeros(1, 1, 2, 2)
    target = torch.zeros(1, 2, 2, 2)
    target[0, 0] = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    target[0, 1, 1, 0] = 1  # only the voxel with clean value 3 is masked
    assert MaskedMSELoss()(pred, target).item() == 9.0


def test_no_gradient_at_visible_voxels():
    pred, clean, mask = _pair()
    pred.requires_grad_(True)
    MaskedMSELoss()(pred, torch.cat([clean, mask], 1)).backward()
    visible = (mask == 0).expand_as(pred)
    assert torch.equal(pred.grad[visible], torch.zeros(int(visible.sum())))
    expected = 2 * (pred - clean).detach() / 16
    assert torch.allclose(pred.grad[~visible], expected[~visible])


def test_visible_voxels_do_not_change_the_value():
    pred, clean, mask = _pair()
    other = torch.where(mask.bool(), pred, pred + 100.0)
    loss = MaskedMSELoss()
    assert loss(other, torch.cat([clean, mask], 1)) == loss(pred, torch.cat([clean, mask], 1))


def test_all_visible_gives_zero_not_nan():
    pred = torch.randn(2, 1, 4, 4, 4, requires_grad=True)
    target = torch.cat([torch.randn(2, 1, 4, 4, 4), torch.zeros(2, 1, 4, 4, 4)], 1)
    loss = MaskedMSELoss()(pred, target)
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(pred.grad, torch.zeros_like(pred))


@pytest.mark.parametrize("target_shape", [(2, 1, 4, 4), (2, 3, 4, 4)])
def test_wrong_channel_count_raises(target_shape):
    with pytest.raises(ValueError, match=r"one channel more than the prediction.*\(2, 1, 4, 4\)"):
        MaskedMSELoss()(torch.zeros(2, 1, 4, 4), torch.zeros(target_shape))


def test_wrong_spatial_size_raises():
    with pytest.raises(ValueError, match="differ in batch or spatial size"):
        MaskedMSELoss()(torch.zeros(2, 1, 4, 4), torch.zeros(2, 2, 4, 8))
