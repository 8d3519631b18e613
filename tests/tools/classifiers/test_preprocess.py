from __future__ import annotations

import numpy as np
import pytest

from tools.classifiers.preprocess import centre_square, normalise_uint8, prepare, to_grey_2d
from tools.errors import InvalidImageError

from .helpers import medmnist


def test_training_and_inference_paths_agree_on_real_images():
    images, _ = medmnist("pneumoniamnist")
    batch = normalise_uint8(images[:8], 0.5, 0.25)
    for i in range(8):
        x, box = prepare(images[i].astype(np.float32) / 255.0, (28, 28), 0.5, 0.25)
        np.testing.assert_allclose(x, batch[i], atol=1e-6)
        assert (box.top, box.left, box.side) == (0, 0, 28)


def test_centre_square_crop_and_area_resize():
    img = np.zeros((100, 60), np.float32)
    img[20:80, :] = 1.0  # exactly the centre square is white
    x, box = prepare(img, (28, 28), 0.0, 1.0)
    assert (box.top, box.left, box.side, box.height, box.width) == (20, 0, 60, 100, 60)
    assert x.shape == (1, 28, 28)
    np.testing.assert_allclose(x, 1.0)
    sq, _ = centre_square(np.arange(12, dtype=np.float32).reshape(3, 4))
    assert sq.shape == (3, 3)


def test_area_resize_averages():
    img = np.zeros((56, 56), np.float32)
    img[::2, ::2] = 1.0  # one in four pixels lit: area averaging gives 0.25 everywhere
    x, _ = prepare(img, (28, 28), 0.0, 1.0)
    np.testing.assert_allclose(x, 0.25, atol=1e-6)


def test_rgb_and_single_frame_stack_accepted():
    grey = np.linspace(0, 1, 32 * 32, dtype=np.float32).reshape(32, 32)
    rgb = np.repeat(grey[..., None], 3, axis=-1)
    np.testing.assert_allclose(to_grey_2d(rgb), grey, atol=1e-5)
    np.testing.assert_allclose(to_grey_2d(grey[None]), grey)


@pytest.mark.parametrize("image, message", [
    (np.zeros((0, 0), np.float32), "empty"),
    (np.full((64, 64), 0.3, np.float32), "constant"),
    (np.zeros((4, 64, 64), np.float32) + np.random.default_rng(0).random((4, 64, 64)), "volume"),
    (np.zeros((2, 2, 2, 2), np.float32), "4-D"),
    (np.array([[0.5]], np.float32), "too small"),
    (np.where(np.eye(16) > 0, np.nan, 0.5).astype(np.float32), "NaN"),
    (np.linspace(0, 300, 256, dtype=np.float32).reshape(16, 16), "[0, 1]"),
])
def test_bad_images_are_typed_errors(image, message):
    with pytest.raises(InvalidImageError, match=message.replace("[", r"\[").replace("]", r"\]")):
        prepare(image, (28, 28), 0.5, 0.25)
