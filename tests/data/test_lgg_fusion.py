"""TCGA-LGG multimodal samples: FLAIR-copy detection, absent keys, NaN-filled collation, clinical join."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from medfm.data.errors import DataShapeError
from medfm.data.lgg_fusion import CLINICAL_COLUMNS, LGGFusionSet, flair_copies, load_clinical, missing_sequences
from medfm.data.multimodal import collate_modalities, drop_modalities, keep_modalities, presence
from tests.helpers.lgg_fusion import CASES, write_fake_lgg


def test_flair_copies_on_synthetic_arrays():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, (4, 8, 8, 3), dtype=np.uint8)
    assert flair_copies(a) == {"pre": False, "post": False}
    b = a.copy()
    b[..., 2] = b[..., 1]
    assert flair_copies(b) == {"pre": False, "post": True}
    c = b.copy()
    c[2, 0, 0, 0] = c[2, 0, 0, 1]
    c[..., 0] = c[..., 1]
    assert flair_copies(c) == {"pre": True, "post": True}
    d = c.copy()
    d[3, 5, 5, 0] = (int(d[3, 5, 5, 1]) + 1) % 256  # equal on all slices but one -> not a copy
    assert flair_copies(d)["pre"] is False
    with pytest.raises(DataShapeError, match=r"\(S, H, W, 3\)"):
        flair_copies(np.zeros((8, 8, 3), np.uint8))


def test_dataset_absent_keys_and_batches(tmp_path):
    root = write_fake_lgg(tmp_path)
    ds = LGGFusionSet(img_size=8, data_root=root, patients=[c for c, _, _ in CASES], cache_dir=tmp_path / "cache")
    assert ds.missing == {CASES[0][0]: [], CASES[1][0]: ["pre", "post"], CASES[2][0]: ["post"]}
    s0, s1, s2 = ds[0], ds[3], ds[6]
    assert {"pre", "flair", "post", "clinical"} <= set(s0)
    assert "pre" not in s1 and "post" not in s1 and "flair" in s1
    assert "post" not in s2 and "pre" in s2
    assert s0["flair"].shape == (1, 8, 8) and 0 <= s0["flair"].min() and s0["flair"].max() <= 1
    assert [ds[i]["label"] for i in range(3)] == [1, 0, 1]
    # the clinical row is joined on the patient id; its missing value is NaN
    assert torch.isnan(s1["clinical"][1]) and not torch.isnan(s1["clinical"][0])
    assert s1["clinical"][0].item() == 1.0
    idx = torch.tensor([0, 3, 6, 4])
    fast = ds.get_batch(idx)
    slow = ds.collate([ds[int(i)] for i in idx])
    for m in ("pre", "flair", "post", "clinical"):
        assert torch.equal(fast["present"][m], slow["present"][m])
        assert torch.allclose(fast[m], slow[m], equal_nan=True)
    assert fast["present"]["post"].tolist() == [True, False, False, False]
    assert torch.isnan(fast["pre"][1]).all()  # NaN, never a zero image
    assert fast["patient"][1] == CASES[1][0]
    # cached arrays reload identically
    again = LGGFusionSet(img_size=8, data_root=root, patients=[c for c, _, _ in CASES], cache_dir=tmp_path / "cache")
    assert torch.equal(again.images, ds.images) and len(list((tmp_path / "cache").glob("*.npz"))) == 1


def test_presence_is_the_batches_masks_without_their_images(tmp_path, monkeypatch):
    """``medfm fuse`` built a batch of the whole training set's float images to read its presence masks."""
    root = write_fake_lgg(tmp_path)
    ds = LGGFusionSet(img_size=8, data_root=root, patients=[c for c, _, _ in CASES])
    idx = torch.tensor([6, 0, 3, 3])
    whole, part = ds.get_batch(torch.arange(len(ds)))["present"], ds.get_batch(idx)["present"]
    monkeypatch.setattr(LGGFusionSet, "get_batch", lambda self, indices: pytest.fail("presence built a batch"))
    for got, want in ((ds.presence(), whole), (ds.presence(idx), part)):
        assert list(got) == ["pre", "flair", "post", "clinical"] == list(want)
        assert all(torch.equal(got[m], want[m]) and got[m].dtype == torch.bool for m in got)
    assert ds.presence(idx)["pre"].tolist() == [True, True, False, False]
    mine = ds.presence()
    mine["pre"][0] = False  # a copy: the set's masks are not changed through it
    assert ds.available[0, 0]


def test_clinical_table_excludes_outcome(tmp_path):
    root = write_fake_lgg(tmp_path)
    table = load_clinical(root)
    assert set(table) == {"TCGA_AA_0001", "TCGA_AA_0002", "TCGA_AA_0003"}
    assert table["TCGA_AA_0001"].shape == (len(CLINICAL_COLUMNS),)
    assert "death01" not in CLINICAL_COLUMNS and "Patient" not in CLINICAL_COLUMNS


def test_collate_drop_keep():
    samples = [{"a": torch.ones(2), "label": 1}, {"label": 0}, {"a": torch.zeros(2), "b": torch.ones(3), "label": 1}]
    batch = collate_modalities(samples, ["a", "b", "c"])
    assert batch["present"]["a"].tolist() == [True, False, True]
    assert "c" not in batch and not batch["present"]["c"].any()
    assert torch.isnan(batch["a"][1]).all() and torch.isnan(batch["b"][:2]).all()
    assert batch["label"].tolist() == [1, 0, 1]
    dropped = drop_modalities(batch, {"a": torch.tensor([True, False, False])})
    assert dropped["present"]["a"].tolist() == [False, False, True] and torch.isnan(dropped["a"][0]).all()
    assert batch["present"]["a"].tolist() == [True, False, True]  # input untouched
    only_b = keep_modalities(batch, ["b"], ["a", "b", "c"])
    assert "a" not in only_b and presence(only_b, "a").tolist() == [False] * 3
    with pytest.raises(ValueError, match="different shapes"):
        collate_modalities([{"a": torch.ones(2)}, {"a": torch.ones(3)}], ["a"])


def _data_root():
    env = os.environ.get("MEDFM_DATA")
    root = Path(env) if env else Path(__file__).resolve().parents[3] / "shared" / "data"
    return root if (root / "lgg_tcga_flair_seg_3ch" / "images").is_dir() else None


@pytest.mark.slow
@pytest.mark.skipif(_data_root() is None, reason="TCGA-LGG data (lgg_tcga_flair_seg_3ch) not found under $MEDFM_DATA or ../shared/data")
def test_flair_copy_detector_matches_provenance():
    found = missing_sequences(_data_root())
    pre = sorted("_".join(c.split("_")[1:3]) for c, m in found.items() if "pre" in m)
    post = sorted("_".join(c.split("_")[1:3]) for c, m in found.items() if "post" in m)
    assert len(found) == 23
    assert pre == ["DU_7013", "HT_7877", "HT_8105", "HT_A616"]
    assert post == sorted(["DU_7013", "HT_7877", "HT_8105", "HT_A616", "DU_7301", "DU_8165", "FG_7634"])


def test_medfm_fuse_end_to_end_on_synthetic_lgg(tmp_path, capsys):
    from medfm.cli import main
    from medfm.hub import from_pretrained

    root = write_fake_lgg(tmp_path / "data", slices=4)
    recipe = tmp_path / "fusion.yaml"
    recipe.write_text(
        "data: {img_size: 16}\n"
        "image_encoder: {name: resnet_test}\n"
        "dim: 8\n"
        "models:\n"
        "  3mat: {fuser: 3mat, args: {heads: 2, layers: 1}}\n"
        "  late_zero_fill: {fuser: late_fusion_zero_fill}\n"
        "  single_flair: {fuser: late_fusion_zero_fill, args: {modalities: [flair]}}\n"
        "  multimodn_mnar: {fuser: multimodn, train_missing: mnar}\n"
        "train: {epochs: 1, batch_size: 4, precision: fp32, log_every: 1, warmup_epochs: 0}\n"
        "protocol: {n_boot: 5, mcar_rates: [0.5]}\n")
    out = tmp_path / "run"
    assert main(["fuse", str(recipe), "--output", str(out), "--data-root", str(root)]) == 0
    printed = capsys.readouterr().out
    assert "3mat: AUC" not in printed  # the test patient lacks post: no all-modality row
    res = json.loads((out / "results.json").read_text())
    assert res["split"]["test"] == [CASES[2][0]] and res["missing_sequences"][CASES[1][0]] == ["pre", "post"]
    assert {r["subset"] for r in res["subsets"]} == {"pre", "flair", "clinical", "pre+flair", "pre+clinical",
                                                    "flair+clinical", "pre+flair+clinical"}
    assert "multimodn_mnar (mnar-trained)" in res["checks"]["mnar_drop"]
    model = from_pretrained(out / "models" / "3mat" / "model")
    assert model.medfm_spec["name"] == "3mat"
    # a second run without --resume refuses to overwrite; with --resume it reuses the finished models
    assert main(["fuse", str(recipe), "--output", str(out), "--data-root", str(root)]) == 2
    capsys.readouterr()
    assert main(["fuse", str(recipe), "--output", str(out), "--data-root", str(root), "--resume"]) == 0
    # reused models are reported as reused and keep the training time of the run that trained them
    printed = capsys.readouterr().out
    assert "[fuse] 3mat: reused from " in printed and ": trained in" not in printed
    again = json.loads((out / "results.json").read_text())
    assert again["train_seconds"] == res["train_seconds"] and set(again["reused_models"]) == set(res["train_seconds"])


def test_collate_refuses_integer_images_but_keeps_integer_tables():
    """uint8 images were cast to float32 unscaled, so a fuser saw values up to 255 silently."""
    import numpy as np
    import pytest
    import torch

    from medfm.data.multimodal import collate_modalities

    img = np.full((1, 4, 4), 200, dtype=np.uint8)
    with pytest.raises(ValueError, match=r"modality 'flair' holds uint8 images; give float images in \[0, 1\]"):
        collate_modalities([{"flair": img}, {}], ["flair"])
    with pytest.raises(ValueError, match="holds int64 images"):
        collate_modalities([{"flair": torch.zeros(1, 4, 4, dtype=torch.long)}], ["flair"])
    batch = collate_modalities([{"flair": img / 255.0, "age": np.array([63], dtype=np.int64)}, {}], ["flair", "age"])
    assert batch["age"][0].item() == 63 and batch["present"]["age"].tolist() == [True, False]
    assert abs(batch["flair"][0].max().item() - 200 / 255) < 1e-6
