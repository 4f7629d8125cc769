"""Visual-question-answering pipeline: an image (path, PIL image or uint8 array) + a question -> top-k answers.

``medfm.pipeline("visual-question-answering", model=CKPT)(image, "Is there a fracture?", top_k=3)``
returns ``[{"answer": str, "score": probability}, ...]``, highest first. The image gets the
VQA-RAD preprocessing the model was trained with (grayscale luma, zero-pad to square,
antialiased resize to the encoder's ``img_size``, gray repeated for 3-channel encoders); the
question goes through the frozen text encoder named in the checkpoint's config.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np
import torch

from medfm.pipelines.classification import PipelineInputError, check_top_k


def vqa_image_tensor(image: Any, in_chans: int, img_size: int) -> torch.Tensor:
    """One image -> ``(in_chans, img_size, img_size)`` float32 in [0, 1] (VQA-RAD preprocessing).

    Args:
        image: file path, PIL image (any mode, 16-bit included) or uint8 array ``(H, W)``/``(H, W, 3)``.

    Raises:
        PipelineInputError: unsupported type/dtype/shape. MedFMDataError: unreadable file.
    """
    from PIL import Image

    from medfm.data.corpus import pad_square, resize_batch, to_gray
    from medfm.data.vqa_rad import read_image

    if isinstance(image, (str, os.PathLike)):
        arr = read_image(Path(image))
    elif isinstance(image, Image.Image):
        import tempfile

        if image.mode in ("L", "RGB"):
            arr = to_gray(np.asarray(image))
        else:  # reuse the file reader's mode handling (16-bit min-max scaling, palettes)
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "image.png"
                image.save(path)
                arr = read_image(path)
    elif isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or not (image.ndim == 2 or (image.ndim == 3 and image.shape[-1] == 3)):
            raise PipelineInputError(f"arrays must be uint8 (H, W) or (H, W, 3), got {image.dtype} {image.shape}")
        arr = to_gray(image)
    else:
        raise PipelineInputError(f"expected an image path, a PIL image or a uint8 array, got {type(image).__name__}")
    x = torch.from_numpy(resize_batch(pad_square(arr)[None], img_size)).float().div_(255.0)
    return x.expand(in_chans, -1, -1).contiguous()


class VisualQuestionAnsweringPipeline:
    """Answer questions about images with a medfm VQA checkpoint.

    Args:
        model: checkpoint dir / ``hf-hub:`` id, or a loaded :class:`medfm.adapters.vqa.VQAModel`.
        top_k: answers returned per question (default 5); an integer >= 1.

    Raises:
        PipelineInputError: ``model`` is not a VQA model, or ``top_k`` is not an integer >= 1.
    """

    def __init__(self, model: Any, top_k: int = 5) -> None:
        from medfm.hub import from_pretrained

        top_k = check_top_k(top_k)
        self.model = from_pretrained(model) if isinstance(model, (str, bytes)) or hasattr(model, "__fspath__") else model
        if not hasattr(self.model, "answer"):
            raise PipelineInputError(f"{type(self.model).__name__} is not a VQA model (medfm adapter 'vqa')")
        self.model.eval()
        self.top_k = top_k

    def __call__(self, image: Union[Any, Sequence[Any]], question: Union[str, Sequence[str]],
                 top_k: Optional[int] = None) -> Union[List[Dict[str, Any]], List[List[Dict[str, Any]]]]:
        """Top-k ``{"answer", "score"}`` for one (image, question) pair, or a list for lists of pairs.

        ``top_k=None`` uses the pipeline's ``top_k``.

        Raises:
            PipelineInputError: mismatched numbers of images and questions, an empty question,
            or ``top_k`` that is not an integer >= 1.
        """
        top_k = self.top_k if top_k is None else check_top_k(top_k)
        single = isinstance(question, str)
        images = [image] if single else list(image)
        questions = [question] if single else list(question)
        if len(images) != len(questions):
            raise PipelineInputError(f"{len(images)} images for {len(questions)} questions")
        if any(not isinstance(q, str) or not q.strip() for q in questions):
            raise PipelineInputError("questions must be non-empty strings")
        enc = self.model.encoder
        x = torch.stack([vqa_image_tensor(im, enc.in_chans, enc.img_size) for im in images])
        ranked = self.model.answer(x, questions, top_k=top_k)
        out = [[{"answer": a, "score": s} for a, s in r] for r in ranked]
        return out[0] if single else out
