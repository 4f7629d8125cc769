"""Shared plumbing of the missing-modality fusers: modality encoders, presence, checks, loss.

Every fuser is an ``nn.Module`` built by ``FUSERS.build(name, **args)`` whose
``forward(batch: dict, gen=None) -> dict`` (:meth:`FusionModel.forward`: checks ``gen``, then runs the
fuser's :meth:`~FusionModel.fuse_batch`) accepts any subset of modality keys per sample (batch layout:
:mod:`medfm.data.multimodal`; a key absent from the batch or a False ``present`` entry means
missing). Fusers compute on present rows only, so the values in absent rows (NaN in collated
batches) never reach a parameter. ``out["logits"]`` is ``(B, K)``.

Every sample needs at least one modality that carries information: a sample with none of the
model's modalities, or whose only one is a ``"clinical"`` row with every value NaN, is refused
(``ValueError`` naming the sample index), never predicted from nothing. A batch key that is neither
one of the model's modalities, nor ``"present"`` / :data:`BATCH_INFO_KEYS`, nor a modality the
batch lists in ``batch["present"]`` (a collated data set's other modalities, which a
single-modality baseline ignores) is refused too when it holds a tensor/array or its name is close
to a modality's: a mistyped modality name (``"clinicl"``) would otherwise be dropped without a
word. Non-array extras (file names, meta dicts) pass.

Modality ``"clinical"`` is tabular (:class:`TabularEncoder`, ``(B, F)`` with NaN); every other
modality name is a single-channel image ``(B, 1, S, S)`` in [0, 1] encoded by a medfm encoder
(:func:`medfm.encoders.create_encoder`). A fuser has ``.medfm_spec`` (kind ``"fuser"``) and is
saved / rebuilt by :mod:`medfm.hub` from its args.
"""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from medfm.adapters.classification import check_class_labels
from medfm.adapters.fusion.tabular import TabularEncoder
from medfm.arg_checks import check_number, check_string_list, shown
from medfm.data.multimodal import PRESENT_KEY, check_presence_mask, close_modality, presence as _presence
from medfm.data.views import check_generator as check_views_generator
from medfm.encoders.base import EncoderInputError, check_value_range
from medfm.encoders.layers.deterministic import adaptive_avg_pool
from medfm.evaluation.metrics import label_name_list
from medfm.registry import close_match_hint

TABULAR = "clinical"
#: batch keys that are not modalities (:mod:`medfm.data.multimodal`: labels, masks, patient ids)
BATCH_INFO_KEYS = ("label", "mask", "patient")
#: the keys of an ``image_encoder`` spec (:func:`image_encoder_spec`)
IMAGE_ENCODER_KEYS = ("name", "args")
#: the default of :attr:`FusionModel.generator_use` (:func:`check_generator`'s message): every registered fuser names
#: its own draw; a fuser that names none is not said to draw what it may not (it was "the random modality dropout /
#: channel sampling", neither of which a user's own fuser need draw)
GENERATOR_USE = "for the fuser's random draws in training, if it makes any"
#: the modality-dropout fusers' draw (3mat, multimodn, fused_unet; :func:`sample_modality_dropout`)
MODALITY_DROPOUT_USE = "it draws the random modality dropout in training when modality_dropout > 0"


def image_encoder_spec(encoder: Any) -> Tuple[str, Dict[str, Any]]:
    """``(name, args)`` of an ``image_encoder`` spec ``{"name": registered encoder, "args": {builder overrides}}``
    (``args`` may be left out or null), as every fuser that builds one, and the ``medfm fuse`` recipe check
    (:func:`medfm.training.fusion.check_image_encoder`), reads it.

    Raises:
        ValueError: ``encoder`` not a mapping, a key other than :data:`IMAGE_ENCODER_KEYS` (``unknown key
            'argz' in image_encoder; did you mean 'args'?``), no ``name`` or one that is not a string, ``args``
            not a mapping (one line naming the key and the value given, e.g. ``image_encoder.args must be a
            mapping of encoder arguments, got 5 (int)``).
    """
    if not isinstance(encoder, Mapping):
        raise ValueError(f"image_encoder must be a mapping {{name: ..., args: {{...}}}}, got {shown(encoder)}")
    for key in encoder:  # a typo'd key ("argz") would leave the encoder at its defaults without a word
        if key not in IMAGE_ENCODER_KEYS:
            raise ValueError(f"unknown key {key!r} in image_encoder"
                             f"{close_match_hint(key, IMAGE_ENCODER_KEYS, fallback='valid keys')}")
    if "name" not in encoder:
        raise ValueError(f"image_encoder needs a 'name' (a registered encoder), got {dict(encoder)}")
    if not isinstance(encoder["name"], str):
        raise ValueError(f"image_encoder.name must be a registered encoder's name, got {shown(encoder['name'])}")
    args = encoder.get("args")
    if args is not None and not isinstance(args, Mapping):
        raise ValueError(f"image_encoder.args must be a mapping of encoder arguments, got {shown(args)}")
    return encoder["name"], dict(args or {})


class ImageModalityEncoder(nn.Module):
    """A medfm image encoder for one single-channel modality, projected to ``dim``.

    Args:
        encoder: ``{"name": registered encoder, "args": {builder overrides}}``.
        img_size: input side S.
        dim: output size D.
        grid: tokens per image = ``grid * grid`` (adaptive average pooling of the feature map).
        inputs_checked: the owner has checked every input already (:meth:`FusionModel.select`:
            shape, size, NaN/inf, [0, 1], named by modality), so the encoder's own
            :meth:`~medfm.encoders.base.Encoder.check_input` (the same checks, one more
            ``aminmax`` and device sync per modality) is skipped (``check=False``). False (default): it runs.

    Shape:
        ``forward``: ``(n, 1, S, S)`` in [0, 1] -> ``(n, D)``; ``tokens``: -> ``(n, grid*grid, D)``.

    Raises:
        ValueError: a bad ``encoder`` spec (:func:`image_encoder_spec`), ``dim`` or ``grid`` not an integer
            >= 1 (:func:`medfm.arg_checks.check_number`), the encoder's own argument errors.
    """

    def __init__(self, encoder: Mapping[str, Any], img_size: int, dim: int, grid: int = 2,
                 inputs_checked: bool = False) -> None:
        super().__init__()
        from medfm.encoders import create_encoder

        name, args = image_encoder_spec(encoder)
        dim = check_number("dim", dim, ge=1, integer=True)
        self.grid = check_number("grid", grid, ge=1, integer=True, hint=" (grid x grid tokens per image)")
        self.encoder = create_encoder(name, in_chans=1, img_size=img_size, **args)
        self.proj = nn.Linear(self.encoder.num_features, dim)
        self.inputs_checked = bool(inputs_checked)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """One pooled embedding per image: ``(n, 1, S, S)`` float in [0, 1] -> ``(n, D)``."""
        return self.proj(self.encoder(x, check=not self.inputs_checked))

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """``grid * grid`` tokens per image: ``(n, 1, S, S)`` float in [0, 1] -> ``(n, grid*grid, D)``.

        A ``(n, C, h, w)`` feature map is adaptive-average-pooled to ``grid x grid``; a ``(n, L, C)``
        token sequence is adaptive-average-pooled along L to ``grid * grid`` tokens.
        """
        feats = self.encoder.forward_features(x, check=not self.inputs_checked)
        if feats.ndim == 4:
            pooled = adaptive_avg_pool(feats, (self.grid, self.grid)).flatten(2).transpose(1, 2)
        else:
            pooled = adaptive_avg_pool(feats.transpose(1, 2), (self.grid * self.grid,)).transpose(1, 2)
        return self.proj(pooled)


def build_modality_encoder(modality: str, image_encoder: Mapping[str, Any], img_size: int, dim: int,
                           clinical_features: int, tabular_missing: str = "token", grid: int = 2) -> nn.Module:
    """:class:`TabularEncoder` for ``"clinical"``, else :class:`ImageModalityEncoder` for a fuser, whose
    inputs are the rows :meth:`FusionModel.select` checked (``inputs_checked``): one value check per
    modality per forward. A fuser must hand it nothing else (``select``'s rows, or zeros for absent ones)."""
    if modality == TABULAR:
        check_number("clinical_features", clinical_features, ge=1, integer=True,
                     hint=" (table columns: modality 'clinical' needs them)")
        return TabularEncoder(clinical_features, dim, missing=tabular_missing)
    return ImageModalityEncoder(image_encoder, img_size, dim, grid, inputs_checked=True)


class FusionModel(nn.Module):
    """Base class: modality list, presence masks, input checks, scores and the default loss.

    Args:
        modalities: modality names in a fixed order (e.g. ``["pre", "flair", "post", "clinical"]``).
        num_classes: K (2 for binary).
        label_names: K names (default "0", "1", ...).

    Raises:
        ValueError: ``modalities`` one string (``"flair"`` was read as the modalities ``f``, ``l``, ...), a set
            (no order) or names that are not strings (:func:`medfm.arg_checks.check_string_list`), empty
            or duplicated modalities, ``num_classes`` not an integer >= 2 (:func:`medfm.arg_checks.check_number`),
            bad label names (:func:`medfm.evaluation.metrics.label_name_list`).
    """

    #: True when every image must be exactly ``img_size`` a side: the fusers' position embeddings and
    #: zero images need it, and a CNN encoder trained at ``img_size`` that is fed another size (e.g.
    #: native 256 px LGG slices to a 64 px model) runs but sees its structures at the wrong scale
    fixed_image_size: bool = True
    #: what the fuser draws from ``forward``'s ``gen``: the parenthesis of :func:`check_generator`'s message
    generator_use: str = GENERATOR_USE

    def __init__(self, modalities: Sequence[str], num_classes: int = 2,
                 label_names: Optional[Sequence[str]] = None) -> None:
        super().__init__()
        mods = check_string_list("modalities", modalities, what="a list of modality names")
        if not mods or len(set(mods)) != len(mods):
            raise ValueError(f"modalities must be a non-empty list of distinct names, got {mods}")
        num_classes = check_number("num_classes", num_classes, ge=2, integer=True)
        names = label_name_list(label_names, num_classes)
        self.modalities: List[str] = mods
        self.num_classes = int(num_classes)
        self.label_names = names

    def _set_spec(self, name: str, args: Dict[str, Any]) -> None:
        self.medfm_spec: Dict[str, Any] = {"kind": "fuser", "name": name, "args": args}

    @property
    def preprocessing(self) -> Dict[str, Any]:
        """What the inputs must look like (recorded in checkpoint ``config.json``)."""
        args = self.medfm_spec["args"]
        return {"modalities": self.modalities, "img_size": args.get("img_size"), "in_chans": 1,
                "intensity_range": [0.0, 1.0], "clinical": "(F,) float, NaN = missing" if TABULAR in self.modalities
                else None, "missing": "key absent or present[m] False (collated rows NaN)"}

    # -- forward ----------------------------------------------------------------------------
    def forward(self, batch: Mapping[str, Any], gen: Optional[torch.Generator] = None) -> Dict[str, Any]:
        """Check ``gen``, then fuse the batch (:meth:`fuse_batch`, each fuser's own; its docstring gives the
        batch it takes and the dict it returns, e.g. ``{"logits": (B, K), "used": {m: (B,) bool}, ...}``).

        ``gen`` is checked in every mode and by every fuser, whether it draws from it or not (a seed given
        in eval mode, or to a fuser that draws nothing, was ignored without a word).

        Raises:
            ValueError: ``gen`` neither None nor a CPU ``torch.Generator`` (:func:`check_generator`, with
                :attr:`generator_use`); what :meth:`fuse_batch` raises.
        """
        check_generator(gen, self.generator_use)
        return self.fuse_batch(batch, gen)

    def fuse_batch(self, batch: Mapping[str, Any], gen: Optional[torch.Generator] = None) -> Dict[str, Any]:
        """The fuser's computation on a batch (``gen`` already checked by :meth:`forward`); every fuser defines it.

        Raises:
            NotImplementedError: on the base class.
        """
        raise NotImplementedError(f"{type(self).__name__} must define fuse_batch(batch, gen)")

    # -- inputs -----------------------------------------------------------------------------
    def presence(self, batch: Mapping[str, Any]) -> Dict[str, torch.Tensor]:
        """``{modality: (B,) bool}`` on CPU for this model's modalities.

        Every fuser's ``forward`` starts here, so the batch layout is checked here too.

        Raises:
            ValueError: not a dict; an empty batch (B=0); this model's modality values or
                presence masks that are not tensors or disagree on B; a presence mask that is not ``(B,)``
                bool or 0/1 integers (:func:`medfm.data.multimodal.check_presence_mask`: ``the presence mask of 'pre'
                must be a (B,) bool tensor (or 0/1 integers), got ...``); a sample has none of this
                model's modalities, or only a ``"clinical"`` row whose every value is NaN (names
                the sample indices); a batch key that is not a modality of this model (module docstring).
        """
        checked = {**batch, PRESENT_KEY: self._check_batch(batch)}  # bool masks: _presence reads nothing back again
        pres = {m: _presence(checked, m) for m in self.modalities}
        informative = dict(pres)
        if TABULAR in pres and pres[TABULAR].any() and batch[TABULAR].numel():
            # a clinical row with every value missing carries no information, as an absent modality
            empty = torch.isnan(batch[TABULAR].reshape(batch[TABULAR].shape[0], -1)).all(1).cpu()
            informative[TABULAR] = pres[TABULAR] & ~empty
        any_ = torch.stack(list(informative.values())).any(0)
        if not any_.all():
            bad = (~any_).nonzero().flatten().tolist()[:5]
            keys = sorted(str(k) for k in batch if k != PRESENT_KEY)
            all_nan = TABULAR in pres and bool((pres[TABULAR] & ~informative[TABULAR] & ~any_).any())
            nan = " (a 'clinical' row whose every value is NaN counts as missing)" if all_nan else ""
            raise ValueError(f"sample(s) {bad} have none of the modalities {self.modalities}{nan}; fusion needs at "
                             f"least one (batch keys: {keys})")
        self._check_keys(batch)
        return pres

    def _check_keys(self, batch: Mapping[str, Any]) -> None:
        """Refuse batch keys that look like inputs but are not this model's modalities (module
        docstring), e.g. a typo: an unknown key whose value is a tensor or array, or whose name is
        a close match of a modality. Other unknown keys (a sample's file name, a MONAI meta dict)
        pass, as in dictionary-based pipelines.

        Raises:
            ValueError: names the unknown key(s), the expected modalities and the other allowed keys.
        """
        listed = batch.get(PRESENT_KEY) or {}
        unknown = sorted(str(k) for k in batch if k != PRESENT_KEY and k not in self.modalities
                         and k not in BATCH_INFO_KEYS and k not in listed
                         and (isinstance(batch[k], (torch.Tensor, np.ndarray))
                              or close_modality(str(k), self.modalities) is not None))
        if unknown:
            raise ValueError(f"batch key(s) {unknown} are not modalities of this model, which takes {self.modalities}; "
                             f"rename or remove them (other keys allowed: {[PRESENT_KEY, *BATCH_INFO_KEYS]} and "
                             f"modalities listed in batch[{PRESENT_KEY!r}])")

    def _check_batch(self, batch: Mapping[str, Any]) -> Dict[str, torch.Tensor]:
        """Batch layout checks (:mod:`medfm.data.multimodal`): B > 0 and one B for every value of
        this model's modalities and its presence masks (else rows silently pair up wrongly).

        Returns:
            the batch's presence masks, those of this model's modalities as bool
            (:func:`medfm.data.multimodal.check_presence_mask`, the one rule and wording of a presence mask).
        """
        if not isinstance(batch, Mapping):
            raise ValueError(f"a fuser takes a batch dict {{modality: tensor, 'present': {{modality: (B,) bool}}}}, "
                             f"got {type(batch).__name__}")
        sizes: Dict[str, int] = {}
        masks = batch.get(PRESENT_KEY, {}) or {}
        if not isinstance(masks, Mapping):
            raise ValueError(f"batch[{PRESENT_KEY!r}] must be a dict {{modality: (B,) bool}}, got "
                             f"{type(masks).__name__}")
        checked = dict(masks)
        for m in self.modalities:
            for what, value in ((m, batch.get(m)), (f"{PRESENT_KEY}[{m!r}]", masks.get(m))):
                if value is None:
                    continue
                if not isinstance(value, torch.Tensor):
                    raise ValueError(f"batch value {what} must be a torch.Tensor, got {type(value).__name__}")
                if value.ndim == 0:
                    raise ValueError(f"batch value {what} must have a batch axis, got a scalar")
                if what != m:  # a float 0.5 or an integer 2 was taken as present
                    checked[m] = check_presence_mask(m, value, ndim=1)
                sizes[what] = int(value.shape[0])
        if len(set(sizes.values())) > 1:
            raise ValueError(f"batch entries disagree on the batch size B: {sizes}")
        if sizes and next(iter(sizes.values())) == 0:
            raise ValueError("got an empty batch (B=0); pass at least one sample")
        return checked

    def check_image(self, modality: str, x: torch.Tensor) -> None:
        """Check an image modality's tensor: float ``(n, 1, S, S)`` (``S = img_size`` when
        :attr:`fixed_image_size`).

        Raises:
            EncoderInputError: wrong rank, channel count, dtype or size.
        """
        if x.ndim != 4 or x.shape[1] != 1:
            raise EncoderInputError(f"modality {modality!r} must be single-channel images (B, 1, S, S), got shape "
                                    f"{tuple(x.shape)}")
        if not x.is_floating_point():
            raise EncoderInputError(f"modality {modality!r} must be float images in [0, 1], got dtype {x.dtype}")
        size = getattr(self, "img_size", None)
        if self.fixed_image_size and size is not None and tuple(x.shape[2:]) != (size, size):
            raise EncoderInputError(f"modality {modality!r}: this model was built for {size}x{size} images, got "
                                    f"{x.shape[2]}x{x.shape[3]}; resize the inputs")

    def select(self, batch: Mapping[str, Any], modality: str,
               present: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Rows of ``batch[modality]`` where ``present``: ``(idx (n,), values (n, ...))``.

        The image rows' value check is the encoders' own, :func:`medfm.encoders.base.check_value_range`
        (one ``aminmax``, one device sync), run here once per modality with the modality's name; the
        fusers' encoders (:func:`build_modality_encoder`) do not run it again.

        Raises:
            EncoderInputError: an image modality that is not float ``(B, 1, S, S)`` (see :meth:`check_image`),
                or present image rows with values outside [0, 1] (0-255 scale, already normalised), named by modality.
            ValueError: a present image row holds NaN/inf (the tabular rows' inf: :class:`TabularEncoder`).
        """
        x = batch[modality]
        if modality != TABULAR:
            self.check_image(modality, x)
        idx = present.nonzero().flatten().to(x.device)
        rows = x.index_select(0, idx).float()
        if modality != TABULAR and rows.numel():  # present rows only: absent ones may hold anything
            try:
                check_value_range(rows)  # NaN/inf and [0, 1] in one pass
            except EncoderInputError as err:
                if not torch.isfinite(rows).all():  # only on the error path: which error to name
                    raise ValueError(f"modality {modality!r} is marked present but holds NaN/inf; "
                                     "mark it absent instead") from None
                raise EncoderInputError(f"modality {modality!r}: {err}") from None
        return idx, rows

    @torch.no_grad()
    def set_tabular_statistics(self, values: torch.Tensor) -> None:
        """Standardisation statistics of every tabular encoder from the ``(N, F)`` training table."""
        for mod in self.modules():
            if isinstance(mod, TabularEncoder):
                mod.set_statistics(values)

    # -- outputs ----------------------------------------------------------------------------
    def scores(self, logits: torch.Tensor) -> torch.Tensor:
        """Softmax probabilities ``(B, K)``."""
        return logits.float().softmax(dim=-1)

    def loss(self, out: Mapping[str, torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of ``out["logits"]`` ``(B, K)`` against ``(B,)`` int labels.

        Raises:
            ValueError: ``out`` not the dict ``forward`` returns, not B labels, or labels outside ``[0, K)``.
        """
        if not isinstance(out, Mapping) or "logits" not in out:
            got = sorted(map(str, out)) if isinstance(out, Mapping) else type(out).__name__
            raise ValueError(f"out must be the dict this fuser's forward returns, with 'logits', got {got}")
        logits = out["logits"].float()
        return F.cross_entropy(logits, check_class_labels(labels, logits.shape[0], self.num_classes).to(logits.device))


def check_generator(gen: Any, use: str = GENERATOR_USE) -> None:
    """Refuse a fuser's ``gen`` that is neither None nor a CPU ``torch.Generator`` (what it draws, if anything:
    ``use``): :func:`medfm.data.views.check_generator`'s rule.

    Args:
        gen: the generator given.
        use: what is drawn from it, the message's parenthesis (:attr:`FusionModel.generator_use`).

    Raises:
        ValueError: ``fusion: gen must be a CPU torch.Generator (it draws ...) or None, got 0; e.g.
            torch.Generator().manual_seed(0)`` (a seed failed inside ``torch.rand`` with torch's many-line error).
    """
    check_views_generator(gen, "fusion", use)


def sample_modality_dropout(present: Dict[str, torch.Tensor], p: float,
                            gen: Optional[torch.Generator] = None) -> Dict[str, torch.Tensor]:
    """Drop each present modality of each sample with probability ``p``, keeping at least one.

    Modality dropout (Neverova et al., ModDrop, TPAMI 2016; used by 3MAT): when every present
    modality of a sample is dropped, one of them (chosen uniformly) is restored.

    Args:
        present: ``{modality: (B,) bool}`` (CPU).
        p: drop probability in [0, 1).
        gen: CPU random generator (None: torch's global RNG).

    Raises:
        ValueError: ``gen`` neither None nor a CPU ``torch.Generator`` (:func:`check_generator`).
    """
    check_generator(gen, MODALITY_DROPOUT_USE)
    mods = list(present)
    pres = torch.stack([present[m] for m in mods], 1)  # (B, M)
    if p <= 0:
        return dict(present)
    keep = pres & (torch.rand(pres.shape, generator=gen) >= p)
    empty = ~keep.any(1)
    if empty.any():
        score = torch.rand(pres.shape, generator=gen).masked_fill(~pres, -1.0)
        pick = F.one_hot(score.argmax(1), len(mods)).bool()
        keep = torch.where(empty[:, None], pick, keep)
    return {m: keep[:, j] for j, m in enumerate(mods)}
