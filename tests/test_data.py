"""trainers.data: IDX files, Fashion-MNIST, tensorflow-datasets (mocked), folders, arrays.

Nothing here touches the network: tfds goes through `tfds.testing.mock_data`,
and the unknown-name test fails if a socket is opened.
"""

import functools
import gzip
import socket

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from PIL import Image

from trainers import data, fashion_mnist


def write_idx(path, array: np.ndarray) -> None:
    """Writes `array` as an IDX file (gzipped when `path` ends in .gz)."""
    codes = {np.dtype(np.uint8): 0x08, np.dtype(">i4"): 0x0C, np.dtype(">f4"): 0x0D}
    header = bytes([0, 0, codes[array.dtype], array.ndim])
    header += b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    payload = header + array.tobytes()
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(payload)


def save_image(path, array: np.ndarray, mode: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array.astype(np.uint8), mode=None).convert(mode).save(path)


def first_batch(split: data.Split, batch_size: int = 64) -> np.ndarray:
    return next(iter(data.make_dataset(split, batch_size, shuffle=False))).numpy()


# --- IDX -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, dtype",
    [
        ("x-idx3-ubyte", np.uint8),
        ("x-idx3-ubyte.gz", np.uint8),
        ("f.idx.gz", np.dtype(">f4")),
        ("i.idx", np.dtype(">i4")),
    ],
)
def test_read_idx_round_trips_shape_dtype_and_values(tmp_path, name, dtype):
    array = (np.arange(2 * 3 * 5) * 7 % 256).reshape(2, 3, 5).astype(dtype)
    write_idx(tmp_path / name, array)
    parsed = fashion_mnist.read_idx(tmp_path / name)
    assert parsed.shape == (2, 3, 5)
    assert parsed.dtype == array.dtype
    np.testing.assert_array_equal(parsed, array)


def test_read_idx_refuses_bad_magic(tmp_path):
    path = tmp_path / "bad-idx3-ubyte"
    path.write_bytes(b"\x89PNG" + bytes(100))
    with pytest.raises(ValueError, match="not an IDX file") as info:
        fashion_mnist.read_idx(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("name", ["t-idx3-ubyte", "t-idx3-ubyte.gz"])
def test_read_idx_refuses_truncated_file_naming_it(tmp_path, name):
    path = tmp_path / name
    write_idx(path, np.zeros((4, 28, 28), np.uint8))
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match="truncated or corrupt") as info:
        fashion_mnist.read_idx(path)
    assert str(path) in str(info.value)


def test_fashion_mnist_reads_idx_files_and_holds_out_validation(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    train = rng.integers(0, 256, (20, 28, 28), dtype=np.uint8)
    test = rng.integers(0, 256, (5, 28, 28), dtype=np.uint8)
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", train)  # gzipped
    write_idx(tmp_path / "t10k-images-idx3-ubyte", test)  # plain
    monkeypatch.setattr(fashion_mnist, "FASHION_MNIST_DIR", str(tmp_path))

    splits = {s: data.load_split("fashion_mnist", s, (28, 28, 1), 0.1) for s in data.SPLITS}
    assert [splits[s].num_examples for s in data.SPLITS] == [18, 2, 5]
    np.testing.assert_array_equal(splits["train"].images[..., 0], train[:18])
    np.testing.assert_array_equal(splits["validation"].images[..., 0], train[18:])
    batch = first_batch(splits["test"])
    assert batch.shape == (5, 28, 28, 1) and batch.dtype == np.float32
    np.testing.assert_allclose(batch[..., 0], test / 255.0, atol=1e-6)


def test_fashion_mnist_missing_names_the_debian_package(tmp_path, monkeypatch):
    monkeypatch.setattr(fashion_mnist, "FASHION_MNIST_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="dataset-fashion-mnist") as info:
        data.load_split("fashion_mnist", "train")
    assert "nowhere" in str(info.value)


# --- tensorflow-datasets (mocked) ---------------------------------------------------------------


def test_tfds_name_gives_float_batches_in_unit_range():
    with tfds.testing.mock_data(num_examples=8):
        split = data.load_split("mnist", "train", (28, 28, 1))
        batch = first_batch(split, 4)
    assert split.num_examples == 8
    assert batch.shape == (4, 28, 28, 1) and batch.dtype == np.float32
    assert 0.0 <= batch.min() and batch.max() <= 1.0 and batch.max() > 0.0


@pytest.mark.parametrize("image_shape", [(32, 32, 3), (28, 28, 1)])
def test_tfds_rgb_dataset_converts_to_model_input(image_shape):
    with tfds.testing.mock_data(num_examples=6):
        batch = first_batch(data.load_split("cifar10", "test", image_shape), 6)
    assert batch.shape == (6, *image_shape) and batch.dtype == np.float32
    assert 0.0 <= batch.min() and batch.max() <= 1.0


def test_tfds_images_are_center_cropped_not_squashed():
    # 40 high x 20 wide: black top and bottom quarters, white middle. A center
    # crop to a square keeps only white; squashing would keep the black.
    tall = np.zeros((3, 40, 20, 1), np.uint8)
    tall[:, 10:30] = 255

    def as_dataset(self, *args, **kwargs):
        return tf.data.Dataset.from_tensor_slices({"image": tall})

    with tfds.testing.mock_data(as_dataset_fn=as_dataset):
        batch = first_batch(data.load_split("mnist", "test", (10, 10, 1)), 3)
    assert batch.shape == (3, 10, 10, 1)
    assert batch.min() > 0.95


def test_unknown_dataset_name_is_a_clear_error_without_network(monkeypatch):
    attempts = []

    def no_connect(self, address, *args):
        attempts.append(address)
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", no_connect)
    with pytest.raises(ValueError, match="Unknown dataset 'no_such_dataset_xyz'") as info:
        data.load_split("no_such_dataset_xyz", "train")
    assert attempts == []
    assert len(str(info.value)) < 500  # not tfds's list of every dataset


def test_an_image_file_is_not_taken_for_a_dataset(tmp_path):
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(tmp_path / "001.png")
    with pytest.raises(ValueError, match="is a file, not a dataset: give the folder"):
        data.load_split(tmp_path / "001.png", "train")


def test_a_tfds_download_failure_is_one_clear_error(monkeypatch, tmp_path):
    # The real preparation path up to the download (tfds 4.9.10 needs the
    # undeclared importlib_resources there), with the download itself failing
    # as it does offline, and tfds's files kept under tmp_path.
    def offline(self, *args, **kwargs):
        raise ConnectionError("storage.googleapis.com: name or service not known")

    monkeypatch.setattr(tfds.download.DownloadManager, "download_and_extract", offline)
    monkeypatch.setattr(tfds.download.DownloadManager, "download", offline)
    for function in ("builder", "load"):
        monkeypatch.setattr(
            tfds, function, functools.partial(getattr(tfds, function), data_dir=str(tmp_path))
        )
    with pytest.raises(ValueError, match="could not load 'mnist'") as info:
        data.load_split("mnist", "train")
    assert "ConnectionError" in str(info.value) and "internet" in str(info.value)


# --- folders of images ---------------------------------------------------------------------------


@pytest.fixture
def image_folder(tmp_path):
    """Four images, nested, PNG and JPEG, RGB and grayscale, different sizes, plus a text file."""
    root = tmp_path / "pictures"
    gray = np.full((30, 28), 200, np.uint8)
    save_image(root / "a" / "b" / "gray.jpg", gray, "L")  # first in sorted order
    red = np.zeros((40, 30, 3), np.uint8)
    red[..., 0] = 255
    save_image(root / "a" / "red.png", red, "RGB")
    wide = np.zeros((40, 80, 3), np.uint8)  # black sides, white middle half
    wide[:, 20:60] = 255
    save_image(root / "wide.jpeg", wide, "RGB")
    save_image(root / "z.png", np.full((64, 64), 50, np.uint8), "L")
    (root / "notes.txt").write_text("not an image")
    return root


def test_folder_images_are_converted_to_model_input(image_folder):
    # The held-out file (the lowest hash of its relative path) is a/red.png.
    gray = data.load_split(image_folder, "train", (28, 28, 1), validation_fraction=0.25)
    assert gray.images.shape == (3, 28, 28, 1) and gray.images.dtype == np.uint8
    assert abs(int(gray.images[0].mean()) - 200) <= 2  # gray.jpg
    assert gray.images[1].min() >= 250  # wide.jpeg: center crop keeps the white middle
    assert abs(int(gray.images[2].mean()) - 50) <= 1  # z.png
    held_out = data.load_split(image_folder, "validation", (28, 28, 1), validation_fraction=0.25)
    assert held_out.num_examples == 1
    assert abs(int(held_out.images.mean()) - 76) <= 2  # red -> luma 0.299 * 255

    rgb = data.load_split(image_folder, "train", (24, 24, 3), validation_fraction=0.25)
    assert rgb.images.shape == (3, 24, 24, 3)
    np.testing.assert_allclose(rgb.images[0].mean(axis=(0, 1)), [200, 200, 200], atol=2)
    red = data.load_split(image_folder, "validation", (24, 24, 3), validation_fraction=0.25)
    np.testing.assert_allclose(red.images[0].mean(axis=(0, 1)), [255, 0, 0], atol=2)
    batch = first_batch(rgb)
    assert batch.dtype == np.float32 and 0.0 <= batch.min() and batch.max() <= 1.0


def test_splits_record_the_source_shape_and_the_conversion_note_names_it(image_folder, tmp_path):
    # The train command does not read the image shape from the data: a note tells the
    # user when their images are converted, and which image_shape would keep them.
    assert data.load_split(image_folder, "train", (28, 28, 1)).source_shape == (30, 28, 1)
    rgb = np.zeros((5, 32, 48, 3), np.uint8)
    np.savez(tmp_path / "rgb.npz", images=rgb, labels=np.zeros(5, np.int64))
    rgba = np.zeros((5, 32, 48, 4), np.uint8)
    for source in (str(tmp_path / "rgb.npz"), rgb, rgba):
        assert data.load_split(source, "train", (28, 28, 1)).source_shape == (32, 48, 3)
    note = data.conversion_note((32, 48, 3), (28, 28, 1), "shapes/")
    assert "32x48x3" in note and "28x28x1" in note and "grayscale" in note
    assert "--set 'image_shape=[32,48,3]'" in note
    fine_tuned = data.conversion_note((32, 48, 3), (28, 28, 1), "shapes/", fixed_channels=True)
    assert "image_shape=[32,48,1]" in fine_tuned and "without --init_from" in fine_tuned
    assert data.conversion_note((32, 48, 3), (32, 48, 3)) is None
    assert data.conversion_note(None, (28, 28, 1)) is None
    assert data.conversion_note((56, 56, 1), (28, 28, 1)).count("resized") == 1


@pytest.mark.parametrize("content", ["garbage", "truncated_png"])
def test_corrupt_image_is_reported_with_its_path(image_folder, content):
    bad = image_folder / "a" / "b" / "broken.png"
    if content == "garbage":
        bad.write_bytes(b"this is not a png")
    else:
        save_image(bad, np.random.default_rng(0).integers(0, 256, (64, 64), np.uint8), "L")
        bad.write_bytes(bad.read_bytes()[:200])
    with pytest.raises(ValueError, match="Cannot read image") as info:
        for split in ("train", "validation"):  # each decodes only its own files
            data.load_split(image_folder, split, (28, 28, 1))
    assert str(bad) in str(info.value)


def test_empty_folder_is_a_clear_error(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "readme.txt").write_text("no images here")
    with pytest.raises(ValueError, match="No images"):
        data.load_split(tmp_path, "train")


def test_images_smaller_than_the_model_input_are_refused(image_folder):
    with pytest.raises(ValueError, match="smaller than the model input 32x32") as info:
        data.load_split(image_folder, "train", (32, 32, 1))
    assert "gray.jpg" in str(info.value)


def test_sixteen_bit_grayscale_png_is_rescaled_not_clipped(tmp_path):
    # Scanners, microscopes and medical images: Pillow's convert("L") clips to white.
    wide = np.linspace(0, 65535, 28 * 28).reshape(28, 28).astype(np.uint16)
    Image.fromarray(wide).save(tmp_path / "scan.png")
    assert Image.open(tmp_path / "scan.png").mode.startswith("I")  # Pillow reads it as 16-bit
    for channels in (1, 3):
        image = data.read_image_file(tmp_path / "scan.png", (28, 28, channels))
        expected = np.round(wide / 257.0).astype(np.uint8)
        assert np.abs(image[..., 0].astype(int) - expected).max() <= 1  # not all white


def test_exif_orientation_is_applied(tmp_path):
    # Phone photos: read the way every image viewer shows them.
    pixels = np.zeros((28, 56), np.uint8)
    pixels[:, :28] = 255  # stored landscape, left half white
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display": shown as a 56x28 portrait
    image.save(tmp_path / "photo.jpg", exif=exif, quality=95)
    read = data.read_image_file(tmp_path / "photo.jpg", (56, 28, 1))[..., 0]
    assert read.shape == (56, 28)
    assert read[:28].mean() > 200 and read[28:].mean() < 50  # the white half on top


# --- numpy arrays and files ----------------------------------------------------------------------


def test_npy_and_npz_files_and_arrays(tmp_path):
    uint8 = np.random.default_rng(0).integers(0, 256, (10, 28, 28), dtype=np.uint8)
    np.save(tmp_path / "images.npy", uint8)
    np.savez(tmp_path / "images.npz", images=uint8.astype(np.float32) / 255.0)
    row_of = {image.tobytes(): i for i, image in enumerate(uint8)}
    for source in (tmp_path / "images.npy", str(tmp_path / "images.npz"), uint8):
        split = data.load_split(source, "train", (28, 28, 1), validation_fraction=0.2)
        test = data.load_split(source, "test", (28, 28, 1), validation_fraction=0.2)
        assert split.images.shape == (8, 28, 28, 1) and test.images.shape == (2, 28, 28, 1)
        rows = [[row_of[image[..., 0].tobytes()] for image in part.images]
                for part in (split, test)]
        assert sorted(rows[0] + rows[1]) == list(range(10))  # a partition of the rows
        assert rows[0] == sorted(rows[0]) and rows[1] == sorted(rows[1])  # in file order
        assert rows[1] != [8, 9]  # a fixed random choice, not the last rows


def test_an_npz_without_a_named_image_array_is_refused_not_guessed(tmp_path):
    images = np.zeros((6, 28, 28), np.uint8)
    np.savez(tmp_path / "two.npz", test_images=images, train_images=images + 1)
    with pytest.raises(ValueError, match="2 arrays \\(test_images, train_images\\).*`images`"):
        data.load_split(tmp_path / "two.npz", "train")
    np.savez(tmp_path / "one.npz", pictures=images + 7)  # a single array is unambiguous
    assert data.load_split(tmp_path / "one.npz", "train").images.max() == 7


@pytest.mark.parametrize(
    "value, error, message",
    [
        (np.nan, ValueError, "NaN or Inf"),
        (np.inf, ValueError, "NaN or Inf"),
        (1.5, ValueError, r"\[0, 1\]"),
        (-0.1, ValueError, r"\[0, 1\]"),
    ],
)
def test_bad_float_values_are_refused(tmp_path, value, error, message):
    images = np.full((6, 28, 28, 1), 0.5, np.float32)
    images[3, 4, 5, 0] = value
    np.save(tmp_path / "bad.npy", images)
    for source in (images, tmp_path / "bad.npy"):
        with pytest.raises(error, match=message):
            data.load_split(source, "train")


def test_integer_arrays_other_than_uint8_are_refused():
    with pytest.raises(TypeError, match="int64"):
        data.load_split(np.zeros((6, 28, 28), np.int64), "train")


def test_missing_path_and_bad_split_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.npy"):
        data.load_split(tmp_path / "missing.npy", "train")
    with pytest.raises(ValueError, match="'valid'"):
        data.load_split(np.zeros((6, 28, 28), np.uint8), "valid")


def test_make_dataset_batches_shuffles_and_checks_batch_size():
    split = data.load_split(
        np.arange(10, dtype=np.uint8).repeat(4).reshape(10, 2, 2),
        "train",
        (2, 2, 1),
        validation_fraction=0.1,
    )
    ordered = [b.numpy() for b in data.make_dataset(split, 4, shuffle=False)]
    assert [len(b) for b in ordered] == [4, 4, 1]
    in_order = np.round(np.concatenate(ordered)[:, 0, 0, 0] * 255).astype(int)
    assert list(in_order) == sorted(in_order) and len(set(in_order)) == 9  # 9 of the 10 rows
    shuffled = np.concatenate(list(data.make_dataset(split, 4, seed=1)))[:, 0, 0, 0]
    shuffled = np.round(shuffled * 255).astype(int)
    assert sorted(shuffled) == list(in_order)
    assert list(shuffled) != list(in_order)
    dropped = list(data.make_dataset(split, 4, drop_remainder=True))
    assert [len(b) for b in dropped] == [4, 4]
    with pytest.raises(ValueError, match="batch_size"):
        data.make_dataset(split, 0)


def test_tall_images_are_center_cropped_not_cut_at_the_top():
    tall = np.zeros((1, 80, 40, 1), np.uint8)  # black top and bottom quarters, white middle
    tall[:, 20:60] = 255
    fitted = data.fit_to_shape(tall, (28, 28, 1))
    assert fitted.shape == (1, 28, 28, 1) and fitted.min() >= 250


def test_rgba_arrays_lose_the_alpha_channel_not_a_color():
    rgba = np.zeros((2, 28, 28, 4), np.uint8)
    rgba[..., 0] = 255  # opaque-ish red
    rgba[..., 3] = 128
    np.testing.assert_array_equal(data.fit_to_shape(rgba, (28, 28, 3))[:, 5, 5], [[255, 0, 0]] * 2)
    gray = data.fit_to_shape(rgba, (28, 28, 1))  # luma of red, not of (0, 0, alpha)
    assert abs(int(gray[0, 5, 5, 0]) - 76) <= 1


def test_a_folder_split_decodes_only_its_own_files(tmp_path, monkeypatch):
    # A large folder was decoded whole for every split: train then validation read it
    # twice, and evaluating its held-out 10 % decoded all of it.
    for i in range(20):
        save_image(tmp_path / f"c{i % 2}" / f"{i:02d}.png", np.full((8, 8), i * 10, np.uint8), "L")
    decoded = []
    read = data._decode_image_file
    monkeypatch.setattr(data, "_decode_image_file", lambda p, s: decoded.append(p) or read(p, s))
    train = data.load_split(tmp_path, "train", (8, 8, 1))
    assert len(decoded) == 18
    held_out = data.load_split(tmp_path, "validation", (8, 8, 1))
    assert len(decoded) == 20 and len(set(decoded)) == 20
    # The same images, in file order, as splitting the decoded folder.
    everything = data.load_folder(tmp_path, (8, 8, 1), verbose=False)
    files = data.image_files(tmp_path)
    for split, images in (("train", train.images), ("validation", held_out.images)):
        rows = data.folder_split_rows(files, tmp_path, split, 0.1)
        np.testing.assert_array_equal(images, everything[rows])


@pytest.mark.parametrize("image_shape", [(8, 8, 3), (16, 16, 1), (8, 8, 1)])
def test_arrays_are_converted_a_chunk_at_a_time(monkeypatch, image_shape):
    # Resizing or graying a whole array at once worked in float32 on all of it: 100,000
    # 64x64 RGB images (1.2 GB) peaked at 8 GB resized and 16 GB converted to grayscale.
    from trainers import image_conversion

    images = np.random.default_rng(0).integers(0, 256, (10, 16, 16, 3), np.uint8)
    expected = np.concatenate([data.fit_to_shape(image[None], image_shape) for image in images])
    seen = []
    for name in ("resize", "rgb_to_grayscale"):
        original = getattr(tf.image, name)
        monkeypatch.setattr(
            tf.image, name, functools.partial(
                lambda original, x, *args, **kwargs: seen.append(len(x)) or original(
                    x, *args, **kwargs), original)
        )
    monkeypatch.setattr(image_conversion, "CONVERSION_CHUNK", 4)
    converted = data.fit_to_shape(images, image_shape)
    assert seen and max(seen) <= 4
    assert converted.dtype == np.uint8 and converted.shape == (10, *image_shape)
    np.testing.assert_array_equal(converted, expected)


def test_hidden_files_and_folders_of_a_folder_are_skipped(image_folder):
    # macOS leaves a `._<name>` file (not an image) beside every file copied to a
    # foreign disk; it stopped the run as an unreadable image.
    (image_folder / "a" / "._red.png").write_bytes(b"\x00\x05\x16\x07\x00\x02Mac OS X")
    save_image(image_folder / ".thumbnails" / "z.png", np.zeros((64, 64), np.uint8), "L")
    files = data.image_files(image_folder)
    assert [f.name for f in files] == ["gray.jpg", "red.png", "wide.jpeg", "z.png"]
    assert data.load_split(image_folder, "train", (28, 28, 1)).num_examples == 3


def test_every_unusable_file_of_a_folder_is_named_in_one_error(image_folder, monkeypatch):
    # The first bad file stopped the read: a folder with several took one run each.
    (image_folder / "a" / "b" / "broken.jpg").write_bytes(b"not a jpeg")
    (image_folder / "empty.png").write_bytes(b"")
    save_image(image_folder / "tiny.png", np.zeros((8, 8), np.uint8), "L")
    monkeypatch.setattr(data, "MAX_FAILURES_SHOWN", 2)
    with pytest.raises(ValueError) as info:
        data.load_folder(image_folder, (28, 28, 1), verbose=False)
    message = str(info.value)
    assert message.startswith(f"3 of the 7 image files read under {image_folder} cannot be used")
    assert "remove or replace them" in message
    assert str(image_folder / "a" / "b" / "broken.jpg") in message
    assert f"{image_folder / 'empty.png'} (the file is empty)" in message
    assert message.endswith("; ... and 1 more.") and "\n" not in message


def test_a_folder_is_resized_in_chunks_not_image_by_image(tmp_path, monkeypatch):
    # One TensorFlow resize per file cost ~1.3 ms each, 7x the decoding of a small PNG:
    # 30,000 64x64 files took 39 s to read for a 28x28x1 model instead of 5 s.
    rng = np.random.default_rng(0)
    for i in range(12):
        size = (32, 32, 3) if i < 8 else (40, 40, 3)
        save_image(tmp_path / f"{i:02d}.png", rng.integers(0, 256, size, np.uint8), "RGB")
    expected = np.stack([data.read_image_file(p, (16, 16, 1)) for p in data.image_files(tmp_path)])
    calls = []
    resize = tf.image.resize
    monkeypatch.setattr(tf.image, "resize", lambda x, *a, **k: calls.append(len(x)) or resize(
        x, *a, **k))
    images = data.load_folder(tmp_path, (16, 16, 1), verbose=False)
    assert calls == [8, 4]  # one call per run of same-size files
    np.testing.assert_array_equal(images, expected)


def test_a_folder_file_keeps_its_split_when_the_folder_grows(tmp_path):
    # The held-out rows were chosen by the file count alone: adding one file to 30,004
    # moved 2,314 of the 3,000 held-out files into training, so a run fine-tuned
    # (--init_from) or resumed on the grown folder validated on images it trained on.
    folder = tmp_path / "images"
    for i in range(200):  # every image has its own pixel value
        save_image(folder / f"c{i % 4}" / f"{i:03d}.png", np.full((8, 8), i, np.uint8), "L")

    def values(split):
        return set(data.load_split(folder, split, (8, 8, 1)).images[:, 0, 0, 0].tolist())

    held_out = values("validation")
    assert len(held_out) == 20
    save_image(folder / "c0" / "new.png", np.full((8, 8), 255, np.uint8), "L")
    train_after = values("train")
    assert len(train_after) == 181 and not held_out & train_after
    # The same split wherever the folder lives.
    folder = folder.rename(tmp_path / "moved")
    assert not held_out & values("train")


def test_float_arrays_are_converted_to_uint8_a_chunk_at_a_time(monkeypatch):
    # Checking and scaling a whole float array made float copies of all of it: a
    # 0.98 GB float32 .npy peaked at 3.4 GB of RSS while it was read.
    from trainers import image_conversion

    images = np.random.default_rng(0).random((10, 4, 4, 1)).astype(np.float32)
    expected = data.float_to_uint8(images)
    seen = []
    check = image_conversion.to_unit_float
    monkeypatch.setattr(image_conversion, "to_unit_float",
                        lambda x: seen.append(len(x)) or check(x))
    monkeypatch.setattr(image_conversion, "CONVERSION_CHUNK", 4)
    np.testing.assert_array_equal(data.float_to_uint8(images), expected)
    assert seen and max(seen) <= 4
    images[9, 0, 0, 0], images[0, 0, 0, 0] = 2.0, -1.0  # the message gives the whole range
    with pytest.raises(ValueError, match=r"-1.*2"):
        data.float_to_uint8(images)


def test_linked_class_folders_are_read_and_link_loops_end(tmp_path):
    # rglob did not enter a linked folder: a class folder linked into the dataset
    # (data/cat -> /mnt/photos/cat) was left out, its class with it, without a word.
    from trainers import labels

    elsewhere, dataset = tmp_path / "photos" / "cat", tmp_path / "dataset"
    for i in range(3):
        save_image(elsewhere / f"{i}.png", np.zeros((8, 8), np.uint8), "L")
        save_image(dataset / "dog" / f"{i}.png", np.zeros((8, 8), np.uint8), "L")
    (dataset / "cat").symlink_to(elsewhere, target_is_directory=True)
    (dataset / "dog" / "loop").symlink_to(dataset, target_is_directory=True)
    files = data.image_files(dataset)
    assert [f.relative_to(dataset).as_posix() for f in files] == [
        "cat/0.png", "cat/1.png", "cat/2.png", "dog/0.png", "dog/1.png", "dog/2.png"]
    assert labels.class_names(dataset) == ["cat", "dog"]


def test_upper_case_npy_and_npz_suffixes_are_read(tmp_path):
    # Image files are matched case-insensitively (.JPG); an X.NPY was refused as "a file,
    # not a dataset: give ... a .npy/.npz file".
    from trainers import labels

    np.save(tmp_path / "x.npy", np.zeros((10, 28, 28), np.uint8))
    (tmp_path / "x.npy").rename(tmp_path / "X.NPY")
    np.savez(tmp_path / "y.npz", images=np.zeros((10, 28, 28), np.uint8), labels=np.arange(10) % 2)
    (tmp_path / "y.npz").rename(tmp_path / "Y.NPZ")
    assert data.load_split(tmp_path / "X.NPY", "train").num_examples == 9
    assert data.load_split(tmp_path / "Y.NPZ", "train").num_examples == 9
    assert labels.class_names(tmp_path / "Y.NPZ") == ["0", "1"]
    assert len(labels.load_labels(tmp_path / "Y.NPZ", "train")) == 9
