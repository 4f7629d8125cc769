"""CLIP objective: the loss against a hand-written reference, training, freezing, checkpoints."""
import math

import pytest
import torch

import medfm
from medfm.objectives import clip_loss
from medfm.objectives.clip import text_ids_of
from medfm.registry import OBJECTIVES
from tests.conftest import save_tiny_bert, train_objective_losses

WORDS = ["a", "chest", "x", "ray", "hand", "brain", "mri", "ct"]
pytestmark = pytest.mark.usefixtures("tmp_medfm_cache")


@pytest.fixture(scope="module")
def text_spec(tmp_path_factory):
    return {"name": "hf", "model_name_or_path": str(save_tiny_bert(tmp_path_factory.mktemp("bert"), WORDS))}


def clip_reference(img, txt, scale, ids=None):
    """Plain loops: mean over rows and columns of -sum_j target_ij log softmax_j(scale * cos)."""
    b = img.shape[0]
    cos = [[float(img[i] @ txt[j] / (img[i].norm() * txt[j].norm())) for j in range(b)] for i in range(b)]

    def target(i, j):
        if ids is None:
            return 1.0 if i == j else 0.0
        same = [k for k in range(b) if ids[k] == ids[i]]
        return 1.0 / len(same) if ids[j] == ids[i] else 0.0

    def direction(sim):
        total = 0.0
        for i in range(b):
            log_den = math.log(sum(math.exp(scale * sim(i, k)) for k in range(b)))
            total += -sum(target(i, j) * (scale * sim(i, j) - log_den) for j in range(b))
        return total / b

    return 0.5 * (direction(lambda i, j: cos[i][j]) + direction(lambda i, j: cos[j][i]))


@pytest.mark.parametrize("scale", [1.0, 14.3])
@pytest.mark.parametrize("ids", [None, [0, 1, 0, 2, 1]])
def test_clip_loss_matches_hand_written_reference(scale, ids):
    g = torch.Generator().manual_seed(1)
    img, txt = torch.randn(5, 6, generator=g, dtype=torch.float64), torch.randn(5, 6, generator=g, dtype=torch.float64)
    got = clip_loss(img, txt, scale, None if ids is None else torch.tensor(ids))
    assert got.item() == pytest.approx(clip_reference(img, txt, scale, ids), abs=1e-5)


def test_clip_loss_hand_computed_and_distinct_ids_equal_plain_clip():
    # two orthogonal pairs aligned with their texts: each row's logits are (s, 0)
    e = torch.eye(2)
    s = 5.0
    assert clip_loss(e, e.clone(), s).item() == pytest.approx(math.log1p(math.exp(-s)), abs=1e-6)
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g)
    assert clip_loss(a, b, 3.0, torch.arange(4)).item() == pytest.approx(clip_loss(a, b, 3.0).item(), abs=1e-6)


def test_clip_loss_errors():
    with pytest.raises(ValueError, match="equal shape"):
        clip_loss(torch.randn(3, 4), torch.randn(3, 5), 1.0)
    with pytest.raises(ValueError, match="at least 2"):
        clip_loss(torch.randn(1, 4), torch.randn(1, 4), 1.0)
    with pytest.raises(ValueError, match="positive"):
        clip_loss(torch.randn(3, 4), torch.randn(3, 4), 0.0)
    with pytest.raises(ValueError, match="text_ids"):
        clip_loss(torch.randn(3, 4), torch.randn(3, 4), 1.0, torch.arange(2))


def test_text_ids_group_identical_strings():
    assert text_ids_of(["a", "b", "a", "c"]).tolist() == [0, 1, 0, 2]


def _build(text_spec, **kw):
    torch.manual_seed(0)
    enc = medfm.create_encoder("resnet_test", in_chans=1, img_size=28)
    return OBJECTIVES.build("clip", encoder=enc, text_encoder=text_spec, embed_dim=16, proj_hidden_dim=32, **kw)


def _batch(n=8):
    g = torch.Generator().manual_seed(0)
    texts = ["a chest x ray", "a hand x ray", "brain mri", "a ct"]
    return {"image": torch.rand(n, 1, 28, 28, generator=g), "text": [texts[i % 4] for i in range(n)]}


def test_loss_decreases_and_only_the_text_projection_trains_on_the_text_side(text_spec):
    obj = _build(text_spec)
    losses = train_objective_losses(obj, _batch(), 15)
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3
    assert not any(p.requires_grad for p in obj.text_model.parameters())
    assert obj.text_proj.weight.grad is not None and obj.logit_scale.grad is not None
    assert not any(k.startswith(("_text", "text_model")) for k in obj.state_dict())
    assert {k.split(".")[0] for k in obj.state_dict()} == {"encoder", "image_proj", "text_proj", "logit_scale"}


def test_logit_scale_starts_at_one_over_007_and_is_clipped_at_100(text_spec):
    obj = _build(text_spec)
    assert obj.scale().item() == pytest.approx(1 / 0.07, rel=1e-6)
    with torch.no_grad():
        obj.logit_scale.fill_(10.0)
    assert obj.scale().item() == pytest.approx(100.0, rel=1e-6)
    fixed = _build(text_spec, learn_temperature=False)
    assert "logit_scale" not in dict(fixed.named_parameters()) and "logit_scale" in fixed.state_dict()


def test_checkpoint_round_trip_without_text_weights(text_spec, tmp_path):
    from safetensors.torch import load_file

    obj = _build(text_spec)
    obj(_batch(), torch.Generator().manual_seed(0))
    obj.eval()
    path = medfm.save_pretrained(obj, tmp_path / "ckpt")
    saved = load_file(str(path / "model.safetensors"))
    assert not any("embeddings.word_embeddings" in k or k.startswith("text_model") for k in saved)
    back = medfm.from_pretrained(path)
    for k, v in obj.state_dict().items():
        assert torch.equal(back.state_dict()[k], v), k
    texts = ["a chest x ray", "brain mri"]
    torch.testing.assert_close(back.encode_text(texts), obj.encode_text(texts))
    images = torch.rand(2, 1, 28, 28)
    torch.testing.assert_close(back.encode_image(images), obj.encode_image(images))


def test_text_embeddings_go_through_the_disk_cache(text_spec, tmp_path):
    obj = _build(text_spec)

    class Dataset:
        unique_texts = ["a chest x ray", "brain mri"]

    obj.prepare_data(Dataset())
    shards = list((tmp_path / "cache" / "medfm" / "text_embeddings").rglob("shard-*.npz"))
    assert len(shards) == 1
    fresh = _build(text_spec)
    torch.testing.assert_close(fresh.text_features(["brain mri"]), obj.text_features(["brain mri"]))


def test_bad_batches_and_args(text_spec):
    obj = _build(text_spec)
    with pytest.raises(ValueError, match="'text'"):
        obj({"image": torch.rand(4, 1, 28, 28)}, torch.Generator())
    with pytest.raises(ValueError, match="4 images but 3 texts"):
        obj({"image": torch.rand(4, 1, 28, 28), "text": ["a", "b", "c"]}, torch.Generator())
    with pytest.raises(ValueError, match="frozen"):
        _build({**text_spec, "frozen": False})
    with pytest.raises(ValueError, match="init_temperature"):
        _build(text_spec, init_temperature=0.001)


def nt_xent_loop(z1, z2, t):
    """SimCLR eq. 1 over the 2B anchors, as plain loops."""
    z = torch.cat([z1, z2]).double()
    z = z / z.norm(dim=1, keepdim=True)
    n, total = len(z), 0.0
    for i in range(n):
        den = sum(math.exp(float(z[i] @ z[k]) / t) for k in range(n) if k != i)
        total += -(float(z[i] @ z[(i + n // 2) % n]) / t - math.log(den))
    return total / n


def test_slip_variant_matches_the_sum_of_hand_written_references(text_spec):
    obj = _build(text_spec, ssl_weight=0.5, ssl_temperature=0.2)
    assert "ssl_head.0.weight" in obj.state_dict() and obj.medfm_spec["args"]["ssl_weight"] == 0.5
    batch = _batch(6)
    out = obj(batch, torch.Generator().manual_seed(3))
    assert set(out) == {"loss", "clip_loss", "ssl_loss", "logit_scale"}
    with torch.no_grad():
        gen = torch.Generator().manual_seed(3)
        v = torch.cat([obj.views(batch["image"], gen), obj.views(batch["image"], gen)])
        feats = obj.encoder(v)
        img1, img2 = obj.image_proj(feats).chunk(2)
        txt = obj.text_proj(obj.text_features(batch["text"]))
        ids = text_ids_of(batch["text"]).tolist()
        scale = obj.scale().item()
        clip = 0.5 * (clip_reference(img1, txt, scale, ids) + clip_reference(img2, txt, scale, ids))
        ssl = nt_xent_loop(*obj.ssl_head(feats).chunk(2), 0.2)
    assert out["clip_loss"].item() == pytest.approx(clip, abs=1e-5)
    assert out["ssl_loss"].item() == pytest.approx(ssl, abs=1e-5)
    assert out["loss"].item() == pytest.approx(clip + 0.5 * ssl, abs=1e-5)
