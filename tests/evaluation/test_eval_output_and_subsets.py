"""``medfm eval`` follow-ups on small fake MedMNIST sets; each test failed on the code before its fix:
``--data`` wrote into any existing folder (mixing evaluations, the user's files, even the checkpoint),
a subset's corrupted images were seeded by their place in the subset rather than in the full split,
and a run's MedMNIST-C warnings never reached the model card."""
import json

import numpy as np
import pytest
import torch
import yaml

import medfm
from medfm.adapters.classification import ImageClassifier
from medfm.cli import main
from medfm.data import dataset_info
from medfm.evaluation.subsets import scored_subset_indices
from medfm.hub import save_pretrained
from tests.conftest import fake_medmnist_arrays

SEV1 = "severities [1] only"


def _ckpt(path, flag="pneumoniamnist"):
    info = dataset_info(flag)
    torch.manual_seed(0)
    enc = medfm.create_encoder("resnet_test", in_chans=info["n_channels"], img_size=28)
    return str(save_pretrained(ImageClassifier(enc, info["num_classes"], info["task"], info["label_names"]), path))


def _names(folder):
    return sorted(p.name for p in folder.iterdir())


def test_data_eval_replaces_only_its_own_earlier_output_whole(tmp_path, write_medmnist, capsys):
    """An earlier --data evaluation's files stayed next to the new ones; a folder of the user's
    files, a suite's output and the checkpoint itself were written into."""
    write_medmnist("pneumoniamnist", arrays=fake_medmnist_arrays("pneumoniamnist", counts=(4, 2, 12)))
    root = write_medmnist("breastmnist", arrays=fake_medmnist_arrays("breastmnist", counts=(4, 2, 12)))
    pneu, breast, out = _ckpt(tmp_path / "p"), _ckpt(tmp_path / "b", "breastmnist"), tmp_path / "out"
    report = ["confusion_matrix.png", "predictions.npz", "reliability.png", "report.md", "results.json", "roc.png"]
    assert main(["eval", pneu, "--data", "pneumoniamnist", "--data-root", str(root), "--output", str(out)]) == 0
    (out / "old_plot.png").write_bytes(b"an earlier evaluation's figure")
    assert main(["eval", breast, "--data", "breastmnist", "--data-root", str(root), "--output", str(out)]) == 0
    assert _names(out) == report and json.loads((out / "results.json").read_text())["meta"]["dataset"] == "breastmnist"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no staging folder left
    capsys.readouterr()

    mine = tmp_path / "mine"
    (mine / "sub").mkdir(parents=True)
    (mine / "sub" / "notes.txt").write_text("keep")
    (mine / "results.json").write_text(json.dumps({"kind": "evaluation-suite"}))  # a suite's output
    for folder, named in ((mine, "holds no earlier `medfm eval --data` report"), (tmp_path / "p", "is the checkpoint")):
        before = sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))
        # checked before any work: bloodmnist is not on disk, yet the output is what is reported
        assert main(["eval", pneu, "--data", "bloodmnist", "--data-root", str(root), "--output", str(folder)]) == 2
        err = capsys.readouterr().err
        assert named in err and err.count("\n") == 1
        assert sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) == before

    # no --output: <checkpoint>/eval-<flag>-<split>, replaced on a rerun; the checkpoint is untouched
    ckpt_files = _names(tmp_path / "p")
    for _ in range(2):
        assert main(["eval", pneu, "--data", "pneumoniamnist", "--data-root", str(root)]) == 0
        (tmp_path / "p" / "eval-pneumoniamnist-test" / "stale.txt").write_text("x")
    assert _names(tmp_path / "p") == sorted(ckpt_files + ["eval-pneumoniamnist-test"])
    assert _names(tmp_path / "p" / "eval-pneumoniamnist-test") == sorted(report + ["stale.txt"])
    assert main(["eval", pneu, "--data", "pneumoniamnist", "--data-root", str(root)]) == 0
    assert _names(tmp_path / "p" / "eval-pneumoniamnist-test") == report


def test_subset_corrupted_images_are_the_full_runs_rows():
    """corrupted_sets seeded image i of a subset as the full split's image i."""
    from medfm.data import corruptions as C

    pytest.importorskip("medmnistc.corruptions.registry", reason="medmnistc / MagickWand not installed")
    x = fake_medmnist_arrays("pneumoniamnist", counts=(2, 2, 10))["test_images"]
    idx = np.array([1, 4, 7, 9])
    jobs = [("gaussian_noise", 2), ("impulse_noise", 4)]
    kw = dict(resolution="native", workers=0, progress=False, use_cache=False)
    full, _ = C.corrupted_sets(x, "pneumoniamnist", jobs, **kw)
    sub, _ = C.corrupted_sets(x[idx], "pneumoniamnist", jobs, indices=idx, **kw)
    for job in jobs:
        assert np.array_equal(sub[job], full[job][idx]) and not np.array_equal(sub[job], x[idx])
    with pytest.raises(ValueError, match="indices must be 4 integer indices"):
        C.corrupted_sets(x[idx], "pneumoniamnist", jobs, indices=idx[:3], **kw)
    with pytest.raises(ValueError, match="distinct"):
        C.corrupted_sets(x[idx], "pneumoniamnist", jobs, indices=[1, 1, 2, 3], **kw)


def test_suite_subset_cache_holds_the_full_runs_rows_and_the_card_its_warnings(tmp_path, write_medmnist, capsys):
    """Through the suite: a --max-samples run's corrupted images are the full run's rows (cached
    apart, under a key naming the subset), and the 'severities [1] only' warning of its results
    reaches the model card (it stayed in the run's report)."""
    pytest.importorskip("medmnistc.corruptions.registry", reason="medmnistc / MagickWand not installed")
    root = write_medmnist("pneumoniamnist", arrays=fake_medmnist_arrays("pneumoniamnist", counts=(4, 2, 20)))
    ckpt = _ckpt(tmp_path / "c")
    suite = tmp_path / "s.yaml"
    suite.write_text(yaml.safe_dump({"name": "t", "datasets": [{"flag": "pneumoniamnist"}], "metrics": {"n_boot": 10},
                                     "cam": {"enabled": False}, "protocol": {"name": "as-is"},
                                     "corruptions": {"names": ["gaussian_noise"], "severities": [1], "workers": 0,
                                                     "resolution": "native"}}))
    cache = tmp_path / "cache"
    for out, extra in (("sub", ["--max-samples", "8"]), ("full", [])):
        assert main(["eval", "--suite", str(suite), ckpt, "--data-root", str(root), "--output", str(tmp_path / out),
                     "--cache-dir", str(cache)] + extra) == 0
    capsys.readouterr()
    idx = json.loads((tmp_path / "sub" / "results.json").read_text())["datasets"][0]["subset"]["indices"]
    assert idx == scored_subset_indices(fake_medmnist_arrays("pneumoniamnist", counts=(4, 2, 20))["test_labels"],
                                        8).tolist()
    (sub_file,) = (cache / "medmnistc").glob("*_i*.npz")  # named by the subset's indices
    (full_file,) = [p for p in (cache / "medmnistc").glob("*.npz") if p != sub_file]
    assert sub_file.name.startswith(full_file.stem + "_i")
    with np.load(sub_file) as s, np.load(full_file) as f:
        assert np.array_equal(s["images"], f["images"][idx])

    run = json.loads((tmp_path / "sub" / "pneumoniamnist" / "results.json").read_text())
    warning = next(w for w in run["robustness"]["warnings"] if w.startswith(SEV1))
    assert main(["card", ckpt, "--results", str(tmp_path / "sub" / "pneumoniamnist" / "results.json")]) == 0
    evaluation = (tmp_path / "c" / "README.md").read_text().split("## Evaluation")[1].split("\n## ")[0]
    assert "MedMNIST-C warnings:" in evaluation and f"- {warning}" in evaluation
