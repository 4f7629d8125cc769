"""User-facing messages: VQA pipeline top_k checks, and remedies that name both the Python
argument and what a ``medfm`` CLI user does instead (MedMNIST files, LoRA base checkpoints)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import medfm
from medfm.adapters.classification import ImageClassifier
from medfm.adapters.lora import LoraSettings, apply_lora, load_adapter, save_adapter
from medfm.data.errors import ChecksumError, DataFileMissingError
from medfm.data.medmnist import MedMNISTDataset, verify_md5
from medfm.hub import CheckpointError, save_pretrained
from medfm.pipelines.inputs import PipelineInputError


def _one_line(exc_info) -> str:
    msg = str(exc_info.value)
    assert "\n" not in msg, msg
    return msg


# ---------------------------------------------------------------- VQA pipeline top_k (vqa_model: tests/conftest.py)

@pytest.mark.parametrize("bad", [0, -1, 2.0, True, "3"])
def test_vqa_pipeline_rejects_bad_top_k(vqa_model, bad):
    img = np.zeros((20, 20), dtype=np.uint8)
    pipe = medfm.pipeline("visual-question-answering", model=vqa_model, top_k=2)
    with pytest.raises(PipelineInputError, match=rf"^top_k must be a positive integer, got {bad!r}$".replace("?", r"\?")):
        pipe(img, "is there a mass ?", top_k=bad)
    with pytest.raises(PipelineInputError, match="top_k must be a positive integer"):
        medfm.pipeline("visual-question-answering", model=vqa_model, top_k=bad)


def test_vqa_pipeline_top_k_default_and_override(vqa_model):
    img = np.zeros((20, 20), dtype=np.uint8)
    pipe = medfm.pipeline("visual-question-answering", model=vqa_model, top_k=2)
    assert len(pipe(img, "is there a mass ?")) == 2  # None: the pipeline's top_k
    assert len(vqa_model.answers) == 4
    assert len(pipe(img, "is there a mass ?", top_k=np.int64(3))) == 3
    assert len(pipe(img, "is there a mass ?", top_k=50)) == 4  # capped at the answer vocabulary


# ---------------------------------------------------------------- remedies for CLI users too

def test_missing_medmnist_file_names_cli_and_python_remedies(tmp_path):
    with pytest.raises(DataFileMissingError) as e:
        MedMNISTDataset("breastmnist", data_root=tmp_path)
    msg = _one_line(e)
    assert str(tmp_path / "medmnist" / "breastmnist.npz") in msg
    assert "--data-root" in msg and "$MEDFM_DATA" in msg and "download=True in Python" in msg


def test_md5_mismatch_names_python_argument_and_recipe_key(tmp_path):
    path = tmp_path / "x.npz"
    path.write_bytes(b"not the published file")
    with pytest.raises(ChecksumError) as e:
        verify_md5(path, "0" * 32)
    msg = _one_line(e)
    assert str(path) in msg and "verify=False in Python" in msg and "data.verify_md5: false in a recipe" in msg


def test_missing_lora_base_names_python_argument_and_merge_option(tmp_path):
    torch.manual_seed(0)
    clf = ImageClassifier(medfm.create_encoder("resnet_test", in_chans=1, img_size=28), num_classes=2,
                          task="binary-class", label_names=["a", "b"])
    base = save_pretrained(clf, tmp_path / "base")
    adapter = save_adapter(apply_lora(clf, LoraSettings(rank=2)), tmp_path / "adapter", str(base))
    with pytest.raises(CheckpointError) as e:
        load_adapter(adapter, base_checkpoint=str(tmp_path / "missing"))
    msg = _one_line(e)
    assert "base checkpoint could not be loaded" in msg
    assert "base_checkpoint= in Python" in msg and "--base in medfm merge" in msg
