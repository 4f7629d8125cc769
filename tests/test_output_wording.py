"""An output that is a file, or lies under one, in medfm's one "file in the way" wording
(:func:`medfm.io.in_the_way_error`): ``cannot write '<target>': '<file>' is a file, not a folder; <advice>``.

- the runs' check (:func:`medfm.training.loop.check_output_folder`) said ``Not a directory: output <out> is a file; a
  run writes a folder there; ...`` / ``... lies under <file>, a file; ...``;
- ``medfm``'s early check said ``--output <out> is a file; the run writes a folder there: choose another path``, and
  named an output under a file only through the run, after torch's imports.
"""
from __future__ import annotations

import pytest

from tests.helpers.cli import errors_without_torch


def test_an_output_in_the_way_is_named_by_the_command_before_torch_in_the_runs_words(tmp_path):
    from medfm.training.loop import check_output_folder

    (tmp_path / "file").write_text("x")
    recipe = tmp_path / "pt.yaml"
    recipe.write_text("encoder:\n  name: resnet_test\n")
    outputs = [tmp_path / "file", tmp_path / "file" / "run" / "sub"]
    lines = errors_without_torch([["pretrain", str(recipe), "--output", str(out)] for out in outputs])
    runs = []
    for out in outputs:
        with pytest.raises(NotADirectoryError) as err:
            check_output_folder(out)
        runs.append(f"medfm: error: --output: {err.value}")
    assert lines == runs
    assert lines[1] == (f"medfm: error: --output: cannot write {str(outputs[1])!r}: {str(tmp_path / 'file')!r} is a "
                        "file, not a folder; a run writes its files in a folder there: choose another output")
    assert (tmp_path / "file").read_text() == "x"


def test_an_eval_output_in_the_way_is_named_in_the_report_folders_words(tmp_path):
    """``medfm eval --output`` is a report folder: the command gave it the training runs' advice ("a run writes its
    files in a folder there: choose another output") while the evaluation's own check says "choose another output
    folder" (:func:`medfm.evaluation.report.check_output_dir`)."""
    from medfm.evaluation.report import check_output_dir

    (tmp_path / "file").write_text("x")
    suite = tmp_path / "s.yaml"
    suite.write_text("name: s\ndatasets: [{flag: pneumoniamnist}]\n")
    out = tmp_path / "file" / "eval"
    lines = errors_without_torch([["eval", str(tmp_path / "ckpt"), "--data", "pneumoniamnist", "--output", str(out)],
                                  ["eval", "--suite", str(suite), str(tmp_path / "ckpt"), "--output", str(out)]])
    with pytest.raises(NotADirectoryError) as err:
        check_output_dir(out)
    assert lines == [f"medfm: error: --output: {err.value}"] * 2
    assert lines[0] == (f"medfm: error: --output: cannot write {str(out)!r}: {str(tmp_path / 'file')!r} is a file, "
                        "not a folder; choose another output folder")
