"""StyleGAN2 (NVIDIA's stylegan2-ada-pytorch architecture) as Flax modules, and the loaded `Generator`.

Submodules carry the reference's names (`mapping.fc0`, `synthesis.b64.conv1.affine`, ...), so a
checkpoint converts by a flat name table plus transposes. Layouts are JAX's: dense weights [in, out],
convolution weights HWIO, the constant input and images HWC / NHWC. Per-layer noise is an input:
`noise` is a dict {'b64.conv1': [H, W] or [N, H, W]} (or None for no noise), so it can be fixed,
drawn from a key, or optimised and vmapped by the caller.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jax_inpaint.models import ops
from jax_inpaint.models.variables import init_variables, input_shape, variable_shapes
from jax_inpaint.errors import InputError, brief

Array = jax.Array
NoiseDict = Mapping[str, Array]

ARCHITECTURES = ("orig", "skip", "resnet")


# ----------------------------------------------------------------------------------------------
# Configurations (frozen, hashable, built from a checkpoint's own constructor kwargs).

def _channels_table(resolutions, channel_base, channel_max):
    return tuple(int(min(channel_base // r, channel_max)) for r in resolutions)


@dataclasses.dataclass(frozen=True)
class MappingConfig:
    z_dim: int
    c_dim: int
    w_dim: int
    num_layers: int = 8
    embed_features: int | None = None  # default w_dim (0 when c_dim == 0)
    layer_features: int | None = None  # default w_dim
    activation: str = "lrelu"
    lr_multiplier: float = 0.01

    @property
    def features(self) -> tuple[int, ...]:
        embed = 0 if self.c_dim == 0 else (self.embed_features or self.w_dim)
        hidden = self.layer_features or self.w_dim
        return (self.z_dim + embed,) + (hidden,) * (self.num_layers - 1) + (self.w_dim,)

    @property
    def embed_dim(self) -> int:
        return 0 if self.c_dim == 0 else (self.embed_features or self.w_dim)


MAX_RESOLUTION = 8192  # a config asking for more is refused (hostile model.json / constructor kwargs)


def _check_small(cfg, what: str) -> None:
    """What both configs' `from_dict` check beyond the types: the sizes of what is built from these values,
    not only traced (the FIR filter, an outer product; the layers), and values the layers cannot trace or use."""
    from jax_inpaint.models.folders import ModelFolderError

    kernel_size = getattr(cfg, "kernel_size", 3)
    if not 1 <= len(cfg.resample_filter) <= 16 or cfg.mapping_layers > 256 or kernel_size > 64:
        raise ModelFolderError(f"{what}: resample_filter must have 1 to 16 taps, mapping_layers at most 256 and "
                               "kernel_size at most 64 (a hostile or corrupt config?)")
    if kernel_size % 2 == 0 or sum(cfg.resample_filter) == 0:
        raise ModelFolderError(f"{what}: kernel_size must be odd and resample_filter must not sum to zero")
    if cfg.conv_clamp is not None and cfg.conv_clamp < 0 or cfg.mapping_lr_multiplier <= 0:
        raise ModelFolderError(f"{what}: conv_clamp must be non-negative (or null) and mapping_lr_multiplier "
                               "positive")


def _check_resolution(img_resolution: int, channels: tuple, architecture: str, activation: str,
                      n_channels: int) -> None:
    """What both configs' __post_init__ check: a power-of-two resolution (capped), one channels entry per
    block resolution 4 .. img_resolution, a known architecture and activation (InputError, one line)."""
    log2 = math.log2(img_resolution) if img_resolution > 0 else 0.5
    if not 4 <= img_resolution <= MAX_RESOLUTION or log2 != int(log2):
        raise InputError(f"img_resolution must be a power of two in [4, {MAX_RESOLUTION}], got {img_resolution}")
    if len(channels) != n_channels:
        raise InputError(f"channels {brief(channels)} do not match the {n_channels} block resolutions 4 .. "
                         f"{img_resolution}")
    if architecture not in ARCHITECTURES:
        raise InputError(f"unknown architecture {brief(architecture)} (expected one of {ARCHITECTURES})")
    if activation not in ("lrelu", "linear", "relu"):
        raise InputError(f"unsupported activation {brief(activation)}")


@dataclasses.dataclass(frozen=True)
class GeneratorConfig:
    """Architecture of a StyleGAN2 generator. `channels[i]` is the width of block resolution 4 * 2**i."""

    z_dim: int
    c_dim: int
    w_dim: int
    img_resolution: int
    img_channels: int
    channels: tuple[int, ...]
    mapping_layers: int = 8
    embed_features: int | None = None
    layer_features: int | None = None
    mapping_lr_multiplier: float = 0.01
    architecture: str = "skip"
    conv_clamp: float | None = None
    num_fp16_res: int = 0
    resample_filter: tuple[float, ...] = (1.0, 3.0, 3.0, 1.0)
    use_noise: bool = True
    activation: str = "lrelu"
    kernel_size: int = 3

    def __post_init__(self):
        _check_resolution(self.img_resolution, self.channels, self.architecture, self.activation,
                          int(math.log2(self.img_resolution)) - 1 if self.img_resolution >= 4 else -1)

    # Derived structure -------------------------------------------------------------------------
    @property
    def block_resolutions(self) -> tuple[int, ...]:
        return tuple(2 ** i for i in range(2, int(math.log2(self.img_resolution)) + 1))

    @property
    def mapping(self) -> MappingConfig:
        return MappingConfig(self.z_dim, self.c_dim, self.w_dim, self.mapping_layers, self.embed_features,
                             self.layer_features, self.activation, self.mapping_lr_multiplier)

    def block_channels(self, res: int) -> tuple[int, int]:
        """(in_channels, out_channels) of block `res` (in = 0 for the 4x4 constant block)."""
        i = self.block_resolutions.index(res)
        return (self.channels[i - 1] if i > 0 else 0), self.channels[i]

    def has_torgb(self, res: int) -> bool:
        return self.architecture == "skip" or res == self.img_resolution

    @property
    def ws_slices(self) -> dict[int, tuple[int, int]]:
        """Block resolution -> (start, stop) of the ws entries it reads (ToRGB shares the next block's first)."""
        out, idx = {}, 0
        for res in self.block_resolutions:
            num_conv = 1 if res == 4 else 2
            out[res] = (idx, idx + num_conv + int(self.has_torgb(res)))
            idx += num_conv
        return out

    @property
    def num_ws(self) -> int:
        return sum(1 if r == 4 else 2 for r in self.block_resolutions) + 1

    @property
    def noise_shapes(self) -> dict[str, tuple[int, int]]:
        """Noise input name -> (H, W), in synthesis order."""
        if not self.use_noise:
            return {}
        out = {}
        for res in self.block_resolutions:
            for conv in (("conv1",) if res == 4 else ("conv0", "conv1")):
                out[f"b{res}.{conv}"] = (res, res)
        return out

    @property
    def fp16_resolution(self) -> int:
        return max(2 ** (int(math.log2(self.img_resolution)) + 1 - self.num_fp16_res), 8)

    # Serialisation ------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], what: str = "generator config") -> "GeneratorConfig":
        """From `to_dict`'s JSON (model.json), every field's type checked: one-line InputError."""
        from jax_inpaint.models.folders import ModelFolderError, parse_config

        cfg = parse_config(cls, d, what)
        if min(cfg.z_dim, cfg.w_dim, cfg.img_channels, cfg.mapping_layers, cfg.kernel_size, *cfg.channels) < 1:
            raise ModelFolderError(f"{what}: z_dim, w_dim, img_channels, mapping_layers, kernel_size and channels "
                                   "must be positive")
        _check_small(cfg, what)
        return cfg

    @classmethod
    def from_nvidia_kwargs(cls, kwargs: Mapping[str, Any]) -> "GeneratorConfig":
        """From the constructor kwargs of NVIDIA's `Generator` (stylegan2-ada-pytorch, or stylegan3's
        `networks_stylegan2`, where the synthesis kwargs are flattened into the top level)."""
        kw = dict(kwargs)
        mk = dict(kw.pop("mapping_kwargs", None) or {})
        sk = dict(kw.pop("synthesis_kwargs", None) or {})
        try:
            z_dim, c_dim, w_dim = int(kw.pop("z_dim")), int(kw.pop("c_dim")), int(kw.pop("w_dim"))
            res, img_channels = int(kw.pop("img_resolution")), int(kw.pop("img_channels"))
        except KeyError as e:
            raise InputError(f"generator kwargs lack {e.args[0]!r}") from None
        sk.update(kw)  # stylegan3-style flattened synthesis kwargs
        ignored = {"fp16_channels_last", "channels_last", "fused_modconv_default", "class_name"}
        resolutions = [2 ** i for i in range(2, int(math.log2(res)) + 1)]
        channels = _channels_table(resolutions, sk.pop("channel_base", 32768), sk.pop("channel_max", 512))
        clamp = sk.pop("conv_clamp", None)
        cfg = dict(
            z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, img_resolution=res, img_channels=img_channels,
            channels=channels,
            mapping_layers=int(mk.pop("num_layers", 8)),
            embed_features=mk.pop("embed_features", None),
            layer_features=mk.pop("layer_features", None),
            mapping_lr_multiplier=float(mk.pop("lr_multiplier", 0.01)),
            architecture=sk.pop("architecture", "skip"),
            conv_clamp=None if clamp is None else float(clamp),
            num_fp16_res=int(sk.pop("num_fp16_res", 0)),
            resample_filter=tuple(float(v) for v in sk.pop("resample_filter", (1, 3, 3, 1))),
            use_noise=bool(sk.pop("use_noise", True)),
            activation=sk.pop("activation", "lrelu"),
            kernel_size=int(sk.pop("kernel_size", 3)),
        )
        mapping_act = mk.pop("activation", "lrelu")
        mk.pop("w_avg_beta", None)  # training-time only
        for k in ignored:
            sk.pop(k, None)
        unknown = sorted(set(mk) | set(sk))
        if mapping_act != cfg["activation"]:
            unknown.append(f"mapping activation {mapping_act!r}")
        if unknown:
            raise InputError(f"unsupported generator options: {unknown}")
        return cls(**cfg)


@dataclasses.dataclass(frozen=True)
class DiscriminatorConfig:
    """Architecture of a StyleGAN2 discriminator. `channels[i]` is the width at resolution 4 * 2**i."""

    c_dim: int
    img_resolution: int
    img_channels: int
    channels: tuple[int, ...]
    architecture: str = "resnet"
    conv_clamp: float | None = None
    num_fp16_res: int = 0
    cmap_dim: int | None = None
    mbstd_group_size: int | None = 4
    mbstd_num_channels: int = 1
    mapping_layers: int = 8
    mapping_lr_multiplier: float = 0.01
    resample_filter: tuple[float, ...] = (1.0, 3.0, 3.0, 1.0)
    activation: str = "lrelu"

    def __post_init__(self):
        _check_resolution(self.img_resolution, self.channels, self.architecture, self.activation,
                          int(math.log2(self.img_resolution)) - 1 if self.img_resolution >= 4 else -1)

    @property
    def block_resolutions(self) -> tuple[int, ...]:  # high to low, excluding the 4x4 epilogue
        return tuple(2 ** i for i in range(int(math.log2(self.img_resolution)), 2, -1))

    def ch(self, res: int) -> int:
        return self.channels[int(math.log2(res)) - 2]

    @property
    def cmap(self) -> int:
        return 0 if self.c_dim == 0 else (self.cmap_dim or self.ch(4))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], what: str = "discriminator config") -> "DiscriminatorConfig":
        """From `to_dict`'s JSON (model.json), every field's type checked: one-line InputError."""
        from jax_inpaint.models.folders import ModelFolderError, parse_config

        cfg = parse_config(cls, d, what)  # types, then __post_init__: resolution, channels, architecture
        if min(cfg.img_channels, cfg.mapping_layers, *cfg.channels) < 1:
            raise ModelFolderError(f"{what}: img_channels, mapping_layers and channels must be positive")
        if cfg.mbstd_group_size is not None and cfg.mbstd_group_size < 1:
            raise ModelFolderError(f"{what}: mbstd_group_size must be positive (or null), got {cfg.mbstd_group_size}")
        # mbstd_num_channels 0: no minibatch-std layer (as in NVIDIA's code)
        if cfg.mbstd_num_channels and cfg.ch(4) % cfg.mbstd_num_channels:
            raise ModelFolderError(f"{what}: mbstd_num_channels ({cfg.mbstd_num_channels}) must divide the 4x4 "
                                   f"channels ({cfg.ch(4)})")
        _check_small(cfg, what)
        return cfg

    @classmethod
    def from_nvidia_kwargs(cls, kwargs: Mapping[str, Any]) -> "DiscriminatorConfig":
        kw = dict(kwargs)
        bk = dict(kw.pop("block_kwargs", None) or {})
        mk = dict(kw.pop("mapping_kwargs", None) or {})
        ek = dict(kw.pop("epilogue_kwargs", None) or {})
        res = int(kw.pop("img_resolution"))
        resolutions = [2 ** i for i in range(2, int(math.log2(res)) + 1)]
        clamp = kw.pop("conv_clamp", None)
        cfg = dict(
            c_dim=int(kw.pop("c_dim")), img_resolution=res, img_channels=int(kw.pop("img_channels")),
            channels=_channels_table(resolutions, kw.pop("channel_base", 32768), kw.pop("channel_max", 512)),
            architecture=kw.pop("architecture", "resnet"),
            conv_clamp=None if clamp is None else float(clamp),
            num_fp16_res=int(kw.pop("num_fp16_res", 0)),
            cmap_dim=kw.pop("cmap_dim", None),
            mbstd_group_size=ek.pop("mbstd_group_size", 4),
            mbstd_num_channels=int(ek.pop("mbstd_num_channels", 1)),
            mapping_layers=int(mk.pop("num_layers", 8)),
            mapping_lr_multiplier=float(mk.pop("lr_multiplier", 0.01)),
            resample_filter=tuple(float(v) for v in bk.pop("resample_filter", (1, 3, 3, 1))),
            activation=bk.pop("activation", "lrelu"),
        )
        for d in (kw, bk, ek):
            for k in ("fp16_channels_last", "channels_last", "freeze_layers", "class_name"):
                d.pop(k, None)
        mk.pop("w_avg_beta", None)
        unknown = sorted(set(kw) | set(bk) | set(mk) | set(ek))
        if unknown:
            raise InputError(f"unsupported discriminator options: {unknown}")
        return cls(**cfg)


# ----------------------------------------------------------------------------------------------
# Layers.

class FullyConnected(nn.Module):
    """Equalised-learning-rate dense layer: weight [in, out] stored / lr_multiplier."""

    features: int
    activation: str = "linear"
    lr_multiplier: float = 1.0
    bias_init: float = 0.0
    use_bias: bool = True

    @nn.compact
    def __call__(self, x: Array) -> Array:  # [N, in] -> [N, out]
        in_features = x.shape[-1]
        weight = self.param("weight", lambda k: jax.random.normal(k, (in_features, self.features)) / self.lr_multiplier)
        w = weight.astype(x.dtype) * (self.lr_multiplier / np.sqrt(in_features))
        x = x @ w
        b = None
        if self.use_bias:
            bias = self.param("bias", lambda k: jnp.full((self.features,), self.bias_init, jnp.float32))
            b = bias * self.lr_multiplier
        return ops.bias_act(x, b, act=self.activation)


class Conv2dLayer(nn.Module):
    """Equalised-learning-rate convolution with optional FIR up/down-sampling (HWIO weight)."""

    out_channels: int
    kernel_size: int
    use_bias: bool = True
    activation: str = "linear"
    up: int = 1
    down: int = 1
    resample_filter: tuple[float, ...] = (1.0, 3.0, 3.0, 1.0)
    conv_clamp: float | None = None

    @nn.compact
    def __call__(self, x: Array, gain: float = 1.0) -> Array:  # [N,H,W,I] -> [N,H',W',O]
        k, cin = self.kernel_size, x.shape[-1]
        weight = self.param("weight", lambda key: jax.random.normal(key, (k, k, cin, self.out_channels)))
        w = weight * (1.0 / np.sqrt(cin * k * k))
        x = ops.conv2d_resample(x, w, f=ops.fir_taps(self.resample_filter), up=self.up, down=self.down,
                                padding=k // 2)
        b = self.param("bias", nn.initializers.zeros, (self.out_channels,)) if self.use_bias else None
        clamp = None if self.conv_clamp is None else self.conv_clamp * gain
        return ops.bias_act(x, b, act=self.activation, gain=ops.act_gain(self.activation) * gain, clamp=clamp)


class MappingNetwork(nn.Module):
    """z (and class c) -> w [N, w_dim]; broadcasting and truncation are done by `Generator.mapping`."""

    cfg: MappingConfig

    @nn.compact
    def __call__(self, z: Array | None, c: Array | None) -> Array:
        cfg = self.cfg
        x = None
        if cfg.z_dim > 0:
            x = ops.normalize_2nd_moment(z.astype(jnp.float32))
        if cfg.c_dim > 0:
            y = FullyConnected(cfg.embed_dim, name="embed")(c.astype(jnp.float32))
            y = ops.normalize_2nd_moment(y)
            x = y if x is None else jnp.concatenate([x, y], axis=1)
        for i, feat in enumerate(cfg.features[1:]):
            x = FullyConnected(feat, activation=cfg.activation, lr_multiplier=cfg.lr_multiplier, name=f"fc{i}")(x)
        return x


class SynthesisLayer(nn.Module):
    """Modulated 3x3 convolution (+ optional 2x up-sampling), noise, bias, activation, clamp."""

    out_channels: int
    resolution: int
    up: int = 1
    use_noise: bool = True
    kernel_size: int = 3
    activation: str = "lrelu"
    resample_filter: tuple[float, ...] = (1.0, 3.0, 3.0, 1.0)
    conv_clamp: float | None = None

    @nn.compact
    def __call__(self, x: Array, w: Array, noise: Array | None, gain: float = 1.0) -> Array:
        # x: [N,H,W,I]; w: [N,w_dim]; noise: [H',W'] or [N,H',W'] or None  -> [N,H',W',O]
        cin, k = x.shape[-1], self.kernel_size
        styles = FullyConnected(cin, bias_init=1.0, name="affine")(w)
        weight = self.param("weight", lambda key: jax.random.normal(key, (k, k, cin, self.out_channels)))
        noise_term = None
        if self.use_noise:
            strength = self.param("noise_strength", nn.initializers.zeros, ())
            self.variable("buffers", "noise_const",
                          lambda: jax.random.normal(self.make_rng("params"), (self.resolution, self.resolution)))
            if noise is not None:
                noise_term = (noise * strength)[..., None]
        kernels = self.get_variable("prepared", "weight")  # Generator.prepared_variables (or None)
        x = ops.modulated_conv2d(x, weight, styles, noise=noise_term, up=self.up, padding=k // 2,
                                 f=ops.fir_taps(self.resample_filter), kernels=kernels)
        bias = self.param("bias", nn.initializers.zeros, (self.out_channels,))
        clamp = None if self.conv_clamp is None else self.conv_clamp * gain
        return ops.bias_act(x, bias, act=self.activation, gain=ops.act_gain(self.activation) * gain, clamp=clamp)


class ToRGBLayer(nn.Module):
    out_channels: int
    conv_clamp: float | None = None

    @nn.compact
    def __call__(self, x: Array, w: Array) -> Array:  # [N,H,W,I], [N,w_dim] -> [N,H,W,img_channels]
        cin = x.shape[-1]
        styles = FullyConnected(cin, bias_init=1.0, name="affine")(w) * (1.0 / np.sqrt(cin))
        weight = self.param("weight", lambda key: jax.random.normal(key, (1, 1, cin, self.out_channels)))
        x = ops.modulated_conv2d(x, weight, styles, demodulate=False)
        bias = self.param("bias", nn.initializers.zeros, (self.out_channels,))
        return ops.bias_act(x, bias, clamp=self.conv_clamp)


class SynthesisBlock(nn.Module):
    cfg: GeneratorConfig
    resolution: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: Array | None, img: Array | None, ws: Array, noise: NoiseDict | None):
        # x: [N,R/2,R/2,C_in] (None for b4); img: [N,R/2,R/2,3] or None; ws: [N, n, w_dim] (this block's slice)
        cfg, res = self.cfg, self.resolution
        cin, cout = cfg.block_channels(res)
        use_reduced = self.dtype != jnp.float32 and res >= cfg.fp16_resolution
        dtype = self.dtype if use_reduced else jnp.float32
        f = ops.fir_taps(cfg.resample_filter)
        layer = functools.partial(SynthesisLayer, cout, res, use_noise=cfg.use_noise, kernel_size=cfg.kernel_size,
                                  activation=cfg.activation, resample_filter=cfg.resample_filter,
                                  conv_clamp=cfg.conv_clamp)

        def layer_noise(name):
            return None if noise is None else noise[f"b{res}.{name}"]

        wi = 0
        if cin == 0:
            const = self.param("const", lambda key: jax.random.normal(key, (res, res, cout)))
            x = jnp.broadcast_to(const.astype(dtype), (ws.shape[0],) + const.shape)
            x = layer(name="conv1")(x, ws[:, 0], layer_noise("conv1"))
            wi = 1
        else:
            x = x.astype(dtype)
            if cfg.architecture == "resnet":
                y = Conv2dLayer(cout, 1, use_bias=False, up=2, resample_filter=cfg.resample_filter,
                                name="skip")(x, gain=np.sqrt(0.5))
                x = layer(up=2, name="conv0")(x, ws[:, 0], layer_noise("conv0"))
                x = layer(name="conv1")(x, ws[:, 1], layer_noise("conv1"), gain=np.sqrt(0.5))
                x = y + x
            else:
                x = layer(up=2, name="conv0")(x, ws[:, 0], layer_noise("conv0"))
                x = layer(name="conv1")(x, ws[:, 1], layer_noise("conv1"))
            wi = 2
        if img is not None:
            img = ops.upsample2d(img, f)
        if cfg.has_torgb(res):
            y = ToRGBLayer(cfg.img_channels, conv_clamp=cfg.conv_clamp, name="torgb")(x, ws[:, wi])
            y = y.astype(jnp.float32)
            img = y if img is None else img + y
        return x, img


class SynthesisNetwork(nn.Module):
    cfg: GeneratorConfig
    dtype: Any = jnp.float32
    remat: bool = False  # recompute each block's activations in the backward pass (jax.checkpoint)

    @nn.compact
    def __call__(self, ws: Array, noise: NoiseDict | None) -> Array:
        # ws: [N, num_ws, w_dim] -> images [N, R, R, img_channels] (float32, nominally [-1, 1])
        cfg = self.cfg
        if ws.ndim != 3 or ws.shape[1:] != (cfg.num_ws, cfg.w_dim):
            raise ValueError(f"ws must be [N, {cfg.num_ws}, {cfg.w_dim}], got {ws.shape}")
        ws = ws.astype(jnp.float32)
        x = img = None
        block = nn.remat(SynthesisBlock) if self.remat else SynthesisBlock  # same parameter names
        for res in cfg.block_resolutions:
            lo, hi = cfg.ws_slices[res]
            x, img = block(cfg, res, self.dtype, name=f"b{res}")(x, img, ws[:, lo:hi], noise)
        return img


class GeneratorModule(nn.Module):
    """Mapping + synthesis; `__call__` initialises both (use `apply(..., method=...)` for one)."""

    cfg: GeneratorConfig
    dtype: Any = jnp.float32
    remat: bool = False

    def setup(self):
        self.mapping = MappingNetwork(self.cfg.mapping)
        self.synthesis = SynthesisNetwork(self.cfg, self.dtype, self.remat)
        self.w_avg = self.variable("buffers", "w_avg", lambda: jnp.zeros((self.cfg.w_dim,), jnp.float32))

    def map(self, z, c, truncation_psi=1.0, truncation_cutoff=None):
        """-> ws [N, num_ws, w_dim]: mapped, broadcast, truncated toward w_avg for the first `cutoff` ws."""
        w = self.mapping(z, c)
        ws = jnp.broadcast_to(w[:, None, :], (w.shape[0], self.cfg.num_ws, w.shape[1]))
        return truncate(ws, self.w_avg.value, truncation_psi, truncation_cutoff)

    def synthesize(self, ws, noise):
        return self.synthesis(ws, noise)

    def __call__(self, z, c, noise):
        return self.synthesize(self.map(z, c), noise)


def truncate(ws: Array, w_avg: Array, psi, cutoff: int | None = None) -> Array:
    """w_avg + psi * (ws - w_avg) on ws[:, :cutoff] (all entries when cutoff is None)."""
    psi = jnp.asarray(psi, ws.dtype)
    lerped = w_avg + psi * (ws - w_avg)
    if cutoff is None:
        return lerped
    layer = jnp.arange(ws.shape[1])[None, :, None]
    return jnp.where(layer < cutoff, lerped, ws)


# ----------------------------------------------------------------------------------------------
# Discriminator.

class DiscriminatorBlock(nn.Module):
    cfg: DiscriminatorConfig
    resolution: int

    @nn.compact
    def __call__(self, x: Array | None, img: Array | None):
        cfg, res = self.cfg, self.resolution
        tmp, out = cfg.ch(res), cfg.ch(res // 2)
        f = ops.fir_taps(cfg.resample_filter)
        conv = functools.partial(Conv2dLayer, activation=cfg.activation, resample_filter=cfg.resample_filter,
                                 conv_clamp=cfg.conv_clamp)
        if x is None or cfg.architecture == "skip":
            y = conv(tmp, 1, name="fromrgb")(img)
            x = y if x is None else x + y
            img = ops.downsample2d(img, f) if cfg.architecture == "skip" else None
        if cfg.architecture == "resnet":
            y = Conv2dLayer(out, 1, use_bias=False, down=2, resample_filter=cfg.resample_filter,
                            name="skip")(x, gain=np.sqrt(0.5))
            x = conv(tmp, 3, name="conv0")(x)
            x = conv(out, 3, down=2, name="conv1")(x, gain=np.sqrt(0.5))
            x = y + x
        else:
            x = conv(tmp, 3, name="conv0")(x)
            x = conv(out, 3, down=2, name="conv1")(x)
        return x, img


class DiscriminatorEpilogue(nn.Module):
    cfg: DiscriminatorConfig

    @nn.compact
    def __call__(self, x: Array, img: Array | None, cmap: Array | None) -> Array:
        cfg = self.cfg
        ch = cfg.ch(4)
        if cfg.architecture == "skip":
            x = x + Conv2dLayer(ch, 1, activation=cfg.activation, name="fromrgb")(img)
        if cfg.mbstd_num_channels > 0:
            x = ops.minibatch_std(x, cfg.mbstd_group_size, cfg.mbstd_num_channels)
        x = Conv2dLayer(ch, 3, activation=cfg.activation, conv_clamp=cfg.conv_clamp, name="conv")(x)
        x = jnp.transpose(x, (0, 3, 1, 2)).reshape(x.shape[0], -1)  # flatten in NCHW order, as the reference
        x = FullyConnected(ch, activation=cfg.activation, name="fc")(x)
        x = FullyConnected(1 if cfg.cmap == 0 else cfg.cmap, name="out")(x)
        if cfg.cmap > 0:
            x = jnp.sum(x * cmap, axis=1, keepdims=True) * (1.0 / np.sqrt(cfg.cmap))
        return x


class DiscriminatorModule(nn.Module):
    """img [N,R,R,C] in [-1,1] (and c [N,c_dim]) -> logits [N,1]."""

    cfg: DiscriminatorConfig

    @nn.compact
    def __call__(self, img: Array, c: Array | None = None) -> Array:
        cfg = self.cfg
        x = None
        img = img.astype(jnp.float32)
        for res in cfg.block_resolutions:
            x, img = DiscriminatorBlock(cfg, res, name=f"b{res}")(x, img)
        cmap = None
        if cfg.c_dim > 0:
            mcfg = MappingConfig(0, cfg.c_dim, cfg.cmap, cfg.mapping_layers, None, None, cfg.activation,
                                 cfg.mapping_lr_multiplier)
            cmap = MappingNetwork(mcfg, name="mapping")(None, c)
        return DiscriminatorEpilogue(cfg, name="b4")(x, img, cmap)


# ----------------------------------------------------------------------------------------------
# Loaded networks.

def _as_batch(x, n_dims: int, name: str) -> Array:
    x = jnp.asarray(x, jnp.float32)
    if x.ndim == n_dims - 1:
        x = x[None]
    if x.ndim != n_dims:
        raise InputError(f"{name} must have {n_dims} dimensions, got shape {x.shape}")
    return x


class Generator:
    """A loaded StyleGAN2 generator: `mapping`, `synthesis` and the pure `synthesize` for jit/vmap/grad.

    Numpy or JAX arrays in, JAX arrays out; images are NHWC in (nominally) [-1, 1].
    """

    def __init__(self, config: GeneratorConfig, params: Mapping, buffers: Mapping, *, dtype=jnp.float32,
                 name: str = ""):
        self.config = config
        self.name = name
        self.module = GeneratorModule(config, dtype)
        self.params = jax.tree.map(jnp.asarray, params)
        self.buffers = jax.tree.map(jnp.asarray, buffers)
        self._prepared: dict | None = None
        self._map = jax.jit(self._map_impl, static_argnames=("truncation_cutoff",))
        self._synth = jax.jit(self._synth_impl)

    # Attributes of the reference API.
    num_ws = property(lambda self: self.config.num_ws)
    w_dim = property(lambda self: self.config.w_dim)
    z_dim = property(lambda self: self.config.z_dim)
    c_dim = property(lambda self: self.config.c_dim)
    img_resolution = property(lambda self: self.config.img_resolution)
    img_channels = property(lambda self: self.config.img_channels)
    w_avg = property(lambda self: self.buffers["w_avg"])

    @property
    def noise_const(self) -> dict[str, Array]:
        """The checkpoint's fixed noise, {'b64.conv1': [64, 64], ...}."""
        return self.noise_const_of(self.variables)

    def noise_const_of(self, variables: Mapping) -> dict[str, Array]:
        """The fixed noise held in `variables` (for use inside jit, where variables are arguments)."""
        syn = variables["buffers"].get("synthesis", {})
        return {name: syn[name.split(".")[0]][name.split(".")[1]]["noise_const"] for name in self.config.noise_shapes}

    @property
    def variables(self) -> dict:
        return {"params": self.params, "buffers": self.buffers}

    def prepared_variables(self) -> dict:
        """`variables` plus, on CPU, the synthesis kernels that its gradient would otherwise rearrange on
        every call, made once and kept (collection 'prepared': `ops.prepared_form`, `ops.prepare_kernels`).
        For programs that run the synthesis's gradient many times with the same weights (the search)."""
        if self._prepared is None:
            prepared: dict = {}
            cfg = self.config
            with jax.ensure_compile_time_eval():  # concrete arrays, even when first asked for inside a trace
                for res in cfg.block_resolutions:
                    cin, cout = cfg.block_channels(res)
                    layers = [("conv1", (res, res, cout), 1)] + ([("conv0", (res // 2, res // 2, cin), 2)] if cin else [])
                    for name, x_hwc, up in layers:
                        w = self.params["synthesis"][f"b{res}"][name]["weight"]
                        form = ops.prepared_form(w.shape, x_hwc, up)
                        if form is not None:
                            prepared.setdefault("synthesis", {}).setdefault(f"b{res}", {})[name] = {
                                "weight": ops.prepare_kernels(w, form)}
            self._prepared = {**self.variables, "prepared": prepared} if prepared else self.variables
        return self._prepared

    def random_noise(self, key: Array, batch: int) -> dict[str, Array]:
        """Fresh N(0, 1) noise [batch, H, W] for every noise input, one key per layer."""
        return {name: jax.random.normal(jax.random.fold_in(key, i), (batch,) + shape)
                for i, (name, shape) in enumerate(self.config.noise_shapes.items())}

    # Pure functions --------------------------------------------------------------------------------
    def synthesize(self, variables: Mapping, ws: Array, noise: NoiseDict | None, remat: bool = False) -> Array:
        """Pure synthesis: ws [N, num_ws, w_dim], noise dict (or None) -> images [N, R, R, C]. remat: each
        synthesis block is rematerialised (`jax.checkpoint`): its gradient recomputes its activations
        instead of storing them (the same values; less memory, about one more forward pass of time)."""
        module = self.module.clone(remat=True) if remat else self.module
        return module.apply(variables, ws, noise, method=GeneratorModule.synthesize)

    def map_fn(self, variables: Mapping, z: Array, c: Array | None, truncation_psi=1.0,
               truncation_cutoff: int | None = None) -> Array:
        return self.module.apply(variables, z, c, truncation_psi, truncation_cutoff, method=GeneratorModule.map)

    def _map_impl(self, variables, z, c, psi, truncation_cutoff):
        return self.map_fn(variables, z, c, psi, truncation_cutoff)

    def _synth_impl(self, variables, ws, noise):
        return self.synthesize(variables, ws, noise)

    # Convenience API -------------------------------------------------------------------------------
    def mapping(self, z, c=None, truncation_psi: float = 1.0, truncation_cutoff: int | None = None) -> Array:
        """z [N, z_dim] (and c [N, c_dim]) -> ws [N, num_ws, w_dim]."""
        z = _as_batch(z, 2, "z")
        if z.shape[1] != self.z_dim:
            raise InputError(f"z must be [N, {self.z_dim}], got {z.shape}")
        if self.c_dim:
            if c is None:
                raise InputError(f"this generator is conditional: pass c [N, {self.c_dim}] (e.g. a one-hot class)")
            c = _as_batch(c, 2, "c")
            if c.shape != (z.shape[0], self.c_dim):
                raise InputError(f"c must be [{z.shape[0]}, {self.c_dim}], got {c.shape}")
        else:
            c = None
        return self._map(self.variables, z, c, truncation_psi, truncation_cutoff)

    def synthesis(self, ws, noise_mode: str = "const", key: Array | None = None,
                  noise: NoiseDict | None = None) -> Array:
        """ws [N, num_ws, w_dim] -> images [N, R, R, C].

        noise_mode: 'const' (the checkpoint's buffers), 'random' (needs `key`), 'none'; or pass `noise`
        explicitly ({'b64.conv1': [H, W] or [N, H, W], ...}: every noise input).
        """
        ws = _as_batch(ws, 3, "ws")
        if ws.shape[1:] != (self.num_ws, self.w_dim):
            raise InputError(f"ws must be [N, {self.num_ws}, {self.w_dim}], got {ws.shape}")
        return self._synth(self.variables, ws, self.make_noise(ws.shape[0], noise_mode, key, noise))

    def make_noise(self, batch: int, noise_mode: str = "const", key: Array | None = None,
                   noise: NoiseDict | None = None) -> dict[str, Array] | None:
        """The noise dict for a synthesis call (see `synthesis`)."""
        if noise is not None:
            missing = sorted(set(self.config.noise_shapes) - set(noise))
            extra = sorted(set(noise) - set(self.config.noise_shapes))
            if missing or extra:
                raise InputError(f"noise dict: missing {missing}, unexpected {extra}")
            return {k: jnp.asarray(noise[k], jnp.float32) for k in self.config.noise_shapes}
        if noise_mode == "const":
            return self.noise_const
        if noise_mode == "random":
            if key is None:
                raise InputError("noise_mode='random' needs a PRNG key")
            return self.random_noise(key, batch)
        if noise_mode == "none":
            return None
        raise InputError(f"noise_mode must be 'const', 'random' or 'none', got {noise_mode!r}")

    def __call__(self, z, c=None, truncation_psi=1.0, truncation_cutoff=None, noise_mode="const", key=None):
        return self.synthesis(self.mapping(z, c, truncation_psi, truncation_cutoff), noise_mode, key)


class Discriminator:
    """A loaded StyleGAN2 discriminator: `__call__(img NHWC, c) -> logits [N, 1]` and a pure `logits`."""

    def __init__(self, config: DiscriminatorConfig, params: Mapping):
        self.config = config
        self.module = DiscriminatorModule(config)
        self.params = jax.tree.map(jnp.asarray, params)
        self._fn = jax.jit(self.logits)

    def logits(self, params: Mapping, img: Array, c: Array | None = None) -> Array:
        return self.module.apply({"params": params}, img, c)

    def __call__(self, img, c=None) -> Array:
        img = _as_batch(img, 4, "img")
        if self.config.c_dim and c is None:
            raise InputError(f"this discriminator is conditional: pass c [N, {self.config.c_dim}]")
        return self._fn(self.params, img, None if c is None else jnp.asarray(c, jnp.float32))


def generator_inputs(config: GeneratorConfig) -> tuple:
    """Shapes of the inputs of `GeneratorModule.init`: (z [1, z_dim], c [1, c_dim] or None, noise {name: [H, W]})."""
    c = input_shape(1, config.c_dim) if config.c_dim else None
    return input_shape(1, config.z_dim), c, {k: input_shape(*s) for k, s in config.noise_shapes.items()}


def discriminator_inputs(config: DiscriminatorConfig) -> tuple:
    """Shapes of the inputs of `DiscriminatorModule.init`: (img [1, R, R, C], c [1, c_dim] or None)."""
    c = input_shape(1, config.c_dim) if config.c_dim else None
    return input_shape(1, config.img_resolution, config.img_resolution, config.img_channels), c


def init_generator(config: GeneratorConfig, *, key: Array, dtype=jnp.float32) -> Generator:
    """A randomly initialised generator (NVIDIA's initialisation: N(0,1) weights, zero noise strength)."""
    variables = init_variables(GeneratorModule(config, dtype), generator_inputs(config), key)
    return Generator(config, variables["params"], variables["buffers"], dtype=dtype)


# ----------------------------------------------------------------------------------------------
# Model folders.

KIND = "stylegan2"


def load_generator(folder, *, dtype=jnp.float32) -> Generator:
    """Load the generator of a model folder written by `jax-inpaint convert stylegan2`."""
    from jax_inpaint.models import folders as checkpoint
    from jax_inpaint.models import shipped as assets

    folder = assets.resolve_model(folder, "generator")
    meta = checkpoint.read_model_meta(folder, KIND)
    cfg = GeneratorConfig.from_dict(checkpoint.config_entry(meta, "G", folder, "generator"),
                                    f"{folder}: {checkpoint.META_FILE}: config.G")
    tree = checkpoint.read_tree(folder, "G", variable_shapes(GeneratorModule(cfg), generator_inputs(cfg)))
    return Generator(cfg, tree["params"], tree["buffers"], dtype=dtype, name=str(folder))


def load_discriminator(folder) -> Discriminator:
    """Load the discriminator of a model folder (present when the source checkpoint had one)."""
    from jax_inpaint.models import folders as checkpoint
    from jax_inpaint.models import shipped as assets

    folder = assets.resolve_model(folder, "generator")
    meta = checkpoint.read_model_meta(folder, KIND)
    if "D" not in meta["config"]:
        raise InputError(f"{folder}: the converted checkpoint has no discriminator")
    cfg = DiscriminatorConfig.from_dict(checkpoint.config_entry(meta, "D", folder, "discriminator"),
                                        f"{folder}: {checkpoint.META_FILE}: config.D")
    tree = checkpoint.read_tree(folder, "D", variable_shapes(DiscriminatorModule(cfg), discriminator_inputs(cfg)))
    return Discriminator(cfg, tree["params"])


# ---------------------------------------------------------------------------------------------
# Inputs of the mapping network.

def seed_z(seeds: Sequence[int], z_dim: int) -> np.ndarray:
    """z for each seed exactly as NVIDIA's generate.py draws it: RandomState(seed).randn(1, z_dim)."""
    return np.stack([np.random.RandomState(s).randn(z_dim) for s in seeds]).astype(np.float32)


def class_vector(G: Generator, class_idx: int | None, n: int) -> np.ndarray | None:
    if G.c_dim == 0:
        if class_idx is not None:
            raise InputError("--class given, but the generator is not conditional")
        return None
    if class_idx is None:
        raise InputError(f"the generator is conditional: choose a class with --class (0..{G.c_dim - 1})")
    if not 0 <= class_idx < G.c_dim:
        raise InputError(f"--class must be in 0..{G.c_dim - 1}, got {class_idx}")
    c = np.zeros((n, G.c_dim), np.float32)
    c[:, class_idx] = 1
    return c
