"""Review of the h35 training-run changes (R2): two edges the new rules missed.

- ``medfm fuse``'s new run is refused over another run's model whose training state a kill inside its checkpoint's
  rename window set aside (``models/<other>/.checkpoint.old-<id>``, no ``checkpoint/``): the other models were
  looked up as ``models/*/checkpoint``, so that model was missed and the new run went on beside it
  (:func:`medfm.training.fusion_run.start_run`; the recipe's own models were refused since d7c3b6e).
- A pretraining recipe's misspelt ``data.dataset`` is named before its ``data.val_split``: since a plain
  :class:`medfm.training.recipes.DataConfig` leaves the name to its recipe (8f55ee0), a bad split of an unknown data
  set was refused first, as ``unknown split 'tset' for 'pneumonimnist'`` (the data set's typo not named).
"""
from __future__ import annotations

import json

import pytest

from medfm.config import from_dict
from medfm.data.errors import MedFMDataError, UnknownDatasetError
from tests.training.runs_helpers import folder_snapshot, fusion_recipe


def _model_folder(out, label, files):
    """``out/models/<label>/`` holding ``files`` (relative path -> text)."""
    for name, text in files.items():
        (out / "models" / label / name).parent.mkdir(parents=True, exist_ok=True)
        (out / "models" / label / name).write_text(text)


def test_a_new_fuse_run_is_refused_beside_another_runs_model_set_aside_by_a_kill(tmp_path):
    from medfm.training.fusion_run import start_run

    out = tmp_path / "run"
    _model_folder(out, "other", {".checkpoint.old-0123456789ab/trainer_state.json": json.dumps({"counters": {}})})
    before = folder_snapshot(out)
    with pytest.raises(FileExistsError, match=r"already holds a checkpoint \(models/other/checkpoint/, set aside as "
                                              r"\.checkpoint\.old-0123456789ab by a kill while it was saved\); another "
                                              r"run's model, not this recipe's"):
        start_run(fusion_recipe("classification", 4), out, str(tmp_path / "no-data"))
    assert folder_snapshot(out) == before


def test_a_model_folder_without_a_training_state_does_not_refuse_a_new_fuse_run(tmp_path):
    """Guard (passes on the old code too): looking into every model folder refuses none without a state; the run
    goes on to read its data (missing here)."""
    from medfm.training.fusion_run import start_run

    out = tmp_path / "run"
    _model_folder(out, "other", {"notes.md": "mine", "checkpoint/README.md": "no state"})
    _model_folder(out, "empty", {})
    (out / "models" / "empty").mkdir(parents=True)
    with pytest.raises(MedFMDataError):
        start_run(fusion_recipe("classification", 4), out, str(tmp_path / "no-data"))


def test_a_misspelt_pretraining_data_set_is_named_before_its_val_split():
    from medfm.training.recipes import DataConfig, PretrainRecipe

    hint = "'pneumonimnist'; did you mean 'pneumoniamnist' or 'dermamnist'?"
    with pytest.raises(UnknownDatasetError) as err:
        PretrainRecipe(data=DataConfig(dataset="pneumonimnist", val_split="tset"))
    assert str(err.value) == f"data.dataset: unknown MedMNIST data set or corpus {hint}"
    with pytest.raises(ValueError) as err:
        from_dict(PretrainRecipe, {"data": {"dataset": "pneumonimnist", "val_split": "tset"}}, where="r.yaml")
    assert str(err.value) == f"r.yaml: data.dataset: unknown MedMNIST data set or corpus {hint}"


def test_the_corpus_and_a_medmnist_flag_keep_their_val_split_check():
    """Guard (passes on the old code too): the split rule still holds for the names a recipe takes."""
    from medfm.data.errors import UnknownSplitError
    from medfm.training.recipes import DataConfig, PretrainRecipe

    with pytest.raises(UnknownSplitError, match=r"^data.val_split: unknown split 'tset' for 'corpus'; did you mean "
                                                 r"'test'\?$"):
        PretrainRecipe(data=DataConfig(dataset="corpus", val_split="tset"))
    with pytest.raises(UnknownSplitError, match=r"^data.val_split: unknown split 'tset' for MedMNIST 'pneumoniamnist'"):
        DataConfig(val_split="tset")
