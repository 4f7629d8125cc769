"""Every medfm ``results.json`` starts with the same header, written by one function
(:func:`medfm.versions.result_header`): ``schema_version``, ``kind``, ``created`` and ``versions``; and the report
a person reads beside it shows that header's line (:func:`medfm.versions.provenance_text`).

Before, the segmentation runs' results had no ``schema_version`` or ``created``, the fusion runs' had neither nor a
``kind``, and neither run's Markdown report said when or with what it was computed.
"""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from medfm.versions import RESULT_HEADER_KEYS, provenance_text, result_header, versions
from tests.helpers.runner_cases import RUNNERS

FOUND = {"medfm": "0.1.0", "numpy": "2.4.6", "python": "3.11.7", "torch": "2.14.1", "scikit-learn": "1.9.1",
         "scipy": "1.17.1", "transformers": None}


def _check_header(res: dict, kind: str) -> None:
    """``res`` starts with the header of a ``kind`` result written just now."""
    assert tuple(res)[:4] == RESULT_HEADER_KEYS
    assert (res["schema_version"], res["kind"], res["versions"]) == (1, kind, versions())
    created = datetime.fromisoformat(res["created"])
    assert created.utcoffset() == timedelta(0) and created.microsecond == 0
    assert abs(datetime.now(timezone.utc) - created) < timedelta(minutes=10)


def test_result_header_gives_the_schema_the_kind_the_time_and_the_versions_in_that_order():
    header = result_header("segmentation")
    assert list(header) == ["schema_version", "kind", "created", "versions"]
    _check_header(header, "segmentation")
    assert result_header("evaluation-suite", 3)["schema_version"] == 3


@pytest.mark.parametrize("kind, schema, match", [("", 1, "kind must be a non-empty string"),
                                                 (None, 1, "kind must be a non-empty string"),
                                                 ("vqa", 0, "schema_version must be a positive int"),
                                                 ("vqa", True, "schema_version must be a positive int"),
                                                 ("vqa", 1.0, "schema_version must be a positive int")])
def test_result_header_refuses_a_bad_kind_or_schema_version(kind, schema, match):
    with pytest.raises(ValueError, match=match):
        result_header(kind, schema)


def test_provenance_text_says_what_a_result_records_and_only_that():
    assert (provenance_text({"created": "2026-11-23T10:00:00+00:00", "versions": FOUND})
            == "created 2026-11-23T10:00:00+00:00 with medfm 0.1.0, torch 2.14.1, scikit-learn 1.9.1, scipy 1.17.1")
    assert provenance_text({"created": "2026-11-23T10:00:00+00:00"}) == "created 2026-11-23T10:00:00+00:00"
    assert provenance_text({"versions": {"medfm": "0.1.0"}}) == "created: not recorded; medfm 0.1.0"
    assert provenance_text({}) == "created: not recorded"


# -- the runners whose results had no header -----------------------------------------------------------------
@pytest.mark.parametrize("name, kind, report", [("segment_2d_chase", "segmentation", "results.md"),
                                                ("segment_text", "text_segmentation", "results.md"),
                                                ("fuse_classification", "fusion", "report.md"),
                                                ("fuse_segmentation", "fusion_segmentation", "report.md")])
def test_a_run_s_results_start_with_the_header_and_its_report_shows_it(tmp_path, name, kind, report):
    write_data, run, *_ = RUNNERS[name]
    write_data(tmp_path / "data")
    run(tmp_path / "out", tmp_path / "data", False)
    res = json.loads((tmp_path / "out" / "results.json").read_text())
    _check_header(res, kind)
    assert (tmp_path / "out" / report).read_text().endswith(f"\n\n{provenance_text(res)}\n")


def test_a_vqa_run_s_report_shows_its_header(tmp_path):
    from medfm.training.vqa import run_vqa
    from tests.training.runs_helpers import vqa_recipe, write_vqa_data

    root, out = write_vqa_data(tmp_path / "d", 1), tmp_path / "run"
    run_vqa(vqa_recipe(tmp_path, epochs=1), out, data_root=root)
    res = json.loads((out / "results.json").read_text())
    _check_header(res, "vqa")
    assert (out / "report.md").read_text().endswith(f"\n\n{provenance_text(res)}\n")


def test_the_classification_report_starts_with_the_header(tmp_path):
    from medfm.evaluation.report import write_classification_report

    y = np.array([[0], [1], [0], [1]])
    scores = np.array([[0.8, 0.2], [0.3, 0.7], [0.4, 0.6], [0.1, 0.9]])
    write_classification_report(tmp_path / "e", y, scores, "binary-class", ["a", "b"], {"dataset": "x"}, n_boot=5)
    _check_header(json.loads((tmp_path / "e" / "results.json").read_text()), "classification")


@pytest.mark.parametrize("where", ["extra", "res"])
def test_a_fusion_report_refuses_results_that_set_a_header_key_before_writing(tmp_path, where):
    from medfm.evaluation.fusion_report import write_protocol_report

    res, extra = {"subsets": []}, {"task": "t"}
    (extra if where == "extra" else res)["created"] = "yesterday"
    with pytest.raises(ValueError, match=r"may not set \['created'\]: the report's header writes them"):
        write_protocol_report(res, tmp_path / "r", extra, lambda r: "text", None, kind="fusion")
    assert not (tmp_path / "r").exists()
