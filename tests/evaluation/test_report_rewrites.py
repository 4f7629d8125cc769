"""Rewritten report folders hold only the new report (start_report_dir), make_dir's advice/target form, zero-shot
checks made from the flag before the checkpoint is loaded, and select_probe_c checking its inputs once."""
import json
import os
import re

import numpy as np
import pytest

from medfm.data.errors import UnknownDatasetError, UnsupportedSizeError
from medfm.evaluation import protocols
from medfm.evaluation.report import make_output_dir, start_report_dir, write_classification_report
from medfm.evaluation.zeroshot import zeroshot_eval
from medfm.io import REPORT_FOLDER_ADVICE, make_dir

MULTI = "multi-label, binary-class"


def _binary():
    rng = np.random.default_rng(0)
    p = rng.random(6)
    return np.array([0, 1, 0, 1, 1, 0]), np.stack([1 - p, p], axis=1)


# -- 1: a rewritten report folder holds only the new report's files -------------------------------------------
def test_a_binary_report_rewritten_as_multi_label_keeps_no_old_figure(tmp_path):
    out = tmp_path / "rep"
    y, s = _binary()
    first = write_classification_report(out, y, s, "binary-class", None, {}, n_boot=10)
    assert {"confusion_matrix.png", "reliability.png"} <= set(first["files"])
    (out / "notes.txt").write_text("mine")
    (out / "extra").mkdir()
    res = write_classification_report(out, np.array([[0, 1], [1, 0], [1, 1], [0, 0]]),
                                      np.random.default_rng(1).random((4, 2)), MULTI, None, {}, n_boot=10)
    # old: confusion_matrix.png and reliability.png of the binary run stayed beside the multi-label report
    assert sorted(p.name for p in out.iterdir()) == sorted(res["files"] + ["extra", "notes.txt"])
    assert (out / "notes.txt").read_text() == "mine"


def test_a_half_written_report_without_results_json_is_cleared_too(tmp_path):
    out = tmp_path / "rep"
    out.mkdir()
    (out / "confusion_matrix.png").write_bytes(b"old")  # a binary run that stopped before its results.json
    res = write_classification_report(out, np.array([[0, 1], [1, 0], [1, 1], [0, 0]]),
                                      np.random.default_rng(1).random((4, 2)), MULTI, None, {}, n_boot=10)
    assert sorted(p.name for p in out.iterdir()) == sorted(res["files"])


def test_start_report_dir_removes_what_the_earlier_report_lists_and_the_callers_names_only(tmp_path):
    out = tmp_path / "rep"
    outside = tmp_path / "outside"
    (out / "sub").mkdir(parents=True)
    outside.mkdir()
    (out / "link").symlink_to(outside, target_is_directory=True)
    for name in ("a.png", "sub/b.png", "own.md", "keep.txt", "sub/keep.png"):
        (out / name).write_text("x")
    (outside / "x.png").write_text("theirs")
    (tmp_path / "up.txt").write_text("theirs")
    listed = ["a.png", "sub/b.png", "../up.txt", str(tmp_path / "up.txt"), "link/x.png", "sub", "missing.png", 3]
    (out / "results.json").write_text(json.dumps({"kind": "classification", "files": listed}))
    assert start_report_dir(out, ("own.md", "results.json")) == out
    left = sorted(str(p.relative_to(out)) for p in out.rglob("*"))
    assert left == ["keep.txt", "link", "sub", os.path.join("sub", "keep.png")]
    assert (outside / "x.png").read_text() == "theirs" and (tmp_path / "up.txt").read_text() == "theirs"


def test_start_report_dir_trusts_only_a_medfm_reports_file_list(tmp_path):
    out = tmp_path / "rep"
    out.mkdir()
    (out / "data.csv").write_text("x")
    (out / "results.json").write_text(json.dumps({"files": ["data.csv"]}))  # no "kind": another tool's file
    start_report_dir(out)
    assert sorted(p.name for p in out.iterdir()) == ["data.csv"]
    (out / "results.json").write_text("not json")
    start_report_dir(out)
    assert sorted(p.name for p in out.iterdir()) == ["data.csv"]


def test_start_report_dir_refuses_one_string_as_its_names(tmp_path):
    with pytest.raises(ValueError, match=r"^own must be a list of file names, got .roc\.png. \(str\)$"):
        start_report_dir(tmp_path / "rep", "roc.png")
    assert not (tmp_path / "rep").exists()


# -- 4: make_dir(path, advice=..., target=...) -----------------------------------------------------------------
def test_make_dir_words_the_file_in_the_way_from_advice_and_target(tmp_path):
    (tmp_path / "f").write_text("keep")
    blocker = repr(str(tmp_path / "f"))
    with pytest.raises(NotADirectoryError, match=f"^cannot write {re.escape(repr(str(tmp_path / 'f' / 'a')))}: "
                                                 f"{re.escape(blocker)} is a file, not a folder; do this$"):
        make_dir(tmp_path / "f" / "a", advice="do this")
    target = tmp_path / "f" / "a" / "x.nii"
    with pytest.raises(NotADirectoryError, match=f"^cannot write {re.escape(repr(str(target)))}: "
                                                 f"{re.escape(blocker)} is a file, not a folder$"):
        make_dir(target.parent, target=target)
    with pytest.raises(NotADirectoryError, match=f"; {REPORT_FOLDER_ADVICE}$"):  # its callers' words, unchanged
        make_output_dir(tmp_path / "f")
    assert make_dir(tmp_path / "new" / "dir", advice="x") == tmp_path / "new" / "dir"


# -- 3: zero-shot checks that need only the flag come before the checkpoint ----------------------------------
@pytest.mark.parametrize("flag, kwargs, error, message", [
    ("pneumoniamnist", {"prompts": [["a"], ["b"], ["c"]]}, ValueError,
     "^3 prompt lists given but pneumoniamnist has 2 classes$"),
    ("chestmnist", {}, ValueError, "supports single-label 2D sets; chestmnist is multi-label$"),
    ("adrenalmnist3d", {}, ValueError, "supports single-label 2D sets; adrenalmnist3d is 3D$"),
    ("pneumoniamnst", {}, UnknownDatasetError, "pneumoniamnist"),
    ("pneumoniamnist", {"size": 100}, UnsupportedSizeError, "100"),
])
def test_zeroshot_eval_checks_the_flag_before_the_checkpoint(tmp_path, flag, kwargs, error, message):
    # old: the checkpoint was resolved and loaded first (here: "does not exist"), and the data set read
    with pytest.raises(error, match=message):
        zeroshot_eval(str(tmp_path / "no_checkpoint"), flag, output=tmp_path / "zs", **kwargs)
    assert not (tmp_path / "zs").exists()


# -- 5: select_probe_c checks its features once -----------------------------------------------------------------
def test_select_probe_c_checks_the_features_once_and_scores_as_fit_linear_probe(monkeypatch):
    rng = np.random.default_rng(0)
    xtr, xva = rng.normal(size=(40, 5)), rng.normal(size=(20, 5))
    ytr, yva = (xtr[:, 0] > 0).astype(int), (xva[:, 0] > 0).astype(int)
    grid = (0.01, 0.1, 1.0, 10.0)
    want = {c: float((protocols.fit_linear_probe(xtr, ytr, "binary-class", 2, C=c).predict(xva).argmax(1)
                      == yva).mean()) for c in grid}
    calls = []
    check = protocols.check_features
    monkeypatch.setattr(protocols, "check_features", lambda *a, **k: calls.append(a[1]) or check(*a, **k))
    best, accs = protocols.select_probe_c(xtr, ytr, xva, yva, "binary-class", 2, grid=grid)
    assert accs == want and best == max(grid, key=lambda c: (want[c], -c))
    assert sorted(calls) == ["features", "train features"]  # old: both once per C (8 calls)
    bad = xva.copy()
    bad[0, 0] = np.nan
    calls.clear()
    with pytest.raises(ValueError, match="^features contain 1 NaN/inf value"):
        protocols.select_probe_c(xtr, ytr, bad, yva, "binary-class", 2, grid=grid)


def test_save_overlay_names_the_file_in_the_way_of_its_folder(tmp_path):
    from medfm.evaluation.segmentation import save_overlay

    (tmp_path / "overlays").write_text("keep")  # old: mkdir's "[Errno 17] File exists: '<tmp>/overlays'"
    target = tmp_path / "overlays" / "case.png"
    mask = np.zeros((4, 4), dtype=bool)
    blocker = re.escape(repr(str(tmp_path / "overlays")))
    with pytest.raises(NotADirectoryError, match=f"^cannot write {re.escape(repr(str(target)))}: "
                                                 f"{blocker} is a file, not a folder$"):
        save_overlay(target, np.zeros((4, 4)), mask, mask)
    assert save_overlay(tmp_path / "a" / "b.png", np.zeros((4, 4)), mask, mask).is_file()
