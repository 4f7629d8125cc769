"""``medfm fuse``: a run folder's models are the ones its ``config.yaml`` lists, and ``config.yaml`` is written once.

- A resume whose recipe drops a model is refused (:func:`medfm.training.resume.check_resume_recipe`: "the recipe
  leaves out models 'x' of the run"; it listed its settings as ``-> (not set)``),
  leaving the folder as it was.
- A new run (no ``--resume``) beside another run's models (``models/<other>/checkpoint``) was accepted: it rewrote
  ``config.yaml`` without them and left their folders next to its own; now refused before anything is written.
- A resume adding a model whose folder another run left (not in ``config.yaml``) reused that model as if the recipe
  had trained it, and mixed it into the results; now refused
  (:func:`medfm.training.fusion_run.refuse_unrecorded_models`).
- ``config.yaml`` was rewritten by every trained model's fit; now once per run
  (:func:`medfm.training.fusion_run.recipe_writer`), still only after the first fit's resume checks.
"""
from __future__ import annotations

import shutil

import pytest
import yaml

from medfm.config import ConfigError, dump_yaml
from tests.helpers import finished_fusion_run
from tests.helpers.finished_fusion_run import copy_run
from tests.training.runs_helpers import folder_snapshot, fusion_recipe


#: a finished classification run of ``late`` and ``single_pre``, one per module (tests copy it: ``copy_run``)
finished = finished_fusion_run.finished


def _recipe(**models):
    """:func:`fusion_recipe` (classification) with ``models`` instead of its own (a label: one of its models)."""
    recipe = fusion_recipe("classification", 4)
    own = dict(recipe.models)
    recipe.models = {label: own[source] for label, source in models.items()}
    return recipe


def test_a_resume_that_drops_a_model_is_refused_and_leaves_the_folder_as_it_was(finished, lgg, tmp_path):
    from medfm.training.fusion import run_fusion

    out = copy_run(finished, tmp_path)
    before = folder_snapshot(out)
    with pytest.raises(ConfigError, match=r"^cannot resume .*: the recipe leaves out models 'single_pre' of the run "
                                          r"\(its models: 'late', 'single_pre'; a resume cannot drop one\)"):
        run_fusion(_recipe(late="late"), out, str(lgg), resume=True)
    assert folder_snapshot(out) == before


def test_a_new_run_beside_another_runs_models_is_refused_before_writing(finished, lgg, tmp_path):
    """(It was accepted: config.yaml then listed 'other' only, next to models/late and models/single_pre.)"""
    from medfm.training.fusion import run_fusion

    out = copy_run(finished, tmp_path)
    before = folder_snapshot(out)
    with pytest.raises(FileExistsError, match=r"already holds a checkpoint \(models/late/checkpoint/\); "):
        run_fusion(_recipe(other="late"), out, str(lgg))
    assert folder_snapshot(out) == before


def test_a_resume_adding_a_model_another_run_left_is_refused_and_a_new_one_trains(finished, lgg, tmp_path):
    """The folder an older medfm left (a new run beside another's models): config.yaml lists 'late' only, and
    models/single_pre/ holds another run's model. A resume adding 'single_pre' reused it as this recipe's."""
    from medfm.training.fusion import run_fusion

    out = copy_run(finished, tmp_path)
    (out / "config.yaml").write_text(dump_yaml(_recipe(late="late")))
    before = folder_snapshot(out)
    with pytest.raises(ConfigError, match=r"^cannot resume .*: models/single_pre/ holds a model that the run's "
                                          r"config.yaml does not list .*; move that folder away"):
        run_fusion(fusion_recipe("classification", 4), out, str(lgg), resume=True)
    assert folder_snapshot(out) == before
    shutil.rmtree(out / "models" / "single_pre")  # moved away: the added model trains, the other is reused
    res = run_fusion(fusion_recipe("classification", 4), out, str(lgg), resume=True)
    assert list(res["reused_models"]) == ["late"]
    assert list(yaml.safe_load((out / "config.yaml").read_text())["models"]) == ["late", "single_pre"]


@pytest.mark.parametrize("task", ["classification", "segmentation"])
def test_config_yaml_is_written_once_per_run_after_the_first_fits_checks(lgg, tmp_path, monkeypatch, task):
    """Two trained models wrote it twice; a resume that reuses both writes it no more."""
    import medfm.training.runs as runs
    from medfm.training.fusion import run_fusion

    calls = []
    real = runs.write_run_record

    def counting(output, recipe, **kw):
        calls.append(kw)
        assert not (output / "models").exists()  # before the first fit wrote anything
        real(output, recipe, **kw)
    monkeypatch.setattr(runs, "write_run_record", counting)
    recipe = fusion_recipe(task, 4)
    out = tmp_path / "run"
    run_fusion(recipe, out, str(lgg))
    assert calls == [{"takes_init": False}]
    assert (out / "config.yaml").read_text() == dump_yaml(recipe)
    before = folder_snapshot(out)
    run_fusion(recipe, out, str(lgg), resume=True)  # every model reused
    assert len(calls) == 1
    assert (out / "config.yaml").read_bytes() == before["config.yaml"]
