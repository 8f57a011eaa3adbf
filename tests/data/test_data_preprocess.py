"""to_float layouts and the Normalizer modes."""

from __future__ import annotations

import numpy as np
import pytest

from backproplab.data import Normalizer, to_float
from backproplab.errors import ConfigError, DataError


@pytest.fixture
def images() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, size=(6, 4, 5, 3), dtype=np.uint8)


def test_to_float_layouts(images):
    nhwc = to_float(images)
    nchw = to_float(images, "NCHW")
    flat = to_float(images, "flat")
    assert nhwc.dtype == nchw.dtype == flat.dtype == np.float32
    assert nhwc.shape == (6, 4, 5, 3) and nchw.shape == (6, 3, 4, 5) and flat.shape == (6, 60)
    assert nchw.flags.c_contiguous and flat.flags.c_contiguous
    n, h, w, c = 4, 2, 3, 1
    assert nchw[n, c, h, w] == images[n, h, w, c]
    # flat index of (c, h, w) is c*H*W + h*W + w: channel planes one after another.
    for n, h, w, c in [(0, 0, 0, 0), (5, 3, 4, 2), (2, 1, 2, 1), (3, 0, 4, 2)]:
        assert flat[n, c * 20 + h * 5 + w] == images[n, h, w, c]
    assert flat.max() == images.max()  # values stay on 0..255


def test_to_float_errors(images):
    with pytest.raises(ConfigError, match="layout must be one of"):
        to_float(images, "HWC")  # type: ignore[arg-type]
    with pytest.raises(DataError, match=r"expects images of shape \(N, H, W, C\), got shape \(6, 60\)"):
        to_float(images.reshape(6, 60))


@pytest.mark.parametrize("layout", ["NHWC", "NCHW", "flat"])
def test_mean_image(images, layout):
    x = to_float(images, layout)
    test = to_float(images[:2], layout) + 10
    norm = Normalizer("mean_image", layout).fit(x)
    out = norm(x)
    assert out.dtype == np.float32 and out.shape == x.shape
    assert np.abs(out.mean(axis=0)).max() < 1e-4  # per-pixel mean of the training set is 0
    # A pure shift: the per-pixel spread is unchanged (values stay in 0..255 units).
    np.testing.assert_allclose(out.std(axis=0), x.std(axis=0), rtol=1e-4)
    np.testing.assert_allclose(norm.mean, x.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(norm(test), test - x.mean(axis=0), atol=1e-4)
    with pytest.raises(DataError, match="fitted on images of shape"):
        norm(x[:, :-1])


def test_standardize_per_channel(images):
    x = to_float(images, "NHWC")
    norm = Normalizer("standardize").fit(x)
    out = norm(x)
    np.testing.assert_allclose(out.mean(axis=(0, 1, 2)), 0, atol=1e-5)
    np.testing.assert_allclose(out.std(axis=(0, 1, 2)), 1, atol=1e-5)
    # The statistics are in 0..1 units, like torchvision's (0.4914, 0.4822, 0.4465).
    np.testing.assert_allclose(norm.mean, (x / 255).mean(axis=(0, 1, 2)), rtol=1e-5)
    assert norm.mean.shape == (3,) and norm.std.shape == (3,)
    # Same result in the other layouts.
    for layout, to_nhwc in [
        ("NCHW", lambda a: a.transpose(0, 2, 3, 1)),
        ("flat", lambda a: a.reshape(6, 3, 4, 5).transpose(0, 2, 3, 1)),
    ]:
        xl = to_float(images, layout)
        nl = Normalizer("standardize", layout, channels=3).fit(xl)
        np.testing.assert_allclose(nl.mean, norm.mean, rtol=1e-6)
        np.testing.assert_allclose(to_nhwc(nl(xl)), out, atol=1e-5)


def test_standardize_constant_channel():
    x = np.zeros((4, 2, 2, 3), np.float32)
    x[..., 0] = 7
    x[..., 1] = np.arange(16).reshape(4, 2, 2)
    out = Normalizer("standardize").fit(x)(x)
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out[..., 0], 0, atol=1e-6)


def test_none_mode(images):
    x = to_float(images)
    out = Normalizer("none")(x)
    np.testing.assert_array_equal(out, x)
    assert out is not x and out.dtype == np.float32


@pytest.mark.parametrize("mode", ["mean_image", "standardize", "none"])
def test_state_dict_round_trip(images, mode):
    x = to_float(images, "NCHW")
    norm = Normalizer(mode, "NCHW").fit(x)
    state = norm.state_dict()
    assert state["mode"] == mode and state["layout"] == "NCHW"
    again = Normalizer.from_state_dict(state)
    np.testing.assert_array_equal(again(x[:3]), norm(x[:3]))


def test_normalizer_errors(images):
    with pytest.raises(ConfigError, match="normalization mode must be one of"):
        Normalizer("zscore")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="needs channels"):
        Normalizer("standardize", "flat")
    with pytest.raises(RuntimeError, match="not fitted"):
        Normalizer()(to_float(images))
    with pytest.raises(DataError, match=r"missing \['std'\]"):
        Normalizer.from_state_dict({"mode": "standardize", "layout": "NHWC", "mean": np.zeros(3)})
    with pytest.raises(DataError, match="cannot be split into 3 channels"):
        Normalizer("standardize", "flat", channels=3).fit(np.zeros((2, 10), np.float32))
    norm = Normalizer("standardize").fit(to_float(images))
    with pytest.raises(DataError, match="fitted on 3 channels, got 1"):
        norm(np.zeros((2, 4, 5, 1), np.float32))
