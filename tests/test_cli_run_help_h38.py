"""``medfm <command> --help`` names everything a run of the command writes into ``--output``, and nothing a run
never writes; it says what a ``medfm vqa`` model's encoders are.

The "Writes into --output" lists missed ``init.json`` (``finetune``, ``segment``, ``vqa``: the ``--init`` record a
resume is checked against), a LoRA run's ``base/`` (its starting weights, when no checkpoint fits the encoder),
``segment``'s ``training_curve.png`` and ``checkpoint/`` (it said "the training log ... and state"), ``fuse``'s
``subsets.png`` and each model's ``training_curve.png``, and ``vqa``'s ``train_state/`` (the folder its ``--resume``
reads). Each case runs a tiny run (a second or two, once per module) and checks the help against its folder: what a
``medfm fuse`` model folder holds against the help's ``models/<name>/ (...)``, the rest against the list outside it.
The vqa help said "the frozen MiniLM question encoder": the recipe's ``text_encoder`` names any frozen text encoder
(MiniLM is the default), and its ``mode`` may train the image encoder it called frozen.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Dict, List, Set, Tuple

import pytest

from tests.helpers.cli import help_text
from tests.helpers.lgg_fusion import write_fake_lgg
from tests.training.runs_helpers import (finetune_recipe, fusion_recipe, hippocampus_writer, lgg_slices_writer,
                                         pretrain_recipe, segment_recipe, text_segment_recipe, vqa_recipe,
                                         write_pneumoniamnist, write_vqa_data)

TRAIN = {"epochs": 1, "batch_size": 2, "precision": "fp32", "seed": 5, "log_every": 1}
#: one overlay: the run writes overlays/ (a text-conditioned one tasks/<task>/overlays/)
ONE_OVERLAY = {"overlays": 1, "distances": False}
#: a ``medfm fuse`` model's run folder as its help names it (its entries follow it in parentheses)
MODEL_FOLDER = "models/<name>/"
#: what a name in a "Writes into --output" list ends with: a folder's ``/`` or a file's extension (not ``images/s``
#: nor a recipe key as ``eval.overlays``)
NAME_END = re.compile(r"(/|\.(yaml|json|jsonl|png|md))$")


def _writes(command: str) -> Tuple[str, str]:
    """The "Writes into --output" paragraph of ``medfm <command> --help`` as ``(run folder, model folder)``: the list
    without the parentheses that follow :data:`MODEL_FOLDER`, and those parentheses ("" when it has none)."""
    listed = help_text(command).split("Writes into --output: ", 1)[1].split(" positional arguments:", 1)[0]
    if MODEL_FOLDER not in listed:
        return listed, ""
    before, after = listed.split(MODEL_FOLDER, 1)
    start = after.index("(")
    end = after.index(")", start) + 1  # (the model folder's entries hold no parentheses of their own)
    return before + MODEL_FOLDER + after[:start] + after[end:], after[start:end]


def _written(run: Path) -> List[str]:
    """The entries of the run folder ``run`` (a folder's name ends in ``/``) and of each ``models/<name>/`` in it
    (a ``medfm fuse`` run's model folders), these as ``models/<name>/<entry>``."""
    def names(folder: Path) -> List[str]:
        return [p.name + ("/" if p.is_dir() else "") for p in sorted(folder.iterdir())]

    models = sorted((run / "models").iterdir()) if (run / "models").is_dir() else []
    return names(run) + [MODEL_FOLDER + name for model in models for name in names(model)]


def _unlisted(written: List[str], command: str) -> List[str]:
    """The names of ``written`` (:func:`_written`) that the help of ``command`` does not give, each as a word of its
    own (not a part of another name: ``model/`` in ``models/``, ``overlays/`` in ``tasks/<task>/overlays/``; a
    sentence's full stop is not), a model folder's entry in the parentheses of :data:`MODEL_FOLDER`."""
    run_list, model_list = _writes(command)

    def gives(text: str, name: str) -> bool:
        return re.search(rf"(?<![\w/.<>-]){re.escape(name)}(?![\w-]|\.\w)", text) is not None

    return [name for name in written if not (gives(model_list, name[len(MODEL_FOLDER):])
                                             if name.startswith(MODEL_FOLDER) else gives(run_list, name))]


def _named(command: str) -> Set[str]:
    """The names the "Writes into --output" list of ``command`` gives, as :func:`_written` writes them: a path's
    first folder (``overlays/`` of ``overlays/*.png``), a model folder's entry as ``models/<name>/<entry>``."""
    run_list, model_list = _writes(command)
    named = set()
    for prefix, text in (("", run_list), (MODEL_FOLDER, model_list)):
        words = [word.strip("(),;:.") for word in text.split()]
        named |= {prefix + re.sub(r"/.*", "/", word) for word in words if NAME_END.search(word)}
    return named


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


def _vqa(out, root):
    from medfm.training.vqa import run_vqa

    run_vqa(vqa_recipe(root, epochs=1), out, data_root=str(root))


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
    "vqa": ("vqa", lambda root: write_vqa_data(root, 1), _vqa, {"init.json", "train_state/", "checkpoint/"}),
    "fuse": ("fuse", lambda root: write_fake_lgg(root, slices=4), _fuse,
             {"subsets.png", MODEL_FOLDER + "training_curve.png"}),
}


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """``written(case)``: :func:`_written` of the case's run folder (:data:`RUNS`), each case run once a module."""
    done: Dict[str, List[str]] = {}

    def get(case: str) -> List[str]:
        if case not in done:
            _, write_data, run, _ = RUNS[case]
            tmp = tmp_path_factory.mktemp(case)
            write_data(tmp / "d")
            run(tmp / "run", tmp / "d")
            done[case] = _written(tmp / "run")
        return done[case]

    return get


@pytest.mark.parametrize("case", list(RUNS))
def test_the_help_names_every_file_and_folder_a_run_writes(written, case):
    """Every entry of the case's run folder (and of a fuse run's model folders) is named by its command's help."""
    command, _, _, covered = RUNS[case]
    assert covered <= set(written(case))
    assert _unlisted(written(case), command) == []
    # --resume's help names the folder it reads (<output>/checkpoint, vqa's <output>/train_state): one a run writes
    state = re.search(r"<output>/(\w+)", help_text(command))
    assert state is None or state.group(1) + "/" in written(case)


@pytest.mark.parametrize("command", sorted({command for command, *_ in RUNS.values()}))
def test_the_help_names_nothing_a_run_never_writes(written, command):
    """The other way round: every name of the list is written by one of the command's runs (each mode's final
    model, ``base/``, the overlays of a one- and a text-conditioned segmentation)."""
    runs = {name for case, (of, *_) in RUNS.items() if of == command for name in written(case)}
    assert len(_named(command)) >= 4
    assert sorted(_named(command) - runs) == []


def test_the_names_of_a_list_are_told_apart(monkeypatch):
    """The two checks above on a made-up help: a name inside another (``model/`` in ``models/``, ``overlays/`` in
    ``tasks/<task>/overlays/``), a model folder's entry outside its parentheses, and a name no run writes."""
    text = ("Writes into --output: config.yaml, models/<name>/ (metrics.jsonl; model/, a checkpoint), "
            "tasks/<task>/overlays/*.png and training_curve.png. positional arguments: ...")
    monkeypatch.setattr(f"{__name__}.help_text", lambda command: text)
    assert _unlisted(["config.yaml", "models/", "model/", "overlays/", "tasks/"], "x") == ["model/", "overlays/"]
    assert _unlisted([MODEL_FOLDER + "model/", MODEL_FOLDER + "training_curve.png"], "x") == [
        MODEL_FOLDER + "training_curve.png"]
    assert _named("x") == {"config.yaml", "models/", "tasks/", "training_curve.png", MODEL_FOLDER + "metrics.jsonl",
                           MODEL_FOLDER + "model/"}


def test_the_vqa_help_says_the_question_encoder_is_the_recipes_and_the_image_encoder_follows_its_mode():
    from medfm.training.vqa import VQA_MODES, VQARecipe

    assert VQARecipe().text_encoder == {"name": "minilm"} and VQA_MODES == ("frozen", "lora", "full")
    text = help_text("vqa")
    assert "MiniLM question encoder" not in text
    assert "a frozen text encoder for the question (the recipe's text_encoder, MiniLM by default)" in text
    assert "An image encoder (random, or --init from a SimCLR or CLIP checkpoint; frozen, or trained with LoRA or " \
           "in full as the recipe's mode says)" in text
