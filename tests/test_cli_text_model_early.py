"""A recipe's local text model folder (``text_encoder: {name: hf, model_name_or_path: DIR}``; a ``clip``
pretrain recipe's ``objective.args.text_encoder``) that is missing, or holds no config.json, is named by the
``medfm`` command before torch is imported (it used to be named by the runners after 4-10 s of imports), in
the runners' words: one rule, :func:`medfm.checkpoint_ids.local_text_model_problem`, which
:func:`medfm.text.model_files.resolve_text_model` applies too.
"""
from __future__ import annotations

import json

import pytest

from medfm.checkpoint_ids import local_text_model_problem
from medfm.config import ConfigError, from_dict, load_yaml
from medfm.text.model_files import TextEncoderError, resolve_text_model
from tests.conftest import REPO_ROOT
from tests.helpers.cli import errors_without_torch

#: recipe file -> (command, recipe location of the text encoder as the runner names it)
WHERE = {"seg.yaml": ("segment", "text_encoder"), "vqa.yaml": ("vqa", "text_encoder"),
         "clip.yaml": ("pretrain", "objective.args")}


def _write_recipes(folder, spec):
    """The three recipes that load a text model, each with the text encoder ``spec`` (a dict, or any YAML
    value), written under ``folder``; returns ``{file name: path}``."""
    text = json.dumps(spec)  # JSON is YAML: paths with any characters stay strings
    seg = (REPO_ROOT / "finetune" / "seg_text_chase_lgg.yaml").read_text()
    assert "text_encoder: {name: minilm}\n" in seg
    recipes = {"seg.yaml": seg.replace("text_encoder: {name: minilm}\n", f"text_encoder: {text}\n"),
               "vqa.yaml": f"encoder: {{name: resnet_test}}\ntext_encoder: {text}\n",
               "clip.yaml": ("data: {dataset: corpus}\nencoder: {name: resnet_test}\n"
                             f"objective: {{name: clip, args: {{text_encoder: {text}}}}}\n")}
    for name, body in recipes.items():
        (folder / name).write_text(body)
    return {name: folder / name for name in recipes}


def test_a_missing_recipe_text_model_folder_is_named_without_loading_torch(tmp_path, monkeypatch):
    """A missing absolute or ``./relative`` folder, and a folder without config.json: exit 2, one line with
    the recipe location, torch never imported, nothing written."""
    monkeypatch.chdir(tmp_path)  # "./nope/model" is relative to the command's folder
    (tmp_path / "empty").mkdir()
    idents = {str(tmp_path / "nope" / "model"): f"no text model directory at '{tmp_path / 'nope' / 'model'}'",
              "./nope/model": "no text model directory at 'nope/model'",
              str(tmp_path / "empty"): f"'{tmp_path / 'empty'}' is not a transformers model directory: "
                                       "config.json is missing"}
    cases, expected = [], []
    for i, (ident, message) in enumerate(idents.items()):
        folder = tmp_path / f"r{i}"
        folder.mkdir()
        for name, path in _write_recipes(folder, {"name": "hf", "model_name_or_path": ident}).items():
            command, where = WHERE[name]
            cases.append([command, str(path), "--output", str(tmp_path / "out")])
            expected.append(f"medfm: error: {name}.{where}: {message}")
    assert errors_without_torch(cases) == expected
    assert not (tmp_path / "out").exists()
    for ident, message in idents.items():  # the library's rule gives the same words
        with pytest.raises(TextEncoderError) as err:
            resolve_text_model(ident)
        assert str(err.value) == message


def test_the_runners_name_a_missing_text_model_folder_in_the_same_words(tmp_path):
    """The early line is the runners' own (after the imports): :func:`medfm.training.runs.build_recipe_text_encoder`
    for ``segment`` and ``vqa``, the ``clip`` objective's check (:func:`medfm.training.runs.check_recipe_args`)."""
    from medfm.training.recipes import PretrainRecipe
    from medfm.training.runs import build_recipe_text_encoder, check_recipe_args
    from medfm.training.text_segmentation import TextSegRecipe
    from medfm.training.vqa import load_vqa_recipe

    nope = tmp_path / "nope"
    paths = _write_recipes(tmp_path, {"name": "hf", "model_name_or_path": str(nope)})
    runs = {"seg.yaml": lambda p: build_recipe_text_encoder(from_dict(TextSegRecipe, load_yaml(p), where=p.name)),
            "vqa.yaml": lambda p: build_recipe_text_encoder(load_vqa_recipe(p)),
            "clip.yaml": lambda p: check_recipe_args(from_dict(PretrainRecipe, load_yaml(p), where=p.name))}
    early = errors_without_torch([[WHERE[name][0], str(path), "--output", str(tmp_path / "o")]
                                  for name, path in paths.items()])
    for (name, path), line in zip(paths.items(), early):
        with pytest.raises(ConfigError) as err:
            runs[name](path)
        assert f"medfm: error: {err.value}" == line == \
            f"medfm: error: {name}.{WHERE[name][1]}: no text model directory at '{nope}'"


@pytest.mark.parametrize("spec", [
    {"name": "hf", "model_name_or_path": "org/name"},  # may be a hub id: looked up (or fetched) by the run
    {"name": "hf", "model_name_or_path": "name"},
    "MODEL",  # an existing model folder
    {"name": "minilm"}, None,  # the default
    # a malformed spec: check_text_encoder_spec names it, after the imports
    {"name": "hf", "model_name_or_path": 5}, {"name": "hf", "model_name_or_path": " "}, {"name": "hf"}, "hf",
    {"name": "minlm", "model_name_or_path": "/nonexistent/model"},
])
def test_text_models_the_run_resolves_pass_the_early_check(tmp_path, monkeypatch, spec):
    import medfm.cli as cli

    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")  # only the marker is looked at
    if spec == "MODEL":
        spec = {"name": "hf", "model_name_or_path": str(model)}
    ran = []
    monkeypatch.setattr(cli, "_run", lambda args: ran.append(args.command) or 0)
    for name, path in _write_recipes(tmp_path, spec).items():
        assert cli.main([WHERE[name][0], str(path), "--output", str(tmp_path / "o")]) == 0, name
    assert ran == ["segment", "vqa", "pretrain"]


def test_recipes_that_load_no_text_model_are_not_checked(tmp_path, monkeypatch):
    """A ``text_encoder`` the runner does not read (a segmentation recipe without ``tasks:``, a pretrain
    objective other than ``clip``) is left to the recipe reader, which names the key."""
    import medfm.cli as cli

    missing = json.dumps({"name": "hf", "model_name_or_path": str(tmp_path / "nope")})
    (tmp_path / "seg.yaml").write_text((REPO_ROOT / "finetune" / "seg_unet_chase_db1.yaml").read_text()
                                       + f"text_encoder: {missing}\n")
    (tmp_path / "simclr.yaml").write_text("data: {dataset: pneumoniamnist}\nencoder: {name: resnet_test}\n"
                                          f"objective: {{name: simclr, args: {{text_encoder: {missing}}}}}\n")
    ran = []
    monkeypatch.setattr(cli, "_run", lambda args: ran.append(args.command) or 0)
    assert cli.main(["segment", str(tmp_path / "seg.yaml"), "--output", str(tmp_path / "o")]) == 0
    assert cli.main(["pretrain", str(tmp_path / "simclr.yaml"), "--output", str(tmp_path / "o")]) == 0
    assert ran == ["segment", "pretrain"]


def test_local_text_model_problem_is_the_rule_of_resolve_text_model(tmp_path, monkeypatch):
    """Judged from the path alone (``~`` expanded, blanks dropped); the names that may be hub ids pass."""
    monkeypatch.setenv("HOME", str(tmp_path))
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    (tmp_path / "empty").mkdir()
    assert local_text_model_problem(f" {model} ") is None
    assert resolve_text_model(f" {model} ") == model
    for ident in ("org/name", "name"):
        assert local_text_model_problem(ident) is None
    problems = {"": "no text model given: pass model_name_or_path (a local directory or a hub id)",
                "~/nope": f"no text model directory at '{tmp_path / 'nope'}'",
                "a/b/c": "no text model directory at 'a/b/c'",
                "~/empty": f"'{tmp_path / 'empty'}' is not a transformers model directory: config.json is missing"}
    for ident, message in problems.items():
        assert local_text_model_problem(ident) == message
        with pytest.raises(TextEncoderError) as err:
            resolve_text_model(ident)
        assert str(err.value) == message
