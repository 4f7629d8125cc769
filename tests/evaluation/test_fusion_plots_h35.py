"""The two missing-modality protocols' reports share one subsets figure and one interval format.

- ``plot_subsets`` (classification: AUC per subset) and ``plot_seg_subsets`` (segmentation: Dice per subset) were
  two copies of one figure (8 x 4.5 in and 45-degree labels for Dice, 10 x 4.8 in and 60 degrees for AUC); both now
  draw with :func:`medfm.evaluation.fusion_report.plot_subset_metric`, which differs only by the metric, the axis
  label, the title and the reference line (chance 0.5 for AUC, none for Dice).
- The segmentation report printed an undefined (NaN) Dice interval as ``nan-nan``, the classification report as
  ``n/a``; both use :func:`medfm.evaluation.fusion_report.format_ci` now.
- ``predict_probs`` reads :func:`medfm.evaluation.fusion.predict_rows` directly (guard: the same column as before).
"""
from __future__ import annotations

import numpy as np
import pytest

import medfm.evaluation.fusion as FU
import medfm.evaluation.fusion_report as FR
import medfm.evaluation.fusion_seg as FS
from tests.helpers.margin_model import MarginModel, margin_batch  # logits [0, margin]

NAN = float("nan")


def _rows(metric):
    """Two subsets, two models (the second misses subset ``b``), values 0.1 * (1 + index)."""
    keys = [("a", "fused"), ("a", "late"), ("b", "fused")]
    return [{"subset": s, "model": m, metric: 0.1 * (i + 1), f"{metric}_ci95": [0.0, 1.0], "n": 4, "n_patients": 2}
            for i, (s, m) in enumerate(keys)]


def _drawn(monkeypatch, path, plot, res):
    """The figure ``plot`` hands to ``save_figure`` (saved to ``path`` as usual)."""
    import medfm.evaluation.plots as plots

    figs = []
    real = plots.save_figure
    monkeypatch.setattr(plots, "save_figure", lambda fig, to: figs.append(fig) or real(fig, to))
    assert plot(res, path) == path
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    monkeypatch.undo()
    (fig,) = figs
    return fig


def test_both_protocols_draw_the_same_figure_but_for_metric_label_title_and_reference(monkeypatch, tmp_path):
    """AUC and Dice figures of the same rows: same size, layout, points; their own y label and title; the dotted
    chance line (0.5) for AUC only. The Dice figure was 8 x 4.5 in with 45-degree, size-8 labels."""
    figs = {}
    for name, plot, metric in (("auc", FR.plot_subsets, "auc"), ("dice", FS.plot_seg_subsets, "dice")):
        fig = _drawn(monkeypatch, tmp_path / f"{name}.png", plot, {"subsets": _rows(metric)})
        ax = fig.axes[0]
        series = {line.get_label(): (list(line.get_xdata()), list(line.get_ydata())) for line in ax.lines
                  if line.get_marker() not in (None, "None", "")}
        hlines = [list(line.get_ydata()) for line in ax.lines if line.get_marker() in (None, "None", "")]
        ticks = ax.get_xticklabels()
        figs[name] = {"size": tuple(fig.get_size_inches()), "series": series, "hlines": hlines,
                      "ticks": [(t.get_text(), t.get_rotation(), t.get_fontsize()) for t in ticks],
                      "ylabel": ax.get_ylabel(), "title": ax.get_title()}
    auc, dice = figs["auc"], figs["dice"]
    assert dice["size"] == auc["size"] == (10.0, 4.8)  # the Dice figure was (8.0, 4.5)
    assert dice["ticks"] == auc["ticks"] == [("a", 60.0, 7.0), ("b", 60.0, 7.0)]  # Dice was 45 degrees, size 8
    assert auc["series"] == dice["series"]
    assert auc["series"]["fused"][1] == pytest.approx([0.1, 0.3]) and auc["series"]["late"][1] == pytest.approx([0.2])
    assert auc["series"]["fused"][0] == pytest.approx([-0.175, 0.825]) and auc["series"]["late"][0] == [0.175]
    assert auc["hlines"] == [[0.5, 0.5]] and dice["hlines"] == []  # chance line for AUC only
    assert (auc["ylabel"], dice["ylabel"]) == ("test AUC", "mean per-patient Dice")
    assert (auc["title"], dice["title"]) == ("AUC per modality subset at test time",
                                             "Dice per image-modality subset at test time")


def test_plot_subset_metric_names_a_metric_the_rows_lack(tmp_path):
    with pytest.raises(ValueError, match=r"a subsets row has no 'dice' value to plot \(its keys: \['auc'"):
        FR.plot_subset_metric({"subsets": _rows("auc")}, tmp_path / "x.png", "dice", "Dice", "t")
    assert not (tmp_path / "x.png").exists()


def test_format_ci_writes_three_decimals_or_na():
    assert FR.format_ci([0.61234, 0.93149]) == "0.612-0.931"
    assert FR.format_ci((np.float64(0.5), np.float32(1.0))) == "0.500-1.000"
    assert FR.format_ci([NAN, NAN]) == FR.format_ci([None, None]) == FR.format_ci([0.2, NAN]) == "n/a"
    with pytest.raises(ValueError, match=r"a 95% interval must be a pair \[lo, hi\], got \[0.1\]"):
        FR.format_ci([0.1])
    assert FU.format_ci is FR.format_ci and FS.format_ci is FR.format_ci  # one formatter for both protocols


def _seg_result(ci):
    return {"subsets": _rows("dice"), "checks": {},
            "natural": [{"model": "fused", "dice": 0.65, "dice_ci95": ci, "n": 50, "n_patients": 1}]}


def test_seg_report_prints_an_undefined_interval_as_na_like_the_classification_report():
    """A NaN Dice interval (n_boot 0) was ``nan-nan``; the classification report's ``n/a`` now."""
    text = FS.render_seg_markdown(_seg_result([NAN, NAN]))
    assert "| fused | 0.650 | n/a | 50 | 1 |" in text and "nan" not in text
    assert "| fused | 0.650 | 0.300-0.700 | 50 | 1 |" in FS.render_seg_markdown(_seg_result([0.3, 0.7]))  # guard
    cls = FR.render_markdown({"subsets": _rows("auc"), "checks": {}, "mcar": [], "mnar": [],
                              "natural": [{"model": "fused", "auc": 0.65, "auc_ci95": [NAN, NAN], "acc": 0.5,
                                           "n": 50}]})
    assert "| fused | 0.650 | n/a | 0.500 | 50 |" in cls  # guard: as before


def test_predict_probs_is_column_one_of_predict_rows():
    """Guard: the positive-class column of the probability rows, bit for bit, in chunks too."""
    batch = margin_batch([0.5, -1.0, 2.0, 7.0, -3.0], [0, 1, 1, 0, 1])
    probs, _ = FU.predict_rows(MarginModel(), batch)
    got = FU.predict_probs(MarginModel(), batch, batch_size_=2)
    assert got.dtype == np.float32 and np.array_equal(got, probs[:, 1])
