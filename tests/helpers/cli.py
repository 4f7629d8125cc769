"""Command-line test helpers shared by several test modules."""
from __future__ import annotations


def errors_without_torch(cases):
    """Run ``main(argv)`` for each of ``cases`` in a fresh interpreter; check that each exits 2 and
    torch was never imported, and return the stderr lines."""
    import subprocess
    import sys

    script = ("import sys\nfrom medfm.cli import main\n"
              f"for argv in {cases!r}:\n"
              "    print('exit', main(argv))\n"
              "print('torch loaded' if 'torch' in sys.modules else 'torch not loaded')\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert out.stdout.splitlines() == ["exit 2"] * len(cases) + ["torch not loaded"], out.stdout + out.stderr
    return out.stderr.splitlines()


def subcommand_parsers():
    """``{name: parser}`` of every ``medfm`` subcommand (argparse keeps them in its subparsers action)."""
    import argparse

    from medfm.cli_parser import build_parser

    action = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices


def help_text(command: str) -> str:
    """``medfm <command> --help``'s text, its lines joined by single spaces (argparse fills the description to the
    terminal's width, so a phrase can be asserted whatever the line breaks)."""
    return " ".join(subcommand_parsers()[command].format_help().split())
