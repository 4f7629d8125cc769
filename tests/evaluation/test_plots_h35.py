"""``plot_training_curve`` checks its log rows once: it checked them, then :func:`draw_series` checked them again for
each panel (a log of N rows was walked 1 + panels times)."""
import pytest

ROWS = [{"step": 1, "epoch": 1, "loss": 0.9, "lr": 1e-3, "acc": 0.5},
        {"step": 2, "epoch": 1, "loss": 0.7, "lr": 5e-4, "acc": 0.75, "logit_scale": 3.0}]


@pytest.fixture()
def checks(monkeypatch):
    """The rows checks made through :func:`medfm.evaluation.plots.check_log_rows` (one entry per call)."""
    import medfm.evaluation.plots as plots

    seen = []
    real = plots.check_mapping_list

    def counting(*args, **kwargs):
        seen.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(plots, "check_mapping_list", counting)
    return seen


def test_a_training_curve_checks_its_rows_once_for_all_panels(tmp_path, checks):
    from medfm.evaluation.plots import plot_training_curve

    plot_training_curve(ROWS, tmp_path / "c.png")  # four panels: loss, lr, acc, logit_scale
    assert checks == ["rows"]  # was: 5 (once, then once per panel)
    assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_draw_series_alone_still_checks_its_rows(checks):
    """Guard: the public draw_series (medfm vqa's curve) checks the rows it is given, and draws the series that have
    points."""
    from medfm.evaluation.plots import draw_series, new_figure

    ax = new_figure().add_subplot(1, 1, 1)
    assert draw_series(ax, ROWS, ["loss", "logit_scale", "missing"], x="step", ylabel="y") == 2
    assert checks == ["rows"]
    assert [list(line.get_xdata()) for line in ax.get_lines()] == [[1.0, 2.0], [2.0]]
    with pytest.raises(TypeError, match=r"^rows must be a list of log records .*got dict$"):
        draw_series(ax, ROWS[0], ["loss"])
