"""Review mends (R3): a multi-label classifier names its label names' count in the metrics' words.

Before: ``ImageClassifier(..., task="multi-label, binary-class", label_names=["a"])`` said "got 1 label_names for 3
classes" where :func:`medfm.evaluation.metrics.classification_metrics` says "for 3 labels" of the same set (the
rule the adapter now shares, :func:`medfm.evaluation.metrics.label_name_list`, takes what the names name).
"""
from __future__ import annotations

import pytest

import medfm
from medfm.adapters.classification import ImageClassifier


@pytest.fixture(scope="module")
def encoder():
    return medfm.create_encoder("resnet_test", in_chans=1, img_size=16)


def test_multi_label_classifier_counts_labels(encoder):
    with pytest.raises(ValueError, match=r"^got 1 label_names for 3 labels$"):
        ImageClassifier(encoder, num_classes=3, task="multi-label, binary-class", label_names=["a"])
    with pytest.raises(ValueError, match=r"^label_names must be a list of 3 names, one per label, got 'abc' \(str\)$"):
        ImageClassifier(encoder, num_classes=3, task="multi-label, binary-class", label_names="abc")


def test_softmax_classifier_counts_classes(encoder):
    """Guard (passes on the old code too): softmax tasks keep "classes"."""
    with pytest.raises(ValueError, match=r"^got 1 label_names for 3 classes$"):
        ImageClassifier(encoder, num_classes=3, task="multi-class", label_names=["a"])
    assert ImageClassifier(encoder, num_classes=2, task="binary-class", label_names=[0, "b"]).label_names == ["0", "b"]
