"""medfm.evaluation.suites and ``medfm eval --suite``: schema, skips, reports, one-line errors."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from medfm.adapters.classification import ImageClassifier
from medfm.cli import main
from medfm.config import ConfigError
from medfm.data import dataset_info
from medfm.encoders import create_encoder
from medfm.evaluation.suites import load_suite, run_suite, suite_overrides
from medfm.hub import save_pretrained
from tests.conftest import fake_medmnist_arrays

REPO = Path(__file__).resolve().parents[2]


def _ckpt(path, flag="pneumoniamnist", in_chans=None):
    info = dataset_info(flag)
    torch.manual_seed(0)
    enc = create_encoder("resnet_test", in_chans=in_chans or info["n_channels"], img_size=28)
    return str(save_pretrained(ImageClassifier(enc, info["num_classes"], info["task"], info["label_names"]), path))


def _suite(tmp_path, **over):
    data = {"name": "t", "datasets": [{"flag": "pneumoniamnist"}, {"flag": "bloodmnist"}],
            "corruptions": {"names": ["pixelate", "gaussian_noise"], "severities": [1], "workers": 0},
            "metrics": {"n_boot": 50}, "cam": {"per_class": 1}}
    data.update(over)
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture
def data_root(write_medmnist):
    root = write_medmnist("pneumoniamnist", arrays=fake_medmnist_arrays("pneumoniamnist", counts=(16, 4, 10)))
    return write_medmnist("breastmnist", arrays=fake_medmnist_arrays("breastmnist", counts=(16, 4, 8)))


@pytest.mark.parametrize("path", sorted((REPO / "eval_suites").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_suites_load(path):
    suite = load_suite(path)
    assert suite.datasets and suite.protocol.name in ("as-is", "linear", "knn")
    if path.name == "medmnist_2d.yaml":
        from medfm.data import MEDMNIST_2D_FLAGS

        assert sorted(d.flag for d in suite.datasets) == sorted(MEDMNIST_2D_FLAGS)
    if path.name == "medmnist_c.yaml":
        assert suite.corruptions.names == "all" and list(suite.corruptions.severities) == [1, 2, 3, 4, 5]


@pytest.mark.parametrize("change,fragment", [
    ({"datsets": []}, "did you mean 'datasets'"),
    ({"datasets": [{"flg": "pneumoniamnist"}]}, "datasets[0]: unknown key 'flg'; did you mean 'flag'"),
    ({"datasets": [{"flag": "pneumonimnist"}]}, "did you mean 'pneumoniamnist'"),
    ({"corruptions": {"names": ["gausian_noise"]}}, "did you mean 'gaussian_noise'"),
    ({"corruptions": {"severities": [6]}}, "1..5"),
    ({"protocol": {"name": "lineer"}}, "did you mean 'linear'"),
])
def test_bad_suites_fail_with_one_line(tmp_path, change, fragment):
    with pytest.raises(ConfigError) as err:
        load_suite(_suite(tmp_path, **change))
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_as_is_suite_end_to_end(tmp_path, data_root):
    ckpt = _ckpt(tmp_path / "ckpt")
    res = run_suite(load_suite(_suite(tmp_path)), [ckpt], tmp_path / "out", data_root=str(data_root),
                    cache_dir=str(tmp_path / "cache"), progress=False)
    written = json.loads((tmp_path / "out" / "results.json").read_text())
    assert written["schema_version"] == 1 and written["versions"]["torch"] and written["cpu_s"] > 0
    pneu, blood = written["datasets"]
    assert blood["status"] == "skipped" and "not on disk" in blood["reason"]
    assert pneu["status"] == "ok" and len(pneu["checkpoint_sha256"]) == 64 and len(pneu["data_md5"]) == 32
    rob = pneu["runs"][0]["robustness"]
    assert set(rob["errors"]) == {"pixelate", "gaussian_noise"} and rob["be"] > 0
    assert "224x224 px" in pneu["corruptions"]["method"] and pneu["corruptions"]["cache"]["generated"] == 2
    per = tmp_path / "out" / "pneumoniamnist"
    for f in ("results.json", "report.md", "reliability.png", "confusion_matrix.png", "error_vs_severity.png",
              "cam_grid.png"):
        assert (per / f).is_file(), f
    per_res = json.loads((per / "results.json").read_text())  # `medfm card --results` reads this one
    assert per_res["meta"]["dataset"] == "pneumoniamnist" and per_res["robustness"]["be"] == rob["be"]
    assert "MedViT-small" in json.dumps(per_res["meta"]["references"])
    from medfm.cards import build_card
    from medfm.hub import load_config

    card = build_card(load_config(ckpt), per_res)
    assert f"| MedMNIST-C BE | {rob['be']:.4f} |" in card
    assert "| MedViT-small MedMNIST-C (224 px corruptions) | clean error 0.040, BE 0.384, rBE 0.246 |" in card
    report = (tmp_path / "out" / "report.md").read_text()
    for text in ("MedViT-small (published)", "MedMNIST v2 ResNet-18 (28)", "wall time", "224x224 px", "bloodmnist",
                 "| pixelate | digital |"):
        assert text in report, text
    warm = load_suite(_suite(tmp_path))
    warm.cam.enabled = False
    again = run_suite(warm, [ckpt], tmp_path / "out2", data_root=str(data_root), cache_dir=str(tmp_path / "cache"),
                      progress=False)
    assert again["datasets"][0]["corruptions"]["cache"]["hits"] == 2
    assert again["datasets"][0]["runs"][0]["robustness"]["errors"] == rob["errors"]


def test_checkpoints_are_matched_to_datasets_by_classes(tmp_path, data_root):
    suite = load_suite(_suite(tmp_path, datasets=[{"flag": "pneumoniamnist"}, {"flag": "breastmnist"}],
                              corruptions=None, cam={"enabled": False}))
    pneu = _ckpt(tmp_path / "p")
    res = run_suite(suite, [pneu], tmp_path / "out", data_root=str(data_root), progress=False)
    assert res["datasets"][1]["status"] == "skipped" and "classes" in res["datasets"][1]["reason"]
    breast = _ckpt(tmp_path / "b", "breastmnist")
    res = run_suite(suite, [breast, pneu], tmp_path / "out", data_root=str(data_root), progress=False)
    assert [d["checkpoint"] for d in res["datasets"]] == [pneu, breast]


def test_linear_and_knn_with_label_fractions(tmp_path, data_root):
    ckpt = _ckpt(tmp_path / "ckpt")
    for protocol, fractions in (("linear", "0.5,1"), ("knn", "1")):
        suite = suite_overrides(load_suite(_suite(tmp_path, datasets=[{"flag": "pneumoniamnist"}], corruptions=None)),
                                protocol=protocol, label_fractions=fractions)
        res = run_suite(suite, [ckpt], tmp_path / protocol, data_root=str(data_root), progress=False)
        runs = res["datasets"][0]["runs"]
        assert [r["run"] for r in runs] == [f"{protocol}-f{f}" for f in fractions.split(",")]
        assert (tmp_path / protocol / "pneumoniamnist" / (runs[0]["run"] if len(runs) > 1 else "") / "report.md").is_file()
        assert runs[0]["cam"]["methods"] == (["gradcam", "eigencam"] if protocol == "linear" else ["eigencam"])
    with pytest.raises(ConfigError, match="label_fractions"):
        suite_overrides(load_suite(_suite(tmp_path)), label_fractions="0,1")


def test_linear_probe_c_chosen_on_the_val_split(tmp_path, data_root):
    from medfm.evaluation.protocols import PROBE_C_GRID

    ckpt = _ckpt(tmp_path / "ckpt")
    suite = suite_overrides(load_suite(_suite(tmp_path, datasets=[{"flag": "pneumoniamnist"}], corruptions=None,
                                              cam={"enabled": False})),
                            protocol="linear", label_fractions="1", probe_c="val")
    run = run_suite(suite, [ckpt], tmp_path / "out", data_root=str(data_root), progress=False)["datasets"][0]["runs"][0]
    accs = run["probe_c_val_acc"]
    assert len(accs) == len(PROBE_C_GRID) and run["probe_c"] in PROBE_C_GRID
    assert accs[f"{run['probe_c']:g}"] == max(accs.values())
    fixed = suite_overrides(load_suite(_suite(tmp_path, datasets=[{"flag": "pneumoniamnist"}], corruptions=None,
                                              cam={"enabled": False})), protocol="linear", probe_c="0.5")
    assert run_suite(fixed, [ckpt], tmp_path / "fixed", data_root=str(data_root),
                     progress=False)["datasets"][0]["runs"][0]["probe_c"] == 0.5
    with pytest.raises(ConfigError, match="linear_c"):
        suite_overrides(load_suite(_suite(tmp_path)), probe_c="best")
    with pytest.raises(ConfigError, match="linear_c"):
        suite_overrides(load_suite(_suite(tmp_path)), probe_c="-1")


def _cli(args, capsys):
    code = main(args)
    return code, capsys.readouterr().err.strip()


def test_cli_suite_errors_are_one_line(tmp_path, data_root, capsys):
    ckpt = _ckpt(tmp_path / "ckpt")
    rgb = _ckpt(tmp_path / "rgb", in_chans=3)
    root = ["--data-root", str(data_root), "--output", str(tmp_path / "o")]
    code, err = _cli(["eval", "--suite", str(_suite(tmp_path, corruptions=None, cam={"enabled": False})), rgb] + root,
                     capsys)
    assert code == 2 and "expects 3-channel images but pneumoniamnist has 1" in err and len(err.splitlines()) == 1
    bad = _suite(tmp_path, corruptions={"names": ["pixelat"]})
    code, err = _cli(["eval", "--suite", str(bad), ckpt] + root, capsys)
    assert code == 2 and "did you mean 'pixelate'" in err and len(err.splitlines()) == 1
    code, err = _cli(["eval", "--suite", str(_suite(tmp_path, datasets=[{"flag": "pnuemoniamnist"}])), ckpt] + root,
                     capsys)
    assert code == 2 and "did you mean 'pneumoniamnist'" in err and len(err.splitlines()) == 1
    code, err = _cli(["eval", "--suite", str(_suite(tmp_path, metrcs={})), ckpt] + root, capsys)
    assert code == 2 and "did you mean 'metrics'" in err and len(err.splitlines()) == 1
    code, err = _cli(["eval", ckpt, rgb, "--data", "pneumoniamnist"] + root, capsys)
    assert code == 2 and "exactly one" in err


def test_cli_suite_runs_and_data_path_still_works(tmp_path, data_root, capsys):
    ckpt = _ckpt(tmp_path / "ckpt")
    suite = _suite(tmp_path, datasets=[{"flag": "pneumoniamnist"}], corruptions=None, cam={"enabled": False})
    assert main(["eval", "--suite", str(suite), ckpt, "--data-root", str(data_root), "--output", str(tmp_path / "s")]) == 0
    assert "pneumoniamnist [as-is]: ACC" in capsys.readouterr().out
    assert main(["eval", ckpt, "--data", "pneumoniamnist", "--data-root", str(data_root),
                 "--output", str(tmp_path / "d")]) == 0
    assert (tmp_path / "d" / "results.json").is_file()


def test_image_folder_dataset_in_a_suite(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for c, level in (("bright", 200), ("dark", 40)):
        (tmp_path / "folder" / c).mkdir(parents=True)
        for i in range(10):
            img = np.clip(level + rng.normal(0, 20, (32, 32)), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(tmp_path / "folder" / c / f"{i}.png")
    suite = load_suite(_suite(tmp_path, datasets=[{"folder": "folder", "name": "toy"}], protocol={"name": "knn"},
                              corruptions={"names": ["pixelate"], "severities": [1], "workers": 0}))
    res = run_suite(suite, [_ckpt(tmp_path / "c")], tmp_path / "out", data_root=str(tmp_path), progress=False)
    d = res["datasets"][0]
    assert d["status"] == "ok" and d["size"] == 28 and d["n_samples"] == 4  # 20% of 20, resized to the encoder's 28 px
    assert "no corruptions" in d["corruptions"]["skipped"] and d["runs"][0]["metrics"]["acc"] == 1.0


@pytest.mark.slow
def test_real_pneumoniamnist_c_subset(tmp_path, real_data_root):
    """Real PneumoniaMNIST test set, two corruptions at all severities, worker pool, warm re-run."""
    ckpt = _ckpt(tmp_path / "ckpt")
    suite = load_suite(_suite(tmp_path, datasets=[{"flag": "pneumoniamnist"}],
                              corruptions={"names": ["pixelate", "impulse_noise"], "workers": 2}))
    res = run_suite(suite, [ckpt], tmp_path / "out", data_root=str(real_data_root), cache_dir=str(tmp_path / "c"),
                    progress=False)
    d = res["datasets"][0]
    assert d["n_samples"] == 624 and d["corruptions"]["images_scored"] == 2 * 5 * 624
    assert len(d["runs"][0]["robustness"]["errors"]["pixelate"]) == 5 and d["runs"][0]["robustness"]["warnings"] == []
    warm = run_suite(suite, [ckpt], tmp_path / "out2", data_root=str(real_data_root), cache_dir=str(tmp_path / "c"),
                     progress=False)
    assert warm["datasets"][0]["corruptions"]["cache"]["hits"] == 10
    assert warm["datasets"][0]["runs"][0]["robustness"]["errors"] == d["runs"][0]["robustness"]["errors"]


def test_finetune_protocol_trains_on_each_fraction_and_scores_the_result(tmp_path, data_root):
    from medfm.evaluation.finetune_protocol import auto_epochs
    from medfm.evaluation.metrics import classification_metrics
    from medfm.evaluation.predict import predict_scores
    from medfm.data import MedMNISTDataset
    from medfm.hub import from_pretrained, load_config

    assert [auto_epochs(f) for f in (1.0, 0.5, 0.1, 0.01)] == [2, 4, 20, 60]
    ckpt = _ckpt(tmp_path / "ckpt")
    from PIL import Image

    for c in ("a", "b"):
        (tmp_path / "folder" / c).mkdir(parents=True)
        for i in range(5):
            Image.fromarray(np.full((28, 28), 40 * i, np.uint8)).save(tmp_path / "folder" / c / f"{i}.png")
    suite_path = _suite(tmp_path, datasets=[{"flag": "pneumoniamnist"}, {"folder": str(tmp_path / "folder")}],
                        corruptions=None, cam={"enabled": False},
                        protocol={"name": "finetune", "finetune": {"mode": "full", "augment": None, "train": {
                            "epochs": 2, "batch_size": 4, "lr": 0.01, "precision": "fp32", "warmup_epochs": 0}}})
    out = tmp_path / "out"
    assert main(["eval", "--suite", str(suite_path), ckpt, "--protocol", "finetune", "--label-fraction", "0.5,1",
                 "--data-root", str(data_root), "--output", str(out)]) == 0
    res = json.loads((out / "results.json").read_text())
    pneu, folder = res["datasets"]
    assert folder["status"] == "skipped" and "MedMNIST 2D" in folder["reason"]
    assert [r["run"] for r in pneu["runs"]] == ["finetune-f0.5", "finetune-f1"]
    test = MedMNISTDataset("pneumoniamnist", split="test", data_root=str(data_root))
    start = from_pretrained(ckpt).encoder.state_dict()
    from medfm.evaluation.protocols import subset_indices

    train_labels = MedMNISTDataset("pneumoniamnist", split="train", data_root=str(data_root)).labels[:, 0]
    n_half = len(subset_indices(train_labels, 0.5, 0))  # the same stratified subset as the linear probe
    assert n_half < 16
    for run, n_train in zip(pneu["runs"], (n_half, 16)):
        trained = Path(run["finetune_checkpoint"]) / "model"
        assert load_config(trained)["training"]["data"]["n_train"] == n_train
        clf = from_pretrained(str(trained))
        moved = [k for k, v in clf.encoder.state_dict().items() if v.is_floating_point() and not torch.equal(v, start[k])]
        assert moved  # full fine-tuning changed the encoder it started from
        acc = classification_metrics(test.labels, predict_scores(clf.eval(), test), test.task)["acc"]
        assert run["metrics"]["acc"] == pytest.approx(acc)
    from medfm.evaluation.finetune_protocol import finetune_recipe

    with pytest.raises(Exception, match="unknown key"):
        finetune_recipe(clf.encoder, ckpt, "pneumoniamnist", 28, 1.0, {"epochs": 3})
    small = finetune_recipe(clf.encoder, ckpt, "pneumoniamnist", 28, 0.01, {"train": {"batch_size": 64}})
    assert small.train.epochs == 60  # min(60, ceil(2 / 0.01))


def test_probe_is_never_fitted_or_tuned_on_the_scored_split():
    from medfm.evaluation.suites import DatasetSpec

    assert DatasetSpec(flag="pneumoniamnist", split="val", val_split="train", train_split="test").split == "val"
    with pytest.raises(ValueError, match="val_split and split are both 'test'"):
        DatasetSpec(flag="pneumoniamnist", val_split="test")
    with pytest.raises(ValueError, match="train_split and split are both 'val'"):
        DatasetSpec(flag="pneumoniamnist", split="val", train_split="val", val_split="test")


def test_eval_data_refuses_a_head_for_other_classes_or_dimensions(tmp_path, data_root, write_medmnist, capsys):
    """A PneumoniaMNIST head (normal / pneumonia) scored on BreastMNIST (malignant / normal-benign)
    used to exit 0 with meaningless ACC; a 2D checkpoint on a 3D set failed inside the encoder."""
    ckpt = _ckpt(tmp_path / "ckpt")
    root = ["--data-root", str(data_root)]
    code, err = _cli(["eval", ckpt, "--data", "breastmnist", "--output", str(tmp_path / "b")] + root, capsys)
    assert code == 2 and "predicts the classes ['normal', 'pneumonia'] but breastmnist's classes are" in err
    assert not (tmp_path / "b").exists()
    write_medmnist("adrenalmnist3d", arrays=fake_medmnist_arrays("adrenalmnist3d", counts=(4, 2, 3)))
    code, err = _cli(["eval", ckpt, "--data", "adrenalmnist3d", "--output", str(tmp_path / "a")] + root, capsys)
    assert code == 2 and "adrenalmnist3d is a 3D volume data set but" in err and "2D image encoder" in err
    # placeholder names ("0", "1") are not compared: a head built without names still evaluates
    info = dataset_info("breastmnist")
    enc = create_encoder("resnet_test", in_chans=1, img_size=28)
    plain = str(save_pretrained(ImageClassifier(enc, info["num_classes"], info["task"]), tmp_path / "plain"))
    assert main(["eval", plain, "--data", "breastmnist", "--output", str(tmp_path / "p")] + root) == 0
