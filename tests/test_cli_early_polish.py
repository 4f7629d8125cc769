"""Three mistakes the ``medfm`` command names before torch is imported, in the right words:

- a finetune recipe's misspelt ``data.dataset`` is an unknown MedMNIST data set (it said "or corpus", a name
  fine-tuning refuses), and ``dataset: corpus`` in a finetune recipe is refused at once in
  :class:`medfm.training.recipes.FinetuneRecipe`'s words (it was, after 4 s of imports);
- a malformed ``eval --probe-c`` is named malformed (it was called ignored by a knn or as-is run, and with
  ``--protocol linear`` named after 5 s of imports);
- ``eval --protocol zeroshot`` with ``--suite``, or without one checkpoint, is refused at once (it was,
  after the zero-shot code's imports, 2 s).
"""
from __future__ import annotations


import pytest

from medfm.cli_checks import ZEROSHOT_USAGE
from medfm.config import ConfigError, from_dict, load_yaml
from tests.conftest import REPO_ROOT
from tests.helpers.cli import errors_without_torch

_FINETUNE = REPO_ROOT / "finetune" / "lora_resnet18_pneumoniamnist.yaml"
_BAD_PROBE_C = "medfm: error: --probe-c: probe C must be a positive number or 'val', got {}"


def _recipe_with_dataset(folder, name, dataset):
    """The shipped LoRA finetune recipe with ``data.dataset: <dataset>``, written as ``folder/name``."""
    text = _FINETUNE.read_text()
    assert "  dataset: pneumoniamnist\n" in text
    path = folder / name
    path.write_text(text.replace("  dataset: pneumoniamnist\n", f"  dataset: {dataset}\n"))
    return path


def test_a_finetune_recipe_data_set_is_named_as_fine_tuning_takes_it(tmp_path):
    """The misspelt name: "unknown MedMNIST data set" (a pretrain recipe still says "or corpus", which it
    takes); the corpus: the fine-tuning recipe's own refusal, the same line as after the imports."""
    typo = _recipe_with_dataset(tmp_path, "typo.yaml", "pneumonimnist")
    corpus = _recipe_with_dataset(tmp_path, "corpus.yaml", "corpus")
    out = str(tmp_path / "out")
    hint = "'pneumonimnist'; did you mean 'pneumoniamnist' or 'dermamnist'?"
    lines = errors_without_torch([["finetune", str(typo), "--output", out], ["finetune", str(corpus), "--output", out],
                                  ["pretrain", str(typo), "--output", out]])
    assert lines == [f"medfm: error: typo.yaml: data.dataset: unknown MedMNIST data set {hint}",
                     "medfm: error: corpus.yaml: data.dataset: 'corpus' is the pretraining corpus (image-text pairs, "
                     "no class labels); fine-tuning takes a MedMNIST data set, e.g. pneumoniamnist",
                     f"medfm: error: typo.yaml: data.dataset: unknown MedMNIST data set or corpus {hint}"]
    assert not (tmp_path / "out").exists()
    from medfm.training.recipes import FinetuneRecipe

    with pytest.raises(ConfigError) as err:  # the recipe reader's words (what the run said)
        from_dict(FinetuneRecipe, load_yaml(corpus), where=corpus.name)
    assert f"medfm: error: {err.value}" == lines[1]


def test_a_finetune_dataset_option_replaces_the_recipe_corpus(tmp_path, monkeypatch):
    """``--dataset`` replaces the recipe's ``data.dataset``: a corpus recipe with ``--dataset breastmnist`` passes."""
    import medfm.cli as cli

    ran = []
    monkeypatch.setattr(cli, "_run", lambda args: ran.append(args.dataset) or 0)
    corpus = _recipe_with_dataset(tmp_path, "corpus.yaml", "corpus")
    assert cli.main(["finetune", str(corpus), "--dataset", "breastmnist", "--output", str(tmp_path / "o")]) == 0
    assert ran == ["breastmnist"]


def test_a_malformed_probe_c_is_named_malformed_first(tmp_path, ckpt):
    """Whatever the protocol (knn, the as-is suite's, linear) and with ``--data``: the value's mistake first."""
    suites, out = REPO_ROOT / "eval_suites", str(tmp_path / "e")
    suite = ["eval", "--suite", str(suites / "medmnist_2d.yaml"), str(ckpt), "--output", out]
    cases = [(suite + ["--protocol", "knn", "--probe-c", "abc"], "'abc'"),
             (suite + ["--probe-c", "abc"], "'abc'"),  # an as-is suite
             (suite + ["--protocol", "linear", "--probe-c", "abc"], "'abc'"),
             (suite + ["--protocol", "linear", "--probe-c", "0"], "'0'"),
             (suite + ["--protocol", "zeroshot", "--probe-c", "nan"], "'nan'"),
             (["eval", str(ckpt), "--data", "pneumoniamnist", "--probe-c", "-1"], "'-1'")]
    assert errors_without_torch([argv for argv, _ in cases]) == [_BAD_PROBE_C.format(got) for _, got in cases]
    assert not (tmp_path / "e").exists()


def test_zeroshot_without_data_and_one_checkpoint_is_refused_without_loading_torch(tmp_path, ckpt):
    """With ``--suite`` (any number of checkpoints), and with ``--data`` but none or two checkpoints."""
    suite, out = str(REPO_ROOT / "eval_suites" / "medmnist_2d.yaml"), str(tmp_path / "e")
    cases = [["eval", "--suite", suite, "--protocol", "zeroshot", str(ckpt), "--output", out],
             ["eval", "--suite", suite, "--protocol", "zeroshot", "--output", out],
             ["eval", "--data", "pneumoniamnist", "--protocol", "zeroshot", "--output", out],
             ["eval", "--data", "pneumoniamnist", "--protocol", "zeroshot", str(ckpt), str(ckpt), "--output", out]]
    assert errors_without_torch(cases) == [f"medfm: error: {ZEROSHOT_USAGE}"] * len(cases)
    assert not (tmp_path / "e").exists()


def test_zeroshot_on_data_with_one_checkpoint_passes_the_early_check(ckpt, monkeypatch):
    import medfm.cli as cli

    ran = []
    monkeypatch.setattr(cli, "_run", lambda args: ran.append((args.protocol, args.checkpoint)) or 0)
    assert cli.main(["eval", str(ckpt), "--data", "pneumoniamnist", "--protocol", "zeroshot"]) == 0
    assert ran == [("zeroshot", [str(ckpt)])]
