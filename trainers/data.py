"""Image data for training and evaluation: one entry point for every source.

`load_split(source, split, image_shape)` returns a `Split`: the images of one
split as float32 NHWC in [0, 1], either held in memory (uint8) or streamed
from tensorflow-datasets. `make_dataset(split, batch_size, ...)` turns it
into a shuffled, cached and prefetched `tf.data.Dataset`.

Sources:
- `"fashion_mnist"` (the default): the IDX files of the Debian package
  `dataset-fashion-mnist` in `/usr/share/datasets/fashion-mnist/`, gzipped
  or not, parsed with numpy. No download.
- any tensorflow-datasets name (`"mnist"`, `"cifar10"`, `"celeb_a"`, ...),
  loaded with `tfds.load` (needs the data prepared or internet access).
- a folder of PNG/JPEG/BMP/GIF images, nested or flat (hidden files and
  folders, named `.*`, are skipped).
- a `.npy` / `.npz` file (images under `images`, `x` or `x_train`, or the only
  array), or a numpy array.

Splits are `"train"`, `"validation"` and `"test"`. Where a source has no
validation split, `validation_fraction` of the training images is held out:
the last ones for Fashion-MNIST (whose file mixes the classes), a fixed
pseudo-random choice for an array (by row count), and for a folder the files
whose relative paths hash lowest, so that a file keeps its split when the
folder grows (a folder sorted by path would otherwise hold out its last class
subfolders); a folder or array has no test split of its own and uses its
validation part for `"test"`.

Images are converted to the model's `image_shape`: grayscale <-> RGB,
center-cropped to its aspect ratio and resized down. Images smaller than the
model input are refused rather than upsampled. uint8 data is divided by 255;
float data must already lie in [0, 1]; NaN or Inf is refused.
"""

import dataclasses
import os
import pathlib

import numpy as np
import tensorflow as tf

from trainers.fashion_mnist import load_fashion_mnist, read_idx  # noqa: F401 (public here)
from trainers.image_conversion import (  # noqa: F401 (conversion_note, to_unit_float: public here)
    as_nhwc,
    conversion_note,
    fit_to_shape,
    float_to_uint8,
    refuse_smaller,
    stored_shape,
    to_unit_float,
)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
SPLITS = ("train", "validation", "test")
FOLDER_CHUNK_BYTES = 32 << 20
"""Decoded bytes of same-size images a folder converts to the model's shape at once."""
MAX_FAILURES_SHOWN = 10
"""Unusable files of a folder named in its error message (all are counted)."""


@dataclasses.dataclass
class Split:
    """The images of one split.

    Attributes:
        images: uint8 array (N, H, W, C) held in memory, or `None`.
        dataset: unbatched `tf.data.Dataset` of float32 images, or `None`.
        num_examples: int. Number of images.
        source: str. Where the images came from (for messages).
        source_shape: `(height, width, channels)` of the source's images before
            they were converted to the model's `image_shape` (a folder's: its
            first file's), or `None` when not known (tensorflow-datasets).
        stands_in: str or `None`. The images actually given when the source has
            no such split (a folder's or array's `"test"`: `"validation"`, the
            held-out images that also chose `best.keras`), else `None`.
    """

    images: np.ndarray | None
    dataset: tf.data.Dataset | None
    num_examples: int
    source: str
    source_shape: tuple[int, int, int] | None = None
    stands_in: str | None = None


NPZ_IMAGE_KEYS = ("images", "x", "x_train")
"""The names under which a `.npz` file's images are looked for, in order."""


def load_array(array_or_path, source: str | None = None) -> np.ndarray:
    """Loads images from a numpy array, `.npy` or `.npz` file as uint8 NHWC.

    A `.npz` file's images are its array named as in `NPZ_IMAGE_KEYS`, or its
    only array.
    """
    source = source or "the array"
    if isinstance(array_or_path, (str, os.PathLike)):
        path = pathlib.Path(array_or_path)
        source = str(path)
        if not path.exists():
            raise FileNotFoundError(f"No such file: {path}")
        if path.suffix.lower() == ".npz":
            with np.load(path) as archive:
                keys = list(archive.keys())
                key = next((k for k in NPZ_IMAGE_KEYS if k in keys), None)
                if key is None and len(keys) == 1:
                    key = keys[0]
                if key is None:  # guessing could train on the wrong array
                    raise ValueError(
                        f"{path} holds {len(keys)} arrays ({', '.join(keys) or 'none'}) and "
                        f"none is named {' or '.join(NPZ_IMAGE_KEYS)}: name the images "
                        "`images` (np.savez(path, images=..., labels=...))."
                    )
                array = archive[key]
                source = f"{path}[{key!r}]"
        else:
            array = np.load(path)
    else:
        array = np.asarray(array_or_path)
    array = array if array.dtype == np.uint8 else float_to_uint8(array)
    return as_nhwc(array, source)


def image_files(folder: str | os.PathLike) -> list[pathlib.Path]:
    """Sorted image files (by suffix) under `folder`, recursively.

    Hidden files and folders (names starting with `.`) are skipped: macOS
    writes a `._<name>` file that is not an image beside every file copied
    to a foreign disk, and tools keep caches in folders such as `.thumbnails`.
    Symbolic links to folders are followed (each real folder read once), as
    links to files are.
    """
    folder = pathlib.Path(folder)
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"{folder} is a file; give the folder that holds the images.")
    if not folder.is_dir():
        raise FileNotFoundError(f"No such folder: {folder}")
    files, seen = [], set()
    # pathlib's rglob (Python < 3.13) does not enter linked folders: a class folder
    # linked into the dataset was left out without a word.
    for parent, folders, names in os.walk(folder, followlinks=True):
        real = os.path.realpath(parent)
        if real in seen:  # a link back up the tree, or two links to one folder
            folders[:] = []
            continue
        seen.add(real)
        folders[:] = [name for name in folders if not name.startswith(".")]
        files.extend(
            pathlib.Path(parent, name) for name in names
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES
        )
    files.sort()
    if not files:
        raise ValueError(f"No images ({', '.join(IMAGE_SUFFIXES)}) found under {folder}.")
    return files


def read_image_file(path: pathlib.Path, image_shape) -> np.ndarray:
    """Reads one image file as uint8 (H, W, C) in `image_shape`; errors name the file."""
    array = _decode_image_file(path, image_shape)
    return fit_to_shape(array[np.newaxis], image_shape, source=str(path))[0]


def _decode_image_file(path: pathlib.Path, image_shape) -> np.ndarray:
    """One image file as uint8 (H, W, C) at its own size, with `image_shape`'s channels
    (C = 1 or 3); refuses, naming the file, one it cannot read or smaller than `image_shape`."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as opened:
            # A camera's EXIF orientation: read the image the way viewers show it.
            image = ImageOps.exif_transpose(opened)
            if image.mode == "I" or image.mode.startswith("I;16"):
                # 16-bit grayscale (PNG): Pillow's convert("L") clips every value over
                # 255 to white instead of rescaling; scale 0-65535 to 0-255.
                wide = np.asarray(image, np.float64) * (255.0 / 65535.0)
                image = Image.fromarray(np.clip(np.round(wide), 0, 255).astype(np.uint8), "L")
            image = image.convert("L" if image_shape[-1] == 1 else "RGB")
            array = np.asarray(image)
    except (OSError, UnidentifiedImageError, ValueError) as error:
        empty = " (the file is empty)" if os.path.getsize(path) == 0 else ""
        raise ValueError(f"Cannot read image {path}{empty}: {error}") from error
    refuse_smaller(array.shape, image_shape, str(path))
    return array if array.ndim == 3 else array[..., np.newaxis]


def file_shape(path: str | os.PathLike) -> tuple[int, int, int]:
    """`(height, width, channels)` of an image file as stored (1: grayscale, 3: colour),
    read from its header; an EXIF rotation by 90 degrees swaps height and width."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            width, height = image.size
            rotated = image.getexif().get(0x0112, 1) in (5, 6, 7, 8)  # EXIF Orientation
            gray = image.mode in ("1", "L", "LA", "I", "F") or image.mode.startswith("I;16")
    except (OSError, UnidentifiedImageError, ValueError) as error:
        raise ValueError(f"Cannot read image {path}: {error}") from error
    return (width, height, 1 if gray else 3) if rotated else (height, width, 1 if gray else 3)


def load_folder(
    folder: str | os.PathLike, image_shape, verbose: bool = True, files=None
) -> np.ndarray:
    """Reads the images under `folder` into a uint8 array (N, H, W, C).

    `files`: the files to read (for one split; `image_files(folder)` by default).
    """
    import keras

    files = image_files(folder) if files is None else files
    if verbose:
        print(f"Reading {len(files):,} images from {folder}")
    progress = keras.utils.Progbar(len(files), unit_name="image") if verbose else None
    images = np.empty((len(files), *image_shape), np.uint8)
    done, pending, failures = 0, [], []  # pending: decoded images of one size, unconverted

    def convert_pending():
        nonlocal done, pending
        if pending:
            # Converted together, as arrays are: TensorFlow's resize costs about 1 ms per
            # call, 7x the decoding of a small file.
            images[done : done + len(pending)] = fit_to_shape(np.stack(pending), image_shape)
            done, pending = done + len(pending), []

    for i, path in enumerate(files, start=1):
        try:
            array = _decode_image_file(path, image_shape)
        except ValueError as error:  # read on: name every bad file in one message
            failures.append(str(error))
        else:
            if pending and (array.shape != pending[0].shape
                            or len(pending) * array.nbytes >= FOLDER_CHUNK_BYTES):
                convert_pending()
            pending.append(array)
        if progress is not None and (i % 256 == 0 or i == len(files)):
            progress.update(i)
    convert_pending()
    if failures:
        more = len(failures) - MAX_FAILURES_SHOWN
        raise ValueError(  # one line, as the commands print their errors
            f"{len(failures)} of the {len(files):,} image files read under {folder} cannot be "
            f"used; remove or replace them. {'; '.join(failures[:MAX_FAILURES_SHOWN])}"
            + (f"; ... and {more} more." if more > 0 else "")
        )
    return images


def _split_held_out(
    images: np.ndarray, split: str, validation_fraction: float, keep_order: bool = False
) -> np.ndarray:
    """The training or the held-out rows of `images`.

    The held-out rows are a fixed pseudo-random `validation_fraction` of the
    rows (the same for every call with the same number of rows), each part in
    its original order: a folder's files are read sorted by path, so class
    subfolders come one after another, and holding out the last rows would
    hold out whole classes. `keep_order=True` holds out the last rows (for
    Fashion-MNIST, whose training file is already in mixed order, so that
    the shipped recipes keep their split).
    """
    count = len(images)
    held_out = _held_out_count(count, validation_fraction)
    if keep_order:
        return images[-held_out:] if split != "train" else images[:-held_out]
    order = np.random.default_rng(0).permutation(count)
    rows = order[-held_out:] if split != "train" else order[:-held_out]
    return images[np.sort(rows)]


def folder_split_rows(
    files: list[pathlib.Path], folder: str | os.PathLike, split: str,
    validation_fraction: float,
) -> np.ndarray:
    """The rows of `files` (from `image_files(folder)`) in one split, in file order.

    The held-out files are the `validation_fraction` whose relative paths hash
    lowest, so a file stays in its split when files are added or removed (a
    choice by row count moved most held-out files into training when one file
    was added: a fine-tuning or resumed run then validated on images it had
    trained on).
    """
    import hashlib

    count = _held_out_count(len(files), validation_fraction)
    folder = pathlib.Path(folder)
    keys = [
        hashlib.blake2b(f.relative_to(folder).as_posix().encode(), digest_size=8).digest()
        for f in files
    ]
    held_out = np.zeros(len(files), bool)
    held_out[sorted(range(len(files)), key=keys.__getitem__)[:count]] = True
    return np.flatnonzero(held_out if split != "train" else ~held_out)


def _held_out_count(count: int, validation_fraction: float) -> int:
    if not 0.0 < validation_fraction < 1.0:
        raise ValueError(
            f"`validation_fraction` must be in (0, 1). Received: {validation_fraction!r}"
        )
    held_out = max(1, int(round(count * validation_fraction)))
    if held_out >= count:
        raise ValueError(f"Too few images ({count}) to hold out a validation split.")
    return held_out


def _load_tfds(name: str, split: str, image_shape, validation_fraction: float) -> Split:
    import tensorflow_datasets as tfds

    try:
        builder = tfds.builder(name)
    except Exception as error:  # tfds raises its own DatasetNotFoundError
        raise ValueError(
            f"Unknown dataset {name!r}: not 'fashion_mnist', not an existing file or folder, "
            f"and not a tensorflow-datasets name ({str(error).splitlines()[0]})."
        ) from error
    available = set(builder.info.splits.keys()) if builder.info.splits else set()
    percent = int(round(100 * (1.0 - validation_fraction)))
    if split == "validation" and "validation" not in available:
        tfds_split = f"train[{percent}%:]"
    elif split == "train" and "validation" not in available:
        tfds_split = f"train[:{percent}%]"
    elif split == "test" and "test" not in available:
        tfds_split = "validation" if "validation" in available else f"train[{percent}%:]"
    else:
        tfds_split = split
    try:
        dataset = tfds.load(name, split=tfds_split)
    except Exception as error:  # a download, preparation or split failure of tfds
        raise ValueError(
            f"tensorflow-datasets could not load {name!r}: {type(error).__name__}: "
            f"{str(error).splitlines()[0][:300] if str(error) else ''} (it downloads and "
            "prepares a dataset on first use, which needs internet, into "
            "~/tensorflow_datasets or $TFDS_DATA_DIR)."
        ) from error
    num_examples = int(dataset.cardinality().numpy())
    height, width, channels = image_shape

    def convert(example):
        image = example["image"]
        if image.shape[-1] != channels:
            image = tf.image.rgb_to_grayscale(image) if channels == 1 else (
                tf.image.grayscale_to_rgb(image)
            )
        # Center crop to the model's aspect ratio (height / width), then resize.
        h, w = tf.shape(image)[0], tf.shape(image)[1]
        crop_h = tf.minimum(h, tf.cast(tf.round(tf.cast(w, tf.float32) * height / width), tf.int32))
        crop_w = tf.minimum(w, tf.cast(tf.round(tf.cast(h, tf.float32) * width / height), tf.int32))
        image = tf.image.resize_with_crop_or_pad(image, crop_h, crop_w)
        image = tf.image.resize(image, (height, width), antialias=True)
        return tf.clip_by_value(image / 255.0, 0.0, 1.0)

    dataset = dataset.map(convert, num_parallel_calls=tf.data.AUTOTUNE)
    return Split(None, dataset, num_examples, f"tfds:{name}[{tfds_split}]",
                 stands_in=None if tfds_split == split else tfds_split)


def load_split(
    source: str | os.PathLike | np.ndarray,
    split: str = "train",
    image_shape: tuple[int, int, int] = (28, 28, 1),
    validation_fraction: float = 0.1,
    verbose: bool = False,
) -> Split:
    """Loads one split of a dataset name, folder, numpy file or array.

    Args:
        source: `"fashion_mnist"`, a tensorflow-datasets name, a folder of
            images, a `.npy`/`.npz` path, or a numpy array.
        split: str. `"train"`, `"validation"` or `"test"`. Defaults to
            `"train"`.
        image_shape: tuple. `(height, width, channels)` the model expects.
            Defaults to `(28, 28, 1)`.
        validation_fraction: float. Share of the training images held out
            when the source has no validation split. Defaults to `0.1`.
        verbose: bool. Show a progress bar while reading a folder.
            Defaults to `False`.

    Returns:
        A `Split`.

    Raises:
        ValueError: an unknown `split` or dataset name, a file that is not a
            `.npy`/`.npz`, unreadable images, no images, or images smaller
            than `image_shape` (larger ones are cropped and resized down,
            other channel counts converted).
        FileNotFoundError: a path that does not exist.

    Example:
    >>> from trainers.data import load_split
    >>> split = load_split("fashion_mnist", "test")
    >>> split.num_examples
    10000
    """
    if split not in SPLITS:
        raise ValueError(f"`split` must be one of {list(SPLITS)}. Received: {split!r}")
    if not isinstance(source, (str, os.PathLike)):
        images = load_array(source)
        source_shape = stored_shape(images)
        images = _split_held_out(images, split, validation_fraction)
        images = fit_to_shape(images, image_shape)
        return Split(images, None, len(images), "array", source_shape,
                     "validation" if split == "test" else None)
    name = str(source)
    path = pathlib.Path(name).expanduser()
    if name == "fashion_mnist":
        if split == "test":
            images = load_fashion_mnist("test")
        else:
            images = _split_held_out(
                load_fashion_mnist("train"), split, validation_fraction, keep_order=True
            )
        source_shape = tuple(images.shape[1:])
    elif path.is_dir():
        # Only this split's files are decoded: the training and the held-out split
        # together decode each file once.
        files = image_files(path)
        source_shape = file_shape(files[0])
        rows = folder_split_rows(files, path, split, validation_fraction)
        images = load_folder(path, image_shape, verbose, files=[files[i] for i in rows])
    elif path.suffix.lower() in (".npy", ".npz"):
        images = load_array(path)
        source_shape = stored_shape(images)
        images = _split_held_out(images, split, validation_fraction)
    elif path.is_file():
        raise ValueError(
            f"{name} is a file, not a dataset: give the folder that holds the images, or a "
            ".npy/.npz file of images."
        )
    elif os.sep in name or path.suffix:
        raise FileNotFoundError(f"No such file or folder: {name}")
    else:
        return _load_tfds(name, split, image_shape, validation_fraction)
    images = fit_to_shape(images, image_shape, source=name)
    stands_in = "validation" if split == "test" and name != "fashion_mnist" else None
    return Split(images, None, len(images), name, source_shape, stands_in)


def make_dataset(
    split: Split,
    batch_size: int,
    shuffle: bool = True,
    repeat: bool = False,
    seed: int = 0,
    drop_remainder: bool = False,
    skip: int = 0,
    skip_epochs: int = 0,
) -> tf.data.Dataset:
    """A batched, prefetched `tf.data.Dataset` of float32 images in [0, 1].

    In-memory images stay uint8 (4x less memory) and are converted per batch.
    Streamed (tfds) images are cached in memory only when they are few
    (under ~1 GB as float32).

    Args:
        split: a `Split` from `load_split`.
        batch_size: int. The global batch size.
        shuffle: bool. Shuffle each epoch. Defaults to `True`.
        repeat: bool. Repeat forever. Defaults to `False`.
        seed: int. Shuffle seed. Defaults to `0`.
        drop_remainder: bool. Drop a last partial batch. Defaults to `False`.
        skip: int. Images of the repeated stream to pass over first (a resumed
            run continues the stream where its last finished epoch left it).
            Only with `repeat=True`. Defaults to `0`.
        skip_epochs: int. Epochs of the shuffled order to pass over first (a
            resumed run of whole epochs continues with the order its next
            epoch had). The dataset then repeats, each epoch ending with its
            own last partial batch, so `fit` needs `steps_per_epoch` (the
            batches of one epoch). Only with `repeat=False`. Defaults to `0`.

    Returns:
        A `tf.data.Dataset` yielding float32 batches (B, H, W, C).
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
        raise ValueError(f"`batch_size` must be a positive integer. Received: {batch_size!r}")
    if split.images is not None:
        dataset = tf.data.Dataset.from_tensor_slices(split.images)
        to_float = lambda x: tf.cast(x, tf.float32) / 255.0  # noqa: E731
    else:
        dataset = split.dataset
        shape = dataset.element_spec.shape
        size = split.num_examples * int(np.prod([d or 1 for d in shape])) * 4
        if size < 1 << 30:
            dataset = dataset.cache()
        to_float = None
    if shuffle:
        dataset = dataset.shuffle(min(split.num_examples, 50_000), seed=seed,
                                  reshuffle_each_iteration=True)
    if repeat:
        dataset = dataset.repeat()
        if skip:
            dataset = dataset.skip(skip)
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
    if skip_epochs:
        if repeat:
            raise ValueError(f"`skip_epochs` is for whole epochs, not with `repeat=True` (use "
                             f"`skip`). Received: skip_epochs={skip_epochs!r}, repeat=True")
        # Batched before repeating: epoch e of the stream is the e-th reshuffle, with its
        # own last batch, as when `fit` iterates the finite dataset once per epoch.
        per_epoch = (split.num_examples // batch_size if drop_remainder
                     else -(-split.num_examples // batch_size))
        dataset = dataset.repeat().skip(skip_epochs * per_epoch)
    if to_float is not None:
        dataset = dataset.map(to_float, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)
