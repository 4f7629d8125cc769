"""Visual-question-answering pipeline: an image (path, PIL image or array) + a question -> top-k answers.

Images are taken in the same forms as the 2D image-classification pipeline
(:func:`medfm.pipelines.inputs.uint8_image_array` for arrays: uint8, or float in [0, 1]
rounded to uint8).

``medfm.pipeline("visual-question-answering", model=CKPT)(image, "Is there a fracture?", top_k=3)``
returns ``[{"answer": str, "score": probability}, ...]``, highest first. The image gets the
VQA-RAD preprocessing the model was trained with (grayscale luma, zero-pad to square,
antialiased resize to the encoder's ``img_size``, gray repeated for 3-channel encoders); the
question goes through the frozen text encoder named in the checkpoint's config.
"""
from __future__ import annotations

import os
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np
import torch

from medfm.pipelines.inputs import (IMAGES_2D, PipelineInputError, check_not_nifti, check_top_k,
                                    each_input, existing_image_file, tensor_hint, uint8_image_array)


def vqa_image_tensor(image: Any, in_chans: int, img_size: int) -> torch.Tensor:
    """One image -> ``(in_chans, img_size, img_size)`` float32 in [0, 1] (VQA-RAD preprocessing).

    The conversion of :class:`medfm.data.vqa_rad.VQARadDataset`: any PIL mode to 8-bit
    (16-bit / 32-bit / float pixels min-max scaled, :func:`medfm.data.images.pil_to_uint8`; files
    and PIL images turned upright by their EXIF Orientation), RGB to ITU-R 601 luma, zero-pad to
    square, antialiased bilinear resize (rounded to 8 bits, as the data set stores it), gray
    repeated to ``in_chans``. A file and the same image as a PIL image give the same tensor, as do
    a uint8 array ``u`` and the float array ``u / 255.0``.

    Args:
        image: file path (``str`` / ``os.PathLike``), PIL image (any mode: ``L``, ``RGB``, ``P``,
            ``I;16``, ``I``, ``F``, ``CMYK``, ...) or array ``(H, W)`` / ``(H, W, 1)`` / ``(H, W, 3)``
            (channels last), uint8 or float in [0, 1], rounded to uint8
            (:func:`medfm.pipelines.inputs.uint8_image_array`, as the classification pipeline).

    Returns:
        ``(in_chans, img_size, img_size)`` float32 in [0, 1].

    Raises:
        PipelineInputError: unsupported type (a torch tensor: with how to pass it as an array),
            dtype or shape; NaN/inf or out-of-range float arrays; an empty image; a missing file
            (or a folder) or an unreadable one (a DICOM or numpy file is named as such,
            :func:`medfm.data.images.non_image_hint`); a NIfTI file (a 2D slice: with how to pass it
            as an array, :func:`medfm.pipelines.inputs.check_not_nifti`); a PIL image whose
            file was closed; NaN/inf pixels in a float PIL image (one line each).
    """
    from PIL import Image

    from medfm.data.corpus import pad_square, resize_batch, to_gray
    from medfm.data.errors import MedFMDataError
    from medfm.data.images import pil_to_uint8, read_image

    try:
        if isinstance(image, (str, os.PathLike)):
            path = existing_image_file(image)
            check_not_nifti(path, f"this VQA model takes {IMAGES_2D}", "a VQA model answers about one 2D image: pass "
                            "a slice of the volume as an array")
            arr = to_gray(read_image(path, what="image"))
        elif isinstance(image, Image.Image):  # the file reader's conversion, without a round trip through a file
            arr = to_gray(pil_to_uint8(image, None, "<PIL image>", "image"))
        elif isinstance(image, np.ndarray):
            arr = to_gray(uint8_image_array(image))
        else:
            raise PipelineInputError(f"expected an image path, a PIL image or a numpy array (uint8, or float in "
                                     f"[0, 1]), got {type(image).__name__}{tensor_hint(image)}")
    except MedFMDataError as err:
        raise PipelineInputError(str(err)) from None
    if min(arr.shape) == 0:
        raise PipelineInputError(f"empty image of shape {arr.shape}")
    x = torch.from_numpy(resize_batch(pad_square(arr)[None], img_size)).float().div_(255.0)
    return x.expand(in_chans, -1, -1).contiguous()


def _single_image(image: Any, n_questions: int) -> bool:
    """Whether ``image`` is one image (path, PIL image, ``(H, W)`` / ``(H, W, 3)`` array) rather than
    images to go with ``n_questions`` questions (a list, or an ``(N, H, W)`` array stack with N = n_questions)."""
    from PIL import Image

    if isinstance(image, np.ndarray):
        return image.ndim <= 2 or (image.ndim == 3 and image.shape[0] != n_questions)
    return isinstance(image, (str, bytes, os.PathLike, Image.Image))


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
            PipelineInputError: a question that is not a non-empty string; a list of questions for a
            single image or one question for a list of images; mismatched numbers of images and
            questions or empty lists; a bad image (see :func:`vqa_image_tensor`; in a list, named by
            its index, "image at index 3 of 5: ...",
            :func:`medfm.pipelines.inputs.each_input`); ``top_k`` that is not an integer >= 1.
        """
        top_k = self.top_k if top_k is None else check_top_k(top_k)
        single = isinstance(question, str)
        if not single and (isinstance(question, (bytes, bytearray, dict)) or not hasattr(question, "__iter__")):
            raise PipelineInputError(f"question must be a string, or a list of strings for a list of images, got "
                                     f"{type(question).__name__}")
        questions = [question] if single else list(question)
        if single and isinstance(image, (list, tuple)):
            raise PipelineInputError(f"one question for a list of {len(image)} images; pass a list of questions, "
                                     "one per image")
        if not single and _single_image(image, len(questions)):
            raise PipelineInputError(f"a list of {len(questions)} questions for a single image; pass a list of "
                                     "images, one per question (the same image repeated is fine)")
        if not single and not hasattr(image, "__iter__"):
            raise PipelineInputError(f"expected a list of images, one per question, got {type(image).__name__}")
        images = [image] if single else list(image)
        if not questions:
            raise PipelineInputError("no questions given (empty lists); pass at least one image and question")
        if len(images) != len(questions):
            raise PipelineInputError(f"{len(images)} images for {len(questions)} questions")
        bad = next((i for i, q in enumerate(questions) if not isinstance(q, str) or not q.strip()), None)
        if bad is not None:
            shown = repr(questions[bad]) if isinstance(questions[bad], str) else type(questions[bad]).__name__
            raise PipelineInputError(f"question must be a non-empty string, got {shown}" if single else
                                     f"questions must be non-empty strings; question {bad} is {shown}")
        enc = self.model.encoder
        x = torch.stack(each_input(images, lambda im: vqa_image_tensor(im, enc.in_chans, enc.img_size),
                                   batch=not single))
        ranked = self.model.answer(x, questions, top_k=top_k)
        out = [[{"answer": a, "score": s} for a, s in r] for r in ranked]
        return out[0] if single else out
