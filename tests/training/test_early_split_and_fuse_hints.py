"""Small user-facing follow-ups of the evaluation entry points and of ``medfm fuse``.

- ``evaluate_checkpoint`` and ``zeroshot_eval`` refused a MedMNIST split typo (``"tset"``) only inside
  ``MedMNISTDataset``, once the checkpoint was resolved (a hub download) and loaded; now the one split check
  (:func:`medfm.data.medmnist.check_medmnist_split`, "did you mean") runs first. ``evaluate_checkpoint`` checks
  its flag and ``--size`` there too (``zeroshot_eval`` already did).
- A new ``medfm fuse`` run refused because the folder holds another run's model checkpoints said "pass --resume
  to continue it", a resume that would not continue that model; it now says to choose another ``--output`` or
  move the folder away (the recipe's own models keep the ``--resume`` hint).
- A ``--resume`` of a finished ``medfm fuse`` run whose evaluation then failed kept the old ``results.json``
  (cleared only when the new report was written); the earlier report now goes before the protocol runs and when
  the run first writes (as ``medfm vqa`` and ``medfm segment``), a refused resume still leaving the folder as it was.
- ``Trainer``'s "training_curve.png not written" was a ``warnings.warn``: under ``python -W error`` it failed a
  finished fit whose checkpoint was saved (a fuse run then lost its final model); it is a logged warning now.
"""
from __future__ import annotations

import logging
import shutil
import warnings

import pytest
import torch
from torch import nn

from medfm.data.errors import UnknownDatasetError, UnknownSplitError, UnsupportedSizeError
from tests.conftest import TinyPairs, save_state_dict, tiny_train_config
from tests.training.runs_helpers import folder_snapshot, fusion_recipe

TSET = "unknown split 'tset' for MedMNIST 'pneumoniamnist'; did you mean 'test'?"


@pytest.fixture
def no_checkpoint(monkeypatch):
    """Fail the test if a checkpoint is resolved (the bad input must be refused before that)."""
    import medfm.hub

    def resolved(*args, **kwargs):
        raise AssertionError("the checkpoint was resolved before the bad input was refused")

    monkeypatch.setattr(medfm.hub, "resolve_checkpoint", resolved)


# -- 1. one MedMNIST split check, before the checkpoint -----------------------------------------------
def test_the_dataset_and_the_public_check_give_one_message(write_medmnist):
    from medfm.data import MedMNISTDataset
    from medfm.data.medmnist import check_medmnist_split

    root = write_medmnist("pneumoniamnist")
    with pytest.raises(UnknownSplitError) as info:
        MedMNISTDataset("pneumoniamnist", "tset", data_root=root)
    assert str(info.value) == TSET
    with pytest.raises(UnknownSplitError, match=r"^unknown split 'validation' for MedMNIST 'breastmnist' "
                                                r"\(expected one of: train, val, test\)$"):
        check_medmnist_split("breastmnist", "validation")
    with pytest.raises(UnknownSplitError, match=r"^unknown split None "):
        check_medmnist_split("breastmnist", None)
    assert [check_medmnist_split("breastmnist", s) for s in ("train", "val", "test")] == ["train", "val", "test"]


def test_eval_refuses_a_bad_split_flag_or_size_before_resolving_the_checkpoint(no_checkpoint, tmp_path):
    from medfm.evaluation.evaluate import evaluate_checkpoint

    with pytest.raises(UnknownSplitError) as info:
        evaluate_checkpoint("hf-hub:org/model", "pneumoniamnist", split="tset", output=tmp_path / "out")
    assert str(info.value) == TSET
    with pytest.raises(UnknownDatasetError, match="did you mean 'pneumoniamnist'"):
        evaluate_checkpoint("hf-hub:org/model", "pneumonimnist", output=tmp_path / "out")
    with pytest.raises(UnsupportedSizeError, match="size 32"):
        evaluate_checkpoint("hf-hub:org/model", "pneumoniamnist", size=32, output=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_zeroshot_refuses_a_bad_split_before_resolving_the_checkpoint(no_checkpoint, tmp_path):
    from medfm.evaluation.zeroshot import zeroshot_eval

    with pytest.raises(UnknownSplitError) as info:
        zeroshot_eval("hf-hub:org/clip", "pneumoniamnist", split="tset", output=tmp_path / "out")
    assert str(info.value) == TSET
    assert not (tmp_path / "out").exists()


# -- 2. another run's models: the hint is not --resume ------------------------------------------------
def _state(folder):
    from medfm.training.state import STATE_JSON

    folder.mkdir(parents=True)
    (folder / STATE_JSON).write_text("{}")


def test_a_new_fuse_run_beside_another_runs_model_is_told_to_move_not_resume(tmp_path):
    from medfm.training.fusion import start_run

    recipe = fusion_recipe("classification", 4)
    out = tmp_path / "run"
    _state(out / "models" / "other" / "checkpoint")
    before = folder_snapshot(out)
    with pytest.raises(FileExistsError) as info:
        start_run(recipe, out, None)
    assert str(info.value) == (f"{out} already holds a checkpoint (models/other/checkpoint/); another run's model, not "
                               "this recipe's (--resume would not continue it): choose another --output or move "
                               f"{out} away")
    assert folder_snapshot(out) == before


def test_a_new_fuse_run_over_its_own_model_keeps_the_resume_hint(tmp_path):
    from medfm.training.fusion import start_run

    recipe = fusion_recipe("classification", 4)
    out = tmp_path / "run"
    own = sorted(recipe.models)[0]
    _state(out / "models" / own / "checkpoint")
    with pytest.raises(FileExistsError) as info:
        start_run(recipe, out, None)
    assert str(info.value) == (f"{out} already holds a checkpoint (models/{own}/checkpoint/); pass --resume to "
                               "continue it or choose another --output")


# -- 3. a resumed finished fuse run whose evaluation fails keeps no report -----------------------------
@pytest.fixture(scope="module")
def finished(lgg, tmp_path_factory):
    """A finished run of each fuse task (:func:`fusion_recipe`); tests copy it."""
    from medfm.training.fusion import run_fusion

    runs = {}
    for task in ("classification", "segmentation"):
        runs[task] = tmp_path_factory.mktemp(task) / "run"
        run_fusion(fusion_recipe(task, 4), runs[task], str(lgg))
    return runs


class EvaluationFailed(RuntimeError):
    pass


@pytest.mark.parametrize("task", ["classification", "segmentation"])
def test_a_resumed_finished_run_whose_evaluation_fails_keeps_no_earlier_report(finished, lgg, tmp_path, monkeypatch,
                                                                              task):
    import medfm.evaluation.fusion as fusion_eval
    import medfm.evaluation.fusion_seg as fusion_seg_eval
    from medfm.training.fusion import run_fusion

    out = tmp_path / "run"
    shutil.copytree(finished[task], out)
    assert (out / "results.json").is_file() and (out / "report.md").is_file()
    models = {k: v for k, v in folder_snapshot(out).items() if k.startswith("models/")}

    def fail(*args, **kwargs):
        raise EvaluationFailed("the protocol failed")

    module, name = (fusion_eval, "run_fusion_protocol") if task == "classification" else \
        (fusion_seg_eval, "run_seg_fusion_protocol")
    monkeypatch.setattr(module, name, fail)
    with pytest.raises(EvaluationFailed):
        run_fusion(fusion_recipe(task, 4), out, str(lgg), resume=True)  # every model reused, then the protocol
    left = folder_snapshot(out)
    assert not {"results.json", "report.md", "subsets.png"} & set(left)
    assert {k: v for k, v in left.items() if k.startswith("models/")} == models  # the models are kept as they were


def test_a_resume_adding_a_model_whose_fit_fails_keeps_no_earlier_report(finished, lgg, tmp_path, monkeypatch):
    """The report goes when the run first writes (with config.yaml), as in ``medfm vqa``: a resume that trains an
    added model and then fails left the earlier results.json beside the new model's state."""
    from medfm.training.fusion import FusionModelConfig, run_fusion
    from medfm.training.loop import Trainer

    out = tmp_path / "run"
    shutil.copytree(finished["classification"], out)
    recipe = fusion_recipe("classification", 4)
    recipe.models["added"] = FusionModelConfig(fuser="late_fusion_zero_fill")

    def killed(self, counters):
        raise EvaluationFailed("killed while training the added model")

    monkeypatch.setattr(Trainer, "_train", killed)
    with pytest.raises(EvaluationFailed):
        run_fusion(recipe, out, str(lgg), resume=True)
    left = folder_snapshot(out)
    assert "config.yaml" in left and not {"results.json", "report.md", "subsets.png"} & set(left)


def test_a_refused_resume_of_a_finished_run_still_leaves_its_report(finished, lgg, tmp_path):
    """(The report goes only once the run starts: a resume whose recipe differs is refused first.)"""
    from medfm.config import ConfigError
    from medfm.training.fusion import run_fusion

    out = tmp_path / "run"
    shutil.copytree(finished["classification"], out)
    before = folder_snapshot(out)
    recipe = fusion_recipe("classification", 4)
    recipe.train.lr = recipe.train.lr * 2
    with pytest.raises(ConfigError, match="^cannot resume"):
        run_fusion(recipe, out, str(lgg), resume=True)
    assert folder_snapshot(out) == before


# -- 4. a figure that cannot be drawn under -W error ---------------------------------------------------
def _step(model, batch, gen):
    return {"loss": nn.functional.cross_entropy(model(batch["x"]), batch["y"])}


def test_a_curve_that_cannot_be_drawn_is_logged_and_the_fit_ends_under_w_error(tmp_path, monkeypatch, caplog):
    import medfm.evaluation.plots as plots
    from medfm.training.loop import Trainer

    def no_space(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(plots, "plot_training_curve", no_space)
    torch.manual_seed(0)
    run = tmp_path / "run"
    with warnings.catch_warnings(), caplog.at_level(logging.WARNING, logger="medfm.training.loop"):
        warnings.simplefilter("error")  # python -W error
        model = Trainer(nn.Linear(4, 2), _step, TinyPairs(), tiny_train_config(), run, save_state_dict).fit()
    assert isinstance(model, nn.Linear) and (run / "checkpoint" / "model.safetensors").is_file()
    assert not (run / "training_curve.png").exists()
    assert [r.getMessage() for r in caplog.records if r.name == "medfm.training.loop"] == [
        f"training_curve.png not written for {run}: OSError: [Errno 28] No space left on device"]
