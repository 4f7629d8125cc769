"""medfm.data.corruptions: medmnistc wrapper, seeding, 224-px policy, numpy-2 shim, cache."""
import logging

import numpy as np
import pytest

pytest.importorskip("medmnistc.corruptions.registry", reason="medmnistc / MagickWand not installed")

import medmnistc.corruptions.filter as mfilter  # noqa: E402
from medmnistc.corruptions.registry import CORRUPTIONS_DS  # noqa: E402

from medfm.data import corruptions as C  # noqa: E402
from medfm.data.errors import UnknownDatasetError  # noqa: E402


def _grey(n=8, seed=0):
    rng = np.random.default_rng(seed)
    base = np.linspace(40, 200, 28, dtype=np.float64)[None, :].repeat(28, 0)
    return np.clip(base[None] + rng.normal(0, 10, (n, 28, 28)), 0, 255).astype(np.uint8)


def test_lists_match_medmnistc_registry():
    assert C.list_corruptions("pneumoniamnist") == list(CORRUPTIONS_DS["pneumoniamnist"])
    assert C.corruption_datasets() == sorted(CORRUPTIONS_DS)
    assert "stain_deposit" in C.all_corruption_names()
    with pytest.raises(UnknownDatasetError, match="no corruptions for 'adrenalmnist3d'"):
        C.list_corruptions("adrenalmnist3d")
    with pytest.raises(UnknownDatasetError, match="did you mean 'pneumoniamnist'"):
        C.list_corruptions("pneumonimnist")


def test_unknown_corruption_is_one_clear_line():
    with pytest.raises(C.UnknownCorruptionError) as err:
        C.check_corruption("pneumoniamnist", "pixelat")
    assert "did you mean 'pixelate'" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(C.UnknownCorruptionError, match="other datasets"):
        C.check_corruption("breastmnist", "gaussian_noise")  # defined for pneumonia, not breast
    with pytest.raises(ValueError, match="severity"):
        C.corrupt_images(_grey(2), "pneumoniamnist", "pixelate", 6)
    with pytest.raises(ValueError, match="uint8"):
        C.corrupt_images(_grey(2).astype(np.float32), "pneumoniamnist", "pixelate", 1)


@pytest.mark.parametrize("name", ["gaussian_noise", "impulse_noise"])
def test_seeded_per_image_and_chunk_invariant(name):
    x = _grey()
    state = np.random.get_state()[1].copy()
    a = C.corrupt_images(x, "pneumoniamnist", name, 5, seed=0)
    assert np.array_equal(np.random.get_state()[1], state)  # global RNG restored
    b = C.corrupt_images(x, "pneumoniamnist", name, 5, seed=0)
    tail = C.corrupt_images(x[3:], "pneumoniamnist", name, 5, seed=0, start_index=3)
    other = C.corrupt_images(x, "pneumoniamnist", name, 5, seed=1)
    assert a.shape == x.shape and a.dtype == np.uint8
    assert np.array_equal(a, b) and np.array_equal(a[3:], tail)
    assert not np.array_equal(a, other)


def test_policy_224_keeps_noise_physical_and_native_differs():
    x = _grey(4)
    at224 = C.corrupt_images(x, "pneumoniamnist", "gaussian_noise", 5, resolution=224).astype(float)
    native = C.corrupt_images(x, "pneumoniamnist", "gaussian_noise", 5, resolution="native").astype(float)
    control = C.resample_roundtrip(x, 224).astype(float)
    # noise of std 0.08*255 per 224-px pixel is averaged over 8x8 pixels by the area downsampling
    assert 0.5 < np.std(at224 - control) < 0.08 * 255 / 4
    assert np.std(native - x) > 0.08 * 255 / 2
    assert np.array_equal(C.resample_roundtrip(x, "native"), x)


def test_corruptions_that_fail_at_28px_work_through_224():
    rgb = np.stack([_grey(2, s) for s in range(3)], axis=-1)
    with pytest.raises(RuntimeError, match="stain_deposit.*28x28"):
        C.corrupt_images(rgb, "pathmnist", "stain_deposit", 1, resolution="native")
    out = C.corrupt_images(rgb, "pathmnist", "stain_deposit", 1, resolution=224)
    assert out.shape == rgb.shape and out.dtype == np.uint8


def test_numpy2_shim_is_scoped_to_medmnistc():
    x = _grey(2)
    with pytest.raises(ValueError):  # numpy 2 removed the binary mode of fromstring
        np.fromstring(b"\x01\x02", np.uint8)
    out = C.corrupt_images(x, "breastmnist", "motion_blur", 1)  # calls np.fromstring inside medmnistc
    assert out.shape == x.shape and not np.array_equal(out, C.resample_roundtrip(x))
    assert mfilter.np is np  # restored
    with C.numpy2_compat():
        assert np.array_equal(mfilter.np.fromstring(b"\x01\x02", np.uint8), [1, 2])
        with pytest.raises(ValueError):
            np.fromstring(b"\x01\x02", np.uint8)  # global numpy untouched


def test_describe_method_names_policy():
    assert "224x224 px" in C.describe_method(224) and "area averaging" in C.describe_method(224)
    assert "stored resolution" in C.describe_method("native")


def test_cache_names_hits_checksum_and_provenance(tmp_path, caplog):
    x = _grey(8)
    jobs = [("pixelate", 1), ("gaussian_noise", 1)]
    kw = dict(size=28, seed=3, cache_dir=tmp_path, source_md5="abc", workers=0, progress=False)
    sets, stats = C.corrupted_sets(x, "pneumoniamnist", jobs, **kw)
    assert stats == {"hits": 0, "generated": 2, "images_generated": 16}
    path = tmp_path / "medmnistc" / "pneumoniamnist_28_pixelate_s1_3.npz"
    assert path.is_file() and (tmp_path / "medmnistc" / "pneumoniamnist_28_pixelate_s1_3.npz.sha256").is_file()
    assert np.array_equal(sets[("pixelate", 1)], C.corrupt_images(x, "pneumoniamnist", "pixelate", 1, seed=3))
    again, stats = C.corrupted_sets(x, "pneumoniamnist", jobs, **kw)
    assert stats["hits"] == 2 and all(np.array_equal(again[j], sets[j]) for j in jobs)
    # a damaged file fails its sha256 check and is regenerated
    raw = bytearray(path.read_bytes())
    raw[-10] ^= 0xFF
    path.write_bytes(bytes(raw))
    with caplog.at_level(logging.WARNING):
        fixed, stats = C.corrupted_sets(x, "pneumoniamnist", jobs, **kw)
    assert stats["hits"] == 1 and "sha256" in caplog.text
    assert np.array_equal(fixed[("pixelate", 1)], sets[("pixelate", 1)])
    # a different source file (md5) invalidates the cache
    _, stats = C.corrupted_sets(x, "pneumoniamnist", jobs, **{**kw, "source_md5": "other"})
    assert stats["hits"] == 0


@pytest.mark.slow
def test_worker_pool_equals_in_process(tmp_path):
    x = _grey(300)  # three chunks
    jobs = [("impulse_noise", 2), ("pixelate", 3)]
    serial, _ = C.corrupted_sets(x, "pneumoniamnist", jobs, workers=0, use_cache=False, progress=False)
    pooled, _ = C.corrupted_sets(x, "pneumoniamnist", jobs, workers=2, use_cache=False, progress=False)
    assert all(np.array_equal(serial[j], pooled[j]) for j in jobs)
