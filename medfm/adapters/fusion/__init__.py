"""Missing-modality fusion: fusers registered in ``FUSERS`` behind ``forward(batch: dict) -> dict``.

* ``"3mat"``: modality-dropout fusion with cascaded cross-attention (Liu et al. 2023);
* ``"multimodn"``: sequential state fusion, per-sample skipping (Swamy et al., NeurIPS 2023);
* ``"channelvit"``: per-channel tokens, hierarchical channel sampling (Bao et al., ICLR 2024);
* ``"late_fusion_zero_fill"``: the zero-filling late-fusion / single-modality baseline;
* ``"fused_unet"``: segmentation with missing sequences, HeMIS fusion + U-Net decoder
  (Havaei et al., MICCAI 2016), or its zero-fill late-fusion baseline (``fusion="zero_fill"``).

Batches: :mod:`medfm.data.multimodal`. Checkpoints: :func:`medfm.hub.save_pretrained` (kind
``"fuser"``, rebuilt from args).
"""
from medfm.adapters.fusion.base import FusionModel, ImageModalityEncoder, sample_modality_dropout
from medfm.adapters.fusion.channelvit import ChannelViT, hierarchical_channel_sampling
from medfm.adapters.fusion.late import LateFusionZeroFill
from medfm.adapters.fusion.multimodn import SequentialFusion
from medfm.adapters.fusion.segmentation import FusedUNet, masked_moments
from medfm.adapters.fusion.tabular import TabularEncoder
from medfm.adapters.fusion.threemat import ModalityDropoutFusion

__all__ = ["FusionModel", "ImageModalityEncoder", "TabularEncoder", "ModalityDropoutFusion", "SequentialFusion",
           "ChannelViT", "LateFusionZeroFill", "FusedUNet", "masked_moments", "sample_modality_dropout",
           "hierarchical_channel_sampling"]
