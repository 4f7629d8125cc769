"""The spine end to end through the CLI on tiny synthetic MedMNIST files (real-format npz)."""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from medfm.cli import main

PRETRAIN = textwrap.dedent("""
    data: {dataset: pneumoniamnist, size: 28}
    encoder: {name: resnet_test}
    objective: {name: simclr, args: {hidden_dim: 32, proj_dim: 16}}
    train: {epochs: 1, batch_size: 16, lr: 1.0e-3, precision: fp32, log_every: 1}
""")
FINETUNE = textwrap.dedent("""
    data: {dataset: pneumoniamnist, size: 28}
    encoder: {name: resnet_test}
    mode: lora
    lora: {rank: 4, alpha: 8}
    train: {epochs: 1, batch_size: 16, lr: 1.0e-3, precision: fp32, log_every: 1}
""")


@pytest.fixture
def run_dir(tmp_path, write_medmnist, monkeypatch):
    from tests.conftest import fake_medmnist_arrays

    root = write_medmnist("pneumoniamnist", arrays=fake_medmnist_arrays("pneumoniamnist", counts=(48, 16, 20)))
    monkeypatch.setenv("MEDFM_DATA", str(root))
    (tmp_path / "pt.yaml").write_text(PRETRAIN)
    (tmp_path / "ft.yaml").write_text(FINETUNE)
    return tmp_path


def test_pretrain_finetune_merge_eval_card_and_fresh_process_reproduces(run_dir, capsys):
    t = run_dir
    assert main(["pretrain", str(t / "pt.yaml"), "--output", str(t / "pt")]) == 0
    assert (t / "pt" / "config.yaml").is_file() and (t / "pt" / "metrics.jsonl").read_text().count("\n") == 3
    assert main(["finetune", str(t / "ft.yaml"), "--init", str(t / "pt" / "checkpoint"), "--output", str(t / "ft")]) == 0
    assert (t / "ft" / "adapter" / "adapter_model.safetensors").is_file()
    assert main(["merge", str(t / "ft" / "adapter"), str(t / "model")]) == 0
    assert main(["eval", str(t / "model"), "--data", "pneumoniamnist", "--split", "test", "--output", str(t / "eval")]) == 0
    res = json.loads((t / "eval" / "results.json").read_text())
    assert res["n_samples"] == 20 and 0 <= res["metrics"]["acc"] <= 1
    for png in ("confusion_matrix.png", "roc.png"):
        assert (t / "eval" / png).stat().st_size > 1000
    assert main(["card", str(t / "model"), "--results", str(t / "eval" / "results.json")]) == 0
    card = (t / "model" / "README.md").read_text()
    assert "model-index" in card and "cc-by-4.0" in card and "pneumoniamnist" in card
    cfg = json.loads((t / "model" / "config.json").read_text())
    assert cfg["training"]["pretraining"]["objective"]["name"] == "simclr"
    assert cfg["training"]["finetuning"]["mode"] == "lora"

    # a fresh process: from_pretrained and the pipeline reproduce the saved test predictions exactly
    script = textwrap.dedent(f"""
        import numpy as np, torch, medfm
        from medfm.evaluation.predict import predict_scores
        from medfm.data import MedMNISTDataset
        ref = np.load({str(t / 'eval' / 'predictions.npz')!r})["scores"]
        imgs = np.load({str(run_dir / 'medmnist' / 'pneumoniamnist.npz')!r})["test_images"]
        ds = MedMNISTDataset("pneumoniamnist", "test", verify=False)
        model = medfm.from_pretrained({str(t / 'model')!r})
        assert np.array_equal(predict_scores(model, ds), ref)
        clf = medfm.pipeline("image-classification", model={str(t / 'model')!r})
        out = clf(list(imgs))
        scores = np.array([[{{d["label"]: d["score"] for d in row}}[n] for n in ("normal", "pneumonia")] for row in out])
        assert np.array_equal(scores.astype(np.float32), ref), np.abs(scores - ref).max()
        print("OK")
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env={"MEDFM_DATA": str(run_dir), "PATH": "/usr/bin:/bin",
                               **{k: v for k, v in os.environ.items() if k == "PYTHONPATH"}})
    assert proc.returncode == 0 and "OK" in proc.stdout, proc.stderr[-3000:]


def test_recipe_and_data_errors_are_one_line(run_dir, capsys):
    bad = run_dir / "bad.yaml"
    bad.write_text(FINETUNE.replace("lora: {rank: 4, alpha: 8}", "lora: {rnak: 4}"))
    assert main(["finetune", str(bad), "--output", str(run_dir / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "unknown key 'rnak'" in err and "did you mean 'rank'" in err
    assert main(["finetune", str(run_dir / "ft.yaml"), "--dataset", "pneumonimnist", "--output", str(run_dir / "y")]) == 2
    assert "did you mean 'pneumoniamnist'" in capsys.readouterr().err
    assert main(["eval", str(run_dir / "nothing"), "--data", "pneumoniamnist"]) == 2
    assert "no checkpoint directory" in capsys.readouterr().err
    bad.write_text(FINETUNE.replace("mode: lora", "mode: lorra"))
    assert main(["finetune", str(bad), "--output", str(run_dir / "z")]) == 2
    assert "mode must be one of" in capsys.readouterr().err
    assert main(["finetune", str(run_dir / "ft.yaml"), "--label-fraction", "0", "--output", str(run_dir / "w")]) == 2
    assert "--label-fraction: label fractions must be in (0, 1], got [0.0]" in capsys.readouterr().err


def test_finetune_label_fraction_flag_trains_on_that_subset(run_dir):
    from medfm.hub import load_config

    assert main(["finetune", str(run_dir / "ft.yaml"), "--label-fraction", "0.5", "--epochs", "1",
                 "--output", str(run_dir / "f")]) == 0
    data = load_config(run_dir / "f" / "adapter")["training"]["data"]
    assert data["label_fraction"] == 0.5 and data["n_train"] == 25  # 48 images: half of each class, rounded up per class
    # a fraction smaller than one batch (16) trains with a batch of all its labels
    assert main(["finetune", str(run_dir / "ft.yaml"), "--label-fraction", "0.2", "--epochs", "1",
                 "--output", str(run_dir / "g")]) == 0
    cfg = load_config(run_dir / "g" / "adapter")["training"]
    assert cfg["data"]["n_train"] < 16 and cfg["finetuning"]["train"]["batch_size"] == cfg["data"]["n_train"]


def test_pipeline_input_handling(tmp_path):
    import torch
    from PIL import Image

    import medfm
    from medfm.adapters.classification import ImageClassifier
    from medfm.pipelines.inputs import PipelineInputError

    torch.manual_seed(0)
    model = ImageClassifier(medfm.create_encoder("resnet_test", in_chans=1, img_size=28), 2, "binary-class", ["normal", "pneumonia"])
    medfm.save_pretrained(model, tmp_path / "m")
    clf = medfm.pipeline("image-classification", model=str(tmp_path / "m"))
    img = np.random.default_rng(0).integers(0, 256, (28, 28), dtype=np.uint8)
    out = clf(img)
    assert [d["label"] for d in out] == sorted(["normal", "pneumonia"], key=lambda n: -{d["label"]: d["score"] for d in out}[n])
    assert abs(sum(d["score"] for d in out) - 1) < 1e-6
    assert clf(Image.fromarray(img)) == out  # PIL and array agree
    assert len(clf(Image.fromarray(img).resize((64, 64)).convert("RGB"))) == 2  # resized + converted
    assert clf([img, img], top_k=1)[1][0]["label"] == out[0]["label"]
    with pytest.raises(PipelineInputError, match="uint8"):
        clf(img.astype(np.float32))
    with pytest.raises(ValueError, match="did you mean 'image-classification'"):
        medfm.pipeline("image-clasification", model=str(tmp_path / "m"))
