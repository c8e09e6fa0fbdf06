"""trainers.labels: class ids aligned with `data.load_split`'s images, and class names."""

import numpy as np
import pytest
from PIL import Image

from tests.test_data import write_idx
from trainers import data, fashion_mnist, labels


def test_fashion_mnist_labels_follow_the_images_and_the_held_out_split(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    train_labels = rng.integers(0, 10, 20, dtype=np.uint8)
    # Each image carries its label in its pixels, so alignment can be checked directly.
    train_images = np.repeat(train_labels[:, None, None], 28 * 28, 1).reshape(20, 28, 28)
    test_labels = np.array([9, 0, 3], np.uint8)
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", train_images.astype(np.uint8))
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", train_labels)
    write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((3, 28, 28), np.uint8))
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", test_labels)
    monkeypatch.setattr(fashion_mnist, "FASHION_MNIST_DIR", str(tmp_path))

    for split in ("train", "validation"):
        images = data.load_split("fashion_mnist", split, (28, 28, 1), 0.25).images
        ids = labels.load_labels("fashion_mnist", split, 0.25)
        assert ids.dtype == np.int32 and len(ids) == len(images) == {"train": 15,
                                                                      "validation": 5}[split]
        np.testing.assert_array_equal(ids, images[:, 0, 0, 0])
    np.testing.assert_array_equal(labels.load_labels("fashion_mnist", "test"), [9, 0, 3])
    assert labels.class_names("fashion_mnist")[0] == "T-shirt/top"
    assert labels.class_names("fashion_mnist")[9] == "Ankle boot"


def test_npz_labels_and_class_names(tmp_path):
    ids = np.arange(10) % 3
    images = np.repeat(ids[:, None, None], 28 * 28, 1).reshape(10, 28, 28).astype(np.uint8)
    np.savez(tmp_path / "plain.npz", images=images, labels=ids)
    np.savez(tmp_path / "named.npz", images=images, labels=ids, class_names=["a", "b", "c"])
    for split, count in (("train", 8), ("test", 2)):
        held = labels.load_labels(tmp_path / "plain.npz", split, 0.2)
        pixels = data.load_split(tmp_path / "plain.npz", split, (28, 28, 1), 0.2).images
        assert len(held) == count
        np.testing.assert_array_equal(held, pixels[:, 0, 0, 0])  # uint8 ids kept as pixels
    assert labels.class_names(tmp_path / "plain.npz") == ["0", "1", "2"]
    assert labels.class_names(tmp_path / "named.npz") == ["a", "b", "c"]


def test_npz_labels_that_do_not_fit_the_names_or_the_images_are_refused(tmp_path):
    # Ids counted from 1 with one name per class: the last class's id is the prior's
    # "no condition" id, so it would train as unconditional without a word.
    images = np.zeros((12, 28, 28), np.uint8)
    ids = np.arange(12) % 3
    np.savez(tmp_path / "one_based.npz", images=images, labels=ids + 1, class_names=["a", "b", "c"])
    with pytest.raises(ValueError, match=r"class ids in \[0, 2\].*Received a label 3"):
        labels.load_labels(tmp_path / "one_based.npz", "train")
    np.savez(tmp_path / "short.npz", images=images, labels=ids[:10], class_names=["a", "b", "c"])
    with pytest.raises(ValueError, match="holds 12 images and 10 labels"):
        labels.load_labels(tmp_path / "short.npz", "train")
    np.savez(tmp_path / "x.npz", x=images, labels=ids)  # another image key, no names
    assert len(labels.load_labels(tmp_path / "x.npz", "train")) == 11


def test_folder_labels_come_from_subfolders_in_reading_order(tmp_path):
    for name, value in [("coat/1.png", 10), ("bag/x.png", 20), ("bag/y.png", 30),
                        ("coat/0.png", 40)]:
        (tmp_path / name).parent.mkdir(exist_ok=True)
        Image.fromarray(np.full((28, 28), value, np.uint8)).save(tmp_path / name)
    images = data.load_split(tmp_path, "train", (28, 28, 1), 0.25).images
    ids = labels.load_labels(tmp_path, "train", 0.25)
    assert labels.class_names(tmp_path) == ["bag", "coat"]
    value_to_class = {20: 0, 30: 0, 10: 1, 40: 1}
    assert [value_to_class[int(v)] for v in images[:, 0, 0, 0]] == ids.tolist()


def test_a_class_folder_holds_out_images_of_every_class(tmp_path):
    # Files are read sorted by path, class by class; the held-out images must
    # not be the last class alone.
    for c, name in enumerate(["bag", "coat", "dress"]):
        (tmp_path / name).mkdir()
        for i in range(10):
            Image.fromarray(np.full((28, 28), c, np.uint8)).save(tmp_path / name / f"{i}.png")
    held_out = labels.load_labels(tmp_path, "validation", 0.2)
    train = labels.load_labels(tmp_path, "train", 0.2)
    assert len(held_out) == 6 and len(train) == 24
    assert len(set(held_out.tolist())) > 1 and set(train.tolist()) == {0, 1, 2}
    pixels = data.load_split(tmp_path, "validation", (28, 28, 1), 0.2).images[:, 0, 0, 0]
    np.testing.assert_array_equal(held_out, pixels)
    # The same rows on every call.
    np.testing.assert_array_equal(held_out, labels.load_labels(tmp_path, "validation", 0.2))


def test_unlabelled_sources_are_clear_errors(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((4, 28, 28), np.uint8))
    with pytest.raises(ValueError, match="No labels for"):
        labels.load_labels(tmp_path / "x.npy")
    np.savez(tmp_path / "x.npz", images=np.zeros((4, 28, 28), np.uint8))
    with pytest.raises(ValueError, match="holds no `labels` array"):
        labels.load_labels(tmp_path / "x.npz")
    (tmp_path / "flat").mkdir()
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(tmp_path / "flat" / "a.png")
    with pytest.raises(ValueError, match="subfolders \\(one per class\\)"):
        labels.load_labels(tmp_path / "flat")
    with pytest.raises(ValueError, match="`split` must be one of"):
        labels.load_labels("fashion_mnist", "dev")


def test_npz_class_names_saved_as_objects_are_refused_with_the_fix(tmp_path):
    np.savez(tmp_path / "objects.npz", images=np.zeros((4, 28, 28), np.uint8),
             labels=np.array([0, 1, 0, 1]), class_names=np.array(["a", "b"], dtype=object))
    with pytest.raises(ValueError, match=r"must be an array of strings .*dtype=str"):
        labels.class_names(tmp_path / "objects.npz")
