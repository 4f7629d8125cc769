"""Python API audit of medfm.evaluation's non-metric modules: bad input gives a one-line error naming the
problem (not a torch / sklearn / numpy trace, not a silently wrong result), reports are written whole.

Each test failed on the code before the audit (the comment says what happened then)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from medfm.evaluation import fusion as FU
from medfm.evaluation.metrics import classification_metrics
from tests.helpers.margin_model import MarginModel, margin_batch

MULTI_LABEL = "multi-label, binary-class"


# -- fusion: AUC ranks full probability rows, as classification_metrics does --------------------------
def test_fusion_auc_breaks_float32_saturation_ties_like_classification_metrics():
    # every p1 is exactly 1.0 in float32; the logits rank the positives above the negatives
    margins, labels = [18.0, 19.0, 20.0, 21.0, 22.0, 23.0, 24.0, 25.0], [0, 0, 0, 0, 1, 1, 1, 1]
    batch = margin_batch(margins, labels)
    rows, _ = FU.predict_rows(MarginModel(), batch)
    assert rows.shape == (8, 2) and (rows[:, 1] == 1.0).all()
    want = classification_metrics(np.array(labels), rows, "binary-class")
    assert want["auc"] == 1.0
    res = FU.run_fusion_protocol({"single_flair": MarginModel()}, batch, ["flair"], mcar_rates=(),
                                 mnar_modalities=["flair"], n_boot=20)
    natural = res["natural"][0]
    assert natural["auc"] == want["auc"]  # was 0.5: p1 alone ties every slice
    assert natural["auc_ci95"] == [1.0, 1.0]  # the bootstrap ranks the same keys (was [0.5, 0.5])
    assert natural["acc"] == want["acc"] == 0.5  # ACC still thresholds p1 > 0.5
    assert FU.predict_probs(MarginModel(), batch).shape == (8,)  # the (N,) column is still there


def test_score_row_acc_keeps_the_strict_threshold_and_ranks_rows():
    rows = np.array([[0.5, 0.5], [0.2, 0.8], [0.9, 0.1], [0.4, 0.6]], dtype=np.float32)
    labels = np.array([1, 1, 0, 0])
    row = FU.score_row(labels, rows, ["a", "b", "c", "d"], n_boot=0, seed=0)
    want = classification_metrics(labels, rows, "binary-class")
    assert row["acc"] == want["acc"] == 0.5 and row["auc"] == pytest.approx(want["auc"])


@pytest.mark.parametrize("call, match", [
    # a shorter patient list left samples out of every bootstrap resample without a word
    (lambda: FU.patient_bootstrap_auc(np.array([0, 1, 0, 1, 1, 0]), np.array([.1, .9, .2, .8, .1, .9]), list("aabb"),
                                      n_boot=50), "6 samples but 4 patient ids"),
    (lambda: FU.score_row(np.array([0, 1, 0, 1]), np.array([.1, .9, .2, .8]), ["a"], n_boot=10, seed=0),
     "4 samples but 1 patient ids"),
    # probabilities above 1 were scored
    (lambda: FU.score_row(np.array([0, 1]), np.array([.1, 1.9]), ["a", "b"], n_boot=0, seed=0), "probabilities in"),
    (lambda: FU.patient_bootstrap_auc(np.array([0, 1]), np.array([.1, .9]), list("ab"), n_boot=5, alpha=5), "alpha"),
    (lambda: FU.mcar_drop({"a": torch.ones(2)}, .5, torch.Generator()), "bool tensor"),
    (lambda: FU.mnar_drop(torch.tensor([0, 1, 1]), {"a": torch.ones(2, dtype=torch.bool)}, ["a"], .5, .5, False,
                          torch.Generator()), "3 labels for presence masks of 2"),
])
def test_fusion_helpers_refuse_inconsistent_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.parametrize("kwargs, match", [
    (dict(modalities=["fliar"]), "no modality 'fliar'; did you mean 'flair'"),  # was: AUC NaN on 0 samples
    (dict(modalities="flair"), "must be a list of modality names"),  # was: no subset at all
    (dict(mnar_modalities=["flar"]), "no modality 'flar'; did you mean 'flair'"),  # was: nothing removed
    (dict(mcar_rates=0.5), "mcar_rates must be a list"),  # was: 'float' object is not iterable
    (dict(mcar_rates=["0.5"]), "MCAR rate must be a finite number"),  # was: int('0.50.50.5...')
    (dict(n_boot=-5), "n_boot must be an integer >= 0"),  # was: intervals NaN
    (dict(batch_size_=0), "batch_size_ must be an integer >= 1"),  # was: range() arg 3 must not be zero
])
def test_fusion_protocol_checks_its_settings_before_any_model_runs(kwargs, match):
    batch = margin_batch([-1.0, 1.0, -2.0, 2.0], [0, 1, 0, 1])
    args = dict(modalities=["flair"], mcar_rates=(), mnar_modalities=["flair"], n_boot=0)
    with pytest.raises(ValueError, match=match):
        FU.run_fusion_protocol({"single_flair": MarginModel()}, batch, **{**args, **kwargs})


def test_fusion_protocol_names_a_missing_label_key():
    batch = margin_batch([-1.0, 1.0], [0, 1])
    del batch["label"]
    with pytest.raises(ValueError, match="no 'label' key"):  # was KeyError: 'label'
        FU.run_fusion_protocol({"single_flair": MarginModel()}, batch, ["flair"], mcar_rates=(),
                               mnar_modalities=["flair"], n_boot=0)


def test_fusion_report_writes_results_json_last_and_refuses_a_file_as_output(tmp_path, monkeypatch):
    batch = margin_batch([-1.0, 1.0, -2.0, 2.0], [0, 1, 0, 1])
    res = FU.run_fusion_protocol({"single_flair": MarginModel()}, batch, ["flair"], mcar_rates=(),
                                 mnar_modalities=["flair"], n_boot=0)

    def broken(*args, **kwargs):
        raise RuntimeError("plot failed")

    monkeypatch.setattr("medfm.evaluation.fusion_report.plot_subsets", broken)  # its home (FU re-exports it)
    with pytest.raises(RuntimeError, match="plot failed"):
        FU.write_fusion_report(res, tmp_path / "out")
    assert not (tmp_path / "out" / "results.json").exists()  # was written first: a report without its figure
    monkeypatch.undo()
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError, match="is a file, not a folder; choose another output folder"):  # [Errno 17]
        FU.write_fusion_report(res, tmp_path / "file")
    with pytest.raises(TypeError, match="extra must be a mapping"):
        FU.write_fusion_report(res, tmp_path / "out2", extra=["x"])
    paths = FU.write_fusion_report(res, tmp_path / "ok")
    assert set(paths) == {"results", "report", "plot"}


def test_patient_dice_checks_patients_and_label_names():
    from medfm.evaluation.fusion_seg import patient_dice

    ref = np.zeros((4, 8, 8), np.uint8)
    ref[:, 2:5, 2:5] = 1
    with pytest.raises(ValueError, match="4 slices but 2 patient ids"):  # was numpy's boolean-index IndexError
        patient_dice(ref, ref, ["a", "b"], ["bg", "fg"])
    with pytest.raises(ValueError, match="background and at least one foreground"):  # was IndexError
        patient_dice(ref, ref, list("aabb"), ["bg"])


# -- segmentation summary: left-out cases are counted --------------------------------------------------
def test_summarize_cases_reports_how_many_cases_each_mean_leaves_out():
    from medfm.evaluation.segmentation import summarize_cases

    per_case = {"a": {"fg": {"dice": 0.0, "hd95": float("nan")}},
                "b": {"fg": {"dice": 1.0, "hd95": 0.0}},
                "c": {"fg": {"dice": 0.5, "hd95": 4.0}, "rare": {"dice": 0.5, "hd95": float("inf")}}}
    out = summarize_cases(per_case)
    assert out["left_out"] == {"fg": {"hd95": 1}, "rare": {"hd95": 1}}
    assert out["per_class"]["fg"]["hd95"]["mean"] == 2.0
    assert summarize_cases({"a": {"fg": {"dice": 1.0}}})["left_out"] == {}
    assert "``left_out`` counts" in " ".join(summarize_cases.__doc__.split())
    with pytest.raises(TypeError, match=r"per_case\['a'\] must be \{class"):  # was AttributeError on float
        summarize_cases({"a": 0.5})
    with pytest.raises(TypeError, match="must be a number"):
        summarize_cases({"a": {"fg": {"dice": "x"}}})


# -- protocols: kNN and the linear probe ----------------------------------------------------------------
_F = np.random.default_rng(0).normal(size=(20, 4)).astype(np.float32)
_Y = np.arange(20) % 2
_NAN = np.where(np.eye(20, 4) > 0, np.nan, _F)


@pytest.mark.parametrize("call, overrides, match", [
    ("knn", dict(train_features=_F[:, 0]), r"train features must be \(N, D\)"),  # torch: Dimension out of range
    ("knn", dict(train_features=_NAN), "train features contain 4 NaN"),  # NaN scores
    ("knn", dict(task="multiclass"), "unknown task 'multiclass'"),  # taken as single-label
    ("knn", dict(train_labels=_Y + 0.5, num_classes=3), "with fractions"),  # 0.5 read as class 0
    ("knn", dict(num_classes=2.5), "num_classes must be an integer"),  # one_hot() TypeError
    ("knn", dict(chunk=0), "chunk must be an integer >= 1"),  # range() arg 3 must not be zero
    ("knn", dict(task=MULTI_LABEL, train_labels=np.stack([_Y * 2, _Y], 1)), "0/1"),  # label 2 voted twice
    ("probe", dict(features=_NAN), "train features contain 4 NaN"),  # multi-line sklearn message
    ("probe", dict(labels=_Y[:10]), "20 train features but 10 train labels"),  # sklearn message
    ("probe", dict(features=_F[:0], labels=_Y[:0]), "empty"),  # RuntimeWarning, then sklearn
    ("probe", dict(labels=np.arange(20) % 3), r"class indices in \[0, 2\)"),  # IndexError
    ("probe", dict(task="binary"), "did you mean 'binary-class'"),  # fitted as single-label
    ("probe", dict(max_iter=0), "max_iter must be an integer >= 1"),  # a ConvergenceWarning and a probe
    ("probe", dict(task=MULTI_LABEL, labels=_Y), r"must be \(M, 2\) 0/1"),  # tuple index out of range
])
def test_knn_and_probe_refuse_bad_features_and_labels(call, overrides, match):
    from medfm.evaluation.protocols import fit_linear_probe, knn_scores

    with pytest.raises(ValueError, match=match):
        if call == "knn":
            knn_scores(**{**dict(train_features=_F, train_labels=_Y, test_features=_F, num_classes=2), **overrides})
        else:
            fit_linear_probe(**{**dict(features=_F, labels=_Y, task="binary-class", num_classes=2), **overrides})


def test_knn_k_larger_than_the_train_set_is_clipped():
    from medfm.evaluation.protocols import knn_scores

    assert knn_scores(_F, _Y, _F[:3], 2, k=100).shape == (3, 2)


def test_linear_probe_predict_checks_the_feature_width():
    from medfm.evaluation.protocols import fit_linear_probe

    probe = fit_linear_probe(_F, _Y, "binary-class", 2)
    with pytest.raises(ValueError, match="features have 3 dims but 4 are expected"):  # numpy broadcast error
        probe.predict(_F[:, :3])


# -- zero-shot, predict -----------------------------------------------------------------------------------
@pytest.mark.parametrize("labels, k, match", [
    (np.array([0, 3, 3]), 2, r"class indices in \[0, 2\)"),  # class 3 counted as a class of its own
    (np.zeros(0), 2, "at least one label"),  # NaN with a RuntimeWarning
    (np.array([0]), 0, "num_classes must be an integer >= 2"),  # ZeroDivisionError
    (np.array([0.5, 1.0]), 2, "fractions"),  # 0.5 taken as class 0
])
def test_chance_levels_refuses_labels_that_do_not_fit(labels, k, match):
    from medfm.evaluation.zeroshot import chance_levels

    with pytest.raises(ValueError, match=match):
        chance_levels(labels, k)


def test_zeroshot_prompts_must_be_strings_and_an_empty_set_is_named():
    from medfm.evaluation.zeroshot import class_embeddings, zeroshot_classify

    with pytest.raises(ValueError, match="list of strings per class"):  # was AttributeError / a tokenizer error
        class_embeddings(None, [[1], [2]])
    with pytest.raises(ValueError, match="list of strings per class"):
        class_embeddings(None, [[""], ["b"]])
    with pytest.raises(ValueError, match="holds no images"):  # torch.cat(): expected a non-empty list
        zeroshot_classify(None, [], [["a"], ["b"]])


class _Set:
    def __init__(self, n, channels=1):
        self.n, self.channels = n, channels
        self.labels = np.zeros((n, 1), int)

    def __len__(self):
        return self.n

    def get_batch(self, idx):
        return {"image": torch.rand(len(idx), self.channels, 16, 16)}


def _classifier():
    from medfm.adapters.classification import ImageClassifier
    from medfm.encoders import create_encoder

    torch.manual_seed(0)
    return ImageClassifier(create_encoder("resnet_test", in_chans=1, img_size=16), 3, "multi-class").eval()


def test_predict_scores_names_an_empty_set_and_restores_training_mode():
    from medfm.encoders import EncoderInputError
    from medfm.evaluation.predict import predict_scores

    clf = _classifier()
    with pytest.raises(ValueError, match="holds no images"):  # torch.cat(): expected a non-empty list
        predict_scores(clf, _Set(0))
    clf.train()
    with pytest.raises(EncoderInputError):
        predict_scores(clf, _Set(2, channels=3))
    assert clf.training  # was left in eval mode


# -- CAMs ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, error, match", [
    # a string was read as 7 one-letter "unknown methods"
    (dict(methods="gradcam"), ValueError, r"got 'gradcam' \(str\); write \['gradcam'\]"),
    (dict(methods=("gradcma",)), ValueError, "did you mean 'gradcam'"),
    (dict(targets=[0]), ValueError, "one class index"),  # the second image got no CAM, silently
    (dict(targets=[0, 7]), ValueError, "one class index"),  # IndexError inside pytorch-grad-cam
    (dict(targets=[0, -1]), ValueError, "one class index"),  # -1 meant the last class
])
def test_compute_cams_refuses_bad_methods_and_targets(kwargs, error, match):
    pytest.importorskip("pytorch_grad_cam")
    from medfm.evaluation.cam import compute_cams

    with pytest.raises(error, match=match):
        compute_cams(_classifier(), torch.rand(2, 1, 16, 16), **kwargs)


def test_compute_cams_wants_a_tensor_and_cam_grid_an_image():
    pytest.importorskip("pytorch_grad_cam")
    from medfm.evaluation.cam import cam_grid, compute_cams

    with pytest.raises(TypeError, match="must be a torch tensor"):  # 'numpy.ndarray' has no attribute 'float'
        compute_cams(_classifier(), np.zeros((2, 1, 16, 16), np.float32))
    with pytest.raises(ValueError, match="holds no images"):  # cannot reshape array of size 0
        cam_grid(_classifier(), _Set(0), "unused.png")


# -- robustness ------------------------------------------------------------------------------------------
_YT = np.array([0, 1, 0, 1])
_SC = np.array([[.6, .4], [.3, .7], [.8, .2], [.1, .9]])
_REF = {"clean_score": 0.1, "raw_scores": {"pixelate": 0.3}}


@pytest.mark.parametrize("call, match", [
    (lambda R: R.balanced_error(_YT, _SC, "binary-class", threshold=float("nan")), "threshold must be a finite"),
    (lambda R: R.corruption_errors(_YT, {"pixelate": np.zeros((0, 2))}, "binary-class", n_severities=0),
     "n_severities must be an integer >= 1"),  # was {'pixelate': []}
    (lambda R: R.be_rbe({"pixelate": []}, 0.1, reference=_REF), "non-empty list of finite numbers"),  # NaN BE
    (lambda R: R.be_rbe({"pixelate": [np.nan, 0.2]}, 0.1, reference=_REF), "non-empty list"),  # NaN BE
    (lambda R: R.be_rbe({"pixelate": "0.1"}, 0.1, reference=_REF), "non-empty list"),  # read as one error 0.1
    (lambda R: R.be_rbe({"pixelate": [0.1, 0.2]}, float("nan"), reference=_REF), "clean_error must be a finite"),
])
def test_robustness_scores_refuse_non_finite_or_missing_errors(call, match):
    from medfm.evaluation import robustness as R

    with pytest.raises(ValueError, match=match):
        call(R)


# -- reports and plots -------------------------------------------------------------------------------------
def test_classification_report_names_a_blocked_output_and_bad_arguments(tmp_path):
    from medfm.evaluation.report import write_classification_report

    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError, match="is a file, not a folder; choose another output folder"):  # [Errno 17]
        write_classification_report(tmp_path / "file", _YT, _SC, "binary-class", None, {}, n_boot=10)
    with pytest.raises(NotADirectoryError, match="file' is a file, not a folder"):  # [Errno 20] Not a directory
        write_classification_report(tmp_path / "file" / "sub", _YT, _SC, "binary-class", None, {}, n_boot=10)
    with pytest.raises(TypeError, match="extra_warnings must be a list"):  # listed letter by letter
        write_classification_report(tmp_path / "r", _YT, _SC, "binary-class", None, {}, n_boot=10,
                                    extra_warnings="careful")
    with pytest.raises(TypeError, match="meta must be a mapping"):  # dictionary update sequence element
        write_classification_report(tmp_path / "r", _YT, _SC, "binary-class", None, ["x"], n_boot=10)
    with pytest.raises(ValueError, match="threshold must be a finite number"):  # ACC of all-negative predictions
        write_classification_report(tmp_path / "r", _YT, _SC, "binary-class", None, {}, n_boot=10,
                                    threshold=float("nan"))
    assert not (tmp_path / "r").exists()


def test_plots_check_names_and_counts(tmp_path):
    from medfm.evaluation.plots import plot_confusion_matrix, plot_roc

    assert plot_confusion_matrix([[1, 0], [0, 1]], None, tmp_path / "cm.png").is_file()  # was len(None)
    with pytest.raises(ValueError, match="must hold counts"):  # cannot convert float NaN to integer
        plot_confusion_matrix([[np.nan, 0], [0, 1]], ["a", "b"], tmp_path / "cm2.png")
    with pytest.raises(ValueError, match="must hold counts"):  # drawn as is
        plot_confusion_matrix([[-1, 0], [0, 1]], ["a", "b"], tmp_path / "cm3.png")
    y = np.array([0, 1, 2, 1])
    with pytest.raises(ValueError, match="got 1 label_names for 3 classes"):  # curves labelled by index
        plot_roc(y, np.eye(3)[y], "multi-class", ["a"], tmp_path / "roc.png")


# -- VQA ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("call, match", [
    (lambda V: V.exact_match("yes", "yes"), r"got 'yes' \(str\)$"),  # three one-letter answers, all right
    (lambda V: V.score_vqa(["yes"], ["yes"], "CLOSED", n_boot=10), "answer_types must be a list"),
    (lambda V: V.majority_baseline(["yes", "no", "no"], ["CLOSED"], ["no"], ["CLOSED"], n_boot=10),
     "3 train answers for 1 train answer types"),  # extra answers dropped by zip
    (lambda V: V.accuracy_by_group([True, False], ["a"]), "2 correctness flags for 1 groups"),  # IndexError
    (lambda V: V.accuracy_by_group([True], ["a"], min_count=float("nan")), "min_count must be an integer"),
])
def test_vqa_scoring_refuses_strings_and_length_mismatches(call, match):
    from medfm.evaluation import vqa as V

    with pytest.raises(ValueError, match=match):
        call(V)


# -- suites' array sets, fine-tuning settings -----------------------------------------------------------
class _Like:
    labels = np.zeros((3, 1), int)
    task, num_classes, label_names, n_channels = "multi-class", 2, ["a", "b"], 1


def test_array_set_refuses_float_images_and_a_label_count_mismatch():
    from medfm.evaluation.array_sets import ArraySet

    with pytest.raises(TypeError, match="uint8"):  # divided by 255 again: a black batch
        ArraySet(np.zeros((3, 4, 4), np.float32), _Like())
    with pytest.raises(ValueError, match="5 images but 3 labels"):  # len 5, label lookups failing later
        ArraySet(np.zeros((5, 4, 4), np.uint8), _Like())


def test_finetune_recipe_settings_must_be_a_mapping():
    from medfm.encoders import create_encoder
    from medfm.evaluation.finetune_protocol import finetune_recipe

    enc = create_encoder("resnet_test", in_chans=1, img_size=28)
    with pytest.raises(ValueError, match="must be a mapping"):  # dictionary update sequence element #0
        finetune_recipe(enc, "ckpt", "pneumoniamnist", 28, 0.1, settings="full")



# -- review follow-ups: one rule each, no needless copies ---------------------------------------------------
def test_check_features_returns_an_array_of_the_wanted_dtype_uncopied():
    from medfm.evaluation.protocols import check_features, knn_scores

    x64 = _F.astype(np.float64)
    assert check_features(x64, "f") is x64  # was a float64 copy of every feature set
    assert check_features(_F, "f", dtype=np.float32) is _F  # kNN: float32 was widened to float64 and back
    assert check_features(_F, "f").dtype == np.float64
    # a reversed (negative-stride) float32 view is scored as its copy is
    assert np.array_equal(knn_scores(_F[::-1], _Y[::-1], _F[:3], 2), knn_scores(_F[::-1].copy(), _Y[::-1], _F[:3], 2))


def test_check_protocol_is_the_torch_free_rule():
    from medfm.evaluation.protocols import check_protocol
    from medfm.suite_protocols import check_protocol_name

    assert check_protocol is check_protocol_name  # was a copy of its body


def test_patient_dice_and_score_row_share_one_patient_id_rule():
    from medfm.evaluation.fusion_seg import patient_dice

    ref = np.zeros((4, 8, 8), np.uint8)
    with pytest.raises(ValueError, match=r"patient_dice: patient ids must be a list, one per slice, got 'abcd'"):
        patient_dice(ref, ref, "abcd", ["bg", "fg"])  # was its own copy of the rule, without the value
    with pytest.raises(ValueError, match=r"score_row: patient ids must be a list, one per sample, got 'ab' \(str\)"):
        FU.score_row(np.array([0, 1]), np.array([.1, .9]), "ab", n_boot=0, seed=0)


def test_fusion_protocol_lists_follow_the_shared_list_rule():
    batch = margin_batch([-1.0, 1.0, -2.0, 2.0], [0, 1, 0, 1])
    with pytest.raises(ValueError, match=r"mcar_rates must be a list of rates in \[0, 1\), got \{0.25: 1\}"):
        FU.run_fusion_protocol({"single_flair": MarginModel()}, batch, ["flair"], mcar_rates={0.25: 1},  # its keys
                               mnar_modalities=["flair"], n_boot=0)
