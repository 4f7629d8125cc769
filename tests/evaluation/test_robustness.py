"""medfm.evaluation.robustness: moved MedMNIST-C scores, summary vs medmnistc, plot, table."""
import numpy as np
import pytest

from medfm.evaluation import metrics, robustness


def _scores(n=60, k=2, seed=0, noise=1.0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, (n, 1))
    z = rng.normal(0, noise, (n, k))
    z[np.arange(n), y[:, 0]] += 1.5
    e = np.exp(z - z.max(1, keepdims=True))
    return y, e / e.sum(1, keepdims=True)


def test_functions_moved_and_reexported():
    for name in ("balanced_error", "corruption_errors", "alexnet_reference", "be_rbe"):
        assert getattr(metrics, name) is getattr(robustness, name)
    from medfm.evaluation.metrics import be_rbe  # noqa: F401  (old import path keeps working)

    with pytest.raises(AttributeError):
        metrics.no_such_name  # noqa: B018


def test_families_follow_medmnistc():
    assert robustness.corruption_family("gaussian_noise") == "noise"
    assert robustness.corruption_family("pixelate") == "digital"
    assert robustness.corruption_family("gamma_corr_up") == "task-specific"
    assert robustness.corruption_family("made_up") == "other"


def test_summary_equals_medmnistc_evaluator(tmp_path):
    pytest.importorskip("medmnistc.eval")
    from medmnistc.eval import Evaluator

    from medfm.data.corruptions import list_corruptions

    y, clean = _scores(seed=1)
    names = list_corruptions("breastmnist")
    by_c = {c: np.stack([_scores(seed=10 + i * 5 + s, noise=1 + 0.3 * s)[1] for s in range(5)])
            for i, c in enumerate(names)}
    _, control = _scores(seed=99)
    rob = robustness.robustness_summary(y, clean, by_c, control, "binary-class", "breastmnist", [1, 2, 3, 4, 5],
                                        tmp_path / "e.png")
    ref = Evaluator("breastmnist", y, names, str(tmp_path), "x", "binary-class")
    ref.evaluate_clean(clean, 0.5)
    for c in names:
        ref.evaluate(by_c[c].reshape(-1, 2), c, 0.5)
    ref.output_log = {}
    ref.populate_summary()
    assert abs(rob["clean_error"] - ref.clean_score) < 1e-6
    assert abs(rob["be"] - ref.output_log["metrics"]["be"]) < 1e-6
    assert abs(rob["rbe"] - ref.output_log["metrics"]["rbe"]) < 1e-6
    for c in names:
        assert np.allclose(rob["errors"][c], ref.corruption_errors[c], atol=1e-6, rtol=0)
    assert rob["control_error"] == pytest.approx(robustness.balanced_error(y, control, "binary-class"))
    assert rob["warnings"] == [] and (tmp_path / "e.png").stat().st_size > 1000


def test_summary_warnings_subset_and_negative_reference_gap(tmp_path):
    y, clean = _scores(seed=2)
    by_c = {"contrast_up": np.stack([clean]), "pixelate": np.stack([_scores(seed=3)[1]])}
    rob = robustness.robustness_summary(y, clean, by_c, None, "binary-class", "pneumoniamnist", [1])
    text = " ".join(rob["warnings"])
    assert "not comparable" in text and "contrast_up" in text  # AlexNet contrast_up error < its clean error
    assert rob["errors"]["contrast_up"] == [rob["clean_error"]] and rob["control_error"] is None
    table = robustness.robustness_markdown(rob)
    assert "| contrast_up | color |" in table and "**all (mean)**" in table and "not comparable" in table
    no_ref = robustness.robustness_summary(y, clean, by_c, None, "binary-class", None, [1])
    assert "be" not in no_ref


def test_plot_error_vs_severity_validates(tmp_path):
    out = robustness.plot_error_vs_severity({"pixelate": [0.1, 0.2], "gaussian_noise": [0.2, 0.3]}, 0.05,
                                            tmp_path / "p.png", severities=[1, 3])
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="same number"):
        robustness.plot_error_vs_severity({"a": [0.1], "b": [0.1, 0.2]}, 0.0, tmp_path / "q.png")
    with pytest.raises(ValueError, match="empty"):
        robustness.plot_error_vs_severity({}, 0.0, tmp_path / "q.png")
