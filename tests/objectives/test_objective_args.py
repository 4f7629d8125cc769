"""Objective hyper-parameters are checked when the objective is built: one ValueError naming the
objective, the argument, its valid range and the value.

Each bad value used to be accepted by the constructor and then failed at the first training
step (``simclr: temperature -1``), trained with a NaN/inf/zero loss (``temperature: nan``,
``gm_weight: inf``, both loss weights 0), trained with a silently truncated or changed value
(``n_local_views: 1.5`` -> 1, ``k: 4`` with ``graph_size: 4`` -> 3, ``symmetric: "false"`` -> True),
or failed in the constructor with a torch ``TypeError``/a message naming no value
(found by /tmp/h_obj/probe.py on resnet18, 28 px, B=8).
"""
import math
import textwrap

import numpy as np
import pytest
import torch

import medfm
from medfm.objectives.heads import ProjectionHead
from medfm.objectives.solvers import RRWMConfig
from medfm.registry import OBJECTIVES
from tests.helpers.small_objectives import SMALL

NAN, INF = float("nan"), float("inf")


def _build(name, **kw):
    enc = medfm.create_encoder("resnet_test", in_chans=1, img_size=16)
    return OBJECTIVES.build(name, encoder=enc, **{**SMALL[name], **kw})


# (objective, bad arguments, expected message); comment: what the old code did
BAD = [
    ("simclr", {"temperature": -1}, r"simclr: temperature must be > 0, got -1\.0$"),  # failed at the first step
    ("simclr", {"temperature": NAN}, r"simclr: temperature must be a finite number > 0, got nan$"),  # NaN loss
    ("simclr", {"temperature": INF}, r"simclr: temperature must be a finite number > 0, got inf$"),  # loss ln(2B-1)
    ("simclr", {"temperature": "0.1"}, r"simclr: temperature .* got '0\.1' \(str\)$"),  # float("0.1"), silently
    ("simclr", {"proj_dim": 16.5}, r"simclr: proj_dim must be an integer >= 1, got 16\.5$"),  # torch TypeError
    ("simclr", {"proj_layers": True}, r"simclr: proj_layers must be an integer >= 1, got True \(bool\)$"),  # = 1
    ("simclr", {"views": "strong"}, r"simclr: views must be a mapping"),  # TypeError
    ("simclr", {"views": {"scael": [0.2, 1.0]}}, r"simclr: unknown views key\(s\) \['scael'\]; known: scale"),
    ("moco", {"temperature": INF}, r"moco: temperature must be a finite number > 0, got inf$"),  # trained
    ("moco", {"temperature": -1.0}, r"moco: temperature must be > 0, got -1\.0$"),  # message without the value
    ("moco", {"queue_size": 32.5}, r"moco: queue_size must be an integer >= 1, got 32\.5$"),  # torch TypeError
    ("moco", {"key_bn_splits": 2.5}, r"moco: key_bn_splits must be an integer >= 1, got 2\.5$"),  # int(2.5)
    ("moco", {"momentum": "0.99"}, r"moco: momentum must be a finite number in \[0, 1\), got '0\.99' \(str\)$"),
    ("moco", {"symmetric": "false"}, r"moco: symmetric must be true or false, got 'false' \(str\)$"),  # True
    ("swav", {"temperature": INF}, r"swav: temperature must be a finite number > 0, got inf$"),
    ("swav", {"epsilon": INF}, r"swav: epsilon must be a finite number > 0, got inf$"),  # uniform codes
    ("swav", {"epsilon": -0.05}, r"swav: epsilon must be > 0, got -0\.05$"),  # message without the value
    ("swav", {"sinkhorn_iterations": 2.5}, r"swav: sinkhorn_iterations must be an integer >= 1, got 2\.5$"),
    ("swav", {"n_local_views": 1.5}, r"swav: n_local_views must be an integer >= 0, got 1\.5$"),  # int(1.5)
    ("swav", {"n_prototypes": 8.5}, r"swav: n_prototypes must be an integer >= 2, got 8\.5$"),  # torch TypeError
    ("swav", {"local_size": 12.5}, r"swav: local_size must be an integer >= 8 px, got 12\.5$"),  # int(12.5)
    ("swav", {"freeze_prototypes_steps": -1}, r"swav: freeze_prototypes_steps must be an integer >= 0, got -1$"),
    ("graph_matching", {"k": 4}, r"graph_matching: k must be an integer in \[1, 3\] \(graph_size - 1\), got 4$"),
    ("graph_matching", {"graph_size": 4.5}, r"graph_matching: graph_size must be an integer >= 3, got 4\.5$"),
    ("graph_matching", {"graph_size": 2}, r"graph_matching: graph_size must be an integer >= 3, got 2$"),
    ("graph_matching", {"blackbox_lambda": INF}, r"graph_matching: blackbox_lambda must be a finite number > 0"),
    ("graph_matching", {"edge_weight": NAN}, r"graph_matching: edge_weight must be a finite number >= 0, got nan$"),
    ("graph_matching", {"contrastive_weight": -1.0}, r"graph_matching: contrastive_weight must be >= 0, got -1\.0$"),
    ("graph_matching", {"contrastive_weight": NAN}, r"graph_matching: contrastive_weight must be a finite number"),
    ("graph_matching", {"gm_weight": INF}, r"graph_matching: gm_weight must be a finite number >= 0, got inf$"),
    ("graph_matching", {"gm_weight": -1.0}, r"graph_matching: gm_weight must be >= 0, got -1\.0$"),
    ("graph_matching", {"gm_weight": 0, "contrastive": "none"}, r"graph_matching: the loss would be 0"),
    ("graph_matching", {"gm_weight": 0, "contrastive_weight": 0}, r"graph_matching: the loss would be 0"),
    ("graph_matching", {"temperature": -0.2}, r"graph_matching: temperature must be > 0, got -0\.2$"),
    ("graph_matching", {"local_dim": 2.5}, r"graph_matching: local_dim must be an integer >= 1, got 2\.5$"),
    ("graph_matching", {"differentiation": "exact"}, r"graph_matching: differentiation must be one of"),
    ("graph_matching", {"solver": {"iterations": 2.5}}, r"graph_matching: solver\.iterations must be an integer"),
    ("graph_matching", {"solver": {"beta": INF}}, r"graph_matching: solver\.beta must be a finite number > 0"),
    ("graph_matching", {"solver": {"tol": NAN}}, r"graph_matching: solver\.tol must be a finite number >= 0"),
    ("graph_matching", {"solver": {"iteratons": 5}}, r"graph_matching: unknown solver key\(s\) \['iteratons'\]"),
    ("clip", {"init_temperature": INF}, r"clip: init_temperature must be a finite number > 0, got inf$"),  # domain
    ("clip", {"max_logit_scale": INF}, r"clip: max_logit_scale must be a finite number > 0, got inf$"),  # no cap
    ("clip", {"ssl_weight": INF}, r"clip: ssl_weight must be a finite number >= 0, got inf$"),  # inf loss
    ("clip", {"ssl_weight": NAN}, r"clip: ssl_weight must be a finite number >= 0, got nan$"),  # AttributeError
    ("clip", {"ssl_temperature": INF}, r"clip: ssl_temperature must be a finite number > 0, got inf$"),
    ("clip", {"text_dim": 0}, r"clip: text_dim must be an integer >= 1, got 0$"),  # failed at the first step
    ("clip", {"proj_hidden_dim": 8.5}, r"clip: proj_hidden_dim must be an integer >= 1, got 8\.5$"),
    ("clip", {"text_encoder": "minilm"}, r"^clip: text_encoder: a text encoder spec is a mapping with a string name, "
                                         r"such as \{'name': 'minilm'\}, got 'minilm' \(str\)$"),
    ("clip", {"text_encoder": {"name": 3}}, r"^clip: text_encoder: a text encoder spec is a mapping with a string name"),
    # the text encoder spec rules of medfm.text (check_text_encoder_spec): CLIP checked only mapping and frozen
    ("clip", {"text_encoder": {"name": "minlm"}}, r"^clip: text_encoder: unknown text encoder 'minlm'; did you mean "
                                                  r"'minilm'\?"),  # accepted with text_dim: failed at the first step
    ("clip", {"text_encoder": {"name": "hf", "model_name_or_path": "m", "pooling": "mean"}},
     r"^clip: text_encoder: text encoder 'hf' got an unexpected keyword argument 'pooling'; did you mean 'pooler'\?$"),
    ("clip", {"text_encoder": {"name": "hf"}}, r"^clip: text_encoder: text encoder 'hf' needs model_name_or_path$"),
    ("clip", {"text_encoder": {"name": "hf", "model_name_or_path": "m", "frozen": "yes"}},
     r"^clip: text_encoder: frozen must be true or false, got 'yes' \(str\)$"),  # was: "remove 'frozen: false'"
    ("clip", {"text_encoder": {"name": "hf", "model_name_or_path": "m", "frozen": False}},
     r"^clip: text_encoder: frozen: false is not supported here: the text encoder stays frozen"),
    ("clip", {"learn_temperature": "no"}, r"clip: learn_temperature must be true or false, got 'no' \(str\)$"),
]


@pytest.mark.parametrize("name, kw, message", BAD, ids=[f"{n}-{'-'.join(map(str, kw))}-{list(kw.values())[-1]}"
                                                        for n, kw, _ in BAD])
def test_bad_objective_argument_is_refused_when_built(name, kw, message):
    with pytest.raises(ValueError, match=message) as info:
        _build(name, **kw)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("make, message", [
    (lambda: RRWMConfig(iterations=2.5), r"rrwm: iterations must be an integer >= 1, got 2\.5$"),  # TypeError later
    (lambda: RRWMConfig(beta=INF), r"rrwm: beta must be a finite number > 0, got inf$"),  # NaN assignment later
    (lambda: RRWMConfig(sinkhorn_iterations=0), r"rrwm: sinkhorn_iterations must be an integer >= 1, got 0$"),
    (lambda: ProjectionHead(16, hidden_dim=NAN), r"ProjectionHead: hidden_dim must be an integer >= 1, got nan$"),
])
def test_solver_and_head_arguments(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_valid_edge_values_still_build():
    """Guard against over-strict checks (passes on the old code too): range ends, numpy numbers
    and ints for floats are accepted and recorded as plain Python numbers."""
    moco = _build("moco", momentum=0, temperature=1, queue_size=np.int64(3), key_bn_splits=1, symmetric=np.bool_(False))
    assert moco.momentum == 0.0 and moco.queue.shape == (3, 8) and moco.symmetric is False
    gm = _build("graph_matching", k=3, global_weight=1, gm_weight=0, edge_weight=0, solver={"walk_weight": 1, "tol": 0})
    assert gm.k == 3 and gm.gm_weight == 0.0 and gm.solver_cfg.walk_weight == 1.0
    assert _build("graph_matching", contrastive="none", contrastive_weight=0, gm_weight=1.0).contrastive == "none"
    swav = _build("swav", n_local_views=0, local_size=8, freeze_prototypes_steps=0, sinkhorn_iterations=1)
    assert (swav.n_local_views, swav.local_size) == (0, 8)
    clip = _build("clip", init_temperature=0.01, max_logit_scale=100, ssl_weight=0, learn_temperature=False)
    assert clip.logit_scale.item() == pytest.approx(math.log(100.0)) and clip.ssl_weight == 0.0
    assert _build("simclr", proj_layers=1, temperature=np.float32(0.5), views={}).temperature == 0.5


PRETRAIN = textwrap.dedent("""
    data: {dataset: pneumoniamnist, size: 28}
    encoder: {name: resnet_test}
    objective: {name: simclr, args: {hidden_dim: 32, proj_dim: 16, temperature: TEMP}}
    train: {epochs: 1, batch_size: 4, lr: 1.0e-3, precision: fp32}
""")


@pytest.mark.parametrize("temp, message", [
    ("-1", "simclr: temperature must be > 0, got -1.0"),  # was: the first step failed (folder cleaned up)
    (".inf", "simclr: temperature must be a finite number > 0, got inf"),  # was: trained, exit 0
])
def test_cli_pretrain_refuses_the_recipe_before_writing(tmp_path, capsys, write_medmnist, monkeypatch, temp, message):
    """``medfm pretrain`` builds the objective before it writes the run folder, so a bad value
    exits 2 with one line and no folder. (The recipe check in ``_load_recipe`` checks argument
    names and types only; the value is refused by :func:`check_objective_args` before the data
    load, see the tests below.)"""
    from medfm.cli import main
    from medfm.training import runs

    monkeypatch.setenv("MEDFM_DATA", str(write_medmnist("pneumoniamnist")))
    monkeypatch.setattr(runs.Trainer, "fit", lambda self, resume=False: pytest.fail("training started"))
    (tmp_path / "pt.yaml").write_text(PRETRAIN.replace("TEMP", temp))
    code = main(["pretrain", str(tmp_path / "pt.yaml"), "--output", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and "\n" not in err, err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("temperature", [float("nan"), float("inf"), 0.0, -0.1])
def test_loss_functions_refuse_temperatures_that_are_not_finite_and_positive(temperature):
    """``nan <= 0`` is False: NaN temperatures used to pass the losses' check and give NaN losses."""
    from medfm.objectives.contrastive import nt_xent_loss
    from medfm.objectives.moco import moco_infonce_loss
    from medfm.objectives.swav import swav_loss

    z = torch.randn(4, 8)
    with pytest.raises(ValueError, match="temperature"):
        nt_xent_loss(z, z.flip(0), temperature)
    with pytest.raises(ValueError, match="temperature"):
        moco_infonce_loss(z, z.flip(0), torch.randn(16, 8), temperature)
    with pytest.raises(ValueError, match="temperature"):
        swav_loss([z, z.flip(0)], temperature=temperature)


@pytest.mark.parametrize("field, value, fragment", [
    ("rotate_deg", float("nan"), "rotate_deg must be a finite number >= 0"),
    ("noise_std", float("inf"), "noise_std must be a finite number >= 0"),
    ("brightness", float("nan"), "brightness must be a finite number >= 0"),
    ("contrast", 1.5, r"contrast must be in \[0, 1\)"),
    ("contrast", float("nan"), r"contrast must be a finite number in \[0, 1\)"),
    ("blur_sigma", (0.0, 1.0), "blur_sigma must satisfy"),
    ("blur_sigma", (1.0, 0.5), "blur_sigma must satisfy"),
])
def test_view_settings_refuse_nan_inverting_contrast_and_bad_blur(field, value, fragment):
    from medfm.data.views import ViewConfig

    with pytest.raises(ValueError, match=fragment):
        ViewConfig(**{field: value})
    ViewConfig(contrast=0.0, brightness=0.0, blur_sigma=(0.5, 0.5))  # range ends still build


# -- the same checks before any data: check_objective_args ------------------------------------------
@pytest.mark.parametrize("name, kw, message", BAD, ids=[f"{n}-{'-'.join(map(str, kw))}-{list(kw.values())[-1]}"
                                                        for n, kw, _ in BAD])
def test_check_objective_args_refuses_every_bad_argument_as_the_build_does(name, kw, message):
    """Every case the constructor refuses is refused with the same line without an encoder (the
    rules stay in the objectives: a second copy could drift)."""
    from medfm.objectives.inputs import check_objective_args

    with pytest.raises(ValueError, match=message):
        check_objective_args(name, {**SMALL[name], **kw})


def test_check_objective_args_accepts_valid_arguments_without_building(caplog):
    from medfm.objectives.inputs import check_objective_args
    from medfm.registry import UnknownArgumentError

    for name, args in SMALL.items():
        check_objective_args(name, args)
    check_objective_args("simclr", {"temperature": None})  # None: the default, as OBJECTIVES.build drops it
    with caplog.at_level("WARNING"):
        check_objective_args("swav", {**SMALL["swav"], "n_prototypes": 4})  # < proj_dim: the build warns ...
        assert caplog.text == ""  # ... not the check (it would warn twice)
        _build("swav", n_prototypes=4)
        assert "prototypes < proj_dim" in caplog.text
    with pytest.raises(UnknownArgumentError, match="'temprature'; did you mean 'temperature'"):
        check_objective_args("simclr", {"temprature": 0.1})


def test_check_objective_args_with_the_encoder_checks_the_view_sizes_it_takes():
    """Given the check-built encoder, the placeholder answers its input geometry, so swav's local crops are
    checked against its ``min_input_size`` before any data (they failed at the first training step)."""
    from medfm.objectives.inputs import check_objective_args

    convnext = medfm.create_encoder("convnext_test", in_chans=1, img_size=64, patch_size=4)  # 32 px at least
    small = {**SMALL["swav"], "local_size": 16}
    check_objective_args("swav", small)  # without an encoder: only the checks that need none
    with pytest.raises(ValueError, match=r"^swav: local_size 16 px is below the smallest input encoder "
                                         r"'convnext_test' takes \(its min_input_size: 32 px\)"):
        check_objective_args("swav", small, encoder=convnext)
    check_objective_args("swav", {**small, "local_size": 32}, encoder=convnext)
    resnet = medfm.create_encoder("resnet_test", in_chans=1, img_size=16)
    for name, args in SMALL.items():  # every objective still stops before building a layer
        check_objective_args(name, args, encoder=resnet)


def test_views_out_size_must_be_a_positive_integer():
    """``out_size=0`` was taken as the input side; a negative or fractional side failed inside torch."""
    from medfm.data.views import RandomViews

    for bad in (0, -4, 12.5, True):
        with pytest.raises(ValueError, match=r"^views out_size must be an integer >= 1, got "):
            RandomViews(out_size=bad)
    views = RandomViews(out_size=12)
    assert views(torch.rand(2, 1, 16, 16), torch.Generator().manual_seed(0)).shape == (2, 1, 12, 12)


@pytest.mark.parametrize("dataset", ["pneumoniamnist", "corpus"])
def test_pretrain_refuses_a_bad_argument_before_reading_data(tmp_path, dataset):
    """The data root is empty: the old code failed on the missing data first (a bad value in a
    recipe whose data are there was refused only after they had loaded, seconds on the corpus)."""
    from medfm.config import from_dict
    from medfm.training.recipes import PretrainRecipe
    from medfm.training.runs import run_pretrain

    recipe = from_dict(PretrainRecipe, {"data": {"dataset": dataset}, "encoder": {"name": "resnet_test"},
                                        "objective": {"name": "graph_matching", "args": {"temperature": -1}}})
    with pytest.raises(ValueError, match=r"^PretrainRecipe\.objective\.args: graph_matching: temperature must be > 0, got -1\.0$"):
        run_pretrain(recipe, tmp_path / "out", data_root=str(tmp_path))
    assert not (tmp_path / "out").exists()


def test_clip_unknown_text_encoder_keeps_the_registry_error_class():
    """CLIP re-raised every text-encoder spec error as a plain TextEncoderError, so an unknown name
    was no longer the UnknownNameError every other unknown name is (and the CLI keeps)."""
    from medfm.registry import UnknownNameError
    from medfm.text.encoders import TextEncoderError

    with pytest.raises(UnknownNameError, match=r"^clip: text_encoder: unknown text encoder 'minlm'") as info:
        _build("clip", text_encoder={"name": "minlm"})
    assert isinstance(info.value, TextEncoderError)
