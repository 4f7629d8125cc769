"""Bad input to the public Python API of ``medfm.adapters`` (LoRA, ImageClassifier, SegmentationModel, the
text-conditioned segmenter, VQAModel, the fusers) gets one line naming the problem, raised by a medfm check:
never an ``AttributeError``/``TypeError`` from deep inside, nor a silently wrong model or result (found by the
adapter API audit; the cases already covered by tests/test_bad_inputs_models.py are not repeated)."""
from __future__ import annotations

import pytest
import torch

import medfm
from medfm.adapters.classification import ImageClassifier
from medfm.adapters.lora import LoraSettings, apply_lora, merge_lora, save_adapter
from medfm.adapters.segmentation import SegmentationModel
from medfm.adapters.text_seg import PromptedSegmenter, TextConditionedSegmenter
from medfm.adapters.vqa import VQAModel
from medfm.registry import FUSERS
from tests.conftest import tiny_fuser

S = 28
TARGETS = [{"name": "vessels", "modality": "fundus", "target": "retinal vessels"},
           {"name": "tumour", "modality": "mr", "target": "glioma"}]
TEXT_HF = {"name": "hf", "model_name_or_path": "/nonexistent"}


def _enc(name="resnet_test", **kw):
    torch.manual_seed(0)
    return medfm.create_encoder(name, in_chans=1, img_size=S, **kw)


def _one_line(info):
    assert "\n" not in str(info.value), str(info.value)


# -- LoRA -------------------------------------------------------------------------------------------

def test_lora_settings_given_as_a_dict_are_named():
    with pytest.raises(ValueError, match=r"^LoRA settings must be a LoraSettings .*got dict$"):  # was: AttributeError
        apply_lora(ImageClassifier(_enc(), 3), {"rank": 4})


def test_applying_lora_twice_says_so():
    model = apply_lora(ImageClassifier(_enc(), 3), LoraSettings(rank=2))
    # was: "LoRA target pattern ... matches no Linear/Conv2d/Conv3d layer", which pointed at the pattern
    with pytest.raises(ValueError, match=r"^this PeftModel already has LoRA layers"):
        apply_lora(model, LoraSettings(rank=2))
    with pytest.raises(ValueError, match=r"^this ImageClassifier already has LoRA layers"):
        apply_lora(model.base_model.model, LoraSettings(rank=2))


def test_a_target_pattern_that_matches_nothing_gets_a_hint():
    vit = ImageClassifier(_enc("vit_test"), 3)
    with pytest.raises(ValueError, match=r"matches no .* layer of encoder 'vit_test'; did you mean 'qkv'\?$"):
        apply_lora(vit, LoraSettings(target_modules="qkvv"))
    # a layer's last name alone does not match the whole name: say how to write it
    with pytest.raises(ValueError, match=r"must match the whole layer name inside the encoder, e.g. '\.\*\\\.qkv' "
                                         r"for 'model\.blocks\.0\.attn\.qkv'$"):
        apply_lora(vit, LoraSettings(target_modules="qkv"))
    with pytest.raises(ValueError, match=r"layer of encoder 'resnet_test'; did you mean 'conv.'"):
        apply_lora(ImageClassifier(_enc(), 3), LoraSettings(target_modules="conv"))


@pytest.mark.parametrize("call", [lambda m, p: merge_lora(m), lambda m, p: save_adapter(m, p, "resnet_test")])
def test_merge_or_save_of_a_model_without_lora_is_named(call, tmp_path):
    with pytest.raises(ValueError, match=r"takes the LoRA model that apply_lora or load_adapter returns .*got "
                                         r"ImageClassifier without LoRA") as info:  # was: AttributeError
        call(ImageClassifier(_enc(), 3), tmp_path / "adapter")
    _one_line(info)
    assert not (tmp_path / "adapter").exists()


# -- ImageClassifier and SegmentationModel ----------------------------------------------------------------

@pytest.mark.parametrize("kwargs, match", [
    ({"num_classes": 2.0}, r"num_classes must be an integer >= 2 for task 'multi-class', got 2\.0"),  # TypeError
    ({"num_classes": "3"}, r"num_classes must be an integer >= 2 .*got '3' \(str\)"),  # TypeError
    ({"num_classes": True, "task": "multi-label, binary-class"}, r"num_classes must be an integer >= 1 .*True \(bool\)"),
    ({"num_classes": 3, "dropout": -1}, r"dropout must be in \[0, 1\), got -1\.0"),  # was accepted (no dropout)
    ({"num_classes": 3, "dropout": float("nan")}, r"dropout must be a finite number in \[0, 1\), got nan"),
    ({"num_classes": 3, "head_norm": "no"}, r"head_norm must be true or false, got 'no' \(str\)"),  # was truthy
    ({"num_classes": 3, "label_names": "abc"}, r"label_names must be a list of 3 names.*got 'abc' \(str\)"),  # a, b, c
])
def test_classifier_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ImageClassifier(_enc(), **kwargs)


def test_adapters_refuse_what_is_not_a_medfm_encoder():
    import timm

    with pytest.raises(ValueError, match=r"^ImageClassifier: encoder must be a medfm Encoder .*got str 'resnet_test'"):
        ImageClassifier("resnet_test", 3)  # was: AttributeError 'str' object has no attribute 'num_features'
    with pytest.raises(ValueError, match=r"^ImageClassifier: .*a timm model returns class logits"):
        ImageClassifier(timm.create_model("resnet18", pretrained=False, num_classes=0), 3)  # was: built
    with pytest.raises(ValueError, match=r"^SegmentationModel: encoder must be a medfm Encoder"):
        SegmentationModel("resnet_test", 2)
    with pytest.raises(ValueError, match=r"^TextConditionedSegmenter: encoder must be a medfm Encoder"):
        TextConditionedSegmenter("resnet_test", TARGETS, 8)
    with pytest.raises(ValueError, match=r"^VQAModel: encoder must be a medfm Encoder"):
        VQAModel("resnet_test", ["yes", "no"], 8, text_encoder=TEXT_HF)


@pytest.mark.parametrize("kwargs, match", [
    ({"label_names": "ab"}, r"label_names must be a list of 2 names"),
    ({"inference": [1]}, r"^inference must be a mapping of inference settings, got \[1\]$"),  # TypeError
    ({"decoder": [16]}, r"^decoder must be a mapping of decoder options"),  # TypeError
    ({"inference": {"roi_size": 0}}, r"inference\.roi_size must be an integer side >= 1 .*got 0$"),  # was accepted
    ({"inference": {"roi_size": 2.5}}, r"inference\.roi_size .*got 2\.5$"),  # was truncated to 2
    ({"inference": {"scale": "1"}}, r"inference\.scale must be a finite number in \(0, 4\], got '1' \(str\)"),
    ({"inference": {"context_slices": 1.5}}, r"inference\.context_slices must be an integer >= 0, got 1\.5"),
    ({"inference": {"slice_axis": 5}}, r"inference\.slice_axis must be an integer in \[0, 2\] \(a volume axis\), got 5"),
])
def test_segmentation_model_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SegmentationModel(_enc(), 2, **kwargs)


def test_segmentation_loss_refuses_soft_or_nan_targets_and_takes_arrays():
    model = SegmentationModel(_enc(), 2, decoder={"stem_channels": 4}).eval()
    logits = model(torch.rand(1, 1, S, S))
    # was: 0.5 truncated to class 0 silently, NaN named as labels in [-9223372036854775808, ...]
    for value in (0.5, float("nan")):
        with pytest.raises(ValueError, match=r"target must hold whole-number class labels in \[0, 2\)"):
            model.loss(logits, torch.full((1, S, S), value))
    target = torch.zeros(1, S, S, dtype=torch.long)
    assert model.loss(logits, target.numpy()) == model.loss(logits, target)  # was: AttributeError on an array


# -- text-conditioned segmentation ------------------------------------------------------------------------

@pytest.mark.parametrize("args, kwargs, match", [
    (("vessels", 8), {}, r"^targets must be a list of .*mappings, got 'vessels' \(str\)$"),
    ((["vessels"], 8), {}, r"^each target must be a mapping .*got 'vessels' \(str\)$"),
    ((TARGETS, 0), {}, r"^text_dim must be an integer >= 1 \(the text embedding size\), got 0$"),  # was built
    ((TARGETS, 8.5), {}, r"^text_dim must be an integer >= 1 .*got 8\.5$"),
    ((TARGETS, 8), {"domain_norm": "no"}, r"^domain_norm must be true or false, got 'no' \(str\)$"),
    ((TARGETS, 8), {"template": "A {mod} image"}, r"^template must be a string with the placeholders"),  # KeyError later
])
def test_text_segmenter_arguments(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        TextConditionedSegmenter(_enc(), *args, **kwargs)


@pytest.fixture(scope="module")
def textseg():
    return TextConditionedSegmenter(_enc(), TARGETS, 8, decoder={"stem_channels": 4}).eval()


@pytest.mark.parametrize("text, match", [
    ("vessels", r"got 'vessels' \(str\); for known targets by name use segment\(images, names\)"),  # AttributeError
    (["vessels"], r"got \['vessels'\]; for known targets by name use segment"),
    (torch.randn(2, 8).numpy(), r"or None for all known targets; got ndarray$"),
    (torch.ones(2, 8, dtype=torch.long), r"got a torch\.int64 tensor$"),  # was used as embeddings
    (torch.full((2, 8), float("nan")), r"^text embeddings contain NaN or inf values$"),  # was NaN logits
    (torch.randn(0, 8), r"^text holds no target \(T=0\)"),  # was a (B, 0, H, W) result
])
def test_text_segmenter_forward_names_bad_text(textseg, text, match):
    with pytest.raises(ValueError, match=match) as info:
        textseg(torch.rand(2, 1, S, S), text)
    _one_line(info)


def test_segment_takes_one_target_name_as_a_string(textseg):
    x = torch.rand(1, 1, S, S)
    assert torch.equal(textseg.segment(x, "tumour"), textseg.segment(x, ["tumour"]))  # was: unknown target 't'


def test_text_segmenter_loss_checks_masks_and_known(textseg):
    logits = textseg(torch.rand(2, 1, S, S))
    masks = torch.zeros(2, 2, S, S)
    with pytest.raises(ValueError, match=r"^known must be \(B, T\) = \(2, 2\) .*got \(3,\)$"):  # RuntimeError
        textseg.loss(logits, masks, known=torch.ones(3, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"^masks must be a torch\.Tensor, got ndarray$"):  # AttributeError
        textseg.loss(logits, masks.numpy())
    for bad in (2.0, float("nan")):  # was: a finite (or NaN) loss from a mask outside {0, 1}
        with pytest.raises(ValueError, match=r"^masks must hold values in \[0, 1\]"):
            textseg.loss(logits, torch.full_like(masks, bad))


def test_query_embeddings_and_prompted_targets_are_checked(textseg):
    with pytest.raises(ValueError, match=r"query embedding must be a float tensor of 8 values .*shape \(5,\)$"):
        textseg.match_target(torch.randn(5))  # was: a torch size-mismatch RuntimeError
    with pytest.raises(ValueError, match=r"query embedding must be a float tensor of 8 values"):
        PromptedSegmenter(textseg, torch.randn(5))
    with pytest.raises(ValueError, match=r"^target must be a known target name or a query embedding"):
        PromptedSegmenter(textseg, ["vessels"])  # was: AttributeError 'list' object has no attribute 'reshape'


@pytest.mark.parametrize("domain", [0.5, True, ["fundus", "mr"], torch.tensor([0.0, 1.0])])
def test_domain_must_be_a_modality_name_or_integer_index(domain):
    model = TextConditionedSegmenter(_enc(), TARGETS, 8, decoder={"stem_channels": 4}, domain_norm=True).eval()
    # 0.5 / True were taken as index 0 / 1; a list of names failed inside torch ("too many dimensions 'str'")
    with pytest.raises(ValueError, match=r"^domain must be a modality name \['fundus', 'mr'\], its index"):
        model(torch.rand(2, 1, S, S), torch.randn(1, 8), domain=domain)


# -- VQA ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, match", [
    ({"answers": "yes"}, r"^answers must be a list of answer strings, got 'yes' \(str\)$"),  # was y, e, s
    ({"closed_answers": "yes"}, r"^closed_answers must be a list of answer strings"),  # was no closed answer
    ({"type_mask": "no"}, r"^type_mask must be true or false, got 'no' \(str\)$"),  # was truthy
])
def test_vqa_arguments(kwargs, match):
    args = {"answers": ["yes", "no"], "text_dim": 8, "text_encoder": TEXT_HF, "dim": 16, "heads": 2, **kwargs}
    with pytest.raises(ValueError, match=match):
        VQAModel(_enc(), **args)


def test_vqa_loss_and_answer_check_their_inputs():
    model = VQAModel(_enc(), ["yes", "no", "axial"], 8, text_encoder=TEXT_HF, dim=16, heads=2, layers=1).eval()
    out = model(torch.rand(2, 1, S, S), torch.randn(2, 5, 8), torch.ones(2, 5, dtype=torch.bool))
    answers, closed = torch.tensor([0, 2]), torch.tensor([True, False])
    with pytest.raises(ValueError, match=r"^out must be the dict .*'type_logit', got \['logits'\]$"):  # KeyError
        model.loss({"logits": out["logits"]}, answers, closed)
    with pytest.raises(ValueError, match=r"^out must be the dict .*got Tensor$"):  # IndexError
        model.loss(out["logits"], answers, closed)
    with pytest.raises(ValueError, match=r"^is_closed must be \(B,\) bool \(or 0/1 integers\), got a torch\.float32 "
                                         r"tensor of shape \(2,\) holding \[0\.5, 2\.0\]$"):
        model.loss(out, answers, torch.tensor([0.5, 2.0]))  # was a loss against targets 0.5 and 2
    with pytest.raises(ValueError, match=r"^type_weight must be >= 0, got -1\.0$"):
        model.loss(out, answers, closed, type_weight=-1)
    # was: handed to the text encoder (here: its missing model files were named instead)
    with pytest.raises(ValueError, match=r"^questions must be a list of strings, one per image, got \[1, 2\]$"):
        model.answer(torch.rand(2, 1, S, S), [1, 2])


# -- fusers -------------------------------------------------------------------------------------------

def test_fuser_modalities_as_one_string_and_label_names_as_one_string():
    base = {"image_encoder": {"name": "resnet_test"}, "img_size": S}
    with pytest.raises(ValueError, match=r"^modalities must be a list of modality names, got 'flair' \(str\)$"):
        FUSERS.build("late_fusion_zero_fill", modalities="flair", **base)  # was the modalities f, l, a, i, r
    with pytest.raises(ValueError, match=r"^label_names must be a list of 2 names"):
        FUSERS.build("late_fusion_zero_fill", modalities=["flair"], label_names="ab", **base)


@pytest.mark.parametrize("name", ["3mat", "channelvit", "fused_unet"])
def test_fuser_generator_must_be_a_generator(name):
    model = tiny_fuser(name).train()
    batch = {"pre": torch.rand(2, 1, S, S), "flair": torch.rand(2, 1, S, S)}
    # was: torch's multi-line "rand() received an invalid combination of arguments"
    with pytest.raises(ValueError, match=r"^fusion: gen must be a CPU torch\.Generator .*got 0; e\.g\.") as info:
        model(batch, 0)
    _one_line(info)


def test_fuser_presence_layout_and_loss_output_are_checked():
    model = tiny_fuser("3mat")
    x = torch.rand(2, 1, S, S)
    with pytest.raises(ValueError, match=r"^batch\['present'\] must be a dict"):  # AttributeError
        model({"pre": x, "present": [True, True]})
    # one wording for every reader of a presence mask (medfm.data.multimodal.check_presence_mask)
    with pytest.raises(ValueError, match=r"^the presence mask of 'pre' must be a \(B,\) bool tensor "
                                         r"\(or 0/1 integers\), got a torch\.float32"):
        model({"pre": x, "present": {"pre": torch.tensor([1.0, 0.5])}})  # 0.5 was taken as present
    with pytest.raises(ValueError, match=r"^out must be the dict this fuser's forward returns.*got Tensor$"):
        model.loss(torch.randn(2, 2), torch.tensor([0, 1]))  # IndexError
