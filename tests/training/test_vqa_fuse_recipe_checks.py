"""``medfm vqa`` and ``medfm fuse`` (and ``medfm finetune``'s LoRA targets) refuse a bad recipe value before
any data are read, in one line that names the recipe file and section, with the shared numeric rules of
:mod:`medfm.arg_checks`.

Each CLI row edits one key of a shipped ``finetune/vqa_*`` / ``fusion_*`` / ``lora_*`` recipe; the comment says
what happened before (most ran into the data: VQA-RAD decoded, or the LGG slices read, first).
The data loaders are replaced by ones that fail the test, so "before the data" is checked directly.
"""
from __future__ import annotations

import numpy as np
import pytest
import yaml

from medfm.config import ConfigError, from_dict, recipe_args_errors, recipe_location
from medfm.registry import UnknownNameError
from tests.conftest import REPO_ROOT, assert_refuses, cli_error, save_tiny_bert

NAN, INF = float("nan"), float("inf")
VQA, VQA_CLIP = "finetune/vqa_resnet18_random.yaml", "finetune/vqa_resnet18_clip.yaml"
FUSE, FUSE_SEG = "finetune/fusion_lgg_missing.yaml", "finetune/fusion_lgg_segmentation.yaml"
FINETUNE_LORA = "finetune/lora_resnet18_pneumoniamnist.yaml"
DROP = object()  # an edit that removes the key


@pytest.fixture(scope="module")
def tiny_text(tmp_path_factory):
    """A tiny local BERT for the rows whose check needs the text encoder loaded (seconds less than MiniLM)."""
    return {"name": "hf", "model_name_or_path": str(save_tiny_bert(tmp_path_factory.mktemp("bert"), ["is", "a"]))}


@pytest.fixture
def no_data(monkeypatch, tmp_path):
    """Fail the test if VQA-RAD, the LGG slices or a MedMNIST split are read; ``$MEDFM_DATA`` empty as well."""
    def read(*a, **k):
        pytest.fail("the data were read before the bad recipe value was reported")

    monkeypatch.setattr("medfm.data.vqa_rad.VQARadDataset", read)
    monkeypatch.setattr("medfm.data.lgg_fusion.LGGFusionSet", read)
    monkeypatch.setattr("medfm.training.runs.MedMNISTDataset", read)
    monkeypatch.setenv("MEDFM_DATA", str(tmp_path / "no_data"))


def recipe_file(tmp_path, recipe, edits, text_spec=None):
    """``tmp_path/r.yaml``: shipped ``recipe`` with ``edits`` ``{"section.key": value or DROP}``; a VQA
    recipe's text encoder is ``text_spec`` unless an edit sets it."""
    r = yaml.safe_load((REPO_ROOT / recipe).read_text())
    if text_spec is not None and "text_encoder" in r:
        r["text_encoder"] = text_spec
    for key, value in edits.items():
        *parents, last = key.split(".")
        d = r
        for p in parents:
            d = d.setdefault(p, {})
        if value is DROP:
            del d[last]
        else:
            d[last] = value
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(r))
    return path


def _model(fuser, **args):
    return {"a": {"fuser": fuser, "args": args}}


# (command, recipe, edits, the whole message after "medfm: error: ", or its start up to "(known:" for an
# unknown name: the registry's count may grow); the comment says what happened before
CASES = [
    # vqa: the head's type-loss weight was never checked (-1 trained, maximising the type loss)
    ("vqa", VQA, {"head.type_weight": -1}, "r.yaml.head: type_weight must be >= 0 (0: no answer-type loss), got -1.0"),
    ("vqa", VQA, {"head.type_weight": NAN},
     "r.yaml.head: type_weight must be a finite number >= 0 (0: no answer-type loss), got nan"),  # NaN loss
    ("vqa", VQA, {"head.dropout": NAN}, "r.yaml.head: dropout must be a finite number in [0, 1), got nan"),  # after data
    ("vqa", VQA, {"head.dropout": 2}, "r.yaml.head: dropout must be in [0, 1), got 2.0"),  # torch's own wording
    ("vqa", VQA, {"head.fusion": "bilinear", "head.layers": 0},  # accepted: max(1, layers) glimpses
     "r.yaml.head: layers must be an integer >= 1 (glimpses for 'bilinear'), got 0"),
    # "head.fusion must be one of (...)", without "did you mean" (a second fusion check came first)
    ("vqa", VQA, {"head.fusion": "bilinaer"}, "r.yaml.head: unknown VQA fusion 'bilinaer'; did you mean 'bilinear'?"),
    # the text encoder was built after VQA-RAD was decoded
    ("vqa", VQA, {"text_encoder": {"name": "minilmm"}},
     "r.yaml.text_encoder: unknown text encoder 'minilmm'; did you mean 'minilm'? (known:"),
    ("vqa", VQA, {"text_encoder": {"name": "minilm", "max_length": 1}},
     "r.yaml.text_encoder: max_length must be an integer >= 2, got 1"),
    # an unknown encoder was named without the file or section
    ("vqa", VQA, {"encoder.name": "resnet19"},
     "r.yaml.encoder: unknown encoder 'resnet19'; did you mean 'resnet18' or 'resnet50' or 'resnet3d_18'? (known:"),
    # an omitted section: "encoder: resnet18: ..." (no file name)
    ("vqa", VQA, {"encoder": DROP, "data.size": 4}, "r.yaml.encoder: resnet18: img_size must be an integer >= 8, got 4"),
    ("vqa", VQA_CLIP, {},  # no --init: the recipe was not named
     "r.yaml: requires_init: this recipe starts from a pretrained encoder: pass --init CKPT (a medfm checkpoint "
     "directory)"),
    ("vqa", VQA, {"mode": "lora", "lora.target_modules": "bogus"},  # after the data, when LoRA was applied
     "r.yaml.lora: LoRA target pattern 'bogus' matches no Linear/Conv2d/Conv3d layer of encoder 'resnet18'"),
    # the spec was not checked as `medfm segment` checks it: Python's own words, or a hub lookup of "5"
    ("vqa", VQA, {"text_encoder": {"name": "hf"}}, "r.yaml.text_encoder: text encoder 'hf' needs model_name_or_path"),
    ("vqa", VQA, {"text_encoder": {"name": "minilm", "frozen": False}},  # silently ignored: questions embedded once
     "r.yaml.text_encoder: frozen: false is not supported here: the text encoder stays frozen (its embeddings are "
     "computed once and never trained); remove it"),
    ("vqa", VQA, {"text_encoder": {"name": "hf", "model_name_or_path": 5}},
     "r.yaml.text_encoder: model_name_or_path must be a local model directory or a hub id (a string or a path), "
     "got 5"),
    # finetune: after the training and val splits were read, without a location
    ("finetune", FINETUNE_LORA, {"lora.target_modules": "bogus"},
     "r.yaml.lora: LoRA target pattern 'bogus' matches no Linear/Conv2d/Conv3d layer of encoder 'resnet18'"),
    # fuse: the shared image encoder's args not a mapping was Python's own message
    ("fuse", FUSE, {"image_encoder": {"name": "resnet18", "args": 5}},
     "r.yaml: image_encoder.args must be a mapping of encoder arguments, got 5"),  # 'int' object is not iterable
    ("fuse", FUSE_SEG, {"image_encoder": {"name": "resnet_test", "args": 5}},
     "r.yaml: image_encoder.args must be a mapping of encoder arguments, got 5"),
    ("fuse", FUSE, {"image_encoder": {"name": 5}},
     "r.yaml: image_encoder.name must be a registered encoder's name, got 5"),  # unknown encoder 5 (no location)
    ("fuse", FUSE, {"image_encoder": {"name": "resnet_tst"}},
     "r.yaml.image_encoder: unknown encoder 'resnet_tst'; did you mean 'resnet_test' or 'resnet3d_test' or "
     "'kan_resnet_test'? (known:"),
    ("fuse", FUSE, {"models": {"a": {"fuser": "3matt"}}},
     "r.yaml.models.a: unknown fuser '3matt'; did you mean '3mat'? (known:"),  # no location
    # the fusers' sizes: accepted (and failed after the data) or a raw Python/torch message
    ("fuse", FUSE, {"models": _model("3mat", layers=0)},
     "r.yaml.models.a: layers must be an integer >= 1 (cross-attention blocks), got 0"),  # accepted: no attention
    ("fuse", FUSE, {"models": _model("3mat", layers=2.5)},
     "r.yaml.models.a: layers must be an integer >= 1 (cross-attention blocks), got 2.5"),  # 'float' object ...
    ("fuse", FUSE, {"models": _model("3mat", grid=0)},
     "r.yaml.models.a: grid must be an integer >= 1 (grid x grid tokens per image), got 0"),  # accepted
    ("fuse", FUSE, {"models": _model("multimodn", dim=0)},
     "r.yaml.models.a: dim must be an integer >= 1 (the state size), got 0"),  # "num_features and dim must be >= 1"
    ("fuse", FUSE, {"models": _model("multimodn", dim=2.5)},
     "r.yaml.models.a: dim must be an integer >= 1 (the state size), got 2.5"),  # torch: empty(): argument 'size'
    ("fuse", FUSE, {"models": _model("channelvit", patch_size=0)},
     "r.yaml.models.a: patch_size must be an integer >= 1, got 0"),  # ZeroDivisionError (a traceback)
    ("fuse", FUSE, {"models": _model("channelvit", depth=0)},
     "r.yaml.models.a: depth must be an integer >= 1 (transformer blocks), got 0"),  # accepted
    ("fuse", FUSE, {"models": _model("channelvit", hcs="no")},
     "r.yaml.models.a: hcs must be true or false (hierarchical channel sampling), got 'no' (str)"),  # taken as true
    ("fuse", FUSE, {"models": _model("late_fusion_zero_fill", dropout=2)},
     "r.yaml.models.a: dropout must be in [0, 1), got 2.0"),  # torch's own wording
    ("fuse", FUSE, {"models": _model("late_fusion_zero_fill", modalities=["pre", "bogus"])},  # after the data
     "r.yaml: models.a.args.modalities must be a non-empty list of the recipe's modalities "
     "['pre', 'flair', 'post', 'clinical'], got ['pre', 'bogus'] (not among them: ['bogus'])"),
    ("fuse", FUSE, {"protocol.seed": -1}, "r.yaml: protocol.seed must be an integer >= 0, got -1"),  # accepted
    ("fuse", FUSE, {"protocol.p_low": NAN},
     "r.yaml: protocol.p_low must be a finite number in [0, 1] (a probability), got nan"),
    ("fuse", FUSE_SEG, {"models": {"a": {"fuser": "fused_unet", "train_missing": "mnar"}}},  # no location
     "r.yaml: models.a.train_missing: segmentation models train with natural missingness only, got 'mnar'"),
    ("fuse", FUSE_SEG, {"models": _model("fused_unet", modality_dropout=False)},  # accepted as 0
     "r.yaml.models.a: modality_dropout must be a finite number in [0, 1), got False (bool)"),
]


@pytest.mark.parametrize("command, recipe, edits, message", CASES,
                         ids=[f"{c}-{r.split('/')[-1][:-5]}-{'+'.join(e) or 'as_shipped'}" for c, r, e, _ in CASES])
def test_bad_value_is_one_located_line_before_the_data(tmp_path, capsys, no_data, tiny_text, command, recipe, edits,
                                                       message):
    path = recipe_file(tmp_path, recipe, edits, tiny_text)
    code, err = cli_error(capsys, [command, path, "--output", tmp_path / "out"])
    whole = not message.endswith("(known:")
    assert code == 2 and (err == f"medfm: error: {message}" if whole else err.startswith(f"medfm: error: {message}")), err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("fusion", ["bilinear"])
def test_bilinear_fusion_has_no_heads_to_divide_its_width(tmp_path, capsys, monkeypatch, tiny_text, fusion):
    """``dim: 128, heads: 3`` was refused for bilinear fusion ("dim must be divisible by heads"), which has
    no heads: now the recipe passes every check and the run goes on to read the data."""
    from medfm.adapters.vqa import VQAModel
    from medfm.encoders import create_encoder
    from medfm.training.vqa import VQAHeadConfig

    assert VQAHeadConfig(fusion=fusion, dim=128, heads=3).heads == 3
    model = VQAModel(create_encoder("resnet_test", in_chans=1, img_size=28), ["no", "yes"], 8, fusion=fusion, dim=16,
                     heads=3)
    assert model.medfm_spec["args"]["heads"] == 3
    monkeypatch.setenv("MEDFM_DATA", str(tmp_path / "no_data"))
    path = recipe_file(tmp_path, VQA, {"head.fusion": fusion, "head.dim": 128, "head.heads": 3}, tiny_text)
    code, err = cli_error(capsys, ["vqa", path, "--output", tmp_path / "out"])
    assert code == 2 and err.startswith("medfm: error: VQA-RAD not found"), err  # past the checks


@pytest.mark.parametrize("fusion", ["cross_attention", "coattention"])
def test_attention_fusions_still_need_dim_divisible_by_heads(fusion):
    from medfm.training.vqa import VQAHeadConfig

    with pytest.raises(ValueError, match=r"^dim must be divisible by heads .*got dim=128, heads=3$"):
        VQAHeadConfig(fusion=fusion, dim=128, heads=3)


def _dc(module, cls):
    def build(**kw):
        import importlib

        return getattr(importlib.import_module(module), cls)(**kw)
    return build


_data, _encoder, _finetune = (_dc("medfm.training.recipes", c) for c in ("DataConfig", "EncoderConfig", "FinetuneRecipe"))
_vqa_data, _vqa_head, _vqa = (_dc("medfm.training.vqa", c) for c in ("VQADataConfig", "VQAHeadConfig", "VQARecipe"))
_fuse_data, _protocol, _fuse = (_dc("medfm.training.fusion", c)
                                for c in ("FusionDataConfig", "FusionProtocolConfig", "FusionRecipe"))


def _vqa_model(**kw):
    from medfm.adapters.vqa import VQAModel
    from medfm.encoders import create_encoder

    return VQAModel(create_encoder("resnet_test", in_chans=1, img_size=28), ["no", "yes"],
                    **{"text_dim": 8, "dim": 16, "heads": 2, **kw})


def _fuser(name, **kw):
    from medfm.registry import FUSERS

    base = {"modalities": ["pre", "flair"], "img_size": 32}
    if name != "channelvit":
        base["image_encoder"] = {"name": "resnet_test"}
    return FUSERS.build(name, **{**base, **kw})


# (site, call, bad value, whole message); the comment says what the old hand-written check did
SITES = [
    ("DataConfig.size", lambda v: _data(size=v), True,
     "data.size must be an integer >= 1 (a side in px, e.g. 28), got True (bool)"),  # accepted
    ("DataConfig.label_fraction", lambda v: _data(label_fraction=v), True,
     "data.label_fraction must be in (0, 1], got True (bool)"),  # accepted as 1
    ("EncoderConfig.img_size", lambda v: _encoder(img_size=v), 28.0,
     "encoder.img_size must be an integer >= 1 (a side in px), or left out for the data's size, got 28.0"),  # accepted
    ("FinetuneRecipe.dropout", lambda v: _finetune(dropout=v), False,
     "dropout must be a finite number in [0, 1), got False (bool)"),  # accepted
    ("VQADataConfig.size", lambda v: _vqa_data(size=v), 28.5,
     "data.size must be an integer >= 1 (an image side in px, e.g. 28), got 28.5"),  # accepted
    ("VQADataConfig.in_chans", lambda v: _vqa_data(in_chans=v), True,
     "data.in_chans must be 1 (grayscale) or 3 (RGB), got True (bool)"),  # accepted as 1
    ("VQAHeadConfig.dropout", lambda v: _vqa_head(dropout=v), NAN,
     "dropout must be a finite number in [0, 1), got nan"),  # accepted
    ("VQAHeadConfig.type_weight", lambda v: _vqa_head(type_weight=v), INF,
     "type_weight must be a finite number >= 0 (0: no answer-type loss), got inf"),  # accepted
    ("VQARecipe.top_k", lambda v: _vqa(top_k=v), 2.5,
     "top_k must be an integer >= 1 (ranked answers per test question), got 2.5"),  # accepted
    ("VQARecipe.n_boot", lambda v: _vqa(n_boot=v), True,
     "n_boot must be an integer >= 1 (bootstrap resamples), got True (bool)"),  # accepted
    ("VQAModel.layers", lambda v: _vqa_model(layers=v), True, "layers must be an integer >= 1, got True (bool)"),
    ("VQAModel.dropout", lambda v: _vqa_model(dropout=v), NAN, "dropout must be a finite number in [0, 1), got nan"),
    ("VQAModel.text_dim", lambda v: _vqa_model(text_dim=v), 8.0, "text_dim must be an integer >= 1, got 8.0"),
    ("FusionDataConfig.img_size", lambda v: _fuse_data(img_size=v), 64.0,
     "data.img_size must be an integer >= 16 (a slice side in px), got 64.0"),  # accepted
    ("FusionProtocolConfig.p_high", lambda v: _protocol(p_high=v), True,
     "protocol.p_high must be a finite number in [0, 1] (a probability), got True (bool)"),  # accepted
    ("FusionProtocolConfig.n_boot", lambda v: _protocol(n_boot=v), 2.5,
     "protocol.n_boot must be an integer >= 1, got 2.5"),  # accepted
    ("FusionRecipe.dim", lambda v: _fuse(dim=v, models={"a": {}}), True,
     "dim must be an integer >= 1 (the fusion width), got True (bool)"),  # accepted
    ("3mat.grid", lambda v: _fuser("3mat", grid=v), 2.0,
     "grid must be an integer >= 1 (grid x grid tokens per image), got 2.0"),  # accepted
    ("3mat.num_classes", lambda v: _fuser("3mat", num_classes=v), 2.0,
     "num_classes must be an integer >= 2, got 2.0"),  # TypeError from torch
    ("multimodn.modality_dropout", lambda v: _fuser("multimodn", modality_dropout=v), False,
     "modality_dropout must be a finite number in [0, 1), got False (bool)"),  # accepted
    ("channelvit.patch_size", lambda v: _fuser("channelvit", patch_size=v), 8.0,
     "patch_size must be an integer >= 1, got 8.0"),  # TypeError from torch
    ("late_fusion_zero_fill.dropout", lambda v: _fuser("late_fusion_zero_fill", dropout=v), NAN,
     "dropout must be a finite number in [0, 1), got nan"),  # accepted
    ("late_fusion_zero_fill.clinical_features",
     lambda v: _fuser("late_fusion_zero_fill", modalities=["clinical"], clinical_features=v), True,
     "clinical_features must be an integer >= 1 (table columns: modality 'clinical' needs them), got True (bool)"),
    ("fused_unet.modality_dropout", lambda v: _fuser("fused_unet", modality_dropout=v), NAN,
     "modality_dropout must be a finite number in [0, 1), got nan"),
]


@pytest.mark.parametrize("site, call, value, message", SITES, ids=[f"{s}={v!r}" for s, _, v, _ in SITES])
def test_each_site_refuses_with_the_shared_rule(site, call, value, message):
    assert_refuses(call, value, message)


def test_valid_values_are_still_accepted():
    """Bounds, ints for float arguments, numpy scalars."""
    assert _data(size=np.int64(28), label_fraction=1).size == 28
    assert _vqa_head(dim=np.int64(64), heads=4, layers=1, dropout=0, type_weight=0).type_weight == 0
    assert _vqa(top_k=np.int64(1), n_boot=1).top_k == 1
    assert _protocol(mcar_rates=[0, 0.5], p_high=1, p_low=0, n_boot=np.int64(1), seed=0).p_high == 1
    assert _fuser("3mat", layers=1, grid=1, modality_dropout=0).medfm_spec["args"]["grid"] == 1
    assert _fuser("channelvit", patch_size=np.int64(8), depth=1, hcs=False).hcs is False
    assert _vqa_model(fusion="bilinear", layers=np.int64(1), dropout=0.0).medfm_spec["args"]["layers"] == 1


def test_an_omitted_section_is_located_with_the_file():
    """A section the recipe leaves out (made by its default) had no recorded location: its errors read
    ``encoder: ...`` where a written section reads ``r.yaml.encoder: ...``."""
    from medfm.training.recipes import FinetuneRecipe
    from medfm.training.vqa import VQARecipe

    recipe = from_dict(VQARecipe, {"mode": "frozen"}, where="r.yaml")
    assert recipe_location(recipe.encoder, "encoder") == "r.yaml.encoder"
    assert recipe_location(recipe.head, "head") == "r.yaml.head"
    assert recipe_location(recipe.data, "data") == "r.yaml.data"
    finetune = from_dict(FinetuneRecipe, {"encoder": {"name": "resnet_test"}}, where="f.yaml")
    assert recipe_location(finetune.encoder, "encoder") == "f.yaml.encoder"  # written: unchanged
    assert recipe_location(finetune.augment, "augment") == "f.yaml.augment"  # left out: ViewConfig.light()
    assert recipe_location(VQARecipe().encoder, "encoder") == "encoder"  # made in Python: the section's name


def test_recipe_args_errors_names_unknown_names_and_a_section_key_once():
    from medfm.registry import ENCODERS

    with pytest.raises(UnknownNameError) as info:  # the class is kept (a KeyError, not a ConfigError)
        with recipe_args_errors("r.yaml.encoder"):
            ENCODERS.get("resnet19")
    assert str(info.value).startswith("r.yaml.encoder: unknown encoder 'resnet19'; did you mean 'resnet18'")
    with pytest.raises(ConfigError) as info:  # a message naming the section's key: the location once
        with recipe_args_errors("r.yaml.image_encoder"):
            raise ValueError("image_encoder.args must be a mapping of encoder arguments, got 5")
    assert str(info.value) == "r.yaml: image_encoder.args must be a mapping of encoder arguments, got 5"
    with pytest.raises(ConfigError) as info:  # any other message keeps the section
        with recipe_args_errors("r.yaml.encoder"):
            raise ValueError("encoder 'resnet18' does not take that argument: bogus")
    assert str(info.value) == "r.yaml.encoder: encoder 'resnet18' does not take that argument: bogus"
