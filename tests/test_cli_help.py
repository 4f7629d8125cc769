"""``medfm --help`` and ``medfm <command> --help`` as a user reads them, and what the command line
answers fast: choices with "did you mean", ``verify-data`` without torch.
"""
import subprocess
import sys

import pytest

from medfm.cli import main
from tests.helpers.cli import help_text, subcommand_parsers


def test_every_command_has_a_description_an_example_and_help_for_every_argument():
    """``medfm <command> --help`` used to show only the usage and bare option names (``--output OUTPUT``,
    ``--steps STEPS``): no word on what the command does or writes, nor an example."""
    commands = subcommand_parsers()
    assert {"pretrain", "finetune", "eval", "merge", "card", "push", "verify-data", "bench"} <= set(commands)
    for name, sp in commands.items():
        text = sp.format_help()  # a bare '%' in a help string would raise here
        assert sp.description and len(sp.description) > 80, name
        assert f"\n  medfm {name} " in text or text.rstrip().endswith(f"medfm {name}"), (name, text)
        undocumented = [a.dest for a in sp._actions if not a.help]
        assert not undocumented, (name, undocumented)


def test_top_level_help_lists_every_command_with_a_one_line_summary(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    out = capsys.readouterr().out
    assert exit_.value.code == 0
    for name in subcommand_parsers():
        assert f"\n    {name} " in out or f"\n    {name}\n" in out, name
    assert "examples:" in out and "medfm pretrain " in out


@pytest.mark.parametrize("argv, hint", [
    (["eval", "x", "--data", "pneumoniamnist", "--protocol", "linaer"], "did you mean 'linear'?"),
    (["eval", "x", "--data", "pneumoniamnist", "--split", "vall"], "did you mean 'val'?"),
    (["bench", "--precision", "fp16"], "did you mean 'bf16' or 'fp32'?"),
])
def test_a_mistyped_choice_gets_did_you_mean(capsys, argv, hint):
    """argparse listed the choices but did not point at the close one (design: bad option strings
    are answered with "did you mean")."""
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and err[-1].startswith("medfm ") and hint in err[-1], err


def test_verify_data_checks_medmnist_without_importing_torch(tmp_path):
    """``medfm verify-data`` spent ~3 s of CPU importing torch, pandas and scikit-learn (via
    ``medfm.data.medmnist`` and the ``medmnist`` package's ``__init__``) to compare md5s; nothing of
    the medmnist package is imported (nor registered) by it."""
    folder = tmp_path / "medmnist"
    folder.mkdir()
    (folder / "breastmnist.npz").write_bytes(b"not the released file")
    (folder / "mine.npz").write_bytes(b"")
    script = (
        "import sys\nfrom medfm.cli import main\n"
        f"code = main(['verify-data', '--data-root', {str(tmp_path)!r}])\n"
        "print('exit', code, sorted(m for m in ('torch', 'sklearn', 'pandas', 'medmnist', 'medmnist.info') "
        "if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    lines = out.stdout.splitlines()
    assert lines[-1] == "exit 1 []", out.stdout + out.stderr
    assert lines[0].startswith("medmnist: 0 ok, 1 changed, 1 unknown (e.g. breastmnist.npz)"), lines


def test_verify_data_with_nothing_to_check_says_so_on_stderr(tmp_path, capsys):
    """An empty data root printed its message to stdout, like a result line."""
    assert main(["verify-data", "--data-root", str(tmp_path)]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1
    assert captured.err.startswith(f"medfm: error: no data set folder with a SHA256SUMS, nor medmnist/, under {tmp_path}")


def test_pretrain_help_names_the_cache_folders_its_runs_write_outside_output(tmp_path, monkeypatch):
    """The corpus and the text-embedding cache live outside --output, under $XDG_CACHE_HOME/medfm: the help says
    where and names the folders the code uses."""
    from medfm.data.corpus import corpus_path
    from medfm.text.cache import EmbeddingCache

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    cache = tmp_path / "xdg" / "medfm"
    used = {corpus_path(28, data_root=tmp_path / "data").parent, EmbeddingCache("key").folder.parent}
    assert {folder.parent for folder in used} == {cache}
    text = help_text("pretrain")
    assert "Outside --output, in $XDG_CACHE_HOME/medfm (default ~/.cache/medfm)" in text
    for folder in used:
        assert f"in its {folder.name} folder" in text
