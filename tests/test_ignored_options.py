"""Options that a run would ignore are refused with one line naming them and when they apply
(they used to be accepted and dropped without a word, exit 0)."""
import textwrap

import numpy as np
import pytest

import medfm
from tests.conftest import cli_error

SUITE = textwrap.dedent("""
    name: s
    datasets:
      - {flag: pneumoniamnist, max_samples: 20}
    protocol: {name: as-is}
    metrics: {n_boot: 10}
    cam: {enabled: false}
""")
CORRUPTIONS = "corruptions: {names: [gaussian_noise], severities: [1]}\n"
NO_CORRUPTION = "MedMNIST-C option(s) for building corrupted sets, and s.yaml corrupts no data set"


@pytest.mark.parametrize("suite, flags, message", [
    (SUITE, ["--workers", "0"], f"--workers: {NO_CORRUPTION}"),
    (SUITE, ["--cache-dir", "cache"], f"--cache-dir: {NO_CORRUPTION}"),
    (SUITE, ["--workers", "4", "--cache-dir", "cache"], f"--workers, --cache-dir: {NO_CORRUPTION}"),
    # a corruptions: section that no dataset uses corrupts nothing either
    (SUITE.replace("max_samples: 20}", "max_samples: 20, corruptions: false}") + CORRUPTIONS, ["--workers", "0"],
     f"--workers: {NO_CORRUPTION}"),
    (SUITE + "corruptions:\n", ["--cache-dir", "cache"], f"--cache-dir: {NO_CORRUPTION}"),  # empty: no section
], ids=["workers", "cache-dir", "both", "every-dataset-false", "empty-section"])
def test_corruption_options_refused_for_a_suite_that_corrupts_nothing(tmp_path, capsys, suite, flags, message):
    """``medfm eval --suite`` without corruptions ran with --workers/--cache-dir and exit 0, results
    identical to a run without them; now refused before anything is loaded or written."""
    (tmp_path / "s.yaml").write_text(suite)
    code, err = cli_error(capsys, ["eval", tmp_path / "ckpt", "--suite", tmp_path / "s.yaml",
                                   "--output", tmp_path / "ev", *flags])
    assert code == 2 and err == f"medfm: error: {message} (no corruptions: section, or corruptions: false on every " \
                                "dataset)", err
    assert not (tmp_path / "ev").exists() and not (tmp_path / "cache").exists()


def test_corruption_options_pass_for_a_suite_with_corruptions(tmp_path, capsys):
    """With a corruptions section the options are accepted: the next check (the missing checkpoint) answers."""
    (tmp_path / "s.yaml").write_text(SUITE + CORRUPTIONS)
    code, err = cli_error(capsys, ["eval", tmp_path / "ckpt", "--suite", tmp_path / "s.yaml", "--output",
                                   tmp_path / "ev", "--workers", "0", "--cache-dir", tmp_path / "cache"])
    assert code == 2 and "no checkpoint directory" in err and "--workers" not in err, err


def test_corruption_options_with_data_are_suite_options(tmp_path, capsys):
    code, err = cli_error(capsys, ["eval", tmp_path / "ckpt", "--data", "pneumoniamnist", "--workers", "2",
                                   "--cache-dir", tmp_path / "cache"])
    assert code == 2 and "--workers, --cache-dir: --suite option(s); --data scores one checkpoint" in err, err


def test_segmentation_pipeline_refuses_text_encoder_for_a_plain_model():
    """text_encoder= only embeds query= text of a text-conditioned checkpoint; a plain segmentation
    model took any value (even a string) and returned the same masks."""
    from medfm.adapters.segmentation import SegmentationModel
    from medfm.pipelines.segmentation import SegmentationInputError

    model = SegmentationModel(medfm.create_encoder("resnet_test", in_chans=3, img_size=28), 2).eval()
    with pytest.raises(SegmentationInputError, match=r"^text_encoder= needs a text-conditioned segmentation "
                                                     r"checkpoint .* would ignore it$"):
        medfm.pipeline("image-segmentation", model=model, text_encoder="not a text encoder")
    out = medfm.pipeline("image-segmentation", model=model)(np.zeros((30, 30), np.uint8))  # without it: as before
    assert out["mask"].shape == (30, 30)
