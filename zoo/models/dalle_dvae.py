"""OpenAI's DALL-E dVAE: the architecture of the `dall-e` package as a zoo dVAE."""

import keras

from zoo import validation
from zoo.blocks import LEGACY_LAYOUT
from zoo.dalle_blocks import GROUP_COUNT, DalleDecoder, DalleEncoder
from zoo.models.dvae import DVAE

_NOT_DALLE_ARGUMENTS = {
    "filters": "n_hid",
    "num_res_blocks": "n_blk_per_group",
    "max_filters": "n_hid",
    "num_downsamples": "nothing (the grid is always 1/8 of the image)",
    "num_embeddings": "vocab_size",
    "embedding_dim": "n_init",
    "likelihood": "nothing (always logit-Laplace)",
    # The zoo's layout arguments shape `zoo.blocks` stacks, which DALL-E's do not use:
    # accepted, they were silently ignored.
    **{name: "nothing (DALL-E's layout is fixed)" for name in LEGACY_LAYOUT},
}


@keras.saving.register_keras_serializable(package="zoo")
class DalleDVAE(DVAE):
    """The discrete VAE of DALL-E with the architecture OpenAI released.

    A `zoo.DVAE` whose encoder and decoder are those of the `dall-e` package
    (`dall_e.Encoder`, `dall_e.Decoder`; see `zoo.dalle_blocks`), so OpenAI's
    trained weights convert onto it one to one
    (`python -m trainers.convert_dalle`, or `DalleDVAE.from_state_dicts`)
    and it behaves as any zoo dVAE: `encode` gives int32 codes (B, H/8, W/8),
    `decode` maps codes back to images in [0, 1], `fit` trains with the
    Gumbel-softmax relaxation (anneal with
    `trainers.callbacks.TemperatureAnnealing`), and `zoo.export` serves it.

    DALL-E's first decoder layer, a 1x1 convolution over the one-hot code
    (weights `(n_init, vocab_size, 1, 1)`), is the quantizer's codebook
    (`embeddings`, shape `(vocab_size, n_init)`) plus the decoder's
    `input_bias`: exact for one-hot codes and for the relaxed samples of
    training alike. The likelihood is always DALL-E's logit-Laplace: the
    encoder maps pixels into [eps, 1 - eps] (`map_pixels`), the decoder
    outputs the location logits (first `C` channels) and log-scales, and
    reconstructions are `unmap_pixels(sigmoid(location))`.

    Args:
        image_shape: tuple. Nominal `(height, width, channels)`; height and
            width multiples of 8. Defaults to `(256, 256, 3)`.
        n_hid: int. Width of the encoder's first group (the decoder's last);
            the widest groups have `8 * n_hid` channels. Defaults to `256`.
        n_blk_per_group: int. Residual blocks in each of the four groups.
            Defaults to `2`.
        vocab_size: int. Codebook size K (`num_embeddings` of the zoo).
            Defaults to `8192`.
        n_init: int. Size of a code vector (`embedding_dim` of the zoo).
            Defaults to `128`.
        kl_weight: float. Weight of the per-pixel KL to the uniform prior.
            Defaults to `6.6` (the DALL-E paper's final weight, for this
            logit-Laplace likelihood).
        temperature: float. Initial Gumbel-softmax temperature. Defaults to
            `1.0` (the start of DALL-E's schedule; converted weights are
            stored at its end, `1/16`).
        straight_through: bool. Hard samples in the forward pass.
            Defaults to `False`.
        logit_laplace_eps: float. The eps of `map_pixels`/`unmap_pixels`.
            Defaults to `0.1`.
        diversity_weight: float. See `zoo.DVAE`. Defaults to `0.0`.
        seed: int. Seed of the Gumbel noise. Defaults to `0`.
        **kwargs: Standard `keras.Model` arguments (`name`; the
            precision is the global policy's).

    Example:
    >>> import numpy as np
    >>> import zoo
    >>> model = zoo.DalleDVAE(image_shape=(32, 32, 3), n_hid=16, n_blk_per_group=1,
    ...                       vocab_size=64, n_init=8)
    >>> codes = model.encode(np.random.rand(2, 32, 32, 3).astype("float32"))
    >>> tuple(codes.shape)  # int32 codes, 1/8 of the image size
    (2, 4, 4)
    >>> tuple(model.decode(codes).shape)
    (2, 32, 32, 3)

    References:
        - [Ramesh et al., 2021](https://arxiv.org/abs/2102.12092)
        - [openai/DALL-E](https://github.com/openai/DALL-E) (`dall-e` 0.1)
    """

    def __init__(
        self,
        image_shape: tuple[int, int, int] = (256, 256, 3),
        n_hid: int = 256,
        n_blk_per_group: int = 2,
        vocab_size: int = 8192,
        n_init: int = 128,
        kl_weight: float = 6.6,
        temperature: float = 1.0,
        straight_through: bool = False,
        logit_laplace_eps: float = 0.1,
        diversity_weight: float = 0.0,
        seed: int = 0,
        **kwargs,
    ):
        for name in kwargs.keys() & _NOT_DALLE_ARGUMENTS.keys():
            raise TypeError(
                f"DalleDVAE does not take `{name}`; its DALL-E argument is "
                f"{_NOT_DALLE_ARGUMENTS[name]}. Received: {name}={kwargs[name]!r}"
            )
        # Set before the base constructor, which calls `_make_encoder`.
        self.n_hid = validation.positive_int("n_hid", n_hid)
        if self.n_hid % 4:
            raise ValueError(
                "`n_hid` must be a multiple of 4 (the residual blocks are n_hid / 4 wide "
                f"inside). Received: n_hid={n_hid!r}"
            )
        self.n_blk_per_group = validation.positive_int("n_blk_per_group", n_blk_per_group)
        validation.positive_int("vocab_size", vocab_size)  # named as the caller named them
        validation.positive_int("n_init", n_init)
        super().__init__(
            num_embeddings=vocab_size,
            embedding_dim=n_init,
            kl_weight=kl_weight,
            temperature=temperature,
            straight_through=straight_through,
            likelihood="logit_laplace",
            logit_laplace_eps=logit_laplace_eps,
            diversity_weight=diversity_weight,
            seed=seed,
            image_shape=image_shape,
            num_downsamples=GROUP_COUNT - 1,
            **kwargs,
        )

    @property
    def vocab_size(self) -> int:
        """The codebook size K (DALL-E's name for `num_embeddings`)."""
        return self.quantizer.num_embeddings

    @property
    def n_init(self) -> int:
        """The code-vector size (DALL-E's name for `embedding_dim`)."""
        return self.quantizer.embedding_dim

    def _stack_kwargs(self) -> dict:
        return {"n_hid": self.n_hid, "n_blk_per_group": self.n_blk_per_group}

    def _full_resolution_width(self) -> int:
        return self.n_hid  # the first encoder group and the last decoder group

    def _make_encoder(self, output_channels: int) -> DalleEncoder:
        return DalleEncoder(
            output_channels,
            logit_laplace_eps=self.logit_laplace_eps,
            name="encoder",
            **self._stack_kwargs(),
        )

    def _make_decoder(self, output_channels: int) -> DalleDecoder:
        return DalleDecoder(
            output_channels,
            n_init=self.quantizer.embedding_dim,
            name="decoder",
            **self._stack_kwargs(),
        )

    @classmethod
    def from_state_dicts(cls, encoder_state: dict, decoder_state: dict, **kwargs) -> "DalleDVAE":
        """Builds the model from `dall_e.Encoder`/`Decoder` state dicts as numpy arrays.

        The architecture (`n_hid`, `n_blk_per_group`, `vocab_size`,
        `n_init`, channels) is read from the arrays' shapes; every array is
        converted (OIHW -> HWIO) and assigned. See `zoo.dalle_weights`.

        Args:
            encoder_state: dict. PyTorch key -> numpy array of the encoder.
            decoder_state: dict. The same for the decoder.
            **kwargs: Other constructor arguments (`image_shape` height and
                width, `temperature`, `kl_weight`, ...).

        Returns:
            The model, with the converted weights.

        Example:
        >>> import zoo
        >>> from zoo import dalle_weights
        >>> small = zoo.DalleDVAE(image_shape=(32, 32, 3), n_hid=16, n_blk_per_group=1,
        ...                       vocab_size=64, n_init=8)
        >>> # PyTorch-layout arrays, as `dalle_weights.read_npz(path)` returns them:
        >>> encoder_state, decoder_state = dalle_weights.state_dicts(small)
        >>> model = zoo.DalleDVAE.from_state_dicts(
        ...     encoder_state, decoder_state, image_shape=(32, 32, 3))
        >>> model.get_config()["vocab_size"], model.get_config()["n_hid"]
        (64, 16)
        """
        from zoo import dalle_weights

        config = dalle_weights.config_from_state_dicts(encoder_state, decoder_state)
        channels = config.pop("channels")
        height, width, given = kwargs.pop("image_shape", (256, 256, channels))
        if given != channels:
            raise ValueError(
                f"The state dicts are for {channels}-channel images. "
                f"Received: image_shape with {given} channels."
            )
        model = cls(image_shape=(height, width, channels), **config, **kwargs)
        dalle_weights.assign(model, encoder_state, decoder_state)
        return model

    @classmethod
    def from_config(cls, config):
        # Not the base class's: its configs never held the zoo's layout keys, so
        # there is no legacy layout to fill in (and DalleDVAE refuses those keys).
        return cls(**config)

    def get_config(self):
        config = super().get_config()
        del config["likelihood"]
        config["vocab_size"] = config.pop("num_embeddings")
        config["n_init"] = config.pop("embedding_dim")
        return config
