"""plot_training_curve reads each series of the log rows once (it read each twice: to choose the panels and
to draw them)."""
import numpy as np

import medfm.evaluation.plots as plots


def test_each_series_is_read_once(tmp_path, monkeypatch):
    rows = [{"step": s, "loss": 1 / (1 + s), "lr": 1e-3, "acc": s / 60, "logit_scale": 1 + s, "time": 0.1}
            for s in range(60)] + [{"step": 59, "val_auc": 0.7}, {"step": 3, "loss": float("nan")}]
    reads = []
    series = plots._series
    monkeypatch.setattr(plots, "_series", lambda rows, key, x: reads.append(key) or series(rows, key, x))
    out = plots.plot_training_curve(rows, tmp_path / "curve.png", title="t")
    assert sorted(reads) == sorted(["loss", "lr", "acc", "logit_scale", "val_auc"])  # old: each twice
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_draw_series_draws_what_plot_training_curve_does():
    """Guard: the public draw_series still reads its rows itself (non-finite points and missing keys skipped)."""
    from medfm.evaluation.plots import draw_series, new_figure

    fig = new_figure((3, 2))
    ax = fig.add_subplot(1, 1, 1)
    rows = [{"epoch": e, "loss": 1.0 / (1 + e)} for e in range(4)] + [{"epoch": 4, "loss": float("inf")}]
    assert draw_series(ax, rows, ["loss", "missing"], x="epoch") == 1
    np.testing.assert_array_equal(ax.lines[0].get_xdata(), [0, 1, 2, 3])
