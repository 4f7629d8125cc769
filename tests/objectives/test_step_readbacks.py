"""Host read-backs (device syncs) per training step of each objective.

Each objective checked its image batch (:func:`medfm.objectives.inputs.check_image_batch`: one ``aminmax``,
read back), then the encoder checked the random views again (one ``aminmax`` per encoder call: 2 per step for
simclr, graph matching and CLIP, 3 for SwAV with local crops, 4 for MoCo with its key encoder); the views of a
checked batch are finite and clamped to [0, 1], so those checks could not fail. SwAV read its step counter back
twice per step also when no prototype ever freezes (now: only while prototypes can freeze, once per step), and
SLIP checked CLIP's logit scale twice per step.
Now: one ``aminmax`` per step, the losses and gradients bit-identical, and the same one-line errors.
"""
import copy
import sys

import pytest
import torch

import medfm
from medfm.encoders.base import EncoderInputError
from medfm.objectives import clip_loss
from medfm.objectives.clip import text_ids_of
from medfm.registry import OBJECTIVES
from tests.conftest import save_tiny_bert

SIDE = 16
TEXTS = ["a chest x ray", "a hand x ray", "brain mri", "a ct"]


@pytest.fixture(scope="module")
def text_spec(tmp_path_factory):
    words = sorted({w for t in TEXTS for w in t.split()})
    return {"name": "hf", "model_name_or_path": str(save_tiny_bert(tmp_path_factory.mktemp("bert"), words))}


def small_args(name, text_spec, **extra):
    """Small builds of each registered objective (SwAV with local crops, CLIP without the disk cache)."""
    args = {
        "simclr": dict(proj_dim=8, hidden_dim=16),
        "moco": dict(proj_dim=8, hidden_dim=16, queue_size=16),
        "swav": dict(proj_dim=8, hidden_dim=16, n_prototypes=8, n_local_views=2, local_size=8),
        "graph_matching": dict(proj_dim=8, hidden_dim=16, graph_size=4, k=2, local_dim=4, edge_dim=3),
        "clip": dict(text_encoder=text_spec, embed_dim=8, proj_hidden_dim=16, text_cache=False),
    }[name]
    return {**args, **extra}


def build(name, text_spec, encoder="resnet_test", **extra):
    torch.manual_seed(0)
    enc = medfm.create_encoder(encoder, in_chans=1, img_size=SIDE)
    return OBJECTIVES.build(name, encoder=enc, **small_args(name, text_spec, **extra)).train()


def batch(n=6, side=SIDE, channels=1):
    images = torch.rand(n, channels, side, side, generator=torch.Generator().manual_seed(0))
    return {"image": images, "text": [TEXTS[i % len(TEXTS)] for i in range(n)]}


#: (objective, extra arguments): every registered objective, and CLIP's other two paths
CASES = [(name, {}) for name in OBJECTIVES.names()] + [("clip", {"ssl_weight": 1.0}), ("clip", {"augment": False})]
IDS = [name + "".join(f"-{k}" for k in extra) for name, extra in CASES]


@pytest.fixture
def aminmax_calls(monkeypatch):
    """A list that grows by one each time ``torch.aminmax`` runs (the encoders' value check)."""
    calls, real = [], torch.aminmax

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(torch, "aminmax", counting)
    return calls


def step(model, seed=1):
    """One objective step (forward and backward) on :func:`batch`; returns the loss."""
    loss = model(batch(), torch.Generator().manual_seed(seed))["loss"]
    loss.backward()
    return loss


@pytest.mark.parametrize("name, extra", CASES, ids=IDS)
def test_one_value_check_per_step(name, extra, text_spec, aminmax_calls):
    """was 2 (simclr, graph_matching, clip in all three ways), 3 (swav with local crops), 4 (moco)."""
    model = build(name, text_spec, **extra)
    step(model, 0)  # CLIP loads its text model here
    aminmax_calls.clear()
    step(model)
    assert len(aminmax_calls) == 1


@pytest.mark.parametrize("name, extra, expected", [
    ("simclr", {}, 1), ("moco", {}, 1), ("swav", {}, 1),  # was 2, 4, 5 (swav: + its step counter twice)
    ("clip", {}, 2), ("clip", {"ssl_weight": 1.0}, 2), ("clip", {"augment": False}, 2),  # was 3, 4, 3
], ids=["simclr", "moco", "swav", "clip", "clip-slip", "clip-no-augment"])
def test_read_backs_per_step(name, extra, expected, text_spec, readbacks):
    """The image check, and CLIP's logit-scale check once per step (graph matching's solver is left out:
    its iterations read back a convergence flag each)."""
    model = build(name, text_spec, **extra)
    step(model, 0)
    readbacks.clear()
    step(model)
    assert len(readbacks) == expected, readbacks


def test_swav_reads_its_step_counter_back_only_while_prototypes_can_freeze(text_spec, readbacks):
    frozen = build("swav", text_spec, freeze_prototypes_steps=2)
    step(frozen, 0)
    readbacks.clear()
    step(frozen)
    assert readbacks.count("__int__") == 1  # once per step (it was once per resolution of crops: 2)
    assert frozen.prototypes.weight.grad is None  # still frozen at step 0


@pytest.mark.parametrize("name, extra", CASES, ids=IDS)
def test_loss_and_gradients_equal_those_with_the_encoder_value_check(name, extra, text_spec, monkeypatch):
    """The old path (each encoder call checks its input values) on a copy of the same model: bit-identical."""
    new = build(name, text_spec, **extra)
    step(new, 0)  # the same state (queues, text model loaded) for both
    new.zero_grad(set_to_none=True)
    old = copy.deepcopy(new)
    loss_new = step(new)
    module = sys.modules[type(old).__module__]
    monkeypatch.setattr(module, "encode_views",
                        lambda encoder, views, features=False: encoder.forward_features(views) if features
                        else encoder(views))
    loss_old = step(old)
    assert torch.equal(loss_new, loss_old)
    differ = [n for (n, p), q in zip(new.named_parameters(), old.parameters())
              if (p.grad is None) != (q.grad is None) or (p.grad is not None and not torch.equal(p.grad, q.grad))]
    assert differ == []


def test_slip_clip_loss_equals_the_public_clip_loss_on_each_view(text_spec):
    """SLIP checks the logit scale once for both views; its CLIP term is exactly the two public calls'."""
    model = build("clip", text_spec, ssl_weight=0.5)
    data = batch()
    out = model(data, torch.Generator().manual_seed(3))
    with torch.no_grad():
        gen = torch.Generator().manual_seed(3)
        feats = model.encoder(torch.cat([model.views(data["image"], gen), model.views(data["image"], gen)]))
        img1, img2 = torch.nn.functional.normalize(model.image_proj(feats).float(), dim=-1).chunk(2)
        txt, ids, scale = model.encode_text(data["text"]), text_ids_of(data["text"]), model.scale()
        expected = 0.5 * (clip_loss(img1, txt, scale, ids) + clip_loss(img2, txt, scale, ids))
    assert torch.equal(out["clip_loss"], expected)


@pytest.mark.parametrize("extra", [{}, {"ssl_weight": 1.0}], ids=["clip", "clip-slip"])
def test_a_nan_logit_scale_is_still_refused_in_one_line(extra, text_spec):
    model = build("clip", text_spec, **extra)
    with torch.no_grad():
        model.logit_scale.fill_(float("nan"))
    with pytest.raises(ValueError, match=r"^clip_loss: logit_scale must be one finite positive number, got "):
        model(batch(), torch.Generator().manual_seed(0))


def _nan_batch():
    data = batch()
    data["image"][1, 0, 3, 4] = float("nan")
    return data


BAD = {
    "nan": (_nan_batch, r"^resnet_test: input contains NaN or inf values$"),
    "0-255": (lambda: {**batch(), "image": batch()["image"] * 255},
              r"^resnet_test: expected images in \[0, 1\] .* they look like 0-255 pixel values; divide them by 255"),
    "normalised": (lambda: {**batch(), "image": batch()["image"] * 4 - 2},
                   r"^resnet_test: expected images in \[0, 1\] .* they look already normalised"),
    "channels": (lambda: batch(channels=3),
                 r"^resnet_test takes float \(B, C, H, W\) images in \[0, 1\] with C = 1 and H, W >= 8; got 3 input "
                 r"channels \(shape \(6, 3, 16, 16\)\): convert the images to 1 channel\(s\)"),
    "too-small": (lambda: batch(side=6),
                  r"^resnet_test takes float \(B, C, H, W\) images in \[0, 1\] with C = 1 and H, W >= 8; got 6x6 "
                  r"inputs: resize them to at least 8 pixels per side$"),
}


@pytest.mark.parametrize("bad", list(BAD))
@pytest.mark.parametrize("name", OBJECTIVES.names())
def test_bad_image_batches_give_the_same_one_line_error(name, bad, text_spec):
    """The batch check stays (NaN, range, channels); a view size the encoder cannot take still gets the
    encoder's size error (the views skip only the value check)."""
    model = build(name, text_spec)
    make, message = BAD[bad]
    with pytest.raises(EncoderInputError, match=message):
        model(make(), torch.Generator().manual_seed(0))


@pytest.mark.parametrize("name", OBJECTIVES.names())
def test_views_of_a_size_a_fixed_size_encoder_does_not_take_get_its_error(name, text_spec):
    model = build(name, text_spec, encoder="vit_test")
    with pytest.raises(EncoderInputError,
                       match=r"^vit_test takes float \(B, C, H, W\) images in \[0, 1\] with C = 1 and H = W = 16; "
                             r"got 20x20 inputs \(it was built for 16x16\): resize the inputs or create the encoder "
                             r"with img_size=20$"):
        model(batch(side=20), torch.Generator().manual_seed(0))


#: the objectives' public encoder helpers, called as a user would (CLIP.encode_image: zero-shot evaluation)
HELPERS = {
    "clip": lambda model, images: model.encode_image(images),
    "moco": lambda model, images: model.keys(images, torch.Generator().manual_seed(0)),
    "swav": lambda model, images: model.scores(images),
    "graph_matching": lambda model, images: model.embed(images),
}


@pytest.mark.parametrize("bad", ["nan", "0-255", "normalised"])
@pytest.mark.parametrize("name", list(HELPERS))
def test_public_helpers_still_check_the_values_of_their_images(name, bad, text_spec):
    """Only the objectives' own steps pass ``checked=True``; called directly, the helpers check values as before."""
    model = build(name, text_spec)
    make, message = BAD[bad]
    with pytest.raises(EncoderInputError, match=message):
        HELPERS[name](model, make()["image"])
