"""``medfm fuse``: a resume over a run folder that cannot be checked, and the one refusal call of ``start_run``.

- A ``--resume`` of a folder whose ``config.yaml`` is missing or unreadable (a run from an older medfm, a damaged
  file) skipped the recipe check and the added-model check (:func:`medfm.training.resume.check_resume_recipe` only
  warns) and reused whatever ``models/<x>/`` held as the recipe's models; now refused
  (:func:`medfm.training.fusion_run.refuse_unchecked_resume`), naming the folder, what is missing and what to do.
- A ``--resume`` whose recipe matches ``config.yaml`` ignored a ``models/<x>/`` that neither lists (another run's
  model an older medfm left there): the resumed run went on beside it; now refused
  (:func:`medfm.training.fusion_run.refuse_unrecorded_models`).
- :func:`medfm.training.fusion_run.start_run` called :func:`medfm.training.loop.refuse_existing_run` twice, once per
  advice; now once, each sub-folder with its own advice (same messages).
"""
from __future__ import annotations

import json
import shutil

import pytest

from medfm.config import ConfigError, dump_yaml
from tests.helpers import finished_fusion_run
from tests.helpers.finished_fusion_run import copy_run
from tests.training.runs_helpers import folder_snapshot, fusion_recipe

MODELS = "models/late/, models/single_pre/"
#: a finished classification run of ``late`` and ``single_pre``, one per module (tests copy it: ``copy_run``)
finished = finished_fusion_run.finished


def _swapped():
    """The recipe with its two models' settings swapped: another recipe than the run's, under the same labels."""
    recipe = fusion_recipe("classification", 4)
    recipe.models = {"late": recipe.models["single_pre"], "single_pre": recipe.models["late"]}
    return recipe


# -- 1a. no readable config.yaml: refused, not resumed unchecked ------------------------------------------------------
@pytest.mark.parametrize("damage", ["missing", "unreadable"])
def test_a_resume_of_models_without_a_readable_config_yaml_is_refused(finished, lgg, tmp_path, damage):
    """(It resumed as the recipe said: a recipe that swapped the models' settings reused both models as its own.)"""
    from medfm.training.fusion import run_fusion

    out = copy_run(finished, tmp_path)
    config = out / "config.yaml"
    if damage == "missing":
        config.unlink()
        why = "it has no config.yaml"
    else:
        config.write_text("models: [unclosed\n")
        why = f"its config.yaml cannot be read ({config}: invalid YAML (while parsing a flow sequence))"
    before = folder_snapshot(out)
    with pytest.raises(ConfigError) as info:
        run_fusion(_swapped(), out, str(lgg), resume=True)
    assert str(info.value) == (f"cannot resume {out}: {why}, so the recipe cannot be checked against the settings of "
                               f"the models in {MODELS} (a run from an older medfm, or a damaged file: --resume would "
                               f"reuse them as this recipe's); write the recipe the run was started with to {config}, "
                               "or choose a new --output")
    assert folder_snapshot(out) == before
    config.write_text(dump_yaml(fusion_recipe("classification", 4)))  # what the message says to do: then checked
    with pytest.raises(ConfigError, match=r"the run was started with other settings \(models\.late\.args"):
        run_fusion(_swapped(), out, str(lgg), resume=True)
    res = run_fusion(fusion_recipe("classification", 4), out, str(lgg), resume=True)
    assert sorted(res["reused_models"]) == ["late", "single_pre"]


def test_a_resume_without_config_yaml_whose_model_folders_hold_no_model_is_not_refused(tmp_path):
    """Guard: folders without a model or training record (empty, an empty metrics.jsonl) leave nothing to reuse."""
    from medfm.training.fusion_run import refuse_unchecked_resume

    out = tmp_path / "run"
    (out / "models" / "late").mkdir(parents=True)
    (out / "models" / "single_pre").mkdir()
    (out / "models" / "single_pre" / "metrics.jsonl").write_text("")
    refuse_unchecked_resume(out, True)
    (out / "models" / "single_pre" / "metrics.jsonl").write_text('{"step": 1}\n')  # a training record: refused
    with pytest.raises(ConfigError, match=r"it has no config\.yaml, so .* the models in models/single_pre/ \("):
        refuse_unchecked_resume(out, True)
    refuse_unchecked_resume(out, False)  # a new run: refuse_existing_run's business


# -- 1b. a model folder neither config.yaml nor the recipe lists -----------------------------------------------------
def test_a_resume_beside_a_model_folder_config_yaml_does_not_list_is_refused(finished, lgg, tmp_path):
    """(The recipe matched config.yaml, so the resume went on and left models/stale/ beside the run's models.)"""
    from medfm.training.fusion import run_fusion

    out = copy_run(finished, tmp_path)
    shutil.copytree(out / "models" / "single_pre", out / "models" / "stale")
    before = folder_snapshot(out)
    with pytest.raises(ConfigError) as info:
        run_fusion(fusion_recipe("classification", 4), out, str(lgg), resume=True)
    assert str(info.value) == (f"cannot resume {out}: models/stale/ holds a model that the run's config.yaml does not "
                               "list, nor does the recipe (left by another run: its settings are unknown, and --resume "
                               "would leave it beside this recipe's models, as if the run had trained it); move that "
                               "folder away, or choose a new --output")
    assert folder_snapshot(out) == before
    shutil.rmtree(out / "models" / "stale")  # moved away: the resume reuses the run's models
    assert sorted(run_fusion(fusion_recipe("classification", 4), out, str(lgg), resume=True)["reused_models"]) == [
        "late", "single_pre"]


def test_an_unlisted_folder_counts_when_it_holds_a_model_or_a_training_record(tmp_path):
    from medfm.training.fusion_run import refuse_unrecorded_models

    out = tmp_path / "run"
    stale = out / "models" / "stale"
    stale.mkdir(parents=True)
    refuse_unrecorded_models(out, [], ["stale"])  # an empty folder (a run that failed before its fit): nothing
    (stale / ".checkpoint.old-0123456789ab").mkdir()
    (stale / ".checkpoint.old-0123456789ab" / "trainer_state.json").write_text(json.dumps({"counters": {}}))
    with pytest.raises(ConfigError, match=r"models/stale/ holds a model that the run's config.yaml does not list, nor "
                                          r"does the recipe \("):
        refuse_unrecorded_models(out, [], ["stale"])


# -- 2. one refuse_existing_run call, each sub-folder with its advice ------------------------------------------------
OTHER = ("another run's model, not this recipe's (--resume would not continue it): choose another --output or move "
         "{out} away")
OWN = "pass --resume to continue it or choose another --output"


@pytest.mark.parametrize("label, state, advice", [
    ("other", "checkpoint", OTHER), ("late", "checkpoint", OWN),
    ("other", ".checkpoint.old-0123456789ab", OTHER), ("late", ".checkpoint.old-0123456789ab", OWN)])
def test_start_run_refuses_in_one_call_with_each_folders_advice(tmp_path, monkeypatch, label, state, advice):
    import medfm.training.loop as loop
    from medfm.training.fusion_run import start_run
    from medfm.training.state import STATE_JSON

    calls = []
    real = loop.refuse_existing_run
    monkeypatch.setattr(loop, "refuse_existing_run", lambda *a, **kw: calls.append(a) or real(*a, **kw))
    out = tmp_path / "run"
    (out / "models" / label / state).mkdir(parents=True)
    (out / "models" / label / state / STATE_JSON).write_text(json.dumps({"counters": {}}))
    (out / "models" / "empty").mkdir()  # another run's folder without a state: no refusal of its own
    before = folder_snapshot(out)
    with pytest.raises(FileExistsError) as info:
        start_run(fusion_recipe("classification", 4), out, None)
    aside = "" if state == "checkpoint" else f", set aside as {state} by a kill while it was saved"
    assert str(info.value) == (f"{out} already holds a checkpoint (models/{label}/checkpoint/{aside}); "
                               + advice.format(out=out))
    assert len(calls) == 1  # it was a call per advice
    assert folder_snapshot(out) == before


def test_refuse_existing_run_takes_an_advice_per_state_folder(tmp_path):
    from medfm.training.loop import refuse_existing_run
    from medfm.training.state import STATE_JSON

    dirs = {"a/checkpoint": "do A", "b/checkpoint": None}
    (tmp_path / "b" / "checkpoint").mkdir(parents=True)
    (tmp_path / "b" / "checkpoint" / STATE_JSON).write_text("{}")
    with pytest.raises(FileExistsError, match=r"\(b/checkpoint/\); do X$"):  # None: the call's advice
        refuse_existing_run(tmp_path, False, dirs, advice="do X")
    with pytest.raises(FileExistsError, match=r"\(b/checkpoint/\); pass --resume to continue it or choose another "
                                              r"--output$"):
        refuse_existing_run(tmp_path, False, dirs)
    (tmp_path / "a" / "checkpoint").mkdir(parents=True)
    (tmp_path / "a" / "checkpoint" / STATE_JSON).write_text("{}")
    with pytest.raises(FileExistsError, match=r"\(a/checkpoint/\); do A$"):  # the first in order, its own advice
        refuse_existing_run(tmp_path, False, dirs, advice="do X")
    refuse_existing_run(tmp_path, True, dirs)  # a resume: nothing refused
