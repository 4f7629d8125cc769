"""write_classification_report refuses extra_warnings that are no list of strings before computing or writing."""
import numpy as np
import pytest

from medfm.evaluation.report import write_classification_report

Y = np.array([0, 1, 0, 1])
S = np.array([[0.8, 0.2], [0.3, 0.7], [0.6, 0.4], [0.1, 0.9]], dtype=np.float32)


@pytest.mark.parametrize("bad", [None, {"a", "b"}, 5, ["ok", None]])
def test_extra_warnings_not_a_list_of_strings_is_refused_before_anything_is_written(tmp_path, bad):
    with pytest.raises(TypeError, match="extra_warnings must be a list of strings"):
        write_classification_report(tmp_path / "r", Y, S, "binary-class", None, {}, n_boot=10, extra_warnings=bad)
    assert not (tmp_path / "r").exists()


def test_extra_warnings_are_listed_after_the_metrics_warnings(tmp_path):
    """Guard: a list (or tuple) of strings is kept as given, in order."""
    res = write_classification_report(tmp_path / "r", Y, S, "binary-class", None, {}, n_boot=10,
                                      extra_warnings=("first", "second"))
    assert res["warnings"][-2:] == ["first", "second"]


def test_a_scored_split_refuses_a_string_of_warnings_and_leaves_no_output(tmp_path):
    """write_scored_split turned a string into a list of its letters before the report's check saw it."""
    from types import SimpleNamespace

    from medfm.evaluation.evaluate import write_scored_split

    ds = SimpleNamespace(labels=Y, task="binary-class", label_names=["a", "b"])
    with pytest.raises(TypeError, match="extra_warnings must be a list of strings"):
        write_scored_split(tmp_path / "out", ds, S, {}, extra_warnings="size differs")
    assert not (tmp_path / "out").exists()
