"""What an AUC ranked (``auc_ranking`` of every ``results.json``: the model's ``logits``, or a kNN's vote shares as
``probabilities``) is shown where a reader compares AUCs: the suite's ``report.md`` (summary table, the comparison
with published figures) and the model card's metrics table.

Was: only the per-run ``results.json`` / ``report.md`` said it; the suite summary put a kNN run's AUC (ties among
vote shares) next to a linear probe's (logits) without a word, and so did a card.
"""
import hashlib
import json

import pytest
import yaml

from medfm.cards import build_card
from medfm.data.medmnist_info import INFO
from medfm.evaluation.suite_report import render_suite_markdown
from medfm.evaluation.suites import load_suite, run_suite
from medfm.hub import load_config, save_pretrained
from tests.conftest import fake_medmnist_arrays, pneumonia_classifier, write_medmnist_npz


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """``({protocol: (suite results, suite output folder)}, checkpoint)`` for a linear and a kNN run on a fake
    PneumoniaMNIST (INFO's md5 pointed at it while they run, as the ``write_medmnist`` fixture does)."""
    tmp = tmp_path_factory.mktemp("auc_ranking")
    path = write_medmnist_npz(tmp, "pneumoniamnist", arrays=fake_medmnist_arrays("pneumoniamnist", counts=(16, 4, 20)))
    ckpt = str(save_pretrained(pneumonia_classifier(), tmp / "c"))
    out = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(INFO["pneumoniamnist"], "MD5", hashlib.md5(path.read_bytes()).hexdigest())
        for protocol in ("linear", "knn"):
            suite = tmp / f"{protocol}.yaml"
            suite.write_text(yaml.safe_dump({"name": "t", "datasets": [{"flag": "pneumoniamnist"}],
                                             "protocol": {"name": protocol}, "metrics": {"n_boot": 20},
                                             "cam": {"enabled": False}}))
            res = run_suite(load_suite(suite), [ckpt], tmp / protocol, data_root=str(tmp), progress=False)
            out[protocol] = (res, tmp / protocol)
    return out, ckpt


def _summary_column(report, header):
    """The ``header`` column of the report's summary table, one value per run."""
    table = report.split("## Summary\n", 1)[1].strip().split("\n\n", 1)[0].splitlines()
    names = [c.strip() for c in table[0].strip("|").split("|")]
    return [[c.strip() for c in row.strip("|").split("|")][names.index(header)] for row in table[2:]]


@pytest.mark.parametrize("protocol, ranking", [("linear", "logits"), ("knn", "probabilities")])
def test_the_suite_report_says_what_each_auc_ranked(runs, protocol, ranking):
    (res, out), _ = runs[0][protocol], runs[1]
    run = res["datasets"][0]["runs"][0]
    assert run["auc_ranking"] == ranking
    assert json.loads((out / run["dir"] / "results.json").read_text())["auc_ranking"] == ranking
    report = (out / "report.md").read_text()
    assert _summary_column(report, "AUC ranks") == [ranking]
    assert f"\n- AUC ranks (`auc_ranking`): `{ranking}`, " in report.split("## Summary", 1)[0]
    assert f"28 px; AUC ranks the {ranking}" in report  # the "this checkpoint" row next to MedMNIST v2's AUC


def test_an_older_suite_result_without_it_is_rendered_as_before(runs):
    """Results of an older medfm (no ``auc_ranking``): an empty cell, no legend, no note (a guard)."""
    res = json.loads(json.dumps(runs[0]["linear"][0]))
    for d in res["datasets"]:
        for r in d["runs"]:
            del r["auc_ranking"]
    report = render_suite_markdown(res)
    assert _summary_column(report, "AUC ranks") == [""]
    assert "- AUC ranks" not in report and "AUC ranks the" not in report


@pytest.mark.parametrize("protocol, ranking", [("linear", "logits"), ("knn", "probabilities")])
def test_the_model_card_says_what_its_auc_ranked(runs, protocol, ranking):
    (res, out), ckpt = runs[0][protocol], runs[1]
    results = json.loads((out / res["datasets"][0]["runs"][0]["dir"] / "results.json").read_text())
    card = build_card(load_config(ckpt), results)
    row = next(line for line in card.splitlines() if line.startswith("| AUC"))
    assert row.startswith(f"| AUC (ranks the {ranking}) | {results['metrics']['auc']:.4f} | [")
    del results["auc_ranking"]  # an older results.json: the plain label (a guard)
    assert any(line.startswith("| AUC | ") for line in build_card(load_config(ckpt), results).splitlines())
