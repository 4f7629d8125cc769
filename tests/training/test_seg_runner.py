"""``medfm segment``: crops/flips, and a tiny end-to-end run on synthetic CHASE_DB1 files."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from medfm.config import from_dict
from medfm.training.segmentation import SegmentationRecipe, random_crop, random_flips, run_segmentation





def test_random_crop_stays_inside_valid_region():
    images = torch.zeros(2, 1, 12, 10)
    masks = torch.zeros(2, 12, 10, dtype=torch.long)
    images[0, 0, :6, :5] = 1  # item 0 is a 6x5 image padded to 12x10
    masks[1] = 1
    valid = torch.tensor([[6, 5], [12, 10]])
    for seed in range(5):
        ci, cm = random_crop(images, masks, valid, [4, 4], torch.Generator().manual_seed(seed))
        assert ci.shape == (2, 1, 4, 4) and cm.shape == (2, 4, 4)
        assert ci[0].sum() >= 4 * 3  # mostly inside the 6x5 region (start <= 2 / 1)
        assert cm[1].min() == 1
    a = random_crop(images, masks, valid, [4, 4], torch.Generator().manual_seed(3))
    b = random_crop(images, masks, valid, [4, 4], torch.Generator().manual_seed(3))
    assert torch.equal(a[0], b[0])
    small = random_crop(images, masks, valid, [16, 8], torch.Generator().manual_seed(0))  # padded when too small
    assert small[0].shape == (2, 1, 16, 8)


def test_random_flips_flip_image_and_mask_together():
    x = torch.arange(6.0).reshape(1, 1, 2, 3)
    m = torch.arange(6).reshape(1, 2, 3)
    for seed in range(6):
        fi, fm = random_flips(x, m, [0, 1], torch.Generator().manual_seed(seed))
        assert torch.equal(fi[0, 0].long(), fm[0])


def _fake_chase(root):
    folder = root / "chase_db1" / "CHASEDB1"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in ("01L", "01R", "11L"):
        img = rng.integers(0, 60, (40, 44, 3), dtype=np.uint8)
        m = np.zeros((40, 44), bool)
        m[10:13, :] = m[:, 20:23] = True
        img[m] = 230
        Image.fromarray(img).save(folder / f"Image_{i}.png", format="PNG")
        (folder / f"Image_{i}.png").rename(folder / f"Image_{i}.jpg")  # lossless content, .jpg name as upstream
        for obs in ("1stHO", "2ndHO"):
            Image.fromarray(m).convert("1").save(folder / f"Image_{i}_{obs}.png")


@pytest.mark.parametrize("mode,normalize", [("full", "channel_zscore"), ("lora", "none")])
def test_end_to_end_run_and_reload(tmp_path, mode, normalize):
    _fake_chase(tmp_path / "data")
    recipe = from_dict(SegmentationRecipe, {
        "data": {"dataset": "chase_db1", "patch": [32, 32], "repeats": 4, "flip_axes": [0, 1], "max_train": 2, "max_test": 1,
                 "normalize": normalize},
        "encoder": {"name": "resnet_test"},
        "decoder": {"stem_channels": 8},
        "mode": mode,
        "train": {"epochs": 2, "batch_size": 4, "lr": 3e-3, "precision": "fp32", "log_every": 1, "num_threads": 1},
        "eval": {"overlays": 1, "tolerance": 1.0, "overlap": 0.25},
    })
    res = run_segmentation(recipe, tmp_path / "run", data_root=str(tmp_path / "data"))
    out = tmp_path / "run"
    saved = json.loads((out / "results.json").read_text())
    assert saved["task"]["test_ids"] == ["11L"] and saved["task"]["train_ids"] == ["01L", "01R"]
    assert set(saved["per_case"]["11L"]["vessel"]) == {"dice", "hd95", "surface_dice"}
    assert saved["human_reference"]["per_case"]["11L"]["vessel"]["dice"] == 1.0  # the fake observers agree
    assert (out / "overlays" / "11L.png").is_file() and (out / "results.md").is_file()
    losses = [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(losses) == 4 and all(np.isfinite(losses))
    # the saved checkpoint reproduces the evaluated model
    from medfm.hub import from_pretrained
    from medfm.training.seg_tasks import build_task

    model = from_pretrained(res["checkpoint"])
    assert model.inference["normalize"] == normalize
    assert model.inference["overlap"] == 0.25  # the evaluated overlap, the pipeline's default for this checkpoint
    task = build_task(recipe.data, str(tmp_path / "data"))
    first = task.training_arrays().images[0]
    assert (abs(float(first.mean())) < 1e-5) == (normalize == "channel_zscore")  # z-scored training images
    case = task.load_case("11L")
    pred = task.predict(model, case, 0.25, 4)
    from medfm.evaluation.segmentation import dice_score

    assert dice_score(pred == 1, case.reference == 1) == pytest.approx(saved["per_case"]["11L"]["vessel"]["dice"])


def _fake_lgg(root, patients=("TCGA_AA_0001_20000101", "TCGA_AA_0002_20000101", "TCGA_AA_0003_20000101")):
    rng = np.random.default_rng(1)
    for p in patients:
        folder = root / "lgg_tcga_flair_seg_3ch" / "images" / p
        folder.mkdir(parents=True)
        for n in (1, 2):
            img = rng.integers(0, 60, (32, 32, 3), dtype=np.uint8)
            m = np.zeros((32, 32), np.uint8)
            m[8:16, 10:20] = 255
            img[m > 0] = 200
            Image.fromarray(img).save(folder / f"{p}_{n}.png")
            Image.fromarray(m).save(folder / f"{p}_{n}_mask.png")


class _BagOfWords:
    spec = {"name": "bow_seg_test"}

    def encode(self, texts):
        vecs = []
        for t in texts:
            v = torch.zeros(12)
            for w in t.lower().split():
                v[sum(map(ord, w)) % 12] += 1.0
            vecs.append(v)
        return torch.stack(vecs)


def test_text_conditioned_multi_task_run(tmp_path):
    from medfm.registry import TEXT_ENCODERS
    from medfm.training.segmentation import segment_from_recipe

    if "bow_seg_test" not in TEXT_ENCODERS:
        TEXT_ENCODERS.register("bow_seg_test", family="test")(lambda: _BagOfWords())
    _fake_chase(tmp_path / "data")
    _fake_lgg(tmp_path / "data")
    import yaml

    recipe = {
        "tasks": [
            {"name": "vessel", "modality": "fundus", "target": "vessels", "query": "the retinal vessels",
             "loss_weight": 2.0,
             "data": {"dataset": "chase_db1", "patch": [32, 32], "repeats": 2, "max_train": 2, "max_test": 1,
                      "normalize": "channel_zscore"}},
            {"name": "lesion", "modality": "brain MRI", "target": "abnormality",
             "data": {"dataset": "lgg_flair", "patch": [32, 32], "flip_axes": [1], "missing_sequence_p": 0.5}},
        ],
        "domain_norm": True,
        "text_encoder": {"name": "bow_seg_test"},
        "encoder": {"name": "resnet_test"},
        "decoder": {"stem_channels": 8},
        "head": {"embed_dim": 16, "controller_hidden": 16},
        "train": {"epochs": 1, "batch_size": 4, "precision": "fp32", "log_every": 1},
        "eval": {"overlays": 1, "distances": False, "overlap": 0.25},
    }
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    line = segment_from_recipe(tmp_path / "r.yaml", tmp_path / "run", data_root=str(tmp_path / "data"))
    assert line.startswith("text-conditioned test vessel: Dice")
    res = json.loads((tmp_path / "run" / "results.json").read_text())
    assert set(res["tasks"]) == {"vessel", "lesion"}
    assert res["tasks"]["lesion"]["task"]["test_ids"] == ["TCGA_AA_0003_20000101"]
    assert res["tasks"]["vessel"]["referring"]["matched_target"] == "vessel"
    assert (tmp_path / "run" / "tasks" / "lesion" / "overlays" / "TCGA_AA_0003_20000101.png").is_file()
    from medfm.hub import from_pretrained

    model = from_pretrained(res["checkpoint"])
    assert model.target_names == ["vessel", "lesion"] and model.prompts[1] == "A brain MRI image of abnormality"
    assert model.domain_norm and model.modalities == ["fundus", "brain MRI"]
    assert model.target_inference["vessel"]["normalize"] == "channel_zscore"
    assert model.target_inference["lesion"]["normalize"] == "none"
    assert model.target_inference["vessel"]["overlap"] == model.target_inference["lesion"]["overlap"] == 0.25
    from medfm.hub import load_config

    assert load_config(res["checkpoint"])["training"]["loss_weights"] == {"vessel": 2.0, "lesion": 1.0}


def test_multitask_batches_alternate_between_tasks():
    from medfm.data.segmentation import SegmentationArrays
    from medfm.training.text_segmentation import MultiTaskArrays

    a = SegmentationArrays([np.zeros((1, 4, 4), np.float32)] * 30, [np.zeros((4, 4), np.uint8)] * 30)
    b = SegmentationArrays([np.ones((1, 6, 6), np.float32)] * 10, [np.ones((6, 6), np.uint8)] * 10)
    mixed = MultiTaskArrays([a, b], alternate=False).get_batch(torch.tensor([0, 35, 3]))
    assert mixed["image_0"].shape[0] == 2 and mixed["image_1"].shape[0] == 1
    alt = MultiTaskArrays([a, b], alternate=True)
    firsts = {0: 0, 1: 0}
    gen = torch.Generator().manual_seed(0)
    for _ in range(400):
        batch = alt.get_batch(torch.randperm(40, generator=gen)[:4])
        keys = {k.split("_")[1] for k in batch}
        assert len(keys) == 1 and batch[f"image_{keys.pop()}"].shape[0] == 4  # one task per batch
        firsts[1 if "image_1" in batch else 0] += 1
    assert 0.6 < firsts[0] / 400 < 0.9  # task chosen in proportion to its size (30 of 40)
    assert torch.equal(alt.get_batch(torch.tensor([35, 1, 2]))["image_1"], b.get_batch(torch.tensor([5, 1, 2]))["image"])


def test_missing_sequence_dropout_copies_the_fill_channel():
    from medfm.training.segmentation import random_missing_sequences

    x = torch.stack([torch.full((2, 2), float(c)) for c in range(3)]).expand(400, 3, 2, 2).contiguous()
    same = random_missing_sequences(x, 0.0, 1, torch.Generator().manual_seed(0))
    assert same is x
    out = random_missing_sequences(x, 0.3, 1, torch.Generator().manual_seed(0))
    assert torch.equal(out[:, 1], x[:, 1])  # FLAIR itself is never replaced
    for c in (0, 2):
        replaced = (out[:, c] == 1).all(dim=(-2, -1))
        assert ((out[:, c] == c).all(dim=(-2, -1)) | replaced).all()  # a channel is kept or a FLAIR copy
        assert 0.2 < replaced.float().mean() < 0.4
    again = random_missing_sequences(x, 0.3, 1, torch.Generator().manual_seed(0))
    assert torch.equal(out, again)
    with pytest.raises(ValueError, match="not a channel"):
        random_missing_sequences(x, 0.3, 3, torch.Generator())


def test_unlabelled_cross_task_targets_carry_no_gradient():
    """With ``cross_task_targets: unlabelled`` an image's loss ignores the other tasks' logits;
    with the default ``absent`` they are pushed toward background."""
    import medfm
    from medfm.adapters.text_seg import build_text_segmenter
    from medfm.training.text_segmentation import TextSegRecipe, text_seg_step

    TARGETS = [{"name": "vessel", "modality": "fundus", "target": "vessels"},
               {"name": "lesion", "modality": "brain MRI", "target": "abnormality"}]
    torch.manual_seed(0)
    enc = medfm.create_encoder("resnet_test", in_chans=3, img_size=28)
    model = build_text_segmenter(enc, TARGETS, _BagOfWords(), head={"embed_dim": 16, "controller_hidden": 16})
    tasks = [{"name": t["name"], "modality": t["modality"], "target": t["target"],
              "data": {"dataset": "chase_db1", "patch": [16, 16]}} for t in TARGETS]
    batch = {"image_0": torch.rand(2, 3, 20, 20), "mask_0": (torch.rand(2, 20, 20) > 0.7).long(),
             "valid_0": torch.tensor([[20, 20], [20, 20]])}
    grads = {}
    for mode in ("absent", "unlabelled", "weighted"):
        weighted = [{**tasks[0], "loss_weight": 3.0}, tasks[1]]
        recipe = (TextSegRecipe(tasks=weighted) if mode == "weighted"
                  else TextSegRecipe(tasks=tasks, cross_task_targets=mode))
        step = text_seg_step(recipe)
        captured = {}
        orig = model.forward

        def spy(*a, **k):
            out = orig(*a, **k)
            out.retain_grad()
            captured["logits"] = out
            return out

        model.forward = spy
        try:
            step(model, batch, torch.Generator().manual_seed(0))["loss"].backward()
        finally:
            model.forward = orig
        grads[mode] = captured["logits"].grad
        model.zero_grad()
    assert grads["unlabelled"][:, 1].abs().max() == 0  # the lesion target is unlabelled on fundus images
    assert grads["unlabelled"][:, 0].abs().max() > 0
    assert grads["absent"][:, 1].abs().max() > 0
    # loss_weight 3 on the vessel target: its logits' gradient grows, the lesion's shrinks
    assert grads["weighted"][:, 0].abs().sum() > 1.2 * grads["absent"][:, 0].abs().sum()
    assert grads["weighted"][:, 1].abs().sum() < 0.8 * grads["absent"][:, 1].abs().sum()
    with pytest.raises(ValueError, match="cross_task_targets"):
        TextSegRecipe(tasks=tasks, cross_task_targets="ignore")
    with pytest.raises(ValueError, match="domain_stem: true needs domain_norm"):
        TextSegRecipe(tasks=tasks, domain_stem=True)
    with pytest.raises(ValueError, match="loss weights must be positive"):
        TextSegRecipe(tasks=[{**t, "loss_weight": -1.0} if i == 0 else t for i, t in enumerate(tasks)])


@pytest.mark.parametrize("key", ["max_train", "max_test"])
def test_zero_case_limits_are_refused(key):
    """max_train: 0 / max_test: 0 used to mean "every case" (``ids[:n] if n else ids``)."""
    from medfm.training.seg_tasks import SegDataConfig

    with pytest.raises(ValueError, match=rf"data\.{key} must be an integer >= 1 \(or left out for all cases\), got 0$"):
        SegDataConfig(dataset="chase_db1", **{key: 0})
    assert getattr(SegDataConfig(dataset="chase_db1", **{key: 1}), key) == 1
