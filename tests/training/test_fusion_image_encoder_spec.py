"""The ``image_encoder`` spec of the fusers: one check (:func:`medfm.adapters.fusion.base.image_encoder_spec`)
for the fusers built in Python and the ``medfm fuse`` recipe check (:func:`medfm.training.fusion.check_image_encoder`).

An unknown key (``argz``) was refused only by the recipe check's own copy of the rule; a fuser built in
Python left the encoder at its defaults without a word.
"""
from __future__ import annotations

import pytest

from medfm.adapters.fusion.base import IMAGE_ENCODER_KEYS, ImageModalityEncoder, image_encoder_spec
from medfm.config import ConfigError, from_dict
from medfm.registry import FUSERS

TYPO = {"name": "resnet_test", "argz": {"drop_rate": 0.5}}
MESSAGE = "unknown key 'argz' in image_encoder; did you mean 'args'?"


@pytest.mark.parametrize("build", [
    lambda: image_encoder_spec(TYPO),
    lambda: ImageModalityEncoder(TYPO, 28, 8),
    lambda: FUSERS.build("late_fusion_zero_fill", modalities=["pre", "flair"], image_encoder=TYPO, img_size=28, dim=8),
    lambda: FUSERS.build("fused_unet", modalities=["pre", "flair"], image_encoder=TYPO, img_size=32),
], ids=["spec", "modality_encoder", "late_fusion_zero_fill", "fused_unet"])
def test_an_unknown_key_is_refused_wherever_the_spec_is_read(build):
    with pytest.raises(ValueError, match="^" + MESSAGE.replace("?", r"\?") + "$"):
        build()


def test_an_unrelated_key_lists_the_valid_ones_and_good_specs_pass():
    with pytest.raises(ValueError, match=r"^unknown key 'pretrained' in image_encoder \(valid keys: name, args\)$"):
        image_encoder_spec({"name": "resnet_test", "pretrained": "x"})
    assert IMAGE_ENCODER_KEYS == ("name", "args")
    assert image_encoder_spec({"name": "resnet_test"}) == ("resnet_test", {})
    assert image_encoder_spec({"name": "resnet_test", "args": None}) == ("resnet_test", {})
    assert image_encoder_spec({"name": "resnet_test", "args": {"drop_rate": 0.1}}) == ("resnet_test",
                                                                                      {"drop_rate": 0.1})


@pytest.mark.parametrize("task", ["classification", "segmentation"])
def test_the_recipe_check_names_the_section_with_the_shared_message(task):
    from medfm.training.fusion import FusionRecipe, check_image_encoder

    recipe = from_dict(FusionRecipe, {"task": task, "image_encoder": dict(TYPO),
                                      "models": {"a": {"fuser": "late_fusion_zero_fill" if task == "classification"
                                                       else "fused_unet"}}}, where="r.yaml")
    with pytest.raises(ConfigError) as info:
        check_image_encoder(recipe)
    assert str(info.value) == f"r.yaml.image_encoder: {MESSAGE}"


def test_a_channelvit_model_refuses_an_image_encoder_it_would_not_use():
    """ChannelViT embeds the image channels itself: an ``image_encoder`` in its ``args`` was popped
    and dropped without a word; the fuser now refuses it as any argument it does not take."""
    from medfm.training.fusion import FusionRecipe, build_fuser, build_models

    models = {"vit": {"fuser": "channelvit", "args": {"patch_size": 4, "image_encoder": {"name": "resnet_test"}}},
              "ok": {"fuser": "channelvit", "args": {"patch_size": 4}}}
    recipe = from_dict(FusionRecipe, {"models": models}, where="r.yaml")
    with pytest.raises(ConfigError, match=r"^r\.yaml\.models\.vit: .*unexpected keyword argument 'image_encoder'"):
        build_models(recipe, lambda spec: build_fuser(recipe, spec, 3, ["no", "yes"]))
    recipe = from_dict(FusionRecipe, {"models": {"ok": models["ok"]}}, where="r.yaml")
    assert list(build_models(recipe, lambda spec: build_fuser(recipe, spec, 3, ["no", "yes"]))) == ["ok"]
