"""Class labels aligned with `trainers.data.load_split`'s images.

`load_labels(source, split)` returns the int32 class ids of one split, in the
order of `load_split(source, split, ...).images` (the same held-out
validation), and `class_names(source)` their names in class-id order.

Labelled sources:
- `"fashion_mnist"`: the IDX label files beside the images
  (`train-labels-idx1-ubyte[.gz]`, `t10k-labels-idx1-ubyte[.gz]`).
- a `.npz` file with a `labels` array (and optionally `class_names`).
- a folder with one subfolder per class (ids in sorted subfolder order).

tensorflow-datasets streams are not supported (their images are streamed,
not held in memory); convert them to a `.npz` file first.
"""

import os
import pathlib

import numpy as np

from trainers import data, fashion_mnist

FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                         "Sneaker", "Bag", "Ankle boot")


def class_names(source: str | os.PathLike) -> list[str]:
    """The class names of a labelled source, in class-id order.

    Args:
        source: `"fashion_mnist"`, a `.npz` file or a folder (see the module).

    Returns:
        A list of `num_classes` names (for a `.npz` file without
        `class_names`: `"0"`, `"1"`, ...).

    Example:
    >>> from trainers.labels import class_names
    >>> class_names("fashion_mnist")[9]
    'Ankle boot'
    """
    name = str(source)
    if name == "fashion_mnist":
        return list(FASHION_MNIST_CLASSES)
    path = pathlib.Path(name).expanduser()
    if path.is_dir():
        return sorted({f.relative_to(path).parts[0] for f in _class_files(path)})
    if path.suffix.lower() == ".npz" and path.is_file():
        with np.load(path) as archive:
            if "class_names" in archive:
                try:
                    return [str(n) for n in archive["class_names"]]
                except ValueError as error:  # an object array: numpy will not unpickle it
                    raise ValueError(
                        f"`class_names` of {path} must be an array of strings "
                        "(np.savez(..., class_names=np.array(names, dtype=str))); it was "
                        f"saved as Python objects ({error})."
                    ) from error
        return [str(i) for i in range(int(_npz_labels(path).max()) + 1)]
    raise ValueError(
        f"No labels for {name!r}. Expected 'fashion_mnist', a .npz file with a `labels` array "
        "(and optionally `class_names`), or a folder with one subfolder per class."
    )


def load_labels(
    source: str | os.PathLike, split: str = "train", validation_fraction: float = 0.1
) -> np.ndarray:
    """The int32 class ids of one split, aligned with `data.load_split(source, split, ...)`.

    Args:
        source: `"fashion_mnist"`, a `.npz` file or a folder (see the module).
        split: `"train"`, `"validation"` or `"test"`.
        validation_fraction: float. As in `load_split`. Defaults to `0.1`.

    Returns:
        int32 array (N,): `labels[i]` is the class of `load_split(...).images[i]`.

    Example:
    >>> from trainers.labels import load_labels
    >>> load_labels("fashion_mnist", "test")[:3]
    array([9, 2, 1], dtype=int32)
    """
    if split not in data.SPLITS:
        raise ValueError(f"`split` must be one of {list(data.SPLITS)}. Received: {split!r}")
    names = class_names(source)  # refuses unlabelled sources
    path = pathlib.Path(str(source)).expanduser()
    is_fashion_mnist = str(source) == "fashion_mnist"
    if is_fashion_mnist:
        if split == "test":
            return fashion_mnist.load_fashion_mnist("test", labels=True).astype(np.int32)
        labels = fashion_mnist.load_fashion_mnist("train", labels=True)
    elif path.is_dir():
        files = _class_files(path)
        labels = np.array([names.index(f.relative_to(path).parts[0]) for f in files])
    else:
        labels = _npz_labels(path)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0:
        raise ValueError(
            f"Labels of {source} must be non-negative integers of shape (N,). Received dtype "
            f"{labels.dtype}, shape {labels.shape}."
        )
    if labels.max() >= len(names):
        # A prior reads id `num_classes` as "no condition": such a label must not train.
        raise ValueError(
            f"Labels of {source} must be class ids in [0, {len(names) - 1}], one per name of "
            f"its {len(names)} `class_names`. Received a label {int(labels.max())} (ids count "
            "from 0)."
        )
    if not is_fashion_mnist and not path.is_dir():
        images = _npz_image_count(path)
        if images is not None and images != len(labels):
            raise ValueError(
                f"{source} holds {images} images and {len(labels)} labels: one label per image."
            )
    # The same held-out rows as the images (a folder or array has no test split: its
    # validation part serves as "test", as in load_split).
    if path.is_dir() and not is_fashion_mnist:
        return labels[data.folder_split_rows(files, path, split, validation_fraction)].astype(
            np.int32)
    held_out = data._split_held_out(labels, split, validation_fraction, keep_order=is_fashion_mnist)
    return held_out.astype(np.int32)


def _class_files(folder: pathlib.Path) -> list[pathlib.Path]:
    files = data.image_files(folder)  # the order load_folder reads them in
    loose = [f for f in files if len(f.relative_to(folder).parts) < 2]
    if loose:
        raise ValueError(
            f"Labels of a folder come from its subfolders (one per class), but {loose[0]} lies "
            f"directly in {folder}."
        )
    return files


def _npz_image_count(path: pathlib.Path) -> int | None:
    """The number of images of a `.npz` file (read from its array header), or `None`
    when it holds none under the names `data.load_array` reads."""
    import zipfile

    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
        key = next((k for k in data.NPZ_IMAGE_KEYS if f"{k}.npy" in names), None)
        if key is None:
            return None
        with archive.open(f"{key}.npy") as member:
            version = np.lib.format.read_magic(member)
            read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                    else np.lib.format.read_array_header_2_0)
            shape = read(member)[0]
    return int(shape[0]) if shape else None


def _npz_labels(path: pathlib.Path) -> np.ndarray:
    with np.load(path) as archive:
        if "labels" not in archive:
            raise ValueError(f"{path} holds no `labels` array. Keys: {sorted(archive.keys())}")
        return np.asarray(archive["labels"])
