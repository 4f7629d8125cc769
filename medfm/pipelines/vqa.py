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

from medfm.arg_checks import check_list
from medfm.pipelines.inputs import (IMAGES_2D, PipelineInputError, check_not_nifti, check_top_k,
                                    each_input, existing_image_file, pil_to_array, read_image_file, tensor_hint,
                                    uint8_image_array)


def vqa_image_tensor(image: Any, in_chans: int, img_size: int) -> torch.Tensor:
    """One image -> ``(in_chans, img_size, img_size)`` float32 in [0, 1] (VQA-RAD preprocessing).

    The conversion of :class:`medfm.data.vqa_rad.VQARadDataset`: any PIL mode to 8-bit
    (16-bit / 32-bit / float pixels min-max scaled, :func:`medfm.data.images.pil_to_uint8`; files
    and PIL images turned upright by their EXIF Orientation; multi-page and 16-bit colour TIFFs
    refused, :func:`medfm.pipelines.inputs.check_tiff`), RGB to ITU-R 601 luma, zero-pad to
    square, antialiased bilinear resize (rounded to 8 bits, as the data set stores it), gray
    repeated to ``in_chans``. A file and the same image as a PIL image give the same tensor, as do
    a uint8 array ``u`` and the float array ``u / 255.0``.

    The luma is PIL's ``convert("L")`` (8-bit fixed point, ``(19595 R + 38470 G + 7471 B + 2^15) >> 16``),
    as the classification and segmentation pipelines make RGB gray for 1-channel models; the data set's
    float luma (:func:`medfm.data.corpus.to_gray`, ``rint(0.299 R + 0.587 G + 0.114 B)``) gives the same
    on all 315 VQA-RAD images (302 gray stored as RGB, 13 in colour), but 1 level apart on about one
    pixel in 4096 of random colour images (it used to be the pipeline's conversion too).

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

    from medfm.data.corpus import pad_square, resize_batch

    if isinstance(image, (str, os.PathLike)):
        path = existing_image_file(image)
        check_not_nifti(path, f"this VQA model takes {IMAGES_2D}", "a VQA model answers about one 2D image: pass "
                        "a slice of the volume as an array")
        image = read_image_file(path, None)  # L stays, other modes RGB, as the data set reads its files
    elif isinstance(image, Image.Image):  # the file reader's conversion, without a round trip through a file
        image = pil_to_array(image, None)
    elif not isinstance(image, np.ndarray):
        raise PipelineInputError(f"expected an image path, a PIL image or a numpy array (uint8, or float in "
                                 f"[0, 1]), got {type(image).__name__}{tensor_hint(image)}")
    arr = uint8_image_array(image, gray=True)  # RGB -> PIL's "L"
    if min(arr.shape) == 0:
        raise PipelineInputError(f"empty image of shape {arr.shape}")
    x = torch.from_numpy(resize_batch(pad_square(arr)[None], img_size)).float().div_(255.0)
    return x.expand(in_chans, -1, -1).contiguous()


def _single_image(image: Any, n_questions: int) -> bool:
    """Whether ``image`` is one image (path, PIL image, ``(H, W)`` / ``(H, W, 1|3)`` array) rather than
    images to go with ``n_questions`` questions (a list, or an ``(N, H, W)`` array stack with N = n_questions).

    A 3D array with 1 or 3 on its last axis is one channels-last image (the 2D form of every pipeline,
    :func:`medfm.pipelines.inputs.uint8_image_array`), also when its height equals ``n_questions``: it was
    split into its rows, ``H`` images of shape ``(W, 3)`` answered without a word."""
    from PIL import Image

    if isinstance(image, np.ndarray):
        return image.ndim <= 2 or (image.ndim == 3 and (image.shape[-1] in (1, 3) or image.shape[0] != n_questions))
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
        self.model = from_pretrained(model) if isinstance(model,
                                                          (str, bytes)) or hasattr(model, "__fspath__") else model
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
            single image (an ``(H, W, 1|3)`` array is one image, whatever ``H``) or one question for a list
            of images; questions or images given as a set (unordered); mismatched numbers of images and
            questions or empty lists; a bad image (see :func:`vqa_image_tensor`; in a list, named by
            its index, "image at index 3 of 5: ...",
            :func:`medfm.pipelines.inputs.each_input`); ``top_k`` that is not an integer >= 1.
        """
        top_k = self.top_k if top_k is None else check_top_k(top_k)
        single = isinstance(question, str)
        unordered = next((w for w, v in (("questions", question), ("images", image))
                          if isinstance(v, (set, frozenset))), None)
        if unordered:  # list() of a set pairs its items with the other list's in an arbitrary order
            raise PipelineInputError(f"{unordered} given as a set, which has no order; questions and images are paired "
                                     "by position: pass lists")
        questions = [question] if single else check_list(
            "question", question, what="a string, or a list of strings for a list of images",
            got=lambda v: type(v).__name__, error=PipelineInputError)
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
