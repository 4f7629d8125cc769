"""Image encoders behind one contract (see :mod:`medfm.encoders.base`).

``create_encoder(name, in_chans=..., img_size=..., pretrained=None, **overrides)`` builds any
registered encoder; ``list_encoders()`` lists them. Family modules register on import.
"""
from __future__ import annotations

from typing import Any, List, Optional

from medfm.encoders.base import Encoder, EncoderInputError
from medfm.encoders.checks import EncoderArgumentError
from medfm.registry import ENCODERS, UnknownArgumentError
from medfm.encoders import timm_encoders  # noqa: F401  (registers resnet/convnext/vit)
from medfm.encoders import mamba  # noqa: F401
from medfm.encoders import medvit_kan, kan_resnet  # noqa: F401
from medfm.encoders import cnn3d  # noqa: F401  (3D volume encoders, tag dims=3)


def list_encoders(pattern: str = "*", **tags: Any) -> List[str]:
    """Names of registered encoders matching a glob ``pattern`` and tags (e.g. ``family="vit"``)."""
    return ENCODERS.names(pattern, **tags)


def create_encoder(
    name: str,
    in_chans: int = 3,
    img_size: int = 224,
    pretrained: Optional[str] = None,
    **overrides: Any,
) -> Encoder:
    """Build a registered encoder.

    Args:
        name: registered encoder name (``list_encoders()``).
        in_chans: 1 (grayscale) or 3 (RGB) input channels.
        img_size: square input side in pixels (28, 64, 128, 224, ...).
        pretrained: None (random init), ``"timm"`` (timm's ImageNet weights; needs the hub),
            or a medfm checkpoint: a local directory or ``"hf-hub:org/name"``; the encoder
            weights of that checkpoint are loaded (its in_chans/img_size must match).
        **overrides: builder keyword arguments; ``None`` values are dropped so unset CLI
            flags pass through.

    Returns:
        An :class:`Encoder`; ``encoder.config`` holds the arguments that rebuild it.

    Raises:
        UnknownNameError: unknown ``name`` (with close matches).
        UnknownArgumentError: a keyword the encoder does not take, or one medfm sets itself
            (``num_classes``, ``features_only``: encoders are headless, add a head with
            :mod:`medfm.adapters`); a ``ValueError`` and a ``TypeError``.
        EncoderArgumentError: a bad architecture override (a ``ValueError``; one line starting with
            the encoder's name, e.g. ``resnet_test: layers must be 4 integers >= 1 (blocks per stage),
            got [1, 1]``; see :mod:`medfm.encoders.checks`).
        ValueError: bad ``in_chans``/``img_size``, a checkpoint that does not match, or
            ``pretrained="timm"`` for an encoder without timm weights (tag ``timm_weights``).
    """
    overrides = {k: v for k, v in overrides.items() if v is not None}
    ENCODERS.get(name)  # unknown name: UnknownNameError with close matches
    timm_pretrained = pretrained == "timm"
    kwargs = dict(overrides)
    if timm_pretrained:
        if not ENCODERS.tags(name).get("timm_weights"):
            have = ", ".join(n for n in ENCODERS.names(timm_weights=True) if not ENCODERS.tags(n).get("test"))
            raise ValueError(f"encoder {name!r} has no timm pretrained weights (those that do: {have}); "
                             "use pretrained=None or a medfm checkpoint")
        kwargs["timm_pretrained"] = True
    try:
        encoder = ENCODERS.build(name, in_chans=in_chans, img_size=img_size, **kwargs)
    except UnknownArgumentError:
        raise
    except EncoderArgumentError as err:
        raise EncoderArgumentError(f"{name}: {err}") from None
    except TypeError as err:  # a family that passes **kwargs on (timm) rejected one
        text = str(err)
        if "unexpected keyword argument" not in text and "multiple values for keyword argument" not in text:
            raise
        raise UnknownArgumentError(f"encoder {name!r} does not take that argument: {text}") from None
    encoder.config = {"name": name, "in_chans": int(in_chans), "img_size": int(img_size), **overrides}
    if pretrained is not None and not timm_pretrained:
        from medfm.hub import load_encoder_weights

        load_encoder_weights(encoder, pretrained)
    return encoder


__all__ = ["Encoder", "EncoderArgumentError", "EncoderInputError", "create_encoder", "list_encoders", "ENCODERS"]
