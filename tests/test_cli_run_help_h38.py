"""``medfm <command> --help`` names everything a run of the command writes into ``--output`` (``vqa``:
tests/test_cli_vqa_help_h38.py), and says what a ``medfm vqa`` model's encoders are.

The "Writes into --output" lists missed ``init.json`` (``finetune``, ``segment``: the ``--init`` record a resume is
checked against), a LoRA run's ``base/`` (its starting weights, when no checkpoint fits the encoder), ``segment``'s
``training_curve.png`` and ``checkpoint/`` (it said "the training log ... and state"), and ``fuse``'s ``subsets.png``
and each model's ``training_curve.png``. Each case runs a tiny run (a second or two) and checks the help against
its folder. The vqa help said "the frozen MiniLM question encoder": the recipe's ``text_encoder`` names any frozen
text encoder (MiniLM is the default), and its ``mode`` may train the image encoder it called frozen.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import List

import pytest

from tests.helpers.cli import subcommand_parsers
from tests.helpers.lgg_fusion import write_fake_lgg
from tests.training.runs_helpers import (finetune_recipe, fusion_recipe, hippocampus_writer, lgg_slices_writer,
                                         pretrain_recipe, segment_recipe, text_segment_recipe, write_pneumoniamnist)

TRAIN = {"epochs": 1, "batch_size": 2, "precision": "fp32", "seed": 5, "log_every": 1}
#: one overlay: the run writes overlays/ (a text-conditioned one tasks/<task>/overlays/)
ONE_OVERLAY = {"overlays": 1, "distances": False}


def _help(command: str) -> str:
    """``medfm <command> --help``'s text, its lines joined by single spaces (the description is filled to 78
    columns)."""
    return " ".join(subcommand_parsers()[command].format_help().split())


def _writes(command: str) -> str:
    """The "Writes into --output" paragraph of ``medfm <command> --help``."""
    return _help(command).split("Writes into --output: ", 1)[1].split(" positional arguments:", 1)[0]


def _written(run: Path) -> List[str]:
    """The entries of the run folder ``run`` (a folder's name ends in ``/``) and of each ``models/<name>/`` in it
    (a ``medfm fuse`` run's model folders)."""
    def names(folder: Path) -> List[str]:
        return [p.name + ("/" if p.is_dir() else "") for p in sorted(folder.iterdir())]

    models = sorted((run / "models").iterdir()) if (run / "models").is_dir() else []
    return names(run) + [name for model in models for name in names(model)]


def _pretrain(out, root):
    from medfm.training.runs import run_pretrain

    run_pretrain(pretrain_recipe(root), out)


def _finetune(mode):
    def run(out, root):
        from medfm.training.runs import run_finetune

        run_finetune(finetune_recipe(root, mode=mode), out)
    return run


def _segment(mode):
    def run(out, root):
        from medfm.training.segmentation import run_segmentation

        run_segmentation(segment_recipe(TRAIN, mode=mode, lora={"rank": 2}, eval=ONE_OVERLAY), out,
                         data_root=str(root))
    return run


def _text_segment(out, root):
    from medfm.training.text_segmentation import run_text_segmentation

    run_text_segmentation(text_segment_recipe(root, TRAIN, eval=ONE_OVERLAY), out, data_root=str(root))


def _fuse(out, root):
    from medfm.training.fusion import run_fusion

    run_fusion(fusion_recipe("classification", 4), out, str(root))


# case: (command, data writer, run(output, data root), entries the run must write for the case to cover them)
RUNS = {
    "pretrain": ("pretrain", lambda root: write_pneumoniamnist(root, 16), _pretrain, {"checkpoint/"}),
    "finetune_lora": ("finetune", lambda root: write_pneumoniamnist(root, 16), _finetune("lora"),
                      {"init.json", "adapter/", "base/"}),
    "finetune_linear": ("finetune", lambda root: write_pneumoniamnist(root, 16), _finetune("linear"),
                        {"init.json", "model/"}),
    "segment_lora": ("segment", hippocampus_writer(5), _segment("lora"),
                     {"init.json", "training_curve.png", "checkpoint/", "adapter/", "base/", "overlays/"}),
    "segment_full": ("segment", hippocampus_writer(5), _segment("full"), {"model/", "results.md"}),
    "text_segment": ("segment", lgg_slices_writer((1, 2, 10)), _text_segment, {"init.json", "tasks/"}),
    "fuse": ("fuse", lambda root: write_fake_lgg(root, slices=4), _fuse, {"subsets.png", "training_curve.png"}),
}


@pytest.mark.parametrize("case", list(RUNS))
def test_the_help_names_every_file_and_folder_a_run_writes(tmp_path, case):
    command, write_data, run, covered = RUNS[case]
    root = tmp_path / "d"
    write_data(root)
    run(tmp_path / "run", root)
    written = _written(tmp_path / "run")
    assert covered <= set(written)
    listed = _writes(command)
    # a name as a word of its own: not a part of another name (model/ in models/, a sentence's full stop is not)
    assert [name for name in written if not re.search(rf"(?<![\w/.<>-]){re.escape(name)}(?![\w-]|\.\w)", listed)] == []


def test_the_vqa_help_says_the_question_encoder_is_the_recipes_and_the_image_encoder_follows_its_mode():
    from medfm.training.vqa import VQA_MODES, VQARecipe

    assert VQARecipe().text_encoder == {"name": "minilm"} and VQA_MODES == ("frozen", "lora", "full")
    text = _help("vqa")
    assert "MiniLM question encoder" not in text
    assert "a frozen text encoder for the question (the recipe's text_encoder, MiniLM by default)" in text
    assert "An image encoder (random, or --init from a SimCLR or CLIP checkpoint; frozen, or trained with LoRA or " \
           "in full as the recipe's mode says)" in text
