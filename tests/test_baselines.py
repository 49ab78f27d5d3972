"""Classical fills keep the known pixels, fill the hole sensibly, and telea is optional."""
import sys
import types

import numpy as np
import pytest

from jax_inpaint.study import baselines
from jax_inpaint.study import metrics
from jax_inpaint.errors import InputError
from jax_inpaint.masks import make_mask


@pytest.fixture(scope="module")
def smooth():
    """A smooth 48 x 56 colour image in [-1, 1] and a centre hole."""
    y, x = np.mgrid[0:48, 0:56] / 47.0
    img = np.stack([0.6 * np.sin(3 * x + 1), 0.5 * np.cos(2 * y), x * y - 0.3], -1).astype(np.float32)
    return img, make_mask("center", 0.25, seed=0, size=(48, 56))


@pytest.mark.parametrize("name", ["mean_fill", "biharmonic"])
def test_known_pixels_are_kept_exactly(name, smooth):
    img, _ = smooth
    noisy = np.clip(img + np.random.default_rng(0).normal(0, 0.2, img.shape), -1, 1).astype(np.float32)
    hole = make_mask("strokes-medium", 0.3, seed=2, size=img.shape[:2])
    out = baselines.run_baseline(name, noisy, hole)
    assert out.dtype == np.float32 and out.shape == img.shape
    assert np.array_equal(out[~hole], noisy[~hole])
    assert out.min() >= -1 and out.max() <= 1
    assert not np.array_equal(out[hole], noisy[hole])


def test_mean_fill_paints_the_known_mean(smooth):
    img, hole = smooth
    out = baselines.mean_fill(img, hole)
    mean = img[~hole].mean(axis=0, dtype=np.float64)
    np.testing.assert_allclose(out[hole], np.broadcast_to(mean, out[hole].shape), atol=1e-7)


def test_biharmonic_beats_mean_fill_on_a_smooth_image(smooth):
    img, hole = smooth
    bih = metrics.masked_psnr(baselines.biharmonic(img, hole), img, hole)
    mean = metrics.masked_psnr(baselines.mean_fill(img, hole), img, hole)
    assert bih > mean + 20, (bih, mean)  # observed ~67 dB vs ~22 dB


def test_telea_is_unavailable_without_opencv(monkeypatch, smooth):
    monkeypatch.setitem(sys.modules, "cv2", None)  # as if OpenCV were not installed
    assert baselines.available_baselines() == ("mean_fill", "biharmonic")
    with pytest.raises(InputError, match="OpenCV"):
        baselines.run_baseline("telea", *smooth)
    with pytest.raises(InputError, match="OpenCV"):
        baselines.telea(*smooth)


def test_telea_calls_opencv_with_8bit_inputs(monkeypatch, smooth):
    img, hole = smooth
    seen = {}

    def inpaint(src, mask, radius, flags):
        seen.update(dtype=src.dtype, shape=src.shape, mask_dtype=mask.dtype, mask_values=set(np.unique(mask)),
                    radius=radius, flags=flags)
        out = src.copy()
        out[mask > 0] = 255
        return out

    monkeypatch.setitem(sys.modules, "cv2", types.SimpleNamespace(inpaint=inpaint, INPAINT_TELEA=1))
    assert "telea" in baselines.available_baselines()
    out = baselines.run_baseline("telea", img, hole)
    assert seen == dict(dtype=np.uint8, shape=img.shape, mask_dtype=np.uint8, mask_values={0, 255},
                        radius=baselines.TELEA_RADIUS, flags=1)
    assert np.array_equal(out[~hole], img[~hole]) and np.all(out[hole] == 1.0)


@pytest.mark.parametrize("name", ["mean_fill", "biharmonic"])
def test_bad_inputs_are_refused(name, smooth):
    img, hole = smooth
    with pytest.raises(InputError, match="shape"):
        baselines.run_baseline(name, img, hole[:-1])
    with pytest.raises(InputError, match="whole image"):
        baselines.run_baseline(name, img, np.ones_like(hole))
    with pytest.raises(InputError, match="HWC"):
        baselines.run_baseline(name, img[None], hole)


def test_unknown_baseline(smooth):
    with pytest.raises(InputError, match="unknown baseline"):
        baselines.run_baseline("navier-stokes", *smooth)
