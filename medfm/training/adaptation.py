"""How a task model is adapted and saved: frozen encoder, full fine-tuning, or LoRA.

Shared by classification fine-tuning, segmentation and text-conditioned segmentation, so
the three runners freeze, wrap and checkpoint models the same way; :func:`check_lora_targets`
(LoRA targets matched before the data are read) by those and the VQA runner.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Dict, Optional, Sequence

from torch import nn

#: modes that train only the head/decoder on a frozen encoder ("linear" for classifiers)
FROZEN_MODES = ("linear", "frozen")


def keep_lora_base(model: nn.Module, mode: str, base: Optional[str], output: Path, resume: bool = False) -> Optional[str]:
    """The base checkpoint an adapter will record.

    An adapter is reloaded by building the model from its config and loading the base's
    encoder weights into it, so the base must fit the model's encoder: exactly, or as the
    plain layers of its per-modality copies (``domain_norm`` / ``domain_stem`` turn
    ``bn1.weight`` into ``bn1.norms.0.weight``, ...; every copy starts from the plain layer,
    :func:`medfm.adapters.domain_layers.domain_weight_sources`). The model's own starting
    weights are saved to ``<output>/base`` (and recorded instead) when there is no base
    (LoRA over random weights) or the base does not fit. A resumed run (``resume``) keeps
    the ``<output>/base`` it was trained from instead of writing it again.

    Raises:
        CheckpointError: ``base`` is missing or corrupt.
    """
    if mode != "lora":
        return base
    from medfm.adapters.domain_layers import domain_weight_sources
    from medfm.hub import CONFIG_NAME, encoder_weight_names, save_pretrained

    if base is not None and set(domain_weight_sources(model.encoder, encoder_weight_names(base))) == set(model.encoder.state_dict()):
        return base
    own = Path(output) / "base"
    if resume and (own / CONFIG_NAME).is_file():
        return str(own)
    return str(save_pretrained(model, own))


def adapt(model: nn.Module, mode: str, lora: Any, head_modules: Sequence[str]) -> nn.Module:
    """Freeze the encoder (``linear``/``frozen``), wrap with LoRA (``lora``) or keep all trainable (``full``)."""
    if mode in FROZEN_MODES:
        for p in model.encoder.parameters():
            p.requires_grad_(False)
    if mode == "lora":
        from medfm.adapters.lora import apply_lora

        return apply_lora(model, lora, head_modules=head_modules)
    return model


def check_lora_targets(model: nn.Module, recipe: Any, head_modules: Sequence[str]) -> None:
    """With ``mode: lora``, match the recipe's ``lora.target_modules`` (or the encoder family's default)
    against ``model``, a check build of the recipe's model, before the data are read: a pattern that
    matched no layer was found when the trained model was wrapped, after the data, without a location.

    Args:
        model: the task model at random initialisation, with its ``encoder``
            (:func:`medfm.training.segmentation.check_segmenter_args`,
            :func:`medfm.training.text_segmentation.check_text_segmenter_args`,
            :func:`medfm.training.runs.check_recipe_args`, :func:`medfm.training.vqa.run_vqa`).
        recipe: a recipe with ``mode`` and ``lora`` (:class:`medfm.adapters.lora.LoraSettings`); other
            modes are not checked.
        head_modules: the adapter's modules LoRA keeps trainable (e.g. ``SEG_HEAD_MODULES``).

    Raises:
        ConfigError: ``r.yaml.lora: LoRA target pattern 'x' matches no Linear/Conv2d/Conv3d layer ...``
            (:func:`medfm.adapters.lora.lora_config`).
    """
    if recipe.mode != "lora":
        return
    from medfm.adapters.lora import lora_config
    from medfm.config import recipe_args_errors, recipe_location

    with recipe_args_errors(recipe_location(recipe.lora, "lora")):
        lora_config(model, recipe.lora, head_modules)


def checkpoint_writer(mode: str, base: Optional[str], meta: Dict[str, Any]) -> Callable[[nn.Module, Path], None]:
    """The trainer's ``save_fn``: adapter-only files for LoRA, a full checkpoint otherwise."""
    from medfm.adapters.lora import write_adapter
    from medfm.hub import write_checkpoint

    def save(model: nn.Module, directory: Path) -> None:
        if mode == "lora":
            write_adapter(model, directory, base, extra_config=meta)
        else:
            write_checkpoint(model, directory, extra_config=meta)

    return save


def save_final(model: nn.Module, mode: str, base: Optional[str], meta: Dict[str, Any], output: Path) -> Path:
    """The run's final checkpoint: ``<output>/adapter`` (LoRA, adapter-only) or ``<output>/model``."""
    from medfm.adapters.lora import save_adapter
    from medfm.hub import save_pretrained

    if mode == "lora":
        return save_adapter(model, Path(output) / "adapter", base, extra_config=meta)
    return save_pretrained(model, Path(output) / "model", extra_config=meta)
