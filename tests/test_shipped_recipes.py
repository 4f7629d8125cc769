"""Every shipped pretraining recipe parses and builds its objective on its encoder (no data needed)."""
from pathlib import Path

import pytest
import torch

import medfm
from medfm.config import from_dict, load_yaml
from medfm.registry import OBJECTIVES
from medfm.training.recipes import PretrainRecipe

ROOT = Path(__file__).resolve().parents[1]
PRETRAIN = sorted((ROOT / "pretrain").glob("*.yaml"))


class _Text:
    """Stand-in frozen text encoder so CLIP recipes build without loading MiniLM."""

    dim = 384
    spec = {"name": "stand-in"}

    def encode(self, texts):
        return torch.zeros(len(texts), self.dim)


@pytest.mark.parametrize("path", PRETRAIN, ids=[p.stem for p in PRETRAIN])
def test_pretrain_recipe_builds(path, monkeypatch):
    recipe = from_dict(PretrainRecipe, load_yaml(path), where=path.name)
    enc = medfm.create_encoder(recipe.encoder.name, in_chans=1, img_size=recipe.data.size, **recipe.encoder.args)
    args = dict(recipe.objective.args)
    if recipe.objective.name == "clip":
        import medfm.text as text

        monkeypatch.setattr(text, "create_text_encoder", lambda *a, **k: _Text(), raising=False)
    objective = OBJECTIVES.build(recipe.objective.name, encoder=enc, **args)
    assert sum(p.numel() for p in objective.parameters() if p.requires_grad) > 0


def test_fusion_segmentation_recipe_builds_every_model():
    from medfm.training.fusion import FusionRecipe
    from medfm.training.fusion_seg import build_seg_fuser

    path = ROOT / "finetune" / "fusion_lgg_segmentation.yaml"
    recipe = from_dict(FusionRecipe, load_yaml(path), where=path.name)
    models = {name: build_seg_fuser(recipe, spec) for name, spec in recipe.models.items()}
    assert models["fused_unet"].fusion == "hemis" and models["fused_attn"].fusion == "attention"
    assert models["single_flair"].modalities == ["flair"]
