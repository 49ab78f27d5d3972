"""Pure kernels of StyleGAN2, channels last (NHWC, weights HWIO).

Numerically these follow NVIDIA's stylegan2-ada-pytorch ops (`upfirdn2d`, `bias_act`, `conv2d_resample`,
`modulated_conv2d`), written for XLA:
  * FIR filters are separable 1-D taps applied as a few shifted multiply-adds per axis, which XLA fuses
    into one elementwise pass (no depthwise convolution);
  * modulated convolutions scale the activations rather than the weights (one shared-weight convolution
    for the whole batch), so they batch and vmap without grouped convolutions.
"""
from __future__ import annotations

import functools
import os
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

Array = jax.Array

LRELU_ALPHA = 0.2
_ACT_GAIN = {"linear": 1.0, "lrelu": float(np.sqrt(2.0)), "relu": float(np.sqrt(2.0))}
_DN = ("NHWC", "HWIO", "NHWC")


def fir_taps(taps: Sequence[float]) -> np.ndarray:
    """Normalised 1-D FIR taps (sum 1). [1,3,3,1] is the StyleGAN2 filter: its outer product / 64 is
    the 4x4 `resample_filter` buffer of NVIDIA's checkpoints."""
    f = np.asarray(taps, dtype=np.float64)
    if f.ndim != 1 or f.size == 0:
        raise ValueError(f"expected 1-D filter taps, got shape {f.shape}")
    return (f / f.sum()).astype(np.float32)


def act_gain(act: str) -> float:
    return _ACT_GAIN[act]


def bias_act(x: Array, b: Array | None = None, act: str = "linear", gain: float | None = None,
             clamp: float | None = None) -> Array:
    """x + b (over the last axis), activation, times gain, clamped to [-clamp, clamp]."""
    if b is not None:
        x = x + b.astype(x.dtype)
    if act == "lrelu":
        x = jnp.where(x >= 0, x, x * LRELU_ALPHA)
    elif act == "relu":
        x = jnp.maximum(x, 0)
    elif act != "linear":
        raise ValueError(f"unknown activation {act!r}")
    gain = _ACT_GAIN[act] if gain is None else gain
    if gain != 1:
        x = x * gain
    if clamp is not None:
        x = jnp.clip(x, -clamp, clamp)
    return x


def _fir_axis(x: Array, f: np.ndarray, axis: int, up: int, down: int, pad0: int, pad1: int,
              gain: float) -> Array:
    """upfirdn along one axis: zero-insert `up`, pad (negative = crop), convolve with f, keep every `down`."""
    if up > 1:
        n = x.shape[axis]
        x = jnp.expand_dims(x, axis + 1)
        widths = [(0, 0)] * x.ndim
        widths[axis + 1] = (0, up - 1)
        x = jnp.pad(x, widths)
        x = x.reshape(x.shape[:axis] + (n * up,) + x.shape[axis + 2:])
    widths = [(0, 0)] * x.ndim
    widths[axis] = (max(pad0, 0), max(pad1, 0))
    x = jnp.pad(x, widths)
    if pad0 < 0 or pad1 < 0:
        x = lax.slice_in_dim(x, max(-pad0, 0), x.shape[axis] - max(-pad1, 0), axis=axis)
    taps = f[::-1] * gain  # convolution, not correlation (NVIDIA's flip_filter=False)
    out_len = x.shape[axis] - len(taps) + 1
    y = None
    for t, c in enumerate(taps):
        term = lax.slice_in_dim(x, t, t + out_len, axis=axis) * jnp.asarray(c, x.dtype)
        y = term if y is None else y + term
    if down > 1:
        y = lax.slice_in_dim(y, 0, out_len, stride=down, axis=axis)
    return y


def upfirdn2d(x: Array, f: np.ndarray, up: int = 1, down: int = 1, padding: tuple[int, int] = (0, 0),
              gain: float = 1.0) -> Array:
    """Upsample, pad, FIR-filter, downsample an NHWC batch, with the same separable 1-D filter on H and W.

    `padding` = (before, after), in up-sampled pixels, on both axes; `gain` scales the 2-D result.
    """
    g = float(np.sqrt(gain))
    x = _fir_axis(x, f, 1, up, down, padding[0], padding[1], g)
    return _fir_axis(x, f, 2, up, down, padding[0], padding[1], g)


def upsample2d(x: Array, f: np.ndarray, up: int = 2) -> Array:
    """[N,H,W,C] -> [N,H*up,W*up,C] with the FIR filter (NVIDIA's `upsample2d`)."""
    fw = len(f)
    return upfirdn2d(x, f, up=up, padding=((fw + up - 1) // 2, (fw - up) // 2), gain=up * up)


def downsample2d(x: Array, f: np.ndarray, down: int = 2) -> Array:
    """[N,H,W,C] -> [N,H/down,W/down,C] with the FIR filter (NVIDIA's `downsample2d`)."""
    fw = len(f)
    return upfirdn2d(x, f, down=down, padding=((fw - down + 1) // 2, (fw - down) // 2))


# On CPU, a stride-1 convolution over a map of at most this many pixels runs as one matrix product of the
# input's shifted copies side by side with the kernel as a [kh kw I, O] matrix (im2col; the reshape is not a
# copy). XLA:CPU's convolution, and above all its input gradient, is slow on small maps with many
# channels (16x16x512, forward + input gradient: 26 ms as a convolution, 12 ms as the product), and its
# input gradient transposes the whole kernel every call (~5 ms for 3x3x512x512) where the product's
# gradient multiplies by the transposed matrix in place. Larger maps are faster as convolutions.
# The generator's layers use it only with kernels of at least PRODUCTS_MIN_CHANNELS input x output
# channels (its 256- and 512-channel layers: the step at 256x256 ~3 % faster); on the demo's small
# kernels it gained nothing at run time and lengthened compiles (the demo 32 -> 38 s). VGG uses it on every
# small map (`min_channels=0`: LPIPS between 32x32 images ~6x faster). JAX_INPAINT_SHIFTED=0 turns it off
# (for A/B measurements).
SHIFTED_MAX_PIXELS = 32 * 32
PRODUCTS_MIN_CHANNELS = 256 * 256


def shifted_products_here() -> bool:
    """Whether conv2d uses the shifted products on small maps: on CPU (read at trace time)."""
    return jax.default_backend() == "cpu" and os.environ.get("JAX_INPAINT_SHIFTED", "1") != "0"


def conv2d(x: Array, w: Array, stride: int = 1, padding: int = 0, *,
           min_channels: int = PRODUCTS_MIN_CHANNELS, kernels: dict | None = None) -> Array:
    """Cross-correlation (PyTorch's conv2d) of [..., H, W, I] x with an HWIO kernel. On CPU, small maps
    with a wide 3x3 kernel run by Winograd's F(2x2, 3x3) (below; `kernels`: `winograd_kernels(w)` made
    once, else made here), other small maps with a kernel of at least `min_channels` input x output
    channels as shifted products (above)."""
    w = w.astype(x.dtype)
    kh, kw = w.shape[:2]
    h, wd = x.shape[-3], x.shape[-2]
    if stride == 1 and x.dtype == jnp.float32 and _as_winograd(w.shape, x.shape[-3:], padding):
        return _conv_winograd(x, w, winograd_kernels(w) if kernels is None else kernels)
    if stride == 1 and _as_products(w.shape, h, wd, min_channels):
        xp = jnp.pad(x, [(0, 0)] * (x.ndim - 3) + [(padding, padding), (padding, padding), (0, 0)])
        ho, wo = h + 2 * padding - kh + 1, wd + 2 * padding - kw + 1
        cols = jnp.concatenate([xp[..., i:i + ho, j:j + wo, :] for i in range(kh) for j in range(kw)], axis=-1)
        return cols @ w.reshape(-1, w.shape[-1])
    return _convolution(x, w, stride, padding)


def _as_products(w_shape: Sequence[int], h: int, wd: int, min_channels: int) -> bool:
    """Whether conv2d runs a stride-1 kernel of w_shape over an h x wd map as shifted products."""
    kh, kw, i, o = w_shape
    return kh * kw > 1 and h * wd <= SHIFTED_MAX_PIXELS and i * o >= min_channels and shifted_products_here()


def _convolution(x: Array, w: Array, stride: int, padding: int) -> Array:
    """XLA's convolution of [..., H, W, I] x (any leading axes) with an HWIO kernel."""
    lead = x.shape[:-3]
    y = lax.conv_general_dilated(x.reshape(-1, *x.shape[-3:]), w.astype(x.dtype), (stride, stride),
                                 [(padding, padding)] * 2, dimension_numbers=_DN)
    return y.reshape(*lead, *y.shape[1:])


# Winograd's minimal filtering F(2x2, 3x3) (Lavin & Gray 2016) for the 3x3 'same' convolutions over small maps
# with wide kernels: every 4x4 input tile (stride 2) is transformed (B^T d B: additions only), the 16
# transformed positions are 16 matrix products [tiles, I] x [I, O] with the transformed kernel (G g G^T),
# and each product's 4x4 result folds back into a 2x2 output tile (A^T m A). That is 16 products where the
# direct form has 36 (2.25x fewer flops), at float32 rounding of the same order (relative ~1e-6 on these
# layers). On CPU (with the shifted products as the alternative) a 32x32 map, 512 -> 512 channels, forward +
# input gradient: ~30 -> ~17 ms; on 64x64 maps the transforms' passes cost more than the products save, so
# only maps of WINOGRAD_MIN_PIXELS .. SHIFTED_MAX_PIXELS pixels and kernels of at least
# WINOGRAD_MIN_CHANNELS input x output channels (VGG's conv4 and conv5 at 256x256, the generator's 16x16 and
# 32x32 512-channel layers) take it, in float32 (bfloat16's additions in the transforms would round ~2x more
# than its convolution). The input gradient is the same form with the kernel flipped and its channels
# swapped, which reads the same transformed kernel (`winograd_kernels`; made once per run by a generator's
# `prepared_variables` and `LPIPS.prepared_params`, else per call: ~1 ms for 3x3x512x512). Its gradient is
# a custom_vjp: reverse mode only (jvp / jacfwd through these layers need JAX_INPAINT_WINOGRAD=0).
# JAX_INPAINT_WINOGRAD=0 turns it off (A/B measurements).
WINOGRAD_MIN_PIXELS = 16 * 16
WINOGRAD_MIN_CHANNELS = 256 * 256


def winograd_eligible(w_shape: Sequence[int]) -> bool:
    """Whether a kernel of w_shape takes Winograd's form here (on CPU) on the maps that do (`_as_winograd`)."""
    kh, kw, i, o = w_shape
    return ((kh, kw) == (3, 3) and i * o >= WINOGRAD_MIN_CHANNELS and shifted_products_here()
            and os.environ.get("JAX_INPAINT_WINOGRAD", "1") != "0")


def _as_winograd(w_shape: Sequence[int], x_hwc: Sequence[int], padding: int) -> bool:
    """Whether conv2d (stride 1) runs a kernel of w_shape over inputs [..., *x_hwc] by Winograd's F(2x2, 3x3)."""
    h, wd = x_hwc[0], x_hwc[1]
    return (padding == 1 and h % 2 == 0 and wd % 2 == 0 and WINOGRAD_MIN_PIXELS <= h * wd <= SHIFTED_MAX_PIXELS
            and winograd_eligible(w_shape))


def _kernel_transform(w: Array) -> Array:
    """G g G^T of every [3, 3] kernel slice: [3, 3, I, O] -> [4, 4, I, O] (G's rows: (1, 0, 0), (1, 1, 1) / 2,
    (1, -1, 1) / 2, (0, 0, 1)), unrolled into one elementwise pass (an einsum over the taps is ~10x slower)."""
    def rows(a, b, c):
        return a, 0.5 * (a + b + c), 0.5 * (a - b + c), c

    return jnp.stack([jnp.stack(rows(r[0], r[1], r[2])) for r in rows(w[0], w[1], w[2])])


def winograd_kernels(w: Array) -> dict:
    """The transformed kernel 'U' of a 3x3 HWIO kernel: [4, 4, I, O] (the forward's and, read transposed with
    its tile positions 0 and 3 swapped, the input gradient's)."""
    return {"U": _kernel_transform(w)}


# G applied to reversed taps is G with rows 0 and 3 swapped, so the transformed kernel of the flipped kernel
# is U with tile positions 0 and 3 swapped on both axes: the input gradient reads U itself, transposed (no
# kernel is rearranged).
_FLIP = (3, 1, 2, 0)


def _winograd(x: Array, u: Array, grad: bool = False) -> Array:
    """3x3 'same' correlation of x [..., H, W, C] (H, W even) with the kernel w whose _kernel_transform is u
    [4, 4, I, O]: C = I -> O channels; `grad`: with w flipped and I and O swapped (C = O -> I channels, the
    input gradient of the correlation with w)."""
    lead, (h, wd, c) = x.shape[:-3], x.shape[-3:]
    x = x.reshape(-1, h, wd, c)
    th, tw = h // 2, wd // 2
    xp = jnp.pad(x, [(0, 0), (1, 1), (1, 1), (0, 0)])

    def bt(d0, d1, d2, d3):  # B^T d along one axis
        return d0 - d2, d1 + d2, d2 - d1, d1 - d3

    tiles = [bt(*[r[:, :, j:j + 2 * tw:2] for j in range(4)]) for r in bt(*[xp[:, i:i + 2 * th:2] for i in range(4)])]
    order = [(_FLIP[a], _FLIP[b]) if grad else (a, b) for a in range(4) for b in range(4)]
    v = jnp.stack([tiles[a][b] for a, b in order]).reshape(16, -1, c)  # [16, tiles, C], in u's order
    m = jnp.einsum("pto,pco->ptc" if grad else "ptc,pco->pto", v, u.reshape(16, *u.shape[2:]).astype(x.dtype))
    m = m.reshape(16, -1, th, tw, m.shape[-1])
    at = {pos: m[k] for k, pos in enumerate(order)}  # tile position (a, b) -> its product

    def fold(m0, m1, m2, m3):  # A^T m along one axis
        return m0 + m1 + m2, m1 - m2 - m3

    cols = [fold(*[at[a, b] for a in range(4)]) for b in range(4)]  # [b][output row]
    y = jnp.stack([jnp.stack(fold(*[cols[b][r] for b in range(4)]), axis=3) for r in range(2)], axis=2)
    return y.reshape(*lead, h, wd, y.shape[-1])  # [N, th, 2, tw, 2, O] -> rows 2 t + r


@jax.custom_vjp
def _conv_winograd(x: Array, w: Array, kernels: dict) -> Array:
    return _winograd(x, kernels["U"])


def _conv_winograd_fwd(x, w, kernels):
    return _winograd(x, kernels["U"]), (x, w, kernels)


def _conv_winograd_bwd(res, g):
    x, w, kernels = res
    dx = _winograd(g, kernels["U"], grad=True)
    return (dx,) + _kernel_cotangents(lambda w_: _convolution(x, w_, 1, 1), w, g, kernels)


def _kernel_cotangents(forward, w, g, kernels: dict) -> tuple:
    """The cotangents of w and of its prepared kernels for the custom_vjp convolutions: w's by autodiff of
    `forward` (w -> the output; dead code unless w is differentiated), zeros for the kernels (made from w, so
    w's cotangent already carries theirs)."""
    return jax.vjp(forward, w)[1](g)[0], jax.tree.map(jnp.zeros_like, kernels)


_conv_winograd.defvjp(_conv_winograd_fwd, _conv_winograd_bwd)


# The transposed convolution runs as phases when its input has at least this many elements (e.g. 32x32x256):
# there the phases' gradient is ~2x faster on CPU; on smaller maps the two cost the same, and the phases'
# four convolutions would only lengthen compiles (~1.5x for a small generator: the test suite's models).
PHASES_MIN_ELEMENTS = 32 * 32 * 256


def _as_phases(x_hwc: Sequence[int]) -> bool:
    """Whether conv_transpose2d (phases=None) runs an input of [..., *x_hwc] as phases."""
    h, wd, c = x_hwc
    return h * wd * c >= PHASES_MIN_ELEMENTS


def conv_transpose2d(x: Array, w: Array, stride: int = 2, padding: int = 0, phases: bool | None = None,
                     kernels: dict | None = None) -> Array:
    """PyTorch's conv_transpose2d(x, W', stride, padding) where W' = w seen as [in, out, kh, kw].

    `w` is HWIO with I = channels of x: y[s*i + k - padding] += x[i] @ w[k] on each axis. Computed by
    phases: the outputs at s*m + r (r < s) take only the taps k = r, r + s, ..., so each of the s x s
    phases is an ordinary convolution of x with its own slice of the kernel, and the phases are
    interleaved. That multiplies no inserted zeros (a convolution of the zero-dilated input does,
    and XLA:CPU computes its gradient up to 2-3x slower than the phases'). `phases`: None = by size
    (PHASES_MIN_ELEMENTS); False = the zero-dilated form. `kernels`: `prepare_kernels(w, "dilated")`, the
    zero-dilated form's kernels made once (its forward and input gradient then rearrange no kernel).
    """
    if phases is None:
        phases = _as_phases(x.shape[1:])
    if stride == 1 or not phases:
        if kernels is not None and stride > 1:
            return _dilated_prepared(x, w, kernels, stride, padding)
        return _dilated(x, w[::-1, ::-1], stride, padding)
    n, h, wd, _ = x.shape
    kh, kw = w.shape[:2]
    s = stride
    th, tw = -(-kh // s), -(-kw // s)  # the most taps any phase has, per axis
    xp = jnp.pad(x, [(0, 0), (th - 1, th - 1), (tw - 1, tw - 1), (0, 0)])

    def phase(r: int, q: int) -> Array:
        # phase (r, q): y_rq[m] = sum_u xp[m + u] w[r + s (th - 1 - u)] over its own taps (an empty phase is 0)
        rows = [r + s * (th - 1 - u) for u in range(th) if r + s * (th - 1 - u) < kh]
        cols = [q + s * (tw - 1 - u) for u in range(tw) if q + s * (tw - 1 - u) < kw]
        if not rows or not cols:
            return jnp.zeros((n, h + th - 1, wd + tw - 1, w.shape[-1]), x.dtype)
        k = jnp.stack([jnp.stack([w[i, j] for j in cols]) for i in rows]).astype(x.dtype)
        return conv2d(xp[:, th - len(rows):, tw - len(cols):], k)  # every phase: [n, h + th - 1, wd + tw - 1, O]

    y = jnp.stack([jnp.stack([phase(r, q) for q in range(s)], axis=3) for r in range(s)], axis=2)
    y = y.reshape(n, (h + th - 1) * s, (wd + tw - 1) * s, w.shape[-1])  # [n, m, r, m', q, O] -> rows s*m + r
    return y[:, padding:s * (h - 1) + kh - padding, padding:s * (wd - 1) + kw - padding]


def conv2d_resample(x: Array, w: Array, f: np.ndarray | None = None, up: int = 1, down: int = 1,
                    padding: int = 0, kernels: dict | None = None) -> Array:
    """Convolution with optional FIR up- or down-sampling by 2, as NVIDIA's `conv2d_resample`.

    x: [N,H,W,I], w: [k,k,I,O] (a correlation kernel, NVIDIA's `flip_weight=True` convention for
    up == 1 and the stored, unflipped weight of `flip_weight=False` layers for up > 1). `kernels`: w
    prepared by `prepare_kernels` for the form `prepared_form` names (ignored by any other form).
    """
    k = w.shape[0]
    form = None if kernels is None else prepared_form(w.shape, x.shape[-3:], up, down)
    if up == 1 and down == 1:
        if form == "conv":
            return _conv_prepared(x, w, kernels, padding)
        return conv2d(x, w, padding=padding, kernels=kernels if form == "winograd" else None)  # (it checks the padding)
    fw = len(f)
    if up > 1 and down > 1:
        raise ValueError("up- and down-sampling at once is not used by StyleGAN2")
    if down > 1:
        p0 = padding + (fw - down + 1) // 2
        p1 = padding + (fw - down) // 2
        if k == 1:  # filter + decimate first, then the 1x1 convolution
            return conv2d(upfirdn2d(x, f, down=down, padding=(p0, p1)), w)
        return conv2d(upfirdn2d(x, f, padding=(p0, p1)), w, stride=down)
    p0 = padding + (fw + up - 1) // 2
    p1 = padding + (fw - up) // 2
    if k == 1:  # 1x1 convolution first, then up-sample
        return upfirdn2d(conv2d(x, w), f, up=up, padding=(p0, p1), gain=up * up)
    p0 -= k - 1
    p1 -= k - up
    pt = max(min(-p0, -p1), 0)
    x = conv_transpose2d(x, w, stride=up, padding=pt, kernels=kernels if form == "dilated" else None)
    return upfirdn2d(x, f, padding=(p0 + pt, p1 + pt), gain=up * up)


# Kernels prepared once. The input gradient of a convolution correlates with its kernel flipped and its
# input and output channels swapped, and the zero-dilated transposed convolution flips its kernel in the
# forward pass too; XLA:CPU makes these kernels anew on every call, from weights that do not change between
# the calls of a search (3x3x512x512: 2.5-4 ms a copy, single-threaded; ~20 ms of kernel time in a paper256
# step). A generator's `prepared_variables` makes them once per run (on CPU, for the layers whose form needs them:
# `prepared_form`), and these convolutions use them through their own gradient (same values: flips and
# transposes are exact).

def prepared_form(w_shape: Sequence[int], x_hwc: Sequence[int], up: int = 1, down: int = 1) -> str | None:
    """The form conv2d_resample runs a kernel of shape w_shape on inputs [..., *x_hwc] in, when that form
    rearranges the kernel on every call on CPU: 'conv' (a stride-1 convolution, not shifted products),
    'winograd' (its transformed kernels) or 'dilated' (the zero-dilated transposed convolution); None for
    every other form (1x1, shifted products, phases, down-sampling) and off CPU."""
    if w_shape[0] * w_shape[1] == 1 or down != 1 or jax.default_backend() != "cpu":
        return None
    if up == 1:  # conv2d's choice, with conv2d_resample's channel limit and padding
        if _as_winograd(w_shape, x_hwc, w_shape[0] // 2):
            return "winograd"
        return None if _as_products(w_shape, x_hwc[0], x_hwc[1], PRODUCTS_MIN_CHANNELS) else "conv"
    return None if _as_phases(x_hwc) else "dilated"


def prepare_kernels(w: Array, form: str) -> dict:
    """The kernels `form` ('conv', 'winograd' or 'dilated') needs besides w itself, made from w once."""
    if form == "winograd":
        return winograd_kernels(w)
    swapped = jnp.swapaxes(w, 2, 3)  # HWIO -> HWOI: the input gradient's kernel maps O channels to I
    if form == "conv":
        return {"grad": swapped[::-1, ::-1]}
    if form == "dilated":
        return {"flipped": w[::-1, ::-1], "grad": swapped}
    raise ValueError(f"no prepared kernels for the form {form!r}")


def _dilated(x: Array, flipped: Array, stride: int, padding: int) -> Array:
    kh, kw = flipped.shape[:2]
    return lax.conv_general_dilated(x, flipped.astype(x.dtype), (1, 1),
                                    [(kh - 1 - padding,) * 2, (kw - 1 - padding,) * 2],
                                    lhs_dilation=(stride, stride), dimension_numbers=_DN)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def _conv_prepared(x: Array, w: Array, kernels: dict, padding: int) -> Array:
    return _convolution(x, w, 1, padding)


def _conv_prepared_fwd(x, w, kernels, padding):
    return _convolution(x, w, 1, padding), (x, w, kernels)


def _conv_prepared_bwd(padding, res, g):
    x, w, kernels = res
    kh, kw = w.shape[:2]
    dx = lax.conv_general_dilated(g, kernels["grad"].astype(g.dtype), (1, 1),
                                  [(kh - 1 - padding,) * 2, (kw - 1 - padding,) * 2], dimension_numbers=_DN)
    return (dx,) + _kernel_cotangents(lambda w_: _convolution(x, w_, 1, padding), w, g, kernels)


_conv_prepared.defvjp(_conv_prepared_fwd, _conv_prepared_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def _dilated_prepared(x: Array, w: Array, kernels: dict, stride: int, padding: int) -> Array:
    return _dilated(x, kernels["flipped"], stride, padding)


def _dilated_prepared_fwd(x, w, kernels, stride, padding):
    return _dilated(x, kernels["flipped"], stride, padding), (x, w, kernels)


def _dilated_prepared_bwd(stride, padding, res, g):
    # y[i] = sum_t x[(i + t - P) / s] w[k-1-t] over the taps where that index is whole (P = k-1-padding), so
    # dx[j] = sum_u g[s j - padding + u] w[u]^T: a stride-s correlation of g with w, I and O swapped.
    x, w, kernels = res
    dx = lax.conv_general_dilated(g, kernels["grad"].astype(g.dtype), (stride, stride), [(padding, padding)] * 2,
                                  dimension_numbers=_DN)
    return (dx,) + _kernel_cotangents(lambda w_: _dilated(x, w_[::-1, ::-1], stride, padding), w, g, kernels)


_dilated_prepared.defvjp(_dilated_prepared_fwd, _dilated_prepared_bwd)


def _tap_sum_of_squares(w: Array) -> Array:
    """sum over the kernel taps of w**2: [k,k,I,O] -> [I,O], as a sum of the k*k tap slices. (XLA:CPU's
    reduction of a 3x3x512x512 kernel over its leading axes takes ~10 ms; the sum of slices ~0.4 ms,
    and every modulated convolution of a step recomputes it.)"""
    return sum(jnp.square(w[i, j]) for i in range(w.shape[0]) for j in range(w.shape[1]))


def modulated_conv2d(x: Array, weight: Array, styles: Array, noise: Array | None = None, up: int = 1,
                     padding: int = 0, f: np.ndarray | None = None, demodulate: bool = True,
                     kernels: dict | None = None) -> Array:
    """StyleGAN2's modulated (and demodulated) convolution.

    x: [N,H,W,I]; weight: [k,k,I,O]; styles: [N,I]; noise: broadcastable to the output [N,H',W',O].
    Equivalent to scaling the weight per sample by `styles`, normalising each output filter to unit
    norm (demodulation), and convolving; computed as scale-activations / convolve / scale-outputs.
    `kernels`: the weight's prepared kernels (`prepare_kernels`), or None.
    """
    dtype = x.dtype
    x = x * styles.astype(dtype)[:, None, None, :]
    x = conv2d_resample(x, weight.astype(dtype), f=f, up=up, padding=padding, kernels=kernels)
    if demodulate:
        w32 = weight.astype(jnp.float32)
        s32 = styles.astype(jnp.float32)
        dcoefs = lax.rsqrt(jnp.square(s32) @ _tap_sum_of_squares(w32) + 1e-8)  # [N, O]
        x = x * dcoefs.astype(dtype)[:, None, None, :]
    if noise is not None:
        x = x + noise.astype(dtype)
    return x


def normalize_2nd_moment(x: Array, axis: int = -1, eps: float = 1e-8) -> Array:
    return x * lax.rsqrt(jnp.mean(jnp.square(x), axis=axis, keepdims=True) + eps)


def minibatch_std(x: Array, group_size: int | None = 4, num_channels: int = 1) -> Array:
    """Append the minibatch standard deviation as extra channels (NVIDIA's MinibatchStdLayer).

    x: [N,H,W,C]. Sample i belongs to group i % (N // G), as in the official reshape.
    """
    n, h, w, c = x.shape
    g = min(group_size, n) if group_size is not None else n
    if n % g:
        raise ValueError(f"batch size {n} is not a multiple of the minibatch-std group size {g}")
    fch = num_channels
    y = x.reshape(g, n // g, h, w, fch, c // fch).astype(jnp.float32)
    y = y - jnp.mean(y, axis=0)
    y = jnp.sqrt(jnp.mean(jnp.square(y), axis=0) + 1e-8)  # [n, H, W, F, c]
    y = jnp.mean(y, axis=(1, 2, 4))  # [n, F]
    y = jnp.tile(y, (g, 1))[:, None, None, :]  # [N, 1, 1, F]
    y = jnp.broadcast_to(y, (n, h, w, fch)).astype(x.dtype)
    return jnp.concatenate([x, y], axis=-1)
