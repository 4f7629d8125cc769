"""Good paths that every encoder family should take (small random-weight models, 28 px).

* the image-classification pipeline reads image files (as the segmentation and VQA pipelines
  do); a path used to be refused with "expected a PIL image or a uint8 numpy array, got str";
* each 2D family works as the VQA image encoder: forward + backward into the encoder, and a
  save -> ``from_pretrained`` round trip with identical logits.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import medfm
from medfm.adapters.classification import ImageClassifier
from medfm.adapters.vqa import VQAModel
from medfm.pipelines.classification import ImageClassificationPipeline
from medfm.pipelines.inputs import PipelineInputError

FAMILIES_2D = ["resnet_test", "convnext_test", "vit_test", "medvit_kan_test", "kan_resnet_test", "vmamba_test",
               "groupmamba_test"]


def _pipeline(in_chans: int) -> ImageClassificationPipeline:
    torch.manual_seed(0)
    enc = medfm.create_encoder("resnet_test", in_chans=in_chans, img_size=28)
    return ImageClassificationPipeline(ImageClassifier(enc, 2, task="binary-class", label_names=["normal", "pneumonia"]))


@pytest.mark.parametrize("in_chans", [1, 3])
def test_classification_pipeline_reads_an_image_file(tmp_path: Path, in_chans: int):
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, (36, 40), dtype=np.uint8)
    Image.fromarray(grey).save(tmp_path / "x.png")
    clf = _pipeline(in_chans)
    from_file = clf(str(tmp_path / "x.png"))
    assert [d["label"] for d in from_file] == [d["label"] for d in clf(grey)]
    assert [d["score"] for d in from_file] == pytest.approx([d["score"] for d in clf(grey)], abs=1e-7)
    assert clf(tmp_path / "x.png") == from_file  # os.PathLike too
    batch = clf([tmp_path / "x.png", grey])
    assert len(batch) == 2 and batch[0] == from_file


def test_classification_pipeline_names_a_missing_or_unreadable_file(tmp_path: Path):
    clf = _pipeline(1)
    with pytest.raises(PipelineInputError, match="nope.png") as err:
        clf(str(tmp_path / "nope.png"))
    assert str(err.value).startswith("image file not found") and "--data-root" not in str(err.value)
    with pytest.raises(PipelineInputError, match=r"image file not found: .* \(a folder\)"):
        clf(tmp_path)
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(PipelineInputError, match="bad.png"):
        clf(tmp_path / "bad.png")


@pytest.mark.parametrize("name", FAMILIES_2D)
def test_every_2d_family_is_a_vqa_image_encoder_that_trains_and_reloads(tmp_path: Path, name: str):
    torch.manual_seed(0)
    model = VQAModel(medfm.create_encoder(name, in_chans=1, img_size=28), ["yes", "no", "axial"], 16,
                     closed_answers=["yes", "no"], dim=32, heads=4, layers=1)
    images = torch.rand(3, 1, 28, 28)
    q = torch.randn(3, 5, 16)
    mask = torch.ones(3, 5, dtype=torch.bool)
    mask[1, 3:] = False
    out = model(images, q, mask)
    assert out["logits"].shape == (3, 3) and out["type_logit"].shape == (3,)
    model.loss(out, torch.tensor([0, 2, -1]), torch.tensor([True, False, False])).backward()
    grads = [p.grad for p in model.encoder.parameters() if p.requires_grad]
    assert any(g is not None and bool(g.abs().sum() > 0) for g in grads)
    model.eval()
    medfm.save_pretrained(model, tmp_path / "vqa")
    again = medfm.from_pretrained(tmp_path / "vqa").eval()
    with torch.no_grad():
        assert torch.equal(again(images, q, mask)["logits"], model(images, q, mask)["logits"])


def test_the_2d_classifier_card_snippet_runs_as_written(tmp_path: Path, monkeypatch):
    """The card's usage snippet used to call ``clf(image)`` with ``image`` never defined."""
    import re

    from medfm.hub import save_pretrained

    clf = _pipeline(1)
    ckpt = save_pretrained(clf.model, tmp_path / "ckpt")
    code = re.search(r"## How to use\n\n```python\n(.*?)```", (ckpt / "README.md").read_text(), re.S).group(1)
    assert 'medfm.pipeline("image-classification"' in code and 'clf("image.png")' in code
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (28, 28), dtype=np.uint8)).save(tmp_path / "image.png")
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(re.sub(r'model="[^"]*"', f"model={str(ckpt)!r}", code), scope)  # noqa: S102 - the card's own snippet
    assert [d["label"] for d in scope["clf"]("image.png")] in (["normal", "pneumonia"], ["pneumonia", "normal"])
