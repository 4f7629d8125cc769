"""medfm.evaluation.report: files written, results.json schema, markdown tables, hashes."""
import hashlib
import json

import numpy as np
import pytest

from medfm.evaluation import (
    SCHEMA_VERSION,
    bootstrap_ci,
    checkpoint_hash,
    classification_metrics,
    markdown_table,
    write_classification_report,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _preds(n=120, k=3, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, size=(n, 1))
    z = rng.normal(size=(n, k))
    z[np.arange(n), y[:, 0]] += 1.2
    e = np.exp(z)
    return y, e / e.sum(axis=1, keepdims=True)


def test_multiclass_report_writes_all_files(tmp_path):
    y, s = _preds()
    out = tmp_path / "eval"
    meta = {"checkpoint": "runs/x/checkpoint", "checkpoint_sha256": "ab" * 32, "dataset": "toymnist",
            "split": "test", "data_md5": "0" * 32}
    res = write_classification_report(out, y, s, "multi-class", ["cat", "dog", "eel"], meta, n_boot=200)
    names = sorted(p.name for p in out.iterdir())
    assert names == ["confusion_matrix.png", "reliability.png", "report.md", "results.json", "roc.png"]
    for png in ("confusion_matrix.png", "roc.png", "reliability.png"):
        data = (out / png).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 1000
    loaded = json.loads((out / "results.json").read_text())
    assert loaded == res
    assert loaded["schema_version"] == SCHEMA_VERSION
    assert loaded["meta"] == meta
    assert loaded["versions"]["medfm"] and loaded["versions"]["torch"]
    assert loaded["created"].endswith("+00:00")
    ref = classification_metrics(y, s, "multi-class")
    assert loaded["metrics"]["acc"] == ref["acc"] and loaded["metrics"]["auc"] == ref["auc"]
    assert loaded["label_names"] == ["cat", "dog", "eel"]
    assert list(loaded["metrics"]["per_class_recall"]) == ["cat", "dog", "eel"]
    ci = loaded["ci"]["acc"]
    assert (ci["low"], ci["high"]) == bootstrap_ci(y, s, "multi-class", "acc", n_boot=200, seed=0)
    assert ci["low"] <= ref["acc"] <= ci["high"] and ci["level"] == pytest.approx(0.95)
    assert 0 <= loaded["metrics"]["ece"] <= 1 and loaded["calibration"]["n_bins"] == 15
    md = (out / "report.md").read_text()
    assert "| ACC | " + format(ref["acc"], ".4f") in md
    assert "toymnist" in md and "![roc](roc.png)" in md and "| eel |" in md


def test_binary_report_keeps_other_files_and_overwrites(tmp_path):
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 80)
    p = np.clip(0.3 * y + 0.7 * rng.random(80), 0, 1)
    (tmp_path / "config.yaml").write_text("keep: me\n")
    write_classification_report(tmp_path, y, np.stack([1 - p, p], 1), "binary-class", None, {}, n_boot=50)
    res = write_classification_report(tmp_path, y, p, "binary-class", ["neg", "pos"], {"split": "val"},
                                      n_boot=50)
    assert (tmp_path / "config.yaml").read_text() == "keep: me\n"
    assert res["metrics"]["confusion_matrix"] is not None and list(res["metrics"]["per_class_auc"]) == ["pos"]
    assert json.loads((tmp_path / "results.json").read_text())["meta"] == {"split": "val"}
    assert not [f for f in tmp_path.iterdir() if f.name.startswith(".")]  # no temp files left


def test_multilabel_report_with_undefined_auc(tmp_path):
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, size=(60, 3))
    y[:, 2] = 0  # label 2 never positive: AUC undefined
    s = rng.random((60, 3))
    res = write_classification_report(tmp_path, y, s, "multi-label, binary-class", ["a", "b", "c"], {}, n_boot=50)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.md", "results.json", "roc.png"]
    assert res["metrics"]["per_class_auc"]["c"] is None  # NaN -> null in strict JSON
    assert res["calibration"] is None and res["metrics"]["ece"] is None
    assert res["warnings"] and "## Warnings" in (tmp_path / "report.md").read_text()
    assert "NaN" not in (tmp_path / "results.json").read_text()


def test_report_bad_input_writes_nothing(tmp_path):
    y, s = _preds()
    out = tmp_path / "eval"
    with pytest.raises(ValueError, match="did you mean"):
        write_classification_report(out, y, s, "multi-clas", None, {})
    with pytest.raises(TypeError, match="cannot convert"):
        write_classification_report(out, y, s, "multi-class", None, {"model": object()})
    with pytest.raises(ValueError, match="NaN"):
        write_classification_report(out, y, np.full_like(s, np.nan), "multi-class", None, {})
    assert not out.exists()


def test_markdown_table():
    rows = [{"name": "a|b", "acc": 0.91234, "auc": float("nan")}, {"name": "c", "acc": 1, "note": "x\ny"}]
    md = markdown_table(rows, {"name": "model", "acc": "ACC", "auc": "AUC", "note": "note"})
    assert md.splitlines() == [
        "| model | ACC | AUC | note |",
        "|---|---|---|---|",
        "| a\\|b | 0.9123 | n/a |  |",
        "| c | 1 |  | x y |",
    ]
    assert markdown_table([{"x": 0.5}], ["x"], floatfmt=".1%").splitlines()[-1] == "| 50.0% |"
    with pytest.raises(ValueError, match="at least one column"):
        markdown_table(rows, [])


def test_checkpoint_hash(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"weights")
    assert checkpoint_hash(tmp_path) == hashlib.sha256(b"weights").hexdigest()
    lora = tmp_path / "lora"
    lora.mkdir()
    (lora / "adapter_model.safetensors").write_bytes(b"adapter")
    assert checkpoint_hash(lora) == hashlib.sha256(b"adapter").hexdigest()
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="holds no model.safetensors"):
        checkpoint_hash(empty)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        checkpoint_hash(tmp_path / "missing")



def test_a_field_in_meta_and_in_the_report_is_one_row(tmp_path):
    """``medfm eval --data`` passes ``n_samples`` in ``meta``; report.md listed it twice."""
    y = np.array([0, 1, 0, 1, 1, 0])
    p = np.array([0.2, 0.8, 0.4, 0.7, 0.6, 0.1])
    write_classification_report(tmp_path, y, p, "binary-class", ["neg", "pos"], {"split": "test", "n_samples": 6},
                                n_boot=20)
    text = (tmp_path / "report.md").read_text()
    assert text.count("| n_samples |") == 1 and "| n_samples | 6 |" in text and "| split | test |" in text
