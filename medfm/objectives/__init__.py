"""Self-supervised objectives, one registry (``OBJECTIVES``).

An objective is an ``nn.Module`` built as ``OBJECTIVES.build(name, encoder=..., **args)``
with an ``encoder`` attribute and ``forward(batch: dict, gen: torch.Generator) -> dict``
returning at least ``"loss"``. Optional hook ``on_step_end(step)`` runs after each
optimizer step (momentum encoders, prototype normalisation).
"""
from medfm.registry import OBJECTIVES
from medfm.objectives.contrastive import SimCLR, nt_xent_loss

__all__ = ["OBJECTIVES", "SimCLR", "nt_xent_loss"]
from medfm.objectives.graph_matching import GraphMatching, vicreg_loss  # noqa: E402,F401
from medfm.objectives.clip import CLIP, clip_loss  # noqa: E402,F401
from medfm.objectives.moco import MoCo, moco_infonce_loss  # noqa: E402,F401
from medfm.objectives.swav import SwAV, sinkhorn_knopp, swav_loss  # noqa: E402,F401
