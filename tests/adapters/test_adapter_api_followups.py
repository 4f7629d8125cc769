"""Follow-ups of the adapters API audit: the one "list of strings, not one string" rule
(:func:`medfm.arg_checks.check_string_list` / :func:`~medfm.arg_checks.check_list`), the index and mask
tensor rules (:func:`~medfm.arg_checks.is_index_tensor`, :func:`~medfm.arg_checks.check_mask_tensor`), a LoRA
adapter's base checked when it is saved, every fuser's ``gen`` checked in any mode, and the LoRA target hint.
Each test fails on the code before these changes (the comments say what happened then), unless it says guard."""
from __future__ import annotations

import re

import pytest
import torch

import medfm
from medfm.adapters.classification import ImageClassifier
from medfm.evaluation.metrics import label_name_list
from medfm.adapters.domain_layers import DomainRoute
from medfm.adapters.lora import LoraSettings, apply_lora, save_adapter
from medfm.adapters.text_seg import TextConditionedSegmenter
from medfm.adapters.vqa import VQAModel
from medfm.arg_checks import check_list, check_mask_tensor, check_string_list, is_index_tensor
from medfm.hub import CheckpointError, save_pretrained
from medfm.registry import FUSERS
from tests.conftest import FUSION_SIZE, tiny_fuser

S = 28
TARGETS = [{"name": "vessels", "modality": "fundus", "target": "retinal vessels"},
           {"name": "tumour", "modality": "mr", "target": "glioma"}]
TEXT_HF = {"name": "hf", "model_name_or_path": "/nonexistent"}
FUSER_BASE = {"image_encoder": {"name": "resnet_test"}, "img_size": S}


def _enc(name="resnet_test"):
    torch.manual_seed(0)
    return medfm.create_encoder(name, in_chans=1, img_size=S)


def _vqa():
    return VQAModel(_enc(), ["yes", "no", "axial"], 8, text_encoder=TEXT_HF, dim=16, heads=2, layers=1).eval()


# -- the list rule --------------------------------------------------------------------------------------

@pytest.mark.parametrize("value, got", [
    ("ab", "'ab' (str)"), (b"ab", "b'ab' (bytes)"), ({"a": 1}, "{'a': 1} (dict)"), ({"a"}, "{'a'} (set)"), (3, "3"),
])
def test_one_string_a_mapping_a_set_or_a_non_iterable_is_no_list(value, got):
    with pytest.raises(ValueError, match=rf"^x must be a list of strings, got {re.escape(got)}$"):
        check_string_list("x", value)


def test_the_list_rule_items_sequences_and_message_forms():
    assert check_string_list("x", ("a", "b")) == ["a", "b"]
    assert check_string_list("x", (s for s in "ab")) == ["a", "b"]  # any ordered iterable
    assert check_string_list("x", [0, "b"], integers=True) == ["0", "b"]
    with pytest.raises(ValueError, match=r"^x must be a list of strings, got \[0, 'b'\]$"):
        check_string_list("x", [0, "b"])
    with pytest.raises(ValueError, match=r"^x must be a list of strings, got \[None\]$"):
        check_string_list("x", [None], integers=True)
    with pytest.raises(TypeError, match=r"^x must be texts, got generator$"):
        check_list("x", (s for s in "ab"), what="texts", sequence=True, got=lambda v: type(v).__name__, error=TypeError)


@pytest.mark.parametrize("names, got", [
    ({"b", "a"}, r"got \{'.*'\} \(set\)$"),  # was: the names in the set's order, which differs between processes
    ([None, None], r"got \[None, None\]$"),  # was: the names 'None', 'None'
    ([["a"], ["b"]], r"got \[\['a'\], \['b'\]\]$"),  # was: the names "['a']", "['b']"
])
def test_label_names_must_be_an_ordered_list_of_names(names, got):
    with pytest.raises(ValueError, match=r"^label_names must be a list of 2 names, one per class, " + got):
        label_name_list(names, 2)


def test_label_names_given_as_integers_are_still_names():
    """Guard (passes on the old code too): YAML reads ``label_names: [0, 1]`` as integers."""
    assert label_name_list([0, 1], 2) == ["0", "1"]
    assert label_name_list(("a", "b"), 2) == ["a", "b"]


@pytest.mark.parametrize("modalities, got", [
    ({"pre", "flair"}, r"\{'.*'\} \(set\)"),  # was: the set's order, so another modality order per process
    ([1, 2], r"\[1, 2\]"),  # was: modalities '1', '2', which never match a batch keyed 1, 2
    ([None], r"\[None\]"),  # was: the modality 'None'
])
def test_fuser_modalities_must_be_an_ordered_list_of_names(modalities, got):
    with pytest.raises(ValueError, match=rf"^modalities must be a list of modality names, got {got}$"):
        FUSERS.build("late_fusion_zero_fill", modalities=modalities, **FUSER_BASE)


def test_vqa_answers_must_be_ordered_and_their_subsets_may_be_sets():
    # was: the answer ids in the set's order
    with pytest.raises(ValueError, match=r"^answers must be a list of answer strings, got \{.*\} \(set\)$"):
        VQAModel(_enc(), {"yes", "no"}, 8, text_encoder=TEXT_HF, dim=16, heads=2, layers=1)
    with pytest.raises(ValueError, match=r"^open_answers must be a list of answer strings, got \[None\]$"):
        VQAModel(_enc(), ["yes", "no"], 8, open_answers=[None], text_encoder=TEXT_HF, dim=16, heads=2, layers=1)
    # closed answers given as integers now match the answers given as integers (both read as strings)
    model = VQAModel(_enc(), ["yes", 2], 8, closed_answers=[2], text_encoder=TEXT_HF, dim=16, heads=2, layers=1)
    assert model.answers == ["yes", "2"] and model.closed_mask.tolist() == [False, True]  # was [False, False]
    model = VQAModel(_enc(), ["yes", "no", "axial"], 8, closed_answers={"yes", "no"}, text_encoder=TEXT_HF, dim=16,
                     heads=2, layers=1)  # membership only: a set is fine
    assert model.closed_mask.tolist() == [True, True, False]


# -- index and mask tensors -------------------------------------------------------------------------------

def test_index_tensor_rule():
    assert is_index_tensor(torch.tensor([0, 1])) and is_index_tensor(torch.tensor([1], dtype=torch.uint8))
    for bad in (torch.tensor([True]), torch.tensor([0.0]), torch.tensor([0j]), [0, 1], 1):
        assert not is_index_tensor(bad)


def test_domains_given_as_bools_are_no_indices():
    with pytest.raises(ValueError, match=r"^domains must be a non-empty \(B,\) integer tensor, got torch\.bool"):
        DomainRoute(torch.tensor([True, False]))  # was: domains 1 and 0
    assert DomainRoute([0, 1]).domains.tolist() == [0, 1]  # guard: a list of indices still works


def test_text_seg_domain_given_as_complex_is_refused():
    model = TextConditionedSegmenter(_enc(), TARGETS, 8, decoder={"stem_channels": 4}, domain_norm=True).eval()
    with pytest.raises(ValueError, match=r"^domain must be a modality name \['fundus', 'mr'\], its index"):
        model.domain_index(torch.tensor([0j, 1j]), 2, None)  # was: indices [0, 0], the imaginary part dropped
    assert model.domain_index(torch.tensor([1, 0]), 2, None).tolist() == [1, 0]


def test_mask_rule_and_its_read_backs(readbacks):
    mask = torch.tensor([True, False])
    readbacks.clear()
    assert check_mask_tensor("m", mask) is mask and readbacks == []  # a bool mask: nothing read back
    assert torch.equal(check_mask_tensor("m", torch.tensor([1, 0])), mask) and len(readbacks) == 1
    with pytest.raises(ValueError, match=r"^m must be \(B,\) bool, got a torch\.float32 tensor of shape \(2,\)$"):
        check_mask_tensor("m", torch.tensor([1.0, 0.0]))
    with pytest.raises(ValueError, match=r"^m must be \(B,\) bool, got integer values \[-1, 2\] \(an integer mask "
                                         r"holds only 0 and 1\)$"):
        check_mask_tensor("m", torch.tensor([2, -1, 0]))
    with pytest.raises(ValueError, match=r"^m must be \(B,\) bool, got a torch\.bool tensor of shape \(1, 2\)$"):
        check_mask_tensor("m", mask[None], ndim=1)
    with pytest.raises(ValueError, match=r"^m must be \(B,\) bool, got \[True\]$"):
        check_mask_tensor("m", [True])


@pytest.mark.parametrize("mask, holding", [
    (torch.tensor([0.5, 2.0, 0.5, 1.0]), " holding [0.5, 2.0]"),
    (torch.tensor([1.0, 0.0]), ""),  # 0.0 and 1.0 only: refused, no value to name
    (torch.tensor([float("nan"), 0.25, float("nan")]), " holding [0.25, nan]"),  # one NaN, last
    (torch.arange(8.0) + 2, " holding [2.0, 3.0, 4.0, 5.0, 6.0]"),  # 5 at most
    (torch.tensor([[0.5]], dtype=torch.float16), " holding [0.5]"),
])
def test_a_refused_float_mask_names_up_to_5_of_its_values(mask, holding):
    """Only the presence and drop masks of :mod:`medfm.data.multimodal` named them (a wrapper of their own); every
    site of the rule does now (VQA's ``is_closed`` and ``q_mask``, the fusers' presence masks, ...)."""
    with pytest.raises(ValueError) as info:
        check_mask_tensor("m", mask)
    assert str(info.value) == f"m must be (B,) bool, got a {mask.dtype} tensor of shape {tuple(mask.shape)}{holding}"


@pytest.mark.parametrize("q_mask, match", [
    # was: 0.5 taken as a real token
    (torch.full((2, 5), 0.5), r"got a torch\.float32 tensor of shape \(2, 5\) holding \[0\.5\]$"),
    (torch.full((2, 5), 2), r"got integer values \[2\]"),  # was: 2 taken as a real token
])
def test_vqa_q_mask_must_be_bool_or_0_1(q_mask, match):
    with pytest.raises(ValueError, match=r"^q_mask must be \(B, L\) bool \(True = real token\), " + match):
        _vqa()(torch.rand(2, 1, S, S), torch.randn(2, 5, 8), q_mask)


def test_vqa_q_mask_of_0_1_integers_is_a_bool_mask():
    """Guard (passes on the old code too): transformers' int64 attention_mask is taken as it was."""
    model, images, tokens = _vqa(), torch.rand(2, 1, S, S), torch.randn(2, 5, 8)
    ints = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    assert torch.equal(model(images, tokens, ints)["logits"], model(images, tokens, ints.bool())["logits"])


@pytest.mark.parametrize("known, match", [
    (torch.tensor([[0.5, 0.0], [1.0, 0.5]]),  # was: 0.5 known
     r"got a torch\.float32 tensor of shape \(2, 2\) holding \[0\.5\]$"),
    (torch.tensor([[2, 0], [1, 0]]), r"got integer values \[2\]"),  # was: 2 known
])
def test_text_seg_known_flags_must_be_bool_or_0_1(known, match):
    model = TextConditionedSegmenter(_enc(), TARGETS, 8, decoder={"stem_channels": 4})
    with pytest.raises(ValueError, match=r"^known must be \(B, T\) bool, " + match):
        model.loss(torch.zeros(2, 2, 8, 8), torch.zeros(2, 2, 8, 8), known)


def test_fuser_presence_mask_of_2_is_refused_and_0_1_integers_are_bools():
    model, x = tiny_fuser("3mat"), torch.rand(2, 1, FUSION_SIZE, FUSION_SIZE)
    # one wording for every reader of a presence mask (medfm.data.multimodal.check_presence_mask)
    with pytest.raises(ValueError, match=r"^the presence mask of 'pre' must be a \(B,\) bool tensor "
                                         r"\(or 0/1 integers\), got integer values \[2\]"):
        model({"pre": x, "flair": x, "present": {"pre": torch.tensor([2, 1])}})  # was: 2 taken as present
    ints = model({"pre": x, "flair": x, "present": {"pre": torch.tensor([0, 1])}})
    bools = model({"pre": x, "flair": x, "present": {"pre": torch.tensor([False, True])}})
    assert torch.equal(ints["logits"], bools["logits"]) and ints["used"]["pre"].tolist() == [False, True]


def test_fuser_presence_reads_an_integer_mask_back_once(readbacks):
    """The fuser's batch check and :func:`medfm.data.multimodal.presence` both checked each mask: an integer mask
    was read back twice per forward (one device sync per modality more than the check needs)."""
    model, x = tiny_fuser("3mat"), torch.rand(2, 1, FUSION_SIZE, FUSION_SIZE)
    counts = []
    for dtype in (torch.bool, torch.int64):
        masks = {"pre": torch.tensor([0, 1], dtype=dtype), "flair": torch.tensor([1, 1], dtype=dtype)}
        readbacks.clear()
        used = model.presence({"pre": x, "flair": x, "present": masks})
        counts.append(len(readbacks))
        assert used["pre"].tolist() == [False, True] and used["flair"].tolist() == [True, True]
    assert counts[1] - counts[0] == 2  # one read-back per integer mask (was 4: each mask checked twice)


# -- fusers' generator --------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(FUSERS))
@pytest.mark.parametrize("train", [False, True])
def test_every_fuser_refuses_a_seed_as_its_generator_in_any_mode(name, train):
    """was: multimodn (modality_dropout 0) and late_fusion_zero_fill in any mode, every fuser in eval mode,
    ran with gen=0 and ignored it (the others refused it in training only)."""
    model = tiny_fuser(name).train(train)
    x = torch.rand(2, 1, FUSION_SIZE, FUSION_SIZE)
    batch = {m: x for m in model.modalities if m != "clinical"}
    with pytest.raises(ValueError, match=r"^fusion: gen must be a CPU torch\.Generator .*got 0; e\.g\."):
        model(batch, 0)
    model(batch, torch.Generator().manual_seed(0))  # a generator is still taken


# -- LoRA -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("base, match", [
    ("missing", r"^base_checkpoint: no checkpoint directory at '.*missing'"),  # was: saved, then load_adapter failed
    (None, r"^base_checkpoint must be the folder \(or hf-hub: id\) of the full checkpoint .*got None \(NoneType\)$"),
    ("adapter_as_base", r"^base_checkpoint: '.*' is a LoRA adapter, not a full checkpoint"),
])
def test_save_adapter_refuses_a_base_it_could_not_load_back(tmp_path, base, match):
    model = apply_lora(ImageClassifier(_enc(), 3), LoraSettings(rank=2))
    if base == "adapter_as_base":
        full = save_pretrained(ImageClassifier(_enc(), 3), tmp_path / "full")
        base = str(save_adapter(model, tmp_path / "first", str(full)))
    elif base == "missing":
        base = str(tmp_path / "missing")
    with pytest.raises(CheckpointError, match=match) as info:
        save_adapter(model, tmp_path / "adapter", base)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "adapter").exists()


@pytest.mark.parametrize("pattern, suggested", [
    ("qkv|proj", r".*\.(?:qkv|proj)"),  # was '.*\.qkv|proj', which still matched no 'proj' layer
    (r"attn\.qkv", r".*\.attn\.qkv"),  # was: "did you mean 'qkv'?"
])
def test_the_target_pattern_hint_is_a_pattern_that_matches(pattern, suggested):
    vit = ImageClassifier(_enc("vit_test"), 3)
    with pytest.raises(ValueError, match=r"the pattern must match the whole layer name inside the encoder, e\.g\. "
                                         rf"'{re.escape(suggested)}' for 'model\.") as info:
        apply_lora(vit, LoraSettings(target_modules=pattern))
    hint = re.search(r"e\.g\. '(.*)' for", str(info.value)).group(1)
    assert apply_lora(vit, LoraSettings(target_modules=hint)) is not None  # the hint itself works
