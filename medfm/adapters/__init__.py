"""Task adapters (heads) over any encoder, and LoRA wiring.

Registries: ``ADAPTERS`` (classification, segmentation, VQA, ...) and ``FUSERS``
(missing-modality fusion). Each adapter module holds ``encoder`` and ``medfm_spec`` so
that :mod:`medfm.hub` can save and rebuild it.
"""
from medfm.registry import ADAPTERS, FUSERS
from medfm.adapters.classification import ImageClassifier

__all__ = ["ADAPTERS", "FUSERS", "ImageClassifier"]
from medfm.adapters import segmentation, text_seg  # noqa: F401,E402  (registers "segmentation", "text_segmentation")
from medfm.adapters import vqa  # noqa: F401,E402  (registers "vqa")
from medfm.adapters import fusion  # noqa: F401,E402  (registers FUSERS "3mat", "multimodn", "channelvit",
#                                                      "late_fusion_zero_fill")
