"""VQA pipeline user journey: bad inputs are one-line PipelineInputErrors, every PIL mode is read
like the file, and the model card's usage snippet runs as written against a saved checkpoint.

Found on the real VQA-RAD data (``medfm vqa finetune/vqa_resnet18_random.yaml --epochs 1``):
before, ``vqa(path, 5)`` / ``vqa(path, None)`` raised ``TypeError: ... not iterable``, a list of
questions with one image path said "48 images for 2 questions" (the path's characters were
taken as images), empty lists ended in ``RuntimeError: stack expects a non-empty TensorList``,
a missing image told the user to "put the data set there ... or pass --data-root", PIL images
in modes ``F``/``I``/``CMYK`` raised ``OSError: cannot write mode F as PNG``, a ``(0, 0)`` array
reached ``F.interpolate``, and the card's snippet called ``vqa(image, ...)`` with ``image``
undefined.
"""
from __future__ import annotations

import re

import numpy as np
import pytest
from PIL import Image

import medfm
from medfm.pipelines.inputs import PipelineInputError

Q = "is there a mass ?"


@pytest.fixture(scope="module")
def pipe(vqa_model):
    return medfm.pipeline("visual-question-answering", model=vqa_model, top_k=2)


@pytest.fixture(scope="module")
def png(tmp_path_factory):
    path = tmp_path_factory.mktemp("img") / "x.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (30, 40), dtype=np.uint8)).save(path)
    return str(path)


@pytest.mark.parametrize("image, question, message", [
    ("PNG", 5, "question must be a string, or a list of strings for a list of images, got int"),
    ("PNG", None, "question must be a string, or a list of strings for a list of images, got NoneType"),
    ("PNG", b"is there", "question must be a string, or a list of strings for a list of images, got bytes"),
    ("PNG", np.array("is there"), "question must be a string, or a list of strings for a list of images, got ndarray"),
    ("PNG", "  ", "question must be a non-empty string, got '  '"),
    ("PNG", [Q, Q], "a list of 2 questions for a single image; pass a list of images, one per question"),
    ("ARRAY", [Q, Q], "a list of 2 questions for a single image; pass a list of images, one per question"),
    (["PNG", "PNG"], Q, "one question for a list of 2 images; pass a list of questions, one per image"),
    ([], [], "no questions given (empty lists)"),
    (["PNG", "PNG"], [Q, 3], "questions must be non-empty strings; question 1 is int"),
    ("/no/such/image.png", Q, "image file not found: /no/such/image.png"),
    (np.zeros((0, 0), np.uint8), Q, "empty image of shape (0, 0)"),
])
def test_bad_inputs_are_one_line_pipeline_errors(pipe, png, image, question, message):
    fill = {"PNG": png, "ARRAY": np.zeros((20, 20), np.uint8)}
    image = [fill.get(i, i) if isinstance(i, str) else i for i in image] if isinstance(image, list) else \
        (fill.get(image, image) if isinstance(image, str) else image)
    with pytest.raises(PipelineInputError) as err:
        pipe(image, question)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_a_folder_or_a_non_image_file_names_the_path(pipe, png, tmp_path):
    with pytest.raises(PipelineInputError, match=re.escape(f"image file not found: {tmp_path} (a folder)")):
        pipe(tmp_path, Q)
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(PipelineInputError, match=re.escape(f"cannot read image {tmp_path / 'notes.txt'}")):
        pipe(str(tmp_path / "notes.txt"), Q)


def test_a_stack_of_images_still_pairs_with_a_list_of_questions(pipe):
    stack = np.random.default_rng(1).integers(0, 256, (2, 20, 20), dtype=np.uint8)
    assert pipe(stack, [Q, Q]) == pipe(list(stack), [Q, Q])


@pytest.mark.parametrize("mode", ["F", "I", "I;16", "CMYK", "P", "RGBA"])
def test_every_pil_mode_answers_like_its_file(pipe, tmp_path, mode):
    gray = np.random.default_rng(2).integers(0, 256, (24, 32), dtype=np.uint8)
    gray[0, :2] = (0, 255)  # full range: min-max scaling of deep modes is the identity
    if mode == "F":
        img = Image.fromarray(gray.astype(np.float32) / 255.0, mode="F")
    elif mode == "I;16":
        img = Image.fromarray(gray.astype(np.uint16) * 257)
    elif mode == "I":
        img = Image.fromarray(gray).convert("I")
    else:
        img = Image.fromarray(gray).convert("RGB").convert(mode)
    expected = pipe(Image.fromarray(gray) if mode in ("F", "I", "I;16") else img.convert("RGB"), Q)
    got = pipe(img, Q)  # was: OSError "cannot write mode F as PNG" for F, I and CMYK
    assert [a["answer"] for a in got] == [a["answer"] for a in expected]
    np.testing.assert_allclose([a["score"] for a in got], [a["score"] for a in expected], atol=1e-6)


def test_card_usage_snippet_runs_as_written(vqa_model, tmp_path, monkeypatch):
    from medfm.cards import write_card
    from medfm.hub import save_pretrained

    ckpt = tmp_path / "ckpt"
    save_pretrained(vqa_model, ckpt)
    text = write_card(ckpt).read_text()
    code = re.search(r"## How to use\n\n```python\n(.*?)```", text, re.S).group(1)
    Image.fromarray(np.random.default_rng(3).integers(0, 256, (30, 30, 3), dtype=np.uint8)).save(tmp_path / "image.png")
    monkeypatch.chdir(tmp_path)
    code = code.replace("vqa(", "out = vqa(", 1) if "\nvqa(" in code else code
    namespace: dict = {}
    exec(code, namespace)  # was: NameError: name 'image' is not defined
    out = namespace["out"]
    assert len(out) == min(5, len(vqa_model.answers)) and {a["answer"] for a in out} <= set(vqa_model.answers)
