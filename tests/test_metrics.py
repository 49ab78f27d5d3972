"""PSNR and SSIM agree with scikit-image; masked variants select what they say; diversity helper."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from jax_inpaint.study import metrics
from jax_inpaint.masks import make_mask

TOL = 1e-5  # parity with scikit-image (both in float64; the observed difference is ~1e-15)


@pytest.fixture(scope="module")
def pair():
    rng = np.random.default_rng(0)
    a = rng.uniform(-1, 1, (3, 40, 52, 3))
    b = np.clip(a + rng.normal(0, 0.25, a.shape), -1, 1)
    return a, b


def _sk_ssim(x, y, **kw):
    return structural_similarity(x, y, channel_axis=-1, data_range=2.0, gaussian_weights=True, sigma=1.5,
                                 use_sample_covariance=False, **kw)


def test_psnr_matches_skimage(pair):
    a, b = pair
    batch = metrics.psnr(a, b)
    assert batch.shape == (3,)
    for i in range(3):
        ref = peak_signal_noise_ratio(a[i], b[i], data_range=2.0)
        assert abs(metrics.psnr(a[i], b[i]) - ref) < TOL
        assert abs(batch[i] - ref) < TOL
    assert metrics.psnr(a[0], a[0]) == np.inf


def test_ssim_matches_skimage(pair):
    a, b = pair
    batch = metrics.ssim(a, b)
    assert batch.shape == (3,)
    for i in range(3):
        ref = _sk_ssim(a[i], b[i])
        assert abs(metrics.ssim(a[i], b[i]) - ref) < TOL
        assert abs(batch[i] - ref) < TOL
    # float32 input is computed in float64 (scikit-image would stay in float32).
    assert abs(metrics.ssim(a[0].astype(np.float32), b[0].astype(np.float32))
               - _sk_ssim(a[0].astype(np.float32).astype(np.float64), b[0].astype(np.float32).astype(np.float64))) < TOL
    assert metrics.ssim(a[0], a[0]) == pytest.approx(1.0, abs=1e-12)


def test_masked_on_a_full_mask_equals_plain(pair):
    a, b = pair
    full = np.ones(a.shape[1:3], bool)
    assert metrics.masked_psnr(a[0], b[0], full) == pytest.approx(metrics.psnr(a[0], b[0]), abs=1e-12)
    assert metrics.masked_ssim(a[0], b[0], full) == pytest.approx(metrics.ssim(a[0], b[0]), abs=1e-12)
    np.testing.assert_allclose(metrics.masked_psnr(a, b, full), metrics.psnr(a, b), atol=1e-12)


def test_masked_psnr_selects_the_region(pair):
    a, _ = pair
    hole = make_mask("center", 0.25, seed=0, size=a.shape[1:3])
    b = a[0].copy()
    b[hole] += 0.1  # only the hole differs
    assert metrics.masked_psnr(b, a[0], ~hole) == np.inf
    assert metrics.masked_psnr(b, a[0], hole) == pytest.approx(10 * np.log10(4 / 0.01))
    assert metrics.mse(b, a[0]) == pytest.approx(0.01 * hole.mean())
    # Per-image regions for a batch.
    regions = np.stack([hole, ~hole, hole])
    got = metrics.masked_psnr(np.stack([b, b, a[0]]), np.stack([a[0]] * 3), regions)
    assert got[0] == pytest.approx(10 * np.log10(4 / 0.01)) and got[1] == np.inf and got[2] == np.inf


def test_masked_ssim_averages_the_skimage_map(pair):
    a, b = pair
    region = make_mask("half", 0.4, seed=1, size=a.shape[1:3])
    _, full_map = _sk_ssim(a[0], b[0], full=True)
    s = full_map.mean(axis=-1)
    inner = np.zeros_like(region)
    inner[5:-5, 5:-5] = True
    assert metrics.masked_ssim(a[0], b[0], region) == pytest.approx(s[region & inner].mean(), abs=TOL)
    np.testing.assert_allclose(metrics.ssim_map(a[0], b[0]), s, atol=TOL)
    # A region inside the border strip only: averaged over all its pixels.
    strip = np.zeros_like(region)
    strip[:3] = True
    assert metrics.masked_ssim(a[0], b[0], strip) == pytest.approx(s[strip].mean(), abs=TOL)


def test_bad_inputs(pair):
    a, b = pair
    with pytest.raises(ValueError, match="shapes"):
        metrics.psnr(a[0], b[0, :10])
    with pytest.raises(ValueError, match="empty region"):
        metrics.masked_psnr(a[0], b[0], np.zeros(a.shape[1:3], bool))
    with pytest.raises(ValueError, match="at least 11"):
        metrics.ssim(a[0, :8, :8], b[0, :8, :8])


def test_region_scores(pair):
    a, b = pair
    hole = make_mask("center", 0.25, seed=0, size=a.shape[1:3])
    s = metrics.region_scores(b[0], a[0], hole)
    assert set(s) == {"psnr", "ssim", "psnr_hole", "ssim_hole", "psnr_known", "ssim_known"}
    assert s["psnr"] == pytest.approx(metrics.psnr(b[0], a[0]))
    assert s["psnr_known"] == pytest.approx(metrics.masked_psnr(b[0], a[0], ~hole))


def test_jax_versions_match_numpy_under_jit(pair):
    a, b = pair
    hole = make_mask("strokes-medium", 0.3, seed=0, size=a.shape[1:3])
    fn = jax.jit(lambda x, y, r: (metrics.masked_mse_jax(x, y, r), metrics.masked_psnr_jax(x, y, r)))
    m, p = fn(jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32), jnp.asarray(hole))
    np.testing.assert_allclose(np.asarray(m), metrics.mse(a, b, hole), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(p), metrics.masked_psnr(a, b, hole), atol=1e-4)
    np.testing.assert_allclose(np.asarray(metrics.masked_psnr_jax(jnp.asarray(a), jnp.asarray(b))),
                               metrics.psnr(a, b), atol=1e-4)


def test_mean_pairwise():
    assert metrics.mean_pairwise(lambda x, y: abs(x - y), [0.0, 1.0, 3.0]) == pytest.approx(2.0)
    calls = []
    metrics.mean_pairwise(lambda x, y: calls.append((x, y)) or 0.0, "abcd")
    assert calls == [("a", "b"), ("a", "c"), ("a", "d"), ("b", "c"), ("b", "d"), ("c", "d")]
    with pytest.raises(ValueError):
        metrics.mean_pairwise(lambda x, y: 0.0, [1.0])
