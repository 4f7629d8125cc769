"""The measurement scripts in ``benchmarks/``: bad arguments answered in one line (exit 2, before any
work or run folder), the printed table's columns on a tiny setting, and family_finetune's resume of a
pair cut off after its fine-tuning started. No timings are checked."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import benchmark_script

REPO = Path(__file__).resolve().parents[1]


TINY = ["--sizes", "28", "--batch-size", "2", "--steps", "1", "--no-memory"]


def test_throughput_benchmark_refuses_bad_arguments():
    from medfm.benchmark import compare_throughput

    with pytest.raises(ValueError, match="steps must be >= 1"):
        compare_throughput("resnet_test", batch_size=4, steps=0, precision="fp32")


@pytest.mark.parametrize("name, argv, message", [
    ("train_throughput", ["--steps", "0", "--batch-size", "4", "--precision", "fp32"], "steps must be >= 1"),
    ("train_throughput", ["--encoder", "resnt_test", "--precision", "fp32"], "did you mean 'resnet_test'"),
    ("encoders", ["--steps", "0", "--encoders", "resnet_test"], "--steps: must be >= 1, got 0"),
    ("kan_layers", ["--sections", "train", "--encoders", "resnt_test"], "did you mean 'resnet_test'"),
    ("kan_layers", ["--batch", "0"], "--batch: must be >= 1, got 0"),
    ("encoders", ["--encoders", "resnet3d_test", *TINY], "'resnet3d_test' is a 3D encoder"),
    ("encoders", ["--encoders", ",", *TINY], "no encoder named"),
    ("encoders", ["--encoders", "resnet_test", "--sizes", "abc"], "--sizes: expected an integer, got 'abc'"),
    ("encoders", ["--encoders", "resnet_test", "--sizes", "4", "--batch-size", "2", "--steps", "1", "--no-memory"],
     "img_size must be an integer >= 8, got 4"),
    ("encoders", ["--encoders", "resnet_test", "--reference", "resnt_test", *TINY], "did you mean 'resnet_test'"),
    ("encoders", ["--encoders", "resnet_test", "--warmup", "-1", *TINY], "--warmup: must be >= 0, got -1"),
    ("kan_layers", ["--sections", "train", "--encoders", "resnet3d_test", "--batch", "2", "--steps", "1"],
     "'resnet3d_test' is a 3D encoder"),
    ("train_throughput", ["--encoder", "resnet3d_test", "--batch-size", "2", "--steps", "1", "--precision", "fp32"],
     "'resnet3d_test' is a 3D encoder"),
    ("pretrain_determinism", ["--recipes", "pretrain/nope.yaml"], "--recipes: no recipe file pretrain/nope.yaml"),
    ("pretrain_determinism", ["--epochs", "0"], "--epochs: must be >= 1, got 0"),
])
def test_bad_arguments_exit_2_with_one_line(capsys, name, argv, message):
    with pytest.raises(SystemExit) as exc:
        benchmark_script(name).main(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and message in err.splitlines()[-1]


def test_encoders_table_has_the_documented_columns(capsys):
    benchmark_script("encoders").main(["--encoders", "resnet_test", "--reference", "resnet_test", *TINY])
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("|")]
    assert lines[0] == ("| encoder | px | params (M) | GFLOPs/img | train img/s fp32 | train img/s bf16 | "
                        "train fp32 vs resnet_test | infer img/s fp32 | infer img/s bf16 | peak MB (train fp32) |")
    row = [c.strip() for c in lines[2].strip("|").split("|")]
    assert row[:2] == ["resnet_test", "28"] and row[6] == "1.00" and row[9] == "nan"  # --no-memory
    assert all(float(c) > 0 for c in row[2:6] + row[7:9])


@pytest.mark.parametrize("argv, message", [
    (["--encoders", "resnt18"],
     "no recipe finetune/families/full_resnt18.yaml for encoder 'resnt18'; did you mean 'resnet18'?"),
    (["--datasets", "breastmnst"], "no shared-budget epochs for data set 'breastmnst'; did you mean 'breastmnist'?"),
    (["--encoders", ","], "--datasets and --encoders must each name at least one"),
    (["--threads", "0"], "--threads: must be >= 1, got 0"),
])
def test_family_finetune_bad_arguments_make_no_run_folder(tmp_path, capsys, argv, message):
    out = tmp_path / "fam"
    with pytest.raises(SystemExit) as exc:
        benchmark_script("family_finetune").main(["--output", str(out), *argv])
    assert exc.value.code == 2 and message in capsys.readouterr().err.splitlines()[-1]
    assert not out.exists()


def _fake_medfm(calls):
    """Stands in for ``family_finetune._medfm``: records the arguments, writes what each command would."""
    def medfm(args, env, log):
        calls.append(args)
        out = Path(args[args.index("--output") + 1])
        if args[0] == "finetune":
            (out / "model").mkdir(parents=True, exist_ok=True)
            (out / "model" / "config.json").write_text(json.dumps({"family": "cnn", "n_params": 11_170_000}))
        else:
            out.mkdir(parents=True)
            (out / "results.json").write_text(json.dumps({"metrics": {"acc": 0.75, "auc": 0.8125}, "ci": {}}))
    return medfm


def test_family_finetune_continues_a_pair_cut_off_after_training_started(tmp_path, monkeypatch):
    """A pair with a checkpoint but no eval/results.json used to be fine-tuned again without
    ``--resume``, which ``medfm finetune`` refuses (the output already holds a checkpoint)."""
    mod = benchmark_script("family_finetune")
    calls = []
    monkeypatch.setattr(mod, "_medfm", _fake_medfm(calls))
    state = tmp_path / "breastmnist" / "resnet18" / "checkpoint" / "trainer_state.json"
    state.parent.mkdir(parents=True)
    state.write_text("{}")
    mod.run_pair("resnet18", "breastmnist", tmp_path, {})
    mod.run_pair("vit_tiny", "breastmnist", tmp_path, {})
    assert [c[0] for c in calls] == ["finetune", "eval", "finetune", "eval"]
    assert "--resume" in calls[0] and "--resume" not in calls[2]
    assert json.loads((state.parents[1] / "timing.json").read_text())["resumed"] is True


def test_family_finetune_threads_train_from_a_recipe_copy_with_that_count(tmp_path, monkeypatch):
    """Every family recipe pins ``train.num_threads: 1``, which overrides ``OMP_NUM_THREADS``: ``--threads N``
    only set the environment, so the runs trained with 1 thread whatever N was."""
    import yaml

    mod = benchmark_script("family_finetune")
    calls = []
    monkeypatch.setattr(mod, "_medfm", _fake_medfm(calls))
    mod.run_pair("resnet18", "breastmnist", tmp_path / "a", {}, threads=3)
    mod.run_pair("resnet18", "breastmnist", tmp_path / "b", {})
    copy = tmp_path / "a" / "breastmnist" / "resnet18" / "recipe.yaml"
    assert calls[0][1] == str(copy) and calls[1][-2:] == ["--threads", "3"]
    want = yaml.safe_load(mod._recipe("resnet18").read_text())
    assert want["train"]["num_threads"] == 1
    want["train"]["num_threads"] = 3
    assert yaml.safe_load(copy.read_text()) == want  # the recipe, only the thread count changed
    assert calls[2][1] == str(mod._recipe("resnet18")) and "--threads" not in calls[3]


def test_family_finetune_table_columns_and_files(tmp_path, monkeypatch, capsys):
    mod = benchmark_script("family_finetune")
    monkeypatch.setattr(mod, "_medfm", _fake_medfm([]))
    mod.main(["--output", str(tmp_path), "--datasets", "breastmnist", "--encoders", "resnet18"])
    md = (tmp_path / "family_table.md").read_text()
    assert md.splitlines()[:3] == ["| encoder | family | params | breastmnist ACC | breastmnist AUC |",
                                   "|---|---|---|---|---|", "| resnet18 | cnn | 11.17M | 0.750 | 0.812 |"]
    assert md in capsys.readouterr().out
    assert json.loads((tmp_path / "family_table.json").read_text())[0]["acc"] == 0.75
    assert sorted(p.name for p in tmp_path.iterdir()) == ["breastmnist", "family_table.json", "family_table.md"]


@pytest.mark.parametrize("auto, expected", [("bf16", ["fp32", "bf16"]), ("no", ["fp32"])])
def test_train_throughput_auto_runs_fp32_once_where_autocast_is_fp32(monkeypatch, auto, expected):
    """``--precision auto`` ran fp32 and then "auto", which is fp32 again on a CPU without bf16."""
    module = benchmark_script("train_throughput")
    calls = []
    monkeypatch.setattr(module, "resolve_precision", lambda precision, device: auto)
    monkeypatch.setattr(module, "compare_throughput", lambda enc, size, bs, steps, precision: calls.append(precision))
    module.main(["--encoder", "resnet_test", "--steps", "1"])
    assert calls == expected


@pytest.mark.parametrize("warmup, steps, log_every", [(5, 20, 5), (5, 7, 1), (2, 4, 2)])
def test_medfm_loop_is_timed_between_logged_steps(monkeypatch, warmup, steps, log_every):
    """The Trainer logs every gcd(warmup, steps) steps (not every step: on a GPU each log is a
    device sync) and the rate spans exactly the ``steps`` after the warm-up."""
    import medfm.benchmark as bench

    seen = {}
    real = bench.Trainer

    class Spy(real):
        def __init__(self, model, step_fn, dataset, cfg, output, save_fn):
            seen["log_every"], seen["n"] = cfg.log_every, len(dataset)
            super().__init__(model, step_fn, dataset, cfg, output, save_fn)

        def _log(self, record):
            if "time" in record:  # a fixed clock: 1 s per step, so the rate is batch img/s
                record["time"] = float(record["step"])
            super()._log(record)

    monkeypatch.setattr(bench, "Trainer", Spy)
    rate = bench.medfm_loop_throughput("resnet_test", 8, 2, steps, False, warmup=warmup)
    assert seen == {"log_every": log_every, "n": 2 * (warmup + steps)}
    assert rate == pytest.approx(2.0)


def test_medfm_loop_needs_a_warmup_step():
    from medfm.benchmark import medfm_loop_throughput

    with pytest.raises(ValueError, match="warmup and steps must be >= 1, got warmup=0"):
        medfm_loop_throughput("resnet_test", 8, 2, 4, False, warmup=0)
