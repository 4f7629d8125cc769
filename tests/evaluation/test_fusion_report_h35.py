"""The missing-modality protocols' report part has its own module, :mod:`medfm.evaluation.fusion_report`
(it was the last ~115 lines of a 572-line :mod:`medfm.evaluation.fusion`).

- Every report name stays importable from :mod:`medfm.evaluation.fusion` as the *same* object (a copy would be a
  second rule: a fix in one place would miss the other), and the segmentation protocol writes its report with the
  one shared writer and table.
- The report module imports neither matplotlib (drawn lazily, :mod:`medfm.evaluation.plots`) nor the protocol
  module (no import cycle: it is importable first, on its own).

Both tests fail on the code before the move (no ``medfm.evaluation.fusion_report``)."""
from __future__ import annotations

import subprocess
import sys

REPORT_NAMES = ("subset_table", "format_ci", "render_markdown", "plot_subset_metric", "plot_subsets",
                "write_fusion_report", "write_protocol_report", "PROTOCOL_REPORT_FILES")


def test_report_names_are_reexported_as_the_same_objects():
    import medfm.evaluation.fusion as fusion
    import medfm.evaluation.fusion_report as report
    import medfm.evaluation.fusion_seg as fusion_seg

    assert sorted(report.__all__) == sorted(REPORT_NAMES)
    for name in REPORT_NAMES:
        assert getattr(fusion, name) is getattr(report, name), name
        assert name in fusion.__all__, name
    assert report.write_protocol_report.__module__ == "medfm.evaluation.fusion_report"
    assert fusion_seg.write_protocol_report is report.write_protocol_report  # one writer for both protocols
    assert fusion_seg.subset_table is report.subset_table
    assert report.PROTOCOL_REPORT_FILES == ("report.md", "subsets.png")


def test_report_module_imports_alone_without_matplotlib_or_the_protocol():
    code = ("import sys; import medfm.evaluation.fusion_report as r; "
            "print(sorted(m for m in ('matplotlib', 'medfm.evaluation.fusion') if m in sys.modules)); "
            "print(r.subset_table([{'subset': 'a', 'model': 'm', 'auc': 0.5, 'n': 4, 'n_patients': 2}], 'auc'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["[]", "(['m'], [{'subset': 'a', 'm': 0.5, 'n': '4 (2 pat.)'}])"]
