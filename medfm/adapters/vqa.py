"""Medical visual question answering: image tokens x frozen-text question tokens -> answer class.

The closed-set protocol of MEVF (Nguyen et al., MICCAI 2019) and PubMedCLIP (Eslami et al.,
EACL Findings 2023) on VQA-RAD: every normalised training answer is one class, and VQA is
classification over that vocabulary. CLOSED (yes/no, choice) and OPEN questions share one
classifier (as MEVF/PubMedCLIP do); a small *answer-type head* predicts CLOSED vs OPEN from
the question alone, and with ``type_mask=True`` answers never seen with the predicted type in
training are pushed below the others (they stay ranked, with ~0 probability).

Model: the image encoder's last feature map flattened to tokens (CNNs: ``(B, D, h, w)`` ->
``(B, h*w, D)``; ViTs: their ``(B, 1+N, D)`` tokens), projected with a learned position
embedding; the frozen text encoder's question tokens (``HFTextEncoder.encode_tokens``)
projected to the same width; then a trainable fusion module:

* ``"cross_attention"`` (default): pre-norm transformer layers whose queries are question
  tokens attending to image tokens (Vaswani et al. 2017; the question-to-image attention of
  MCAN, Yu et al. CVPR 2019), masked-mean pooled;
* ``"bilinear"``: low-rank bilinear attention with residual glimpses (BAN, Kim et al.,
  NeurIPS 2018; the fusion of MEVF);
* ``"coattention"``: parallel co-attention, question->image and image->question
  (Lu et al., NeurIPS 2016), both pooled and concatenated.

The pooled vector goes through an MLP classifier (``task_head``). The text encoder is
referenced by its spec (``text_encoder`` arg) and never saved in the checkpoint.
"""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from medfm.adapters.classification import check_class_labels
from medfm.arg_checks import check_bool, check_heads, check_mask_tensor, check_number, check_string_list, shown
from medfm.encoders.base import require_encoder
from medfm.registry import ADAPTERS, close_match_hint

FUSIONS = ("cross_attention", "bilinear", "coattention")
#: modules LoRA keeps trainable and saves (``apply_lora(..., head_modules=VQA_HEAD_MODULES)``)
VQA_HEAD_MODULES = ("image_proj", "question_proj", "fusion", "task_head", "type_head")
MASKED = -1.0e4  # added to logits of answers of the other type (type_mask=True)


def feature_tokens(feats: torch.Tensor) -> torch.Tensor:
    """Encoder features as tokens: ``(B, D, h, w)`` -> ``(B, h*w, D)``; ``(B, N, D)`` unchanged.

    Raises:
        ValueError: any other rank.
    """
    if feats.ndim == 4:
        return feats.flatten(2).transpose(1, 2)
    if feats.ndim == 3:
        return feats
    raise ValueError(f"encoder features must be (B, D, h, w) or (B, N, D), got shape {tuple(feats.shape)}")


def check_vqa_encoder(encoder: nn.Module) -> None:
    """Refuse an image encoder :class:`VQAModel` cannot take: a volume (3D) one (VQA images are
    ``(B, C, H, W)``); run by :class:`VQAModel`. ``medfm vqa`` refuses a 3D encoder earlier, from its
    registration (:func:`medfm.training.runs.check_encoder_dims`).

    Raises:
        ValueError: ``encoder.spatial_dims`` is not 2 (names the encoder).
    """
    if int(getattr(encoder, "spatial_dims", 2)) != 2:
        raise ValueError("VQA takes 2D images; encoder "
                         f"{getattr(encoder, 'config', {}).get('name', type(encoder).__name__)!r} "
                         f"is a volume encoder (spatial_dims={encoder.spatial_dims})")


def masked_mean(x: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
    """Mean over tokens of ``x`` ``(B, L, D)`` where ``mask`` ``(B, L)`` is True -> ``(B, D)``."""
    if mask is None:
        return x.mean(dim=1)
    m = mask.unsqueeze(-1).to(x.dtype)
    return (x * m).sum(dim=1) / m.sum(dim=1).clamp(min=1.0)


class TokenProjector(nn.Module):
    """LayerNorm + Linear to ``dim`` (+ learned position embedding for ``n_tokens`` positions).

    Shape: ``(B, N, in_dim)`` -> ``(B, N, dim)``.
    """

    def __init__(self, in_dim: int, dim: int, n_tokens: int = 0) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(in_dim)
        self.proj = nn.Linear(in_dim, dim)
        self.pos = nn.Parameter(torch.zeros(1, n_tokens, dim)) if n_tokens else None
        if self.pos is not None:
            nn.init.trunc_normal_(self.pos, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, N, in_dim)`` float -> ``(B, N, dim)``; with a position embedding ``N`` must be ``n_tokens``.

        Raises:
            ValueError: ``N`` differs from the ``n_tokens`` the position embedding was built for
                (e.g. images of another size than the encoder's ``img_size``).
        """
        if self.pos is not None and x.shape[1] != self.pos.shape[1]:
            raise ValueError(f"got {x.shape[1]} image tokens but the position embedding was built for "
                             f"{self.pos.shape[1]}; feed images of the size the model was built for")
        x = self.proj(self.norm(x))
        return x + self.pos if self.pos is not None else x


class _Block(nn.Module):
    """Pre-norm attention block: ``x = x + MHA(LN x, ctx)``; ``x = x + MLP(LN x)``."""

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.norm_q, self.norm_kv = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.norm_mlp = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(2 * dim, dim))

    def forward(self, x: torch.Tensor, ctx: torch.Tensor, ctx_pad: Optional[torch.Tensor] = None) -> torch.Tensor:
        kv = self.norm_kv(ctx)
        x = x + self.attn(self.norm_q(x), kv, kv, key_padding_mask=ctx_pad, need_weights=False)[0]
        return x + self.mlp(self.norm_mlp(x))


class CrossAttentionFusion(nn.Module):
    """Question tokens attend to image tokens (``layers`` blocks), masked-mean pooled.

    Shape: ``q (B, L, dim)``, ``q_mask (B, L)`` bool (True = token), ``v (B, N, dim)`` -> ``(B, dim)``.
    """

    def __init__(self, dim: int, heads: int = 4, layers: int = 2, dropout: float = 0.1) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([_Block(dim, heads, dropout) for _ in range(layers)])
        self.norm = nn.LayerNorm(dim)

    def forward(self, q: torch.Tensor, q_mask: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """``q (B, L, dim)``, ``q_mask (B, L)`` bool (True = real token), ``v (B, N, dim)`` -> pooled ``(B, dim)``.

        Every image token is attended to; ``q_mask`` only selects the question tokens that are pooled.
        """
        for blk in self.blocks:
            q = blk(q, v)
        return self.norm(masked_mean(q, q_mask))


class BilinearAttentionFusion(nn.Module):
    """Low-rank bilinear attention networks (BAN, Kim et al. 2018) with residual glimpses.

    Per glimpse g: ``A_ij = softmax_ij(p_g . (relu(U q_i) * relu(V v_j)))`` over all (question
    token i, image token j) pairs; ``f_g = sum_ij A_ij relu(U q_i) * relu(V v_j)``; question
    tokens are updated ``q <- q + W_g f_g`` (BAN's residual learning of attention).

    Shape: as :class:`CrossAttentionFusion`.
    """

    def __init__(self, dim: int, glimpses: int = 2, dropout: float = 0.1) -> None:
        super().__init__()
        self.u = nn.ModuleList([nn.Linear(dim, dim) for _ in range(glimpses)])
        self.v = nn.ModuleList([nn.Linear(dim, dim) for _ in range(glimpses)])
        self.p = nn.ParameterList([nn.Parameter(torch.randn(dim) * dim ** -0.5) for _ in range(glimpses)])
        self.out = nn.ModuleList([nn.Linear(dim, dim) for _ in range(glimpses)])
        self.drop = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(dim)

    def forward(self, q: torch.Tensor, q_mask: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """``q (B, L, dim)``, ``q_mask (B, L)`` bool (True = real token), ``v (B, N, dim)`` -> pooled ``(B, dim)``.

        Padded question tokens get attention weight 0; each row of ``q_mask`` needs one True
        (an all-False row gives NaN).
        """
        for u, w, p, out in zip(self.u, self.v, self.p, self.out):
            qu, vw = F.relu(u(q)), F.relu(w(v))  # (B, L, K), (B, N, K)
            logits = torch.einsum("blk,k,bnk->bln", qu, p, vw)
            logits = logits.masked_fill(~q_mask.unsqueeze(-1), float("-inf"))
            att = logits.flatten(1).softmax(dim=-1).view_as(logits)
            joint = torch.einsum("blk,bln,bnk->bk", qu, att, vw)
            q = q + self.drop(out(joint)).unsqueeze(1)
        return self.norm(masked_mean(q, q_mask))


class CoAttentionFusion(nn.Module):
    """Parallel co-attention (Lu et al. 2016): question->image and image->question, pooled + concatenated.

    Shape: as :class:`CrossAttentionFusion`.
    """

    def __init__(self, dim: int, heads: int = 4, layers: int = 1, dropout: float = 0.1) -> None:
        super().__init__()
        self.q_blocks = nn.ModuleList([_Block(dim, heads, dropout) for _ in range(layers)])
        self.v_blocks = nn.ModuleList([_Block(dim, heads, dropout) for _ in range(layers)])
        self.merge = nn.Sequential(nn.LayerNorm(2 * dim), nn.Linear(2 * dim, dim))

    def forward(self, q: torch.Tensor, q_mask: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """``q (B, L, dim)``, ``q_mask (B, L)`` bool (True = real token), ``v (B, N, dim)`` -> ``(B, dim)``.

        Question tokens attend to all image tokens, image tokens to the unpadded question tokens;
        the masked question mean and the image mean are concatenated and merged.
        """
        for qb, vb in zip(self.q_blocks, self.v_blocks):
            q, v = qb(q, v), vb(v, q, ctx_pad=~q_mask)
        return self.merge(torch.cat([masked_mean(q, q_mask), v.mean(dim=1)], dim=-1))


def check_vqa_head(fusion: str, dim: Any, heads: Any, layers: Any, dropout: Any) -> Tuple[int, int, int, float]:
    """Check the fusion options of :class:`VQAModel` (and of a VQA recipe's ``head`` section) with the
    shared numeric rules (:mod:`medfm.arg_checks`): ``dim``, ``heads``, ``layers`` integers >= 1,
    ``dropout`` a finite number in [0, 1). ``dim`` must be divisible by ``heads`` for the attention
    fusions (``cross_attention``, ``coattention``: :func:`medfm.arg_checks.check_heads`); ``bilinear``
    has no heads (``layers`` are its glimpses), so there any ``heads`` >= 1 goes with any ``dim``.

    Returns:
        ``(dim, heads, layers, dropout)`` as ``int, int, int, float``.

    Raises:
        ValueError: an unknown ``fusion`` (with close matches) or a bad value, one line naming it
            (``layers must be an integer >= 1, got 0``; ``True``, ``2.5``, NaN and inf are refused).
    """
    if fusion not in FUSIONS:
        hint = close_match_hint(str(fusion), FUSIONS, cutoff=0.6, fallback="known")
        raise ValueError(f"unknown VQA fusion {fusion!r}{hint}")
    if fusion == "bilinear":
        dim = check_number("dim", dim, ge=1, integer=True)
        heads = check_number("heads", heads, ge=1, integer=True, hint=" (unused by 'bilinear')")
    else:
        dim, heads = check_heads(dim, heads)
    layers = check_number("layers", layers, ge=1, integer=True,
                          hint=" (glimpses for 'bilinear')" if fusion == "bilinear" else "")
    return int(dim), int(heads), int(layers), check_number("dropout", dropout, ge=0, lt=1)


def build_fusion(name: str, dim: int, heads: int, layers: int, dropout: float) -> nn.Module:
    """The fusion module called ``name`` (one of :data:`FUSIONS`).

    Raises:
        ValueError: unknown name or a bad value (:func:`check_vqa_head`).
    """
    dim, heads, layers, dropout = check_vqa_head(name, dim, heads, layers, dropout)
    if name == "cross_attention":
        return CrossAttentionFusion(dim, heads, layers, dropout)
    if name == "bilinear":
        return BilinearAttentionFusion(dim, glimpses=layers, dropout=dropout)
    return CoAttentionFusion(dim, heads, layers, dropout)


@ADAPTERS.register("vqa")
class VQAModel(nn.Module):
    """Image encoder + frozen text encoder tokens + trainable fusion + answer classifier.

    Args:
        encoder: any 2D medfm encoder.
        answers: the answer vocabulary (normalised training answers), ``A`` classes.
        text_dim: width ``D_t`` of the text encoder's token states.
        closed_answers / open_answers: answers seen with type CLOSED / OPEN in training
            (used by the type mask; default: none / all).
        text_encoder: spec rebuilding the frozen text encoder (``{"name": "minilm"}``);
            recorded, not saved (:meth:`text_encoder` builds it on first use).
        fusion: one of :data:`FUSIONS`. dim: fusion width. heads: attention heads.
        layers: fusion layers (glimpses for "bilinear"). dropout: in fusion and head.
        type_mask: at inference, answers not seen with the predicted answer type are
            pushed down by :data:`MASKED` (still ranked).

    Shape:
        ``forward(images (B, C, H, W) in [0, 1], q_tokens (B, L, D_t), q_mask (B, L) bool)``
        -> ``{"logits": (B, A), "type_logit": (B,)}`` (type_logit > 0 means CLOSED).

    Raises:
        ValueError: empty/duplicate answers, ``text_dim`` not an integer >= 1, an unknown fusion or a bad
            ``dim``/``heads``/``layers``/``dropout`` (:func:`check_vqa_head`: ``dim`` divisible by ``heads``
            for the attention fusions only), a volume (3D) encoder or one that is not a medfm Encoder;
            ``answers`` / ``closed_answers`` / ``open_answers`` given as one string (``"yes"`` was read as the
            answers ``y``, ``e``, ``s``), ``answers`` as a set (no order) or items that are no strings or integers
            (:func:`medfm.arg_checks.check_string_list`); ``type_mask`` not true/false.
    """

    def __init__(self, encoder: nn.Module, answers: Sequence[str], text_dim: int,
                 closed_answers: Sequence[str] = (), open_answers: Optional[Sequence[str]] = None,
                 text_encoder: Optional[Dict[str, Any]] = None, fusion: str = "cross_attention", dim: int = 256,
                 heads: int = 4, layers: int = 2, dropout: float = 0.1, type_mask: bool = False) -> None:
        super().__init__()
        answers = check_string_list("answers", answers, what="a list of answer strings", integers=True)

        def subset(what: str, v: Any) -> set:  # closed / open answers: only membership counts, a set is fine there
            return set(check_string_list(what, list(v) if isinstance(v, (set, frozenset)) else v,
                                         what="a list of answer strings", integers=True))

        closed_answers = subset("closed_answers", closed_answers)
        open_answers = None if open_answers is None else subset("open_answers", open_answers)
        if not answers or len(set(answers)) != len(answers):
            raise ValueError("VQA answers must be a non-empty list without duplicates")
        dim, heads, layers, dropout = check_vqa_head(fusion, dim, heads, layers, dropout)
        text_dim = check_number("text_dim", text_dim, ge=1, integer=True)
        check_vqa_encoder(encoder)
        require_encoder("VQAModel", encoder)
        type_mask = check_bool("type_mask", type_mask)
        self.encoder = encoder
        self.answers = answers
        closed = [a for a in answers if a in closed_answers]
        opened = answers if open_answers is None else [a for a in answers if a in open_answers]
        self.type_mask = bool(type_mask)
        self.text_spec = dict(text_encoder or {"name": "minilm"})
        n_tokens, enc_dim = self._probe_tokens()
        self.image_proj = TokenProjector(enc_dim, dim, n_tokens)
        self.question_proj = TokenProjector(int(text_dim), dim)
        self.fusion = build_fusion(fusion, dim, heads, layers, dropout)
        self.task_head = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Dropout(dropout),
                                       nn.Linear(2 * dim, len(answers)))
        self.type_head = nn.Linear(dim, 1)
        self.register_buffer("closed_mask", torch.tensor([a in set(closed) for a in answers]), persistent=False)
        self.register_buffer("open_mask", torch.tensor([a in set(opened) for a in answers]), persistent=False)
        self._text: List[nn.Module] = []  # the frozen text encoder, kept out of the state dict
        self.medfm_spec: Dict[str, Any] = {
            "kind": "adapter", "name": "vqa",
            "args": {"answers": answers, "text_dim": int(text_dim), "closed_answers": closed, "open_answers": opened,
                     "text_encoder": self.text_spec, "fusion": fusion, "dim": int(dim), "heads": int(heads),
                     "layers": int(layers), "dropout": float(dropout), "type_mask": self.type_mask},
        }

    def _probe_tokens(self) -> Tuple[int, int]:
        enc = self.encoder
        was = enc.training
        enc.eval()
        with torch.no_grad():
            x = torch.zeros(1, enc.in_chans, enc.img_size, enc.img_size, device=enc.pixel_mean.device)
            tokens = feature_tokens(enc.forward_features(x))
        enc.train(was)
        return int(tokens.shape[1]), int(tokens.shape[2])

    # -- tokens ---------------------------------------------------------------------------
    def image_features(self, images: torch.Tensor) -> torch.Tensor:
        """Raw encoder tokens ``(B, N, D_enc)`` of images ``(B, C, H, W)`` in [0, 1] (cacheable when frozen)."""
        return feature_tokens(self.encoder.forward_features(images))

    def text_encoder(self) -> nn.Module:
        """The frozen text encoder of ``text_encoder`` spec (built on first call, CPU, not saved)."""
        if not self._text:
            from medfm.text.encoders import create_text_encoder

            self._text.append(create_text_encoder(self.text_spec))
        return self._text[0]

    def set_text_encoder(self, text_encoder: nn.Module) -> None:
        """Use an already loaded text encoder (its spec should equal ``text_encoder``)."""
        self._text[:] = [text_encoder]

    def question_tokens(self, questions: Sequence[str]) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(B, L, D_t)`` float32 question token states and ``(B, L)`` bool mask, on the model's device."""
        hidden, mask = self.text_encoder().encode_tokens(list(questions))
        device = self.closed_mask.device
        return hidden.to(device), mask.to(device)

    # -- forward ------------------------------------------------------------------------------
    def forward_tokens(self, image_feats: torch.Tensor, q_tokens: torch.Tensor,
                       q_mask: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Head on precomputed encoder tokens ``(B, N, D_enc)`` (see :meth:`image_features`).

        Raises:
            ValueError: as :meth:`forward`, and ``image_feats`` not ``(B, N, D_enc)``.
        """
        text_dim = self.medfm_spec["args"]["text_dim"]
        if not isinstance(q_tokens, torch.Tensor) or not isinstance(q_mask, torch.Tensor):
            raise ValueError(f"q_tokens and q_mask must be tensors (see question_tokens), got "
                             f"{type(q_tokens).__name__} and {type(q_mask).__name__}")
        if q_tokens.ndim != 3 or q_mask.shape != q_tokens.shape[:2]:
            raise ValueError(f"question tokens must be (B, L, D) with a (B, L) mask, got {tuple(q_tokens.shape)} "
                             f"and {tuple(q_mask.shape)}")
        if q_tokens.shape[2] != text_dim:
            raise ValueError(f"question tokens have width {q_tokens.shape[2]} but the model was built for text_dim="
                             f"{text_dim}; use the text encoder it was trained with ({self.text_spec})")
        if not q_tokens.is_floating_point():
            raise ValueError(f"question tokens must be float hidden states, got dtype {q_tokens.dtype}")
        if image_feats.ndim != 3 or image_feats.shape[2] != self.image_proj.norm.normalized_shape[0]:
            raise ValueError(f"image features must be (B, N, {self.image_proj.norm.normalized_shape[0]}) encoder "
                             f"tokens (see image_features), got shape {tuple(image_feats.shape)}")
        if image_feats.shape[0] != q_tokens.shape[0]:
            raise ValueError(f"{image_feats.shape[0]} images for {q_tokens.shape[0]} questions; pass one question per "
                             "image")
        if q_tokens.shape[0] == 0:
            raise ValueError("got an empty batch (B=0); pass at least one image and question")
        if not bool(torch.isfinite(q_tokens).all()):
            raise ValueError("question tokens contain NaN or inf values")
        q_mask = check_mask_tensor("q_mask", q_mask, what="(B, L) bool (True = real token)")  # 0.5 or 2 was True
        if q_mask.numel() and not bool(q_mask.any(dim=1).all()):
            empty = (~q_mask.any(dim=1)).nonzero().flatten().tolist()[:5]
            raise ValueError(f"question(s) {empty} have no real token in q_mask (all padding); every question "
                             "needs at least one")
        q = self.question_proj(q_tokens)
        pooled = self.fusion(q, q_mask, self.image_proj(image_feats))
        logits = self.task_head(pooled)
        type_logit = self.type_head(masked_mean(q, q_mask)).squeeze(-1)
        if self.type_mask and not self.training:
            closed = (type_logit > 0).unsqueeze(-1)
            allowed = torch.where(closed, self.closed_mask, self.open_mask)
            logits = logits + (~allowed).to(logits.dtype) * MASKED
        return {"logits": logits, "type_logit": type_logit}

    def forward(self, images: torch.Tensor, q_tokens: torch.Tensor, q_mask: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Answer and answer-type logits for images and (frozen-encoder) question tokens.

        Args:
            images: ``(B, C, H, W)`` float in [0, 1].
            q_tokens: ``(B, L, D_t)`` float question token states (:meth:`question_tokens`).
            q_mask: ``(B, L)`` bool, True = real token.

        Returns:
            ``{"logits": (B, A), "type_logit": (B,)}`` (type_logit > 0: CLOSED; with ``type_mask`` in
            eval mode, answers of the other type are lowered by :data:`MASKED`).

        Raises:
            ValueError: ``q_tokens`` not 3-D float of width ``text_dim``, ``q_mask`` not its ``(B, L)`` bool
                (or 0/1 integers, as transformers' ``attention_mask``; :func:`medfm.arg_checks.check_mask_tensor`),
                a ``q_mask`` row with no True (bilinear attention would turn it into NaN), NaN/inf
                question tokens, or a different number of images and questions.
            EncoderInputError: bad images (see :meth:`medfm.encoders.base.Encoder.check_input`).
        """
        return self.forward_tokens(self.image_features(images), q_tokens, q_mask)

    def loss(self, out: Dict[str, torch.Tensor], answers: torch.Tensor, is_closed: torch.Tensor,
             type_weight: float = 0.5) -> torch.Tensor:
        """Cross-entropy over answers (questions with answer id -1 skipped) + ``type_weight`` x BCE on the type.

        Shape: ``answers (B,)`` int64, ``is_closed (B,)`` bool (or 0/1 integers; a list or numpy array of
        those is taken too).

        Raises:
            ValueError: ``out`` not the dict :meth:`forward` returns, ``answers`` / ``is_closed`` not ``(B,)``,
                answer ids outside ``[0, A)`` and not -1, ``is_closed`` neither bool nor 0/1 integers (the rule of
                every mask, :func:`medfm.arg_checks.check_mask_tensor`: a float one, 0.0/1.0 included, is refused:
                0.5 was a soft target), or ``type_weight`` not a finite number >= 0.
        """
        if not isinstance(out, Mapping) or not {"logits", "type_logit"} <= set(out):
            got = sorted(map(str, out)) if isinstance(out, Mapping) else type(out).__name__
            raise ValueError("out must be the dict this model's forward returns, with 'logits' and 'type_logit', got "
                             f"{got}")
        type_weight = check_number("type_weight", type_weight, ge=0)
        logits = out["logits"].float()
        answers = check_class_labels(answers, logits.shape[0], len(self.answers), ignore_index=-1,
                                     what="answer ids").to(logits.device)
        is_closed = torch.as_tensor(is_closed)
        if is_closed.reshape(-1).shape[0] != logits.shape[0]:
            raise ValueError(f"is_closed has shape {tuple(is_closed.shape)} for {logits.shape[0]} questions; expected "
                             "(B,)")
        is_closed = check_mask_tensor("is_closed", is_closed, what="(B,) bool (or 0/1 integers)")  # floats: refused
        is_closed = is_closed.reshape(-1).to(logits.device)
        known = answers >= 0
        ce = F.cross_entropy(logits[known], answers[known]) if bool(known.any()) else logits.sum() * 0.0
        bce = F.binary_cross_entropy_with_logits(out["type_logit"].float(), is_closed.float())
        return ce + type_weight * bce

    @torch.no_grad()
    def answer(self, images: torch.Tensor, questions: Sequence[str], top_k: int = 5) -> List[List[Tuple[str, float]]]:
        """Top-k ``(answer, probability)`` per question for images ``(B, C, H, W)`` in [0, 1].

        Raises:
            ValueError: ``questions`` a single string or not a list of strings, a different number of images and
                questions, or ``top_k`` not an integer >= 1.
        """
        questions = check_string_list("questions", questions, what="a list of strings, one per image",
                                      got=lambda v: "a single string" if isinstance(v, str) else shown(v))
        if images.shape[0] != len(questions):
            raise ValueError(f"{images.shape[0]} images for {len(questions)} questions")
        top_k = check_number("top_k", top_k, ge=1, integer=True)
        q, m = self.question_tokens(questions)
        probs = self(images.to(self.closed_mask.device), q, m)["logits"].float().softmax(dim=-1)
        val, idx = probs.topk(min(top_k, len(self.answers)), dim=-1)
        return [[(self.answers[i], float(p)) for p, i in zip(pv.tolist(), iv.tolist())] for pv, iv in zip(val, idx)]


__all__ = ["FUSIONS", "VQA_HEAD_MODULES", "VQAModel", "TokenProjector", "CrossAttentionFusion",
           "BilinearAttentionFusion", "CoAttentionFusion", "build_fusion", "check_vqa_encoder", "check_vqa_head",
           "feature_tokens",
           "masked_mean"]
