"""``medfm eval --suite``'s early check reads a suite file's ``protocol.finetune`` settings by the suite reader's rule
(:func:`medfm.suite_protocols.check_finetune_settings`, the one rule of :class:`~medfm.suite_protocols.ProtocolSpec`),
so a bad one is named in the reader's words before the run's imports; last of the early checks
(:mod:`medfm.cli_checks`; it imported torch until the section dataclasses moved to torch-free modules, and the
order was kept).

Was: the early check left the ``finetune:`` section alone; a bad setting was named by the suite reader, after the
run's imports.
"""
import pytest

import medfm.suite_protocols as suite_protocols
from medfm.cli import main
from medfm.config import ConfigError
from tests.helpers.cli import errors_without_torch


def _suite(folder, protocol, name="s.yaml"):
    path = folder / name
    path.write_text(f"name: t\ndatasets:\n  - {{flag: pneumoniamnist}}\nprotocol: {protocol}\n")
    return path


def test_a_bad_finetune_setting_is_named_by_the_early_check_in_the_readers_words(tmp_path, ckpt, capsys, monkeypatch):
    import medfm.cli as cli

    ran = []
    monkeypatch.setattr(cli, "_run", lambda args: ran.append(args.suite.name) or 0)  # the run reads the suite
    cases = [("{name: finetune, finetune: {mode: most}}",
              "s.yaml: protocol.finetune: mode must be one of ('linear', 'full', 'lora'), got 'most'"),
             ("{name: finetune, finetune: {lr: 0.1}}",
              "s.yaml: protocol.finetune: unknown key 'lr'; it is a train setting: write train: {lr: ...}"),
             ("{name: finetune, finetune: {train: {epochs: 0}}}",
              "s.yaml: protocol.finetune: train.epochs must be an integer >= 1, got 0"),
             ("{name: knn, finetune: {mode: lora}}",
              "s.yaml: protocol.finetune (the fine-tuning settings) would be ignored: only the finetune protocol uses "
              "it, this suite's is knn; remove it or set protocol.name: finetune")]
    for i, (protocol, message) in enumerate(cases):
        folder = tmp_path / str(i)
        folder.mkdir()
        assert main(["eval", "--suite", str(_suite(folder, protocol)), ckpt, "--output", str(tmp_path / "e")]) == 2
        assert capsys.readouterr().err == f"medfm: error: {message}\n"
    assert ran == [] and not (tmp_path / "e").exists()


def test_the_other_mistakes_of_a_finetune_suite_are_still_named_without_torch(tmp_path, ckpt):
    """The settings are checked last: an option's mistake comes first, at once (a guard: the early check named
    these without torch before)."""
    (tmp_path / "file").write_text("")
    good, bad = (_suite(tmp_path, p, n) for p, n in (("{name: finetune, finetune: {mode: linear}}", "g.yaml"),
                                                     ("{name: finetune, finetune: {mode: most}}", "b.yaml")))
    under_a_file = str(tmp_path / "file" / "e")
    cases = [["eval", "--suite", str(path), ckpt, "--output", under_a_file] for path in (good, bad)]
    lines = errors_without_torch(cases + [["eval", "--suite", str(bad), str(tmp_path / "no-checkpoint")]])
    output = (f"medfm: error: --output: cannot write '{under_a_file}': '{tmp_path / 'file'}' is a file, not a folder; "
              "choose another output folder")
    assert lines[:2] == [output, output]
    assert lines[2].startswith(f"medfm: error: no checkpoint directory at '{tmp_path / 'no-checkpoint'}'")


def test_the_early_check_and_the_suite_reader_apply_the_one_rule(tmp_path, ckpt, capsys, monkeypatch):
    """Whatever the rule says, both say it: the early check does not hold a second copy."""
    from medfm.evaluation.suite_spec import ProtocolSpec, load_suite

    assert ProtocolSpec is suite_protocols.ProtocolSpec
    seen = []

    def rule(settings):
        seen.append(settings)
        raise ConfigError("protocol.finetune: refused by the rule")

    monkeypatch.setattr(suite_protocols, "check_finetune_settings", rule)
    path = _suite(tmp_path, "{name: finetune, finetune: {mode: full, dropout: 0.1}}")
    with pytest.raises(ConfigError) as err:
        load_suite(path)
    assert main(["eval", "--suite", str(path), ckpt, "--output", str(tmp_path / "e")]) == 2
    assert capsys.readouterr().err == f"medfm: error: {err.value}\n" == "medfm: error: s.yaml: protocol.finetune: " \
                                                                          "refused by the rule\n"
    assert seen == [{"mode": "full", "dropout": 0.1}] * 2
