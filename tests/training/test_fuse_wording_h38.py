"""``medfm fuse``: a new run beside another run's finished model whose ``checkpoint/`` was deleted is refused in the
words of another run's model.

A folder ``models/<other>/`` of no model of the recipe holding only ``model/model.safetensors`` was refused by
:func:`medfm.training.loop.refuse_existing_run` with "a new run would overwrite them and the run's results: ... or
delete .../models/other/model": the new run would not write there (not one of its models) but mix two runs in one
folder. It now gets the advice of another run's checkpoint (:func:`medfm.training.fusion_run.start_run`'s
``foreign``): choose another --output or move the folder away. The recipe's own models keep their words; with
``--resume`` such a folder is refused by :func:`medfm.training.fusion_run.refuse_unrecorded_models`.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from medfm.config import dump_yaml
from medfm.training.state import STATE_JSON
from tests.conftest import cli_error
from tests.training.runs_helpers import folder_snapshot, fusion_recipe

WEIGHTS = "model/model.safetensors"


def _fuse_folder(tmp_path: Path, label: str, checkpoint: bool = False) -> Path:
    """A run folder whose ``models/<label>/`` holds finished weights (and a training state with ``checkpoint``)."""
    out = tmp_path / "fuse"
    (out / "models" / label / "model").mkdir(parents=True)
    (out / "models" / label / WEIGHTS).write_bytes(b"w")
    if checkpoint:
        (out / "models" / label / "checkpoint").mkdir()
        (out / "models" / label / "checkpoint" / STATE_JSON).write_text('{"counters": {}}')
    (out / "results.json").write_text("{}")
    return out


def _foreign(out: Path) -> str:
    return (f"another run's model, not this recipe's (--resume would not continue it): choose another --output or "
            f"move {out} away")


def _start(out: Path, tmp_path: Path, resume: bool = False) -> None:
    from medfm.training.fusion_run import start_run

    start_run(fusion_recipe("classification", 4), out, str(tmp_path / "no-data"), resume=resume)


def test_another_runs_finished_weights_get_another_runs_advice(tmp_path):
    """Was: '... with no training state to resume; a new run would overwrite them and the run's results: choose
    another --output or delete <out>/models/other/model'."""
    out = _fuse_folder(tmp_path, "other")
    before = folder_snapshot(out)
    with pytest.raises(FileExistsError) as err:
        _start(out, tmp_path)
    assert str(err.value) == (f"{out} already holds a finished run's weights (models/other/{WEIGHTS}); "
                              + _foreign(out))
    assert folder_snapshot(out) == before


def test_the_command_says_it_in_one_line_with_exit_code_2(tmp_path, capsys):
    out = _fuse_folder(tmp_path, "other")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(dump_yaml(fusion_recipe("classification", 4)))
    code, err = cli_error(capsys, ["fuse", recipe, "--output", out])  # refused before any data
    assert code == 2 and err == (f"medfm: error: {out} already holds a finished run's weights "
                                 f"(models/other/{WEIGHTS}); " + _foreign(out))


def test_another_runs_model_with_a_checkpoint_keeps_the_checkpoints_words(tmp_path):
    """Guard (passed before too): its checkpoint is named, as before, not its weights."""
    out = _fuse_folder(tmp_path, "other", checkpoint=True)
    with pytest.raises(FileExistsError) as err:
        _start(out, tmp_path)
    assert str(err.value) == f"{out} already holds a checkpoint (models/other/checkpoint/); " + _foreign(out)


def test_the_recipes_own_model_keeps_its_words(tmp_path):
    """Guard (passed before too): a model of the recipe (``late``) would be overwritten by the new run."""
    out = _fuse_folder(tmp_path, "late")
    with pytest.raises(FileExistsError) as err:
        _start(out, tmp_path)
    assert str(err.value) == (f"{out} already holds a finished run's weights (models/late/{WEIGHTS}) with no "
                              "training state to resume; a new run would overwrite them and the run's results: "
                              f"choose another --output or delete {out / 'models' / 'late' / 'model'}")


def test_a_resume_names_another_runs_folder_as_one_config_yaml_does_not_list(tmp_path):
    """Guard (passed before too): with --resume (the run's config.yaml there), refuse_unrecorded_models's words."""
    from medfm.config import ConfigError
    from medfm.training.runs import write_run_record

    out = _fuse_folder(tmp_path, "other")
    write_run_record(out, fusion_recipe("classification", 4), takes_init=False)
    before = folder_snapshot(out)
    with pytest.raises(ConfigError) as err:
        _start(out, tmp_path, resume=True)
    assert str(err.value) == (f"cannot resume {out}: models/other/ holds a model that the run's config.yaml does not "
                              "list, nor does the recipe (left by another run: its settings are unknown, and --resume "
                              "would leave it beside this recipe's models, as if the run had trained it); move that "
                              "folder away, or choose a new --output")
    assert folder_snapshot(out) == before
