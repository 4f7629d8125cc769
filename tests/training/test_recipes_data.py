"""A recipe's ``data`` section (pretrain, finetune): the data set and its size, checked when the recipe is read.

A mistyped ``data.dataset`` used to be named only by the run's check build (after the imports), as
``unknown MedMNIST flag 'pneumonimnist'`` without the recipe file or key; ``dataset: corpus`` in a
fine-tuning recipe as ``unknown MedMNIST flag 'corpus'``; a size the set is not released at when the
data file was opened.
"""
from __future__ import annotations

import pytest
import yaml

from medfm.config import ConfigError, from_dict
from medfm.data.errors import UnknownDatasetError, UnsupportedSizeError
from medfm.training.recipes import DataConfig, FinetuneRecipe, PretrainRecipe
from tests.conftest import REPO_ROOT, cli_error


@pytest.mark.parametrize("command, recipe, data, message", [
    ("finetune", "finetune/lora_resnet18_pneumoniamnist.yaml", {"dataset": "pneumonimnist"},
     "r.yaml: data.dataset: unknown MedMNIST data set 'pneumonimnist'; did you mean 'pneumoniamnist' or "
     "'dermamnist'?"),
    ("pretrain", "pretrain/simclr_resnet18_corpus.yaml", {"dataset": "corpsu"},
     "r.yaml: data.dataset: unknown MedMNIST data set or corpus 'corpsu'; did you mean 'corpus'?"),
    ("finetune", "finetune/lora_resnet18_pneumoniamnist.yaml", {"dataset": "corpus"},
     "r.yaml: data.dataset: 'corpus' is the pretraining corpus (image-text pairs, no class labels); fine-tuning "
     "takes a MedMNIST data set, e.g. pneumoniamnist"),
    ("finetune", "finetune/full_resnet3d_adrenalmnist3d.yaml", {"size": 128},
     "r.yaml: data.size: MedMNIST 'adrenalmnist3d' is not released at 128 px; available: [28, 64]"),
])
def test_a_bad_data_set_or_size_is_named_with_its_recipe_key(tmp_path, monkeypatch, capsys, command, recipe, data,
                                                              message):
    monkeypatch.setenv("MEDFM_DATA", str(tmp_path))  # no data: a recipe that passes fails on the missing file
    r = yaml.safe_load((REPO_ROOT / recipe).read_text())
    r["data"] = {**r["data"], **data}
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(r))
    code, err = cli_error(capsys, [command, tmp_path / "r.yaml", "--output", tmp_path / "out"])
    assert (code, err) == (2, f"medfm: error: {message}")
    assert not (tmp_path / "out").exists()


def test_the_data_sets_a_recipe_takes():
    """Every MedMNIST flag at its released sizes, and the corpus for pretraining (not checked against
    MedMNIST's sizes: it is built at its own)."""
    assert from_dict(PretrainRecipe, {"data": {"dataset": "corpus", "size": 64}}).data.dataset == "corpus"
    assert from_dict(FinetuneRecipe, {"data": {"dataset": "pathmnist", "size": 224}}).data.size == 224
    assert from_dict(FinetuneRecipe, {"data": {"dataset": "vesselmnist3d", "size": 64}}).data.size == 64
    with pytest.raises(ConfigError, match=r"^protocol.finetune: data.dataset: unknown MedMNIST data set "
                                          r"'BreastMNST'; did you mean 'breastmnist'"):
        from_dict(FinetuneRecipe, {"data": {"dataset": "BreastMNST"}}, where="protocol.finetune")


def test_a_data_section_made_in_python_raises_the_data_errors():
    """A plain DataConfig's name is checked by the recipe that takes it, in that recipe's words (a pretraining
    recipe's name the corpus too; tests/test_split_label_rules_h35.py)."""
    with pytest.raises(UnknownDatasetError, match=r"^data.dataset: unknown MedMNIST data set or corpus 'pnuemoniamnist'; "
                                                  r"did you mean"):
        PretrainRecipe(data=DataConfig(dataset="pnuemoniamnist"))
    with pytest.raises(UnsupportedSizeError, match=r"^data.size: MedMNIST 'pneumoniamnist' is not released at 32 px"):
        DataConfig(size=32)
    with pytest.raises(ValueError, match="'corpus' is the pretraining corpus"):
        FinetuneRecipe(data=DataConfig(dataset="corpus"))


def test_the_cli_and_a_recipe_name_an_unknown_data_set_in_the_same_words(tmp_path, capsys):
    """``medfm eval --data`` said "unknown MedMNIST flag 'x'" where a recipe's ``data.dataset`` said
    "unknown data set 'x'": both now say "unknown MedMNIST data set", the recipe adding the corpus it
    also takes."""
    code, err = cli_error(capsys, ["eval", tmp_path, "--data", "pneumonimnist"])
    hint = "'pneumonimnist'; did you mean 'pneumoniamnist' or 'dermamnist'?"
    assert (code, err) == (2, f"medfm: error: --data: unknown MedMNIST data set {hint}")
    with pytest.raises(UnknownDatasetError) as info:
        PretrainRecipe(data=DataConfig(dataset="pneumonimnist"))
    assert str(info.value) == f"data.dataset: unknown MedMNIST data set or corpus {hint}"
