"""User mistakes at the ``medfm`` command line and in recipes: one line ``medfm: error: ...``, exit 2.

No training runs here: every case fails while the recipe or the arguments are checked.
"""
import json
import textwrap

import pytest

from medfm.cli import main
from tests.conftest import REPO_ROOT, cli_error
from tests.helpers.cli import errors_without_torch
from medfm.config import ConfigError, check_call_args, from_dict, load_yaml
from medfm.training.recipes import FinetuneRecipe, PretrainRecipe

PRETRAIN = textwrap.dedent("""
    data: {dataset: pneumoniamnist, size: 28}
    encoder: {name: resnet_test}
    objective: {name: simclr, args: {hidden_dim: 32, proj_dim: 16}}
    train: {epochs: 1, batch_size: 16, lr: 1.0e-3, precision: fp32}
""")


@pytest.mark.parametrize("old, new, message", [
    ("epochs: 1", "epochs: one", "train.epochs must be an integer, got 'one' (str)"),
    ("size: 28", "size: big", "data.size must be an integer, got 'big' (str)"),
    ("fp32}", "fp32, seed: true}", "train.seed must be an integer, got True (bool)"),
    ("data: {dataset: pneumoniamnist, size: 28}", "data: 5",
     "pt.yaml.data must be a mapping of its settings, got 5"),
    ("size: 28}", "size: 28, verify_md5: nope}", "data.verify_md5 must be true or false, got 'nope'"),
    ("hidden_dim: 32", "hiden_dim: 32", "objective.args: unknown argument 'hiden_dim'; did you mean 'hidden_dim'?"),
    ("hidden_dim: 32", "hidden_dim: big", "objective.args.hidden_dim must be an integer, got 'big'"),
    ("hidden_dim: 32", "encoder: 3", "objective.args: 'encoder' is set by medfm"),
    ("{name: resnet_test}", "{name: resnet_test, args: {drop_rat: 0.1}}", "unexpected keyword argument 'drop_rat'"),
])
def test_recipe_type_and_argument_errors_are_one_line(tmp_path, capsys, pneumonia_env, old, new, message):
    assert old in PRETRAIN
    (tmp_path / "pt.yaml").write_text(PRETRAIN.replace(old, new))
    code, err = cli_error(capsys, ["pretrain", str(tmp_path / "pt.yaml"), "--output", str(tmp_path / "out")])
    assert code == 2 and err.startswith("medfm: error: ") and message in err, err
    if "drop_rat" not in new:  # caught while loading the recipe: nothing written yet
        assert not (tmp_path / "out").exists()


def test_yaml_exponent_floats_and_empty_sections(tmp_path):
    # PyYAML (YAML 1.1) reads `1e-3` as the string '1e-3'; recipes read it as YAML 1.2 does
    (tmp_path / "r.yaml").write_text("train: {lr: 1e-3, weight_decay: 5E-2, epochs: 2}\nencoder:\n")
    data = load_yaml(tmp_path / "r.yaml")
    assert data["train"] == {"lr": 0.001, "weight_decay": 0.05, "epochs": 2}
    recipe = from_dict(PretrainRecipe, data)
    assert recipe.train.lr == 0.001 and recipe.encoder.name == "resnet18"  # empty section: defaults
    (tmp_path / "s.yaml").write_text("name: 1e3x\nversion: '1e-3'\n")
    assert load_yaml(tmp_path / "s.yaml") == {"name": "1e3x", "version": "1e-3"}  # strings stay strings


def test_from_dict_checks_nested_types():
    rec = from_dict(FinetuneRecipe, {"lora": {"rank": 4, "alpha": 8}, "dropout": 0, "augment": None,
                                     "train": {"lr": 1, "grad_clip": None}})
    assert rec.dropout == 0 and rec.augment is None and rec.train.lr == 1
    with pytest.raises(ConfigError, match=r"r\.lora\.rank must be an integer, got 'four' \(str\)"):
        from_dict(FinetuneRecipe, {"lora": {"rank": "four"}}, where="r")
    with pytest.raises(ConfigError, match=r"r\.train\.grad_clip must be a number, got \[1\]$"):
        from_dict(FinetuneRecipe, {"train": {"grad_clip": [1]}}, where="r")
    with pytest.raises(ConfigError,
                       match=r"r\.augment must be a mapping of its settings, got 'light' \(str\)$"):
        from_dict(FinetuneRecipe, {"augment": "light"}, where="r")


def test_check_call_args_ignores_var_kwargs_but_checks_known_parameters():
    def builder(encoder, depth: int = 2, **kw):
        return depth

    check_call_args(builder, {"depth": 3, "anything": "x"}, "w", provided=("encoder",))
    with pytest.raises(ConfigError, match=r"w\.depth must be an integer"):
        check_call_args(builder, {"depth": "3"}, "w", provided=("encoder",))


def test_merge_refuses_to_replace_a_non_empty_directory(tmp_path, capsys):
    keep = tmp_path / "project"
    keep.mkdir()
    (keep / "notes.txt").write_text("precious")
    code, err = cli_error(capsys, ["merge", str(tmp_path / "adapter"), str(keep)])
    assert code == 2 and "already exists and is not empty" in err
    assert (keep / "notes.txt").read_text() == "precious"


def test_unwritable_output_and_bad_numbers_do_not_trace(tmp_path, capsys, pneumonia_env):
    (tmp_path / "pt.yaml").write_text(PRETRAIN)
    blocker = tmp_path / "file"
    blocker.write_text("")
    code, err = cli_error(capsys, ["pretrain", str(tmp_path / "pt.yaml"), "--output", str(blocker / "out")])
    assert code == 2 and err.startswith("medfm: error: ") and "is a file, not a folder" in err
    with pytest.raises(SystemExit) as exc:
        main(["bench", "--encoder", "resnet_test", "--steps", "0"])
    assert exc.value.code == 2 and "--steps: must be >= 1, got 0" in capsys.readouterr().err


def test_card_rejects_results_that_are_not_an_object(tmp_path, capsys):
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "config.json").write_text(json.dumps({"kind": "adapter", "name": "classification", "encoder": {}}))
    (tmp_path / "results.json").write_text("[0.9, 0.8]")
    code, err = cli_error(capsys, ["card", str(ckpt), "--results", str(tmp_path / "results.json")])
    assert code == 2 and "must hold a JSON object" in err and not (ckpt / "README.md").exists()


def test_help_and_usage_errors_answer_without_loading_torch():
    """`medfm --help` and a usage error used to import torch, timm and medmnist first (about
    6 s on this machine); the parser now runs before any heavy import."""
    import subprocess
    import sys

    script = ("import sys\nfrom medfm.cli import main\n"
              "for argv in (['--help'], ['pretrain']):\n"
              "    try:\n        main(argv)\n    except SystemExit as e:\n        print('exit', e.code)\n"
              "print('torch loaded' if 'torch' in sys.modules else 'torch not loaded')\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert out.stdout.splitlines()[-3:] == ["exit 0", "exit 2", "torch not loaded"], out.stdout + out.stderr
    import medfm

    assert medfm.create_encoder("resnet_test", in_chans=1, img_size=28).num_features > 0  # lazy attribute still works


def test_mistyped_recipe_and_suite_paths_are_named_without_loading_torch(tmp_path):
    """A missing or folder recipe (or suite) used to be named only after the imports (4-7 s here:
    ``medfm.data``'s package import alone pulled in torch and medmnist for the CLI's error classes)."""
    nope = str(tmp_path / "nope.yaml")
    cases = [["pretrain", nope, "--output", str(tmp_path / "o")], ["eval", "--suite", nope, str(tmp_path)],
             ["segment", str(tmp_path), "--output", str(tmp_path / "o")]]
    assert errors_without_torch(cases) == [f"medfm: error: recipe not found: {nope}",
                                            f"medfm: error: suite not found: {nope}",
                                            f"medfm: error: {tmp_path} is a directory; pass a recipe file (.yaml) inside it"]
    assert not (tmp_path / "o").exists()


def test_a_suite_file_is_called_a_suite_not_a_recipe(tmp_path, capsys):
    """``medfm eval --suite`` said "a recipe must be a YAML mapping" (and "recipe not found") of a suite file."""
    from medfm.evaluation.suite_spec import load_suite

    (tmp_path / "list.yaml").write_text("- pneumoniamnist\n")
    (tmp_path / "bin.yaml").write_bytes(b"\xff\xfe\x00")
    folder, nope = tmp_path / "suites", tmp_path / "nope.yaml"
    folder.mkdir()
    expected = {tmp_path / "list.yaml": f"{tmp_path / 'list.yaml'}: a suite must be a YAML mapping",
                tmp_path / "bin.yaml": "; a suite is YAML text",
                folder: f"{folder} is a directory; pass a suite file (.yaml) inside it",
                nope: f"suite not found: {nope}"}
    for path, message in expected.items():
        code, err = cli_error(capsys, ["eval", "--suite", path, tmp_path])
        assert code == 2 and err.startswith("medfm: error: ") and err.endswith(message), err
        with pytest.raises(ConfigError) as info:
            load_suite(path)
        assert str(info.value).endswith(message) and "recipe" not in str(info.value)
    with pytest.raises(ConfigError, match=r": a recipe must be a YAML mapping$"):  # a recipe is still a recipe
        load_yaml(tmp_path / "list.yaml")


def test_card_refuses_a_suite_summary_and_names_a_run_results_file(tmp_path, capsys):
    """A suite's top-level results.json has no ACC/AUC of its own: `medfm card` used to exit 0 and
    write a card saying "the results file holds no ACC/AUC/balanced ACC/ECE values"."""
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "config.json").write_text(json.dumps({"kind": "adapter", "name": "classification", "encoder": {}}))
    run_dir = tmp_path / "suite" / "pneumoniamnist" / "linear-f1"
    run_dir.mkdir(parents=True)
    (run_dir / "results.json").write_text("{}")
    (tmp_path / "suite" / "results.json").write_text(json.dumps({
        "kind": "evaluation-suite", "datasets": [{"name": "bloodmnist", "status": "skipped"},
                                                 {"name": "pneumoniamnist", "status": "ok", "runs": [{"run": "linear-f1"}]}]}))
    code, err = cli_error(capsys, ["card", str(ckpt), "--results", str(tmp_path / "suite" / "results.json")])
    assert code == 2 and "evaluation suite's summary" in err and str(run_dir / "results.json") in err
    assert not (ckpt / "README.md").exists()
    as_is = tmp_path / "suite" / "pneumoniamnist" / "results.json"  # protocol as-is: no run folder
    as_is.write_text("{}")
    code, err = cli_error(capsys, ["card", str(ckpt), "--results", str(tmp_path / "suite" / "results.json")])
    assert code == 2 and f"pass {str(as_is)!r}" in err


@pytest.mark.parametrize("with_state", [False, True])
def test_ctrl_c_is_one_line_and_cleans_up_like_an_error(tmp_path, capsys, monkeypatch, with_state):
    """Ctrl-C printed a full traceback from wherever the run was; now one line and exit code 130."""
    import medfm.cli as cli
    from medfm.training.state import STATE_JSON

    out = tmp_path / "run"

    def interrupted(args):
        out.mkdir()
        (out / "config.yaml").write_text("x: 1\n")
        if with_state:  # a run that saved a training state keeps it for --resume
            (out / "checkpoint").mkdir()
            (out / "checkpoint" / STATE_JSON).write_text("{}")
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_run", interrupted)
    monkeypatch.setattr(cli, "_check_paths", lambda args: None)
    assert main(["finetune", str(tmp_path / "r.yaml"), "--output", str(out)]) == 130
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("medfm: interrupted") and "Traceback" not in err
    assert out.exists() == with_state and ("--resume" in err) == with_state


def test_sigterm_unwinds_like_ctrl_c_and_leaves_no_temporary_folder(tmp_path):
    """``timeout``/``kill`` (SIGTERM) ended the process at once: an atomic write's ``.<name>.tmp-*``
    folder and a new run folder were left behind. Now SIGTERM unwinds as Ctrl-C does, exit 143."""
    import subprocess
    import sys
    import textwrap

    out = tmp_path / "run"
    script = textwrap.dedent(f"""
        import os, signal, sys
        import medfm.cli as cli
        from medfm.io import atomic_dir

        def run(args):
            os.makedirs({str(out)!r})
            with atomic_dir({str(out / "model")!r}) as tmp:
                (tmp / "config.json").write_text("{{}}")
                os.kill(os.getpid(), signal.SIGTERM)
            raise AssertionError("the write finished after SIGTERM")

        cli._run = run
        cli._check_paths = lambda args: None
        code = cli.main(["finetune", "r.yaml", "--output", {str(out)!r}])
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is only there during main
        sys.exit(code)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 143, proc.stderr
    assert proc.stderr.strip() == "medfm: terminated"
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_missing_checkpoint_paths_are_named_without_loading_torch(tmp_path):
    """``medfm eval /nonexist --data pneumoniamnist`` took ~4.4 s of imports (torch, the library)
    to say the checkpoint is missing; merge and card said "... config.json is missing" after them."""
    nope = str(tmp_path / "nope")
    suite = str(REPO_ROOT / "eval_suites" / "medmnist_c.yaml")
    cases = [["eval", nope, "--data", "pneumoniamnist"], ["eval", nope, "--suite", suite, "--output", str(tmp_path / "e")],
             ["merge", nope, str(tmp_path / "merged")],
             ["card", nope, "--results", str(tmp_path / "r.json")], ["push", nope, "me/model"]]
    message = f"medfm: error: no checkpoint directory at {nope!r} (hub ids need the prefix 'hf-hub:')"
    assert errors_without_torch(cases) == [message] * len(cases)


_PROBE_C_IGNORED = "--probe-c: only the linear protocol fits a probe, this run's is {}; add --protocol linear"
_FRACTIONS_IGNORED = ("--label-fraction: the as-is protocol scores each checkpoint as it is, fitting on no labels; "
                      "add --protocol linear, knn or finetune")


def test_protocol_options_a_suite_run_ignores_are_named_without_loading_torch(tmp_path):
    """``medfm eval --suite medmnist_2d.yaml --probe-c 0.1`` (an as-is suite) took 5-8 s of imports to refuse
    the flag: the table of which protocol uses which option was only in ``medfm.evaluation.suite_spec``,
    whose package imports torch. It is :mod:`medfm.suite_protocols` now, read before the imports too,
    in the words of :func:`medfm.evaluation.suite_spec.suite_overrides`."""
    from medfm.evaluation.suite_spec import load_suite, suite_overrides

    suites, out = REPO_ROOT / "eval_suites", str(tmp_path / "e")
    bare = tmp_path / "bare.yaml"  # no protocol section: as-is
    bare.write_text("name: bare\ndatasets: [{flag: pneumoniamnist}]\n")
    cases = [(suites / "medmnist_2d.yaml", ["--probe-c", "0.1"], _PROBE_C_IGNORED.format("as-is")),
             (bare, ["--label-fraction", "0.1"], _FRACTIONS_IGNORED),
             (suites / "local.yaml", ["--probe-c", "val"], _PROBE_C_IGNORED.format("knn")),  # protocol: {name: knn}
             (suites / "medmnist_3d.yaml", ["--protocol", "as-is", "--label-fraction", "0.1"], _FRACTIONS_IGNORED)]
    assert errors_without_torch([["eval", "--suite", str(s), *flags, "--output", out] for s, flags, _ in cases]) == [
        f"medfm: error: {m}" for _, _, m in cases]
    assert not (tmp_path / "e").exists()
    for suite, flags, message in cases:  # the run's own check says the same
        given = dict(zip(flags[::2], flags[1::2]))
        with pytest.raises(ConfigError) as err:
            suite_overrides(load_suite(suite), protocol=given.get("--protocol"),
                            label_fractions=given.get("--label-fraction"), probe_c=given.get("--probe-c"))
        assert str(err.value) == message


def test_protocol_options_the_run_uses_pass_the_early_check(tmp_path, monkeypatch, capsys):
    """The early check refuses only what the run would ignore: ``--protocol linear`` over an as-is suite takes
    ``--probe-c``; a suite whose protocol is misspelt (or not a mapping) is refused before the run, in the
    suite reader's words."""
    import medfm.cli as cli

    ran = []
    monkeypatch.setattr(cli, "_run", lambda args: ran.append(args.probe_c or args.label_fraction) or 0)
    suites, out = REPO_ROOT / "eval_suites", str(tmp_path / "e")
    typo, knn = tmp_path / "typo.yaml", tmp_path / "knn.yaml"
    typo.write_text("name: t\ndatasets: [{flag: pneumoniamnist}]\nprotocol: {name: linaer}\n")
    knn.write_text("name: k\ndatasets: [{flag: pneumoniamnist}]\nprotocol: knn\n")
    for suite, flags in [(suites / "medmnist_2d.yaml", ["--protocol", "linear", "--probe-c", "0.1"]),
                         (suites / "local.yaml", ["--label-fraction", "0.2"])]:
        assert main(["eval", "--suite", str(suite), *flags, "--output", out]) == 0
    assert ran == ["0.1", "0.2"]
    for suite, named in [(typo, "'linaer'"), (knn, "protocol")]:
        assert main(["eval", "--suite", str(suite), "--probe-c", "0.3", "--output", out]) == 2
        err = capsys.readouterr().err
        assert named in err and suite.name in err, err
    assert ran == ["0.1", "0.2"]


def test_card_of_a_hub_id_and_merge_of_a_plain_folder_are_named(tmp_path, capsys, pneumonia_env):
    """``medfm card hf-hub:org/model`` said "'hf-hub:org/model' is not a medfm checkpoint: config.json is
    missing" (after 2 s of imports); card rewrites a local folder's README.md, and now says so."""
    (tmp_path / "r.json").write_text("{}")  # a missing --results is named first (test below)
    code, err = cli_error(capsys, ["card", "hf-hub:org/model", "--results", tmp_path / "r.json"])
    assert code == 2 and err == ("medfm: error: 'hf-hub:org/model' is a hub id, not a local checkpoint folder: download "
                                 "it with `hf download org/model --local-dir DIR` and pass DIR"), err
    code, err = cli_error(capsys, ["merge", tmp_path, tmp_path / "merged"])  # a folder, not an adapter
    assert code == 2 and f"{str(tmp_path)!r} is not a LoRA adapter: adapter_config.json is missing" in err


def test_hub_ids_and_timm_pass_the_early_check_where_they_are_fetched(tmp_path, monkeypatch, capsys):
    """``eval``, ``push``, ``--init`` and ``merge --base`` fetch a ``hf-hub:`` id when they run, and
    ``--init timm`` is timm's own weights: the early folder check lets them through."""
    import medfm.cli as cli

    ran = []
    monkeypatch.setattr(cli, "_run", lambda args: ran.append(args.command) or 0)
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    for name in ("config.json", "adapter_config.json"):  # a LoRA adapter folder (contents unread)
        (adapter / name).write_text("{}")
    recipe = tmp_path / "ft.yaml"
    recipe.write_text("encoder: {name: resnet_test}\n")
    hub, out = "hf-hub:org/model", str(tmp_path / "out")
    cases = [["eval", hub, "--data", "pneumoniamnist"], ["push", hub, "me/model"],
             ["finetune", str(recipe), "--init", hub, "--output", out],
             ["finetune", str(recipe), "--init", "timm", "--output", out],
             ["segment", str(REPO_ROOT / "finetune" / "seg_unet_chase_db1.yaml"), "--init", hub, "--output", out],
             ["vqa", str(REPO_ROOT / "finetune" / "vqa_resnet18_clip.yaml"), "--init", hub, "--output", out],
             ["merge", str(adapter), str(tmp_path / "merged"), "--base", hub]]
    for argv in cases:
        assert main(argv) == 0, capsys.readouterr().err
    assert ran == [argv[0] for argv in cases]


def test_folders_that_hold_no_checkpoint_are_named_without_loading_torch(tmp_path):
    """An empty folder or a run folder given as a checkpoint was named by the library after the
    imports (2-6 s; ``vqa --init``: 25 s, after decoding the VQA-RAD images; ``merge --base``: wrapped
    in "its base checkpoint could not be loaded"); a LoRA adapter given as ``--init`` or ``--base``
    failed after them with "checkpoint weights missing: <adapter>/model.safetensors"; ``merge`` of a hub
    id said "adapter_config.json is missing". Every command with a checkpoint argument is covered."""
    from medfm import cli_checks

    empty, run = tmp_path / "empty", tmp_path / "run"
    empty.mkdir()
    for folder, files in ((run / "model", ("config.json", "model.safetensors")),
                          (run / "adapter", ("config.json", "adapter_config.json", "adapter_model.safetensors"))):
        folder.mkdir(parents=True)
        for name in files:  # what a training run writes (contents unread by the check)
            (folder / name).write_text("{}")
    adapter, model = str(run / "adapter"), str(run / "model")
    out, results = str(tmp_path / "out"), str(tmp_path / "r.json")
    recipe = tmp_path / "ft.yaml"
    recipe.write_text("encoder: {name: resnet_test}\n")
    seg, vqa = (str(REPO_ROOT / "finetune" / name) for name in ("seg_unet_chase_db1.yaml", "vqa_resnet18_clip.yaml"))

    def commands(ckpt):
        return [["eval", ckpt, "--data", "pneumoniamnist"], ["card", ckpt, "--results", results],
                ["push", ckpt, "me/model"],
                ["merge", ckpt, out], ["merge", adapter, out, "--base", ckpt],
                ["finetune", str(recipe), "--init", ckpt, "--output", out],
                ["segment", seg, "--init", ckpt, "--output", out], ["vqa", vqa, "--init", ckpt, "--output", out]]

    assert {argv[0] for argv in commands("x")} == set(cli_checks.CHECKPOINT_ARGS)
    no_config = f"{str(empty)!r} is not a medfm checkpoint: config.json is missing"
    in_run = f"{str(run)!r} is not a medfm checkpoint: config.json is missing; it holds "
    both = f"checkpoints in subfolders: pass {adapter!r} or {model!r}"  # eval, card, push take an adapter
    only_model = f"a checkpoint in a subfolder: pass {model!r}"  # --init and --base do not
    lora = (f"{adapter!r} is a LoRA adapter, not a full checkpoint (no model.safetensors): merge it into its base first "
            f"with `medfm merge {adapter} OUT` and pass OUT")
    hub = "hf-hub:org/adapter@v1"
    expected = (
        [no_config] * 3 + [f"{str(empty)!r} is not a LoRA adapter: adapter_config.json is missing", f"--base: {no_config}"]
        + [f"--init: {no_config}"] * 3
        + [in_run + both] * 3 + [f"{str(run)!r} is not a LoRA adapter: adapter_config.json is missing; it holds a LoRA "
                                 f"adapter in a subfolder: pass {adapter!r}", f"--base: {in_run}{only_model}"]
        + [f"--init: {in_run}{only_model}"] * 3
        + [f"--base: {lora}"] + [f"--init: {lora}"] * 3
        + [f"{hub!r} is a hub id, not a local LoRA adapter folder: download it with `hf download org/adapter "
           "--revision v1 --local-dir DIR` and pass DIR"])
    cases = commands(str(empty)) + commands(str(run)) + [c for c in commands(adapter) if "--base" in c or "--init" in c]
    assert errors_without_torch(cases + [["merge", hub, out]]) == [f"medfm: error: {m}" for m in expected]
    assert not (tmp_path / "out").exists()


def test_a_file_given_as_a_checkpoint_is_named_without_loading_torch(tmp_path):
    """A file where a checkpoint folder goes was named after 2-10 s of imports, and by ``merge`` and
    ``card`` as "'<file>' is not a medfm checkpoint: config.json is missing"; ``merge``'s adapter is
    now named with the adapter's files. Every entry point gives the library's message
    (:func:`medfm.checkpoint_ids.checkpoint_path_problem`)."""
    ckpt, lora = tmp_path / "ckpt", tmp_path / "adapter"
    for folder, files in ((ckpt, ("config.json", "model.safetensors")),
                          (lora, ("config.json", "adapter_config.json", "adapter_model.safetensors"))):
        folder.mkdir()
        for name in files:  # a checkpoint and a LoRA adapter folder (contents unread by the check)
            (folder / name).write_bytes(b"")
    weights = ckpt / "model.safetensors"
    recipe = tmp_path / "ft.yaml"
    recipe.write_text("encoder: {name: resnet_test}\n")  # read (as YAML) only
    out = str(tmp_path / "out")
    w, aw = str(weights), str(lora / "adapter_model.safetensors")
    cases = [["eval", w, "--data", "pneumoniamnist"],
             ["eval", w, "--suite", str(REPO_ROOT / "eval_suites" / "medmnist_c.yaml"), "--output", out],
             ["finetune", str(recipe), "--init", w, "--output", out],
             ["segment", str(REPO_ROOT / "finetune" / "seg_unet_chase_db1.yaml"), "--init", w, "--output", out],
             ["vqa", str(REPO_ROOT / "finetune" / "vqa_resnet18_clip.yaml"), "--init", w, "--output", out],
             ["card", w, "--results", str(tmp_path / "r.json")], ["push", w, "me/model"],
             ["merge", str(lora), out, "--base", w], ["merge", aw, out]]
    message = f"{w!r} is a file; a checkpoint is the directory that holds config.json and model.safetensors: pass {str(ckpt)!r}"
    adapter = (f"{aw!r} is a file; a LoRA adapter is the directory that holds adapter_config.json and "
               f"adapter_model.safetensors: pass {str(lora)!r}")
    assert errors_without_torch(cases) == (
        [f"medfm: error: {message}"] * 2 + [f"medfm: error: --init: {message}"] * 3 + [f"medfm: error: {message}"] * 2
        + [f"medfm: error: --base: {message}", f"medfm: error: {adapter}"])
    assert not (tmp_path / "out").exists()


def test_missing_init_base_results_and_unknown_flags_are_named_without_loading_torch(tmp_path):
    """``--init`` (finetune, segment, vqa) and ``merge --base`` were checked after 4-6 s of imports,
    ``card --results`` after 2 s, and ``eval --data <typo>`` after loading the checkpoint (20 s here)."""
    recipe = tmp_path / "ft.yaml"
    recipe.write_text("encoder: {name: resnet_test}\n")  # read (as YAML) only: every case fails before the run
    (tmp_path / "adapter").mkdir()
    for name in ("config.json", "adapter_config.json"):  # a LoRA adapter folder (contents unread by the check)
        (tmp_path / "adapter" / name).write_text("{}")
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "results.json").write_text("{}")
    nope = str(tmp_path / "nope")
    out = str(tmp_path / "out")
    cases = [["finetune", str(recipe), "--init", nope, "--output", out],
             ["segment", str(REPO_ROOT / "finetune" / "seg_unet_chase_db1.yaml"), "--init", nope, "--output", out],
             ["vqa", str(REPO_ROOT / "finetune" / "vqa_resnet18_clip.yaml"), "--init", nope, "--output", out],
             ["merge", str(tmp_path / "adapter"), out, "--base", nope],
             ["card", str(tmp_path / "adapter"), "--results", nope],
             ["card", str(tmp_path / "adapter"), "--results", str(tmp_path)],
             ["card", str(tmp_path / "adapter"), "--results", str(tmp_path / "eval")],
             ["eval", str(tmp_path / "adapter"), "--data", "pneumonimnist"],
             ["finetune", str(recipe), "--dataset", "breastmnst", "--output", out]]
    missing = f"no checkpoint directory at {nope!r} (hub ids need the prefix 'hf-hub:')"
    assert errors_without_torch(cases) == [f"medfm: error: --init: {missing}"] * 3 + [
        f"medfm: error: --base: {missing}",
        f"medfm: error: --results {nope} does not exist; pass the results.json that medfm eval (or the training run) wrote",
        f"medfm: error: --results {tmp_path} is a directory; pass the results.json that medfm eval (or the training "
        "run) wrote (a file)",
        f"medfm: error: --results {tmp_path / 'eval'} is a directory; pass {tmp_path / 'eval' / 'results.json'}",
        "medfm: error: --data: unknown MedMNIST data set 'pneumonimnist'; did you mean 'pneumoniamnist' or 'dermamnist'?",
        "medfm: error: --dataset: unknown MedMNIST data set 'breastmnst'; did you mean 'breastmnist' or 'chestmnist' or "
        "'retinamnist'?"]
    assert not (tmp_path / "out").exists()


def test_a_recipe_data_set_typo_is_named_without_loading_torch(tmp_path):
    """``data.dataset: pneumoniamnst`` was named by DataConfig after 4 s of imports; the early check
    gives the same line (file, key, close matches). ``finetune --dataset`` replaces the recipe's, so
    then only the option is checked; the corpus stays a valid pretraining name (only)."""
    typo = tmp_path / "typo.yaml"
    typo.write_text("data: {dataset: pneumoniamnst}\n")
    out = str(tmp_path / "out")
    line = ("medfm: error: typo.yaml: data.dataset: unknown MedMNIST data set{} 'pneumoniamnst'; "
            "did you mean 'pneumoniamnist' or 'dermamnist'?")
    assert errors_without_torch([["pretrain", str(typo), "--output", out],
                                  ["finetune", str(typo), "--init", "timm", "--output", out],
                                  ["finetune", str(typo), "--dataset", "breastmnst", "--output", out]]) == [
        line.format(" or corpus"), line.format(""), "medfm: error: --dataset: unknown MedMNIST data set 'breastmnst'; did you mean 'breastmnist' or "
        "'chestmnist' or 'retinamnist'?"]
    assert not (tmp_path / "out").exists()


def test_the_early_data_set_check_passes_what_the_recipe_check_accepts(tmp_path, monkeypatch):
    """The corpus (pretraining), a good flag, a recipe without ``data.dataset`` and a finetune
    ``--dataset`` override over a misspelt recipe value all pass the early check."""
    import medfm.cli as cli

    seen = []
    monkeypatch.setattr(cli, "_run", lambda args: seen.append(args.command) or 0)
    for i, (text, extra) in enumerate([("data: {dataset: corpus}", []), ("data: {dataset: breastmnist}", []),
                                       ("train: {epochs: 1}", []), ("data: {dataset: pneumoniamnst}", ["--dataset", "breastmnist"])]):
        recipe = tmp_path / f"r{i}.yaml"
        recipe.write_text(text + "\n")
        command = "finetune" if extra else "pretrain"
        assert cli.main([command, str(recipe), "--output", str(tmp_path / f"out{i}"), *extra]) == 0
    assert seen == ["pretrain"] * 3 + ["finetune"]


def test_init_values_that_are_no_local_path_pass_the_early_check(tmp_path, monkeypatch):
    """``--init timm`` (timm's weights) and ``hf-hub:`` ids are resolved by the run, not refused as paths."""
    import medfm.cli as cli

    recipe = tmp_path / "ft.yaml"
    recipe.write_text("encoder: {name: resnet_test}\n")  # only read as YAML: the run is replaced below
    ran = []
    monkeypatch.setattr(cli, "_run", lambda args: ran.append(args.init) or 0)
    for init in ("timm", "hf-hub:org/model"):
        assert main(["finetune", str(recipe), "--init", init, "--output", str(tmp_path / "o")]) == 0
    assert ran == ["timm", "hf-hub:org/model"]


def _starting_checkpoint_recipes(tmp_path, ident):
    """Recipes of each runner that names a starting checkpoint, all set to ``ident``: file name -> (command, YAML)."""
    enc = f"{{name: resnet_test, pretrained: {ident}}}"
    late = "{fuser: late_fusion_zero_fill"
    fuse = "data: {dataset: lgg_flair}\nmodalities: [pre, flair, post, clinical]\nimage_encoder: %s\nmodels: {late: %s}\n"
    return {"pt.yaml": ("pretrain", f"data: {{dataset: pneumoniamnist}}\nencoder: {enc}\n"),
            "ft.yaml": ("finetune", f"encoder: {enc}\n"),
            "seg.yaml": ("segment", (REPO_ROOT / "finetune" / "seg_unet_chase_db1.yaml").read_text()
                         .replace("encoder:\n", f"encoder:\n  pretrained: {ident}\n")),
            "vqa.yaml": ("vqa", f"requires_init: true\nencoder: {enc}\n"),
            "fuse.yaml": ("fuse", fuse % (f"{{name: resnet_test, args: {{pretrained: {ident}}}}}", late + "}")),
            "fuse_model.yaml": ("fuse", fuse % ("{name: resnet_test}", late + ", args: {image_encoder: "
                                                f"{{name: resnet_test, args: {{pretrained: {ident}}}}}}}}}"))}


def test_a_recipe_starting_checkpoint_is_named_without_loading_torch(tmp_path):
    """A recipe's ``encoder.pretrained`` (fuse: ``image_encoder.args.pretrained``, a model's own) that is
    missing, a file, a folder without config.json or a LoRA adapter was named by the runner after 4-6 s
    of imports; the early check gives the runner's line (file name, recipe location) before them."""
    nope = tmp_path / "nope"
    recipes = _starting_checkpoint_recipes(tmp_path, nope)
    out = str(tmp_path / "out")
    cases = []
    for name, (command, text) in recipes.items():
        (tmp_path / name).write_text(text)
        cases.append([command, str(tmp_path / name), "--output", out])
    (tmp_path / "adapter").mkdir()
    for marker in ("config.json", "adapter_config.json"):
        (tmp_path / "adapter" / marker).write_text("{}")
    (tmp_path / "empty").mkdir()
    (tmp_path / "weights.bin").write_text("")
    for i, bad in enumerate(("adapter", "empty", "weights.bin")):
        (tmp_path / f"ft{i}.yaml").write_text(f"encoder: {{name: resnet_test, pretrained: {tmp_path / bad}}}\n")
        cases.append(["finetune", str(tmp_path / f"ft{i}.yaml"), "--output", out])
    missing = f"no checkpoint directory at '{nope}' (hub ids need the prefix 'hf-hub:')"
    where = ["pt.yaml.encoder.pretrained", "ft.yaml.encoder.pretrained", "seg.yaml.encoder.pretrained",
             "vqa.yaml.encoder.pretrained", "fuse.yaml.image_encoder", "fuse_model.yaml.models.late"]
    adapter = tmp_path / "adapter"
    assert errors_without_torch(cases) == [f"medfm: error: {w}: {missing}" for w in where] + [
        f"medfm: error: ft0.yaml.encoder.pretrained: '{adapter}' is a LoRA adapter, not a full checkpoint (no "
        f"model.safetensors): merge it into its base first with `medfm merge {adapter} OUT` and pass OUT",
        f"medfm: error: ft1.yaml.encoder.pretrained: '{tmp_path / 'empty'}' is not a medfm checkpoint: config.json "
        "is missing",
        f"medfm: error: ft2.yaml.encoder.pretrained: '{tmp_path / 'weights.bin'}' is a file; a checkpoint is the "
        "directory that holds config.json and model.safetensors"]
    assert not (tmp_path / "out").exists()
    # the runners' own checks (after the imports) give the same lines
    import medfm.training.runs as runs
    from medfm.training.fusion import FusionRecipe, check_image_encoder

    with pytest.raises(ValueError) as err:
        runs.check_init_checkpoint(None, from_dict(FinetuneRecipe, load_yaml(tmp_path / "ft0.yaml"), where="ft0.yaml").encoder)
    assert f"medfm: error: {err.value}" == errors_without_torch([cases[6]])[0]
    with pytest.raises(ConfigError) as err:
        check_image_encoder(from_dict(FusionRecipe, load_yaml(tmp_path / "fuse.yaml"), where="fuse.yaml"))
    assert str(err.value) == f"fuse.yaml.image_encoder: {missing}"


def test_recipe_starting_checkpoints_the_run_resolves_pass_the_early_check(tmp_path, monkeypatch):
    """``timm``, ``hf-hub:`` ids and a full checkpoint folder pass, as does a stale ``encoder.pretrained``
    that ``--init`` replaces and a ``channelvit`` model's ``image_encoder`` (that fuser takes none)."""
    import medfm.cli as cli

    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    for marker in ("config.json", "model.safetensors"):  # only the markers are looked at
        (ckpt / marker).write_text("{}")
    ran = []
    monkeypatch.setattr(cli, "_run", lambda args: ran.append(args.command) or 0)
    for i, ident in enumerate(("timm", "hf-hub:org/model", ckpt)):
        for name, (command, text) in _starting_checkpoint_recipes(tmp_path, ident).items():
            (tmp_path / name).write_text(text)
            assert cli.main([command, str(tmp_path / name), "--output", str(tmp_path / f"o{i}")]) == 0, (ident, name)
    (tmp_path / "stale.yaml").write_text(f"encoder: {{name: resnet_test, pretrained: {tmp_path / 'nope'}}}\n")
    assert cli.main(["finetune", str(tmp_path / "stale.yaml"), "--init", str(ckpt), "--output", str(tmp_path / "o")]) == 0
    (tmp_path / "cv.yaml").write_text("modalities: [pre]\nmodels:\n  cv: {fuser: channelvit, args: {image_encoder: "
                                      f"{{name: resnet_test, args: {{pretrained: {tmp_path / 'nope'}}}}}}}}}\n")
    assert cli.main(["fuse", str(tmp_path / "cv.yaml"), "--output", str(tmp_path / "o")]) == 0
    assert len(ran) == 3 * 6 + 2
