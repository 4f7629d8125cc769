"""A generated tiny VQA-RAD (``<root>/vqa_rad``: images, training and test questions) and the words of its
questions, for the ``medfm vqa`` adapter and runner tests."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

#: the words a tiny BERT for these tests knows (those of the questions of :func:`write_tiny_vqa_rad` and more)
WORDS = ["is", "there", "a", "mass", "fracture", "what", "plane", "which", "side", "lung", "?", "the", "left"]


def write_tiny_vqa_rad(root: Path) -> None:
    """<root>/vqa_rad: 4 RGB PNGs, 16 train / 2 test QA pairs (closed and open) for the VQA runner."""
    folder = root / "vqa_rad" / "images"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for i in range(4):
        Image.fromarray(rng.integers(0, 256, (32 + 8 * i, 32, 3), dtype=np.uint8)).save(folder / f"i{i}.png")
    qa = [("is there a mass ?", "yes", "CLOSED"), ("what plane ?", "axial", "OPEN"), ("which side ?", "left", "OPEN "),
          ("is there a fracture ?", "no", "CLOSED")]
    def rec(k, img, q, a, t):
        return {"qid": k, "image_name": f"i{img}.png", "image_organ": "HEAD", "answer": a, "answer_type": t,
                "question_type": "PRES", "question": q, "phrase_type": "freeform"}

    train = [rec(k, k % 4, *qa[k % 4]) for k in range(16)]
    test = [rec(100, 0, "is there a mass ?", "Yes", "CLOSED"), rec(101, 1, "what plane ?", "coronal", "OPEN")]
    (root / "vqa_rad" / "trainset.json").write_text(json.dumps(train))
    (root / "vqa_rad" / "testset.json").write_text(json.dumps(test))
