"""Non-square details (h37/h4).

- :class:`medfm.data.imagefolder.ImageFolderDataset`'s ``size`` was the height alone for a folder of non-square
  images kept at their size: it is ``(H, W)`` there, the side (an int) for square images as before;
- :class:`medfm.data.views.RandomViews` cut an over-large crop of a non-square image to the image's sides (less
  elongated than drawn) where torchvision's ``RandomResizedCrop.get_params`` redraws (10 draws) and then takes a
  central crop with its aspect clamped to the range: it follows torchvision now; square images keep their views and
  draws (guard);
- :func:`medfm.pipelines.inputs.refuse_masked` runs twice for an array image (:func:`~medfm.pipelines.inputs.each_input`
  and :func:`~medfm.pipelines.inputs.uint8_image_array`); either call alone changes an error path, so both stay
  (guards pin those paths).
Generated images only.
"""
import math

import numpy as np
import pytest
import torch
from torchvision.transforms import RandomResizedCrop

from medfm.data.imagefolder import ImageFolderDataset
from medfm.data.views import RandomViews, ViewConfig
from medfm.pipelines.classification import image_to_tensor
from medfm.pipelines.inputs import PipelineInputError, each_input
from medfm.pipelines.seg_inputs import SegmentationInputError, read_input
from tests.conftest import MASKED_HINT, write_class_folders

PLAIN = dict(hflip_p=0.0, rotate_deg=0.0, blur_p=0.0, brightness=0.0, contrast=0.0, noise_std=0.0)


def _ramps(h, w, b=1):
    """(b, 2, H, W) float64: channel 0 is X / 256 (the column), channel 1 is Y / 256 (the row)."""
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    return (torch.stack([xs, ys])[None] / 256).expand(b, -1, -1, -1)


def _crop_sides(views, s=64):
    """(height, width) in image px of each unrotated view of :func:`_ramps`: the step of one output pixel at the
    view's centre times ``s`` (the edges may be reflected)."""
    v = views * 256
    return (v[:, 1, s // 2, 0] - v[:, 1, s // 2 - 1, 0]) * s, (v[:, 0, 0, s // 2] - v[:, 0, 0, s // 2 - 1]) * s


# -- ImageFolderDataset.size --------------------------------------------------------------------------------------
def test_size_of_a_non_square_folder_is_height_and_width(tmp_path):
    write_class_folders(tmp_path, ("a", "b"), 2, np.random.default_rng(0), size=(48, 64))
    ds = ImageFolderDataset(tmp_path)
    assert ds.images.shape == (4, 48, 64) and ds.size == (48, 64)  # was 48, the height alone
    assert "size=(48, 64)" in repr(ds)
    resized = ImageFolderDataset(tmp_path, size=32)
    assert resized.size == 32 and type(resized.size) is int  # square: the side, as before


def test_size_of_a_square_folder_stays_an_int(tmp_path):
    write_class_folders(tmp_path, ("a", "b"), 2, np.random.default_rng(0), size=(30, 30))
    ds = ImageFolderDataset(tmp_path)
    assert ds.size == 30 and type(ds.size) is int


# -- RandomViews: torchvision's redraw and fallback on non-square images -----------------------------------------
@pytest.mark.parametrize("h, w", [(32, 64), (64, 32)])
def test_no_crop_fits_gives_torchvisions_central_crop(h, w):
    """area 1, aspect 1 never fits a 32 x 64 image: 10 draws, then the central 32 x 32 crop (torchvision's
    (i, j, h, w) = (0, 16, 32, 32)); the old code cut the 45 x 45 px crop to 45 x 32, placed at random."""
    cfg = ViewConfig(scale=(1.0, 1.0), ratio=(1.0, 1.0), **PLAIN)
    gen = torch.Generator().manual_seed(0)
    out = RandomViews(cfg, out_size=32)(_ramps(h, w), gen)
    i, j = (h - 32) // 2, (w - 32) // 2
    assert torch.allclose(out[0] * 256, _ramps(h, w)[0, :, i:i + 32, j:j + 32] * 256, atol=1e-9)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        assert RandomResizedCrop.get_params(torch.zeros(1, h, w), [1.0, 1.0], [1.0, 1.0]) == (i, j, 32, 32)
    # 10 area + 10 ratio draws, then position, flips and angle (5): the fallback took exactly torchvision's draws
    ref = torch.Generator().manual_seed(0)
    torch.rand(25, generator=ref)
    assert torch.equal(gen.get_state(), ref.get_state())


def test_an_elongated_image_falls_back_to_the_clamped_ratio():
    """A 20 x 64 image (aspect 3.2) with area 1: no draw fits, the fallback is the full height and a width of
    20 * 4/3 px (torchvision: h = 20, w = round(20 * 4/3) = 27), centred."""
    cfg = ViewConfig(scale=(1.0, 1.0), **PLAIN)
    ch, cw = _crop_sides(RandomViews(cfg, out_size=64)(_ramps(20, 64), torch.Generator().manual_seed(1)))
    assert torch.allclose(ch, torch.tensor([20.0], dtype=torch.float64), atol=1e-9)
    assert torch.allclose(cw, torch.tensor([20 * 4 / 3], dtype=torch.float64), atol=1e-6)


@pytest.mark.parametrize("h, w", [(32, 64), (64, 20), (40, 56)])
def test_one_image_on_the_global_generator_gets_torchvisions_crop(h, w):
    """Batch of one, global generator: each seed's crop sides are torchvision's ``get_params`` sides (the same
    numbers drawn, redraws and fallbacks included), to rounding (torchvision crops whole pixels)."""
    views = RandomViews(ViewConfig(**PLAIN), out_size=64)
    with torch.random.fork_rng():
        for seed in range(40):
            torch.manual_seed(seed)
            _, _, th, tw = RandomResizedCrop.get_params(torch.zeros(1, h, w), [0.35, 1.0], [3 / 4, 4 / 3])
            torch.manual_seed(seed)
            ch, cw = _crop_sides(views(_ramps(h, w), None))
            assert (round(ch.item()), round(cw.item())) == (th, tw), seed


def test_every_crop_of_a_batch_keeps_an_aspect_in_the_range():
    """A batch of 64 views of a 32 x 64 image: each crop fits and its aspect (width / height, px) is within
    ``ratio`` (the old cut crops were up to 45 x 32 px, aspect 1.41 > 4/3)."""
    out = RandomViews(ViewConfig(**PLAIN), out_size=64)(_ramps(32, 64, 64), torch.Generator().manual_seed(0))
    ch, cw = _crop_sides(out)
    assert (ch <= 32 + 1e-6).all() and (cw <= 64 + 1e-6).all()
    aspect = cw / ch
    assert (aspect >= 3 / 4 - 0.02).all() and (aspect <= 4 / 3 + 0.02).all()  # 0.02: half a pixel over, cut


def test_a_square_image_keeps_its_rule_and_draws():
    """Guard: a square image keeps the cut rule (aspect 2 with area 1 on 32 x 32: 32 x 22.6 px, no redraw) and
    takes exactly its 7 draws (area, ratio, position x2, flips x2, angle) with the plain config."""
    gen = torch.Generator().manual_seed(0)
    out = RandomViews(ViewConfig(scale=(1.0, 1.0), ratio=(2.0, 2.0), **PLAIN), out_size=64)(_ramps(32, 32), gen)
    ch, cw = _crop_sides(out)
    assert torch.allclose(cw, torch.tensor([32.0], dtype=torch.float64), atol=1e-5)
    assert torch.allclose(ch, torch.tensor([32 / math.sqrt(2)], dtype=torch.float64), atol=1e-4)
    ref = torch.Generator().manual_seed(0)
    torch.rand(7, generator=ref)
    assert torch.equal(gen.get_state(), ref.get_state())


# -- refuse_masked: each call is an error path of its own (guards) -----------------------------------------------
def _masked(shape):
    return np.ma.masked_array(np.full(shape, 0.5), mask=np.zeros(shape, bool))


def test_a_masked_array_is_named_before_its_shape_or_emptiness():
    """each_input's check comes first: a masked 4D array or empty 2D array is refused as masked, not for its
    shape or emptiness (what the convert step alone would say)."""
    with pytest.raises(PipelineInputError) as err:
        each_input([_masked((2, 8, 8, 3))], lambda im: image_to_tensor(im, 1, 28), batch=False)
    assert str(err.value) == f"image is {MASKED_HINT}"
    with pytest.raises(SegmentationInputError) as err:
        each_input([_masked((0, 8))], lambda im: read_input(im, 1, False), batch=False, error=SegmentationInputError)
    assert str(err.value) == f"image is {MASKED_HINT}"


def test_a_direct_call_refuses_a_masked_image():
    """uint8_image_array's check: image_to_tensor called without each_input refuses it too."""
    with pytest.raises(PipelineInputError) as err:
        image_to_tensor(_masked((8, 8)), 1, 28)
    assert str(err.value) == f"image is {MASKED_HINT}"
