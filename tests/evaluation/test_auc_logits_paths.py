"""Every path that scores a classifier ranks its AUC by the logits, as ``medfm eval --data`` does.

The hand case of each path: the same classifier with its logits multiplied by ``SCALE = 2**14``. A power of two
scales float32 (and float64) products and sums exactly, so every margin ``z_1 - z_0`` is exactly ``SCALE`` times the
unscaled one: the ranking, hence the AUC, is the same. The scaled margins (hundreds to thousands) are beyond
float32's softmax range (~104): every probability is exactly 1.0 / 0.0 and ranking them ties all of them
(the suites, the per-epoch validation AUC and ``zeroshot_eval`` scored the scaled model AUC 0.5 or so).
"""
import json

import numpy as np
import pytest
import torch
import yaml

from medfm.data import MedMNISTDataset
from medfm.evaluation.metrics import binary_auc, classification_metrics
from medfm.evaluation.predict import predict_scores
from medfm.evaluation.protocols import LinearProbe
from medfm.evaluation.report import write_classification_report
from medfm.hub import save_pretrained
from tests.conftest import fake_medmnist_arrays, pneumonia_classifier

SCALE = 2.0 ** 14
FLAG = "pneumoniamnist"


def _scaled(model, scale=SCALE):
    """``model`` with its head's weight and bias times ``scale`` (its logits exactly ``scale`` times)."""
    with torch.no_grad():
        model.task_head.weight.mul_(scale)
        model.task_head.bias.mul_(scale)
    return model


@pytest.fixture
def root(write_medmnist):
    return write_medmnist(FLAG, arrays=fake_medmnist_arrays(FLAG, counts=(16, 12, 24)))


def _test_set(root):
    return MedMNISTDataset(FLAG, split="test", data_root=str(root))


def _assert_saturated_and_tied(model, ds):
    """Every probability of ``model`` on ``ds`` is 0.0 or 1.0, so ranking them alone gives no AUC."""
    p = predict_scores(model, ds)
    y = np.asarray(ds.labels).ravel()
    assert np.isin(p, (0.0, 1.0)).all() and 0 < y.sum() < len(y)
    return classification_metrics(y, p, "binary-class")["auc"]


def _run_suite(tmp_path, root, ckpt, name, protocol="as-is"):
    from medfm.evaluation.suites import load_suite, run_suite

    spec = tmp_path / f"{name}.yaml"
    spec.write_text(yaml.safe_dump({"name": name, "datasets": [{"flag": FLAG}], "corruptions": None,
                                    "cam": {"enabled": False}, "metrics": {"n_boot": 20},
                                    "protocol": {"name": protocol}}))
    out = tmp_path / name
    run = run_suite(load_suite(spec), [ckpt], out, data_root=str(root), progress=False)["datasets"][0]["runs"][0]
    per = json.loads((out / FLAG / "results.json").read_text())
    assert per.get("auc_ranking") == run.get("auc_ranking") and per["metrics"]["auc"] == run["metrics"]["auc"]
    return run


def test_suite_as_is_ranks_a_saturated_heads_logits(tmp_path, root):
    plain = _run_suite(tmp_path, root, str(save_pretrained(pneumonia_classifier(), tmp_path / "a")), "plain")
    scaled_model = _scaled(pneumonia_classifier())
    tied = _assert_saturated_and_tied(scaled_model, _test_set(root))
    scaled = _run_suite(tmp_path, root, str(save_pretrained(scaled_model, tmp_path / "b")), "scaled")
    assert scaled["metrics"]["auc"] == plain["metrics"]["auc"] != tied  # was the tied probabilities' AUC
    assert scaled["metrics"]["acc"] == plain["metrics"]["acc"]
    assert scaled["auc_ranking"] == plain["auc_ranking"] == "logits"


def test_suite_as_is_unsaturated_auc_is_the_probabilities_auc(tmp_path, root):
    """Guard (passes before and after): where nothing saturates, ranking the logits changes no number: the suite's
    AUC and its interval are bit-identical to those of the probabilities alone."""
    model = pneumonia_classifier()
    ds = _test_set(root)
    p = predict_scores(model, ds)
    assert 0.0 < p.min() and p.max() < 1.0
    run = _run_suite(tmp_path, root, str(save_pretrained(model, tmp_path / "a")), "plain")
    written = write_classification_report(tmp_path / "probs", ds.labels, p, ds.task, ds.label_names, {}, n_boot=20)
    assert run["metrics"]["auc"] == written["metrics"]["auc"] and run["ci"]["auc"] == written["ci"]["auc"]


def test_suite_linear_probe_ranks_its_logits(tmp_path, root, monkeypatch):
    from medfm.evaluation import protocols

    ckpt = str(save_pretrained(pneumonia_classifier(), tmp_path / "a"))
    plain = _run_suite(tmp_path, root, ckpt, "plain", "linear")
    fit, probes = protocols.fit_linear_probe, []

    def scaled_fit(*args, **kwargs):  # the same probe, its logits exactly SCALE times
        probe = fit(*args, **kwargs)
        probe.coef, probe.intercept = probe.coef * SCALE, probe.intercept * SCALE
        probes.append(probe)
        return probe

    monkeypatch.setattr(protocols, "fit_linear_probe", scaled_fit)
    scaled = _run_suite(tmp_path, root, ckpt, "scaled", "linear")
    assert scaled["metrics"]["auc"] == plain["metrics"]["auc"]
    assert scaled["auc_ranking"] == plain["auc_ranking"] == "logits"
    assert np.isin(probes[-1].predict(np.random.default_rng(0).normal(size=(8, probes[-1].coef.shape[1]))),
                   (0.0, 1.0)).all()  # the scaled probe's probabilities are all saturated


def test_suite_finetune_heads_rank_their_logits(tmp_path, root, monkeypatch):
    """The fine-tuned classifier (here stood in for, untrained, by a saturated one) is scored by its logits."""
    from medfm.evaluation import finetune_protocol

    ckpt = str(save_pretrained(pneumonia_classifier(), tmp_path / "a"))

    def fake_finetune(encoder, checkpoint, flag, size, fraction, workdir, *args, **kwargs):
        workdir.mkdir(parents=True, exist_ok=True)  # the run folder the suite moves into its output
        return _scaled(pneumonia_classifier()).eval()

    monkeypatch.setattr(finetune_protocol, "finetune_classifier", fake_finetune)
    tied = _assert_saturated_and_tied(_scaled(pneumonia_classifier()), _test_set(root))
    run = _run_suite(tmp_path, root, ckpt, "ft", "finetune")
    plain = _run_suite(tmp_path, root, ckpt, "plain")  # the same weights unscaled, as they are
    assert run["metrics"]["auc"] == plain["metrics"]["auc"] != tied
    assert run["auc_ranking"] == "logits"


def test_suite_knn_ranks_its_vote_shares(tmp_path, root):
    """kNN has no logits: its report says the AUC ranked the probabilities (the vote shares)."""
    run = _run_suite(tmp_path, root, str(save_pretrained(pneumonia_classifier(), tmp_path / "a")), "k", "knn")
    assert run["auc_ranking"] == "probabilities" and 0.0 <= run["metrics"]["auc"] <= 1.0


def test_linear_probe_outputs_are_its_scores_and_logits():
    z = np.array([[1.0], [2.0], [3.0], [4.0], [-1.0]])
    y = np.array([0, 1, 0, 1, 0])
    probe = LinearProbe(np.zeros(1), np.ones(1), np.array([[60.0]]), np.array([0.0]), "binary-class")
    scores, logits = probe.outputs(z)
    np.testing.assert_array_equal(scores, probe.predict(z))
    np.testing.assert_array_equal(logits, [[0.0, 60.0], [0.0, 120.0], [0.0, 180.0], [0.0, 240.0], [0.0, -60.0]])
    assert (scores[:4, 1] == 1.0).all()  # expit above ~37 is exactly 1.0 even in float64
    assert classification_metrics(y, scores, "binary-class")["auc"] == pytest.approx(2 / 3)  # four tied at 1.0
    assert classification_metrics(y, scores, "binary-class", logits=logits)["auc"] == binary_auc(y, z[:, 0])
    assert binary_auc(y, z[:, 0]) == pytest.approx(5 / 6)  # 2 beats 1 and -1, 4 beats all three
    multi = LinearProbe(np.zeros(1), np.ones(1), np.array([[1.0], [0.0], [-1.0]]), np.zeros(3), "multi-class")
    scores, logits = multi.outputs(z)
    np.testing.assert_array_equal(scores, multi.predict(z))
    np.testing.assert_array_equal(logits, multi.logits(z))


def test_validation_auc_of_a_finetune_epoch_ranks_the_logits(tmp_path, root, monkeypatch):
    """``run_finetune``'s per-epoch ``val_auc`` (metrics.jsonl) of a saturated model was its tied probabilities'."""
    import medfm.training.runs as runs
    from medfm.config import from_dict
    from medfm.training.recipes import FinetuneRecipe

    captured = {}

    class Stop(Exception):
        pass

    class CapturingTrainer:
        def __init__(self, *args, epoch_end_fn=None, **kwargs):
            captured["epoch_end"] = epoch_end_fn

        def fit(self, **kwargs):
            raise Stop

    monkeypatch.setattr(runs, "Trainer", CapturingTrainer)
    recipe = from_dict(FinetuneRecipe, {"data": {"dataset": FLAG, "verify_md5": False, "val_split": "val"},
                                        "encoder": {"name": "resnet_test"}, "mode": "full", "augment": None,
                                        "train": {"epochs": 1, "batch_size": 8, "precision": "fp32"}})
    with pytest.raises(Stop):
        runs.run_finetune(recipe, tmp_path / "run", data_root=str(root))
    val = MedMNISTDataset(FLAG, split="val", data_root=str(root))
    tied = _assert_saturated_and_tied(_scaled(pneumonia_classifier()), val)
    plain = captured["epoch_end"](pneumonia_classifier(), 0)
    scaled = captured["epoch_end"](_scaled(pneumonia_classifier()), 0)
    assert scaled["val_auc"] == plain["val_auc"] != tied and scaled["val_acc"] == plain["val_acc"]


@pytest.mark.usefixtures("tmp_medfm_cache")
def test_zeroshot_eval_ranks_the_scaled_cosine_logits(tmp_path, root, monkeypatch):
    import medfm
    from medfm.evaluation.zeroshot import zeroshot_eval
    from medfm.objectives.clip import CLIP
    from medfm.registry import OBJECTIVES
    from tests.conftest import save_tiny_bert

    words = ["a", "chest", "x", "ray", "showing", "pneumonia", "no", "(", ")", "normal", "image", "of", "the", ":"]
    text = {"name": "hf", "model_name_or_path": str(save_tiny_bert(tmp_path / "bert", words))}
    torch.manual_seed(0)
    enc = medfm.create_encoder("resnet_test", in_chans=1, img_size=28)
    model = OBJECTIVES.build("clip", encoder=enc, text_encoder=text, embed_dim=16, proj_hidden_dim=32,
                             image_proj_layers=1, augment=False)
    ckpt = medfm.save_pretrained(model.eval(), tmp_path / "clip")
    plain = zeroshot_eval(str(ckpt), FLAG, data_root=str(root), output=tmp_path / "plain")
    scale = CLIP.scale
    monkeypatch.setattr(CLIP, "scale", lambda self: scale(self) * SCALE)
    scaled = zeroshot_eval(str(ckpt), FLAG, data_root=str(root), output=tmp_path / "scaled")
    saved = np.load(tmp_path / "scaled" / "predictions.npz")
    p, y = saved["scores"], saved["labels"].ravel()
    assert np.isin(p, (0.0, 1.0)).all() and 0 < y.sum() < len(y)  # saturated
    tied = classification_metrics(y, p, "binary-class")["auc"]
    assert scaled["metrics"]["auc"] == plain["metrics"]["auc"] != tied  # was the tied probabilities' AUC
    margin = saved["logits"][:, 1].astype(np.float64) - saved["logits"][:, 0]
    assert scaled["metrics"]["auc"] == binary_auc(y, margin) and scaled["auc_ranking"] == "logits"


def test_report_records_which_ranking_its_auc_used(tmp_path):
    z = np.array([[0.0, 110.0], [0.0, 105.0], [0.0, 120.0], [0.0, 106.0]], dtype=np.float32)
    p = torch.softmax(torch.from_numpy(z), -1).numpy()
    y = np.array([1, 0, 1, 0])
    with_logits = write_classification_report(tmp_path / "l", y, p, "binary-class", None, {}, n_boot=10, logits=z)
    without = write_classification_report(tmp_path / "p", y, p, "binary-class", None, {}, n_boot=10)
    assert (with_logits["auc_ranking"], with_logits["metrics"]["auc"]) == ("logits", 1.0)
    assert (without["auc_ranking"], without["metrics"]["auc"]) == ("probabilities", 0.5)
    assert json.loads((tmp_path / "l" / "results.json").read_text())["auc_ranking"] == "logits"
    assert "| auc_ranking | probabilities |" in (tmp_path / "p" / "report.md").read_text()
