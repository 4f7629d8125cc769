"""Public API options: no parameter that does nothing, no metadata that overwrites a checkpoint's
architecture, one error class for a bad text encoder spec."""
import json

import numpy as np
import pytest
import torch

import medfm
from medfm.adapters.classification import ImageClassifier
from medfm.evaluation.metrics import MULTI_LABEL
from medfm.hub import CheckpointError, from_pretrained, model_config, save_pretrained
from medfm.registry import UnknownArgumentError
from medfm.text.encoders import (TextEncoderArgumentError, TextEncoderError, check_text_encoder_spec,
                                 create_text_encoder)


# -- parameters removed because nothing read them ----------------------------------------------
def test_thresholded_predictions_needs_no_labels():
    s = np.array([[0.2, 0.9], [0.7, 0.1]])
    from medfm.evaluation.metrics import thresholded_predictions

    assert thresholded_predictions(s, MULTI_LABEL, 0.5).tolist() == [[0, 1], [1, 0]]
    assert thresholded_predictions(s, "multi-class", 0.5).tolist() == [1, 0]


def test_fusion_report_needs_no_modalities():
    from medfm.evaluation.fusion import render_markdown

    row = {"model": "multimodn", "auc": 0.75, "auc_ci95": [0.6, 0.9], "acc": 0.7, "n": 12}
    res = {"subsets": [{**row, "subset": "pre+flair", "n_patients": 3}], "natural": [row],
           "mcar": [{**row, "rate": 0.5}], "mnar": [{**row, "trained": "natural", "test": "mnar"}],
           "checks": {"ok": True}}
    text = render_markdown(res)
    assert "| pre+flair" in text and "0.600-0.900" in text


def test_seg_fusion_summary_needs_no_modalities(tmp_path):
    from medfm.training.fusion_seg import seg_summary

    res = {"subsets": [{"subset": "flair", "model": "unet", "dice": 0.5, "n_patients": 2, "n": 9}],
           "natural": [{"model": "unet", "dice": 0.5, "dice_ci95": [0.4, 0.6]}]}
    text = seg_summary(res, tmp_path)
    assert "Dice 0.500 (2 patients, 9 slices)" in text and str(tmp_path / "report.md") in text
    assert "(95% CI 0.400-0.600)" in text
    res["natural"][0]["dice_ci95"] = [float("nan"), float("nan")]  # no bootstrap (was printed nan-nan)
    assert "(95% CI n/a)" in seg_summary(res, tmp_path)


# -- extra_config never overwrites the architecture ----------------------------------------------
def _clf():
    torch.manual_seed(0)
    return ImageClassifier(medfm.create_encoder("resnet_test", in_chans=1, img_size=28), num_classes=2,
                           task="binary-class")


@pytest.mark.parametrize("key", ["encoder", "args", "kind", "name", "preprocessing", "medfm_version"])
def test_extra_config_refuses_the_model_s_own_keys(key):
    with pytest.raises(CheckpointError, match=rf"^extra_config cannot set '{key}': the model's own config.json writes"):
        model_config(_clf(), {"training": {}, key: {"name": "vit_test"}})


def test_a_refused_extra_config_leaves_the_checkpoint_there_as_it_was(tmp_path):
    model = _clf().eval()
    path = save_pretrained(model, tmp_path / "ckpt", extra_config={"license": "cc-by-4.0"})
    before = (path / "config.json").read_text()
    with pytest.raises(CheckpointError, match="'encoder', 'args'"):
        save_pretrained(model, path, extra_config={"encoder": {"name": "vit_test"}, "args": {}})
    assert (path / "config.json").read_text() == before and json.loads(before)["license"] == "cc-by-4.0"
    again = from_pretrained(path)
    assert torch.equal(again.state_dict()["task_head.weight"], model.state_dict()["task_head.weight"])


# -- create_text_encoder refuses a bad spec as check_text_encoder_spec does ------------------------
@pytest.mark.parametrize("spec", [{"name": "minilm", "poolr": "cls"}, {"name": "hf"}, ["minilm"]])
def test_create_and_check_refuse_a_bad_text_encoder_spec_alike(spec):
    with pytest.raises(TextEncoderError) as checked:
        check_text_encoder_spec(spec)
    with pytest.raises(TextEncoderError) as built:
        create_text_encoder(spec)
    assert type(built.value) is type(checked.value) and str(built.value) == str(checked.value)


def test_an_unknown_text_encoder_keyword_is_also_the_registry_s_error():
    with pytest.raises(UnknownArgumentError, match="did you mean 'pooler'") as info:
        create_text_encoder(None, poolr="cls")  # an override is checked as the spec is
    assert isinstance(info.value, TextEncoderError) and isinstance(info.value, TextEncoderArgumentError)


def test_overrides_still_apply_and_null_overrides_mean_the_default():
    enc = create_text_encoder({"name": "minilm", "pooler": "cls", "max_length": 64}, max_length=None, pooler="last")
    assert enc.spec["pooler"] == "last" and enc.spec["max_length"] == 128
