"""``medfm fuse`` with ``task: segmentation`` end to end on a tiny generated TCGA-LGG root, the
shared image/mask flip of :func:`seg_fusion_step`, and :func:`seg_fusion_checks` on a hand-computed case.

The fake LGG root is :func:`tests.helpers.lgg_fusion.write_fake_lgg` (3 patients; the test
patient, by the fixed i % 3 == 2 split, has pre + FLAIR; one train patient has FLAIR only).
"""
from __future__ import annotations

import json

import pytest
import torch

from medfm.evaluation.fusion_seg import seg_fusion_checks
from medfm.training.fusion_seg import seg_fusion_step
from tests.conftest import cli_error
from tests.helpers.lgg_fusion import CASES, write_fake_lgg

MODELS = ("fused_unet", "late_zero_fill", "single_flair")
DEC = "decoder: {decoder_channels: [8, 8, 8, 8], stem_channels: 8}"


def seg_recipe(path, models: str) -> str:
    """Write a 16-px segmentation recipe with ``models`` (YAML lines) and 1 epoch of 2 steps."""
    path.write_text(
        "task: segmentation\n"
        "data: {img_size: 16}\n"
        "modalities: [pre, flair, post]\n"
        "image_encoder: {name: resnet_test}\n"
        f"models:\n{models}"
        "train: {epochs: 1, batch_size: 4, precision: fp32, log_every: 1, warmup_epochs: 0}\n"
        "protocol: {n_boot: 5}\n")
    return str(path)


def test_fuse_segmentation_end_to_end_then_resume_reuses_models(tmp_path, capsys, monkeypatch):
    from medfm.cli import main

    root = write_fake_lgg(tmp_path / "data", slices=4)
    recipe = seg_recipe(tmp_path / "seg.yaml", (
        f"  fused_unet: {{fuser: fused_unet, args: {{fusion: hemis, modality_dropout: 0.1, {DEC}}}}}\n"
        f"  late_zero_fill: {{fuser: fused_unet, args: {{fusion: zero_fill, modality_dropout: 0.0, {DEC}}}}}\n"
        f"  single_flair: {{fuser: fused_unet, args: {{modalities: [flair], fusion: zero_fill, modality_dropout: 0.0, {DEC}}}}}\n"))
    out = tmp_path / "run"
    argv = ["fuse", recipe, "--output", str(out), "--data-root", str(root)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "pre+flair       fused_unet: Dice" in printed and "natural     single_flair: Dice" in printed
    assert all(f"[fuse-seg] {m}: trained in " in printed for m in MODELS) and "reused from" not in printed

    res = json.loads((out / "results.json").read_text())
    assert {"task", "split", "missing_sequences", "train_seconds", "subsets", "natural", "checks", "settings"} <= set(res)
    assert res["reused_models"] == {} and list(res["train_seconds"]) == list(MODELS)
    for m in MODELS:  # each model's folder records its own training time, for a later --resume
        cfg = json.loads((out / "models" / m / "model" / "config.json").read_text())
        assert cfg["training"]["train_seconds"] == res["train_seconds"][m] >= 0
    test_case = CASES[2][0]
    assert res["split"]["test"] == [test_case] and res["split"]["n_test_slices"] == 4
    assert res["missing_sequences"][CASES[1][0]] == ["pre", "post"]
    # the test patient has pre + FLAIR: 3 subsets; the FLAIR-only model has no row where FLAIR is not shown
    pairs = {(r["subset"], r["model"]) for r in res["subsets"]}
    assert pairs == {(s, m) for s in ("pre", "flair", "pre+flair") for m in MODELS[:2]} | {("flair", "single_flair"),
                                                                                         ("pre+flair", "single_flair")}
    assert [r["model"] for r in res["natural"]] == list(MODELS)
    for r in res["subsets"] + res["natural"]:
        assert 0.0 <= r["dice"] <= 1.0 and all(0.0 <= v <= 1.0 for v in r["dice_ci95"])
        assert r["n"] == 4 and r["n_patients"] == 1 and list(r["per_patient"]) == [test_case]
        assert r["dice"] == pytest.approx(r["per_patient"][test_case])
    assert set(res["checks"]["vs_late"]["fused_unet"]["diff"]) == {"pre", "flair", "pre+flair"}
    assert res["checks"]["all_vs_best_single"] == {}  # no test patient has all three sequences

    report = (out / "report.md").read_text()
    assert "| subset | n | fused_unet | late_zero_fill | single_flair |" in report and "## Checks" in report
    assert (out / "subsets.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for r in res["natural"]:
        card = (out / "models" / r["model"] / "model" / "README.md").read_text()
        assert f"| Dice | {r['dice']:.4f} |" in card

    # without --resume the finished run is refused; with it every model is reused, not retrained
    code, err = cli_error(capsys, argv)
    assert code == 2 and "--resume" in err
    weights = {m: (out / "models" / m / "model" / "model.safetensors").read_bytes() for m in MODELS}

    def no_training(self, resume=False):
        pytest.fail("--resume retrained a model whose final checkpoint exists")

    monkeypatch.setattr("medfm.training.loop.Trainer.fit", no_training)
    old_cfg = out / "models" / "single_flair" / "model" / "config.json"  # as saved before times were recorded
    cfg = json.loads(old_cfg.read_text())
    del cfg["training"]["train_seconds"]
    old_cfg.write_text(json.dumps(cfg))
    assert main(argv + ["--resume"]) == 0
    again = json.loads((out / "results.json").read_text())
    assert again["subsets"] == res["subsets"] and again["natural"] == res["natural"]
    # reuse is reported as reuse: the earlier training time is kept (None where it was not recorded),
    # not replaced by the seconds spent loading the checkpoint
    printed = capsys.readouterr().out
    assert ": trained in" not in printed
    for m in MODELS:
        assert f"[fuse-seg] {m}: reused from {out / 'models' / m / 'model'} (" in printed
    assert "single_flair: reused from" in printed and "(training time not recorded)" in printed
    assert again["train_seconds"] == {**res["train_seconds"], "single_flair": None}
    assert again["reused_models"] == {m: str(out / "models" / m / "model") for m in MODELS}
    assert {m: (out / "models" / m / "model" / "model.safetensors").read_bytes() for m in MODELS} == weights


@pytest.mark.parametrize("models, message", [
    ("  ok: {fuser: fused_unet}\n  late: {fuser: late_fusion_zero_fill}\n",
     "fuser 'late_fusion_zero_fill' is not a segmentation fuser (known: ['fused_unet'])"),
    ("  ok: {fuser: fused_unet}\n  typo: {fuser: fused_unett}\n", "unknown fuser 'fused_unett'; did you mean 'fused_unet'?"),
    ("  ok: {fuser: fused_unet}\n  mnar: {fuser: fused_unet, train_missing: mnar}\n",
     "seg.yaml: models.mnar.train_missing: segmentation models train with natural missingness only, got 'mnar'"),
])
def test_bad_segmentation_model_is_one_line_before_data_or_training(tmp_path, capsys, monkeypatch, models, message):
    """A classification (or unknown) fuser listed after a good one used to fail only after the data
    were read and the models before it had trained into the output folder."""
    def no_data(*a, **k):
        pytest.fail("the LGG data were read before the bad model was reported")

    monkeypatch.setattr("medfm.data.lgg_fusion.LGGFusionSet", no_data)
    out = tmp_path / "run"
    code, err = cli_error(capsys, ["fuse", seg_recipe(tmp_path / "seg.yaml", models), "--output", out])
    assert code == 2 and message in err
    assert not out.exists()


class RecordingSegModel(torch.nn.Module):
    """Stands in for a segmentation fuser: records the batch and the target mask it is given."""

    def __init__(self, modalities):
        super().__init__()
        self.modalities = list(modalities)
        self.seen = {}

    def forward(self, batch, gen=None):
        self.seen["batch"] = batch
        mask = batch["mask"]
        return {"logits": torch.zeros(mask.shape[0], 2, *mask.shape[1:], device=mask.device)}

    def loss(self, out, target):
        self.seen["target"] = target
        return out["logits"].sum()


def test_seg_fusion_step_flips_each_samples_images_and_mask_together():
    g = torch.Generator().manual_seed(0)
    b, s = 8, 12
    flair = torch.rand(b, 1, s, s, generator=g)
    pre = 1.0 - flair + 0.01 * torch.rand(b, 1, s, s, generator=g)
    mask = flair[:, 0] > 0.5  # the reference is a function of the image, so alignment is checkable
    pre[2] = float("nan")     # sample 2 lacks pre (NaN row, as in the batches)
    batch = {"pre": pre, "flair": flair, "mask": mask,
             "present": {"pre": torch.arange(b) != 2, "flair": torch.ones(b, dtype=torch.bool)}}
    model = RecordingSegModel(["pre", "flair"])
    out = seg_fusion_step(model, batch, torch.Generator().manual_seed(3))
    seen, target = model.seen["batch"], model.seen["target"]
    flipped = torch.tensor([torch.equal(seen["flair"][i], flair[i].flip(-1)) for i in range(b)])
    kept = torch.tensor([torch.equal(seen["flair"][i], flair[i]) for i in range(b)])
    assert (flipped ^ kept).all() and flipped.any() and kept.any()
    for i in range(b):
        assert torch.equal(target[i], (seen["flair"][i, 0] > 0.5).long())  # mask follows its own image
        want_pre = pre[i].flip(-1) if flipped[i] else pre[i]
        assert torch.allclose(seen["pre"][i], want_pre, equal_nan=True)  # both sequences flipped alike
    assert torch.equal(batch["mask"], mask) and torch.equal(batch["flair"], flair)  # the input batch is untouched
    assert out["loss"].item() == 0.0 and out["fg_frac"].item() == 0.0


def test_seg_fusion_step_with_the_batch_on_another_device_than_the_flip_draws():
    """The Trainer moves the batch to the training device while the flips come from a CPU
    generator: the mask flip used a CPU condition on a device mask (CUDA; the meta device here)."""
    batch = {"flair": torch.rand(4, 1, 8, 8, device="meta"), "mask": torch.zeros(4, 8, 8, dtype=torch.bool, device="meta"),
             "present": {"flair": torch.ones(4, dtype=torch.bool)}}
    model = RecordingSegModel(["flair"])
    out = seg_fusion_step(model, batch, torch.Generator().manual_seed(0))
    assert model.seen["target"].device.type == "meta" and out["loss"].device.type == "meta"


def test_seg_fusion_checks_hand_computed():
    full = "pre+flair+post"
    dice = {(full, "fused"): 0.80, (full, "late_zf"): 0.75, (full, "single_pre"): 0.60, (full, "single_flair"): 0.78,
            ("flair", "fused"): 0.70, ("flair", "late_zf"): 0.72, ("flair", "single_flair"): 0.95,
            ("pre", "fused"): 0.40, ("pre", "late_zf"): 0.45, ("post", "fused"): 0.30}
    res = {"subsets": [{"subset": s, "model": m, "dice": d} for (s, m), d in dice.items()]}
    checks = seg_fusion_checks(res, ["pre", "flair", "post"], tolerance=0.02)
    assert set(checks["all_vs_best_single"]) == set(checks["vs_late"]) == {"fused"}
    best = checks["all_vs_best_single"]["fused"]
    # the best single model on the all-sequence patients, not single_flair's 0.95 on the FLAIR subset
    assert best["best_single"] == "single_flair" and best["best_single_dice"] == 0.78
    assert best["fused"] == 0.80 and best["diff"] == pytest.approx(0.02)
    late = checks["vs_late"]["fused"]
    assert late["late"] == "late_zf" and late["tolerance"] == 0.02
    assert late["diff"] == pytest.approx({full: 0.05, "flair": -0.02, "pre": -0.05})  # no late row for "post"
    # 0.70 - 0.72 is exactly the tolerance, not worse by more (in floats it is -0.0200000000000000178)
    assert late["worse_by_more_than_tolerance"] == ["pre"]
    assert seg_fusion_checks(res, ["pre", "flair", "post"], tolerance=0.01)["vs_late"]["fused"][
        "worse_by_more_than_tolerance"] == ["flair", "pre"]


def test_segmentation_recipe_defaults_to_image_modalities_and_refuses_clinical():
    """A segmentation recipe without ``modalities:`` used to get the classification default with
    ``clinical`` and fail at the fuser ("drop the tabular modality"), naming nothing the user wrote."""
    from medfm.config import ConfigError, from_dict
    from medfm.training.fusion import FusionRecipe

    models = {"a": {"fuser": "fused_unet"}}
    assert from_dict(FusionRecipe, {"task": "segmentation", "models": models}).modalities == ["pre", "flair", "post"]
    assert from_dict(FusionRecipe, {"models": {"a": {"fuser": "3mat"}}}).modalities == ["pre", "flair", "post", "clinical"]
    with pytest.raises((ConfigError, ValueError), match="modalities: segmentation takes image modalities only; drop 'clinical'"):
        from_dict(FusionRecipe, {"task": "segmentation", "models": models, "modalities": ["flair", "clinical"]})
