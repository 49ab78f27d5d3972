"""StyleGAN2's kernels against their definitions (the generator's parity with NVIDIA's code is
tests/test_stylegan2.py; these cover shapes and strides its fixtures do not)."""
import jax
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


@pytest.mark.parametrize("lead, h, w, kh, kw, padding", [
    ((2,), 4, 4, 3, 3, 1), ((1,), 8, 5, 3, 3, 0), ((2,), 5, 6, 2, 1, 0), ((1,), 6, 6, 1, 2, 0),
    ((3,), 7, 7, 2, 2, 1), ((2, 3), 4, 4, 3, 3, 1)])
def test_small_maps_as_shifted_products_equal_the_convolution(monkeypatch, lead, h, w, kh, kw, padding):
    """On CPU, stride-1 convolutions of maps of at most SHIFTED_MAX_PIXELS pixels (the generator's 4x4-32x32
    layers with wide kernels, the phases of its up-sampling, VGG's small maps) are one product of the
    input's shifted copies: the same values and input gradients as XLA's convolution, within float32
    rounding (1e-5), for any kernel shape, padding and leading batch axes; narrow kernels stay convolutions
    unless asked (`min_channels`)."""
    rng = np.random.RandomState(h * 10 + kh)
    x = rng.randn(*lead, h, w, 6).astype(np.float32)
    k = rng.randn(kh, kw, 6, 5).astype(np.float32)

    def f(x):
        return ops.conv2d(x, k, padding=padding, min_channels=6 * 5)

    def traced(x, min_channels=6 * 5):  # a new function per trace: traces are cached by function, the switch is read when traced
        return str(jax.make_jaxpr(lambda x: ops.conv2d(x, k, padding=padding, min_channels=min_channels))(x))

    ref = lax.conv_general_dilated(x.reshape(-1, h, w, 6), k, (1, 1), [(padding, padding)] * 2,
                                   dimension_numbers=("NHWC", "HWIO", "NHWC"))
    ref = ref.reshape(*lead, *ref.shape[1:])
    g = rng.randn(*ref.shape).astype(np.float32)
    ref_dx = jax.vjp(lambda x: lax.conv_general_dilated(x.reshape(-1, h, w, 6), k, (1, 1), [(padding, padding)] * 2,
                                                        dimension_numbers=("NHWC", "HWIO", "NHWC")).reshape(ref.shape),
                     x)[1](g)[0]
    monkeypatch.setenv("JAX_INPAINT_SHIFTED", "1")   # read when traced
    assert ("conv_general_dilated" not in traced(x)) == (jax.default_backend() == "cpu" and kh * kw > 1)
    np.testing.assert_allclose(f(x), ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(jax.vjp(f, x)[1](g)[0], ref_dx, rtol=1e-5, atol=1e-5)
    monkeypatch.setenv("JAX_INPAINT_SHIFTED", "0")
    assert "conv_general_dilated" in traced(x)
    np.testing.assert_allclose(jax.jit(f)(x), ref, rtol=1e-5, atol=1e-5)
    big = rng.randn(1, 40, 40, 6).astype(np.float32)  # more than SHIFTED_MAX_PIXELS: the convolution
    monkeypatch.setenv("JAX_INPAINT_SHIFTED", "1")
    assert "conv_general_dilated" in traced(big)
    assert "conv_general_dilated" in traced(x, min_channels=6 * 5 + 1)  # a narrower kernel than asked for


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


@pytest.mark.parametrize("form, up, x_shape, w_shape, padding", [
    ("conv", 1, (2, 40, 36, 6), (3, 3, 6, 5), 1), ("conv", 1, (1, 34, 34, 4), (3, 3, 4, 4), 0),
    ("dilated", 2, (2, 5, 6, 6), (3, 3, 6, 5), 1), ("dilated", 2, (1, 4, 4, 3), (3, 3, 3, 2), 1)])
def test_prepared_kernels_give_the_same_values_and_gradients(form, up, x_shape, w_shape, padding):
    """A kernel prepared once (flipped, and with I and O swapped for the input gradient) gives exactly the
    convolution's values and gradients (flips and transposes are exact; w's gradient too, for a caller that
    trains through it), and the compiled gradient then rearranges no kernel."""
    rng = np.random.RandomState(sum(x_shape))
    x = rng.randn(*x_shape).astype(np.float32)
    w = rng.randn(*w_shape).astype(np.float32)
    f = ops.fir_taps((1.0, 3.0, 3.0, 1.0))
    form_here = ops.prepared_form(w.shape, x.shape[1:], up)
    assert form_here == (form if jax.default_backend() == "cpu" else None)
    kernels = ops.prepare_kernels(w, form)

    def loss(x, w, kernels):
        return jax.numpy.sum(jax.numpy.sin(ops.conv2d_resample(x, w, f=f, up=up, padding=padding, kernels=kernels)))

    grad = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))
    (v0, (dx0, dw0)), (v1, (dx1, dw1)) = grad(x, w, None), grad(x, w, kernels)
    np.testing.assert_allclose(v1, v0, rtol=1e-6)
    np.testing.assert_allclose(dx1, dx0, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dw1, dw0, rtol=1e-5, atol=1e-5)
    if form_here is not None:
        dx_only = jax.jit(jax.grad(loss)).lower(x, w, kernels).as_text()
        assert "stablehlo.reverse" not in dx_only and "stablehlo.transpose" not in dx_only
        assert "stablehlo.reverse" in jax.jit(jax.grad(loss)).lower(x, w, None).as_text()
    if form == "dilated":  # the transposed convolution itself, at other paddings and strides
        for stride, pad in ((2, 0), (2, 2), (3, 1)):
            def t(x, kernels):
                return jax.numpy.sum(jax.numpy.cos(ops.conv_transpose2d(x, w, stride=stride, padding=pad,
                                                                        phases=False, kernels=kernels)))
            np.testing.assert_allclose(jax.grad(t)(x, kernels), jax.grad(t)(x, None), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="no prepared kernels"):
        ops.prepare_kernels(w, "phases")


@pytest.mark.parametrize("lead, h, w", [((2,), 16, 16), ((1,), 8, 32), ((2, 3), 32, 8)])
def test_winograd_equals_the_convolution(monkeypatch, lead, h, w):
    """On CPU, 3x3 'same' convolutions over maps of WINOGRAD_MIN_PIXELS .. SHIFTED_MAX_PIXELS pixels (even
    sides) with wide kernels run by Winograd's F(2x2, 3x3): the same values, input gradients and kernel
    gradients as XLA's convolution within float32 rounding (1e-5 of the largest value), from kernels made in
    the call or prepared once (`prepared_form` 'winograd'); the input gradient reads the forward's
    transformed kernel (no kernel is flipped or transposed). Other sizes, paddings and narrow kernels keep
    their form. (Channels are narrow here: WINOGRAD_MIN_CHANNELS is lowered.)"""
    monkeypatch.setattr(ops, "WINOGRAD_MIN_CHANNELS", 6 * 5)
    monkeypatch.setenv("JAX_INPAINT_WINOGRAD", "1")
    rng = np.random.RandomState(h + w)
    x = rng.randn(*lead, h, w, 6).astype(np.float32)
    k = rng.randn(3, 3, 6, 5).astype(np.float32)

    def conv(x, k):
        y = lax.conv_general_dilated(x.reshape(-1, h, w, 6), k, (1, 1), [(1, 1)] * 2,
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return y.reshape(*lead, *y.shape[1:])

    g = rng.randn(*lead, h, w, 5).astype(np.float32)
    ref, ref_vjp = jax.vjp(conv, x, k)
    ref_dx, ref_dk = ref_vjp(g)

    def close(a, b):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5 * float(np.abs(b).max()))

    on_cpu = jax.default_backend() == "cpu"
    kernels = ops.winograd_kernels(k)
    for run in (lambda x, k: ops.conv2d(x, k, padding=1),
                lambda x, k: ops.conv2d(x, k, padding=1, kernels=kernels),
                lambda x, k: ops.conv2d_resample(x, k, padding=1, kernels=ops.prepare_kernels(k, "winograd"))):
        y, vjp = jax.vjp(run, x, k)
        dx, dk = vjp(g)
        close(y, ref), close(dx, ref_dx), close(dk, ref_dk)
        hlo = jax.jit(lambda x: jax.vjp(lambda x: run(x, k), x)[1](g)[0]).lower(x).compile().as_text()
        assert ("convolution(" not in hlo) == on_cpu  # (k's gradient, not asked for here, is dead code)
    assert ops.prepared_form(k.shape, x.shape[-3:]) == ("winograd" if on_cpu else None)
    dx_only = jax.jit(lambda x: jax.vjp(lambda x: ops.conv2d(x, k, padding=1, kernels=kernels), x)[1](g)[0]).lower(x)
    assert "stablehlo.reverse" not in dx_only.as_text() and "stablehlo.transpose" not in dx_only.as_text()

    # kernels passed in are the ones used (a scaled copy scales the output)
    scaled = ops.conv2d(x, k, padding=1, kernels={"U": 2 * kernels["U"]})
    if on_cpu:
        close(scaled, 2 * ref)

    def form(shape, padding=1, kernel=k, dtype=np.float32):
        jaxpr = str(jax.make_jaxpr(lambda x: ops.conv2d(x, kernel, padding=padding))(np.zeros(shape, dtype)))
        return "winograd" if "custom_vjp_call" in jaxpr else "other"

    assert form(x.shape) == ("winograd" if on_cpu else "other")
    assert form((1, h + 1, w, 6)) == "other"  # an odd side
    assert form((1, 4, 4, 6)) == "other"  # fewer than WINOGRAD_MIN_PIXELS
    assert form(x.shape, padding=0) == "other"
    assert form(x.shape, kernel=k[:, :, :, :4]) == "other"  # 6 x 4 channels: narrower than asked for
    assert form(x.shape, dtype=jax.numpy.bfloat16) == "other"  # float32 only
    monkeypatch.setenv("JAX_INPAINT_WINOGRAD", "0")
    assert form(x.shape) == "other"
