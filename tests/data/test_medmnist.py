import numpy as np
import pytest

from monai_genesis.data import load_medmnist


def test_load_medmnist_shapes_labels_and_names(tmp_path):
    path = tmp_path / "x.npz"
    images = np.arange(3 * 4 * 4 * 4, dtype=np.uint8).reshape(3, 4, 4, 4)
    np.savez(path, train_images=images, train_labels=np.array([[1], [0], [1]]))
    items = load_medmnist(str(path), "train")
    assert [i["label"] for i in items] == [1, 0, 1]
    assert tuple(items[1]["image"].shape) == (1, 4, 4, 4)
    np.testing.assert_array_equal(items[1]["image"][0].numpy(), images[1].astype(np.float32))
    assert items[2]["image"].meta["filename_or_obj"] == "x.npz#train[2]"
    assert load_medmnist(str(path), "test") == []


def test_load_medmnist_errors(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load_medmnist(str(tmp_path / "none.npz"))
    with pytest.raises(ValueError, match="split"):
        load_medmnist(str(tmp_path / "none.npz"), "validation")
    path = tmp_path / "flat.npz"
    np.savez(path, train_images=np.zeros((2, 4, 4), dtype=np.uint8), train_labels=np.zeros((2, 1)))
    with pytest.raises(ValueError, match="N×D×H×W"):
        load_medmnist(str(path))


def test_real_adrenal_mnist(shared_data):
    items = load_medmnist(str(shared_data / "medmnist" / "adrenalmnist3d_trainval.npz"), "val")
    assert len(items) == 98
    assert tuple(items[0]["image"].shape) == (1, 28, 28, 28)
    assert {i["label"] for i in items} == {0, 1}
