"""One rule, one wording: a recipe value's type (file or Python), ``medfm push``'s file selection (made once),
"a list, not one string" through :func:`medfm.arg_checks.check_list` in the VQA scorer, CAM methods and the
label names of the classification and Dice metrics."""
from pathlib import Path

import numpy as np
import pytest

from medfm.config import ConfigError, from_dict
from medfm.training.recipes import EncoderConfig, FinetuneDataConfig, FinetuneRecipe


@pytest.mark.parametrize("recipe, python, message", [
    ({"data": {"verify_md5": "no"}}, lambda: FinetuneDataConfig(verify_md5="no"),
     "data.verify_md5 must be true or false, got 'no' (str)"),
    ({"encoder": {"name": 18}}, lambda: EncoderConfig(name=18), "encoder.name must be a string, got 18"),
    ({"encoder": {"args": [1]}}, lambda: EncoderConfig(args=[1]), "encoder.args must be a mapping, got [1]"),
    ({"encoder": "resnet18"}, lambda: FinetuneRecipe(encoder="resnet18"),  # (a file: no Python class name)
     ("encoder must be a mapping of its settings, got 'resnet18' (str)",
      "encoder must be an EncoderConfig or a mapping of its settings, got 'resnet18' (str)")),
    ({"head_norm": 1}, lambda: FinetuneRecipe(head_norm=1), "head_norm must be true or false, got 1"),
])
def test_a_recipe_value_of_the_wrong_type_gets_one_message_from_a_file_and_from_python(recipe, python, message):
    """The recipe reader said ``r.yaml.data.verify_md5: expected true or false, got 'no' (str)``, a recipe made in
    Python ``data.verify_md5 must be true or false, got 'no' (str)``: now both say the second, the file its name."""
    with pytest.raises(ConfigError) as file_err:
        from_dict(FinetuneRecipe, recipe, where="r.yaml")
    with pytest.raises(ConfigError) as python_err:  # (a ValueError, as before)
        python()
    file_message, python_message = message if isinstance(message, tuple) else (message, message)
    assert str(file_err.value) == f"r.yaml.{file_message}"
    assert str(python_err.value) == python_message


def test_a_long_value_is_cut_and_a_numpy_bool_is_a_bool():
    with pytest.raises(ConfigError, match=r"^r\.yaml\.encoder\.name must be a string, got \[0, 1, .*\.\.\.$"):
        from_dict(FinetuneRecipe, {"encoder": {"name": list(range(40))}}, where="r.yaml")
    assert FinetuneRecipe(head_norm=np.bool_(True)).head_norm is True  # (check_bool's rule in both paths)


class _Api:
    """A hub client that writes an evaluation result into the folder while it uploads (an eval still running)."""

    uploaded = None

    def __init__(self, token=None):
        pass

    def create_repo(self, repo_id, private=None, exist_ok=False):
        return f"https://huggingface.co/{repo_id}"

    def upload_folder(self, folder_path, repo_id, allow_patterns=None, ignore_patterns=None):
        type(self).uploaded = list(allow_patterns)
        (Path(folder_path) / "eval-x").mkdir(exist_ok=True)
        (Path(folder_path) / "eval-x" / "results.json").write_text("{}")


def test_push_prints_the_selection_it_uploaded(tmp_path, monkeypatch, capsys):
    """The command selected the files again after the upload, to print them: a file written meanwhile was
    listed as uploaded although it was not."""
    import huggingface_hub

    from medfm.cli import main
    from medfm.hub import save_pretrained
    from medfm.hub_push import push_checkpoint
    from tests.conftest import pneumonia_classifier

    monkeypatch.setattr(huggingface_hub, "HfApi", _Api)
    ckpt = save_pretrained(pneumonia_classifier(), tmp_path / "ckpt")
    main(["push", str(ckpt), "me/model", "--include", "eval-*/results.json"])
    out = capsys.readouterr().out
    assert _Api.uploaded == ["README.md", "config.json", "model.safetensors"]
    assert "uploaded 3 files: README.md, config.json, model.safetensors\n" in out, out
    result = push_checkpoint(ckpt, "me/model")  # eval-x/results.json is there now, and kept local
    assert result.url == "https://huggingface.co/me/model" and result.left_out == ["eval-x/results.json"]


@pytest.mark.parametrize("call, message", [
    (lambda V: V.exact_match("yes", ["yes"]), "predictions must be a list (one entry per question), got 'yes' (str)"),
    (lambda V: V.exact_match({"yes": 1}, ["yes"]),  # its keys were scored
     "predictions must be a list (one entry per question), got {'yes': 1} (dict)"),
    (lambda V: V.accuracy_by_group({True, False}, ["a", "b"]),  # numpy's IndexError
     "correct must be a list (one entry per question), got {False, True} (set)"),
])
def test_vqa_scoring_lists_go_through_check_list(call, message):
    from medfm.evaluation import vqa as V

    with pytest.raises(ValueError) as err:
        call(V)
    assert str(err.value) == message
    assert V.accuracy_by_group(np.array([True, False]), (g for g in "ab")) == [  # arrays and generators read once
        {"group": "a", "n": 1, "acc": 1.0}, {"group": "b", "n": 1, "acc": 0.0}]


def test_cam_methods_go_through_check_list():
    from medfm.evaluation.cam import check_methods

    with pytest.raises(ValueError) as err:
        check_methods("gradcam")
    assert str(err.value) == "methods must be a list of CAM method names, got 'gradcam' (str); write ['gradcam']"
    with pytest.raises(ValueError, match=r"^methods must be a list of CAM method names, got \{'gradcam'\} \(set\)$"):
        check_methods({"gradcam"})
    assert check_methods(("eigencam",)) == ["eigencam"]


def test_label_names_of_the_metrics_are_a_list_not_a_string():
    """``"bv"`` was read as the classes ``b`` and ``v`` (Dice of class 1 reported as ``v``); ``"ab"`` as two
    class names of a binary task."""
    from medfm.evaluation.metrics import classification_metrics
    from medfm.evaluation.segmentation import case_metrics

    labels = np.array([[0, 1], [1, 0]])
    with pytest.raises(ValueError, match=r"^label_names must be a list of class names, got 'bv' \(str\)$"):
        case_metrics(labels, labels, "bv", distances=False)
    assert case_metrics(labels, labels, ["bg", 1], distances=False) == {"1": {"dice": 1.0}}  # YAML numbers
    y, s = np.array([0, 1, 1, 0]), np.array([[.9, .1], [.2, .8], [.3, .7], [.6, .4]])
    with pytest.raises(ValueError, match=r"^label_names must be a list of 2 names, one per class, got 'ab' \(str\)$"):
        classification_metrics(y, s, "binary-class", label_names="ab")
    assert classification_metrics(y, s, "binary-class", label_names=("a", "b"))["support"] == {"a": 2, "b": 2}
