"""Every Trainer run draws ``training_curve.png`` next to ``metrics.jsonl`` (once, when the fit ends)."""
from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

import medfm.evaluation.plots as plots
from medfm.training.loop import Trainer, read_metrics_log
from tests.conftest import TinyPairs, Killed, kill_after_first_mid_epoch_checkpoint, save_state_dict, tiny_train_config

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def figures(monkeypatch):
    """The figures handed to ``save_figure`` (still written), to check what the panels show."""
    seen = []
    real = plots.save_figure

    def keep(fig, path):
        seen.append(fig)
        return real(fig, path)

    monkeypatch.setattr(plots, "save_figure", keep)
    return seen


def _panels(fig):
    """{y label: {legend label or y label: (xs, ys)}} of a figure's axes (faint raw lines under a mean skipped)."""
    out = {}
    for ax in fig.axes:
        lines = {}
        for line in ax.get_lines():
            label = line.get_label()
            lines[ax.get_ylabel() if label.startswith("_") else label] = (list(line.get_xdata()), list(line.get_ydata()))
        out[ax.get_ylabel()] = lines
    return out


# -- the reader -------------------------------------------------------------------------------------
def test_reader_skips_a_truncated_last_line_and_refuses_a_bad_line_inside(tmp_path):
    log = tmp_path / "metrics.jsonl"
    log.write_text('{"step": 1, "loss": 0.9}\n\n{"step": 2, "loss": 0.8}\n{"step": 3, "lo')
    assert read_metrics_log(log) == [{"step": 1, "loss": 0.9}, {"step": 2, "loss": 0.8}]
    log.write_text('{"step": 1, "loss": 0.9}\n{"step": 2, "lo\n{"step": 3, "loss": 0.7}\n')
    with pytest.raises(ValueError, match="metrics.jsonl:2"):
        read_metrics_log(log)


# -- the figure -------------------------------------------------------------------------------------
def _rows(n=60):
    return [{"step": s, "epoch": 1 + s // 30, "lr": 1e-3 * s / n, "loss": 2.0 / s, "acc": s / n,
             "img_per_s": 500.0, "time": 1000.0 + s} for s in range(1, n + 1)]


def test_curve_draws_loss_lr_and_metrics_on_their_own_panels(tmp_path, figures):
    out = plots.plot_training_curve(_rows(), tmp_path / "c.png")
    assert out.read_bytes()[:8] == PNG
    panels = _panels(figures[-1])
    assert list(panels) == ["loss", "learning rate", "acc"]  # img_per_s, time, epoch: not curves
    assert panels["acc"]["acc"][0] == list(range(1, 61))  # a panel of one series is labelled with its name
    # 60 noisy points: the loss is drawn raw (faint) under its moving average
    assert any(label.endswith("mean)") for label in panels["loss"])


def test_curve_tolerates_missing_keys_nan_repeated_steps_and_other_scales(tmp_path, figures):
    rows = _rows(10)
    for r in rows[::2]:
        del r["acc"]  # e.g. only some rows carry a metric
    rows[3]["acc"] = math.nan
    rows.append({"step": 10, "epoch": 1, "val_auc": 0.75})  # an epoch-end row shares its step with a step row
    rows.append({"step": 6, "epoch": 1, "loss": 5.0, "logit_scale": 14.3})  # a resumed log: step 6 again, last wins
    plots.plot_training_curve(rows, tmp_path / "c.png")
    panels = _panels(figures[-1])
    assert panels["metric"]["acc"] == ([2.0, 6.0, 8.0, 10.0], [0.2, 0.6, 0.8, 1.0])  # step 4: NaN, skipped
    assert panels["metric"]["val_auc"] == ([10.0], [0.75])
    assert panels["loss"]["loss"][1][5] == 5.0 and panels["loss"]["loss"][0][-1] == 10.0  # step 10's loss kept too
    assert panels["logit_scale"]["logit_scale"] == ([6.0], [14.3])  # not in [0, 1]: its own panel


def test_curve_of_a_single_row_draws_dots(tmp_path, figures):
    plots.plot_training_curve([{"step": 1, "epoch": 1, "lr": 1e-3, "loss": 0.7}], tmp_path / "c.png")
    assert (tmp_path / "c.png").read_bytes()[:8] == PNG
    line = figures[-1].axes[0].get_lines()[0]
    assert list(line.get_ydata()) == [0.7] and line.get_marker() == "o"


def test_curve_without_any_series_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="no numeric series"):
        plots.plot_training_curve([{"step": 1, "time": 3.0, "note": "x"}], tmp_path / "c.png")
    assert not (tmp_path / "c.png").exists()


def test_vqa_curve_keeps_its_two_panels(tmp_path, figures):
    from medfm.training.vqa import _plot_curve

    log = [{"epoch": e, "step": 3 * e, "loss": 1.0 / e, "lr": 1e-3,
            "test_acc_curve_only": {"closed": 0.5, "open": 0.1, "acc": 0.3}} for e in (1, 2, 3)]
    _plot_curve(log, tmp_path / "training_curve.png")
    loss_ax, acc_ax = figures[-1].axes
    assert (loss_ax.get_xlabel(), loss_ax.get_ylabel()) == ("epoch", "train loss")
    assert list(loss_ax.get_lines()[0].get_xdata()) == [1.0, 2.0, 3.0]
    assert [ln.get_label() for ln in acc_ax.get_lines()] == ["closed", "open", "acc"]


# -- the Trainer ------------------------------------------------------------------------------------
def _tiny():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))


def _step(model, batch, gen):
    logits = model(batch["x"])
    return {"loss": nn.functional.cross_entropy(logits, batch["y"]),
            "acc": (logits.argmax(1) == batch["y"]).float().mean().detach()}


def test_a_fit_draws_its_curve_next_to_metrics_jsonl(tmp_path, figures):
    run = tmp_path / "run"
    Trainer(_tiny(), _step, TinyPairs(), tiny_train_config(), run, save_state_dict,
            epoch_end_fn=lambda m, e: {"val_acc": 0.5 + e / 10}).fit()
    assert (run / "training_curve.png").read_bytes()[:8] == PNG
    assert len(figures) == 1  # drawn once, at the end
    panels = _panels(figures[0])
    assert panels["loss"]["loss"][0] == [float(s) for s in range(1, 9)]
    assert panels["metric"]["val_acc"] == ([4.0, 8.0], [0.5, 0.6])  # with the step rows' acc, at the epoch ends
    assert {"acc", "val_acc"} <= set(panels["metric"])


def test_a_fit_that_raises_draws_no_curve_and_its_resume_does(tmp_path, figures, monkeypatch):
    run = tmp_path / "run"
    restore = kill_after_first_mid_epoch_checkpoint(monkeypatch)
    with pytest.raises(Killed):
        Trainer(_tiny(), _step, TinyPairs(), tiny_train_config(), run, save_state_dict).fit()
    assert (run / "metrics.jsonl").is_file() and not (run / "training_curve.png").exists() and not figures
    restore()
    Trainer(_tiny(), _step, TinyPairs(), tiny_train_config(), run, save_state_dict).fit(resume=True)
    assert (run / "training_curve.png").read_bytes()[:8] == PNG
    assert _panels(figures[0])["loss"]["loss"][0] == [float(s) for s in range(1, 9)]  # the trimmed log, no repeats
    assert [json.loads(ln)["step"] for ln in (run / "metrics.jsonl").read_text().splitlines()] == list(range(1, 9))

    def nan_step(model, batch, gen):
        return {"loss": torch.tensor(float("nan"), requires_grad=True)}

    with pytest.raises(ValueError):
        Trainer(_tiny(), nan_step, TinyPairs(), tiny_train_config(), tmp_path / "nan", save_state_dict).fit()
    assert not (tmp_path / "nan" / "training_curve.png").exists()
