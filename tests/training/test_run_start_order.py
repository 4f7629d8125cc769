"""``medfm pretrain`` / ``finetune`` refuse an existing run, or a resume with a changed recipe,
before the data set is read; an empty recipe file is refused when it is read.

Before, :func:`medfm.training.runs.run_pretrain` loaded its training set (the corpus: about 10 s
when it is first built) before :func:`medfm.training.loop.refuse_existing_run` and
:func:`medfm.training.resume.check_resume_recipe`, and ``run_finetune`` compared the recipe only
after the load (it fits ``train.batch_size`` to a small training set). And a recipe of ``{}``
started a run of all the defaults (a 10-epoch SimCLR pretraining, a LoRA fine-tuning) as if meant.
"""
from __future__ import annotations

import re

import pytest

import medfm.data.corpus as corpus
import medfm.training.runs as runs
from medfm.config import ConfigError, dump_yaml, from_dict, load_yaml
from medfm.training.recipes import FinetuneRecipe, PretrainRecipe
from medfm.training.resume import check_resume_recipe, record_init
from tests.conftest import cli_error
from tests.training.runs_helpers import folder_snapshot

PRETRAIN = {"data": {"dataset": "pneumoniamnist", "verify_md5": False}, "encoder": {"name": "resnet_test"},
            "objective": {"name": "simclr", "args": {"hidden_dim": 16, "proj_dim": 8}},
            "train": {"epochs": 1, "batch_size": 8, "precision": "fp32"}}
FINETUNE = {"data": {"dataset": "pneumoniamnist", "verify_md5": False, "val_split": None},
            "encoder": {"name": "resnet_test"}, "mode": "full", "augment": None,
            "train": {"epochs": 1, "batch_size": 8, "precision": "fp32"}}


def _with(base, section, **values):
    return {**base, section: {**base[section], **values}}


def _run_folder(tmp_path, cls, data):
    """A run folder as the runner left it: a training state and the resolved ``config.yaml``."""
    run = tmp_path / "run"
    (run / "checkpoint").mkdir(parents=True)
    (run / "checkpoint" / "trainer_state.json").write_text("{}")
    (run / "config.yaml").write_text(dump_yaml(from_dict(cls, data)))
    if cls is FinetuneRecipe:
        record_init(run, None, resume=False)
    return run


@pytest.fixture
def no_data_read(monkeypatch):
    """Fail the test if a runner reads its data set (a MedMNIST split or the corpus)."""
    def read(*args, **kwargs):
        pytest.fail("the data set was read before the run-start checks")

    monkeypatch.setattr(runs, "_load", read)
    monkeypatch.setattr(corpus, "PretrainCorpus", read)


@pytest.mark.parametrize("dataset", ["pneumoniamnist", "corpus"])
def test_pretrain_refuses_an_existing_run_without_reading_data(tmp_path, no_data_read, dataset):
    data = _with(PRETRAIN, "data", dataset=dataset)
    run = _run_folder(tmp_path, PretrainRecipe, data)
    before = folder_snapshot(run)
    with pytest.raises(FileExistsError, match=re.escape(f"{run} already holds a checkpoint (checkpoint/); pass --resume")):
        runs.run_pretrain(from_dict(PretrainRecipe, data), run, data_root=str(tmp_path))
    assert folder_snapshot(run) == before


@pytest.mark.parametrize("dataset", ["pneumoniamnist", "corpus"])
def test_pretrain_refuses_a_resume_with_another_recipe_without_reading_data(tmp_path, no_data_read, dataset):
    data = _with(PRETRAIN, "data", dataset=dataset)
    run = _run_folder(tmp_path, PretrainRecipe, data)
    before = folder_snapshot(run)
    with pytest.raises(ConfigError, match=re.escape("other settings (train.epochs: 1 -> 2)")):
        runs.run_pretrain(from_dict(PretrainRecipe, _with(data, "train", epochs=2)), run, data_root=str(tmp_path),
                          resume=True)
    assert folder_snapshot(run) == before


def test_finetune_refuses_an_existing_run_or_another_recipe_without_reading_data(tmp_path, no_data_read):
    run = _run_folder(tmp_path, FinetuneRecipe, FINETUNE)
    before = folder_snapshot(run)
    with pytest.raises(FileExistsError, match="already holds a checkpoint"):
        runs.run_finetune(from_dict(FinetuneRecipe, FINETUNE), run, data_root=str(tmp_path))
    for change, shown in [({"train": {**FINETUNE["train"], "lr": 2e-3}}, "train.lr: 0.001 -> 0.002"),
                          ({"mode": "linear"}, "mode: 'full' -> 'linear'"),
                          # a batch-size change too: still refused now, by its other difference
                          ({"dropout": 0.1, "train": {**FINETUNE["train"], "batch_size": 4}}, "dropout: 0.0 -> 0.1")]:
        with pytest.raises(ConfigError, match=re.escape(shown)):
            runs.run_finetune(from_dict(FinetuneRecipe, {**FINETUNE, **change}), run, data_root=str(tmp_path),
                              resume=True)
    assert folder_snapshot(run) == before


def test_finetune_compares_the_batch_size_once_the_data_have_fitted_it(tmp_path, monkeypatch):
    """``train.batch_size`` is left to the check after the data load (a set smaller than the batch
    trains with one batch of all its images, which config.yaml records); only it."""
    from medfm.data.errors import MedFMDataError

    run = _run_folder(tmp_path, FinetuneRecipe, FINETUNE)
    loads = []

    def load(*args, **kwargs):
        loads.append(args)
        raise MedFMDataError("no data here")

    monkeypatch.setattr(runs, "_load", load)
    with pytest.raises(MedFMDataError, match="no data here"):  # passed the early check, then read the data
        runs.run_finetune(from_dict(FinetuneRecipe, _with(FINETUNE, "train", batch_size=4)), run,
                          data_root=str(tmp_path), resume=True)
    assert len(loads) == 1
    check_resume_recipe(run, from_dict(FinetuneRecipe, _with(FINETUNE, "train", batch_size=4)), True,
                        deferred=("train.batch_size",))
    with pytest.raises(ConfigError, match=re.escape("train.batch_size: 8 -> 4")):  # the check after the fit
        check_resume_recipe(run, from_dict(FinetuneRecipe, _with(FINETUNE, "train", batch_size=4)), True)


# -- an empty recipe -----------------------------------------------------------------------------
@pytest.mark.parametrize("text,found", [("", "only blanks or comments"), ("# my recipe\n\n", "only blanks or comments"),
                                        ("{}\n", "an empty mapping `{}`")])
def test_an_empty_recipe_is_refused_naming_the_file(tmp_path, text, found):
    path = tmp_path / "r.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=re.escape(f"recipe {path} is empty: it holds {found}, so it sets nothing; "
                                                    "pass the recipe file you meant")):
        load_yaml(path)
    with pytest.raises(ConfigError, match=re.escape(f"suite {path} is empty")):
        load_yaml(path, what="suite")
    path.write_text("train: {}\n")  # an empty section is not an empty recipe
    assert load_yaml(path) == {"train": {}}


@pytest.mark.parametrize("command", ["pretrain", "finetune", "segment", "vqa", "fuse"])
def test_cli_refuses_an_empty_recipe_before_any_run_starts(tmp_path, capsys, monkeypatch, command):
    import medfm.cli as cli

    monkeypatch.setattr(cli, "_run", lambda args: pytest.fail("the command ran"))
    recipe = tmp_path / "r.yaml"
    recipe.write_text("{}")
    code, err = cli_error(capsys, [command, recipe, "--output", tmp_path / "out"])
    assert code == 2 and err == (f"medfm: error: recipe {recipe} is empty: it holds an empty mapping `{{}}`, "
                                 "so it sets nothing; pass the recipe file you meant")
    assert not (tmp_path / "out").exists()
