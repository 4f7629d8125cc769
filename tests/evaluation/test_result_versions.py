"""A result records the versions of what computed it: medfm, numpy, Python, torch and the distributions whose
numerics set a probe's or a text encoder's output (scikit-learn, scipy, transformers), as installed."""
import json
import subprocess
import sys
from importlib import metadata

import numpy as np

import medfm.versions as medfm_versions
from medfm.evaluation.report import NUMERIC_DISTRIBUTIONS, versions, versions_text, write_classification_report


def test_versions_gives_each_numeric_distribution_as_installed_and_none_for_a_missing_one(monkeypatch):
    found = versions()
    assert set(NUMERIC_DISTRIBUTIONS) == {"torch", "scikit-learn", "scipy", "transformers"}
    for name in NUMERIC_DISTRIBUTIONS:
        assert found[name] == metadata.version(name)
    assert found["numpy"] == np.__version__ and found["medfm"]
    monkeypatch.setattr(medfm_versions, "NUMERIC_DISTRIBUTIONS", ("scipy", "no-such-distribution-medfm"))
    assert versions()["no-such-distribution-medfm"] is None and versions()["scipy"] == metadata.version("scipy")


def test_versions_imports_none_of_the_distributions_it_names():
    code = ("import sys; from medfm.evaluation.report import versions; before = set(sys.modules); versions(); "
            "print(sorted(m for m in set(sys.modules) - before if m.split('.')[0] in "
            "('torch', 'sklearn', 'scipy', 'transformers')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_versions_text_keeps_medfm_and_the_numeric_distributions_in_order_and_skips_the_unknown():
    found = {"python": "3.11.7", "numpy": "2.4.6", "transformers": "5.23.0", "medfm": "0.1.0", "torch": "2.14.1",
             "scipy": None, "scikit-learn": "1.9.1"}
    assert versions_text(found) == "medfm 0.1.0, torch 2.14.1, scikit-learn 1.9.1, transformers 5.23.0"
    assert versions_text({"medfm": "0", "torch": "0"}) == "medfm 0, torch 0"  # an older result's two


def test_results_json_and_report_md_carry_the_versions(tmp_path):
    y = np.array([[0], [1], [0], [1]])
    s = np.array([[0.8, 0.2], [0.3, 0.7], [0.6, 0.4], [0.1, 0.9]], np.float32)
    res = write_classification_report(tmp_path / "e", y, s, "binary-class", ["a", "b"], {}, n_boot=10)
    assert json.loads((tmp_path / "e" / "results.json").read_text())["versions"] == res["versions"] == versions()
    md = (tmp_path / "e" / "report.md").read_text()
    assert f"| versions | {versions_text(versions())} |" in md
    assert f"scikit-learn {metadata.version('scikit-learn')}" in md


def test_the_suite_report_names_the_versions_of_its_results():
    from medfm.evaluation.suite_report import render_suite_markdown

    found = {"medfm": "0.1.0", "numpy": "2", "python": "3", "torch": "2.14.1", "scikit-learn": "1.9.1",
             "scipy": "1.17.1", "transformers": "5.23.0"}
    res = {"suite": {"name": "s", "protocol": {"name": "as-is"}}, "checkpoints": ["c"], "versions": found,
           "created": "now", "wall_s": 1.0, "cpu_s": 1.0,
           "host": {"cpus": 1, "torch_threads": 1, "load_avg_start": None}, "datasets": []}
    assert ("- created now with medfm 0.1.0, torch 2.14.1, scikit-learn 1.9.1, scipy 1.17.1, transformers 5.23.0"
            in render_suite_markdown(res).splitlines())
