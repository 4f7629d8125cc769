"""Command-line mistakes the ``medfm`` command names before torch is imported, in the words the later checks use:

- ``bench --encoder`` with an unregistered name (with the registry's "did you mean") or a 3D encoder: it was named
  after 4-6 s of imports. The names come from :data:`medfm.cli_checks.ENCODER_DIMS`, a copy of the registry that
  :func:`test_the_early_encoder_table_is_the_registry` keeps equal to it;
- a suite file whose ``protocol`` section has a mistake (an option its protocol ignores, a misspelt protocol or key,
  a bad value): it was named after 2-4 s of imports (:func:`medfm.suite_protocols.check_protocol_section`);
- a malformed ``eval --probe-c`` is named ``--probe-c: ...`` as every other option's mistake (it said
  ``--probe-c must be ...``);
- ``finetune --label-fraction`` follows the rule of ``eval --label-fraction`` and says the same line for the same
  mistake (it said ``label_fraction must be in (0, 1], got 1.5`` after 5 s, eval ``label fractions must be in (0, 1],
  got [1.5]`` at once; ``abc`` was an argparse usage error);
- with several mistakes, the order of :mod:`medfm.cli_checks`' docstring: a suite file before the options.
"""
from __future__ import annotations

import pytest

from medfm.cli_checks import ENCODER_DIMS
from medfm.config import ConfigError
from tests.conftest import REPO_ROOT
from tests.helpers.cli import errors_without_torch

_SUITE = str(REPO_ROOT / "eval_suites" / "medmnist_2d.yaml")  # an as-is suite
_FINETUNE = str(REPO_ROOT / "finetune" / "lora_resnet18_pneumoniamnist.yaml")


def _suite(folder, name, protocol):
    """A one-dataset suite file ``folder/name`` whose ``protocol`` section is the YAML text ``protocol``."""
    path = folder / name
    path.write_text(f"name: t\ndatasets:\n  - {{flag: pneumoniamnist}}\nprotocol: {protocol}\n")
    return path


def test_the_early_encoder_table_is_the_registry():
    """An encoder registered (or removed, or made 3D) without updating the table fails here, not in a user's
    ``medfm bench``."""
    from medfm.registry import ENCODERS

    assert ENCODER_DIMS == {name: ENCODERS.tags(name).get("dims", 2) for name in ENCODERS.names()}


def test_a_bench_encoder_mistake_is_named_without_loading_torch_in_the_library_words():
    from medfm.benchmark import require_2d_encoders
    from medfm.registry import ENCODERS, UnknownNameError

    lines = errors_without_torch([["bench", "--encoder", "resnet1"], ["bench", "--encoder", "resnet3d_18"],
                                  ["bench", "--encoder", "vit-tiny", "--steps", "1"]])
    late = []
    for name in ("resnet1", "resnet3d_18", "vit-tiny"):
        with pytest.raises((UnknownNameError, ValueError)) as err:
            require_2d_encoders([name])
        late.append(f"medfm: error: --encoder: {err.value}")
    assert lines == late
    assert lines[0] == ("medfm: error: --encoder: unknown encoder 'resnet1'; did you mean 'resnet18' or 'resnet50' or "
                        "'resnet3d_18'? (known: 20; medfm.list_encoders() lists them)")
    assert lines[2].startswith("medfm: error: --encoder: unknown encoder 'vit-tiny'; did you mean 'vit_tiny'")
    with pytest.raises(UnknownNameError):
        ENCODERS.get("resnet1")


def test_every_2d_encoder_passes_the_early_bench_check(monkeypatch):
    import medfm.cli as cli

    ran = []
    monkeypatch.setattr(cli, "_run", lambda args: ran.append(args.encoder) or 0)
    two_d = [name for name, dims in ENCODER_DIMS.items() if dims == 2]
    assert cli.main(["bench"]) == 0  # the default, resnet18
    for name in two_d:
        assert cli.main(["bench", "--encoder", name]) == 0
    assert ran == ["resnet18"] + two_d


_PROTOCOL_MISTAKES = [
    ("{name: as-is, linear_c: 0.1}",
     "s.yaml: protocol.linear_c (the linear probe's C) would be ignored: only the linear protocol uses it, this "
     "suite's is as-is; remove it or set protocol.name: linear"),
    ("{name: knn, label_fractions: [0.1], linear_c: 0.1, finetune: {mode: most}}",  # before the finetune settings
     "s.yaml: protocol.linear_c (the linear probe's C) would be ignored: only the linear protocol uses it, this "
     "suite's is knn; remove it or set protocol.name: linear"),
    ("{label_fractions: [0.1]}",  # no name: the default, as-is
     "s.yaml: protocol.label_fractions (the share of training labels fitted on) would be ignored: only the linear, "
     "knn and finetune protocols use it, this suite's is as-is; remove it or set protocol.name: linear, knn or finetune"),
    ("{name: lineer}", "s.yaml: protocol.name: unknown protocol 'lineer'; did you mean 'linear'? (valid: as-is, "
                       "linear, knn, finetune)"),
    ("{name: zeroshot}", "s.yaml: protocol.name: unknown protocol 'zeroshot' (valid: as-is, linear, knn, finetune)"),
    ("{name: linear, linear_cc: 0.1}", "s.yaml.protocol: unknown key 'linear_cc'; did you mean 'linear_c'?"),
    ("{name: linear, linear_c: abc}", "s.yaml: protocol.linear_c must be a positive number or 'val', got 'abc'"),
    ("{name: linear, label_fractions: [1.5]}", "s.yaml: protocol.label_fractions must be in (0, 1], got [1.5]"),
    ("{name: knn, knn_k: 0}", "s.yaml: protocol.knn_k must be an integer >= 1, got 0"),
    ("{name: knn, knn_temperature: -1}", "s.yaml: protocol.knn_temperature must be > 0, got -1.0"),
    ("{name: linear, seed: -1}", "s.yaml: protocol.seed must be an integer >= 0, got -1"),
    ("{name: linear, seed: 1.5}", "s.yaml.protocol.seed must be an integer, got 1.5"),
    ("[linear]", "s.yaml.protocol must be a mapping of its settings, got ['linear']"),
    # (the last: the Suite reader's words)
]


@pytest.mark.parametrize("protocol, message", _PROTOCOL_MISTAKES)
def test_the_suite_reader_names_a_protocol_section_mistake(tmp_path, protocol, message):
    """The run's reader (the Python API) and the early check (next test) say the same line."""
    from medfm.evaluation.suite_spec import load_suite

    with pytest.raises(ConfigError) as err:
        load_suite(_suite(tmp_path, "s.yaml", protocol))
    assert str(err.value) == message


def test_a_suite_protocol_section_mistake_is_named_without_loading_torch(tmp_path, ckpt):
    """Whatever ``--protocol`` says: the file is read against its own protocol, as the suite reader reads it."""
    out = str(tmp_path / "e")
    cases = []
    for i, (protocol, _) in enumerate(_PROTOCOL_MISTAKES):
        folder = tmp_path / str(i)
        folder.mkdir()
        cases.append(["eval", "--suite", str(_suite(folder, "s.yaml", protocol)), ckpt, "--output", out]
                     + (["--protocol", "linear"] if i == 0 else []))
    assert errors_without_torch(cases) == [f"medfm: error: {message}" for _, message in _PROTOCOL_MISTAKES]
    assert not (tmp_path / "e").exists()


def test_the_shipped_suites_pass_the_early_check_and_it_names_a_finetune_setting_mistake(tmp_path, ckpt, monkeypatch,
                                                                                          capsys):
    """The early check reads a suite's ``finetune`` settings by the suite reader's rule and in its words: a bad one,
    then a ``finetune:`` section the protocol ignores (a bad setting first, as any bad value:
    tests/evaluation/test_suite_spec_checks.py). It read none: both were named by the run's reader, after the
    imports (tests/test_suite_finetune_early_check.py)."""
    import medfm.cli as cli
    from medfm.evaluation.suite_spec import load_suite

    ran = []
    monkeypatch.setattr(cli, "_run", lambda args: ran.append(args.suite.name) or 0)
    suites = sorted((REPO_ROOT / "eval_suites").glob("*.yaml"))
    for path in suites:
        assert cli.main(["eval", "--suite", str(path), ckpt, "--output", str(tmp_path / "e")]) == 0, path
    assert ran == [p.name for p in suites]
    capsys.readouterr()
    bad_setting = _suite(tmp_path, "f.yaml", "{name: finetune, finetune: {mode: most}}")
    ignored = _suite(tmp_path, "k.yaml", "{name: knn, finetune: {mode: lora}}")
    for path in (bad_setting, ignored):
        with pytest.raises(ConfigError) as err:
            load_suite(path)
        assert cli.main(["eval", "--suite", str(path), ckpt, "--output", str(tmp_path / "e")]) == 2
        assert capsys.readouterr().err == f"medfm: error: {err.value}\n"
    assert ran == [p.name for p in suites]  # refused before the run
    assert str(err.value) == ("k.yaml: protocol.finetune (the fine-tuning settings) would be ignored: only the finetune "
                              "protocol uses it, this suite's is knn; remove it or set protocol.name: finetune")


def test_the_protocol_name_rule_is_the_evaluation_one():
    """The evaluation code's :func:`medfm.evaluation.protocols.check_protocol` is the torch-free
    :func:`medfm.suite_protocols.check_protocol_name` itself, not a second rule that could drift."""
    from medfm.evaluation.protocols import check_protocol
    from medfm.suite_protocols import check_protocol_name

    assert check_protocol is check_protocol_name


def test_a_malformed_probe_c_is_named_with_the_flag_and_a_colon(tmp_path, ckpt):
    out = str(tmp_path / "e")
    cases = [(["eval", "--suite", _SUITE, ckpt, "--protocol", "linear", "--probe-c", "abc", "--output", out], "'abc'"),
             (["eval", "--suite", _SUITE, ckpt, "--probe-c", "0", "--output", out], "'0'"),
             (["eval", ckpt, "--data", "pneumoniamnist", "--probe-c", "-1"], "'-1'")]
    assert errors_without_torch([argv for argv, _ in cases]) == [
        f"medfm: error: --probe-c: probe C must be a positive number or 'val', got {got}" for _, got in cases]


def test_finetune_and_eval_name_the_same_label_fraction_mistake_in_the_same_line(tmp_path, ckpt):
    """Out of (0, 1]: the same line from both commands, at once; a finetune run takes one fraction."""
    out = str(tmp_path / "o")
    values = ["1.5", "0", "nan", "-0.1"]
    finetune = [["finetune", _FINETUNE, "--label-fraction", v, "--output", out] for v in values]
    evaluate = [["eval", "--suite", _SUITE, ckpt, "--protocol", "linear", "--label-fraction", v, "--output", out]
                for v in values]
    more = [["finetune", _FINETUNE, "--label-fraction", v, "--output", out] for v in ("abc", "0.1,0.5", ",")]
    lines = errors_without_torch(finetune + evaluate + more)
    assert lines[:len(values)] == lines[len(values):2 * len(values)]
    assert lines[0] == "medfm: error: --label-fraction: label fractions must be in (0, 1], got [1.5]"
    assert lines[2 * len(values):] == [
        "medfm: error: --label-fraction: label fraction 'abc' in 'abc' is not a number; give one fraction such as 0.1",
        "medfm: error: --label-fraction: '0.1,0.5' holds 2 label fractions; give one fraction such as 0.1",
        "medfm: error: --label-fraction: no label fraction in ','; give one fraction such as 0.1"]
    assert not (tmp_path / "o").exists()


def test_a_finetune_label_fraction_reaches_the_recipe_as_a_number(tmp_path, monkeypatch):
    import medfm.cli as cli

    seen = []

    def load_recipe(cls, path, epochs, dataset=None, label_fraction=None):
        seen.append(label_fraction)
        raise ValueError("stop here")

    monkeypatch.setattr(cli, "_load_recipe", load_recipe)
    for argv in (["--label-fraction", " 0.25 "], []):
        assert cli.main(["finetune", _FINETUNE, "--output", str(tmp_path / "o")] + argv) == 2
    assert seen == [0.25, None]


def test_a_suite_file_mistake_is_named_before_the_command_line_options(tmp_path, ckpt):
    """The order of :mod:`medfm.cli_checks`' docstring: the files first, as the runs read them before applying
    the options; a malformed option before a usage rule (:mod:`tests.test_cli_early_eval`)."""
    bad = str(_suite(tmp_path, "s.yaml", "{name: as-is, knn_k: 5}"))
    out = str(tmp_path / "e")
    ignored = ("s.yaml: protocol.knn_k (kNN's number of neighbours) would be ignored: only the knn protocol uses it, "
               "this suite's is as-is; remove it or set protocol.name: knn")
    cases = [["eval", "--suite", bad, ckpt, "--probe-c", "abc", "--output", out],
             ["eval", "--suite", bad, ckpt, "--label-fraction", "2", "--protocol", "knn", "--output", out],
             ["eval", "--suite", bad, ckpt, "--split", "val", "--output", out],
             ["eval", "--suite", bad, "--protocol", "zeroshot", "--output", out],
             ["eval", "--suite", _SUITE, ckpt, "--probe-c", "abc", "--split", "val", "--output", out]]
    assert errors_without_torch(cases) == [f"medfm: error: {ignored}"] * 4 + [
        "medfm: error: --probe-c: probe C must be a positive number or 'val', got 'abc'"]


def test_finetune_dataset_corpus_is_refused_in_the_recipe_words(tmp_path):
    """``finetune --dataset corpus`` was "unknown MedMNIST data set 'corpus' (known: ...)" while a recipe saying
    ``dataset: corpus`` got the reason (:data:`medfm.data.medmnist_info.CORPUS_NOT_FOR_FINETUNING`); one rule,
    :func:`medfm.data.medmnist_info.check_recipe_dataset`, now says it for both, before torch and after."""
    from medfm.cli import _load_recipe
    from medfm.data.medmnist_info import CORPUS_NOT_FOR_FINETUNING
    from medfm.training.recipes import FinetuneDataConfig, FinetuneRecipe

    recipe = tmp_path / "corpus.yaml"
    recipe.write_text("data:\n  dataset: corpus\n")
    out = str(tmp_path / "o")
    lines = errors_without_torch([["finetune", _FINETUNE, "--dataset", "corpus", "--output", out],
                                  ["finetune", str(recipe), "--output", out]])
    assert lines == [f"medfm: error: --dataset: {CORPUS_NOT_FOR_FINETUNING}",
                     f"medfm: error: corpus.yaml: data.dataset: {CORPUS_NOT_FOR_FINETUNING}"]
    with pytest.raises(ValueError) as late:  # the run's own check, had the early one been skipped
        _load_recipe(FinetuneRecipe, REPO_ROOT / "finetune" / "lora_resnet18_pneumoniamnist.yaml", None, "corpus")
    assert str(late.value).endswith(f"data.dataset: {CORPUS_NOT_FOR_FINETUNING}")
    with pytest.raises(ValueError) as python:
        FinetuneDataConfig(dataset="corpus")
    assert str(python.value) == f"data.dataset: {CORPUS_NOT_FOR_FINETUNING}"
    assert not (tmp_path / "o").exists()


def test_the_corpus_size_rule_is_one_for_recipes_and_the_library(tmp_path):
    """A pretraining recipe's ``data.size`` and the corpus itself refuse a size in the same words
    (:func:`medfm.data.corpus.check_corpus_size`), the recipe's with the key put first."""
    from medfm.data.corpus import PretrainCorpus, build_corpus
    from medfm.data.errors import UnsupportedSizeError
    from medfm.training.recipes import DataConfig

    said = []
    for make in (lambda: DataConfig(dataset="corpus", size=32), lambda: PretrainCorpus(size=32, data_root=tmp_path),
                 lambda: build_corpus(size=32, data_root=tmp_path)):
        with pytest.raises(UnsupportedSizeError) as err:
            make()
        said.append(str(err.value))
    assert said == ["data.size: the pretraining corpus is built at [28, 64] px, not 32"] + [
        "the pretraining corpus is built at [28, 64] px, not 32"] * 2


@pytest.mark.parametrize("size", [28.0, True, "28"])
def test_a_corpus_size_that_is_no_integer_is_refused(tmp_path, size):
    """``28.0 in (28, 64)`` is True in Python, so ``build_corpus(size=28.0)`` passed the size rule; a bool or a
    string is no side in px either."""
    from medfm.data.corpus import build_corpus
    from medfm.data.errors import UnsupportedSizeError

    with pytest.raises(UnsupportedSizeError, match=r"built at \[28, 64\] px, not "):
        build_corpus(size=size, data_root=tmp_path)
