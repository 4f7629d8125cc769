"""What a failed ``medfm`` command leaves at its ``--output``: one rule with the runners
(:func:`medfm.training.run_folder.discard_on_failure`).

Before: the command worked out itself whether it had created the output folder and removed it (no training record
there) only after the errors it answers in one line and Ctrl-C; a training command failing with any other error (a
traceback) left the folder it had created, unless the failure came from inside a runner, which removed it. Now the
training commands watch their folder with the runners' rule, whatever the failure; ``medfm eval`` keeps its rule
(its report folder, written whole, is removed after the errors it answers and an interrupt only).
"""
from __future__ import annotations

import pytest

import medfm.cli as cli
from medfm.cli import main
from medfm.cli_parser import build_parser

TRAINING = ["pretrain", "finetune", "segment", "vqa", "fuse"]


def _failing_run(out, error, record=None):
    """A ``_run`` that writes what a run writes before its first step (plus ``record``, a path under ``out`` given a
    logged step), then raises ``error``."""
    def run(args):
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.yaml").write_text("x: 1\n")
        (out / "metrics.jsonl").write_text("")
        if record is not None:
            (out / record).parent.mkdir(parents=True, exist_ok=True)
            (out / record).write_text('{"step": 1}\n')
        raise error
    return run


@pytest.fixture
def no_path_checks(monkeypatch):
    monkeypatch.setattr(cli, "_check_paths", lambda args: None)


@pytest.mark.parametrize("command", TRAINING)
def test_a_training_command_failing_unexpectedly_leaves_no_run_folder_it_created(tmp_path, monkeypatch, command,
                                                                               no_path_checks):
    """was: config.yaml and an empty metrics.jsonl left behind (the error is not one the command answers)."""
    out = tmp_path / "runs" / "a"
    monkeypatch.setattr(cli, "_run", _failing_run(out, RuntimeError("CUDA out of memory")))
    with pytest.raises(RuntimeError, match="^CUDA out of memory$"):  # the traceback, as before
        main([command, str(tmp_path / "r.yaml"), "--output", str(out)])
    assert not out.exists() and (tmp_path / "runs").is_dir()


@pytest.mark.parametrize("record", ["metrics.jsonl", "checkpoint/trainer_state.json"])
def test_an_unexpected_failure_keeps_a_logged_step_a_training_state_and_a_folder_that_existed(
        tmp_path, monkeypatch, record, no_path_checks):
    """Guard (passes on the old code too)."""
    out = tmp_path / "run"
    monkeypatch.setattr(cli, "_run", _failing_run(out, RuntimeError("diverged"), record))
    with pytest.raises(RuntimeError):
        main(["finetune", str(tmp_path / "r.yaml"), "--output", str(out)])
    assert (out / record).is_file() and (out / "config.yaml").is_file()
    mine = tmp_path / "mine"
    mine.mkdir()
    monkeypatch.setattr(cli, "_run", _failing_run(mine, RuntimeError("diverged")))
    with pytest.raises(RuntimeError):
        main(["pretrain", str(tmp_path / "r.yaml"), "--output", str(mine)])
    assert (mine / "config.yaml").is_file()


@pytest.mark.parametrize("error, code", [(ValueError("no data set"), 2), (KeyboardInterrupt(), 130)])
def test_an_answered_error_or_an_interrupt_still_discards_a_new_folder_with_its_one_line(
        tmp_path, monkeypatch, capsys, error, code, no_path_checks):
    """Guard (passes on the old code too): training and eval commands alike, the message as before."""
    for command, args in (("segment", ["r.yaml"]), ("eval", ["ckpt", "--data", "pneumoniamnist"])):
        out = tmp_path / command
        monkeypatch.setattr(cli, "_run", _failing_run(out, error))
        assert main([command, *args, "--output", str(out)]) == code
        err = capsys.readouterr().err
        assert err == ("medfm: error: no data set\n" if code == 2 else "medfm: interrupted\n")
        assert not out.exists()


def test_eval_failing_unexpectedly_keeps_its_output_as_before(tmp_path, monkeypatch, no_path_checks):
    """Guard (passes on the old code too): ``medfm eval`` writes its report whole; an error it does not answer (here
    after the report was written) leaves the folder, as it did."""
    out = tmp_path / "e"
    monkeypatch.setattr(cli, "_run", _failing_run(out, KeyError("acc")))
    with pytest.raises(KeyError):
        main(["eval", "ckpt", "--data", "pneumoniamnist", "--output", str(out)])
    assert (out / "config.yaml").is_file()


def test_eval_interrupted_after_its_report_was_written_keeps_the_report(tmp_path, monkeypatch, capsys, no_path_checks):
    """was: Ctrl-C (or an answered error) while ``medfm eval`` printed its summary removed the report folder it had
    just written whole (no training record in it)."""
    out = tmp_path / "e"

    def run(args):
        out.mkdir()
        (out / "results.json").write_text("{}")  # the report, written last
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_run", run)
    assert main(["eval", "ckpt", "--data", "pneumoniamnist", "--output", str(out)]) == 130
    assert (out / "results.json").is_file()


# -- the hint printed when a command is interrupted after a training state was saved: ``medfm eval`` (a suite's
# fine-tuning runs save states under its --output) was told to pass the --resume it refuses; it continues them by
# itself


def _interrupted_after_a_state(out):
    """A ``_run`` that saves a training state under ``out`` (a suite's fine-tuning run), then is interrupted."""
    def run(args):
        state = out / "pneumoniamnist" / "finetune-f1" / "train" / "checkpoint"
        state.mkdir(parents=True)
        (state / "trainer_state.json").write_text("{}")
        raise KeyboardInterrupt
    return run


def test_an_interrupted_eval_is_not_told_to_pass_the_resume_it_refuses(tmp_path, monkeypatch, capsys, no_path_checks):
    out = tmp_path / "suite"
    monkeypatch.setattr(cli, "_run", _interrupted_after_a_state(out))
    assert main(["eval", "ckpt", "--suite", "s.yaml", "--output", str(out)]) == 130
    assert capsys.readouterr().err == f"medfm: interrupted; continue with the same command ({out})\n"
    with pytest.raises(SystemExit):  # what the old hint said to run
        build_parser().parse_args(["eval", "ckpt", "--suite", "s.yaml", "--output", str(out), "--resume"])


def test_an_interrupted_training_command_is_still_told_to_pass_resume(tmp_path, monkeypatch, capsys, no_path_checks):
    """Guard (passes on the old code too): a command that takes ``--resume`` keeps its hint."""
    out = tmp_path / "run"
    monkeypatch.setattr(cli, "_run", _interrupted_after_a_state(out))
    assert main(["finetune", str(tmp_path / "r.yaml"), "--output", str(out)]) == 130
    assert capsys.readouterr().err == f"medfm: interrupted; continue with the same command and --resume ({out})\n"
