"""Constructor-argument checks shared by the encoder families.

A bad override is refused when the encoder is built, in one line that names the argument, the
value and what is allowed; :func:`medfm.encoders.create_encoder` puts the encoder's registered
name first, e.g. ``resnet_test: layers must be 4 integers >= 1 (blocks per stage), got [1, 1]``.
Without these checks such values build a model that fails at its first forward, runs with
embeddings of another size than ``num_features``, crops the image border (a ViT ``patch_size``
that does not divide ``img_size``), or has a zero-width layer (or, in timm's ``Mlp``, silently
ratio 1: 0 hidden channels means "same as the input").

The rules are :mod:`medfm.arg_checks`' (those of the objectives too): an integer argument must be
an integral number (``16.0``, ``"16"`` and ``True`` are refused, not truncated), a ratio a finite
number > 0, a dropout or stochastic-depth rate a finite number in [0, 1).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Sequence, Tuple, TypeVar

from torch import nn

from medfm.arg_checks import check_number, number_fits, shown
from medfm.registry import UnknownArgumentError, close_match_hint

C = TypeVar("C")


class EncoderArgumentError(ValueError):
    """A bad encoder constructor argument (one line: the argument, the value, what is allowed).

    :func:`medfm.encoders.create_encoder` re-raises it with the encoder's registered name first.
    """


def check_int(name: str, value: Any, minimum: int = 1, odd: bool = False, hint: str = "") -> int:
    """Return ``value`` as an ``int`` if it is an integer ``>= minimum`` (and odd when ``odd``).

    Raises:
        EncoderArgumentError: e.g. ``num_heads must be an integer >= 1, got 0`` or
            ``kernel_size must be an odd integer >= 1, got 3.0``.
    """
    return check_number(name, value, ge=minimum, odd=odd, integer=True, hint=hint, error=EncoderArgumentError)


def check_positive(name: str, value: Any) -> float:
    """Return ``value`` as a ``float`` if it is a finite number > 0 (a ratio or scale).

    Raises:
        EncoderArgumentError: e.g. ``mlp_ratio must be > 0, got -1.0`` or
            ``mlp_ratio must be a finite number > 0, got inf``.
    """
    return check_number(name, value, gt=0, error=EncoderArgumentError)


def check_rate(name: str, value: Any) -> float:
    """Return ``value`` as a ``float`` if it is a probability in [0, 1) (a dropout or stochastic-depth
    rate: ``drop_path_rate``, timm's ``drop_rate``, ...; torch takes a bad one and fails at the first
    training step, "bernoulli_ expects p to be in [0, 1]").

    Raises:
        EncoderArgumentError: e.g. ``drop_path_rate must be in [0, 1), got 5.0`` or
            ``drop_path_rate must be a finite number in [0, 1), got '0.1' (str)``.
    """
    return check_number(name, value, ge=0, lt=1, error=EncoderArgumentError)


def check_stage_ints(name: str, value: Any, odd: bool = False, hint: str = "") -> Tuple[int, ...]:
    """Return a per-stage list/tuple of 4 integers >= 1 (odd when ``odd``) as a tuple (every family has 4 stages).

    Raises:
        EncoderArgumentError: wrong length, not a list, or a bad item, e.g.
            ``layers must be 4 integers >= 1 (blocks per stage), got [1, 1]``.
    """
    if not isinstance(value, (list, tuple)) or len(value) != 4 \
            or not all(number_fits(v, ge=1, integer=True, odd=odd) for v in value):
        rule = f"4 {'odd integers' if odd else 'integers'} >= 1"
        raise EncoderArgumentError(f"{name} must be {rule}{hint}, got {shown(value)}")
    return tuple(int(v) for v in value)


def check_stage_positive(name: str, value: Any, hint: str = "") -> Tuple[float, ...]:
    """Return a per-stage list/tuple of 4 finite numbers > 0 as a tuple of floats.

    Raises:
        EncoderArgumentError: e.g. ``mlp_ratios must be 4 finite numbers > 0 (one per stage), got (2.0, 2.0)``.
    """
    if not isinstance(value, (list, tuple)) or len(value) != 4 or not all(number_fits(v, gt=0) for v in value):
        raise EncoderArgumentError(f"{name} must be 4 finite numbers > 0{hint}, got {shown(value)}")
    return tuple(float(v) for v in value)


def check_ratio_widths(name: str, ratio: Any, widths: Sequence[int], to_int: Callable[[float], int] = int,
                       what: str = "hidden channel", of: str = "stage width") -> None:
    """Check that a width ratio gives at least one channel at every stage width: ``to_int(width * r) >= 1``.

    Args:
        name: the ratio's argument name.
        ratio: one ratio for all stages or one per stage (already checked > 0).
        widths: the widths the ratio applies to (the ``dims`` of the stages that use it).
        to_int: how the layer rounds ``width * ratio`` (``int`` or ``round``).
        what: the channels the ratio sizes, for the message.
        of: what the widths are, for the message (``"embed_dim"`` for a ViT).

    Raises:
        EncoderArgumentError: e.g. ``mlp_ratio must be >= 0.0625 (at least 1 hidden channel at stage
            width 16), got 0.01``.
    """
    ratios = list(ratio) if isinstance(ratio, (list, tuple)) else [ratio] * len(widths)
    for width, r in zip(widths, ratios):
        if to_int(width * r) < 1:
            need = "> " + f"{0.5 / width:.4g}" if to_int is round else ">= " + f"{1.0 / width:.4g}"
            raise EncoderArgumentError(f"{name} must be {need} (at least 1 {what} at {of} {width}), got {ratio!r}")


def check_no_empty_layers(model: nn.Module, what: str) -> None:
    """Refuse a built model with a zero-sized parameter: some width or ``width * ratio`` came out 0
    (such a layer runs silently and passes nothing on, or fails at the first forward).

    Args:
        what: names the model and the arguments, e.g. ``"the arguments {'mlp_ratio': 0.001}"``.

    Raises:
        EncoderArgumentError: ``the arguments {'mlp_ratio': 0.001} give a zero-width layer
            (blocks.0.mlp.fc1.weight of shape (0, 64)); every width and width x ratio must be >= 1``.
    """
    for pname, param in model.named_parameters():
        if param.numel() == 0:
            raise EncoderArgumentError(
                f"{what} give a zero-width layer ({pname} of shape {tuple(param.shape)}); every width and "
                "width x ratio must be >= 1")


def replace_config(base: C, overrides: Mapping[str, Any], what: str) -> C:
    """``dataclasses.replace(base, **overrides)`` for an encoder architecture config (lists become
    tuples); its ``__post_init__`` checks the values.

    Args:
        base: the registered variant's frozen config dataclass.
        overrides: keyword overrides from ``create_encoder``.
        what: the family's name in the message (``"Mamba encoder"``, ``"MedViT-KAN"``).

    Raises:
        UnknownArgumentError: a key that is not a config field, with the closest field or the valid ones:
            ``unknown Mamba encoder option 'depth'; did you mean 'depths'?`` (e.g. a ResNet recipe's
            ``layers`` left in after switching ``encoder.name``).
    """
    known = [f.name for f in dataclasses.fields(base)]
    unknown = [k for k in overrides if k not in known]
    if unknown:
        raise UnknownArgumentError(f"unknown {what} option {unknown[0]!r}{close_match_hint(unknown[0], known)}")
    return dataclasses.replace(base, **{k: (tuple(v) if isinstance(v, list) else v) for k, v in overrides.items()})


__all__ = [
    "EncoderArgumentError", "check_int", "check_no_empty_layers", "check_positive", "check_rate",
    "check_ratio_widths", "check_stage_ints", "check_stage_positive", "replace_config",
]
