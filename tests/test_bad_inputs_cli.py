"""Bad input at the ``medfm`` command line and in recipes/suites: one line ``medfm: error: ...``,
exit 2, and no half-written output folder.

Each case used to print a traceback, exit 0 on a user error, fail only after training (or at
the first training step) with the run folder left behind, or give a misleading message. No
test here trains: every case fails while the recipe, the suite or the options are checked
(or a monkeypatched trainer fails at once).
"""
import json
import textwrap
from pathlib import Path

import pytest

from medfm.cli import main
from tests.conftest import cli_error

PRETRAIN = textwrap.dedent("""
    data: {dataset: pneumoniamnist, size: 28}
    encoder: {name: resnet_test}
    objective: {name: simclr, args: {hidden_dim: 32, proj_dim: 16}}
    train: {epochs: 1, batch_size: 16, lr: 1.0e-3, precision: fp32}
""")
FINETUNE = textwrap.dedent("""
    data: {dataset: pneumoniamnist, size: 28}
    encoder: {name: resnet_test}
    mode: lora
    train: {epochs: 1, batch_size: 16, lr: 1.0e-3, precision: fp32}
""")
SEGMENT = textwrap.dedent("""
    data: {dataset: chase_db1, patch: [32, 32], flip_axes: [0, 1]}
    encoder: {name: resnet_test}
    train: {epochs: 1, batch_size: 2, precision: fp32}
    eval: {overlap: 0.25, sw_batch_size: 4, overlays: 1, tolerance: 2.0}
""")
VQA = textwrap.dedent("""
    data: {size: 28, in_chans: 1}
    encoder: {name: resnet_test}
    text_encoder: {name: minilm}
    train: {epochs: 1, batch_size: 8, precision: fp32}
    top_k: 5
    n_boot: 10
""")
FUSE = textwrap.dedent("""
    data: {dataset: lgg_flair, img_size: 32}
    modalities: [pre, flair, post, clinical]
    image_encoder: {name: resnet_test}
    dim: 16
    models:
      late: {fuser: late_fusion_zero_fill}
    train: {epochs: 1, batch_size: 8, precision: fp32}
    protocol: {mcar_rates: [0.25], mnar_modalities: [pre, post], p_high: 0.8, p_low: 0.1, n_boot: 10}
""")
SUITE = textwrap.dedent("""
    name: s
    datasets:
      - {flag: pneumoniamnist, split: test}
    protocol: {name: knn, knn_k: 3}
    metrics: {n_boot: 10}
    cam: {enabled: false}
""")


@pytest.fixture
def empty_data(tmp_path, monkeypatch):
    """$MEDFM_DATA at an empty folder: a case that got past its check would fail on missing data."""
    root = tmp_path / "data"
    root.mkdir()
    monkeypatch.setenv("MEDFM_DATA", str(root))
    return root


def _edit(text: str, old: str, new: str) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


# ---------------------------------------------------------------- recipe files

def test_recipe_that_is_a_directory_or_binary_is_named(tmp_path, capsys, empty_data):
    """A directory was reported as "recipe not found"; a binary file as "'utf-8' codec can't
    decode byte 0xff ..." without naming the file."""
    folder = tmp_path / "recipes"
    folder.mkdir()
    code, err = cli_error(capsys, ["pretrain", folder, "--output", tmp_path / "out"])
    assert code == 2 and f"{folder} is a directory; pass a recipe file" in err
    binary = tmp_path / "r.yaml"
    binary.write_bytes(b"\xff\xfe\x00data")
    code, err = cli_error(capsys, ["finetune", binary, "--output", tmp_path / "out"])
    assert code == 2 and f"{binary}: not a UTF-8 text file" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("command, recipe", [("segment", SEGMENT), ("vqa", VQA), ("fuse", FUSE)])
def test_epochs_override_with_a_train_section_that_is_not_a_mapping(tmp_path, capsys, empty_data, command, recipe):
    """``--epochs`` with ``train: [1]`` raised TypeError (list indices must be integers) with a traceback."""
    r = tmp_path / "r.yaml"
    r.write_text(_edit(recipe, "train: {", "train: [1]\nx: {"))
    code, err = cli_error(capsys, [command, r, "--epochs", "1", "--output", tmp_path / "out"])
    assert code == 2 and "r.yaml.train must be a mapping of its settings, got [1]" in err
    assert not (tmp_path / "out").exists()


def test_epochs_override_fills_an_empty_train_section(tmp_path):
    """``train:`` left empty with ``--epochs``: TypeError ('NoneType' object does not support item
    assignment) for segment, vqa and fuse."""
    from medfm.config import with_overrides
    from medfm.training.vqa import load_vqa_recipe

    r = tmp_path / "r.yaml"
    r.write_text(_edit(VQA, "train: {epochs: 1, batch_size: 8, precision: fp32}", "train:"))
    assert load_vqa_recipe(r, epochs=3).train.epochs == 3
    data = {"train": None, "data": {"size": 28}}
    assert with_overrides(data, {"train": {"epochs": 2}, "data": {"size": None}}) == {"train": {"epochs": 2},
                                                                                      "data": {"size": 28}}
    assert data["train"] is None  # the input is not modified


# ---------------------------------------------------------------- pretrain / finetune recipes

@pytest.mark.parametrize("command, recipe, old, new, message", [
    ("pretrain", PRETRAIN, "{name: resnet_test}", "{name: resnet_test, img_size: 0}", "encoder.img_size must be an integer >= 1 (a side in px)"),
    ("finetune", FINETUNE, "mode: lora", "mode: lora\ndropout: 1.5", "r.yaml: dropout must be in [0, 1), got 1.5"),
    ("finetune", FINETUNE, "size: 28}", "size: 28, val_split: vall}",
     "data.val_split: unknown split 'vall' for MedMNIST 'pneumoniamnist'; did you mean 'val'?"),
])
def test_pretrain_finetune_values_checked_when_the_recipe_is_read(tmp_path, capsys, empty_data, command, recipe,
                                                                   old, new, message):
    """img_size 0 was silently the data's size (exit 0 after training); dropout 1.5 failed with
    torch's message naming no key; a bad val_split failed after config.yaml and base/ were written."""
    r = tmp_path / "r.yaml"
    r.write_text(_edit(recipe, old, new))
    code, err = cli_error(capsys, [command, r, "--output", tmp_path / "out"])
    assert code == 2 and message in err, err
    assert not (tmp_path / "out").exists()


def test_label_fraction_flag_is_named_as_the_flag(tmp_path, capsys, empty_data):
    """``--label-fraction 1.5`` was reported as ``r.yaml.data: data.label_fraction ...``."""
    r = tmp_path / "r.yaml"
    r.write_text(FINETUNE)
    code, err = cli_error(capsys, ["finetune", r, "--label-fraction", "1.5", "--output", tmp_path / "out"])
    assert code == 2 and "--label-fraction: label fractions must be in (0, 1], got [1.5]" in err and "r.yaml" not in err


# ---------------------------------------------------------------- segment / vqa / fuse recipes

_TASK_RECIPE_CASES = [
    ("segment", "flip_axes: [0, 1]", "flip_axes: [5]", "data.flip_axes must be spatial axes 0..1"),  # IndexError after training began
    ("segment", "patch: [32, 32]", "patch: [32, 32, 32]", "data.patch has 3 values"),
    ("segment", "sw_batch_size: 4", "sw_batch_size: 0", "eval.sw_batch_size must be an integer >= 1, got 0"),  # all three: after training
    ("segment", "overlays: 1", "overlays: -1", "eval.overlays must be an integer >= 0 (0: none), got -1"),
    ("segment", "tolerance: 2.0", "tolerance: -1", "eval.tolerance must be >= 0"),
    ("segment", "tolerance: 2.0}", "tolerance: 2.0, roi_size: [32]}", "eval.roi_size has 1 values"),
    ("vqa", "top_k: 5", "top_k: 0", "top_k must be an integer >= 1"),  # IndexError after training
    ("vqa", "n_boot: 10", "n_boot: 0", "n_boot must be an integer >= 1"),  # after training
    ("vqa", "size: 28,", "size: 0,", "data.size must be an integer >= 1 (an image side in px"),  # RuntimeError from the resize
    ("vqa", "in_chans: 1", "in_chans: 2", "data.in_chans must be 1 (grayscale) or 3 (RGB)"),
    ("fuse", "post, clinical]", "post, clinic]", "(unknown: ['clinic'])"),  # KeyError: 'clinic'
    ("fuse", "mnar_modalities: [pre, post]", "mnar_modalities: [pre, postt]", "protocol.mnar_modalities ['postt']"),
    ("fuse", "mcar_rates: [0.25]", "mcar_rates: [1.5]", "protocol.mcar_rates must be fractions in [0, 1)"),
    ("fuse", "p_high: 0.8", "p_high: 1.8", "protocol.p_high must be in [0, 1] (a probability), got 1.8"),
    ("fuse", "n_boot: 10", "n_boot: 0", "protocol.n_boot must be an integer >= 1"),
    ("fuse", "dim: 16", "dim: 0", "dim must be an integer >= 1 (the fusion width), got 0"),
]


@pytest.mark.parametrize("command, old, new, message", _TASK_RECIPE_CASES)
def test_task_recipe_values_checked_before_training(tmp_path, capsys, empty_data, command, old, new, message):
    """segment / vqa / fuse: values that used to fail only after training began are refused first."""
    r = tmp_path / "r.yaml"
    r.write_text(_edit({"segment": SEGMENT, "vqa": VQA, "fuse": FUSE}[command], old, new))
    code, err = cli_error(capsys, [command, r, "--output", tmp_path / "out"])
    assert code == 2 and message in err, err
    assert not (tmp_path / "out").exists()


def test_runners_write_nothing_when_the_data_is_missing(tmp_path):
    """segment, vqa and fuse wrote ``config.yaml`` into the output before loading their data."""
    from medfm.config import from_dict
    from medfm.data.errors import MedFMDataError
    from medfm.training.fusion import FusionRecipe, start_run
    from medfm.training.segmentation import SegmentationRecipe, run_segmentation
    from medfm.training.vqa import VQARecipe, run_vqa
    import yaml

    empty = tmp_path / "data"
    empty.mkdir()
    runs = [lambda out: run_segmentation(from_dict(SegmentationRecipe, yaml.safe_load(SEGMENT)), out, data_root=str(empty)),
            lambda out: run_vqa(from_dict(VQARecipe, yaml.safe_load(VQA)), out, data_root=str(empty)),
            lambda out: start_run(from_dict(FusionRecipe, yaml.safe_load(FUSE)), out, str(empty))]
    for i, run in enumerate(runs):
        with pytest.raises(MedFMDataError):
            run(tmp_path / f"out{i}")
        assert not (tmp_path / f"out{i}").exists(), i


def test_failed_run_leaves_no_half_written_output_folder(tmp_path, capsys, pneumonia_env, monkeypatch):
    """An error after the run folder was started (e.g. an objective argument refused at the first
    step) left ``config.yaml`` and an empty ``metrics.jsonl`` behind; a folder with a training
    state is kept for --resume, and an existing folder is never removed."""
    from medfm.training import runs

    def failing_fit(self, resume=False, before_write=None):
        before_write()  # the runner's config.yaml / init.json, as Trainer.fit writes them
        (self.output / "metrics.jsonl").write_text("")
        raise ValueError("temperature must be > 0, got -1.0")

    monkeypatch.setattr(runs.Trainer, "fit", failing_fit)
    (tmp_path / "pt.yaml").write_text(_edit(PRETRAIN, "batch_size: 16", "batch_size: 4"))  # 6 training images
    code, err = cli_error(capsys, ["pretrain", tmp_path / "pt.yaml", "--output", tmp_path / "out"])
    assert code == 2 and "temperature must be > 0" in err
    assert not (tmp_path / "out").exists()

    def fit_then_fail(self, resume=False, before_write=None):
        before_write()  # the runner's config.yaml / init.json, as Trainer.fit writes them
        (self.checkpoint_dir).mkdir(parents=True)
        (self.checkpoint_dir / "trainer_state.json").write_text("{}")
        raise ValueError("loss is NaN at epoch 2")

    monkeypatch.setattr(runs.Trainer, "fit", fit_then_fail)
    code, err = cli_error(capsys, ["pretrain", tmp_path / "pt.yaml", "--output", tmp_path / "out"])
    assert code == 2 and (tmp_path / "out" / "config.yaml").is_file()  # resumable: kept

    # steps logged, no checkpoint yet: the curve is what a user debugs
    def diverge(self, resume=False, before_write=None):
        before_write()  # the runner's config.yaml / init.json, as Trainer.fit writes them
        (self.output / "metrics.jsonl").write_text('{"step": 10, "loss": NaN}\n')
        raise ValueError("loss became nan at epoch 1, step 10")

    monkeypatch.setattr(runs.Trainer, "fit", diverge)
    code, err = cli_error(capsys, ["pretrain", tmp_path / "pt.yaml", "--output", tmp_path / "diverged"])
    assert code == 2 and (tmp_path / "diverged" / "metrics.jsonl").read_text().startswith('{"step": 10')
    existing = tmp_path / "mine"
    existing.mkdir()
    monkeypatch.setattr(runs.Trainer, "fit", failing_fit)
    assert cli_error(capsys, ["pretrain", tmp_path / "pt.yaml", "--output", existing])[0] == 2
    assert existing.is_dir()


# ---------------------------------------------------------------- paths

def test_output_that_is_a_file_and_missing_data_root(tmp_path, capsys, pneumonia_env):
    """--output at a file: "[Errno 17] File exists: ..."; --data-root at a missing folder with a
    suite: every dataset skipped and exit 0."""
    (tmp_path / "pt.yaml").write_text(PRETRAIN)
    blocker = tmp_path / "taken"
    blocker.write_text("keep")
    code, err = cli_error(capsys, ["pretrain", tmp_path / "pt.yaml", "--output", blocker])
    assert code == 2 and f"--output: cannot write {str(blocker)!r}: {str(blocker)!r} is a file" in err
    assert blocker.read_text() == "keep"
    (tmp_path / "s.yaml").write_text(SUITE)
    code, err = cli_error(capsys, ["eval", tmp_path / "ckpt", "--suite", tmp_path / "s.yaml", "--data-root",
                              tmp_path / "nowhere", "--output", tmp_path / "ev"])
    assert code == 2 and f"--data-root {tmp_path / 'nowhere'} does not exist" in err
    assert not (tmp_path / "ev").exists()


# ---------------------------------------------------------------- eval

@pytest.mark.parametrize("old, new, message", [
    ("split: test}", "split: vall}",  # skipped, exit 0
     "datasets[0]: split: unknown split 'vall' for MedMNIST 'pneumoniamnist'; did you mean 'val'?"),
    ("split: test}", "split: test, size: 27}", "size 27 is not a released size of pneumoniamnist; it exists at 28, 64"),
    ("knn_k: 3", "knn_k: 0", "protocol.knn_k must be an integer >= 1, got 0"),
    ("cam: {enabled: false}", "batch_size: 0", "batch_size must be an integer >= 1, got 0"),  # "range() arg 3 must not be zero"
    ("n_boot: 10", "n_boot: 10, threshold: 2", "metrics.threshold must be a probability in (0, 1)"),  # exit 0
    ("n_boot: 10", "n_boot: 0", "metrics.n_boot must be an integer >= 1, got 0"),
    ("{enabled: false}", "{enabled: true, methods: [gradcamm]}", "cam.methods must be names from"),  # exit 0
    ("cam: {enabled: false}", "corruptions: {workers: -1}", "corruptions.workers must be an integer >= 0 (0 or 1: in this process), got -1"),
    ("knn_k: 3", "knn_k: 3, finetune: {mode: full, lr: 1}", "protocol.finetune: unknown key 'lr'"),
    ("name: s\n", "", "missing required key(s) 'name'"),  # "Suite.__init__() missing 1 required positional argument"
])
def test_suite_values_checked_when_the_suite_is_read(tmp_path, capsys, pneumonia_env, old, new, message):
    (tmp_path / "s.yaml").write_text(_edit(SUITE, old, new))
    (tmp_path / "ckpt").mkdir()  # a missing checkpoint is named before the suite is read
    (tmp_path / "ckpt" / "config.json").write_text("{}")  # and a folder without config.json: a placeholder
    code, err = cli_error(capsys, ["eval", tmp_path / "ckpt", "--suite", tmp_path / "s.yaml", "--output", tmp_path / "ev"])
    assert code == 2 and message in err, err
    assert not (tmp_path / "ev").exists()


def test_eval_options_of_the_other_mode_are_refused(tmp_path, capsys, pneumonia_env):
    """--label-fraction with --data and --split/--size with --suite were silently ignored (exit 0);
    --threads 0 was taken as 1."""
    code, err = cli_error(capsys, ["eval", tmp_path / "ckpt", "--data", "pneumoniamnist", "--label-fraction", "0.1"])
    assert code == 2 and "--label-fraction: --suite option(s)" in err
    (tmp_path / "s.yaml").write_text(SUITE)
    code, err = cli_error(capsys, ["eval", tmp_path / "ckpt", "--suite", tmp_path / "s.yaml", "--split", "train",
                              "--output", tmp_path / "ev"])
    assert code == 2 and "--split: --data option(s)" in err
    with pytest.raises(SystemExit) as exc:
        main(["eval", str(tmp_path / "ckpt"), "--data", "pneumoniamnist", "--threads", "0"])
    assert exc.value.code == 2 and "--threads: must be >= 1, got 0" in capsys.readouterr().err


def test_eval_suite_without_a_checkpoint_or_with_a_missing_one(tmp_path, capsys, pneumonia_env):
    """No checkpoint at all: exit 0 and a report saying no dataset was evaluated. A mistyped
    checkpoint without --output: the folder <checkpoint>/eval-<suite> was created, so the typo
    became a directory; with --output an empty output folder was left."""
    (tmp_path / "s.yaml").write_text(SUITE)
    code, err = cli_error(capsys, ["eval", "--suite", tmp_path / "s.yaml", "--output", tmp_path / "ev"])
    assert code == 2 and "no checkpoint to evaluate" in err and not (tmp_path / "ev").exists()
    code, err = cli_error(capsys, ["eval", tmp_path / "typo", "--suite", tmp_path / "s.yaml"])
    assert code == 2 and "no checkpoint directory" in err and not (tmp_path / "typo").exists()
    code, err = cli_error(capsys, ["eval", tmp_path / "typo", "--suite", tmp_path / "s.yaml", "--output", tmp_path / "ev"])
    assert code == 2 and "no checkpoint directory" in err and not (tmp_path / "ev").exists()


def test_eval_label_fraction_list_names_the_bad_item(tmp_path, capsys, pneumonia_env):
    """"0.1,abc" was answered with Python's "could not convert string to float: 'abc'"."""
    (tmp_path / "s.yaml").write_text(SUITE)
    (tmp_path / "ckpt").mkdir()  # a missing checkpoint is named first
    (tmp_path / "ckpt" / "config.json").write_text("{}")  # and a folder without config.json: a placeholder
    code, err = cli_error(capsys, ["eval", tmp_path / "ckpt", "--suite", tmp_path / "s.yaml", "--protocol", "linear",
                              "--label-fraction", "0.1,abc", "--output", tmp_path / "ev"])
    assert code == 2 and "label fraction 'abc' in '0.1,abc' is not a number" in err


# ---------------------------------------------------------------- merge

def test_merge_of_a_full_checkpoint_says_it_is_not_an_adapter(tmp_path, capsys):
    """It said "adapter weights ... do not fit the base model: Can't find 'adapter_config.json'"."""
    ckpt = tmp_path / "clf"
    ckpt.mkdir()
    (ckpt / "config.json").write_text(json.dumps({"kind": "adapter", "name": "classification", "encoder": {}}))
    code, err = cli_error(capsys, ["merge", ckpt, tmp_path / "merged"])
    assert code == 2 and "is a full medfm checkpoint, not a LoRA adapter" in err
    assert not (tmp_path / "merged").exists()


def test_an_empty_mapping_section_means_no_entries():
    """``decoder:`` with every line commented out is YAML null: it said "expected a mapping, got None"
    although an empty dataclass section (``train:``) already meant all defaults."""
    import dataclasses
    from typing import Any, Dict

    from medfm.config import ConfigError, from_dict, load_yaml

    @dataclasses.dataclass
    class R:
        decoder: Dict[str, Any] = dataclasses.field(default_factory=dict)

    assert from_dict(R, {"decoder": None}).decoder == {}
    assert from_dict(R, {"decoder": {"stem_channels": 32}}).decoder == {"stem_channels": 32}
    with pytest.raises(ConfigError, match=r"decoder must be a mapping, got \[1\]"):
        from_dict(R, {"decoder": [1]})
    from medfm.training.segmentation import SegmentationRecipe

    path = Path(__file__).resolve().parents[1] / "finetune" / "seg_unet3d_hippocampus.yaml"
    data = load_yaml(path)
    data["decoder"] = None
    assert from_dict(SegmentationRecipe, data, where=path.name).decoder == {}
