import pytest
import torch

from medfm.data.views import RandomViews, ViewConfig


def test_views_are_seeded_shaped_and_in_range():
    x = torch.rand(8, 1, 28, 28)
    views = RandomViews(ViewConfig())
    a = views(x, torch.Generator().manual_seed(3))
    b = views(x, torch.Generator().manual_seed(3))
    c = views(x, torch.Generator().manual_seed(4))
    assert a.shape == x.shape and torch.equal(a, b) and not torch.equal(a, c)
    assert a.min() >= 0 and a.max() <= 1
    assert RandomViews(ViewConfig(), out_size=12)(x, torch.Generator().manual_seed(0)).shape == (8, 1, 12, 12)


def test_identity_config_returns_input():
    cfg = ViewConfig(scale=(1.0, 1.0), ratio=(1.0, 1.0), hflip_p=0, rotate_deg=0, blur_p=0, brightness=0,
                     contrast=0, noise_std=0)
    x = torch.rand(4, 3, 16, 16)
    assert torch.allclose(RandomViews(cfg)(x, torch.Generator().manual_seed(0)), x, atol=1e-5)


def test_hflip_only_flips():
    cfg = ViewConfig(scale=(1.0, 1.0), ratio=(1.0, 1.0), hflip_p=1.0, rotate_deg=0, blur_p=0, brightness=0,
                     contrast=0, noise_std=0)
    x = torch.rand(2, 1, 10, 10)
    assert torch.allclose(RandomViews(cfg)(x, torch.Generator().manual_seed(0)), x.flip(-1), atol=1e-5)


def test_bad_config_raises():
    with pytest.raises(ValueError, match="scale"):
        ViewConfig(scale=(0.0, 1.0))
    with pytest.raises(ValueError, match="probability"):
        ViewConfig(blur_p=1.5)


def test_wide_blur_on_small_crops_is_truncated_not_a_padding_error():
    """blur_sigma up to 8 px on 12 px views: the kernel radius (2 sigma = 16) exceeds the side;
    before the fix F.pad(mode="reflect") raised; now the blur is truncated to the image."""
    x = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    cfg = ViewConfig(blur_p=1.0, blur_sigma=(6.0, 8.0))
    out = RandomViews(cfg, out_size=12)(x, torch.Generator().manual_seed(1))
    assert out.shape == (4, 1, 12, 12)
    assert torch.isfinite(out).all() and out.min() >= 0 and out.max() <= 1
    # a wide blur flattens the view: far less spread than the unblurred crop
    plain = RandomViews(ViewConfig(blur_p=0.0), out_size=12)(x, torch.Generator().manual_seed(1))
    assert out.std() < 0.5 * plain.std()
