"""medfm.evaluation rough edges: wrong argument types named, a half-written report folder, ECE bin edges."""
import json
import re

import numpy as np
import pytest
import torch

from medfm.evaluation import metrics
from medfm.evaluation.calibration import expected_calibration_error


def test_markdown_table_refuses_a_string_or_set_of_columns():
    from medfm.evaluation.report import markdown_table

    rows = [{"a": 1, "b": 2, "ab": 3}]
    for bad, got in (("ab", r"'ab' \(str\)"), ({"a", "b"}, r".* \(set\)"), ([1, 2], r"\[1, 2\]")):  # "ab": a, b
        with pytest.raises(ValueError, match=r"^columns must be a list of column keys or a \{key: header\} "
                                             rf"mapping, got {got}$"):
            markdown_table(rows, bad)
    assert markdown_table(rows, ["ab"]).splitlines()[-1] == "| 3 |"
    assert markdown_table(rows, ("a", "b")).splitlines()[0] == "| a | b |"
    assert markdown_table(rows, {"a": "A"}).splitlines()[0] == "| A |"


@pytest.mark.parametrize("rows, got", [
    ({"step": 1, "loss": 0.5}, "got dict$"),  # one record: AttributeError 'str' object has no attribute 'get'
    (["step"], "got str at index 0$"),
    ([{"step": 1, "loss": 0.5}, None], "got NoneType at index 1$"),
    (None, "got NoneType$"),
])
def test_training_curves_name_rows_that_are_no_list_of_records(tmp_path, rows, got):
    from medfm.evaluation.plots import draw_series, new_figure, plot_training_curve

    with pytest.raises(TypeError, match=r"^rows must be a list of log records \(dicts, e.g. metrics.jsonl lines\), "
                                        + got):
        plot_training_curve(rows, tmp_path / "c.png")
    with pytest.raises(TypeError, match="^rows must be a list of log records"):
        draw_series(new_figure().add_subplot(1, 1, 1), rows, ["loss"])
    assert not (tmp_path / "c.png").exists()


def test_reliability_diagram_names_a_cal_that_is_no_calibration(tmp_path):
    from medfm.evaluation.plots import plot_reliability

    cal = expected_calibration_error(np.array([0, 1, 1]), np.array([0.2, 0.7, 0.9]))
    for bad in (cal.to_dict(), None):  # AttributeError: 'dict' object has no attribute 'bin_edges'
        with pytest.raises(TypeError, match=r"^cal must be a Calibration \(from expected_calibration_error\), got "):
            plot_reliability(bad, tmp_path / "r.png")
    assert not (tmp_path / "r.png").exists()
    assert plot_reliability(cal, tmp_path / "r.png").is_file()


@pytest.mark.parametrize("prefix, shown", [(2.5, "2.5"), (-1, "-1"), (True, "True (bool)"), ("1", "'1' (str)")])
def test_tokens_to_grid_refuses_a_prefix_that_is_no_count(prefix, shown):
    from medfm.evaluation.cam import tokens_to_grid

    # 2.5: TypeError 'float' object cannot be interpreted as an integer; -1: reshape's RuntimeError; True: 1
    with pytest.raises(ValueError, match=f"^{re.escape(f'prefix must be an integer >= 0, got {shown}')}$"):
        tokens_to_grid(torch.zeros(1, 17, 4), prefix=prefix)
    assert tokens_to_grid(torch.zeros(1, 17, 4), prefix=np.int64(1)).shape == (1, 4, 4, 4)


def test_evaluate_checkpoint_checks_batch_size_before_loading(tmp_path):
    from medfm.evaluation.evaluate import evaluate_checkpoint

    # was the missing checkpoint's error: batch_size was checked only once model and data were loaded
    with pytest.raises(ValueError, match=r"^batch_size must be an integer >= 1, got 0$"):
        evaluate_checkpoint(str(tmp_path / "no-such-checkpoint"), "pneumoniamnist", batch_size=0)


@pytest.mark.parametrize("errors, clean, match", [
    ({"pixelate": [0.1, float("nan")]}, 0.05, r"errors of 'pixelate' must be a non-empty list of finite numbers"),
    ({"pixelate": [0.1, 0.2]}, float("nan"), r"clean_error must be a finite number, got nan"),
])
def test_error_vs_severity_refuses_nan(tmp_path, errors, clean, match):
    from medfm.evaluation.robustness import plot_error_vs_severity

    with pytest.raises(ValueError, match=match):  # NaN was drawn as a gap in the line, without a word
        plot_error_vs_severity(errors, clean, tmp_path / "s.png")
    assert not (tmp_path / "s.png").exists()


def test_a_report_stopped_half_way_leaves_no_earlier_results_json(tmp_path, monkeypatch):
    import medfm.evaluation.report as report

    rng = np.random.default_rng(0)
    y, p = rng.integers(0, 2, 40), rng.random(40)
    report.write_classification_report(tmp_path, y, p, "binary-class", None, {"run": 1}, n_boot=10)
    assert json.loads((tmp_path / "results.json").read_text())["meta"] == {"run": 1}

    def stop(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(report, "plot_reliability", stop)
    with pytest.raises(OSError, match="disk full"):
        report.write_classification_report(tmp_path, y, 1 - p, "binary-class", None, {"run": 2}, n_boot=10)
    # run 2's confusion matrix and ROC are written: run 1's results.json must not describe them
    assert not (tmp_path / "results.json").exists()
    monkeypatch.undo()
    res = report.write_classification_report(tmp_path, y, 1 - p, "binary-class", None, {"run": 2}, n_boot=10)
    assert json.loads((tmp_path / "results.json").read_text()) == res


def test_metrics_exports_the_helpers_other_modules_import():
    for name in ("prepare_scores", "one_vs_rest", "weighted_auc", "thresholded_predictions", "balanced_accuracy",
                 "to_numpy"):
        assert name in metrics.__all__ and callable(getattr(metrics, name))


def test_ece_bin_edges_are_m_over_m_and_a_confidence_on_an_edge_falls_below_it():
    n = 98  # np.linspace(0, 1, 99) is an ulp off m / 98 for 48 of the edges
    c = np.arange(1, n + 1) / n  # one confidence on each upper edge m / 98
    cal = expected_calibration_error(np.zeros(n, int), np.stack([c, np.zeros(n)], 1), n_bins=n, task="multi-class")
    assert cal.bin_edges.tolist() == [m / n for m in range(n + 1)]
    assert cal.bin_count.tolist() == [1] * n  # bin m holds ((m-1)/M, m/M]: each confidence in its own bin
    assert cal.ece == pytest.approx(float(np.mean(1 - c)))
    assert expected_calibration_error(np.array([0, 1]), np.array([0.3, 0.8])).bin_edges.tolist() == \
        np.linspace(0.0, 1.0, 16).tolist()  # the default 15 bins: the same edges as before


def test_check_mapping_list_is_the_one_rule_of_record_lists():
    from medfm.arg_checks import check_mapping_list

    # the rule markdown_table's rows and the training curves' log rows share (it was written out in each)
    assert check_mapping_list("rows", ({"a": i} for i in range(2)), what="records") == [{"a": 0}, {"a": 1}]
    for bad, got in (({"a": 1}, "dict"), ("ab", "str"), ([{}, 3], "int at index 1")):
        with pytest.raises(ValueError, match=f"^rows must be records, got {got}$"):
            check_mapping_list("rows", bad, what="records", error=ValueError)
