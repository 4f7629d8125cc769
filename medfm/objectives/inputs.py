"""Checks shared by the self-supervised objectives: their ``forward(batch, gen)`` inputs and
their constructor arguments.

The objectives draw random views of ``batch["image"]`` before the encoder sees them, so the
encoder's own check (:meth:`medfm.encoders.base.Encoder.check_input`) runs on the views:
a NaN pixel that a random crop leaves out passed unnoticed, an empty batch failed inside
``F.affine_grid`` and a missing ``"image"`` key was a bare ``KeyError``. The raw batch is
checked here first, with the encoder's check (without the size part: the views resize). The views
then go through :func:`encode_views`: the encoder's shape and size checks, not its value check (a
second ``aminmax`` and device sync per encoder call, which the views, finite and clamped to [0, 1],
cannot fail).

Constructor arguments (:func:`check_arg`, :func:`check_sizes`, :func:`check_choice`,
:func:`check_flag`, :func:`check_views`, :func:`check_view_size`): a recipe's ``temperature: -1``
was accepted when the objective was built and failed at the first training step, or trained with a
NaN/inf/zero loss (``temperature: nan``, ``gm_weight: inf``), or was truncated silently
(``n_local_views: 1.5``). Each objective checks
its hyper-parameters when built and raises one ``ValueError`` naming the objective, the argument,
the valid range and the value, e.g. ``simclr: temperature must be > 0, got -1.0``.

An objective checks all its arguments before it first touches ``encoder``, so
:func:`check_objective_args` can run those same checks before there is an encoder or any data
(``medfm pretrain`` used to refuse ``temperature: -1`` only after the data set had loaded). The
encoder itself is then checked by :func:`check_encoder`, the first thing each constructor does with it
(an encoder name given as a string failed with ``AttributeError: 'str' object has no attribute
'num_features'``; a timm model was built and failed at the first step inside the projection head).

The loss and solver functions (``nt_xent_loss``, ``clip_loss``, ``sinkhorn_knopp``, ...) take their tensors
through :func:`check_float_tensors` and their numbers through :func:`check_arg`.

NaN/inf *values* in the embeddings are not looked for by the loss functions (``nt_xent_loss``,
``moco_infonce_loss``, ``swav_loss``, ``clip_loss``, ``vicreg_loss``): finding one means reading a flag
back from the device on every call, a sync per training step. They cannot pass unseen: the images are
checked finite before the views (:func:`check_image_batch`), a NaN embedding makes the loss NaN, and the
training loop reads the loss back once per step anyway and stops there
(:func:`medfm.training.loop.check_finite_loss`: ``loss became nan at epoch 1, step 3; lower train.lr or
check the data``). Graph matching's :func:`~medfm.objectives.solvers.hungarian` copies its scores to the
CPU and refuses non-finite ones.
"""
from __future__ import annotations

import dataclasses
import logging
from typing import Any, Mapping, Optional, Sequence, Union

import torch
from torch import nn

from medfm.arg_checks import check_bool, check_number
from medfm.data.views import ViewConfig, check_generator
from medfm.encoders.base import require_encoder


def check_image_batch(batch: Any, encoder: nn.Module, objective: str, min_batch: int = 1,
                      noun: str = "images", why: str = "", gen: Optional[torch.Generator] = None) -> torch.Tensor:
    """Return ``batch["image"]`` after checking it is a usable ``(B, C, H, W)`` batch for ``encoder``.

    Args:
        batch: the objective's batch, a mapping with ``"image"``: float ``(B, C, H, W)`` in [0, 1]
            (``(B, C, D, H, W)`` for volume encoders).
        encoder: the objective's medfm encoder, accepted by :func:`check_encoder` when the objective was built (an
            ``Encoder``, or a peft wrapper of one, which passes ``check_input`` on): its ``check_input`` checks rank,
            channels, dtype, B > 0 and finite values; the spatial size is left to the views and the encoder.
        objective: the objective's name, for messages.
        min_batch: the smallest batch the objective can use.
        noun / why: how the message names the samples and why ``min_batch`` is needed.
        gen: the objective's ``forward`` generator, checked too: a CPU ``torch.Generator`` or None (torch's
            global generator). A seed given instead (``model(batch, 0)``) failed in the views with torch's
            many-line ``rand() received an invalid combination of arguments``.

    Returns:
        The image tensor ``(B, C, H, W)``.

    Raises:
        ValueError: ``batch`` is not a mapping with ``"image"``, ``B < min_batch``, or ``gen`` is neither
            None nor a CPU ``torch.Generator``.
        EncoderInputError: not a tensor, wrong rank or channel count, not float, B=0, NaN/inf.
    """
    check_generator(gen, objective, "it draws the random views")
    if not isinstance(batch, Mapping) or "image" not in batch:
        got = sorted(map(str, batch)) if isinstance(batch, Mapping) else type(batch).__name__
        raise ValueError(f"{objective} needs a batch dict with 'image' (a (B, C, H, W) float tensor in [0, 1]), "
                         f"got {got}")
    images = batch["image"]
    encoder.check_input(images, check_size=False)
    b = int(images.shape[0])
    if b < min_batch:
        raise ValueError(f"{objective} needs a batch of at least {min_batch} {noun}{why}, got {b}")
    return images


def encode_views(encoder: nn.Module, views: torch.Tensor, features: bool = False) -> torch.Tensor:
    """``encoder(views)`` (``features``: ``encoder.forward_features(views)``) for views of a batch that
    :func:`check_image_batch` has checked, without the encoder's value check.

    :class:`~medfm.data.views.RandomViews` resamples, blurs, shifts and adds noise to finite values and
    clamps its output to [0, 1], so the encoder's value check (one ``torch.aminmax``, a device sync per call)
    cannot fail on them and is left out (``check=False``); its O(1) checks still run
    (:meth:`~medfm.encoders.base.Encoder.check_input` with ``check_values=False``), so a view size the
    encoder does not take (a fixed-size ViT, a side below ``min_input_size``) gets its one-line error as before.
    Also for the checked batch itself (CLIP without augmentation): its values were checked by
    :func:`check_image_batch`, its size was not.

    Shape:
        views: ``(N, C, S, S)``; returns ``(N, num_features)``, or ``forward_features``' output.

    Raises:
        EncoderInputError: views the encoder does not take (size, channels, ...), its one-line message.
    """
    encoder.check_input(views, check_values=False)
    return encoder.forward_features(views, check=False) if features else encoder(views, check=False)


def check_encoder(objective: str, encoder: Any) -> None:
    """Refuse an ``encoder`` that is not a medfm :class:`~medfm.encoders.base.Encoder`
    (:func:`medfm.encoders.base.require_encoder`); the stand-in of :func:`check_objective_args` passes too.
    Each objective calls this after its argument checks and before it first reads an attribute of
    ``encoder`` (its ``num_features``, ``img_size``, ...).

    Args:
        objective: the objective's name, first word of the message.
        encoder: what the constructor was given.

    Raises:
        ValueError: one line, e.g. ``simclr: encoder must be a medfm Encoder (medfm.encoders.base.Encoder), got
            str 'resnet18'; build one with medfm.create_encoder('resnet18', in_chans=..., img_size=...)``.
    """
    if not isinstance(encoder, _EncoderPlaceholder):
        require_encoder(objective, encoder)


def check_float_tensors(fn: str, **tensors: Any) -> None:
    """Refuse arguments of a loss or solver function that are not floating-point torch tensors.

    A NumPy array or a list failed inside the function with an ``AttributeError`` (a NumPy array
    passed to ``nt_xent_loss``: ``'str' object has no attribute 'type'``); integer, bool or complex
    tensors were silently cast to float32 (complex ones losing their imaginary part).

    Args:
        fn: the function's name, first word of the message.
        tensors: the arguments by name (``z1=..., z2=...``).

    Raises:
        ValueError: ``nt_xent_loss: z1 must be a float torch.Tensor, got ndarray`` or
            ``... got a torch.int64 tensor``.
    """
    for name, value in tensors.items():
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"{fn}: {name} must be a float torch.Tensor, got {type(value).__name__}")
        if not value.is_floating_point():
            raise ValueError(f"{fn}: {name} must be a float torch.Tensor, got a {value.dtype} tensor")


def check_arg(objective: str, name: str, value: Any, *, gt: Optional[float] = None, ge: Optional[float] = None,
              lt: Optional[float] = None, le: Optional[float] = None, integer: bool = False,
              hint: str = "") -> Union[int, float]:
    """Check one numeric constructor argument of an objective and return it as ``int``/``float``.

    :func:`medfm.arg_checks.check_number` (the rules are there) with the objective's name first in
    the message.

    Args:
        objective: the objective's (or solver's) name, first word of the message.
        name: the argument's name as the recipe spells it.
        value: the value given.
        gt / ge / lt / le: bounds (at most one low and one high).
        integer: the argument counts something (sizes, steps, iterations).
        hint: appended to the message, e.g. ``" (graph_size - 1)"``.

    Returns:
        ``int(value)`` for integer arguments, else ``float(value)``.

    Raises:
        ValueError: one line, e.g. ``simclr: temperature must be > 0, got -1.0`` or
            ``swav: n_local_views must be an integer >= 0, got 1.5``.
    """
    return check_number(f"{objective}: {name}", value, gt=gt, ge=ge, lt=lt, le=le, integer=integer, hint=hint)


def check_choice(objective: str, name: str, value: Any, choices: Sequence[str]) -> str:
    """Return ``value`` if it is one of ``choices``.

    Raises:
        ValueError: ``graph_matching: contrastive must be one of ('vicreg', 'nt_xent', 'none'), got 'barlow'``.
    """
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{objective}: {name} must be one of {tuple(choices)}, got {value!r}")
    return value


def check_flag(objective: str, name: str, value: Any) -> bool:
    """Return ``value`` as a ``bool`` if it is one (``"false"`` or ``"no"`` strings are truthy in Python).

    Raises:
        ValueError: ``moco: symmetric must be true or false, got 'false' (str)``.
    """
    return check_bool(f"{objective}: {name}", value)


def check_views(objective: str, name: str, views: Any, default: Optional[ViewConfig] = None) -> ViewConfig:
    """The :class:`ViewConfig` of an objective's ``views``-like argument.

    Args:
        views: a :class:`ViewConfig`, a mapping of its fields, or ``None``/empty for ``default``.
        default: used for ``None`` or an empty mapping (default: ``ViewConfig()``).

    Raises:
        ValueError: not a mapping, an unknown key (was a ``TypeError`` from the dataclass), or a
            value :class:`ViewConfig` refuses.
    """
    if isinstance(views, ViewConfig):
        return views
    if views is None or (isinstance(views, Mapping) and not views):
        return default if default is not None else ViewConfig()
    if not isinstance(views, Mapping):
        raise ValueError(f"{objective}: {name} must be a mapping of augmentation parameters, got {views!r} "
                         f"({type(views).__name__})")
    known = [f.name for f in dataclasses.fields(ViewConfig)]
    unknown = sorted(str(k) for k in views if k not in known)
    if unknown:
        raise ValueError(f"{objective}: unknown {name} key(s) {unknown}; known: {', '.join(known)}")
    return ViewConfig(**views)


def check_view_size(objective: str, name: str, size: int, encoder: Any) -> int:
    """Refuse views of side ``size`` that ``encoder`` cannot take: below its
    :attr:`~medfm.encoders.base.Encoder.min_input_size` (8 px; 32 px for timm's ConvNeXt with its
    patch-4 stem, whose stem and stage downsampling leave no pixel below that). Returns ``size``.

    For an objective's view sides other than the input's (swav's ``local_size``): the encoder only
    sees those views, so a too-small side used to be refused at the first training step.

    Raises:
        ValueError: ``swav: local_size 27 px is below the smallest input encoder 'convnext_atto' takes
            (its min_input_size: 32 px); use local_size >= 32``.
    """
    least = int(getattr(encoder, "min_input_size", 8))
    if size < least:
        who = getattr(encoder, "display_name", type(encoder).__name__)
        raise ValueError(f"{objective}: {name} {size} px is below the smallest input encoder {who!r} takes "
                         f"(its min_input_size: {least} px); use {name} >= {least}")
    return size


def check_sizes(objective: str, **sizes: Any) -> tuple:
    """Check sizes/layer counts (``proj_dim=..., hidden_dim=...``), each an integer >= 1; returns them as ints in order.

    Raises:
        ValueError: ``simclr: proj_dim must be an integer >= 1, got 0``.
    """
    return tuple(check_arg(objective, name, value, ge=1, integer=True) for name, value in sizes.items())


class _ArgumentsChecked(BaseException):
    """Raised by :class:`_EncoderPlaceholder` when a constructor first touches its encoder: its
    argument checks have passed. A ``BaseException`` so that no ``except Exception`` (nor
    ``getattr(encoder, name, default)``) in a constructor can swallow it."""


#: what :func:`check_objective_args` tells an objective about a given encoder: its input geometry, no layer
ENCODER_INPUT_ATTRS = ("display_name", "fixed_size", "img_size", "in_chans", "min_input_size", "spatial_dims")


class _EncoderPlaceholder:
    """Stands in for the encoder in :func:`check_objective_args`: a read of one of
    :data:`ENCODER_INPUT_ATTRS` answers from ``encoder`` when one is given; any other attribute read
    raises :class:`_ArgumentsChecked` (no layer is built or run, no data is needed)."""

    def __init__(self, encoder: Optional[nn.Module] = None) -> None:
        self._encoder = encoder

    def __getattr__(self, name: str) -> Any:
        encoder = self.__dict__.get("_encoder")
        if encoder is not None and name in ENCODER_INPUT_ATTRS:
            return getattr(encoder, name)
        raise _ArgumentsChecked(name)


def check_objective_args(name: str, args: Mapping[str, Any], encoder: Optional[nn.Module] = None) -> None:
    """Run objective ``name``'s own argument checks on ``args`` without building it or reading data.

    The objective is built as the pretraining runner builds it (``OBJECTIVES.build(name,
    encoder=..., **args)``, so unknown keywords get the registry's "did you mean") with a
    placeholder encoder; its constructor checks every argument (:func:`check_arg`,
    :func:`check_choice`, ...) and stops where it first reads an attribute of the encoder. The
    rules stay in the objective: nothing is checked twice over, and a new objective following
    the convention (checks before the encoder is used) is covered as it is. Warnings the
    constructor logs are held back here (the real build logs them). Costs milliseconds: no
    layer is built (an objective that never reads its encoder in ``__init__`` is built whole).

    Args:
        name: registered objective (``OBJECTIVES``).
        args: the recipe's ``objective.args``.
        encoder: the recipe's encoder, built for the check (:func:`medfm.training.runs.check_encoder_args`);
            the placeholder answers its input geometry (:data:`ENCODER_INPUT_ATTRS`), so the checks that
            depend on it run too (swav's ``local_size`` against ``min_input_size``, :func:`check_view_size`).
            Without one, the checks stop at the first read of an encoder attribute.

    Raises:
        UnknownNameError: ``name`` is not registered (with close matches).
        UnknownArgumentError: a keyword the objective does not take (with the closest one).
        ValueError: an argument out of its range or of the wrong type, the objective's own one
            line, e.g. ``graph_matching: temperature must be > 0, got -1.0``; with ``encoder``, a view
            side it cannot take (``swav: local_size 27 px is below the smallest input encoder ...``).
    """
    from medfm.registry import OBJECTIVES

    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)  # e.g. swav's "n_prototypes < proj_dim": logged by the real build
    try:
        OBJECTIVES.build(name, encoder=_EncoderPlaceholder(encoder), **dict(args))
    except _ArgumentsChecked:
        pass
    finally:
        logging.disable(previous)
