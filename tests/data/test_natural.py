"""Readers of labelled 2D natural images and the synthetic default set."""

import logging

import numpy as np
import pytest
import torch
from PIL import Image

from monai_genesis.data import SYNTHETIC_CLASSES, load_image_folder, load_natural_npz, synthetic_natural_images
from monai_genesis.transforms import RandChannelShuffle, VariableDimension


def write_class_folders(root, classes=("dog", "cat"), per_class=2):
    rng = np.random.default_rng(0)
    images = {}
    for name in classes:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            x = rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)
            path = root / name / f"{i}.png"
            Image.fromarray(x).save(path)
            images[str(path)] = x
    return images


def test_image_folder_numbers_sorted_classes(tmp_path):
    images = write_class_folders(tmp_path / "train")
    Image.fromarray(np.full((4, 4), 7, dtype=np.uint8)).save(tmp_path / "train" / "cat" / "grey.JPG")
    datalist, classes = load_image_folder(str(tmp_path / "train"))
    assert classes == ["cat", "dog"]
    assert [(d["image"].split("/")[-2:], d["label"]) for d in datalist] == [
        (["cat", "0.png"], 0),
        (["cat", "1.png"], 0),
        (["cat", "grey.JPG"], 0),
        (["dog", "0.png"], 1),
        (["dog", "1.png"], 1),
    ]
    loaded, _ = load_image_folder(str(tmp_path / "train"), load=True)
    for item, path_item in zip(loaded, datalist):
        assert item["image"].dtype == np.uint8 and item["label"] == path_item["label"]
        if path_item["image"] in images:
            np.testing.assert_array_equal(item["image"], images[path_item["image"]])
    assert loaded[2]["image"].shape == (4, 4, 3) and np.all(loaded[2]["image"] == 7)


def test_image_folder_uses_given_classes_for_another_split(tmp_path):
    write_class_folders(tmp_path / "test", classes=("dog", "cat"), per_class=1)
    datalist, classes = load_image_folder(str(tmp_path / "test"), classes=["dog", "cat"])
    assert classes == ["dog", "cat"]
    assert [(d["image"].split("/")[-2], d["label"]) for d in datalist] == [("dog", 0), ("cat", 1)]
    with pytest.raises(ValueError, match=r"test: class folder .*bird is missing or holds no image"):
        load_image_folder(str(tmp_path / "test"), classes=["bird", "cat", "dog"])


def test_image_folder_errors_name_the_folder(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load_image_folder(str(tmp_path / "none"))
    write_class_folders(tmp_path / "one", classes=("cat",))
    with pytest.raises(ValueError, match=r"one holds 1 class folder\(s\) \['cat'\]; classification needs at least 2"):
        load_image_folder(str(tmp_path / "one"))
    write_class_folders(tmp_path / "empty", classes=("cat",))
    (tmp_path / "empty" / "dog").mkdir()
    (tmp_path / "empty" / "dog" / "notes.txt").write_text("no image")
    with pytest.raises(ValueError, match=r"empty: class folder .*dog is missing or holds no image"):
        load_image_folder(str(tmp_path / "empty"))
    write_class_folders(tmp_path / "broken")
    bad = tmp_path / "broken" / "dog" / "2.png"
    bad.write_bytes(b"not an image")
    with pytest.raises(ValueError, match=f"broken: cannot read image {bad}"):
        load_image_folder(str(tmp_path / "broken"))
    with pytest.raises(ValueError, match=r"class folder\(s\) \['dog'\] are not among the classes \['cat'\]"):
        load_image_folder(str(tmp_path / "broken"), classes=["cat"])


def write_npz(path, **arrays):
    np.savez(path, **arrays)
    return str(path)


def test_npz_splits_and_number_of_classes(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (5, 4, 4, 3), dtype=np.uint8)
    path = write_npz(
        tmp_path / "set.npz",
        train_images=images,
        train_labels=np.array([[0], [2], [1], [2], [0]]),
        val_images=images[:2],
        val_labels=np.array([1, 1]),
        test_images=images[:1],
        test_labels=np.array([2]),
        classes=np.array(["a", "b", "c", "d"]),
    )
    splits, num_classes = load_natural_npz(path)
    assert num_classes == 4 and set(splits) == {"train", "val", "test"}
    assert [d["label"] for d in splits["train"]] == [0, 2, 1, 2, 0]
    assert [d["label"] for d in splits["val"]] == [1, 1] and len(splits["test"]) == 1
    assert all(type(d["label"]) is int for d in splits["train"])
    np.testing.assert_array_equal(splits["train"][3]["image"], images[3])
    assert splits["train"][3]["image"].dtype == np.uint8
    no_names = write_npz(tmp_path / "plain.npz", train_images=images, train_labels=np.array([0, 2, 1, 2, 0]))
    splits, num_classes = load_natural_npz(no_names)
    assert num_classes == 3 and set(splits) == {"train"}
    assert load_natural_npz(no_names, num_classes=5)[1] == 5


def test_npz_errors_name_the_file_and_the_value(tmp_path):
    images = np.zeros((3, 4, 4, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="does not exist"):
        load_natural_npz(str(tmp_path / "none.npz"))
    path = write_npz(tmp_path / "labels.npz", train_images=images, train_labels=np.array([0, 1, 2]))
    with pytest.raises(ValueError, match=r"labels.npz: train_labels holds the label 2, outside \[0, 2\)"):
        load_natural_npz(path, num_classes=2)
    path = write_npz(tmp_path / "negative.npz", train_images=images, train_labels=np.array([0, -1, 1]))
    with pytest.raises(ValueError, match=r"negative.npz: train_labels holds the label -1"):
        load_natural_npz(path)
    path = write_npz(
        tmp_path / "named.npz",
        train_images=images,
        train_labels=np.array([0, 1, 0]),
        test_images=images,
        test_labels=np.array([0, 3, 0]),
        classes=np.array(["x", "y"]),
    )
    with pytest.raises(ValueError, match=r"named.npz: test_labels holds the label 3, outside \[0, 2\)"):
        load_natural_npz(path)
    path = write_npz(tmp_path / "count.npz", train_images=images, train_labels=np.array([0, 1]))
    with pytest.raises(ValueError, match="3 train images need 3 single labels"):
        load_natural_npz(path)
    path = write_npz(tmp_path / "keys.npz", images=images)
    with pytest.raises(ValueError, match=r"keys.npz: it has no train_images \(keys: \['images'\]\)"):
        load_natural_npz(path)


def test_real_natural_image_sets(shared_data):
    for name, size, counts in (
        ("cifar10_subset.npz", 32, {"train": 10000, "test": 2000}),
        ("tinyimagenet10_64px_subset.npz", 64, {"train": 3000, "test": 500}),
    ):
        splits, num_classes = load_natural_npz(str(shared_data / "natural" / name))
        assert num_classes == 10
        assert {k: len(v) for k, v in splits.items()} == counts
        labels = np.array([d["label"] for d in splits["train"]])
        np.testing.assert_array_equal(np.bincount(labels, minlength=10), [counts["train"] // 10] * 10)
        image = splits["test"][0]["image"]
        assert image.shape == (size, size, 3) and image.dtype == np.uint8
        volume = VariableDimension()(image)
        assert volume.shape == (1, 3, size, size) and volume.dtype == np.float32
        np.testing.assert_allclose(volume[0, 2], (image[..., 2] - 114.495) / 57.63, rtol=1e-5)


def test_synthetic_images_are_deterministic_and_balanced():
    splits, num_classes = synthetic_natural_images(num_classes=3, num_train_per_class=4, num_test_per_class=2, seed=5)
    again, _ = synthetic_natural_images(num_classes=3, num_train_per_class=4, num_test_per_class=2, seed=5)
    other, _ = synthetic_natural_images(num_classes=3, num_train_per_class=4, num_test_per_class=2, seed=6)
    assert num_classes == 3 and {k: len(v) for k, v in splits.items()} == {"train": 12, "test": 6}
    assert [d["label"] for d in splits["train"]] == [0, 1, 2] * 4
    for a, b in zip(splits["train"] + splits["test"], again["train"] + again["test"]):
        np.testing.assert_array_equal(a["image"], b["image"])
    assert not np.array_equal(splits["train"][0]["image"], other["train"][0]["image"])
    image = splits["train"][0]["image"]
    assert image.shape == (32, 32, 3) and image.dtype == np.uint8
    six, _ = synthetic_natural_images(num_classes=6, num_train_per_class=1, size=16)
    assert six["train"][5]["image"].shape == (16, 16, 3) and six["train"][5]["label"] == 5
    assert len(SYNTHETIC_CLASSES) == 6
    with pytest.raises(ValueError, match="num_classes must be 2 to 6"):
        synthetic_natural_images(num_classes=7)
    with pytest.raises(ValueError, match="size must be at least 16"):
        synthetic_natural_images(size=8)


def volumes(items, shuffle):
    vd = VariableDimension()
    x = np.stack([shuffle(vd(d["image"])) for d in items])
    return torch.as_tensor(x), torch.as_tensor([d["label"] for d in items])


@pytest.mark.slow
def test_synthetic_classes_are_learnt_through_colour_shuffles_and_not_by_colour():
    splits, num_classes = synthetic_natural_images(seed=0)
    # the mean colour of an image tells nothing of its class: nearest class centroid is near chance
    colour = {k: np.stack([d["image"].reshape(-1, 3).mean(0) for d in v]) for k, v in splits.items()}
    labels = {k: np.array([d["label"] for d in v]) for k, v in splits.items()}
    centroids = np.stack([colour["train"][labels["train"] == c].mean(0) for c in range(num_classes)])
    nearest = np.linalg.norm(colour["test"][:, None] - centroids[None], axis=-1).argmin(1)
    assert (nearest == labels["test"]).mean() < 0.45

    # a tiny 3D network learns the shapes from colour-shuffled volumes in a few seconds
    torch.manual_seed(0)
    shuffle = RandChannelShuffle()
    shuffle.set_random_state(0)
    net = torch.nn.Sequential(
        torch.nn.Conv3d(1, 8, (3, 5, 5), padding=(1, 2, 2)),
        torch.nn.ReLU(),
        torch.nn.MaxPool3d((1, 2, 2)),
        torch.nn.Conv3d(8, 16, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool3d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(16, num_classes),
    )
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    order = np.random.default_rng(0)
    train = splits["train"]
    for _ in range(6):
        perm = order.permutation(len(train))
        for start in range(0, len(train), 32):
            x, y = volumes([train[i] for i in perm[start : start + 32]], shuffle)
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(net(x), y).backward()
            optimizer.step()
    x, y = volumes(splits["test"], shuffle)
    with torch.no_grad():
        assert (net(x).argmax(1) == y).float().mean().item() >= 0.85


def test_npz_grey_and_float_photos_become_rgb_uint8(tmp_path, caplog):
    rng = np.random.default_rng(1)
    grey = rng.integers(0, 256, (2, 4, 4), dtype=np.uint8)
    splits, _ = load_natural_npz(write_npz(tmp_path / "grey.npz", train_images=grey, train_labels=np.array([0, 1])))
    image = splits["train"][1]["image"]
    assert image.shape == (4, 4, 3) and image.dtype == np.uint8
    np.testing.assert_array_equal(image, np.repeat(grey[1][..., None], 3, axis=-1))
    unit = rng.random((2, 4, 4, 3)).astype(np.float32)
    with caplog.at_level(logging.WARNING, logger="monai_genesis.data.natural"):
        splits, _ = load_natural_npz(write_npz(tmp_path / "unit.npz", train_images=unit, train_labels=np.array([0, 1])))
    assert "scaled by 255" in caplog.text and "unit.npz: train_images" in caplog.text
    np.testing.assert_array_equal(splits["train"][0]["image"], np.rint(unit[0] * 255).astype(np.uint8))
    with pytest.raises(ValueError, match=r"wide.npz: train_images has 5 colour channels"):
        load_natural_npz(write_npz(tmp_path / "wide.npz", train_images=np.zeros((2, 4, 4, 5), np.uint8),
                                   train_labels=np.array([0, 1])))
    with pytest.raises(ValueError, match=r"hdr.npz: train_images span \[0, 300\]"):
        load_natural_npz(write_npz(tmp_path / "hdr.npz", train_images=np.full((2, 4, 4, 3), 300.0),
                                   train_labels=np.array([0, 1])))


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_image_cut_short_is_named_when_listed(tmp_path, suffix):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        for i in range(2):
            Image.fromarray(np.random.default_rng(i).integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(
                tmp_path / name / f"{i}{suffix}")
    cut = tmp_path / "b" / f"1{suffix}"
    data = cut.read_bytes()
    cut.write_bytes(data[: int(len(data) * 0.8)])
    with pytest.raises(ValueError, match=rf"cannot read image .*1{suffix}: .*(cut short|Truncated).*copy it again"):
        load_image_folder(str(tmp_path))
