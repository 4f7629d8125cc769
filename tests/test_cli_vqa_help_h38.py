"""``medfm vqa --help`` names everything the run writes into ``--output``.

Its "Writes into --output" list named ``checkpoint/`` but not ``train_state/``, the training state that ``--resume``
reads (its own help says "continue a stopped run from <output>/train_state"), nor ``init.json`` (the ``--init``
record a resume is checked against). The test runs a tiny VQA run and checks the help against its folder.
"""
from __future__ import annotations

import pytest

from medfm.cli import main
from tests.training.runs_helpers import vqa_recipe, write_vqa_data


def _help(capsys) -> str:
    """``medfm vqa --help``'s text, its lines joined by single spaces (the description is filled to 78 columns)."""
    with pytest.raises(SystemExit) as exit_:
        main(["vqa", "--help"])
    assert exit_.value.code == 0
    return " ".join(capsys.readouterr().out.split())


def test_the_help_names_every_file_and_folder_a_run_writes(tmp_path, capsys):
    from medfm.training.vqa import run_vqa

    run = tmp_path / "run"
    run_vqa(vqa_recipe(tmp_path, epochs=1), run, data_root=write_vqa_data(tmp_path / "data", 1))
    written = sorted(p.name + ("/" if p.is_dir() else "") for p in run.iterdir())
    assert {"train_state/", "checkpoint/", "init.json"} <= set(written)
    capsys.readouterr()  # the run's progress bars
    text = _help(capsys)
    listed = text.split("Writes into --output: ", 1)[1].split(" positional arguments:", 1)[0]
    assert [name for name in written if f" {name} " not in f" {listed.replace(',', ' ')} "] == []
    assert "<output>/train_state" in text  # --resume's help: the folder it reads, listed above
