"""How a task model is adapted and saved: frozen encoder, full fine-tuning, or LoRA.

Shared by classification fine-tuning, segmentation and text-conditioned segmentation, so
the three runners freeze, wrap and checkpoint models the same way; :func:`check_lora_targets`
(LoRA targets matched before the data are read) by those and the VQA runner.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

import torch
from torch import nn

#: modes that train only the head/decoder on a frozen encoder ("linear" for classifiers)
FROZEN_MODES = ("linear", "frozen")


class _StartWeights:
    """A medfm model's config and its weights as they were when captured, read as :func:`medfm.hub.save_pretrained`
    reads a model (``medfm_spec``, ``encoder``, ``state_dict()``): LoRA wraps the model in place
    (``encoder.x.weight`` becomes ``encoder.x.base_layer.weight``), so it cannot be saved as a plain checkpoint
    once the trainer holds it. The encoder's config and preprocessing are not changed by the wrapping."""

    def __init__(self, model: nn.Module, state: Dict[str, torch.Tensor]) -> None:
        self.medfm_spec = model.medfm_spec
        self.encoder = model.encoder
        self._state = state

    def state_dict(self) -> Dict[str, torch.Tensor]:
        return self._state


def _write_nothing() -> None:
    """The writer of a run that keeps no ``<output>/base`` of its own (:func:`lora_base`)."""


def lora_base(model: nn.Module, mode: str, base: Optional[str], output: Path,
              resume: bool = False) -> Tuple[Optional[str], Callable[[], None]]:
    """The base checkpoint an adapter will record, decided before anything is written (this writes nothing), and
    what writes it when it is the run's own ``<output>/base``.

    An adapter is reloaded by building the model from its config and loading the base's
    encoder weights into it, so the base must fit the model's encoder: exactly, or as the
    plain layers of its per-modality copies (``domain_norm`` / ``domain_stem`` turn
    ``bn1.weight`` into ``bn1.norms.0.weight``, ...; every copy starts from the plain layer,
    :func:`medfm.adapters.domain_layers.domain_weight_sources`). The model's own starting
    weights are to be saved to ``<output>/base`` (and recorded instead) when there is no base
    (LoRA over random weights) or the base does not fit: the runners call the returned writer in their trainer's
    ``before_write``, after ``config.yaml`` (:meth:`medfm.training.loop.Trainer.fit`), so that a run refused by
    the fit's checks leaves no ``base/``. A resumed run (``resume``) keeps the ``<output>/base`` it was trained from.

    The weights are captured now, before LoRA wraps the model, and held by reference (no copy: nothing changes
    them before a fresh fit's first step; the trainer's move to a GPU leaves these CPU tensors as they were), or
    copied when ``resume``: the resumed state is loaded into the model's tensors in place before ``before_write``.
    Written once, the writer lets them go.

    Args:
        model: the task model before LoRA wraps it, with its ``encoder``.
        mode: the recipe's ``mode``; only ``"lora"`` keeps a base (others: ``base`` as given).
        base: the run's starting checkpoint (``--init`` or ``encoder.pretrained``; None: random weights).
        output: the run folder; ``resume``: whether the run continues.

    Returns:
        ``(checkpoint, write)``: the base checkpoint the run records (the trainer's ``save_fn``, the checkpoint's
        metadata: the given base, the run's own ``<output>/base``, or None when not LoRA and no base), and a
        function of no arguments that saves ``<output>/base`` (:func:`medfm.hub.save_pretrained`) with the
        model's starting weights, or does nothing when the run writes no base.

    Raises:
        CheckpointError: ``base`` is missing or corrupt (its weight names are read); ``<output>/base``, the run's
        own base to be, is a file or a non-empty folder that is not a checkpoint
        (:func:`medfm.hub.refuse_non_checkpoint_dir`, here: before the run writes anything); the writer: OSError.
    """
    if mode != "lora":
        return base, _write_nothing
    from medfm.adapters.domain_layers import domain_weight_sources
    from medfm.hub import CONFIG_NAME, encoder_weight_names, refuse_non_checkpoint_dir, save_pretrained

    if base is not None and set(domain_weight_sources(model.encoder,
                                                      encoder_weight_names(base))) == set(model.encoder.state_dict()):
        return base, _write_nothing
    own = Path(output) / "base"
    if resume and (own / CONFIG_NAME).is_file():
        return str(own), _write_nothing
    # before the run writes anything (was: after its config.yaml and init.json)
    refuse_non_checkpoint_dir(own, "a LoRA run keeps its starting weights there: choose another output or move it away")
    state = {k: v.detach().clone() if resume else v.detach() for k, v in model.state_dict().items()}
    start = [_StartWeights(model, state)]

    def write() -> None:
        if start:
            save_pretrained(start.pop(), own)

    return str(own), write


def keep_lora_base(model: nn.Module, mode: str, base: Optional[str], output: Path,
                   resume: bool = False) -> Optional[str]:
    """:func:`lora_base` with its ``<output>/base`` written at once (the model's current weights), for a model
    trained outside the runners; returns the base checkpoint to record. The runners write ``base/`` in their
    trainer's ``before_write`` instead (the writer :func:`lora_base` returns).

    Raises:
        CheckpointError: ``base`` is missing or corrupt; ``<output>/base`` is a file or not a checkpoint directory.
    """
    checkpoint, write = lora_base(model, mode, base, output, resume)
    write()
    return checkpoint


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
        recipe: a recipe with ``mode`` and ``lora`` (:class:`medfm.lora_settings.LoraSettings`); other
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
