"""Text-conditioned segmentation (MulModSeg) and referring segmentation (LSMS-style queries).

MulModSeg (Li et al., "MulModSeg: Enhancing Unpaired Multi-Modal Medical Image
Segmentation with Modality-Conditioned Text Embedding and Alternating Training",
arXiv 2411.15576, WACV 2025), itself built on the CLIP-driven Universal Model (Liu et al.,
ICCV 2023):

* a frozen text encoder embeds one prompt per target, ``"A {modality} image of {target}"``;
* the global image feature (global average pool of the deepest encoder map) is
  concatenated with each target's (projected) text embedding, and an MLP (the
  *controller*) generates the weights and biases of a small **dynamic head**: a stack of
  1x1 convolutions (8 -> 8 -> 8 -> 1 channels, ReLU between, as the Universal Model)
  applied to the U-Net decoder features, giving that target's mask logit;
* targets are independent binary masks (sigmoid), so one model segments any named set of
  targets across modalities.

Referring segmentation after LSMS (Language-guided Scale-aware MedSegmentor, Yuan et al.,
arXiv 2408.17347): a free-text query (e.g. "segment the blood vessels of the retina") is
embedded with the same frozen text encoder and conditions the dynamic head directly;
:meth:`TextConditionedSegmenter.refer` also reports the known target whose prompt is
closest (cosine similarity) and can snap to it (``snap=True``), which is robust when the
query is phrased unlike the training prompts.

Modality-specific normalisation (``domain_norm=True``): images of different modalities
(RGB fundus photographs, MR slices) have very different activation statistics, and one set
of BatchNorm statistics shared by both fits neither modality's images well. As in domain-specific batch normalisation
(DSBN, Chang et al., "Domain-Specific Batch Normalization for Unsupervised Domain Adaptation", CVPR 2019)
every BatchNorm of the encoder, decoder and head is replaced by one BatchNorm per
*modality* (:class:`~medfm.adapters.domain_layers.DomainBatchNorm`); convolution weights, the text conditioning and
the dynamic heads stay shared. The modality of each image is known (it is part of every
prompt): it is passed as ``domain`` or taken from the prompted target. Measured on
CHASE_DB1 + TCGA-LGG together with copied-FLAIR augmentation: LGG Dice 0.37 -> 0.52,
vessel Dice unchanged (0.63 -> 0.62); see ``docs/segmentation_results.md``.

The text encoder itself is not part of the checkpoint: the prompt embeddings of the known
targets are stored as a buffer (``prompt_embeddings``), so a saved model segments its
known targets without loading the text encoder; free-text queries need one with
``encode(list[str]) -> (N, D)`` (e.g. :func:`medfm.text.create_text_encoder`).
"""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from medfm.adapters.domain_layers import convert_domain_norms, convert_input_conv, set_domains
from medfm.adapters.segmentation import (accept_standardised_inputs, check_decoder_options, conv_layers,
                                         default_inference, make_norm, spatial_dims_of, unet_decoder_for)
from medfm.arg_checks import (check_bool, check_list, check_mask_tensor, check_number, is_index_tensor, is_integer,
                               number_fits, shown)
from medfm.encoders.base import require_encoder
from medfm.registry import ADAPTERS, UnknownNameError, close_match_hint
from medfm.text.prompts import check_template

PROMPT_TEMPLATE = "A {modality} image of {target}"
#: modules LoRA keeps trainable and saves (``apply_lora(..., head_modules=TEXT_SEG_HEAD_MODULES)``)
TEXT_SEG_HEAD_MODULES = ("decoder", "precls", "image_proj", "text_proj", "dynamic_head")


#: the dynamic head's options (:class:`TextConditionedSegmenter` ``head``) and their defaults
HEAD_DEFAULTS: Dict[str, Any] = {"channels": 8, "layers": 3, "controller_hidden": 256, "embed_dim": 256,
                                 "image_conditioning": True}


def check_head_options(head: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    """The options of a ``head`` mapping (None: none) over :data:`HEAD_DEFAULTS`, as a new dict.

    Raises:
        ValueError: an unknown option (with close matches); ``channels``, ``layers``,
            ``controller_hidden`` or ``embed_dim`` not an integer >= 1; ``image_conditioning`` not true/false.
    """
    for key in head or {}:
        if key not in HEAD_DEFAULTS:
            raise ValueError("unknown head option "
                             f"{key!r}{close_match_hint(key, list(HEAD_DEFAULTS), fallback='known')}")
    options = {**HEAD_DEFAULTS, **(head or {})}
    for key in ("channels", "layers", "controller_hidden", "embed_dim"):
        options[key] = check_number(key, options[key], ge=1, integer=True)
    check_bool("image_conditioning", options["image_conditioning"])
    return options


def target_prompt(modality: str, target: str, template: str = PROMPT_TEMPLATE) -> str:
    """The prompt of one target, e.g. ``"A retinal fundus photograph image of retinal blood vessels"``."""
    return template.format(modality=modality, target=target)


class DynamicHead(nn.Module):
    """Per-(image, target) 1x1-convolution stack whose parameters an MLP generates.

    Args:
        cond_dim: size of the conditioning vector (image feature + text feature).
        channels: input feature channels ``C`` (and hidden width of the dynamic convs).
        layers: number of dynamic 1x1 convolutions (last one outputs 1 channel).
        controller_hidden: hidden width of the controller MLP.

    Shape:
        ``forward(feats (B, C, *S), cond (B, T, cond_dim))`` -> logits ``(B, T, *S)``.
    """

    def __init__(self, cond_dim: int, channels: int = 8, layers: int = 3, controller_hidden: int = 256) -> None:
        super().__init__()
        if layers < 1:
            raise ValueError(f"the dynamic head needs >= 1 layer, got {layers}")
        self.channels = int(channels)
        self.shapes: List[Tuple[int, int]] = [(channels, channels)] * (layers - 1) + [(1, channels)]
        self.n_params = sum(o * i + o for o, i in self.shapes)
        self.controller = nn.Sequential(nn.Linear(cond_dim, controller_hidden), nn.ReLU(inplace=True),
                                        nn.Linear(controller_hidden, self.n_params))

    def forward(self, feats: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Apply each (image, target)'s generated 1x1-conv stack to the features.

        Args:
            feats: ``(B, C, *S)`` float features, ``C == channels``.
            cond: ``(B, T, cond_dim)`` conditioning vectors (one per target).

        Returns:
            ``(B, T, *S)`` mask logits (one per target; sigmoid for probabilities).
        """
        b, c = feats.shape[:2]
        spatial = feats.shape[2:]
        params = self.controller(cond)  # (B, T, n_params)
        t = params.shape[1]
        h = feats.reshape(b, 1, c, -1).expand(b, t, c, -1)  # (B, T, C, N)
        offset = 0
        for li, (out_ch, in_ch) in enumerate(self.shapes):
            w = params[..., offset:offset + out_ch * in_ch].reshape(b, t, out_ch, in_ch)
            offset += out_ch * in_ch
            bias = params[..., offset:offset + out_ch].reshape(b, t, out_ch, 1)
            offset += out_ch
            h = torch.einsum("btoi,btin->bton", w, h) + bias
            if li < len(self.shapes) - 1:
                h = F.relu(h)
        return h.reshape(b, t, *spatial)


@ADAPTERS.register("text_segmentation")
class TextConditionedSegmenter(nn.Module):
    """Encoder + U-Net decoder + text-conditioned dynamic heads (MulModSeg).

    Args:
        encoder: any medfm encoder (2D or 3D).
        targets: known targets, each ``{"name": id, "modality": ..., "target": ...}``;
            their prompts are ``template.format(modality, target)``.
        text_dim: text embedding size ``D`` of the frozen text encoder.
        text_encoder: spec that rebuilds the text encoder (``{"name": "minilm"}``),
            recorded for free-text queries.
        decoder: :class:`UNetDecoder` options.
        head: ``{"channels": 8, "layers": 3, "controller_hidden": 256, "embed_dim": 256,
            "image_conditioning": True}``; ``image_conditioning=False`` drops the global image
            feature from the controller input (the head then depends on the prompt only: one
            fixed head per target, an ablation of MulModSeg's image-text conditioning).
        template: prompt template with ``{target}`` and optionally ``{modality}``, filled in as plain strings
            (the class templates' rule, :func:`medfm.text.prompts.check_template`).
        inference: as :class:`medfm.adapters.segmentation.SegmentationModel`.
        domain_norm: one BatchNorm per modality (:class:`~medfm.adapters.domain_layers.DomainBatchNorm`); the domains
            are the distinct ``modality`` values of ``targets`` in order (:attr:`modalities`).
        domain_stem: also one copy per modality of the layers that read the image (the
            encoder's first convolution and the decoder's full-resolution input convolution,
            :class:`~medfm.adapters.domain_layers.DomainConv`); needs ``domain_norm``.
        target_inference: per-target inference settings ``{name: {"scale": ..., "roi_size":
            ...}}`` (each target's data set may be trained at its own scale), used by
            :class:`PromptedSegmenter` and the ``image-segmentation`` pipeline.

    Shape:
        ``forward(images (B, C, *S), text (T, D) or (B, T, D), domain)`` -> logits ``(B, T, *S)``;
        ``domain`` (modality name, index or ``(B,)`` indices) is needed with ``domain_norm``
        and more than one modality.

    Raises:
        ValueError: no targets, a target that is not a mapping of exactly ``name``, ``modality``, ``target``
            (strings), duplicate names, ``text_dim`` not an integer >= 1, a ``template`` whose placeholders
            are not ``{modality}`` / ``{target}`` filled in as plain strings (no ``{target!r}``, ``{target.upper}``,
            other field or format spec a string refuses: :func:`medfm.text.prompts.check_template`; the template
            needs ``{target}``), ``domain_norm`` / ``domain_stem`` not true/false, bad head
            options (:func:`check_head_options`) or decoder options
            (:func:`medfm.adapters.segmentation.unet_decoder_for`), an ``encoder`` that is not a medfm Encoder.
    """

    def __init__(self, encoder: nn.Module, targets: Sequence[Dict[str, str]], text_dim: int,
                 text_encoder: Optional[Dict[str, Any]] = None, decoder: Optional[Dict[str, Any]] = None,
                 head: Optional[Dict[str, Any]] = None, template: str = PROMPT_TEMPLATE,
                 inference: Optional[Dict[str, Any]] = None, domain_norm: bool = False,
                 target_inference: Optional[Dict[str, Dict[str, Any]]] = None, domain_stem: bool = False) -> None:
        super().__init__()
        targets = check_list("targets", targets, what="a list of {'name', 'modality', 'target'} mappings")
        for t in targets:
            if not isinstance(t, Mapping):
                raise ValueError(f"each target must be a mapping with the keys name, modality, target, got {shown(t)}")
            if set(t) != {"name", "modality", "target"}:
                raise ValueError(f"each target needs exactly the keys name, modality, target; got {sorted(t)}")
            if not all(isinstance(v, str) and v for v in t.values()):
                raise ValueError(f"a target's name, modality and target must be non-empty strings, got {dict(t)}")
        targets = [dict(t) for t in targets]
        if not targets:
            raise ValueError("a text-conditioned segmenter needs at least one target")
        names = [t["name"] for t in targets]
        if len(set(names)) != len(names):
            raise ValueError(f"target names must be unique, got {names}")
        head_args = check_head_options(head)
        text_dim = check_number("text_dim", text_dim, ge=1, integer=True, hint=" (the text embedding size)")
        domain_norm = check_bool("domain_norm", domain_norm)
        domain_stem = check_bool("domain_stem", domain_stem)
        what = "template must be a string with the placeholders {modality} and {target}"
        if not isinstance(template, str):
            raise ValueError(f"{what}, got {shown(template)}")
        try:  # the class templates' rule: '{target!r}' (Python's quotes) and '{target.upper}' were taken
            check_template(template, ("modality", "target"), "target", "a target's text")
        except ValueError as err:
            raise ValueError(f"{what}; {err}") from None
        require_encoder("TextConditionedSegmenter", encoder)
        self.encoder = encoder
        self.spatial_dims = spatial_dims_of(encoder)
        self.targets = targets
        self.target_names = names
        self.template = template
        self.text_dim = int(text_dim)
        dec_args = check_decoder_options(decoder)
        self.decoder = unet_decoder_for(encoder, dec_args)
        channels = self.decoder.encoder_channels
        conv = conv_layers(self.spatial_dims)[0]
        self.precls = nn.Sequential(make_norm(self.spatial_dims, dec_args.get("norm", "batch"),
                                              self.decoder.out_channels),
                                    nn.ReLU(inplace=True), conv(self.decoder.out_channels, head_args["channels"], 1))
        e = head_args["embed_dim"]
        self.image_conditioning = head_args["image_conditioning"]
        if self.image_conditioning:
            self.image_proj = nn.Sequential(nn.Linear(channels[-1], e), nn.ReLU(inplace=True))
        self.text_proj = nn.Sequential(nn.Linear(self.text_dim, e), nn.ReLU(inplace=True))
        self.dynamic_head = DynamicHead((2 if self.image_conditioning else 1) * e, head_args["channels"],
                                        head_args["layers"], head_args["controller_hidden"])
        self.register_buffer("prompt_embeddings", torch.zeros(len(targets), self.text_dim))
        self.inference = default_inference(encoder, inference)
        unknown = set(target_inference or {}) - set(names)
        if unknown:
            raise ValueError(f"target_inference names unknown target(s) {sorted(unknown)} (known: {names})")
        self.target_inference = {n: default_inference(encoder, v) for n, v in (target_inference or {}).items()}
        accept_standardised_inputs(encoder, self.inference, *self.target_inference.values())
        self.modalities: List[str] = list(dict.fromkeys(t["modality"] for t in targets))
        self.domain_norm = bool(domain_norm)
        if self.domain_norm:
            convert_domain_norms(self, len(self.modalities))
        self.domain_stem = bool(domain_stem)
        if self.domain_stem:
            if not self.domain_norm:
                raise ValueError("domain_stem needs domain_norm=True (the per-modality layers share its domains)")
            convert_input_conv(self.encoder, encoder.in_chans, len(self.modalities))
            if self.decoder.input_skip:
                convert_input_conv(self.decoder.stem, encoder.in_chans, len(self.modalities))
        self.num_classes = 2  # per target: background / target
        self.label_names = ["background", "target"]
        self.medfm_spec: Dict[str, Any] = {
            "kind": "adapter", "name": "text_segmentation",
            "args": {"targets": targets, "text_dim": self.text_dim,
                     "text_encoder": dict(text_encoder or {"name": "minilm"}),
                     "decoder": dec_args, "head": head_args, "template": template, "inference": self.inference,
                     "domain_norm": self.domain_norm, "target_inference": self.target_inference,
                     "domain_stem": self.domain_stem},
        }

    # -- prompts -----------------------------------------------------------------------------
    @property
    def prompts(self) -> List[str]:
        """The prompt text of each known target."""
        return [target_prompt(t["modality"], t["target"], self.template) for t in self.targets]

    def set_prompt_embeddings(self, text_encoder: Any) -> None:
        """Embed the known targets' prompts with ``text_encoder.encode`` into the buffer.

        Raises:
            ValueError: the encoder's embedding size is not ``text_dim``.
        """
        emb = torch.as_tensor(text_encoder.encode(self.prompts), dtype=torch.float32)
        if emb.shape != self.prompt_embeddings.shape:
            raise ValueError(f"text encoder gives embeddings of shape {tuple(emb.shape)}, expected "
                             f"{tuple(self.prompt_embeddings.shape)} (text_dim={self.text_dim})")
        self.prompt_embeddings.copy_(emb)

    def target_index(self, names: Sequence[str]) -> List[int]:
        """Indices of known target names.

        Raises:
            UnknownNameError: an unknown name (with the close matches); a ``KeyError`` printed without
                the quotes ``KeyError`` adds.
        """
        out = []
        for n in names:
            if n not in self.target_names:
                raise UnknownNameError("unknown target "
                                       f"{n!r}{close_match_hint(n, self.target_names, cutoff=0.6, fallback='known')}")
            out.append(self.target_names.index(n))
        return out

    # -- forward ----------------------------------------------------------------------------------
    def domain_index(self, domain: Union[None, str, int, torch.Tensor], batch: int,
                     names: Optional[Sequence[str]] = None) -> Optional[torch.Tensor]:
        """Per-sample modality indices ``(B,)`` for :class:`~medfm.adapters.domain_layers.DomainBatchNorm` (None without
        ``domain_norm``).

        Args:
            domain: a modality name, an index, ``(B,)`` indices, or None: the modality of the
                known targets ``names`` when they share one, or the only modality.
            batch: ``B``.
            names: known target names being segmented (to infer the modality).

        Raises:
            ValueError: unknown modality, no way to tell the modality, or a ``domain`` that is no modality name,
                integer index or integer tensor (:func:`medfm.arg_checks.is_index_tensor`: ``0.5`` or ``True``
                was taken as index 0 or 1, a complex tensor lost its imaginary part, a list of names failed inside
                torch).
        """
        if not self.domain_norm:
            return None
        if domain is not None and not (isinstance(domain, str) or is_integer(domain) or is_index_tensor(domain)):
            raise ValueError(f"domain must be a modality name {self.modalities}, its index, or (B,) integer indices "
                             f"(a torch.Tensor), got {shown(domain)}")
        if domain is None:
            mods = {self.targets[i]["modality"] for i in self.target_index(names)} if names else set(self.modalities)
            if len(mods) != 1:
                raise ValueError(f"this model normalises per modality {self.modalities}; pass domain= "
                                 "(the images' modality name or index)")
            domain = mods.pop()
        if isinstance(domain, str):
            if domain not in self.modalities:
                raise ValueError(f"unknown modality {domain!r}"
                                 f"{close_match_hint(domain, self.modalities, cutoff=0.6, fallback='known')}")
            domain = self.modalities.index(domain)
        d = torch.as_tensor(domain, dtype=torch.long).reshape(-1)
        return d.expand(batch).contiguous() if d.numel() == 1 else d

    def forward(self, images: torch.Tensor, text: Optional[torch.Tensor] = None,
                domain: Union[None, str, int, torch.Tensor] = None) -> torch.Tensor:
        """Per-target mask logits conditioned on text embeddings.

        Args:
            images: ``(B, C, *S)`` float in [0, 1] (2D or 3D).
            text: ``(T, D)`` or ``(B, T, D)`` text embeddings (``D == text_dim``); None: all known
                targets' ``prompt_embeddings``.
            domain: images' modality name, index or ``(B,)`` indices (``domain_norm`` only; default:
                the known targets' shared modality when ``text`` is None, else the only modality).

        Returns:
            ``(B, T, *S)`` logits, one independent (sigmoid) mask per target.

        Raises:
            ValueError: ``text`` not a float tensor (a prompt string or list of them: use :meth:`segment` or
                :meth:`refer`), of the wrong shape or batch size, with no target (T=0) or NaN/inf values; unknown
                modality, or ``domain`` needed but not given.
            EncoderInputError: bad images (see :meth:`medfm.encoders.base.Encoder.check_input`).
        """
        if text is not None:
            self._check_text(text)
        if not isinstance(images, torch.Tensor):
            self.encoder.check_input(images)  # its one-line message for a non-tensor
        set_domains(self, self.domain_index(domain, images.shape[0], None if text is not None else self.target_names))
        maps = self.encoder.forward_intermediates(images)
        feats = self.precls(self.decoder(maps, images))
        g = maps[-1].flatten(2).mean(-1)  # global image feature (B, C_last)
        text = self.prompt_embeddings if text is None else text
        if text.ndim == 2:
            text = text.unsqueeze(0).expand(images.shape[0], -1, -1)
        if text.ndim != 3 or text.shape[0] != images.shape[0] or text.shape[-1] != self.text_dim:
            raise ValueError(f"text embeddings must be (T, {self.text_dim}) or (B, T, {self.text_dim}), got "
                             f"{tuple(text.shape)}")
        t = text.shape[1]
        if t == 0:
            raise ValueError("text holds no target (T=0); pass at least one text embedding")
        cond = self.text_proj(text.to(g.dtype))
        if self.image_conditioning:
            cond = torch.cat([self.image_proj(g).unsqueeze(1).expand(-1, t, -1), cond], dim=-1)
        return self.dynamic_head(feats, cond)

    def _check_text(self, text: Any) -> None:
        """Refuse ``forward``'s ``text`` when it is no float tensor or holds NaN/inf (its shape is checked there)."""
        if not isinstance(text, torch.Tensor) or not text.is_floating_point():
            got = (f"a {text.dtype} tensor" if isinstance(text, torch.Tensor) else
                   shown(text) if isinstance(text, (str, list, tuple)) else type(text).__name__)
            words = isinstance(text, str) or (isinstance(text, (list, tuple)) and text and isinstance(text[0], str))
            how = ("; for known targets by name use segment(images, names), for free text refer(images, query, "
                   "text_encoder)") if words else ""
            raise ValueError(f"text must be float text embeddings (T, {self.text_dim}) or (B, T, {self.text_dim}), "
                             f"or None for all known targets; got {got}{how}")
        if not bool(torch.isfinite(text).all()):
            raise ValueError("text embeddings contain NaN or inf values")

    def segment(self, images: torch.Tensor, targets: Optional[Sequence[str]] = None,
                domain: Union[None, str, int, torch.Tensor] = None) -> torch.Tensor:
        """Logits ``(B, T, *S)`` for known targets by name (default: all known targets).

        With ``domain_norm`` the images' modality defaults to the targets' (when they share one).

        Raises:
            UnknownNameError: an unknown target name (:meth:`target_index`).
        """
        names = ([targets] if isinstance(targets, str) else list(targets)) if targets is not None else self.target_names
        idx = self.target_index(names)
        return self(images, self.prompt_embeddings[idx], domain=self.domain_index(domain, images.shape[0], names))

    def match_target(self, query_embedding: torch.Tensor) -> Tuple[str, float]:
        """The known target whose prompt embedding is closest (cosine) to a query ``(D,)``.

        Raises:
            ValueError: ``query_embedding`` not a float tensor of ``text_dim`` values.
        """
        if (not isinstance(query_embedding, torch.Tensor) or not query_embedding.is_floating_point()
                or query_embedding.numel() != self.text_dim):
            got = (f"a {query_embedding.dtype} tensor of shape {tuple(query_embedding.shape)}"
                   if isinstance(query_embedding, torch.Tensor) else type(query_embedding).__name__)
            raise ValueError(f"a query embedding must be a float tensor of {self.text_dim} values (text_dim), got "
                             f"{got}")
        sims = F.cosine_similarity(self.prompt_embeddings,
                                   query_embedding.reshape(1, -1).to(self.prompt_embeddings), dim=-1)
        i = int(sims.argmax())
        return self.target_names[i], float(sims[i])

    def embed_query(self, query: str, text_encoder: Any) -> Tuple[torch.Tensor, str, float]:
        """Embed a free-text query with ``text_encoder`` (``encode(list[str]) -> (1, D)``).

        Returns:
            ``(embedding (D,) float32, closest known target, its cosine)``.

        Raises:
            ValueError: an empty query, or embeddings whose size is not this model's ``text_dim``.
        """
        if not isinstance(query, str) or not query.strip():
            raise ValueError(f"query must be a non-empty string, got {query!r}")
        q = torch.as_tensor(text_encoder.encode([query]), dtype=torch.float32)[0]
        if q.shape[-1] != self.text_dim:
            raise ValueError(f"the text encoder gives {q.shape[-1]}-d embeddings; this model was trained "
                             f"with {self.text_dim}-d ones")
        name, sim = self.match_target(q)
        return q, name, sim

    def refer(self, images: torch.Tensor, query: str, text_encoder: Any, snap: bool = False,
              domain: Union[None, str, int, torch.Tensor] = None) -> Dict[str, Any]:
        """Referring segmentation: segment what a free-text ``query`` names.

        Args:
            images: ``(B, C, *S)`` in [0, 1].
            query: free text, e.g. "the retinal blood vessels".
            text_encoder: object with ``encode(list[str]) -> (1, D)``.
            snap: condition on the closest known prompt instead of the query itself.
            domain: the images' modality (``domain_norm`` models); default: the modality of
                the matched target.

        Returns:
            ``{"logits": (B, 1, *S), "matched_target": name, "similarity": cosine}``.
        """
        q, name, sim = self.embed_query(query, text_encoder)
        cond = self.prompt_embeddings[self.target_index([name])] if snap else q[None].to(self.prompt_embeddings)
        dom = self.domain_index(domain, images.shape[0], [name])
        return {"logits": self(images, cond, domain=dom), "matched_target": name, "similarity": sim}

    def loss(self, logits: torch.Tensor, masks: torch.Tensor, known: Optional[torch.Tensor] = None,
             weights: Optional[Sequence[float]] = None) -> torch.Tensor:
        """Binary cross-entropy + soft Dice per target, over the (sample, target) pairs with known labels.

        The Dice term is computed for each target over the batch and averaged over the
        targets with known pairs, so a rare target (small lesions) weighs as much as a
        frequent one (vessels); pooling all targets into one Dice lets the frequent target
        dominate and the rare one collapse to "absent".

        ``weights`` (one positive float per target; default all 1) scale each target's share of
        both terms: the BCE is the ``w_t``-weighted mean over the known pixels and the Dice
        term the ``w_t``-weighted mean of the per-target Dice losses: fixed task weights, the
        static baseline of multi-task loss weighting (Kendall et al., CVPR 2018, learn them
        instead). With all weights 1 the loss is exactly the unweighted one.

        Args:
            logits: ``(B, T, *S)``.
            masks: ``(B, T, *S)`` {0, 1} per-target masks.
            known: ``(B, T)`` bool; False excludes a pair (partially labelled data).
            weights: ``T`` positive finite floats, or None.

        Raises:
            ValueError: ``masks`` / ``known`` not tensors of the shapes above, mask values outside [0, 1]
                (or NaN), ``known`` not bool or 0/1 integers (:func:`medfm.arg_checks.check_mask_tensor`), no known
                pair at all, or weights of the wrong length / not positive and finite.
        """
        for what, value in (("masks", masks), ("known", known)):
            if value is not None and not isinstance(value, torch.Tensor):
                raise ValueError(f"{what} must be a torch.Tensor, got {type(value).__name__}")
        if masks.shape != logits.shape:
            raise ValueError(f"masks {tuple(masks.shape)} must match logits {tuple(logits.shape)}")
        if known is not None and known.shape != logits.shape[:2]:
            raise ValueError(f"known must be (B, T) = {tuple(logits.shape[:2])} (one flag per sample and target), "
                             f"got {tuple(known.shape)}")
        lo, hi = masks.float().aminmax()
        if not bool((lo >= 0) & (hi <= 1)):  # also NaN; one device sync
            raise ValueError(f"masks must hold values in [0, 1] (0/1 per-target masks), got values in "
                             f"[{float(lo):g}, {float(hi):g}]")
        known = (torch.ones(logits.shape[:2], dtype=torch.bool, device=logits.device) if known is None
                 else check_mask_tensor("known", known, what="(B, T) bool"))  # 0.5 or 2 was taken as known
        has_known = known.any(0).tolist()  # (T,) flags in one read-back (was one per target, plus one)
        if not any(has_known):
            raise ValueError("no (sample, target) pair has a known label")
        w = check_target_weights(weights, logits.shape[1]).to(logits.device)
        z, y = logits.float(), masks.float()
        pix = F.binary_cross_entropy_with_logits(z, y, reduction="none").flatten(2).mean(2)  # (B, T)
        wk = w.expand_as(known)[known]
        bce = (pix[known] * wk).sum() / wk.sum()
        p = torch.sigmoid(z)
        dices, wd = [], []
        for t in range(z.shape[1]):
            if has_known[t]:
                sel = known[:, t]
                pt, yt = p[sel, t], y[sel, t]
                dices.append(1 - (2 * (pt * yt).sum() + 1e-5) / (pt.sum() + yt.sum() + 1e-5))
                wd.append(w[t])
        wd = torch.stack(wd)
        return bce + (torch.stack(dices) * wd).sum() / wd.sum()


def check_target_weights(weights: Optional[Sequence[float]], n_targets: int) -> torch.Tensor:
    """Per-target loss weights as a float32 ``(T,)`` tensor (all ones for None).

    Raises:
        ValueError: not ``n_targets`` values, or a value that is not positive and finite.
    """
    if weights is None:
        return torch.ones(n_targets)
    weights = list(weights)
    if len(weights) != n_targets:
        raise ValueError(f"need one loss weight per target ({n_targets}), got {len(weights)}")
    bad = [shown(v) for v in weights if not number_fits(v, gt=0)]  # the rule of medfm.arg_checks (no bools)
    if bad:
        raise ValueError(f"loss weights must be positive and finite numbers, got {', '.join(bad)} in {weights!r}")
    return torch.as_tensor([float(v) for v in weights], dtype=torch.float32)


class PromptedSegmenter(nn.Module):
    """A :class:`TextConditionedSegmenter` fixed to one target, seen as a 2-class segmenter.

    ``forward`` returns ``(B, 2, *S)`` logits ``[0, z]`` (softmax of which is
    ``[1 - sigmoid(z), sigmoid(z)]``), so medfm's sliding-window inference, evaluation and
    pipeline code run on it unchanged.

    Args:
        model: the text-conditioned model (or its peft wrapper).
        target: a known target name, or a query embedding ``(D,)`` (referring segmentation).
        inference: per-target inference settings (e.g. this data set's ``scale``); default
            the model's ``target_inference`` of the (matched) target, else its ``inference``.
        domain: the images' modality (``domain_norm`` models); default: the target's
            modality (for a query embedding: the modality of the closest known target).

    Raises:
        ValueError: ``target`` neither a name nor a float tensor of ``text_dim`` values; bad ``inference``/``domain``.
        UnknownNameError: an unknown target name.
    """

    def __init__(self, model: nn.Module, target: Union[str, torch.Tensor],
                 inference: Optional[Dict[str, Any]] = None, domain: Union[None, str, int] = None) -> None:
        super().__init__()
        if not isinstance(target, (str, torch.Tensor)):
            raise ValueError("target must be a known target name or a query embedding tensor (D,), got "
                             f"{shown(target)}")
        core = model.base_model.model if hasattr(model, "base_model") and hasattr(model.base_model, "model") else model
        self.model = model
        self.encoder = core.encoder
        self.spatial_dims = core.spatial_dims
        self.num_classes = 2
        self.label_names = ["background", target if isinstance(target, str) else "query"]
        emb = core.prompt_embeddings[core.target_index([target])] if isinstance(target, str) else target.reshape(1, -1)
        # a query embedding comes from the text encoder's device (the CPU), the model may be on a GPU
        self.register_buffer("text", emb.detach().to(core.prompt_embeddings).clone(), persistent=False)
        name = target if isinstance(target, str) else core.match_target(emb[0])[0]
        self.matched_target = name
        if inference is not None:
            self.inference = default_inference(core.encoder, inference)
        else:
            self.inference = getattr(core, "target_inference", {}).get(name, core.inference)
        accept_standardised_inputs(core.encoder, self.inference)
        dom = core.domain_index(domain, 1, [name])
        self.domain = None if dom is None else int(dom[0])

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, C, *S)`` float in [0, 1] -> ``(B, 2, *S)`` logits ``[0, z]`` for the fixed target.

        Raises:
            ValueError: a query embedding whose size is not the model's ``text_dim``.
        """
        z = self.model(images, self.text, domain=self.domain)
        return torch.cat([torch.zeros_like(z), z], dim=1)


def build_text_segmenter(encoder: nn.Module, targets: Sequence[Dict[str, str]], text_encoder: Any,
                         text_encoder_spec: Optional[Dict[str, Any]] = None, **kwargs: Any) -> TextConditionedSegmenter:
    """A :class:`TextConditionedSegmenter` with its prompt embeddings computed by ``text_encoder``."""
    emb_dim = int(text_encoder.encode(["probe"]).shape[-1])
    spec = text_encoder_spec or getattr(text_encoder, "spec", None) or {"name": "minilm"}
    model = TextConditionedSegmenter(encoder, targets, emb_dim, text_encoder=spec, **kwargs)
    model.set_prompt_embeddings(text_encoder)
    return model


__all__ = ["TextConditionedSegmenter", "PromptedSegmenter", "DynamicHead", "build_text_segmenter", "target_prompt",
           "check_target_weights", "check_head_options", "HEAD_DEFAULTS",
           "PROMPT_TEMPLATE", "TEXT_SEG_HEAD_MODULES"]
