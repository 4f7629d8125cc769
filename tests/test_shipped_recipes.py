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


def _readme_names(readme):
    """Recipe file names a folder README lists in backticks, brace patterns expanded
    (`vqa_{resnet18,vit_tiny}_{random,clip}.yaml` -> four names)."""
    import itertools
    import re

    names = set()
    for token in re.findall(r"`([^`\s]+\.yaml)`", readme.read_text(encoding="utf-8")):
        parts = re.split(r"\{([^}]*)\}", token)  # literal, options, literal, options, ...
        choices = [[p] if i % 2 == 0 else p.split(",") for i, p in enumerate(parts)]
        names.update("".join(c) for c in itertools.product(*choices))
    return names


@pytest.mark.parametrize("folder", ["pretrain", "finetune", "eval_suites"])
def test_every_shipped_recipe_is_listed_in_its_folders_readme(folder):
    """DESIGN.md: each recipe folder has a README table of what its recipes do; a recipe added
    without a row (finetune/ had no README; two pretrain recipes had no row) fails here."""
    root = ROOT / folder
    shipped = {str(p.relative_to(root)) for p in root.rglob("*.yaml")}
    missing = sorted(shipped - _readme_names(root / "README.md"))
    assert not missing, f"{folder}/README.md does not list {missing}"
