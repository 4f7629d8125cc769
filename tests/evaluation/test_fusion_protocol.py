"""Missing-modality protocol: subsets, MCAR/MNAR masks, patient bootstrap, report files."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from medfm.data.multimodal import collate_modalities
from medfm.evaluation.fusion import (
    fusion_checks,
    mcar_drop,
    mnar_drop,
    modality_subsets,
    patient_bootstrap_auc,
    run_fusion_protocol,
    write_fusion_report,
)
from medfm.registry import FUSERS

MODS = ["pre", "flair", "post", "clinical"]


def test_modality_subsets_are_the_15_nonempty_ones():
    subs = modality_subsets(MODS)
    assert len(subs) == 15 and len(set(subs)) == 15
    assert subs[0] == ("pre",) and subs[-1] == tuple(MODS)


def test_mcar_rate_and_at_least_one_kept():
    n = 4000
    present = {m: torch.ones(n, dtype=torch.bool) for m in MODS}
    present["post"][: n // 2] = False
    drop = mcar_drop(present, 0.5, torch.Generator().manual_seed(0))
    assert not (drop["post"] & ~present["post"]).any()  # only present modalities can go
    rate = drop["pre"].float().mean().item()
    assert 0.45 < rate < 0.55
    kept = torch.stack([present[m] & ~drop[m] for m in MODS], 1)
    assert kept.any(1).all()
    with pytest.raises(ValueError, match="MCAR rate"):
        mcar_drop(present, 1.0, torch.Generator())


def test_mnar_ties_missingness_to_label_and_flips():
    n = 6000
    y = torch.arange(n) % 2
    present = {m: torch.ones(n, dtype=torch.bool) for m in MODS}
    g = torch.Generator().manual_seed(0)
    d = mnar_drop(y, present, ["pre", "flair", "post"], 0.8, 0.1, False, g)
    assert not d["clinical"].any()
    assert abs(d["pre"][y == 1].float().mean().item() - 0.8) < 0.03
    assert abs(d["pre"][y == 0].float().mean().item() - 0.1) < 0.03
    f = mnar_drop(y, present, ["pre", "flair", "post"], 0.8, 0.1, True, g)
    assert abs(f["pre"][y == 0].float().mean().item() - 0.8) < 0.03
    # with no always-present modality, a sample still keeps one
    only = {m: present[m] for m in ("pre", "flair")}
    d2 = mnar_drop(y, only, ["pre", "flair"], 1.0, 1.0, False, g)
    assert (~d2["pre"] | ~d2["flair"]).all()


def test_patient_bootstrap_perfect_scores():
    y = np.array([0, 1, 0, 1, 0, 1])
    s = y.astype(float)
    assert patient_bootstrap_auc(y, s, ["a", "a", "b", "b", "c", "c"], n_boot=50) == (1.0, 1.0)
    lo, hi = patient_bootstrap_auc(y, 1 - s, ["a", "a", "b", "b", "c", "c"], n_boot=50)
    assert lo == hi == 0.0


def test_patient_bootstrap_checks_its_input_once_not_per_resample(monkeypatch):
    # binary_auc's input check (shapes, NaN, 0/1) ran on every one of n_boot resamples of checked data
    import medfm.evaluation.fusion as fusion

    calls = []
    checked = fusion.binary_auc
    monkeypatch.setattr(fusion, "binary_auc", lambda t, s: calls.append(1) or checked(t, s))
    y = np.array([0, 1, 0, 1, 0, 1])
    assert patient_bootstrap_auc(y, y.astype(float), ["a", "a", "b", "b", "c", "c"], n_boot=50) == (1.0, 1.0)
    assert len(calls) == 1
    with pytest.raises(ValueError, match="y_score contains 1 NaN"):
        patient_bootstrap_auc(y, np.array([0.1, np.nan, 0.2, 0.9, 0.3, 0.8]), list("aabbcc"), n_boot=5)


def test_score_row_computes_the_full_auc_and_checks_patients_once(monkeypatch):
    # score_row computed the full-sample AUC (with binary_auc's input check) and checked the patient ids
    # a second time inside patient_bootstrap_auc, on arrays prepare_scores had already checked
    # (the resamples' AUCs: tests/evaluation/test_fusion_bootstrap_h35.py)
    import medfm.evaluation.fusion as fusion
    import medfm.evaluation.metrics as metrics

    checked, ids = [], []
    binary_auc, check_ids = fusion.binary_auc, fusion.check_patient_ids
    monkeypatch.setattr(fusion, "binary_auc", lambda t, s: checked.append(1) or binary_auc(t, s))
    monkeypatch.setattr(fusion, "check_patient_ids", lambda *a, **k: ids.append(1) or check_ids(*a, **k))
    rng = np.random.default_rng(0)
    y, p = rng.integers(0, 2, 40), rng.random(40)
    row = fusion.score_row(y, np.stack([1 - p, p], 1), [f"p{i // 4}" for i in range(40)], n_boot=20, seed=0)
    assert not checked and len(ids) == 1  # the full AUC without binary_auc's input check; the ids once
    assert row["auc"] == metrics.binary_auc(y, p)
    assert row["auc_ci95"] == list(patient_bootstrap_auc(y, p, [f"p{i // 4}" for i in range(40)], n_boot=20))


def _batch(n=24, side=28, f=3):
    g = torch.Generator().manual_seed(0)
    samples = []
    for i in range(n):
        s = {"pre": torch.rand(1, side, side, generator=g), "flair": torch.rand(1, side, side, generator=g),
             "clinical": torch.randn(f, generator=g), "label": i % 2, "patient": f"p{i % 4}"}
        if i % 3 == 0:
            del s["pre"]
        samples.append(s)
    return collate_modalities(samples, ["pre", "flair", "clinical"])


def test_protocol_runs_and_writes_report(tmp_path):
    mods = ["pre", "flair", "clinical"]
    common = dict(image_encoder={"name": "resnet_test"}, img_size=28, clinical_features=3, dim=8)
    torch.manual_seed(0)
    models = {"multimodn": FUSERS.build("multimodn", modalities=mods, **common).eval(),
              "late_zero_fill": FUSERS.build("late_fusion_zero_fill", modalities=mods, **common).eval(),
              "single_flair": FUSERS.build("late_fusion_zero_fill", modalities=["flair"], **common).eval()}
    batch = _batch()
    res = run_fusion_protocol(models, batch, mods, mnar_models={"multimodn_mnar": models["multimodn"]},
                              mcar_rates=[0.5], mnar_modalities=["pre", "flair"], n_boot=20)
    subsets = {(r["subset"], r["model"]): r for r in res["subsets"]}
    assert len({r["subset"] for r in res["subsets"]}) == 7
    # rows with "pre" only use samples that have pre (16 of 24)
    assert subsets[("pre", "multimodn")]["n"] == 16 and ("pre", "single_flair") not in subsets
    assert subsets[("flair", "single_flair")]["n"] == 24
    assert all(0 <= r["auc"] <= 1 for r in res["subsets"])
    assert {r["test"] for r in res["mnar"]} == {"natural", "mnar", "mnar_flipped"}
    assert "multimodn_mnar (mnar-trained)" in res["checks"]["mnar_drop"]
    assert res["checks"]["all_vs_best_single"]["multimodn"]["best_single"] == "single_flair"
    paths = write_fusion_report(res, tmp_path, {"note": "test"})
    assert json.loads(paths["results"].read_text())["note"] == "test"
    assert "pre+flair+clinical" in paths["report"].read_text()
    assert paths["plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_checks_flag_subsets_worse_than_late_fusion():
    rows = [{"subset": "a", "model": "fuser", "auc": 0.70}, {"subset": "a", "model": "late", "auc": 0.75},
            {"subset": "a+b", "model": "fuser", "auc": 0.90}, {"subset": "a+b", "model": "late", "auc": 0.89},
            {"subset": "a+b", "model": "single_a", "auc": 0.80}]
    checks = fusion_checks({"subsets": rows, "mnar": []}, ["a", "b"])
    assert checks["vs_late"]["fuser"]["worse_by_more_than_tolerance"] == ["a"]
    assert checks["all_vs_best_single"]["fuser"]["diff"] == pytest.approx(0.10)


def test_predict_probs_moves_each_chunk_to_the_models_device():
    """After training on a GPU the model is there and the test batch on the CPU (medfm fuse crashed
    with 'Expected all tensors to be on the same device' on an H200); the meta device stands in."""
    from medfm.data.multimodal import PRESENT_KEY
    from medfm.evaluation.fusion import predict_probs

    seen = []

    class OnMeta(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1, device="meta"))

        def forward(self, batch):
            seen.append({batch["flair"].device.type, *(p.device.type for p in batch[PRESENT_KEY].values())})
            return {"logits": torch.zeros(batch_size(batch), 2)}

        def scores(self, logits):
            return logits.softmax(-1)

    from medfm.data.multimodal import batch_size
    batch = {"flair": torch.rand(5, 1, 4, 4), "label": torch.zeros(5), "patient": list("abcde"),
             PRESENT_KEY: {"flair": torch.ones(5, dtype=torch.bool)}}
    assert predict_probs(OnMeta(), batch, batch_size_=2).tolist() == [0.5] * 5
    assert seen == [{"meta"}] * 3
