"""A small seeded binary classifier (``resnet_test`` encoder, 1 channel, 28 px, labels normal / pneumonia) for the
checkpoint tests (tests/test_hub.py, tests/test_checkpoint_versions.py)."""
from __future__ import annotations


def tiny_classifier(seed: int = 0, name: str = "resnet_test"):
    """An :class:`ImageClassifier` over ``create_encoder(name, in_chans=1, img_size=28)``, 2 classes
    (``binary-class``, label names normal / pneumonia), built after ``torch.manual_seed(seed)``."""
    import torch

    import medfm
    from medfm.adapters.classification import ImageClassifier

    torch.manual_seed(seed)
    return ImageClassifier(medfm.create_encoder(name, in_chans=1, img_size=28), num_classes=2,
                           task="binary-class", label_names=["normal", "pneumonia"])
