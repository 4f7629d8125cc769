"""``medfm eval`` mistakes named before torch is imported, malformed values first, then usage rules, then options
the run would ignore (:func:`medfm.cli_checks._check_eval_options`):

- a malformed ``--label-fraction`` (``abc``, ``,``, ``1.5``) is named malformed: with an as-is suite or with
  ``--data`` it was called ignored, with ``--protocol linear`` it was named after 5 s of imports. Its rule is one
  function, :func:`medfm.suite_protocols.parse_label_fractions`, which the suite reader uses too;
- ``--data`` with none or two checkpoints, or with a suite protocol (``--protocol knn``), was refused after 2 s
  of imports (:data:`medfm.cli_checks.DATA_USAGE`).
"""
from __future__ import annotations

import pytest

from medfm.cli_checks import DATA_USAGE, ZEROSHOT_USAGE
from medfm.config import ConfigError
from medfm.suite_protocols import parse_label_fractions
from tests.conftest import REPO_ROOT
from tests.helpers.cli import errors_without_torch

_SUITE = str(REPO_ROOT / "eval_suites" / "medmnist_2d.yaml")  # an as-is suite
_NOT_A_NUMBER = "label fraction {!r} in {!r} is not a number; give a comma list such as 0.01,0.1,1"


def test_parse_label_fractions_reads_a_comma_list_or_a_sequence():
    assert parse_label_fractions(" 0.01, 0.1 ,1,") == (0.01, 0.1, 1.0)
    assert parse_label_fractions([0.01, 1]) == (0.01, 1)  # a suite file's list: its items as given
    for value, message in [("0.1,abc", _NOT_A_NUMBER.format("abc", "0.1,abc")),
                           (",", "no label fraction in ','; give a comma list such as 0.01,0.1,1"),
                           ("1.5", "protocol.label_fractions must be in (0, 1], got [1.5]"),
                           ("nan", "protocol.label_fractions must be in (0, 1], got [nan]"),
                           ((True,), "protocol.label_fractions must be in (0, 1], got [True]"),
                           ((), "protocol.label_fractions must be in (0, 1], got []")]:
        with pytest.raises(ValueError) as err:
            parse_label_fractions(value)
        assert str(err.value) == message


def test_a_malformed_label_fraction_is_named_malformed_first(tmp_path, ckpt):
    """Whatever the protocol (the as-is suite's, linear, knn) and with ``--data``: the value's mistake, at once."""
    out = str(tmp_path / "e")
    suite = ["eval", "--suite", _SUITE, ckpt, "--output", out]
    cases = [(suite + ["--label-fraction", "abc"], f"--label-fraction: {_NOT_A_NUMBER.format('abc', 'abc')}"),
             (suite + ["--protocol", "linear", "--label-fraction", "0.1,abc"],
              f"--label-fraction: {_NOT_A_NUMBER.format('abc', '0.1,abc')}"),
             (suite + ["--protocol", "knn", "--label-fraction", ","],
              "--label-fraction: no label fraction in ','; give a comma list such as 0.01,0.1,1"),
             (suite + ["--protocol", "linear", "--label-fraction", "1.5"],
              "--label-fraction: label fractions must be in (0, 1], got [1.5]"),
             (suite + ["--label-fraction", "0"], "--label-fraction: label fractions must be in (0, 1], got [0.0]"),
             (["eval", ckpt, "--data", "pneumoniamnist", "--label-fraction", "abc"],
              f"--label-fraction: {_NOT_A_NUMBER.format('abc', 'abc')}")]
    assert errors_without_torch([argv for argv, _ in cases]) == [f"medfm: error: {m}" for _, m in cases]
    assert not (tmp_path / "e").exists()


def test_the_suite_reader_names_a_malformed_label_fraction_as_before():
    """The run's own check (the Python API) keeps its words: the same rule, under its own heading."""
    from medfm.evaluation.suite_spec import load_suite, suite_overrides

    for value, message in [("0.1,abc", _NOT_A_NUMBER.format("abc", "0.1,abc")),
                           ("1.5", "protocol.label_fractions must be in (0, 1], got [1.5]")]:
        with pytest.raises(ConfigError) as err:
            suite_overrides(load_suite(_SUITE), protocol="linear", label_fractions=value)
        assert str(err.value) == f"--protocol/--label-fraction/--probe-c: {message}"


def test_data_without_one_checkpoint_or_with_a_suite_protocol_is_refused_without_loading_torch(tmp_path, ckpt):
    out = str(tmp_path / "e")
    data = ["eval", "--data", "pneumoniamnist", "--output", out]
    cases = [data + [ckpt, ckpt], data, data + ["--protocol", "knn", ckpt], data + ["--protocol", "linear", ckpt],
             data + ["--protocol", "finetune", ckpt]]
    assert errors_without_torch(cases) == [f"medfm: error: {DATA_USAGE}"] * len(cases)
    assert not (tmp_path / "e").exists()


def test_early_eval_checks_name_malformed_values_then_usage_then_ignored_options(tmp_path, ckpt):
    """With two mistakes, the earlier kind is named: a malformed value (an unknown data set too) before a usage
    rule, a usage rule before an option the run would ignore."""
    out = str(tmp_path / "e")
    data = ["eval", "--data", "pneumoniamnist", "--output", out]
    cases = [(data + [ckpt, ckpt, "--label-fraction", "abc"],
              f"--label-fraction: {_NOT_A_NUMBER.format('abc', 'abc')}"),
             (data + ["--protocol", "zeroshot", "--probe-c", "abc"],
              "--probe-c: probe C must be a positive number or 'val', got 'abc'"),
             (["eval", "--data", "pneumonimnist", ckpt, ckpt, "--output", out],
              "--data: unknown MedMNIST data set 'pneumonimnist'; did you mean 'pneumoniamnist' or 'dermamnist'?"),
             (data + ["--protocol", "knn", "--probe-c", "0.1", ckpt], DATA_USAGE),
             (data + [ckpt, ckpt, "--label-fraction", "0.1"], DATA_USAGE),
             (data + ["--protocol", "zeroshot", "--label-fraction", "0.1"], ZEROSHOT_USAGE),
             (data + [ckpt, "--label-fraction", "0.1"],
              "--label-fraction: --suite option(s); --data scores one checkpoint on one split")]
    assert errors_without_torch([argv for argv, _ in cases]) == [f"medfm: error: {m}" for _, m in cases]


def test_what_the_run_takes_passes_the_early_checks(tmp_path, ckpt, monkeypatch):
    """One checkpoint as it is on ``--data`` (``--protocol as-is`` and ``zeroshot`` too), and a well-formed
    fraction list for a protocol that fits on labels."""
    import medfm.cli as cli

    ran = []
    monkeypatch.setattr(cli, "_run", lambda args: ran.append((args.protocol, args.label_fraction)) or 0)
    out = str(tmp_path / "e")
    for argv in [["eval", ckpt, "--data", "pneumoniamnist"],
                 ["eval", ckpt, "--data", "pneumoniamnist", "--protocol", "as-is"],
                 ["eval", ckpt, "--data", "pneumoniamnist", "--protocol", "zeroshot"],
                 ["eval", "--suite", _SUITE, ckpt, "--protocol", "knn", "--label-fraction", " 0.01, 0.1 ,1,",
                  "--output", out]]:
        assert cli.main(argv) == 0, argv
    assert ran == [(None, None), ("as-is", None), ("zeroshot", None), ("knn", " 0.01, 0.1 ,1,")]
