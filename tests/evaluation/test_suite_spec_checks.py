"""Suite files whose protocol section sets an option that the suite's protocol ignores are refused
when read (``protocol: {name: as-is, label_fractions: [0.01, 0.1]}`` ran with exit 0, one as-is run
and the fractions recorded in ``results.json`` as if used), and every model pass of a suite draws the
same progress bar (the probe's train/val feature passes counted batches, "it/s", the others images)."""
import re
from dataclasses import fields

import pytest
import torch
import yaml

from medfm.adapters.classification import ImageClassifier
from medfm.cli import main
from medfm.config import ConfigError
from medfm.data import dataset_info
from medfm.encoders import create_encoder
from medfm.evaluation.protocols import PROTOCOLS
from medfm.evaluation.suite_spec import PROTOCOL_OPTIONS, ProtocolSpec, load_suite, suite_overrides
from medfm.evaluation.suites import run_suite
from medfm.hub import save_pretrained
from tests.conftest import fake_medmnist_arrays

#: a valid value of each protocol option
VALUES = {"label_fractions": [0.5], "seed": 1, "linear_c": 0.1, "knn_k": 3, "knn_temperature": 0.1,
          "finetune": {"mode": "full"}}


def _suite_file(tmp_path, protocol, **over):
    data = {"name": "t", "datasets": [{"flag": "pneumoniamnist"}], "metrics": {"n_boot": 10},
            "cam": {"enabled": False}, **over}
    if protocol is not None:
        data["protocol"] = protocol
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_every_protocol_option_says_which_protocols_use_it():
    """A new ProtocolSpec field must be classified, or a suite setting it for the wrong protocol passes."""
    assert set(PROTOCOL_OPTIONS) == {f.name for f in fields(ProtocolSpec)} - {"name"} == set(VALUES)
    for users, what in PROTOCOL_OPTIONS.values():
        assert users and set(users) <= set(PROTOCOLS) and what


@pytest.mark.parametrize("protocol, message", [
    ({"name": "as-is", "label_fractions": [0.01, 0.1]},
     "s.yaml: protocol.label_fractions (the share of training labels fitted on) would be ignored: only the linear, "
     "knn and finetune protocols use it, this suite's is as-is; remove it or set protocol.name: linear, knn or finetune"),
    ({"label_fractions": [0.1]},  # no name: the as-is protocol
     "s.yaml: protocol.label_fractions (the share of training labels fitted on) would be ignored: only the linear, "
     "knn and finetune protocols use it, this suite's is as-is; remove it or set protocol.name: linear, knn or finetune"),
    ({"name": "as-is", "seed": 3},
     "s.yaml: protocol.seed (the seed of the label draw and the fit) would be ignored: only the linear, knn and "
     "finetune protocols use it, this suite's is as-is; remove it or set protocol.name: linear, knn or finetune"),
    ({"name": "knn", "linear_c": 0.01},
     "s.yaml: protocol.linear_c (the linear probe's C) would be ignored: only the linear protocol uses it, this "
     "suite's is knn; remove it or set protocol.name: linear"),
    ({"name": "linear", "knn_k": 3},
     "s.yaml: protocol.knn_k (kNN's number of neighbours) would be ignored: only the knn protocol uses it, this "
     "suite's is linear; remove it or set protocol.name: knn"),
    ({"name": "finetune", "knn_temperature": 0.1},
     "s.yaml: protocol.knn_temperature (kNN's vote temperature) would be ignored: only the knn protocol uses it, "
     "this suite's is finetune; remove it or set protocol.name: knn"),
    ({"name": "linear", "finetune": {"mode": "lora", "train": {"epochs": 99}}},
     "s.yaml: protocol.finetune (the fine-tuning settings) would be ignored: only the finetune protocol uses it, "
     "this suite's is linear; remove it or set protocol.name: finetune"),
])
def test_an_option_the_suites_protocol_ignores_is_refused_when_read(tmp_path, protocol, message):
    with pytest.raises(ConfigError) as info:
        load_suite(_suite_file(tmp_path, protocol))
    assert str(info.value) == message


@pytest.mark.parametrize("name", PROTOCOLS)
def test_each_protocol_accepts_the_options_it_uses_and_refuses_the_others(tmp_path, name):
    for key, (users, _) in PROTOCOL_OPTIONS.items():
        path = _suite_file(tmp_path, {"name": name, key: VALUES[key]})
        if name in users:
            assert load_suite(path).protocol.name == name
        else:
            with pytest.raises(ConfigError, match=rf"^s\.yaml: protocol\.{key} \(.*this suite's is {name};"):
                load_suite(path)
    load_suite(_suite_file(tmp_path, {"name": name}))  # a bare protocol, and none at all (as-is), still load
    load_suite(_suite_file(tmp_path, None))


def test_other_suite_errors_come_first(tmp_path):
    """A misspelt key or a bad value is still named as before, not as an ignored option."""
    with pytest.raises(ConfigError, match="did you mean 'linear_c'"):
        load_suite(_suite_file(tmp_path, {"name": "knn", "linear_cc": 0.1}))
    with pytest.raises(ConfigError, match=r"protocol\.finetune: unknown key 'lr'"):
        load_suite(_suite_file(tmp_path, {"name": "knn", "finetune": {"lr": 1}}))


def test_a_command_line_protocol_may_still_switch_a_suites_protocol(tmp_path):
    """``eval_suites/medmnist_3d.yaml --protocol as-is`` and ``local.yaml --protocol linear`` are documented:
    the suite's options are for its own protocol, which the command line replaces."""
    suite = load_suite(_suite_file(tmp_path, {"name": "linear", "label_fractions": [0.5], "linear_c": 0.1}))
    assert suite_overrides(suite, protocol="as-is").protocol.name == "as-is"


def test_cli_refuses_the_suite_in_one_line_and_writes_nothing(tmp_path, capsys):
    (tmp_path / "ckpt").mkdir()  # a missing checkpoint (or one without config.json) is named before the suite is read
    (tmp_path / "ckpt" / "config.json").write_text("{}")
    path = _suite_file(tmp_path, {"name": "as-is", "label_fractions": [0.01, 0.1]})
    code = main(["eval", str(tmp_path / "ckpt"), "--suite", str(path), "--output", str(tmp_path / "ev")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "protocol.label_fractions" in err and "as-is" in err
    assert not (tmp_path / "ev").exists()


def test_probe_feature_passes_count_images_like_every_other_suite_bar(tmp_path, write_medmnist, capsys):
    """The train (and val, ``linear_c: val``) feature bars counted batches ("0/1 ... it/s" for 16 images
    at batch 64) beside the test bar counting images; now each counts the images of its split."""
    root = write_medmnist("pneumoniamnist", arrays=fake_medmnist_arrays("pneumoniamnist", counts=(16, 4, 10)))
    info = dataset_info("pneumoniamnist")
    torch.manual_seed(0)
    enc = create_encoder("resnet_test", in_chans=1, img_size=28)
    ckpt = save_pretrained(ImageClassifier(enc, info["num_classes"], info["task"], info["label_names"]),
                           tmp_path / "ckpt")
    suite = load_suite(_suite_file(tmp_path, {"name": "linear", "linear_c": "val"}))
    run_suite(suite, [str(ckpt)], tmp_path / "o", data_root=str(root), progress=True)
    err = capsys.readouterr().err
    for split, n in (("train", 16), ("val", 4), ("test", 10)):
        assert re.search(rf"pneumoniamnist {split} features: [^\r]*\| \d+/{n} \[[^\r]*img/s\]", err), (split, err)
    assert "it/s" not in err


def test_python_workers_override_is_refused_for_a_suite_that_corrupts_nothing(tmp_path):
    """``suite_overrides(workers=)`` was dropped for a suite without corruptions (only the command
    line refused it); a suite with corruptions takes it."""
    for over in ({}, {"corruptions": {"names": ["gaussian_noise"]},
                      "datasets": [{"flag": "pneumoniamnist", "corruptions": False}]}):
        with pytest.raises(ConfigError, match=r"^--workers: the MedMNIST-C worker count, and this suite corrupts no"):
            suite_overrides(load_suite(_suite_file(tmp_path, None, **over)), workers=2)
    suite = load_suite(_suite_file(tmp_path, None, corruptions={"names": ["gaussian_noise"]}))
    assert suite_overrides(suite, workers=2).corruptions.workers == 2
