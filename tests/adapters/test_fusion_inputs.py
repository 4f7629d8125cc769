"""Missing-modality fusers, user journey on saved checkpoints: wrong image sizes and scales are
refused (not silently fused), messages name what was given, and the card's snippet runs.

Found on TCGA-LGG (``medfm fuse finetune/fusion_lgg_missing.yaml``, 12 epochs): 3MAT /
MultiModN / zero-fill late fusion trained at 64 px took the data set's native 256 px slices
without a word and changed test probabilities by up to 0.89 (AUC 0.74 -> 0.68 for 3MAT), as
the CNN encoders pool any size; ChannelViT fused 0-255 images (it has no encoder to check the
range); ``collate_modalities`` called a uint8 tensor "int64 images"; a batch whose only key is
mistyped (``"t2"``) said "none of the modalities" without showing what the batch holds.
"""
from __future__ import annotations

import re

import pytest
import torch

from medfm.data.multimodal import collate_modalities
from medfm.encoders.base import EncoderInputError
from tests.conftest import FUSION_CLINICAL as F, FUSION_MODS as MODS, FUSION_SIZE as S, tiny_fuser as _fuser

NAMES = ["3mat", "multimodn", "late_fusion_zero_fill", "channelvit"]


@pytest.fixture(scope="module")
def fusers():
    return {n: _fuser(n) for n in NAMES}


def _batch(size=S, b=2, scale=1.0):
    g = torch.Generator().manual_seed(0)
    return collate_modalities([{"pre": torch.rand(1, size, size, generator=g) * scale,
                                "flair": torch.rand(1, size, size, generator=g) * scale,
                                "clinical": torch.randn(F, generator=g)} for _ in range(b)], MODS)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("size", [S // 2, 2 * S])
def test_images_of_another_size_than_trained_are_refused(fusers, name, size):
    # was (CNN fusers): fused at the wrong scale without a word
    with pytest.raises(EncoderInputError, match=f"'pre': this model was built for {S}x{S} images, got {size}x{size}"):
        fusers[name](_batch(size))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("scale, why", [(255.0, "0-255 pixel values"), (-1.0, "already normalised")])
def test_present_images_outside_unit_range_are_refused(fusers, name, scale, why):
    # was (channelvit): 0-255 or normalised images fused as they were
    with pytest.raises(EncoderInputError, match=f"expected images in \\[0, 1\\].*{why}"):
        fusers[name](_batch(scale=scale))


@pytest.mark.parametrize("name", NAMES)
def test_absent_rows_may_hold_anything_and_change_nothing(fusers, name):
    model = fusers[name]
    batch = _batch(b=3)
    batch["present"]["pre"] = torch.tensor([True, False, True])
    ref = model(dict(batch, pre=torch.where(batch["present"]["pre"][:, None, None, None], batch["pre"],
                                            torch.tensor(float("nan")))))["logits"]
    garbage = batch["pre"].clone()
    garbage[1] = 1e6  # out of range, but the row is marked absent: never checked, never read
    assert torch.equal(model(dict(batch, pre=garbage))["logits"], ref)


def test_collate_names_the_integer_dtype_it_was_given():
    with pytest.raises(ValueError, match="modality 'pre' holds uint8 images"):  # was: "holds int64 images"
        collate_modalities([{"pre": torch.zeros(1, S, S, dtype=torch.uint8)}], MODS)


def test_no_known_modality_shows_the_batch_keys(fusers):
    batch = collate_modalities([{"t2": torch.rand(1, S, S)}], MODS + ["t2"])
    with pytest.raises(ValueError, match=re.escape("fusion needs at least one (batch keys: ['t2'])")):
        fusers["3mat"]({k: v for k, v in batch.items() if k != "present"})


@pytest.mark.parametrize("name", ["3mat", "late_fusion_zero_fill"])
def test_card_snippet_runs_with_a_modality_left_out_and_refuses_none(fusers, name, tmp_path):
    from medfm.cards import write_card
    from medfm.hub import from_pretrained, save_pretrained

    ckpt = tmp_path / "ckpt"
    save_pretrained(fusers[name], ckpt)
    text = write_card(ckpt).read_text()
    code = re.search(r"## How to use\n\n```python\n(.*?)```", text, re.S).group(1)
    ns: dict = {}
    exec(code, ns)  # the snippet's sample already leaves a modality out
    probs = ns["probs"]
    assert probs.shape == (1, 2) and torch.allclose(probs.sum(-1), torch.ones(1))
    model = from_pretrained(ckpt).eval()
    for left_out in ns["sample"]:  # the snippet's way, with one modality left out of the sample
        sample = {k: v for k, v in ns["sample"].items() if k != left_out}
        with torch.no_grad():
            out = model(collate_modalities([sample], model.modalities))["logits"]
        assert out.shape == (1, 2) and torch.isfinite(out).all()
    with pytest.raises(ValueError, match=r"sample\(s\) \[0\] have none of the modalities"):
        model(collate_modalities([{}], model.modalities))
