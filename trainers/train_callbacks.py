"""The callbacks the train command adds to every run (beyond Keras's own)."""

import math
import pathlib

import keras
import numpy as np

from trainers import images as image_io


class StopOnNaN(keras.callbacks.Callback):
    """Stops training at the first NaN/Inf loss by raising, so nothing is saved.

    Keras's `TerminateOnNaN` stops at the end of the epoch, after which the
    epoch-end checkpoints would save the diverged weights. Raising instead
    leaves `last.keras`, `best.keras` and the `BackupAndRestore` state of the
    last good epoch untouched.
    """

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(np.asarray(loss).reshape(-1)[0])):
            raise FloatingPointError(
                f"Training diverged: loss is {float(np.asarray(loss).reshape(-1)[0])} at batch "
                f"{batch}. The checkpoints of the last completed epoch are kept; lower the "
                "learning rate and re-run the same command to resume from them."
            )


class ReconstructionGrid(keras.callbacks.Callback):
    """Writes a PNG of fixed validation images and their reconstructions each epoch.

    Args:
        images: float32 array (N, H, W, C) in [0, 1], a few images (8-16).
        directory: folder for `epoch_001.png`, `epoch_002.png`, ...
    """

    def __init__(self, images: np.ndarray, directory):
        super().__init__()
        self.images = np.asarray(images, np.float32)
        self.directory = pathlib.Path(directory)

    def on_epoch_end(self, epoch, logs=None):
        reconstructions = self.model.predict(self.images, verbose=0)
        image_io.save_comparison(
            self.images, reconstructions, self.directory / f"epoch_{epoch + 1:03d}.png"
        )
