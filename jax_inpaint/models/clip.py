"""CLIP (vision transformer + text transformer + projections) as Flax modules, and the loaded `CLIP`.

The architecture is Hugging Face's `CLIPModel` (= OpenAI CLIP / open_clip ViT models): the vision
tower embeds patches plus a class token, applies `pre_layrnorm`, pre-LN blocks, and `post_layernorm`
on the class token; the text tower is causal and pools at the first end-of-text token. Any size is a
config (ViT-B/32, ViT-B/16, ViT-L/14, ...). Parameters carry Hugging Face's names
(`vision_model.encoder.layers_3.self_attn.q_proj.kernel` <- `vision_model.encoder.layers.3.self_attn.q_proj.weight`).

`CLIP.encode_image` takes NHWC images in [-1, 1] of any size and preprocesses them in JAX (resize
of the shorter side, centre crop, mean/std), so gradients reach whatever produced the images.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jax_inpaint.errors import InputError, notice
from jax_inpaint.models.transformer import EncoderConfig, Encoder, ImagePreprocess, VisionEmbeddings, layer_norm, preprocess
from jax_inpaint.models.variables import init_variables, input_shape, variable_shapes

Array = jax.Array
KIND = "clip"
TOKENIZER_DIR = "tokenizer"
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


# ----------------------------------------------------------------------------------------------
# Configuration.

@dataclasses.dataclass(frozen=True)
class CLIPVisionConfig:
    image_size: tuple[int, int]
    patch_size: tuple[int, int]
    num_channels: int
    encoder: EncoderConfig

    @property
    def num_positions(self) -> int:
        return (self.image_size[0] // self.patch_size[0]) * (self.image_size[1] // self.patch_size[1]) + 1


@dataclasses.dataclass(frozen=True)
class CLIPTextConfig:
    vocab_size: int
    max_position_embeddings: int
    eos_token_id: int  # pooling position: the first eos_token_id (2 = legacy: the largest id, as HF)
    encoder: EncoderConfig


@dataclasses.dataclass(frozen=True)
class CLIPConfig:
    vision: CLIPVisionConfig
    text: CLIPTextConfig
    projection_dim: int
    preprocess: ImagePreprocess

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], what: str = "CLIP config") -> "CLIPConfig":
        """From `to_dict`'s JSON (model.json), every field's type checked (nested configs too): one-line
        InputError. `validate` checks the values."""
        from jax_inpaint.models.folders import parse_config
        from jax_inpaint.models.transformer import check_image_config

        cfg = parse_config(cls, d, what)
        check_image_config(cfg.vision.image_size, cfg.vision.patch_size, cfg.vision.num_channels, cfg.preprocess, what)
        if min(cfg.projection_dim, cfg.text.vocab_size, cfg.text.max_position_embeddings) < 1:
            raise InputError(f"{what}: projection_dim, vocab_size and max_position_embeddings must be positive")
        return cfg

    def validate(self, what: str) -> "CLIPConfig":
        self.vision.encoder.validate(f"{what}: vision")
        self.text.encoder.validate(f"{what}: text")
        if any(i < p for i, p in zip(self.vision.image_size, self.vision.patch_size)):
            raise InputError(f"{what}: image_size {self.vision.image_size} is smaller than patch_size "
                             f"{self.vision.patch_size}")
        return self


def vit_b16_config() -> CLIPConfig:
    """OpenAI CLIP ViT-B/16 (for benchmarks and tests with random weights)."""
    return CLIPConfig(
        vision=CLIPVisionConfig((224, 224), (16, 16), 3, EncoderConfig(768, 12, 12, 3072, "quick_gelu", 1e-5)),
        text=CLIPTextConfig(49408, 77, 49407, EncoderConfig(512, 12, 8, 2048, "quick_gelu", 1e-5)),
        projection_dim=512,
        preprocess=ImagePreprocess("shortest_edge", (224, 224), (224, 224), OPENAI_MEAN, OPENAI_STD, "cubic"))


# ----------------------------------------------------------------------------------------------
# Modules.

class CLIPVisionTransformer(nn.Module):
    config: CLIPVisionConfig

    @nn.compact
    def __call__(self, pixel_values: Array) -> tuple[Array, Array]:
        """pixel_values [N, H, W, C] (normalised) -> (last_hidden_state [N, T, D], pooled [N, D])."""
        cfg = self.config
        enc = cfg.encoder
        x = VisionEmbeddings(enc.hidden_size, cfg.patch_size, cfg.num_positions, patch_bias=False,
                             name="embeddings")(pixel_values)
        x = layer_norm(enc.layer_norm_eps, "pre_layrnorm")(x)
        x = Encoder(enc, name="encoder")(x)
        pooled = layer_norm(enc.layer_norm_eps, "post_layernorm")(x[:, 0])
        return x, pooled


class CLIPTextEmbeddings(nn.Module):
    config: CLIPTextConfig

    @nn.compact
    def __call__(self, ids: Array) -> Array:
        cfg = self.config
        d = cfg.encoder.hidden_size
        tok = nn.Embed(cfg.vocab_size, d, embedding_init=nn.initializers.normal(0.02), name="token_embedding")(ids)
        pos = nn.Embed(cfg.max_position_embeddings, d, embedding_init=nn.initializers.normal(0.01),
                       name="position_embedding")(jnp.arange(ids.shape[1]))
        return tok + pos[None]


class CLIPTextTransformer(nn.Module):
    config: CLIPTextConfig

    @nn.compact
    def __call__(self, ids: Array, mask: Array | None = None) -> tuple[Array, Array]:
        """ids int [N, L] (L <= max_position_embeddings), mask [N, L] (1 = token, 0 = padding) or None
        -> (last_hidden_state [N, L, D], pooled [N, D] at the first end-of-text token)."""
        cfg = self.config
        n, length = ids.shape
        if length > cfg.max_position_embeddings:
            raise InputError(f"token sequences of {length} exceed the model's {cfg.max_position_embeddings} positions")
        x = CLIPTextEmbeddings(cfg, name="embeddings")(ids)
        attend = jnp.tril(jnp.ones((length, length), bool))[None, None]  # causal [1, 1, L, L]
        if mask is not None:
            attend = attend & (jnp.asarray(mask) > 0)[:, None, None, :]
        x = Encoder(cfg.encoder, name="encoder")(x, attend)
        x = layer_norm(cfg.encoder.layer_norm_eps, "final_layer_norm")(x)
        if cfg.eos_token_id == 2:  # configs from before transformers PR #24773: EOT is the largest id
            pos = jnp.argmax(ids, axis=-1)
        else:
            pos = jnp.argmax(ids == cfg.eos_token_id, axis=-1)
        return x, x[jnp.arange(n), pos]


class CLIPModule(nn.Module):
    config: CLIPConfig

    def setup(self):
        cfg = self.config
        self.vision_model = CLIPVisionTransformer(cfg.vision)
        self.text_model = CLIPTextTransformer(cfg.text)
        self.visual_projection = nn.Dense(cfg.projection_dim, use_bias=False)
        self.text_projection = nn.Dense(cfg.projection_dim, use_bias=False)
        self.logit_scale = self.param("logit_scale", nn.initializers.constant(np.log(1 / 0.07)), ())

    def __call__(self, pixel_values: Array, ids: Array) -> Array:
        """logits_per_image [N_images, N_texts] (used to create all parameters)."""
        img = _unit(self.image_features(pixel_values))
        txt = _unit(self.text_features(ids))
        return jnp.exp(self.logit_scale) * img @ txt.T

    def image_features(self, pixel_values: Array) -> Array:
        return self.visual_projection(self.vision_model(pixel_values)[1])

    def text_features(self, ids: Array, mask: Array | None = None) -> Array:
        return self.text_projection(self.text_model(ids, mask)[1])

    def vision_outputs(self, pixel_values: Array) -> tuple[Array, Array]:
        return self.vision_model(pixel_values)

    def text_outputs(self, ids: Array, mask: Array | None = None) -> tuple[Array, Array]:
        return self.text_model(ids, mask)

    def scale(self) -> Array:
        return self.logit_scale


def _unit(x: Array) -> Array:
    return x / jnp.linalg.norm(x, axis=-1, keepdims=True)


def cosine(a: Array, b: Array) -> Array:
    """Cosine similarity of every row of a [N, D] with every row of b [M, D] -> [N, M]."""
    return _unit(a) @ _unit(b).T


# ----------------------------------------------------------------------------------------------
# The loaded model.

class CLIP:
    """A loaded CLIP model. Methods taking `params` first are pure (use them inside jit/grad/vmap)."""

    def __init__(self, config: CLIPConfig, params: Mapping, folder: str | None = None, tokenizer=None):
        """`tokenizer`: a loaded tokenizer (`load_tokenizer`), for a model not (yet) in a folder."""
        self.config = config
        self.module = CLIPModule(config)
        self.params = jax.tree.map(jnp.asarray, params)
        self.folder = folder
        self._tokenizer = tokenizer

    @property
    def input_size(self) -> tuple[int, int]:
        """(H, W) the vision tower takes."""
        return self.config.vision.image_size

    @property
    def context_length(self) -> int:
        return self.config.text.max_position_embeddings

    def _apply(self, params, method, *args):
        return self.module.apply({"params": params}, *args, method=method)

    # Pure functions --------------------------------------------------------------------------
    def preprocess(self, images: Array) -> Array:
        """[N,H,W,3] in [-1,1], any size -> normalised [N, *input_size, 3] (no resampling at input size)."""
        return preprocess(images, self.config.preprocess, self.input_size)

    def image_features(self, params, pixel_values: Array) -> Array:
        """Normalised pixel values [N, *input_size, 3] -> image embeddings [N, projection_dim] (not unit)."""
        return self._apply(params, CLIPModule.image_features, pixel_values)

    def encode_image(self, params, images: Array) -> Array:
        """Images NHWC in [-1, 1], any size -> image embeddings [N, projection_dim] (not unit)."""
        return self.image_features(params, self.preprocess(images))

    def encode_text(self, params, ids: Array, mask: Array | None = None) -> Array:
        """Token ids [N, L] (from `tokenize`), optional mask [N, L] -> text embeddings [N, projection_dim]."""
        return self._apply(params, CLIPModule.text_features, jnp.asarray(ids, jnp.int32), mask)

    def similarity(self, params, images: Array, text_embeds: Array) -> Array:
        """Cosine similarity of each image [N,H,W,3] with each text embedding [P, D] -> [N, P]."""
        return cosine(self.encode_image(params, images), text_embeds)

    def logit_scale(self, params) -> Array:
        """exp(logit_scale): CLIP's logits are this times the cosine similarity."""
        return jnp.exp(params["logit_scale"])

    def vision_outputs(self, params, pixel_values: Array) -> tuple[Array, Array]:
        """(last_hidden_state [N, T, D] before post_layernorm, pooled [N, D]), as HF's vision_model."""
        return self._apply(params, CLIPModule.vision_outputs, pixel_values)

    def text_outputs(self, params, ids: Array, mask: Array | None = None) -> tuple[Array, Array]:
        """(last_hidden_state [N, L, D] after final_layer_norm, pooled [N, D]), as HF's text_model."""
        return self._apply(params, CLIPModule.text_outputs, jnp.asarray(ids, jnp.int32), mask)

    # Text ------------------------------------------------------------------------------------
    @property
    def tokenizer(self):
        """transformers' CLIPTokenizer, read from the model folder's tokenizer/ files."""
        if self._tokenizer is None:
            path = None if self.folder is None else os.path.join(self.folder, TOKENIZER_DIR)
            if path is None or not os.path.isdir(path):
                raise InputError(f"{self.folder or 'this CLIP model'}: has no tokenizer; convert it with "
                                 "`jax-inpaint convert clip SRC DEST --tokenizer DIR` (DIR: a folder with "
                                 "vocab.json and merges.txt, e.g. a Hugging Face CLIP checkpoint)")
            self._tokenizer = load_tokenizer(path)
        return self._tokenizer

    def tokenize(self, texts: Sequence[str], return_mask: bool = False):
        """Texts -> ids int32 [N, context_length]: <|startoftext|> ... <|endoftext|>, padded as the
        tokenizer folder says, truncated with the end token kept; with return_mask also the mask."""
        if isinstance(texts, str):
            texts = [texts]
        for text in texts:
            n = len(self.tokenizer.tokenize(text)) + 2  # with <|startoftext|> and <|endoftext|>
            if n > self.context_length:
                notice(f"the prompt {_short(text)} is {n} tokens long; CLIP reads the first {self.context_length} "
                       "(the rest is ignored)")
        out = self.tokenizer(list(texts), padding="max_length", max_length=self.context_length, truncation=True,
                             return_tensors="np")
        ids = out["input_ids"].astype(np.int32)
        return (ids, out["attention_mask"].astype(np.int32)) if return_mask else ids


def _short(text: str, n: int = 40) -> str:
    return repr(text if len(text) <= n else text[:n] + "...")


def load_tokenizer(path: str):
    from transformers import CLIPTokenizer

    try:
        return CLIPTokenizer.from_pretrained(path)
    except Exception as e:  # transformers raises OSError, ValueError, TypeError... for bad folders
        raise InputError(f"{path}: not a CLIP tokenizer folder ({type(e).__name__}: {e})") from None


def module_inputs(config: CLIPConfig) -> tuple:
    """Shapes of the inputs of `CLIPModule.init`: (pixel values [1, H, W, C], token ids [1, L])."""
    return (input_shape(1, *config.vision.image_size, config.vision.num_channels),
            input_shape(1, config.text.max_position_embeddings, dtype=jnp.int32))


def init_params(config: CLIPConfig, *, key: Array) -> dict:
    """Randomly initialised parameters (benchmarks, tests)."""
    return init_variables(CLIPModule(config), module_inputs(config), key)["params"]


def expected_params(config: CLIPConfig) -> dict:
    """Shapes (jax.ShapeDtypeStruct) of every parameter, nested as the module's params."""
    return variable_shapes(CLIPModule(config), module_inputs(config))["params"]


def load_clip(folder) -> CLIP:
    """Load a model folder written by `jax-inpaint convert clip` (or a shipped model name)."""
    from jax_inpaint.models.folders import load_params_folder

    folder, cfg, params = load_params_folder(folder, KIND, CLIPConfig, expected_params, "CLIP")
    return CLIP(cfg, params, folder=folder)
