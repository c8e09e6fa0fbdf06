"""Fashion-MNIST from the Debian package `dataset-fashion-mnist`, with no download.

The package installs the four IDX files of the dataset (gzipped or not) under
`/usr/share/datasets/fashion-mnist/`; `FASHION_MNIST_DIR` in the environment
points elsewhere. `read_idx` parses any IDX file with numpy. Most callers use
`trainers.data.load_split("fashion_mnist", split)`, which holds out the
validation split.
"""

import gzip
import os
import pathlib
import zlib

import numpy as np

FASHION_MNIST_DIR = os.environ.get("FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist")
FASHION_MNIST_PACKAGE = "dataset-fashion-mnist"
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Parses an IDX file (gzipped or not) into a numpy array.

    Args:
        path: path of the file (`*.gz` is decompressed).

    Returns:
        The array, with the dtype and shape the header declares.
    """
    path = pathlib.Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (EOFError, gzip.BadGzipFile, zlib.error) as error:  # a cut or damaged .gz
        raise ValueError(f"{path} is truncated or corrupt: {error}") from error
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise ValueError(f"{path} is not an IDX file (bad magic number {data[:4]!r}).")
    ndim = data[3]
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(data) - header != expected:
        raise ValueError(
            f"{path} is truncated or corrupt: header says shape {shape} ({expected} bytes), "
            f"file holds {len(data) - header} bytes."
        )
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)


def _find_idx(directory: pathlib.Path, stem: str) -> pathlib.Path:
    for name in (stem, stem + ".gz"):
        if (directory / name).exists():
            return directory / name
    raise FileNotFoundError(
        f"Fashion-MNIST file {stem}[.gz] not found in {directory}. Install the Debian package: "
        f"`sudo apt-get install {FASHION_MNIST_PACKAGE}` (or set FASHION_MNIST_DIR)."
    )


def load_fashion_mnist(split: str, directory: str | None = None, labels: bool = False
                       ) -> np.ndarray:
    """Fashion-MNIST images of `"train"` (60,000) or `"test"` (10,000), uint8 (N, 28, 28, 1).

    With `labels=True`: the class ids instead, uint8 (N,) (`trainers.labels`).
    """
    directory = pathlib.Path(directory or FASHION_MNIST_DIR)
    kind = "-labels-idx1-ubyte" if labels else "-images-idx3-ubyte"
    array = read_idx(_find_idx(directory, ("train" if split == "train" else "t10k") + kind))
    return array if labels else array[..., np.newaxis]
