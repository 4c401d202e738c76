import pytest
import torch
from monai.data import MetaTensor

from monai_genesis.transforms import FeatureGridAffined
from monai_genesis.networks import EncoderFeatures, GenesisClassifier, GenesisUNet


def test_feature_grid_affine_overlays_the_input():
    affine = torch.tensor([[0.8, 0, 0, -100.0], [0, 0.8, 0, -90.0], [0, 0, 2.0, 30.0], [0, 0, 0, 1]])
    pred = MetaTensor(torch.zeros(4, 5, 6, 7), affine=affine)
    out = FeatureGridAffined("pred", factor=8)({"pred": pred})["pred"]
    # feature voxel j covers input voxels 8j..8j+7: its centre is input voxel 8j + 3.5
    for j in ([0, 0, 0], [1, 2, 3]):
        expected = affine.double() @ torch.tensor([8 * j[0] + 3.5, 8 * j[1] + 3.5, 8 * j[2] + 3.5, 1.0], dtype=torch.float64)
        torch.testing.assert_close(out.affine @ torch.tensor([*j, 1.0], dtype=torch.float64), expected)
    torch.testing.assert_close(pred.affine, affine.double())  # the input is not changed
    with pytest.raises(ValueError, match="no affine"):
        FeatureGridAffined("pred")({"pred": torch.zeros(1, 2, 2, 2)})


def test_encoder_features_are_the_bottleneck():
    net = GenesisUNet(features=2).eval()
    x = torch.rand(2, 1, 32, 32, 16)
    features = EncoderFeatures(net)(x)
    assert features.shape == (2, 32, 4, 4, 2)
    torch.testing.assert_close(features, net.encoder(x)[0])
    assert set(EncoderFeatures(GenesisClassifier(features=2)).state_dict()) == {
        f"net.{k}" for k in GenesisClassifier(features=2).state_dict()
    }
    with pytest.raises(ValueError, match="no Genesis `encoder`"):
        EncoderFeatures(torch.nn.Conv3d(1, 1, 1))
