"""Follow-ups in training, the recipes and the command line:

- ``medfm vqa`` (its own loop) set torch's thread count before its checks (a refused run changed the process's
  settings; :class:`medfm.training.loop.Trainer` did so before refusing a set smaller than a batch), and resumed a
  state whose counters did not fit its training set (another ``--data-root``: it trained nothing and reported
  success), which the main loop refuses: both now use :func:`medfm.training.loop.check_resume_counters`;
- a bound of :func:`medfm.arg_checks.range_text` was shown with ``:g`` (``4.29497e+09`` for ``2**32 - 1``);
- a recipe's ``data.label_fraction`` was named after 5 s of imports and in other words than ``--label-fraction``
  (NaN: "must be a finite number in (0, 1]"): one rule, :func:`medfm.arg_checks.check_label_fraction`;
- the suite reader put a protocol mistake's location two ways (``s.yaml.protocol: linear_c ...``, ``s.yaml:
  protocol.label_fractions ...``): now always ``s.yaml: protocol.<key> ...``.
"""
from __future__ import annotations

import json
import math

import pytest
import torch

from medfm.arg_checks import check_number, range_text
from medfm.config import ConfigError, from_dict
from medfm.training.loop import Trainer
from medfm.training.vqa import VQARecipe, run_vqa
from tests.conftest import REPO_ROOT, TinyPairs, cli_error, save_state_dict, tiny_train_config
from tests.helpers.cli import errors_without_torch
from tests.training.runs_helpers import vqa_recipe, write_vqa_data


# -- vqa: the thread count after the checks, the main loop's resume-counter check ---------------------------------
def test_a_refused_vqa_run_leaves_the_thread_count_alone(tmp_path, thread_calls):
    recipe = from_dict(VQARecipe, {"encoder": {"name": "resnet3d_test"}, "train": {"num_threads": 1}}, where="r.yaml")
    with pytest.raises(ConfigError, match=r"^r\.yaml\.encoder: vqa_rad is a 2D set but encoder 'resnet3d_test' is 3D"):
        run_vqa(recipe, tmp_path / "run", data_root=str(tmp_path / "nodata"))
    assert thread_calls == [] and not (tmp_path / "run").exists()


def test_a_trainer_refusing_a_set_smaller_than_a_batch_leaves_the_thread_count_alone(tmp_path, thread_calls):
    with pytest.raises(ValueError, match=r"^the training set has 2 samples, fewer than one batch of 4"):
        Trainer(torch.nn.Linear(4, 2), lambda m, b, g: {}, TinyPairs(2), tiny_train_config(num_threads=1),
                tmp_path / "run", save_state_dict)
    assert thread_calls == []


def test_a_vqa_resume_whose_counters_do_not_fit_its_training_set_is_refused(tmp_path, monkeypatch):
    """It trained nothing (the saved counters said the run had ended) and reported the old run's scores."""
    from medfm.adapters.vqa import VQAModel

    recipe = vqa_recipe(tmp_path)
    run_vqa(recipe, tmp_path / "run", data_root=write_vqa_data(tmp_path / "d16", 1))  # 2 epochs of 4 steps
    state = tmp_path / "run" / "train_state"
    assert json.loads((state / "trainer_state.json").read_text())["counters"]["step"] == 8
    steps = []
    real = VQAModel.loss
    monkeypatch.setattr(VQAModel, "loss", lambda *a, **k: steps.append(1) or real(*a, **k))
    with pytest.raises(ValueError, match=r"^cannot resume from .*train_state: its state \(epoch 2, step 0, global step "
                                         r"8\) does not fit this run's 2 epochs of 8 steps \(32 samples, batch 4\)"):
        run_vqa(recipe, tmp_path / "run", data_root=write_vqa_data(tmp_path / "d32", 2), resume=True)
    assert steps == []


# -- the thread count set when training starts: after a resumed state's checks ------------------------------------
def test_a_refused_vqa_resume_leaves_the_thread_count_alone(tmp_path, thread_calls):
    """``medfm vqa`` set ``train.num_threads`` before it read its resumed state: a resume refused by the counter check
    (another --data-root) changed the process's thread count."""
    recipe = vqa_recipe(tmp_path, num_threads=3)
    run_vqa(recipe, tmp_path / "run", data_root=write_vqa_data(tmp_path / "d16", 1))
    assert thread_calls == [3]  # once, when the run trained
    thread_calls.clear()
    with pytest.raises(ValueError, match=r"^cannot resume from .*train_state: its state \(epoch 2, step 0, global step "
                                         r"8\) does not fit this run's 2 epochs of 8 steps"):
        run_vqa(recipe, tmp_path / "run", data_root=write_vqa_data(tmp_path / "d32", 2), resume=True)
    assert thread_calls == []


def test_a_refused_trainer_run_leaves_the_thread_count_alone(tmp_path, thread_calls):
    """:class:`Trainer` set ``train.num_threads`` when built: a resume its counter check refused (another training
    set) and a new run refused for the checkpoint already there changed the process's thread count."""
    def trainer(n):
        step = lambda m, b, g: {"loss": torch.nn.functional.cross_entropy(m(b["x"]), b["y"])}  # noqa: E731
        return Trainer(torch.nn.Linear(4, 2), step, TinyPairs(n), tiny_train_config(num_threads=3), tmp_path / "run",
                       save_state_dict)

    trainer(8).fit()
    assert thread_calls == [3]  # once, when the run trained
    thread_calls.clear()
    with pytest.raises(ValueError, match=r"^cannot resume from .*checkpoint: its state \(epoch 2, step 0, global step "
                                         r"4\) does not fit this run's 2 epochs of 4 steps"):
        trainer(16).fit(resume=True)
    with pytest.raises(FileExistsError, match=r"already holds a checkpoint \(checkpoint/\); pass --resume"):
        trainer(8).fit()
    assert thread_calls == []


# -- arg_checks: integer bounds exactly ----------------------------------------------------------------------------
def test_range_text_shows_integer_bounds_exactly():
    assert range_text(ge=0, le=2**32 - 1) == "in [0, 4294967295]"
    assert range_text(gt=0, le=4294967295.0) == "in (0, 4294967295]"  # an integral float bound too
    assert range_text(le=2**64) == "<= 18446744073709551616"
    assert [range_text(gt=0.5), range_text(ge=1e-8), range_text(gt=0.1234567), range_text(ge=0.0, lt=1.0)] == [
        "> 0.5", ">= 1e-08", "> 0.1234567", "in [0, 1)"]  # other numbers as written (":g" said 0.123457)
    with pytest.raises(ValueError, match=r"^seed must be an integer in \[0, 4294967295\], got 4294967296$"):
        check_number("seed", 2**32, ge=0, le=2**32 - 1, integer=True)


# -- a recipe's data.label_fraction: --label-fraction's rule and words, before the imports -------------------------
def _recipe(folder, source, fraction):
    """``folder/r.yaml``: the shipped recipe ``source`` with ``data.label_fraction: fraction`` (YAML text)."""
    import yaml

    data = yaml.safe_load((REPO_ROOT / source).read_text())
    data["data"] = {**(data.get("data") or {}), "label_fraction": "FRACTION"}
    path = folder / "r.yaml"
    path.write_text(yaml.safe_dump(data).replace("FRACTION", fraction))
    return str(path)


def test_a_recipe_label_fraction_is_named_before_the_imports_in_the_option_words(tmp_path):
    """It was named after 5 s of imports, NaN as "must be a finite number in (0, 1]" (``--label-fraction nan``:
    "must be in (0, 1]")."""
    out = str(tmp_path / "o")
    cases, lines = [], []
    for i, (command, source) in enumerate([("finetune", "finetune/lora_resnet18_pneumoniamnist.yaml"),
                                           ("pretrain", "pretrain/simclr_resnet18_pneumoniamnist.yaml")]):
        for j, (fraction, got) in enumerate([("1.5", "1.5"), (".nan", "nan"), ("0", "0"), ("-0.1", "-0.1")]):
            folder = tmp_path / f"{i}{j}"
            folder.mkdir()
            cases.append([command, _recipe(folder, source, fraction), "--output", out])
            lines.append(f"medfm: error: r.yaml: data.label_fraction must be in (0, 1], got {got}")
    assert errors_without_torch(cases) == lines
    assert not (tmp_path / "o").exists()


def test_the_recipe_reader_and_the_option_share_the_label_fraction_rule(tmp_path, capsys):
    from medfm.cli_checks import label_fraction_option
    from medfm.training.recipes import DataConfig, FinetuneRecipe

    with pytest.raises(ConfigError) as info:
        from_dict(FinetuneRecipe, {"data": {"label_fraction": math.nan}}, where="r.yaml")
    assert str(info.value) == "r.yaml: data.label_fraction must be in (0, 1], got nan"
    with pytest.raises(ValueError) as option:
        label_fraction_option("nan", single=True)
    assert str(option.value) == "--label-fraction: label fractions must be in (0, 1], got [nan]"
    with pytest.raises(ValueError, match=r"^data\.label_fraction must be in \(0, 1\], got '0\.5' \(str\)$"):
        DataConfig(label_fraction="0.5")
    assert DataConfig(label_fraction=1).label_fraction == 1
    # a value that is no number passes the early check: the recipe reader's type check names it, as before
    path = _recipe(tmp_path, "finetune/lora_resnet18_pneumoniamnist.yaml", "'0.5'")
    code, err = cli_error(capsys, ["finetune", path, "--output", tmp_path / "o"])
    assert code == 2 and "medfm: error: r.yaml.data.label_fraction must be a number, got '0.5' (str)" in err
