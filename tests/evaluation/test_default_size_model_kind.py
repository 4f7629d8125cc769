"""The default size check of ``medfm eval --data`` and zero-shot reads ``config.json`` before the model loads
(:func:`medfm.evaluation.evaluate.default_checkpoint_size`); a checkpoint of another kind keeps its own error.

Before: a 32 px SimCLR checkpoint given to ``evaluate_checkpoint`` (or a 32 px classifier given to zero-shot) was
told "not released at size 32 ... choose another with --size"; with ``--size 28`` it was then told it was not a
classification (image-text) checkpoint, the real problem, which it was told first before the early size check.
"""
from __future__ import annotations

import pytest
import torch

import medfm
from medfm.adapters.classification import ImageClassifier
from medfm.evaluation.evaluate import default_checkpoint_size, evaluate_checkpoint
from medfm.evaluation.zeroshot import zeroshot_eval
from medfm.registry import OBJECTIVES


def _encoder(img_size):
    torch.manual_seed(0)
    return medfm.create_encoder("resnet_test", in_chans=1, img_size=img_size)


@pytest.fixture
def simclr32(tmp_path):
    return medfm.save_pretrained(OBJECTIVES.build("simclr", encoder=_encoder(32)).eval(), tmp_path / "simclr32")


@pytest.fixture
def classifier32(tmp_path):
    return medfm.save_pretrained(ImageClassifier(_encoder(32), 2, "binary-class", ["normal", "pneumonia"]),
                                 tmp_path / "c32")


@pytest.mark.parametrize("size", [None, 28])
def test_eval_data_of_a_pretraining_checkpoint_names_its_kind_whatever_the_size(tmp_path, simclr32, size):
    """old, size None: UnsupportedSizeError "... not released at size 32 ... choose another with --size"."""
    with pytest.raises(ValueError, match=r"is not a classification checkpoint; `medfm eval --data` needs one$"):
        evaluate_checkpoint(str(simclr32), "pneumoniamnist", output=tmp_path / "ev", size=size)


def test_zeroshot_of_a_classifier_names_its_kind(tmp_path, classifier32):
    """old: UnsupportedSizeError "... not released at size 32 ..." for a checkpoint that cannot do zero-shot."""
    with pytest.raises(ValueError, match=r"^zero-shot classification needs an image-text checkpoint .*got "
                                         r"'classification'$"):
        zeroshot_eval(str(classifier32), "pneumoniamnist", output=tmp_path / "zs")


def test_the_recorded_size_is_read_for_the_named_model_only(simclr32, classifier32):
    from medfm.data.errors import UnsupportedSizeError

    assert default_checkpoint_size(simclr32, "pneumoniamnist", "classification") is None
    assert default_checkpoint_size(classifier32, "pneumoniamnist", "clip") is None
    with pytest.raises(UnsupportedSizeError, match=r"the default size is the checkpoint's image encoder img_size, 32"):
        default_checkpoint_size(classifier32, "pneumoniamnist", "classification")
