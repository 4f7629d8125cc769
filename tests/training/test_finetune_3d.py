"""``medfm finetune`` on 3D MedMNIST sets with a 3D encoder.

Before, every 3D set was refused ("2D classifiers cannot fine-tune on it") even with a 3D
encoder such as ``resnet3d_10``; now the encoder's dims must match the data's, and the 2D-only
training views must be off (``augment: null``) for volumes.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from medfm.config import from_dict
from medfm.training.recipes import FinetuneRecipe
from medfm.training.runs import run_finetune
from tests.conftest import fake_medmnist_arrays

BASE = {"data": {"dataset": "adrenalmnist3d", "verify_md5": False, "val_split": None},
        "encoder": {"name": "resnet3d_test"}, "mode": "full", "augment": None,
        "train": {"epochs": 1, "batch_size": 4, "precision": "fp32", "log_every": 1}}


def _recipe(**over):
    cfg = {k: (dict(v) if isinstance(v, dict) else v) for k, v in BASE.items()}
    for key, value in over.items():
        section, _, name = key.partition("__")
        if name:
            cfg[section][name] = value
        else:
            cfg[section] = value
    return from_dict(FinetuneRecipe, cfg)


@pytest.fixture
def root3d(write_medmnist):
    return write_medmnist("adrenalmnist3d", arrays=fake_medmnist_arrays("adrenalmnist3d", counts=(8, 2, 6)))


def test_a_3d_encoder_fine_tunes_on_a_3d_set_and_reloads(root3d, tmp_path):
    from medfm.data.medmnist import MedMNISTDataset
    from medfm.hub import from_pretrained

    out = run_finetune(_recipe(), tmp_path / "run", data_root=str(root3d))
    model = from_pretrained(out).eval()
    assert model.encoder.spatial_dims == 3
    test = MedMNISTDataset("adrenalmnist3d", "test", data_root=str(root3d))
    x = test.get_batch(np.arange(len(test)))["image"]
    assert x.shape == (6, 1, 28, 28, 28)
    with torch.no_grad():
        assert model(x).shape == (6, 2)


def test_dims_mismatch_and_2d_views_on_volumes_are_refused_before_anything_is_written(root3d, tmp_path):
    with pytest.raises(ValueError, match=r"adrenalmnist3d is a 3D set but encoder 'resnet18' is 2D; use a 3D encoder "
                                         r"\(e\.g\. resnet3d_10"):
        run_finetune(_recipe(encoder={"name": "resnet18"}), tmp_path / "a", data_root=str(root3d))
    with pytest.raises(ValueError, match=r"training views \(augment\) are 2D only; set `augment: null`"):
        run_finetune(_recipe(augment={}), tmp_path / "b", data_root=str(root3d))
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_a_3d_encoder_on_a_2d_set_is_refused(write_medmnist, tmp_path):
    root = write_medmnist("pneumoniamnist", arrays=fake_medmnist_arrays("pneumoniamnist", counts=(8, 2, 4)))
    with pytest.raises(ValueError, match="pneumoniamnist is a 2D set but encoder 'resnet3d_test' is 3D"):
        run_finetune(_recipe(data={"dataset": "pneumoniamnist", "verify_md5": False, "val_split": None}),
                     tmp_path / "c", data_root=str(root))


def test_the_3d_classifier_card_describes_volumes_and_a_snippet_that_runs(root3d, tmp_path):
    out = run_finetune(_recipe(), tmp_path / "run", data_root=str(root3d))
    card = (out / "README.md").read_text()
    assert "1-channel 28x28x28 volumes (B, C, D, H, W)" in card and "28x28 images" not in card
    from medfm.hub import load_config

    assert load_config(out)["preprocessing"]["resize"].startswith("trilinear to img_size^3")  # what the pipeline does
    snippet = card.split("```python\n")[1].split("```")[0].replace("path/to/checkpoint", str(out))
    assert 'medfm.pipeline("image-classification"' in snippet and "clf(volume)" in snippet
    volume = np.random.default_rng(0).integers(0, 256, (28, 28, 28), dtype=np.uint8)
    scope = {"volume": volume, "volumes": torch.from_numpy(volume).float().div(255)[None, None]}
    exec(snippet.replace(f'"{out}"', repr(str(out))), scope)  # the card's own snippet
    probs, preds = scope["probs"], scope["preds"]
    assert probs.shape == (1, 2) and torch.allclose(probs.sum(1), torch.ones(1))
    # the pipeline's scores on the uint8 volume are the direct call's on volume / 255
    assert {d["label"]: d["score"] for d in preds} == dict(zip(["normal", "hyperplasia"], probs[0].tolist()))
