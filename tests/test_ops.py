"""StyleGAN2's kernels against their definitions (the generator's parity with NVIDIA's code is
tests/test_stylegan2.py; these cover shapes and strides its fixtures do not)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from jax_inpaint.models import ops


def dilated_transpose(x, w, stride, padding):
    """The transposed convolution by its definition: a correlation of the zero-dilated input with the
    spatially flipped kernel."""
    kh, kw = w.shape[:2]
    return lax.conv_general_dilated(x, w[::-1, ::-1], (1, 1), [(kh - 1 - padding,) * 2, (kw - 1 - padding,) * 2],
                                    lhs_dilation=(stride, stride), dimension_numbers=("NHWC", "HWIO", "NHWC"))


@pytest.mark.parametrize("h, w, kh, kw, stride, padding", [
    (5, 5, 3, 3, 2, 0), (4, 6, 3, 3, 2, 1), (5, 3, 4, 4, 2, 1), (3, 3, 1, 1, 2, 0),  # k < stride: empty phases
    (6, 5, 5, 3, 3, 2), (4, 4, 2, 2, 2, 0), (4, 4, 3, 3, 1, 1), (7, 4, 4, 3, 4, 0)])
def test_conv_transpose2d_by_phases_equals_the_dilated_convolution(h, w, kh, kw, stride, padding):
    """Values and input gradients within float32 rounding (1e-5 of values of order 1-10)."""
    rng = np.random.RandomState(h * 100 + kh * 10 + stride)
    x = rng.randn(2, h, w, 3).astype(np.float32)
    k = rng.randn(kh, kw, 3, 5).astype(np.float32)
    y = ops.conv_transpose2d(x, k, stride=stride, padding=padding, phases=True)
    ref = dilated_transpose(x, k, stride, padding)
    assert y.shape == ref.shape
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5)
    g = rng.randn(*y.shape).astype(np.float32)
    dx = jax.vjp(lambda x: ops.conv_transpose2d(x, k, stride=stride, padding=padding, phases=True), x)[1](g)[0]
    np.testing.assert_allclose(dx, jax.vjp(lambda x: dilated_transpose(x, k, stride, padding), x)[1](g)[0],
                               rtol=1e-5, atol=1e-5)


def test_demodulation_uses_the_sum_of_squares_over_the_taps():
    """modulated_conv2d's demodulation: the output filter norms of the style-scaled kernel, as NVIDIA's
    (w * s).square().sum([kh, kw, in])."""
    rng = np.random.RandomState(0)
    x = rng.randn(2, 6, 6, 4).astype(np.float32)
    w = rng.randn(3, 3, 4, 5).astype(np.float32)
    s = rng.randn(2, 4).astype(np.float32)
    y = ops.modulated_conv2d(x, w, s, padding=1)
    ws = w[None] * s[:, None, None, :, None]  # [N, k, k, I, O]
    d = 1 / np.sqrt(np.sum(np.square(ws), axis=(1, 2, 3)) + 1e-8)  # [N, O]
    ref = np.stack([np.asarray(ops.conv2d(x[i:i + 1], ws[i], padding=1))[0] * d[i] for i in range(2)])
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5)


def test_transposed_convolution_picks_phases_by_size():
    """Phases for large inputs (where their gradient is faster), the dilated form for small ones (shorter
    compiles): both give the definition's values."""
    k = np.ones((3, 3, 4, 2), np.float32)
    small = np.ones((1, 4, 4, 4), np.float32)
    n = -(-ops.PHASES_MIN_ELEMENTS // 4)
    side = int(np.ceil(np.sqrt(n)))
    large = np.ones((1, side, side, 4), np.float32)
    f = lambda x: ops.conv_transpose2d(x, k, stride=2)
    assert "lhs_dilation=(2, 2)" in str(jax.make_jaxpr(f)(small))
    assert "lhs_dilation=(2, 2)" not in str(jax.make_jaxpr(f)(large))
    np.testing.assert_allclose(f(small), dilated_transpose(small, k, 2, 0), rtol=1e-5)
