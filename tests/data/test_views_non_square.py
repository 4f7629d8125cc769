"""Random views of non-square images (:class:`medfm.data.views.RandomViews`): the crop is torchvision's
``RandomResizedCrop`` drawn relative to each ``H x W`` image (area and aspect in pixels), rotated in pixel space, and
comes out ``S x S`` (default ``S = min(H, W)``). The old code refused any ``H != W`` batch ("views expect square
images ... resize them to a square first"), so an image folder of non-square images could not be augmented.
Generated images only.
"""
import math

import numpy as np
import pytest
import torch

from medfm.data.imagefolder import ImageFolderDataset
from medfm.data.views import RandomViews, ViewConfig
from tests.conftest import write_class_folders

PLAIN = dict(hflip_p=0.0, rotate_deg=0.0, blur_p=0.0, brightness=0.0, contrast=0.0, noise_std=0.0)


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _ramps(h, w):
    """(1, 2, H, W) float64: channel 0 is X / 256 (the column), channel 1 is Y / 256 (the row)."""
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    return torch.stack([xs, ys])[None] / 256


def test_the_whole_crop_of_a_2_x_4_image_is_resampled_to_2_x_2():
    """scale 1 and aspect W / H = 2: the crop is the whole image; the 2 x 2 view's pixel centres fall midway
    between columns 0-1 and 2-3 and on rows 0 and 1 (hand-computed bilinear samples)."""
    img = torch.tensor([[0.0, 0.2, 0.4, 0.6], [0.1, 0.3, 0.9, 0.5]], dtype=torch.float64)[None, None]
    out = RandomViews(ViewConfig(scale=(1.0, 1.0), ratio=(2.0, 2.0), **PLAIN), out_size=2)(img, _gen())
    assert torch.allclose(out[0, 0], torch.tensor([[0.1, 0.5], [0.2, 0.7]], dtype=torch.float64), atol=1e-12)


@pytest.mark.parametrize("h, w", [(20, 40), (40, 20)])
def test_a_square_crop_is_square_in_pixels(h, w):
    """area 1/8 of a 20 x 40 image, aspect 1: a 10 x 10 px crop resampled to 10 x 10 steps one pixel per
    output pixel both ways (in normalised coordinates it would have been 0.35 x 0.35: 14 x 7 px)."""
    out = RandomViews(ViewConfig(scale=(0.125, 0.125), ratio=(1.0, 1.0), **PLAIN), out_size=10)(_ramps(h, w), _gen())
    dx = (out[0, 0, :, 1:] - out[0, 0, :, :-1]) * 256
    dy = (out[0, 1, 1:, :] - out[0, 1, :-1, :]) * 256
    assert torch.allclose(dx, torch.ones_like(dx), atol=1e-9) and torch.allclose(dy, torch.ones_like(dy), atol=1e-9)
    assert torch.allclose(out[0, 0, 1:] - out[0, 0, :-1], torch.zeros(9, 10, dtype=torch.float64), atol=1e-12)


def test_a_rotated_crop_of_a_non_square_image_is_a_rotation_in_pixels():
    """Rotated (up to 40 degrees) and flipped views of a 64 x 128 image: near the crop's centre, one output
    pixel step is a step of crop side / S image pixels, the two steps at right angles (sqrt(0.02 * 64 * 128) =
    12.8 px crop, S = 8: 1.6 px), whatever the angle drawn."""
    views = RandomViews(ViewConfig(scale=(0.02, 0.02), ratio=(1.0, 1.0), hflip_p=0.5, vflip_p=0.5, rotate_deg=40,
                                   blur_p=0.0, brightness=0.0, contrast=0.0, noise_std=0.0), out_size=8)
    out = views(_ramps(64, 128).expand(16, -1, -1, -1), _gen(3)) * 256  # (16, 2, 8, 8): image X, Y per pixel
    along_j = out[:, :, 4, 4] - out[:, :, 4, 3]  # (16, 2): the image step of one output column
    along_i = out[:, :, 4, 4] - out[:, :, 3, 4]
    step = math.sqrt(0.02 * 64 * 128) / 8
    assert torch.allclose(along_j.norm(dim=1), torch.full((16,), step, dtype=torch.float64), atol=1e-9)
    assert torch.allclose(along_i.norm(dim=1), torch.full((16,), step, dtype=torch.float64), atol=1e-9)
    assert torch.allclose((along_j * along_i).sum(dim=1), torch.zeros(16, dtype=torch.float64), atol=1e-9)
    assert along_j[:, 1].abs().max() > 0.5  # some views are rotated by a good angle


def test_an_image_folder_of_non_square_images_gets_views(tmp_path):
    """The user path: an image folder of 48 x 64 PNGs (size=None keeps them) -> get_batch -> views, S x S with
    S = 48 by default (was: ValueError "views expect square images ... got 48 x 64")."""
    write_class_folders(tmp_path, ("a", "b"), 2, np.random.default_rng(0), size=(48, 64))
    batch = ImageFolderDataset(tmp_path).get_batch([0, 1, 2, 3])["image"]
    assert batch.shape == (4, 1, 48, 64)
    a, b = RandomViews()(batch, _gen(1)), RandomViews()(batch, _gen(1))
    assert a.shape == (4, 1, 48, 48) and torch.equal(a, b) and a.min() >= 0 and a.max() <= 1
    assert RandomViews(out_size=32)(batch, _gen(1)).shape == (4, 1, 32, 32)
