"""Text-conditioned dynamic heads (MulModSeg) and referring segmentation, with a stand-in text encoder."""
import pytest
import torch

import medfm
from medfm.adapters.text_seg import (DynamicHead, PromptedSegmenter, TextConditionedSegmenter, build_text_segmenter,
                                     target_prompt)
from medfm.hub import from_pretrained, save_pretrained
from tests.helpers.bag_of_words import BagOfWordsEncoder




TARGETS = [{"name": "vessel", "modality": "retinal fundus photograph", "target": "retinal blood vessels"},
           {"name": "lesion", "modality": "brain FLAIR MRI", "target": "lower-grade glioma abnormality"}]


def _model(seed=0):
    torch.manual_seed(seed)
    enc = medfm.create_encoder("resnet_test", in_chans=3, img_size=28)
    return build_text_segmenter(enc, TARGETS, BagOfWordsEncoder(), head={"embed_dim": 32, "controller_hidden": 32})


def test_prompts_and_shapes():
    model = _model()
    assert model.prompts[0] == "A retinal fundus photograph image of retinal blood vessels"
    assert target_prompt("CT", "liver") == "A CT image of liver"
    x = torch.rand(2, 3, 28, 28)
    assert model(x).shape == (2, 2, 28, 28)
    assert model.segment(x, ["lesion"]).shape == (2, 1, 28, 28)
    # per-sample prompt sets (B, T, D)
    assert model(x, model.prompt_embeddings[[1, 0, 1]].unsqueeze(0).expand(2, -1, -1)).shape == (2, 3, 28, 28)
    with pytest.raises(KeyError, match="did you mean 'vessel'"):
        model.segment(x, ["vesel"])
    with pytest.raises(ValueError, match="text embeddings"):
        model(x, torch.zeros(2, 5))


def test_dynamic_head_matches_explicit_convolutions():
    torch.manual_seed(0)
    head = DynamicHead(cond_dim=6, channels=4, layers=3, controller_hidden=8)
    assert head.n_params == (4 * 4 + 4) * 2 + (4 + 1)
    feats, cond = torch.randn(2, 4, 5, 5), torch.randn(2, 3, 6)
    out = head(feats, cond)
    params = head.controller(cond)
    for b in range(2):
        for t in range(3):
            p, h, off = params[b, t], feats[b:b + 1], 0
            for li, (o, i) in enumerate(head.shapes):
                w = p[off:off + o * i].reshape(o, i, 1, 1)
                off += o * i
                h = torch.nn.functional.conv2d(h, w, p[off:off + o])
                off += o
                h = torch.relu(h) if li < 2 else h
            assert torch.allclose(out[b, t], h[0, 0], atol=1e-5)


def test_prompt_selects_the_target_after_training():
    """Complementary targets on the same images: only the prompt tells which half to segment."""
    torch.manual_seed(0)
    enc = medfm.create_encoder("resnet_test", in_chans=3, img_size=16)
    model = build_text_segmenter(enc, TARGETS, BagOfWordsEncoder(), head={"embed_dim": 32, "controller_hidden": 32},
                                 decoder={"stem_channels": 8})
    x = torch.full((4, 3, 16, 16), 0.2)
    masks = torch.zeros(4, 2, 16, 16)
    for i in range(4):
        col = 4 + 2 * i
        x[i, :, :, col:] = 0.8
        masks[i, 0, :, :col] = 1  # "vessel": the dark part
        masks[i, 1, :, col:] = 1  # "lesion": the bright part
    with torch.no_grad():
        untrained = model.segment(x) > 0
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    for _ in range(30):
        loss = model.loss(model(x), masks)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():  # batch statistics (train mode): 30 steps are too few for BatchNorm running averages
        pred = model.segment(x, ["vessel", "lesion"]) > 0
    assert (pred == masks.bool()).float().mean() > 0.95
    assert (untrained == masks.bool()).float().mean() < 0.9


def test_loss_ignores_unknown_pairs():
    model = _model()
    logits = torch.zeros(2, 2, 8, 8)
    masks = torch.zeros(2, 2, 8, 8)
    masks[0, 1] = 1  # wrong on purpose, but marked unknown
    known = torch.tensor([[True, False], [True, True]])
    assert torch.allclose(model.loss(logits, masks, known), model.loss(logits, torch.zeros_like(masks), known))
    assert not torch.allclose(model.loss(logits, masks), model.loss(logits, torch.zeros_like(masks)))


def test_dice_is_per_target_so_rare_targets_count():
    model = _model()
    big = torch.zeros(2, 1, 8, 8)
    big[:, :, :, :6] = 1          # a frequent target, predicted perfectly
    small = torch.zeros(2, 1, 8, 8)
    small[0, 0, 0, 0] = 1         # a rare target, missed
    masks = torch.cat([big, small], dim=1)
    logits = torch.where(torch.cat([big, torch.zeros_like(small)], 1) > 0, 50.0, -50.0)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, masks)
    expected_dice = (0.0 + (1 - 1e-5 / (1 + 1e-5))) / 2   # mean of the two targets' Dice losses
    assert model.loss(logits, masks).item() == pytest.approx(bce.item() + expected_dice, abs=1e-4)
    with pytest.raises(ValueError, match="no .* known"):
        model.loss(logits, masks, torch.zeros(2, 2, dtype=torch.bool))


def test_loss_weights_scale_each_targets_bce_and_dice():
    """Weighted loss against a hand-written reference; weights of 1 give the unweighted loss."""
    model = _model()
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 2, 6, 6, generator=g)
    masks = (torch.rand(3, 2, 6, 6, generator=g) > 0.7).float()
    known = torch.tensor([[True, True], [True, False], [False, True]])
    assert model.loss(logits, masks, known, weights=[1.0, 1.0]).item() == pytest.approx(
        model.loss(logits, masks, known).item(), abs=1e-7)
    w = [3.0, 1.0]
    num = den = 0.0
    for b in range(3):
        for t in range(2):
            if known[b, t]:
                num += w[t] * torch.nn.functional.binary_cross_entropy_with_logits(logits[b, t], masks[b, t]).item()
                den += w[t]
    dices = []
    for t in range(2):
        p, y = torch.sigmoid(logits[known[:, t], t]), masks[known[:, t], t]
        dices.append(1 - (2 * (p * y).sum().item() + 1e-5) / (p.sum().item() + y.sum().item() + 1e-5))
    expected = num / den + (w[0] * dices[0] + w[1] * dices[1]) / (w[0] + w[1])
    assert model.loss(logits, masks, known, weights=w).item() == pytest.approx(expected, abs=1e-5)
    for bad in ([1.0], [1.0, 0.0], [1.0, float("nan")], [1.0, "two"]):
        with pytest.raises(ValueError, match="loss weight"):
            model.loss(logits, masks, known, weights=bad)


def test_referring_query_matches_target_and_snaps():
    model = _model().eval()
    enc = BagOfWordsEncoder()
    x = torch.rand(1, 3, 28, 28)
    out = model.refer(x, "segment the retinal blood vessels in this fundus photograph", enc)
    assert out["matched_target"] == "vessel" and out["logits"].shape == (1, 1, 28, 28)
    assert model.refer(x, "the glioma abnormality on brain FLAIR MRI", enc)["matched_target"] == "lesion"
    snapped = model.refer(x, "retinal vessels please", enc, snap=True)
    with torch.no_grad():
        assert torch.allclose(snapped["logits"], model.segment(x, ["vessel"]))


def test_prompted_view_and_save_load(tmp_path):
    model = _model().eval()
    x = torch.rand(1, 3, 28, 28)
    view = PromptedSegmenter(model, "lesion")
    with torch.no_grad():
        two = view(x)
        assert two.shape == (1, 2, 28, 28)
        assert torch.allclose(two.softmax(1)[:, 1], torch.sigmoid(model.segment(x, ["lesion"])[:, 0]), atol=1e-6)
    save_pretrained(model, tmp_path / "ckpt")
    again = from_pretrained(tmp_path / "ckpt")
    assert isinstance(again, TextConditionedSegmenter) and again.target_names == ["vessel", "lesion"]
    with torch.no_grad():
        assert torch.equal(again.segment(x), model.segment(x))


def test_bad_targets():
    enc = medfm.create_encoder("resnet_test", in_chans=3, img_size=28)
    with pytest.raises(ValueError, match="at least one target"):
        TextConditionedSegmenter(enc, [], 16)
    with pytest.raises(ValueError, match="unique"):
        TextConditionedSegmenter(enc, [TARGETS[0], TARGETS[0]], 16)
    with pytest.raises(ValueError, match="keys name, modality, target"):
        TextConditionedSegmenter(enc, [{"name": "x"}], 16)
    with pytest.raises(ValueError, match="unknown head option"):
        TextConditionedSegmenter(enc, TARGETS, 16, head={"width": 3})
    with pytest.raises(ValueError, match="expected"):
        TextConditionedSegmenter(enc, TARGETS, 8).set_prompt_embeddings(BagOfWordsEncoder(16))


def test_domain_batchnorm_normalises_each_domain_on_its_own():
    from medfm.adapters.domain_layers import DomainBatchNorm

    torch.manual_seed(0)
    bn = torch.nn.BatchNorm2d(3)
    dsbn = DomainBatchNorm(bn, 2)
    x = torch.cat([torch.randn(3, 3, 4, 4), 5 + 3 * torch.randn(2, 3, 4, 4)])
    d = torch.tensor([0, 1, 0, 1, 0])
    x, d = x[[0, 3, 1, 4, 2]], d[[0, 3, 1, 4, 2]]  # interleaved domains
    ref0, ref1 = torch.nn.BatchNorm2d(3), torch.nn.BatchNorm2d(3)
    dsbn.domains = d
    out = dsbn(x)
    assert torch.allclose(out[d == 0], ref0(x[d == 0]), atol=1e-6)
    assert torch.allclose(out[d == 1], ref1(x[d == 1]), atol=1e-6)
    assert torch.allclose(dsbn.norms[1].running_mean, ref1.running_mean)  # statistics kept apart
    assert not torch.allclose(dsbn.norms[0].running_mean, dsbn.norms[1].running_mean)
    dsbn.domains = None
    with pytest.raises(RuntimeError, match="no domains set"):
        dsbn(x)
    dsbn.domains = torch.tensor([0, 2, 0, 0, 0])
    with pytest.raises(ValueError, match="domains must be"):
        dsbn(x)
    from medfm.adapters.domain_layers import set_domains

    with pytest.raises(ValueError, match="integer tensor"):
        set_domains(dsbn, torch.tensor([0.0, 1.0]))
    two = torch.nn.Sequential(DomainBatchNorm(bn, 2), DomainBatchNorm(bn, 2))
    set_domains(two, d)
    assert two[0].route is two[1].route and torch.equal(two[1].domains, d)  # one route per forward


def test_domain_norm_model_uses_the_modality_of_its_prompt(tmp_path):
    from medfm.adapters.domain_layers import DomainBatchNorm

    torch.manual_seed(0)
    enc = medfm.create_encoder("resnet_test", in_chans=3, img_size=28)
    model = build_text_segmenter(enc, TARGETS, BagOfWordsEncoder(), head={"embed_dim": 32, "controller_hidden": 32},
                                 domain_norm=True)
    assert model.modalities == ["retinal fundus photograph", "brain FLAIR MRI"]
    n_dsbn = sum(isinstance(m, DomainBatchNorm) for m in model.modules())
    assert n_dsbn > 5  # every BatchNorm now lives inside a DomainBatchNorm, one copy per modality
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()) == 2 * n_dsbn
    x = torch.rand(2, 3, 28, 28)
    model.train()
    model(x, domain=torch.tensor([0, 1]))  # fills each modality's running statistics differently
    model(torch.stack([x[0], 0.5 + 0.5 * x[1]]), domain=torch.tensor([0, 1]))  # second image brighter, still in [0, 1]
    model.eval()
    with torch.no_grad():
        with pytest.raises(ValueError, match="pass domain="):
            model(x)
        with pytest.raises(ValueError, match="did you mean 'brain FLAIR MRI'"):
            model(x, domain="brain FLAIR MR")
        lesion = model.segment(x, ["lesion"])
        assert torch.equal(lesion, model(x, model.prompt_embeddings[[1]], domain="brain FLAIR MRI"))
        assert not torch.allclose(lesion, model(x, model.prompt_embeddings[[1]], domain=0))
        view = PromptedSegmenter(model, "lesion")
        assert torch.allclose(view(x)[:, 1], lesion[:, 0])
        out = model.refer(x, "the glioma abnormality on brain FLAIR MRI", BagOfWordsEncoder())
        assert out["matched_target"] == "lesion"
    save_pretrained(model, tmp_path / "ckpt")
    again = from_pretrained(tmp_path / "ckpt")
    assert again.domain_norm
    with torch.no_grad():
        assert torch.equal(again.segment(x, ["lesion"]), lesion)


def test_domain_conv_routes_each_sample_through_its_modality_copy():
    from medfm.adapters.domain_layers import DomainConv, convert_input_conv

    torch.manual_seed(0)
    dconv = DomainConv(torch.nn.Conv2d(3, 5, 3, stride=2, padding=1), 2)
    with torch.no_grad():
        dconv.convs[1].weight.mul_(-2.0)  # the copies start equal; make them differ
    x = torch.randn(5, 3, 8, 8)
    d = torch.tensor([1, 0, 1, 1, 0])
    dconv.domains = d
    out = dconv(x)
    assert out.shape == (5, 5, 4, 4)  # the output geometry of the wrapped layer, not the input's
    assert torch.allclose(out[d == 0], dconv.convs[0](x[d == 0]), atol=1e-6)
    assert torch.allclose(out[d == 1], dconv.convs[1](x[d == 1]), atol=1e-6)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # mixed precision training: the copies' dtype wins
        assert dconv(x).dtype == torch.bfloat16
    dconv.domains = torch.tensor([0, 0, 0, 0])
    with pytest.raises(ValueError, match="domains must be"):
        dconv(x)
    with pytest.raises(ValueError, match="no convolution with 3 input channels"):
        convert_input_conv(torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3)), 3, 2)


def test_plain_checkpoint_fills_every_domain_copy(tmp_path):
    """A plain encoder checkpoint loads into per-domain layers: each copy gets the plain tensors."""
    from medfm.adapters.domain_layers import convert_domain_norms, convert_input_conv, domain_weight_sources
    from medfm.adapters.classification import ImageClassifier
    from medfm.hub import CheckpointError, load_encoder_weights

    net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2), torch.nn.Conv2d(2, 2, 1))
    plain = list(net.state_dict())
    convert_input_conv(net, 1, 2)
    convert_domain_norms(net, 2)
    assert domain_weight_sources(net, plain) == {
        "0.convs.0.weight": "0.weight", "0.convs.0.bias": "0.bias", "0.convs.1.weight": "0.weight", "0.convs.1.bias": "0.bias",
        **{f"1.norms.{k}.{t}": f"1.{t}" for k in (0, 1) for t in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")},
        "2.weight": "2.weight", "2.bias": "2.bias"}
    split = list(net.state_dict())
    assert domain_weight_sources(net, split) == {n: n for n in split}  # a split checkpoint is read as it is

    torch.manual_seed(0)
    trained = ImageClassifier(medfm.create_encoder("resnet_test", in_chans=1, img_size=28), num_classes=2)
    for m in trained.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_()  # statistics that a fresh copy would not have
    ckpt = save_pretrained(trained, tmp_path / "plain")
    enc = medfm.create_encoder("resnet_test", in_chans=1, img_size=28)
    convert_domain_norms(enc, 3)
    convert_input_conv(enc, 1, 3)
    load_encoder_weights(enc, ckpt)
    want = trained.encoder.state_dict()
    for name, src in domain_weight_sources(enc, want).items():
        assert torch.equal(enc.state_dict()[name], want[src]), name
    enc.extra = torch.nn.Linear(2, 2)  # a layer the checkpoint does not have: still one clear error
    with pytest.raises(CheckpointError, match="2 missing"):
        load_encoder_weights(enc, ckpt)


def test_domain_stem_gives_each_modality_its_own_input_convolutions(tmp_path):
    from medfm.adapters.domain_layers import DomainConv

    torch.manual_seed(0)
    enc = medfm.create_encoder("resnet_test", in_chans=3, img_size=28)
    kw = {"head": {"embed_dim": 32, "controller_hidden": 32}}
    with pytest.raises(ValueError, match="needs domain_norm"):
        build_text_segmenter(enc, TARGETS, BagOfWordsEncoder(), domain_stem=True, **kw)
    model = build_text_segmenter(enc, TARGETS, BagOfWordsEncoder(), domain_norm=True, domain_stem=True, **kw)
    stems = [n for n, m in model.named_modules() if isinstance(m, DomainConv)]
    assert len(stems) == 2 and stems[0].startswith("encoder.") and stems[1].startswith("decoder.stem")
    x = torch.rand(2, 3, 28, 28)
    model.train()
    loss = model.loss(model(x, domain=torch.tensor([0, 0])), torch.ones(2, 2, 28, 28))
    loss.backward()
    first = model.get_submodule(stems[0])
    assert first.convs[0].weight.grad is not None and first.convs[1].weight.grad is None  # only modality 0 was seen
    model.eval()
    save_pretrained(model, tmp_path / "ckpt")
    again = from_pretrained(tmp_path / "ckpt")
    assert again.domain_stem and sum(isinstance(m, DomainConv) for m in again.modules()) == 2
    with torch.no_grad():
        assert torch.equal(again.segment(x, ["lesion"]), model.segment(x, ["lesion"]))


def test_pipeline_segments_a_named_target_or_a_free_text_query(tmp_path):
    from medfm.pipelines import pipeline
    from medfm.pipelines.segmentation import SegmentationInputError

    torch.manual_seed(0)
    enc = medfm.create_encoder("resnet_test", in_chans=3, img_size=28)
    model = build_text_segmenter(enc, TARGETS, BagOfWordsEncoder(), head={"embed_dim": 32, "controller_hidden": 32},
                                 domain_norm=True, target_inference={"lesion": {"scale": 0.5}})
    model.eval()
    save_pretrained(model, tmp_path / "ckpt")
    pipe = pipeline("image-segmentation", model=str(tmp_path / "ckpt"), text_encoder=BagOfWordsEncoder())
    assert PromptedSegmenter(pipe.model, "lesion").inference["scale"] == 0.5  # stored per target
    assert PromptedSegmenter(pipe.model, "vessel").inference["scale"] == 1.0
    img = (torch.rand(40, 36, 3) * 255).to(torch.uint8).numpy()
    out = pipe(img, target="lesion")
    assert out["mask"].shape == (40, 36) and out["label_names"] == ["background", "lesion"] and out["target"] == "lesion"
    # the mask equals thresholding the model's own prediction for that prompt at the same scale
    from medfm.pipelines.segmentation import predict_labels

    x = torch.from_numpy(img).permute(2, 0, 1).float().div(255).numpy()
    assert (out["mask"] == predict_labels(PromptedSegmenter(model, "lesion").eval(), x)).all()
    ref = pipe(img, query="the glioma abnormality on brain FLAIR MRI")
    assert ref["matched_target"] == "lesion" and ref["mask"].shape == (40, 36) and -1 <= ref["similarity"] <= 1
    with pytest.raises(SegmentationInputError, match="target= .*or query="):
        pipe(img)
    with pytest.raises(KeyError, match="did you mean 'lesion'"):
        pipe(img, target="lesoin")
    with pytest.raises(ValueError, match="target_inference names unknown"):
        build_text_segmenter(enc, TARGETS, BagOfWordsEncoder(), target_inference={"liver": {}})


@pytest.mark.parametrize("image_conditioning", [True, False])
def test_image_conditioning_switch(tmp_path, image_conditioning):
    torch.manual_seed(0)
    enc = medfm.create_encoder("resnet_test", in_chans=3, img_size=28)
    model = build_text_segmenter(enc, TARGETS, BagOfWordsEncoder(), head={
        "embed_dim": 16, "controller_hidden": 16, "image_conditioning": image_conditioning}).eval()
    seen = {}
    model.dynamic_head.register_forward_hook(lambda m, args, out: seen.update(cond=args[1]))
    x = torch.rand(2, 3, 28, 28)
    with torch.no_grad():
        logits = model(x)
    cond = seen["cond"]  # (B, T, controller input)
    assert cond.shape == (2, 2, 32 if image_conditioning else 16)
    # without image conditioning both images get the same head per target; with it, they differ
    assert torch.equal(cond[0], cond[1]) != image_conditioning
    save_pretrained(model, tmp_path / "c")
    with torch.no_grad():
        assert torch.equal(from_pretrained(tmp_path / "c")(x), logits)


def test_lora_over_domain_layers_adapts_each_modality_and_reloads(tmp_path):
    """LoRA + domain_norm + domain_stem from a plain pretrained encoder: every modality's stem
    copy gets its own LoRA matrices, and the adapter reloads bit-exactly from the plain base
    (each per-modality copy is rebuilt from its plain layer; no copy of the base is saved)."""
    from medfm.adapters.classification import ImageClassifier
    from medfm.adapters.lora import LoraSettings, apply_lora, save_adapter
    from medfm.adapters.domain_layers import domain_copy_names
    from medfm.adapters.text_seg import TEXT_SEG_HEAD_MODULES
    from medfm.training.adaptation import keep_lora_base

    torch.manual_seed(0)
    plain = save_pretrained(ImageClassifier(medfm.create_encoder("resnet_test", in_chans=3, img_size=28), num_classes=2),
                            tmp_path / "pretrained")
    kw = {"head": {"embed_dim": 32, "controller_hidden": 32}}

    def build(**domain):
        enc = medfm.create_encoder("resnet_test", in_chans=3, img_size=28, pretrained=str(plain))
        return build_text_segmenter(enc, TARGETS, BagOfWordsEncoder(), **domain, **kw)

    assert keep_lora_base(build(), "lora", str(plain), tmp_path / "shared") == str(plain)  # same layers: kept
    assert keep_lora_base(build(), "full", None, tmp_path / "full") is None
    assert keep_lora_base(build(), "lora", None, tmp_path / "random") == str(tmp_path / "random" / "base")
    model = build(domain_norm=True, domain_stem=True)
    base = keep_lora_base(model, "lora", str(plain), tmp_path / "run")
    assert base == str(plain) and not (tmp_path / "run" / "base").exists()
    aliases = domain_copy_names(model)
    stem = next(layer for copy, layer in aliases.items() if copy.startswith("encoder.") and ".convs." in copy)
    assert aliases[f"{stem}.convs.1"] == stem

    peft_model = apply_lora(model, LoraSettings(rank=2, alpha=4), head_modules=TEXT_SEG_HEAD_MODULES)
    copies = peft_model.base_model.model.get_submodule(stem).convs
    assert all(hasattr(c, "lora_A") for c in copies)  # each modality's stem is adapted
    x, y = torch.rand(2, 3, 28, 28), torch.ones(2, 2, 28, 28)
    peft_model.train()
    opt = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(2):
        loss = model.loss(peft_model(x, domain=torch.tensor([0, 0])), y)
        opt.zero_grad()
        loss.backward()
        assert copies[0].lora_B["default"].weight.grad.abs().sum() > 0
        assert copies[1].lora_B["default"].weight.grad is None  # modality 1 was not seen
        opt.step()
    peft_model.eval()
    with torch.no_grad():
        ref = [peft_model.segment(x, [t]) for t in ("vessel", "lesion")]  # one modality each
    adapter = save_adapter(peft_model, tmp_path / "adapter", base)
    again = from_pretrained(adapter)
    with torch.no_grad():
        for t, r in zip(("vessel", "lesion"), ref):
            assert torch.equal(again.segment(x, [t]), r)
    # the prompt embeddings (a buffer outside encoder and head modules) travel with the adapter
    from medfm.adapters.lora import BUFFERS_NAME
    from medfm.hub import CheckpointError

    assert (adapter / BUFFERS_NAME).is_file()
    (adapter / BUFFERS_NAME).write_bytes(b"\x00" * 8)
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        from_pretrained(adapter)
    (adapter / BUFFERS_NAME).unlink()  # an adapter without them would segment with zero prompts
    with pytest.raises(CheckpointError, match="absent"):
        from_pretrained(adapter)


def test_an_unknown_target_is_the_registry_error_printed_without_quotes():
    """``target="vessels"`` raised a KeyError, printed ``"unknown target 'vessels'; did you mean ..."``
    with the quotes KeyError adds (and by the CLI as such); now the registry's UnknownNameError."""
    from medfm.registry import UnknownNameError

    model = _model()
    with pytest.raises(UnknownNameError) as err:
        model.target_index(["vessels"])
    assert isinstance(err.value, KeyError) and str(err.value).startswith("unknown target 'vessels'; did you mean 'vessel'")


def test_a_query_embedding_follows_the_model_to_its_device_and_dtype():
    """A referring query is embedded on the CPU while the trained model may be on a GPU (medfm segment's
    text-conditioned evaluation crashed on an H200: 'mat2 is on cuda:0, different from other tensors
    on cpu'). The query buffer now takes the prompt embeddings' device and dtype; float64 stands in
    for the GPU here (matching a query needs its values, which the meta device does not have)."""
    model = _model().eval().double()
    query = torch.rand(model.text_dim)
    view = PromptedSegmenter(model, query)
    assert view.text.dtype == torch.float64 and view.text.shape == (1, model.text_dim)
    assert torch.equal(view.text[0], query.double())


def test_loss_reads_back_twice_whatever_the_number_of_targets(readbacks):
    """The per-step loss reads the mask range and which targets have a known pair, once each (the known
    flags were read once for the batch, then once per target)."""
    model = _model()
    logits, masks = torch.zeros(2, 2, 8, 8), torch.zeros(2, 2, 8, 8)
    masks[:, 0, :4] = 1
    readbacks.clear()  # building the model read some back
    loss = model.loss(logits, masks, torch.tensor([[True, False], [True, True]]))
    assert len(readbacks) == 2, readbacks
    assert torch.isfinite(loss)
