"""Image-text contrastive pretraining (CLIP) against a frozen text encoder.

CLIP (Radford et al., "Learning Transferable Visual Models From Natural Language
Supervision", ICML 2021): image and text embeddings are projected to a shared space,
L2-normalised, and trained with a symmetric InfoNCE loss (image->text and text->image
cross-entropy over cosine similarities times a learnable logit scale, initialised to 1/0.07
and clipped at 100). Here the text tower is a frozen transformers model (as in LiT, Zhai et
al. CVPR 2022, with the roles of the towers swapped): only the image encoder, the two
projections and the logit scale train.

Batches from a captioned corpus repeat texts (many images share "a chest X-ray"). With
``same_text_positives`` every pair whose texts are identical counts as a positive, the
target of each row being uniform over them (UniCL, Yang et al., "Unified Contrastive
Learning in Image-Text-Label Space", CVPR 2022); with all texts distinct this is exactly
CLIP's loss.

Why not open_clip's ``CustomTextCLIP``/``ClipLoss``: the image tower must be a medfm
:class:`~medfm.encoders.base.Encoder` (1-channel, 28-64 px, own normalisation, the ``.encoder``
that checkpoints, linear probes and LoRA use), which ``CustomTextCLIP`` cannot build (it
does not pass ``img_size``/``in_chans`` to timm trunks), so its vision tower would be swapped
out; its HF text tower would run the frozen transformer at every step and put the
transformer weights in the state dict. What would remain is one logit-scale parameter, and
``ClipLoss`` without distributed gathering is the four lines of :func:`clip_loss` (which
also needs the same-text targets). So medfm keeps this module small and its own.

Optional image self-supervision (``ssl_weight > 0``): SLIP (Mu et al., "SLIP: Self-supervision
meets Language-Image Pre-training", ECCV 2022) adds SimCLR's NT-Xent between two strongly
augmented views of each image, through its own MLP head; the CLIP loss is then the mean over
both views. With captions as coarse as a modality name, this is what keeps the encoder
telling images of one modality apart.

Checkpoints: ``model.safetensors`` holds ``encoder.*``, ``image_proj.*``, ``text_proj.*`` and
``logit_scale``; the frozen text model is *not* saved: ``.medfm_spec`` records its spec (e.g.
``{"name": "minilm"}``) and it is rebuilt from that on first use. Its embeddings are cached
on disk (:class:`medfm.text.cache.EmbeddingCache`) and in memory.
"""
from __future__ import annotations

import logging
import math
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from medfm.arg_checks import is_finite_number, is_index_tensor, shown
from medfm.config import to_dict
from medfm.data.views import RandomViews, ViewConfig
from medfm.encoders.base import Encoder
from medfm.objectives.contrastive import nt_xent_loss
from medfm.objectives.heads import ProjectionHead
from medfm.objectives.inputs import (check_arg, check_encoder, check_flag, check_float_tensors, check_image_batch,
                                     check_sizes, check_views, encode_views)
from medfm.registry import OBJECTIVES

log = logging.getLogger(__name__)


def clip_loss(image_emb: torch.Tensor, text_emb: torch.Tensor, logit_scale: Any,
              text_ids: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Symmetric image-text InfoNCE (CLIP, Radford et al. 2021, Fig. 3).

    ``logits = logit_scale * normalize(image_emb) @ normalize(text_emb).T``; the loss is the
    mean of the cross-entropy over rows (image -> text) and over columns (text -> image).

    Shape:
        image_emb, text_emb: (B, D), B >= 2; logit_scale: scalar (the multiplier, not its
        log); text_ids: optional (B,) integers, equal for pairs with identical text. Returns
        a float32 scalar, computed in float32 also under ``torch.autocast``.
        NaN/inf embeddings give a NaN loss (not looked for: see :mod:`medfm.objectives.inputs`).

    With ``text_ids`` each row's target is uniform over the columns of the same id (UniCL,
    Yang et al. 2022); without, row ``i``'s target is column ``i``.

    Raises:
        ValueError: not float tensors (:func:`~medfm.objectives.inputs.check_float_tensors`), mismatched
            shapes, B < 2, a logit scale that is not one finite positive number (``inf`` gave a NaN loss),
            or bad ``text_ids`` (:func:`check_text_ids`).
    """
    scale, ids = _check_clip_loss_args(image_emb, text_emb, logit_scale, text_ids)
    return _symmetric_infonce(image_emb, text_emb, scale, ids)


def _check_clip_loss_args(image_emb: Any, text_emb: Any, logit_scale: Any,
                          text_ids: Any = None) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """The checks of :func:`clip_loss` (arguments as there); returns the logit scale (:func:`check_logit_scale`:
    one read-back, a device sync) and the text ids (:func:`check_text_ids`; None stays None), on ``image_emb``'s
    device. SLIP (:meth:`CLIP.forward`) checks once for its two views' losses, each the same embedding shape.

    Raises:
        ValueError: as :func:`clip_loss`.
    """
    check_float_tensors("clip_loss", image_emb=image_emb, text_emb=text_emb)
    if image_emb.ndim != 2 or image_emb.shape != text_emb.shape:
        raise ValueError(f"clip_loss expects two (B, D) tensors of equal shape, got {tuple(image_emb.shape)} "
                         f"and {tuple(text_emb.shape)}")
    b = image_emb.shape[0]
    if b < 2:
        raise ValueError(f"clip_loss needs a batch of at least 2 image-text pairs, got {b}")
    scale = check_logit_scale(logit_scale, image_emb.device)
    return scale, None if text_ids is None else check_text_ids(text_ids, b, image_emb.device)


def check_logit_scale(logit_scale: Any, device: Any = None) -> torch.Tensor:
    """``logit_scale`` of :func:`clip_loss` as a float32 tensor on ``device`` (a tensor given keeps its autograd
    graph), once it is known to be one finite positive number: one read-back (a device sync) for a tensor.

    Raises:
        ValueError: ``clip_loss: logit_scale must be one finite positive number, got ...`` (``inf`` gave a NaN loss).
    """
    scale = None
    if isinstance(logit_scale, torch.Tensor) or is_finite_number(logit_scale):  # not a string, None, inf, ...
        scale = torch.as_tensor(logit_scale, dtype=torch.float32, device=device)
    if scale is None or scale.numel() != 1 or not bool(torch.isfinite(scale).all() & (scale > 0).all()):
        raise ValueError(f"clip_loss: logit_scale must be one finite positive number, got {shown(logit_scale)}")
    return scale


def _symmetric_infonce(image_emb: torch.Tensor, text_emb: torch.Tensor, scale: torch.Tensor,
                       ids: Optional[torch.Tensor]) -> torch.Tensor:
    """The loss of :func:`clip_loss` on arguments it has checked (``scale`` by :func:`check_logit_scale`)."""
    b = image_emb.shape[0]
    # fp32 even under bf16 autocast: at logit scale 100 a bf16 matmul moves logits by up to 0.25
    with torch.autocast(device_type=image_emb.device.type, enabled=False):
        img = F.normalize(image_emb.float(), dim=1)
        txt = F.normalize(text_emb.float(), dim=1)
        logits = scale.reshape(()) * img @ txt.t()
        if ids is None:
            target = torch.arange(b, device=logits.device)
            return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target))
        same = (ids[:, None] == ids[None, :]).float()
        target = same / same.sum(dim=1, keepdim=True)
        i2t = -(target * F.log_softmax(logits, dim=1)).sum(dim=1).mean()
        t2i = -(target * F.log_softmax(logits.t(), dim=1)).sum(dim=1).mean()
        return 0.5 * (i2t + t2i)


def check_text_ids(text_ids: Any, b: int, device: Any = None) -> torch.Tensor:
    """``text_ids`` of :func:`clip_loss` as a ``(b,)`` integer tensor on ``device``.

    Raises:
        ValueError: one line starting ``clip_loss: text_ids``: the texts themselves (a list of strings
            failed with torch's ``too many dimensions 'str'``; they are turned into ids by :func:`text_ids_of`),
            anything torch cannot make a tensor of, float/bool/complex values (float ids were compared
            for exact equality; a NaN id gave a NaN loss), or a shape other than ``(b,)``.
    """
    how = "integer ids, equal for identical texts (medfm.objectives.clip.text_ids_of(texts) makes them)"
    if isinstance(text_ids, str) or (isinstance(text_ids, (list, tuple)) and any(isinstance(t, str) for t in text_ids)):
        raise ValueError(f"clip_loss: text_ids must be ({b},) {how}, got strings")
    try:
        ids = torch.as_tensor(text_ids, device=device)
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(f"clip_loss: text_ids must be ({b},) {how}, got {type(text_ids).__name__}") from None
    if not is_index_tensor(ids):
        raise ValueError(f"clip_loss: text_ids must be ({b},) {how}, got a {ids.dtype} tensor")
    if ids.shape != (b,):
        raise ValueError(f"clip_loss: text_ids must have shape ({b},), got {tuple(ids.shape)}")
    return ids


def text_ids_of(texts: Sequence[str]) -> torch.Tensor:
    """``(B,)`` int64 ids, equal for identical strings (first occurrence order)."""
    index: Dict[str, int] = {}
    return torch.tensor([index.setdefault(t, len(index)) for t in texts], dtype=torch.long)


@OBJECTIVES.register("clip")
class CLIP(nn.Module):
    """CLIP between a trainable medfm image encoder and a frozen text encoder.

    Args:
        encoder: medfm :class:`Encoder`; images ``(B, C, H, W)`` float in [0, 1].
        text_encoder: text encoder spec, a mapping ``{"name": "minilm" | "hf", **args}`` (see
            :func:`medfm.text.create_text_encoder`); must be frozen.
        text_dim: the text encoder's embedding size, integer >= 1 (default: read from its
            config); recorded so a checkpoint rebuilds without loading the text model.
        embed_dim: size of the shared embedding space, integer >= 1.
        image_proj_layers / proj_hidden_dim: image projection head, integers >= 1 (1 layer:
            linear, as CLIP; 2: the SimCLR-style MLP, which keeps the encoder's features more general).
        init_temperature: initial softmax temperature, finite and > 0 (logit scale = 1 / temperature),
            with ``1 / init_temperature <= max_logit_scale``.
        max_logit_scale: the logit scale is clipped at this value, finite and > 0 (CLIP: 100).
        learn_temperature: learn the logit scale (else fixed); true/false.
        same_text_positives: pairs with identical texts are positives (UniCL targets); true/false.
        augment / views: random views of the images for the CLIP loss (default
            :meth:`ViewConfig.light`); with ``ssl_weight > 0`` the two views are drawn with
            ``views`` (a dict of :class:`ViewConfig` fields; default: SimCLR's :class:`ViewConfig`).
            ``augment`` is true/false.
        text_cache: keep text embeddings in the on-disk cache; true/false.
        ssl_weight: weight of the SLIP image-image NT-Xent term, finite and >= 0 (0: plain CLIP).
        ssl_temperature: its NT-Xent temperature, finite and > 0.

    ``forward(batch, gen)`` takes ``{"image": (B, C, H, W), "text": list of B str}`` and returns
    ``{"loss": scalar, "logit_scale": scalar}`` (plus ``"clip_loss"``, ``"ssl_loss"`` with SLIP).

    Raises:
        TextEncoderError: a bad text encoder spec, ``"clip: text_encoder: <why>"``
            (:func:`medfm.text.encoders.check_text_encoder_spec`: an unknown name, argument or option).
        ValueError: a text encoder spec that is not a mapping or not frozen; an argument
            out of its range or of the wrong type (one line naming it, its range and the value, e.g.
            ``clip: ssl_weight must be a finite number >= 0, got inf``); unknown ``views`` keys; an
            ``encoder`` that is not a medfm Encoder (:func:`~medfm.objectives.inputs.check_encoder`).
    """

    def __init__(self, encoder: Encoder, text_encoder: Optional[Dict[str, Any]] = None, text_dim: Optional[int] = None,
                 embed_dim: int = 128, image_proj_layers: int = 2, proj_hidden_dim: int = 512,
                 init_temperature: float = 0.07, max_logit_scale: float = 100.0, learn_temperature: bool = True,
                 same_text_positives: bool = True, augment: bool = True, views: Optional[Dict[str, Any]] = None,
                 text_cache: bool = True, ssl_weight: float = 0.0, ssl_temperature: float = 0.1) -> None:
        super().__init__()
        from medfm.text.encoders import TextEncoderError, check_text_encoder_spec, text_encoder_dim

        try:  # the spec rules of every text encoder (name, arguments, options, frozen), no model loaded
            spec = check_text_encoder_spec(text_encoder or None, frozen_only=True)
        except TextEncoderError as err:  # of its own class: an unknown name stays an UnknownNameError too
            raise type(err)(f"clip: text_encoder: {err}") from None
        if text_dim is not None:
            text_dim = check_arg("clip", "text_dim", text_dim, ge=1, integer=True)
        embed_dim, image_proj_layers, proj_hidden_dim = check_sizes(
            "clip", embed_dim=embed_dim, image_proj_layers=image_proj_layers, proj_hidden_dim=proj_hidden_dim)
        init_temperature = check_arg("clip", "init_temperature", init_temperature, gt=0)
        max_logit_scale = check_arg("clip", "max_logit_scale", max_logit_scale, gt=0)
        if not 1.0 / init_temperature <= max_logit_scale:
            raise ValueError(f"clip: need 0 < init_temperature with 1/init_temperature <= max_logit_scale, got "
                             f"init_temperature={init_temperature} and max_logit_scale={max_logit_scale}")
        learn_temperature, same_text_positives, augment, text_cache = (check_flag("clip", n, v) for n, v in (
            ("learn_temperature", learn_temperature), ("same_text_positives", same_text_positives),
            ("augment", augment), ("text_cache", text_cache)))
        ssl_weight = check_arg("clip", "ssl_weight", ssl_weight, ge=0)
        ssl_temperature = check_arg("clip", "ssl_temperature", ssl_temperature, gt=0)
        default_views = ViewConfig() if ssl_weight > 0 else ViewConfig.light()
        view_cfg = check_views("clip", "views", views, default=default_views)
        check_encoder("clip", encoder)
        self.encoder = encoder
        self.text_spec = spec
        self.text_dim = int(text_dim) if text_dim is not None else text_encoder_dim(spec)
        self.image_proj = ProjectionHead(encoder.num_features, proj_hidden_dim, embed_dim, image_proj_layers)
        self.text_proj = nn.Linear(self.text_dim, embed_dim, bias=False)
        init = torch.tensor(math.log(1.0 / init_temperature))
        if learn_temperature:
            self.logit_scale = nn.Parameter(init)
        else:
            self.register_buffer("logit_scale", init)
        self.max_log_scale = math.log(max_logit_scale)
        self.same_text_positives = bool(same_text_positives)
        self.ssl_weight, self.ssl_temperature = float(ssl_weight), float(ssl_temperature)
        self.views = RandomViews(view_cfg) if augment or self.ssl_weight > 0 else None
        if self.ssl_weight > 0:
            self.ssl_head = ProjectionHead(encoder.num_features, proj_hidden_dim, embed_dim, 2)
        self.text_cache = bool(text_cache)
        # the frozen text model and its embeddings stay outside the module's state (not saved)
        object.__setattr__(self, "_text_model", None)
        object.__setattr__(self, "_text_memory", {})
        object.__setattr__(self, "_embedding_cache", None)
        self.medfm_spec = {"kind": "objective", "name": "clip", "args": {
            "text_encoder": spec, "text_dim": self.text_dim, "embed_dim": int(embed_dim),
            "image_proj_layers": int(image_proj_layers), "proj_hidden_dim": int(proj_hidden_dim),
            "init_temperature": float(init_temperature), "max_logit_scale": float(max_logit_scale),
            "learn_temperature": bool(learn_temperature), "same_text_positives": self.same_text_positives,
            "augment": bool(augment), "views": to_dict(view_cfg), "text_cache": self.text_cache,
            "ssl_weight": self.ssl_weight, "ssl_temperature": self.ssl_temperature}}

    # -- text side -------------------------------------------------------------------------
    @property
    def text_model(self):
        """The frozen text encoder, built from ``text_spec`` on first use (not part of ``state_dict``).

        Raises:
            TextEncoderError: it cannot be loaded; ValueError: its size differs from ``text_dim``.
        """
        if self._text_model is None:
            from medfm.text.cache import EmbeddingCache
            from medfm.text.encoders import create_text_encoder

            model = create_text_encoder(self.text_spec)
            if model.output_dim != self.text_dim:
                raise ValueError(f"clip: text encoder {self.text_spec} gives {model.output_dim}-d embeddings but this "
                                 f"model's text projection expects {self.text_dim}")
            object.__setattr__(self, "_text_model", model)
            if self.text_cache:
                object.__setattr__(self, "_embedding_cache", EmbeddingCache(model.cache_key))
        return self._text_model

    def text_features(self, texts: Sequence[str]) -> torch.Tensor:
        """Frozen text embeddings ``(N, text_dim)`` float32 (CPU), from memory, disk cache or the model."""
        from medfm.text.encoders import check_texts

        texts = check_texts(texts)
        memory: Dict[str, torch.Tensor] = self._text_memory
        missing = [t for t in dict.fromkeys(texts) if t not in memory]
        if missing:
            model = self.text_model
            emb = model.encode(missing, cache=self._embedding_cache)
            memory.update(zip(missing, emb))
        return torch.stack([memory[t] for t in texts])

    def prepare_data(self, dataset: Any) -> None:
        """Embed all texts of ``dataset`` (its ``unique_texts``) once before training."""
        texts = list(getattr(dataset, "unique_texts", []) or [])
        if texts:
            log.info("clip: embedding %d unique texts with %s", len(texts), self.text_spec)
            self.text_features(texts)

    # -- shared space ----------------------------------------------------------------------
    def scale(self) -> torch.Tensor:
        """The logit scale ``exp(min(log_scale, log(max_logit_scale)))`` as a scalar tensor.

        The cap is applied to the value only: the gradient with respect to ``logit_scale``
        passes unchanged (a plain ``clamp`` would zero it at and above the cap, so a scale
        that once reached the cap could never come down again). :meth:`on_step_end` keeps
        the parameter itself within the cap, as open_clip does after each step.
        """
        log_scale = self.logit_scale
        excess = (log_scale.detach() - self.max_log_scale).clamp_min(0)
        return (log_scale - excess).exp()

    @torch.no_grad()
    def on_step_end(self, step: int) -> None:
        """After an optimizer step: clip the learnable log logit scale at ``log(max_logit_scale)``
        in place (CLIP, Radford et al. 2021, Sec. 2.5; open_clip's ``logit_scale.clamp_(0, log(100))``)."""
        self.logit_scale.clamp_(max=self.max_log_scale)

    def encode_image(self, images: torch.Tensor, checked: bool = False) -> torch.Tensor:
        """Images ``(B, C, H, W)`` in [0, 1] -> L2-normalised embeddings ``(B, embed_dim)``. ``checked``: ``images``
        are a batch :func:`~medfm.objectives.inputs.check_image_batch` checked (or its views), so the encoder's
        value check is left out (:func:`~medfm.objectives.inputs.encode_views`)."""
        feats = encode_views(self.encoder, images) if checked else self.encoder(images)
        return F.normalize(self.image_proj(feats).float(), dim=-1)

    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        """``N`` strings -> L2-normalised embeddings ``(N, embed_dim)`` on the projection's device."""
        feats = self.text_features(texts).to(self.text_proj.weight.device)
        return F.normalize(self.text_proj(feats).float(), dim=-1)

    def forward(self, batch: Dict[str, Any], gen: torch.Generator) -> Dict[str, torch.Tensor]:
        """Objective step: symmetric image-text InfoNCE (+ SLIP's NT-Xent when ``ssl_weight > 0``).

        Args:
            batch: ``{"image": (B, C, H, W) float in [0, 1], "text": list of B str}``.
            gen: CPU generator for the random views.

        Returns:
            ``{"loss": scalar, "logit_scale": scalar}``; with ``ssl_weight > 0`` also ``"clip_loss"``
            and ``"ssl_loss"`` (detached scalars).

        Raises:
            ValueError: no ``"image"`` or ``"text"``, a text count that is not B, B < 2, ``gen`` not a CPU
                ``torch.Generator``, or a text encoder whose size is not ``text_dim``.
            EncoderInputError: an image batch that is not a finite float ``(B, C, H, W)`` with the
                encoder's channel count.
            TextEncoderError: texts not a list of str, or the text encoder cannot be loaded.
        """
        from medfm.text.encoders import check_texts

        texts: Optional[List[str]] = batch.get("text") if isinstance(batch, Mapping) else None
        if texts is None:
            raise ValueError("clip needs batches with 'text' (a list of B strings); pretrain on the corpus "
                             "(data.dataset: corpus) or another captioned dataset")
        texts = check_texts(texts)  # before counting them: a bare string was counted by its characters
        images = check_image_batch(batch, self.encoder, "clip", 1, gen=gen)
        if len(texts) != images.shape[0]:
            raise ValueError(f"clip: batch has {images.shape[0]} images but {len(texts)} texts")
        if images.shape[0] < 2:
            raise ValueError(f"clip needs a batch of at least 2 image-text pairs, got {images.shape[0]}")
        scale = self.scale()
        ids = text_ids_of(texts) if self.same_text_positives else None
        txt = self.encode_text(texts)
        if self.ssl_weight == 0:
            if self.views is not None:
                images = self.views(images, gen)
            loss = clip_loss(self.encode_image(images, checked=True), txt, scale, ids)
            return {"loss": loss, "logit_scale": scale.detach()}
        feats = encode_views(self.encoder, torch.cat([self.views(images, gen), self.views(images, gen)]))
        img1, img2 = F.normalize(self.image_proj(feats).float(), dim=-1).chunk(2)
        checked, ids = _check_clip_loss_args(img1, txt, scale, ids)  # once for both views: one read-back
        clip = 0.5 * (_symmetric_infonce(img1, txt, checked, ids) + _symmetric_infonce(img2, txt, checked, ids))
        z1, z2 = self.ssl_head(feats).chunk(2)
        ssl = nt_xent_loss(z1, z2, self.ssl_temperature)
        return {"loss": clip + self.ssl_weight * ssl, "clip_loss": clip.detach(), "ssl_loss": ssl.detach(),
                "logit_scale": scale.detach()}
