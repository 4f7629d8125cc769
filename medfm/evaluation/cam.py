"""Class activation maps (Grad-CAM, Eigen-CAM) for any medfm encoder family, and a PNG grid.

Methods come from ``pytorch-grad-cam`` (Gildenblat et al.): Grad-CAM (Selvaraju et al.
2017, ICCV) weights the target layer's activation channels by their spatially averaged
gradients of the class score; Eigen-CAM (Muhammad & Yeasin 2020, IJCNN) projects the
activations on their first principal component and needs no gradients or head.

Target layer, per encoder (:func:`cam_target`):

1. an encoder method ``cam_target_layers() -> list[nn.Module]`` wins when present;
2. ViT family (timm ``blocks``): ``blocks[-1].norm1``, the input of the last attention
   block, as pytorch-grad-cam's ViT tutorial does (the final norm's patch tokens receive no
   gradient when the class token is pooled), with a reshape transform that drops the prefix
   (class/register) tokens and folds the ``N`` patch tokens into a ``sqrt(N) x sqrt(N)`` map;
3. every other family (CNN, KAN, Mamba, MedViT-KAN): the encoder's own feature output
   (what ``forward_features`` returns), tapped by :class:`CamModel`, so no per-family layer
   names are needed; token outputs ``(B, N, D)`` get the same reshape transform.

The CAM model runs the classifier's own forward, so CAMs explain exactly its logits.
"""
from __future__ import annotations

import functools
import math
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from medfm.arg_checks import check_list, check_number, shown
from medfm.io import PathLike

CAM_METHODS = ("gradcam", "eigencam")


def tokens_to_grid(tokens: torch.Tensor, prefix: Optional[int] = None) -> torch.Tensor:
    """Reshape transform: tokens ``(B, N, D)`` -> map ``(B, D, s, s)``, dropping prefix tokens.

    Args:
        tokens: ``(B, N, D)``; maps (4-D/5-D tensors) are returned unchanged.
        prefix: number of leading class/register tokens (timm's ``num_prefix_tokens``);
            None: the smallest ``p`` in 0..8 with ``N - p`` a perfect square.

    Raises:
        ValueError: the remaining tokens do not form a square grid; ``prefix`` not an integer >= 0
            (``2.5`` stopped with a bare ``TypeError``, ``-1`` in ``reshape``; ``True`` was taken as 1).
    """
    if prefix is not None:
        prefix = check_number("prefix", prefix, ge=0, integer=True)
    if tokens.ndim != 3:  # already a map (B, D, h, w) or (B, D, d, h, w)
        return tokens
    b, n, d = tokens.shape
    for p in ([prefix] if prefix is not None else range(0, 9)):
        side = math.isqrt(n - p) if n - p > 0 else 0
        if side > 0 and side * side == n - p:
            return tokens[:, p:].reshape(b, side, side, d).permute(0, 3, 1, 2)
    raise ValueError(f"cannot fold {n} tokens into a square grid (prefix tokens: "
                     f"{prefix if prefix is not None else '0-8'})")


class CamModel(nn.Module):
    """The classifier's own forward, with the encoder's feature output passing through a hookable tap.

    ``forward(x)`` is ``model(x)`` (logits ``(B, K)``; for a bare encoder the pooled
    embedding, where only Eigen-CAM is meaningful). During the call the encoder's
    ``_features`` is wrapped (on the instance, restored afterwards) so that its output
    ``(B, D, h, w)`` or ``(B, N, D)`` goes through ``self.tap`` (an ``nn.Identity``), the
    default CAM target; the head is never named, so any adapter layout works.

    Args:
        model: a medfm classifier, a peft model around one, or a bare encoder.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        from medfm.evaluation.predict import classifier_core

        core = classifier_core(model)
        self.model = model
        self.has_head = hasattr(core, "encoder")
        self.encoder = core.encoder if self.has_head else core
        self.tap = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``model(x)`` with the encoder's feature output routed through ``self.tap``.

        Args:
            x: ``(B, C, H, W)`` (or ``(B, C, D, H, W)``) float in [0, 1]; with grad enabled it is
                detached and made to require grad, so frozen (LoRA base) weights still give CAM gradients.

        Returns:
            The wrapped model's output: logits ``(B, K)``, or the pooled ``(B, D)`` embedding of a bare encoder.
        """
        if torch.is_grad_enabled() and not x.requires_grad:  # frozen weights (LoRA base) still give gradients
            x = x.detach().requires_grad_(True)
        enc = self.encoder
        own = vars(enc).get("_features")  # an instance-level wrapper already there (e.g. a nested CamModel)
        inner = enc._features
        enc._features = lambda t: self.tap(inner(t))
        try:
            return self.model(x)
        finally:
            if own is not None:
                enc._features = own
            else:
                del enc._features


def cam_target(model: CamModel) -> Tuple[List[nn.Module], Optional[Callable[[torch.Tensor], torch.Tensor]]]:
    """Target layers and reshape transform for ``model``'s encoder (rules in the module doc)."""
    enc = model.encoder
    if hasattr(enc, "cam_target_layers"):
        return list(enc.cam_target_layers()), tokens_to_grid
    inner = getattr(enc, "model", None)
    if getattr(enc, "family", "") == "vit" and inner is not None and hasattr(inner, "blocks"):
        return [inner.blocks[-1].norm1], functools.partial(tokens_to_grid,
                                                           prefix=getattr(inner, "num_prefix_tokens", 1))
    return [model.tap], tokens_to_grid


def check_methods(methods: Sequence[str]) -> List[str]:
    """``methods`` as a list of names from :data:`CAM_METHODS`.

    Raises:
        ValueError: not a list (:func:`medfm.arg_checks.check_list`: a string, ``"gradcam"``, was read as 7 unknown
            methods: ``methods must be a list of CAM method names, got 'gradcam' (str); write ['gradcam']``;
            a set, a mapping), an empty list, or an unknown name (with close matches).
    """
    from medfm.registry import close_match_hint

    methods = check_list("methods", methods, what="a list of CAM method names",
                         got=lambda v: f"{shown(v)}; write [{v!r}]" if isinstance(v, str) else shown(v))
    if not methods:
        raise ValueError(f"methods is empty; valid: {', '.join(CAM_METHODS)}")
    for m in methods:
        if m not in CAM_METHODS:
            hint = close_match_hint(str(m), CAM_METHODS, cutoff=0.5, fallback=None)
            raise ValueError(f"unknown CAM method {m!r}{hint} "
                             f"(valid: {', '.join(CAM_METHODS)})")
    return methods


def classifier_core_of(model: CamModel) -> nn.Module:
    """The medfm classifier (or bare encoder) a :class:`CamModel` explains."""
    from medfm.evaluation.predict import classifier_core

    return classifier_core(model.model)


def compute_cams(classifier: nn.Module, images: torch.Tensor, targets: Optional[Sequence[int]] = None,
                 methods: Sequence[str] = CAM_METHODS) -> Dict[str, np.ndarray]:
    """CAMs of ``images`` for each method.

    Args:
        classifier: medfm classifier (or peft model, or bare encoder: Eigen-CAM only).
        images: ``(B, C, H, W)`` float in [0, 1] (or ``(B, C, D, H, W)`` for 3D encoders).
        targets: class index per image for Grad-CAM (default: the predicted class).
        methods: names from :data:`CAM_METHODS`.

    Returns:
        ``{method: (B, H, W) float32 in [0, 1]}`` (``(B, D, H, W)`` for volumes).

    Raises:
        ValueError: unknown method (with close matches; a string such as ``"gradcam"`` is refused, it
            was read letter by letter), no method, Grad-CAM asked of a model without a head, or
            ``targets`` not one integer class index in ``[0, K)`` per image (a short list left the
            other images without a CAM, an index >= K failed inside pytorch-grad-cam, -1 meant the
            last class).
        TypeError: ``images`` not a torch tensor.
    """
    from pytorch_grad_cam import EigenCAM, GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    from medfm.arg_checks import number_fits

    methods = check_methods(methods)
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"images must be a torch tensor (B, C, H, W), got {type(images).__name__}")
    model = CamModel(classifier).eval()
    if "gradcam" in methods and not model.has_head:
        raise ValueError("Grad-CAM needs a classifier head; use methods=('eigencam',) for a bare encoder")
    layers, reshape = cam_target(model)
    if isinstance(targets, (torch.Tensor, np.ndarray)):
        targets = targets.tolist()
    if targets is not None:
        k = getattr(classifier_core_of(model), "num_classes", None)
        if (isinstance(targets, str) or len(targets) != images.shape[0]
                or not all(number_fits(t, ge=0, lt=k if k else None, integer=True) for t in targets)):
            raise ValueError(f"targets must hold one class index in [0, {k if k else 'K'}) per image "
                             f"({images.shape[0]} images), got {targets!r}")
    tgt = [ClassifierOutputTarget(int(t)) for t in targets] if targets is not None else None
    out = {}
    for name in methods:
        cls = GradCAM if name == "gradcam" else EigenCAM
        with torch.enable_grad():
            cam = cls(model=model, target_layers=layers, reshape_transform=reshape)
            try:
                out[name] = np.asarray(cam(input_tensor=images.float(), targets=tgt), dtype=np.float32)
            finally:
                cam.activations_and_grads.release()
    return out


def sample_per_class(labels: np.ndarray, per_class: int, seed: int = 0) -> np.ndarray:
    """A fixed seeded sample of up to ``per_class`` indices of each class (sorted by class).

    Raises:
        ValueError: ``per_class`` not an integer >= 1 (``2.5`` stopped in a slice, ``0`` drew nothing).
    """
    per_class = check_number("per_class", per_class, ge=1, integer=True)
    y = np.asarray(labels).reshape(len(labels), -1)[:, 0]
    rng = np.random.default_rng(seed)
    picks = [np.sort(rng.permutation(np.flatnonzero(y == c))[:per_class]) for c in np.unique(y)]
    return np.concatenate(picks).astype(np.int64) if picks else np.zeros(0, dtype=np.int64)


#: CAM grid column width (inches) and caption font size (points)
_CAM_COL_IN, _CAM_TITLE_PT = 1.3, 6


def cam_caption(true: str, pred: str, width: Optional[int] = None) -> str:
    """A CAM grid column's caption: ``true <name>`` and ``pred <name>``, each wrapped at word
    boundaries to ``width`` characters (default: what fits a column at the caption's font size).

    Names are never cut (they used to be cut at 10 characters: BloodMNIST's "immature
    granulocytes(...)" read "immature g", "erythroblast" "erythrobla"); the grid grows taller instead.
    """
    import textwrap

    width = width or int(_CAM_COL_IN * 72 / (0.62 * _CAM_TITLE_PT))  # DejaVu Sans: ~0.6 em per character
    return "\n".join(line for text in (f"true {true}", f"pred {pred}") for line in textwrap.wrap(text, width))


def cam_grid(classifier: nn.Module, dataset: Any, path: PathLike, per_class: int = 2, seed: int = 0,
             methods: Sequence[str] = CAM_METHODS, label_names: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """Write a PNG grid: one column per sampled test image, rows = image and each CAM overlay.

    Args:
        classifier: as in :func:`compute_cams`.
        dataset: dataset with ``labels`` and ``get_batch`` (2D, or 3D: middle slices shown; a 2D
            model on volumes (2.5D) is explained on the middle slice alone).
        path: output ``.png`` (atomic write).
        per_class: images per class (fixed seeded sample).
        methods: CAM methods (rows).
        label_names: class names for captions.

    Returns:
        ``{"path", "indices", "methods", "predicted"}``.

    Raises:
        ValueError: an empty dataset, ``per_class`` not an integer >= 1, the ``methods`` errors of
            :func:`compute_cams` (checked before any model runs).
    """
    from pytorch_grad_cam.utils.image import show_cam_on_image

    from medfm.evaluation.plots import new_figure, save_figure
    from medfm.training.loop import get_batch

    methods = check_methods(methods)
    if len(dataset) == 0:
        raise ValueError("the dataset holds no images: nothing to explain")
    idx = sample_per_class(dataset.labels, per_class, seed)
    batch = get_batch(dataset, torch.as_tensor(idx))
    images = batch["image"]
    cam_model = CamModel(classifier).eval()
    if images.ndim == 5 and getattr(cam_model.encoder, "spatial_dims", 2) == 2:
        images = images[:, :, images.shape[2] // 2]  # 2.5D model: explain it on the middle slice alone
    with torch.no_grad():
        logits = cam_model(images)
    pred = logits.argmax(dim=1).tolist() if cam_model.has_head else [None] * len(idx)
    cams = compute_cams(classifier, images, targets=[p for p in pred] if pred[0] is not None else None, methods=methods)
    if images.ndim == 5:  # volumes: show the middle slice along depth (CAMs are (B, D, H, W))
        mid = images.shape[2] // 2
        images = images[:, :, mid]
        cams = {k: v[:, mid] for k, v in cams.items()}
    names = list(label_names or getattr(dataset, "label_names", []) or [])
    rows, cols = 1 + len(methods), len(idx)
    y = np.asarray(dataset.labels).reshape(len(dataset.labels), -1)[idx, 0]

    def caption(c: Optional[int]) -> str:
        return "?" if c is None else (names[c] if c < len(names) else str(c))

    titles = [cam_caption(caption(int(y[j])), caption(pred[j])) for j in range(cols)]
    title_lines = max(t.count("\n") + 1 for t in titles)
    fig = new_figure((_CAM_COL_IN * cols + 0.6, 1.45 * rows + title_lines * _CAM_TITLE_PT * 1.3 / 72))
    rgb = images.permute(0, 2, 3, 1).numpy()
    if rgb.shape[-1] == 1:
        rgb = np.repeat(rgb, 3, axis=-1)

    for j in range(cols):
        for r in range(rows):
            ax = fig.add_subplot(rows, cols, r * cols + j + 1)
            shown = (rgb[j] if r == 0
                     else show_cam_on_image(np.clip(rgb[j], 0, 1), cams[methods[r - 1]][j], use_rgb=True))
            ax.imshow(shown, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(titles[j], fontsize=_CAM_TITLE_PT)
            if j == 0:
                ax.set_ylabel("image" if r == 0 else methods[r - 1], fontsize=7)
    save_figure(fig, path)
    return {"path": str(path), "indices": idx.tolist(), "methods": list(methods), "predicted": pred}


__all__ = ["CAM_METHODS", "tokens_to_grid", "CamModel", "cam_target", "compute_cams", "sample_per_class", "cam_caption",
           "cam_grid", "check_methods", "classifier_core_of"]
