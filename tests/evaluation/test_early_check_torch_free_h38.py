"""``medfm eval --suite``'s early check of a suite's ``protocol.finetune`` settings is torch-free: the fine-tuning
recipe's section classes (:class:`~medfm.training.train_config.TrainConfig`,
:class:`~medfm.data.view_config.ViewConfig`, :class:`~medfm.lora_settings.LoraSettings`) live in torch-free modules,
re-exported from their old ones.

Was: :func:`medfm.suite_protocols.check_finetune_settings` imported :mod:`medfm.training.recipes`, which imported those
classes from ``medfm.training.loop``, ``medfm.data.views`` and ``medfm.adapters.lora`` (torch, timm, torchvision:
3-6 s), so a misspelt key was named only after them.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import medfm

TYPO = "t.yaml: protocol.finetune: unknown key 'lr'; it is a train setting: write train: {lr: ...}"


def _run_python(script: str) -> dict:
    """Run ``script`` in a fresh interpreter on the medfm tree under test; its last stdout line is JSON, returned
    with ``torch`` and ``timm``: whether each was imported by then."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(medfm.__file__).parents[1]),
                                                                      os.environ.get("PYTHONPATH")]))}
    tail = ("\nimport json, sys\nout['torch'], out['timm'] = 'torch' in sys.modules, 'timm' in sys.modules\n"
            "print(json.dumps(out))\n")
    done = subprocess.run([sys.executable, "-c", script + tail], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def _suite(folder: Path, name: str, finetune: str) -> Path:
    """A one-dataset suite file ``folder/name`` with the ``finetune`` protocol and the YAML ``finetune`` settings."""
    path = folder / name
    path.write_text("name: t\ndatasets:\n  - {flag: pneumoniamnist}\n"
                    f"protocol: {{name: finetune, finetune: {finetune}}}\n")
    return path


def test_eval_suite_checks_finetune_settings_without_torch(tmp_path):
    """A valid ``finetune:`` section passes the early check and a misspelt key is named in the same words, both
    with neither torch nor timm imported (the run itself is replaced by a no-op)."""
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "config.json").write_text("{}")
    good = _suite(tmp_path, "g.yaml", "{mode: lora, lora: {rank: 4}, augment: {hflip_p: 0.5}, train: {lr: 0.1}}")
    typo = _suite(tmp_path, "t.yaml", "{mode: full, lr: 0.1}")
    script = ("import contextlib, io\nimport medfm.cli as cli\ncli._run = lambda args: 0\nout = {}\n"
              f"for path in {[str(good), str(typo)]!r}:\n"
              "    err = io.StringIO()\n"
              "    with contextlib.redirect_stderr(err):\n"
              f"        code = cli.main(['eval', '--suite', path, {str(tmp_path / 'ckpt')!r}, '--output', "
              f"{str(tmp_path / 'e')!r}])\n"
              "    out[path] = [code, err.getvalue()]\n")
    out = _run_python(script)
    assert out[str(good)] == [0, ""]
    assert out[str(typo)] == [2, f"medfm: error: {TYPO}\n"]
    assert (out["torch"], out["timm"]) == (False, False)


def test_check_finetune_settings_and_the_recipe_classes_import_no_torch():
    """Each section the suite may set is checked (and a bad value refused) without torch; the packages the new
    modules are in stay torch-free (a guard: ``medfm.training`` and ``medfm.data`` were)."""
    script = ("import medfm.training, medfm.data, medfm.training.recipes\n"
              "from medfm.suite_protocols import check_finetune_settings\n"
              "check_finetune_settings({'mode': 'linear', 'dropout': 0.1, 'head_norm': True, 'augment': None,\n"
              "                         'train': {'batch_size': 8, 'seed': 1}})\n"
              "check_finetune_settings({'mode': 'lora', 'lora': {'rank': 4, 'target_modules': 'fc'},\n"
              "                         'augment': {'rotate_deg': 3.0}})\n"
              "out = {}\n"
              "try:\n"
              "    check_finetune_settings({'lora': {'rank': 0}})\n"
              "except ValueError as err:\n"
              "    out['error'] = str(err)\n")
    out = _run_python(script)
    assert out == {"error": "protocol.finetune: lora.rank must be an integer >= 1, got 0", "torch": False,
                   "timm": False}


def test_the_old_import_paths_give_the_same_classes():
    """``medfm.training.loop``, ``medfm.data.views`` and ``medfm.adapters.lora`` re-export the moved names."""
    from medfm.adapters import lora
    from medfm.data import view_config, views
    from medfm.lora_settings import LoraSettings
    from medfm.training import loop, train_config

    assert lora.LoraSettings is LoraSettings and views.ViewConfig is view_config.ViewConfig
    for name in ("TrainConfig", "check_seed", "MAX_SEED", "PRECISIONS"):
        assert getattr(loop, name) is getattr(train_config, name), name


def test_loop_all_lists_every_public_name_it_defines_or_re_exports():
    """A guard (passed when added): ``medfm.training.loop.__all__`` (added with the re-exports) names every public
    function, class and constant the module defines (its logger ``log`` aside) and the four re-exported names, so
    that ``from medfm.training.loop import *`` loses none of them."""
    import ast
    import inspect

    from medfm.training import loop

    defined = set()
    for node in ast.parse(inspect.getsource(loop)).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            defined.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            defined.update(t.id for t in targets if isinstance(t, ast.Name))
    public = {name for name in defined if not name.startswith("_")} - {"log"}
    public |= {"TrainConfig", "check_seed", "MAX_SEED", "PRECISIONS"}
    assert sorted(public - set(loop.__all__)) == [] and all(hasattr(loop, name) for name in loop.__all__)
