"""PNG pictures of images and reconstructions, for people rather than programs."""

import os
import pathlib

import numpy as np


def image_grid(rows: list[np.ndarray], padding: int = 2) -> np.ndarray:
    """Tiles rows of images into one uint8 picture.

    Args:
        rows: list of float arrays (N, H, W, C) in [0, 1]; row i is drawn as
            the i-th strip. All rows must have the same image size.
        padding: int. Pixels of white between images. Defaults to `2`.

    Returns:
        uint8 array (rows * (H + p) + p, N * (W + p) + p, C).
    """
    if not rows:
        raise ValueError("`rows` must hold at least one row of images.")
    height, width, channels = np.asarray(rows[0]).shape[1:]
    columns = max(len(r) for r in rows)
    grid = np.full(
        (len(rows) * (height + padding) + padding, columns * (width + padding) + padding, channels),
        255,
        np.uint8,
    )
    for r, row in enumerate(rows):
        row = np.clip(np.asarray(row, np.float32), 0.0, 1.0)
        for c, image in enumerate(row):
            top, left = padding + r * (height + padding), padding + c * (width + padding)
            grid[top : top + height, left : left + width] = np.round(image * 255.0)
    return grid


def save_png(array: np.ndarray, path: str | os.PathLike, scale: int = 1) -> pathlib.Path:
    """Writes a uint8 (H, W, C) array as a PNG (C = 1 or 3), upscaled `scale` times."""
    from PIL import Image

    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    array = np.asarray(array, np.uint8)
    if scale > 1:
        array = array.repeat(scale, axis=0).repeat(scale, axis=1)
    image = Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array)
    image.save(path)
    return path


def save_comparison(originals, reconstructions, path, scale: int = 2) -> pathlib.Path:
    """Saves a two-row PNG: originals on top, their reconstructions below."""
    return save_png(image_grid([originals, reconstructions]), path, scale=scale)


def save_samples(samples, path, columns: int = 8, scale: int = 2) -> pathlib.Path:
    """Saves a PNG grid of samples, `columns` per row."""
    samples = np.asarray(samples)
    rows = [samples[i : i + columns] for i in range(0, len(samples), columns)]
    return save_png(image_grid(rows), path, scale=scale)
