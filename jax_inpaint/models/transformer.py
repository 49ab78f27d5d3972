"""Pieces shared by the CLIP towers and the ViT classifier: pre-LN transformer blocks, patch
embeddings, activations, and the differentiable image preprocessing of Hugging Face image processors.

Submodules carry Hugging Face CLIP's names (`layer_norm1`, `self_attn.q_proj`, `mlp.fc1`, ...), so
converters are flat name tables plus transposes. Layouts are JAX's: dense kernels [in, out],
convolution kernels HWIO, images NHWC, token sequences [N, T, D].
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jax_inpaint.errors import InputError
from jax_inpaint.models.resize import resize

Array = jax.Array


# ----------------------------------------------------------------------------------------------
# Activations: the names and formulas of transformers' ACT2FN (the parameter-free ones).

def _gelu_tanh(x):
    return 0.5 * x * (1.0 + jnp.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


ACTIVATIONS: dict[str, Callable[[Array], Array]] = {
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),
    "gelu_python": lambda x: jax.nn.gelu(x, approximate=False),
    "gelu_10": lambda x: jnp.clip(jax.nn.gelu(x, approximate=False), -10.0, 10.0),
    "gelu_new": _gelu_tanh,
    "gelu_pytorch_tanh": _gelu_tanh,
    "gelu_python_tanh": _gelu_tanh,
    "gelu_accurate": _gelu_tanh,
    "gelu_fast": lambda x: 0.5 * x * (1.0 + jnp.tanh(x * 0.7978845608 * (1.0 + 0.044715 * x * x))),
    "quick_gelu": lambda x: x * jax.nn.sigmoid(1.702 * x),
    "relu": jax.nn.relu,
    "relu2": lambda x: jnp.square(jax.nn.relu(x)),
    "relu6": jax.nn.relu6,
    "leaky_relu": lambda x: jax.nn.leaky_relu(x, 0.01),
    "silu": jax.nn.silu,
    "swish": jax.nn.silu,
    "sigmoid": jax.nn.sigmoid,
    "tanh": jnp.tanh,
    "mish": lambda x: x * jnp.tanh(jax.nn.softplus(x)),
    "hardswish": jax.nn.hard_swish,
    "sqrtsoftplus": lambda x: jnp.sqrt(jax.nn.softplus(x)),
    "laplace": lambda x: 0.5 * (1.0 + jax.lax.erf((x - 0.707107) / (0.282095 * math.sqrt(2.0)))),
    "linear": lambda x: x,
}


def check_activation(name: str, what: str) -> str:
    if name not in ACTIVATIONS:
        raise InputError(f"{what}: unsupported hidden_act {name!r} (supported: {', '.join(sorted(ACTIVATIONS))})")
    return name


def pair(v, what: str = "size") -> tuple[int, int]:
    """An int or a 2-sequence -> (h, w)."""
    if isinstance(v, (int, np.integer)):
        return int(v), int(v)
    if isinstance(v, Mapping):
        return int(v["height"]), int(v["width"])
    if isinstance(v, Sequence) and len(v) == 2:
        return int(v[0]), int(v[1])
    raise InputError(f"{what}: expected an int or [height, width], got {v!r}")


# ----------------------------------------------------------------------------------------------
# Configuration.

MAX_LAYERS = 1024  # more is refused: tracing the model would take hours (a hostile config)


@dataclasses.dataclass(frozen=True)
class EncoderConfig:
    """A stack of pre-LN transformer blocks (Hugging Face CLIP / ViT layout)."""
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    hidden_act: str = "quick_gelu"
    layer_norm_eps: float = 1e-5
    qkv_bias: bool = True
    head_dim: int | None = None  # default hidden_size // num_heads

    @property
    def dim_per_head(self) -> int:
        return self.head_dim or self.hidden_size // self.num_heads

    def validate(self, what: str) -> "EncoderConfig":
        check_activation(self.hidden_act, what)
        if min(self.hidden_size, self.num_layers, self.num_heads, self.intermediate_size) <= 0:
            raise InputError(f"{what}: sizes must be positive ({self})")
        if self.num_layers > MAX_LAYERS or self.num_heads > self.hidden_size:
            raise InputError(f"{what}: {self.num_layers} layers of {self.num_heads} heads: at most {MAX_LAYERS} "
                             "layers and hidden_size heads (a hostile or corrupt config?)")
        if self.head_dim is None and self.hidden_size % self.num_heads:
            raise InputError(f"{what}: hidden_size {self.hidden_size} is not divisible by "
                             f"num_attention_heads {self.num_heads}")
        return self

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "EncoderConfig":
        return cls(**{f.name: d[f.name] for f in dataclasses.fields(cls) if f.name in d})


@dataclasses.dataclass(frozen=True)
class ImagePreprocess:
    """What a Hugging Face image processor does, as a differentiable JAX function of [-1, 1] images.

    resize: 'shortest_edge' (CLIPImageProcessor: the shorter side to `size[0]`, aspect kept, then
    a centre crop to `crop`), 'exact' (ViTImageProcessor: to `size`) or 'none'. mean / std apply
    to [0, 1] values. `resample` is a jax.image.resize method ('cubic', 'linear', 'lanczos3',
    'nearest') or 'area'.
    """
    resize: str = "exact"
    size: tuple[int, int] = (224, 224)
    crop: tuple[int, int] | None = None
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    resample: str = "linear"

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ImagePreprocess":
        d = dict(d)
        d["size"] = tuple(d["size"])
        d["crop"] = None if d.get("crop") is None else tuple(d["crop"])
        d["mean"], d["std"] = tuple(d["mean"]), tuple(d["std"])
        return cls(**d)


# PIL resample codes (as stored in preprocessor_config.json) -> our resize methods.
PIL_RESAMPLE = {0: "nearest", 1: "lanczos3", 2: "linear", 3: "cubic", 4: "area", 5: "linear"}


def check_image_config(image_size, patch_size, num_channels: int, prep: ImagePreprocess, what: str) -> None:
    """The values (not only the types) of a vision tower's input description, read from model.json."""
    if min(*image_size, *patch_size, num_channels) < 1:
        raise InputError(f"{what}: image_size, patch_size and num_channels must be positive")
    if prep.resize not in ("exact", "shortest_edge", "none"):
        raise InputError(f"{what}: preprocess.resize must be exact, shortest_edge or none, got {prep.resize!r:.40}")
    if prep.resample not in set(PIL_RESAMPLE.values()):
        raise InputError(f"{what}: preprocess.resample {prep.resample!r:.40} is not one of "
                         f"{sorted(set(PIL_RESAMPLE.values()))}")
    if min(prep.size) < 1 or (prep.crop is not None and min(prep.crop) < 1) or 0.0 in prep.std:
        raise InputError(f"{what}: preprocess sizes must be positive and std non-zero")


# ----------------------------------------------------------------------------------------------
# Preprocessing (the resizing itself is models/resize.py).

def shortest_edge_size(h: int, w: int, edge: int) -> tuple[int, int]:
    """Output size of transformers' shortest-edge resize (the long side truncated, as HF does)."""
    short, long = (h, w) if h <= w else (w, h)
    new_short, new_long = edge, int(edge * long / short)
    return (new_short, new_long) if h <= w else (new_long, new_short)


def preprocess(images: Array, prep: ImagePreprocess, input_size: tuple[int, int]) -> Array:
    """[N,H,W,3] in [-1, 1] -> normalised [N, *input_size, 3] model input.

    Images already at `input_size` are not resampled (nor cropped, nor clipped). Resampled values
    are clipped to [0, 1], as PIL's uint8 results are. Shapes are static, so this runs inside jit /
    grad / vmap.
    """
    x = (jnp.asarray(images, jnp.float32) + 1.0) * 0.5  # [0, 1]
    if x.ndim != 4 or x.shape[-1] != len(prep.mean):
        raise InputError(f"images must be [N, H, W, {len(prep.mean)}], got shape {x.shape}")
    h, w = x.shape[1:3]
    if (h, w) != tuple(input_size):
        if prep.resize == "shortest_edge":
            x = resize(x, shortest_edge_size(h, w, prep.size[0]), prep.resample)
        elif prep.resize == "exact":
            x = resize(x, prep.size, prep.resample)
        if prep.crop is not None:
            x = center_crop(x, prep.crop)
        x = jnp.clip(x, 0.0, 1.0)  # PIL resamples uint8 images: its overshoot is clipped
        if x.shape[1:3] != tuple(input_size):
            raise InputError(f"a {h}x{w} image becomes {x.shape[1]}x{x.shape[2]} after the model's preprocessing, "
                             f"but the model takes {input_size[0]}x{input_size[1]}")
    mean = jnp.asarray(prep.mean, jnp.float32)
    std = jnp.asarray(prep.std, jnp.float32)
    return (x - mean) / std


def center_crop(x: Array, size: tuple[int, int]) -> Array:
    """Centre crop [N,H,W,C] to size (offsets floored, as transformers' center_crop)."""
    h, w = x.shape[1:3]
    ch, cw = size
    if ch > h or cw > w:
        raise InputError(f"cannot centre-crop a {h}x{w} image to {ch}x{cw}")
    top, left = (h - ch) // 2, (w - cw) // 2
    return x[:, top:top + ch, left:left + cw]


# ----------------------------------------------------------------------------------------------
# Modules.

def layer_norm(eps: float, name: str) -> nn.LayerNorm:
    # Two-pass variance, as torch's LayerNorm: E[x^2] - E[x]^2 loses digits when |mean| >> std.
    return nn.LayerNorm(epsilon=eps, use_fast_variance=False, name=name)


class Attention(nn.Module):
    """Multi-head self-attention. x [N, T, D], mask bool broadcastable to [N, 1, T, T] (True = attend)."""
    num_heads: int
    head_dim: int
    qkv_bias: bool = True

    @nn.compact
    def __call__(self, x: Array, mask: Array | None = None) -> Array:
        n, t, d = x.shape
        inner = self.num_heads * self.head_dim

        def heads(name, bias):
            return nn.Dense(inner, use_bias=bias, name=name)(x).reshape(n, t, self.num_heads, self.head_dim)

        q, k, v = heads("q_proj", self.qkv_bias), heads("k_proj", self.qkv_bias), heads("v_proj", self.qkv_bias)
        logits = jnp.einsum("nqhd,nkhd->nhqk", q, k) * (self.head_dim ** -0.5)  # [N, heads, T, T]
        if mask is not None:
            logits = jnp.where(mask, logits, jnp.finfo(logits.dtype).min)
        weights = jax.nn.softmax(logits, axis=-1)
        out = jnp.einsum("nhqk,nkhd->nqhd", weights, v).reshape(n, t, inner)
        return nn.Dense(d, name="out_proj")(out)


class MLP(nn.Module):
    intermediate_size: int
    hidden_act: str

    @nn.compact
    def __call__(self, x: Array) -> Array:
        h = ACTIVATIONS[self.hidden_act](nn.Dense(self.intermediate_size, name="fc1")(x))
        return nn.Dense(x.shape[-1], name="fc2")(h)


class Block(nn.Module):
    """Pre-LN transformer block: x + attn(ln1(x)), then x + mlp(ln2(x))."""
    config: EncoderConfig

    @nn.compact
    def __call__(self, x: Array, mask: Array | None = None) -> Array:
        cfg = self.config
        h = layer_norm(cfg.layer_norm_eps, "layer_norm1")(x)
        x = x + Attention(cfg.num_heads, cfg.dim_per_head, cfg.qkv_bias, name="self_attn")(h, mask)
        h = layer_norm(cfg.layer_norm_eps, "layer_norm2")(x)
        return x + MLP(cfg.intermediate_size, cfg.hidden_act, name="mlp")(h)


class Encoder(nn.Module):
    """`num_layers` blocks named layers_0, layers_1, ... (HF: encoder.layers.0, ...)."""
    config: EncoderConfig

    @nn.compact
    def __call__(self, x: Array, mask: Array | None = None) -> Array:
        for i in range(self.config.num_layers):
            x = Block(self.config, name=f"layers_{i}")(x, mask)
        return x


class VisionEmbeddings(nn.Module):
    """Patch embedding (a stride-p convolution) + class token + learned position embeddings.

    pixel_values [N, H, W, C] -> tokens [N, 1 + (H // p) * (W // p), D], class token first and the
    patches in row-major order, as Hugging Face CLIP / ViT.
    """
    hidden_size: int
    patch_size: tuple[int, int]
    num_positions: int
    patch_bias: bool

    @nn.compact
    def __call__(self, pixel_values: Array) -> Array:
        d = self.hidden_size
        patches = nn.Conv(d, self.patch_size, strides=self.patch_size, padding="VALID", use_bias=self.patch_bias,
                          name="patch_embedding")(pixel_values)  # [N, gh, gw, D]
        n = patches.shape[0]
        patches = patches.reshape(n, -1, d)
        cls = self.param("class_embedding", nn.initializers.normal(0.02), (d,))
        pos = self.param("position_embedding", nn.initializers.normal(0.02), (self.num_positions, d))
        if patches.shape[1] + 1 != self.num_positions:
            raise InputError(f"a {pixel_values.shape[1]}x{pixel_values.shape[2]} input gives {patches.shape[1]} "
                             f"patches; the position embeddings are for {self.num_positions - 1}")
        tokens = jnp.concatenate([jnp.broadcast_to(cls, (n, 1, d)), patches], axis=1)
        return tokens + pos[None]
