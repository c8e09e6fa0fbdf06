"""An autoencoder model zoo for Keras 3 / TensorFlow.

Public names: `AE`, `VAE`, `VQVAE`, `DVAE` (the four families), `DalleDVAE`
(OpenAI's DALL-E dVAE architecture, a `DVAE`), `TransformerPrior` and
`ImageGenerator` (generation from class names), and the pretrained registry
`load` and `list_models`.

Importing the zoo before TensorFlow turns on TensorFlow's oneDNN kernels on
x86-64 Linux CPUs where TensorFlow leaves them off (`zoo.runtime`).
"""

from zoo import runtime

runtime.prefer_onednn()  # before the imports below load TensorFlow (see zoo/runtime.py)

from zoo.models.ae import AE
from zoo.models.dalle_dvae import DalleDVAE
from zoo.models.dvae import DVAE
from zoo.models.image_generator import ImageGenerator
from zoo.models.transformer_prior import TransformerPrior
from zoo.models.vae import VAE
from zoo.models.vqvae import VQVAE
from zoo.presets import list_models, load

FAMILIES = {"ae": AE, "vae": VAE, "vqvae": VQVAE, "dvae": DVAE}

__all__ = [
    "AE",
    "DVAE",
    "FAMILIES",
    "VAE",
    "VQVAE",
    "DalleDVAE",
    "ImageGenerator",
    "TransformerPrior",
    "list_models",
    "load",
]
