"""Review mends of medfm/evaluation: one rule for class / label names (metrics and figures), one early check of a
scoring command's flag, split, size and batch size (medfm eval --data and zero-shot)."""
import numpy as np
import pytest

from medfm.data.errors import UnknownDatasetError, UnknownSplitError, UnsupportedSizeError
from medfm.evaluation.metrics import classification_metrics, label_name_list
from medfm.evaluation.plots import plot_confusion_matrix, plot_roc

Y = np.array([0, 1, 2, 1])
P = np.eye(3)[Y]


# -- the figures name their classes by the metrics' rule ------------------------------------------------------
@pytest.mark.parametrize("names, message", [
    ("abc", r"^label_names must be a list of 3 names, one per class, got 'abc' \(str\)$"),
    (["a"], r"^got 1 label_names for 3 classes$"),
    (["a", None, "c"], r"^label_names must be a list of 3 names, one per class, got \['a', None, 'c'\]$"),
])
def test_metrics_roc_and_confusion_matrix_refuse_the_same_label_names_alike(tmp_path, names, message):
    # old: plot_roc said "got a string label_names ...", the confusion matrix "got 3 label names for a 3-class
    # confusion matrix" for the string "abc" (3 names for 3 classes), and both drew None as the name "None"
    calls = (lambda: classification_metrics(Y, P, "multi-class", label_names=names),
             lambda: plot_roc(Y, P, "multi-class", names, tmp_path / "roc.png"),
             lambda: plot_confusion_matrix(np.eye(3, dtype=int), names, tmp_path / "cm.png"))
    for call in calls:
        with pytest.raises(ValueError, match=message):
            call()
    assert not list(tmp_path.iterdir())


def test_label_name_list_defaults_and_takes_integers():
    assert label_name_list(None, 3) == ["0", "1", "2"]
    assert label_name_list((0, 1), 2, "labels") == ["0", "1"]
    with pytest.raises(ValueError, match="^got 1 label_names for 2 labels$"):
        label_name_list(["a"], 2, "labels")


# -- one early check of a scoring command's flag --------------------------------------------------------------
def test_check_scoring_request_checks_batch_size_flag_split_and_size():
    from medfm.evaluation.evaluate import check_scoring_request

    batch_size, info = check_scoring_request("pneumoniamnist", "test", None, np.int64(8))
    assert batch_size == 8 and type(batch_size) is int and info["num_classes"] == 2
    with pytest.raises(ValueError, match="^batch_size must be an integer >= 1, got 0$"):
        check_scoring_request("pneumoniamnist", "test", None, 0)
    with pytest.raises(UnknownDatasetError):
        check_scoring_request("pneumoniamnst", "test", None, 8)
    with pytest.raises(UnknownSplitError, match="test"):
        check_scoring_request("pneumoniamnist", "tset", None, 8)
    with pytest.raises(UnsupportedSizeError, match="100"):
        check_scoring_request("pneumoniamnist", "test", 100, 8)


@pytest.mark.parametrize("entry", ["evaluate_checkpoint", "zeroshot_eval"])
def test_both_scoring_commands_use_the_one_early_check(tmp_path, monkeypatch, entry):
    import medfm.evaluation.evaluate as evaluate
    import medfm.evaluation.zeroshot as zeroshot

    seen = []

    def spy(*args):
        seen.append(args)
        raise RuntimeError("checked")

    monkeypatch.setattr(evaluate, "check_scoring_request", spy)
    call = getattr(evaluate if entry == "evaluate_checkpoint" else zeroshot, entry)
    with pytest.raises(RuntimeError, match="^checked$"):  # before the (missing) checkpoint is resolved
        call(str(tmp_path / "no-checkpoint"), "pneumoniamnist", "val", size=64, output=tmp_path / "out")
    assert seen == [("pneumoniamnist", "val", 64, 256)]
