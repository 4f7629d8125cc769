"""``medfm fuse``'s runner does its run-folder work once.

- A ``--resume`` read the run's ``config.yaml`` twice: to check it can be read
  (:func:`medfm.training.fusion_run.refuse_unchecked_resume`) and to compare the recipe with it
  (:func:`medfm.training.resume.check_resume_recipe`); now once, the first read passed along (``saved``), with the
  same refusals.
- :func:`medfm.training.fusion.run_fusion` removed an earlier report twice when a model trained: in the
  ``config.yaml`` writer (:func:`medfm.training.fusion_run.recipe_writer`, the first trained model's
  ``before_write``) and again before the protocol; now once (:meth:`medfm.training.fusion_run.RecipeWriter.clear_report`
  does nothing after the writer ran). The report writer's own removal
  (:func:`medfm.evaluation.fusion_report.write_fusion_report`) is not the runner's and is not counted.
- The files on disk are the same: after a run, a failed run (the earlier report gone, ``config.yaml`` written) and
  a refused resume (the folder as it was).
"""
from __future__ import annotations

import shutil

import pytest

from medfm.config import ConfigError
from tests.helpers import finished_fusion_run
from tests.helpers.finished_fusion_run import copy_run
from tests.training.runs_helpers import folder_snapshot, fusion_recipe

#: a finished classification run of ``late`` and ``single_pre``, one per module (tests copy it: ``copy_run``)
finished = finished_fusion_run.finished
REPORT = ("results.json", "report.md", "subsets.png")


@pytest.fixture
def calls(monkeypatch):
    """The run's report removals (``"clear"``) and report writes (``"report"``), in order: a counting
    ``start_report_dir`` and ``write_fusion_report`` around the real ones."""
    import medfm.evaluation.fusion_report as fusion_report
    import medfm.evaluation.report as report

    log = []
    clear, write = report.start_report_dir, fusion_report.write_fusion_report

    def counted_clear(*args, **kwargs):
        log.append("clear")
        return clear(*args, **kwargs)

    def counted_write(*args, **kwargs):
        log.append("report")
        return write(*args, **kwargs)

    monkeypatch.setattr(report, "start_report_dir", counted_clear)
    monkeypatch.setattr(fusion_report, "write_fusion_report", counted_write)
    return log


@pytest.fixture
def config_reads(monkeypatch):
    """The paths of the ``config.yaml`` files read (``Path.read_text``, what :func:`medfm.config.load_yaml` reads
    with), in order."""
    from pathlib import Path

    log = []
    read = Path.read_text

    def counted(self, *args, **kwargs):
        if self.name == "config.yaml":
            log.append(self)
        return read(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", counted)
    return log


@pytest.mark.parametrize("retrain", [(), ("late",)])
def test_a_resume_reads_config_yaml_once(finished, lgg, tmp_path, config_reads, retrain):
    """(Twice before: refuse_unchecked_resume, then check_resume_recipe.)"""
    from medfm.training.fusion import run_fusion

    out = copy_run(finished, tmp_path)
    for label in retrain:
        shutil.rmtree(out / "models" / label)
    run_fusion(fusion_recipe("classification", 4), out, str(lgg), resume=True)
    assert config_reads == [out / "config.yaml"]


def test_a_refused_resume_reads_config_yaml_once(finished, lgg, tmp_path, config_reads):
    """A recipe with other settings is still refused by the comparison with the one read."""
    from medfm.training.fusion import run_fusion

    out = copy_run(finished, tmp_path)
    recipe = fusion_recipe("classification", 4)
    recipe.train.lr = recipe.train.lr * 2
    with pytest.raises(ConfigError, match=r"the run was started with other settings \(train\.lr: "):
        run_fusion(recipe, out, str(lgg), resume=True)
    assert config_reads == [out / "config.yaml"]


def _runner_clears(log):
    """How many times the runner itself removed the earlier report (before the report writer's call)."""
    return log[:log.index("report")].count("clear")


@pytest.mark.parametrize("retrain", [("late",), ("late", "single_pre")])
def test_a_resume_that_trains_clears_the_earlier_report_once(finished, lgg, tmp_path, calls, retrain):
    """(Twice before: in the config.yaml writer and again before the protocol.)"""
    from medfm.training.fusion import run_fusion

    out = copy_run(finished, tmp_path)
    for label in retrain:
        shutil.rmtree(out / "models" / label)
    res = run_fusion(fusion_recipe("classification", 4), out, str(lgg), resume=True)
    assert sorted(res["reused_models"]) == sorted({"late", "single_pre"} - set(retrain))
    assert _runner_clears(calls) == 1
    assert all((out / name).is_file() for name in (*REPORT, "config.yaml"))


def test_a_new_run_clears_once(lgg, tmp_path, calls):
    """(Twice before, as a resume that trains.)"""
    from medfm.training.fusion import run_fusion

    out = tmp_path / "run"
    run_fusion(fusion_recipe("classification", 4), out, str(lgg))
    assert _runner_clears(calls) == 1
    assert all((out / name).is_file() for name in (*REPORT, "config.yaml"))


def test_a_resume_reusing_every_model_clears_once_and_keeps_config_yaml(finished, lgg, tmp_path, calls):
    """Guard: nothing trains, so the writer never runs; the earlier report still goes before the protocol."""
    from medfm.training.fusion import run_fusion

    out = copy_run(finished, tmp_path)
    config = (out / "config.yaml").read_bytes()
    res = run_fusion(fusion_recipe("classification", 4), out, str(lgg), resume=True)
    assert sorted(res["reused_models"]) == ["late", "single_pre"]
    assert _runner_clears(calls) == 1
    assert (out / "config.yaml").read_bytes() == config


@pytest.mark.parametrize("retrain", [(), ("late",)])
def test_a_failed_protocol_leaves_no_earlier_report(finished, lgg, tmp_path, monkeypatch, retrain):
    """Guard: whether a model trained or not, a resumed finished run whose protocol fails keeps no results.json,
    report.md or subsets.png of the earlier run beside its models."""
    import medfm.evaluation.fusion as protocol
    from medfm.training.fusion import run_fusion

    out = copy_run(finished, tmp_path)
    for label in retrain:
        shutil.rmtree(out / "models" / label)

    def fail(*args, **kwargs):
        raise RuntimeError("protocol failed")

    monkeypatch.setattr(protocol, "run_fusion_protocol", fail)
    with pytest.raises(RuntimeError, match="protocol failed"):
        run_fusion(fusion_recipe("classification", 4), out, str(lgg), resume=True)
    assert not any((out / name).exists() for name in REPORT)
    assert (out / "config.yaml").is_file() and (out / "models" / "late" / "model").is_dir()


def test_a_refused_resume_leaves_the_folder_as_it_was(finished, lgg, tmp_path, calls):
    """Guard: a resume with other settings is refused before any report is removed."""
    from medfm.training.fusion import run_fusion

    out = copy_run(finished, tmp_path)
    shutil.rmtree(out / "models" / "late" / "model")  # a model to train: the writer would run
    before = folder_snapshot(out)
    recipe = fusion_recipe("classification", 4)
    recipe.train.lr = recipe.train.lr * 2
    with pytest.raises(ConfigError, match=r"the run was started with other settings \(train\.lr: "):
        run_fusion(recipe, out, str(lgg), resume=True)
    assert folder_snapshot(out) == before and calls == []
