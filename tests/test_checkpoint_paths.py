"""A file, or a folder without the checkpoint's files, given where a checkpoint (or LoRA adapter)
folder is expected: every library entry point answers with the one message of
:func:`medfm.checkpoint_ids.checkpoint_folder_problem` (the ``medfm`` command's early check is in
``tests/test_cli_errors.py``).
"""
import pytest
import torch

import medfm
from medfm.adapters.classification import ImageClassifier
from medfm.adapters.lora import load_adapter, merge_adapter
from medfm.cards import update_card
from medfm.checkpoint_ids import checkpoint_folder_problem, checkpoint_path_problem
from medfm.hub import CheckpointError, from_pretrained, load_config, push_to_hub, resolve_checkpoint, save_pretrained


@pytest.fixture
def ckpt(tmp_path):
    torch.manual_seed(0)
    model = ImageClassifier(medfm.create_encoder("resnet_test", in_chans=1, img_size=28), num_classes=2,
                            task="binary-class")
    return save_pretrained(model, tmp_path / "ckpt")


#: every library call that takes a checkpoint folder (or id), as (name, call)
CHECKPOINT_CALLS = [
    ("from_pretrained", from_pretrained),
    ("resolve_checkpoint", resolve_checkpoint),
    ("load_config", load_config),
    ("create_encoder(pretrained=)", lambda p: medfm.create_encoder("resnet_test", in_chans=1, img_size=28, pretrained=p)),
    ("update_card", lambda p: update_card(p, p)),
    ("push_to_hub", lambda p: push_to_hub(p, "org/name")),
]


@pytest.mark.parametrize("name, call", CHECKPOINT_CALLS, ids=[n for n, _ in CHECKPOINT_CALLS])
def test_a_weights_file_gets_the_same_message_from_every_entry_point(ckpt, name, call):
    """``load_config`` (so ``update_card``, ``medfm card``, ``merge_adapter``) said "'.../model.safetensors'
    is not a medfm checkpoint: config.json is missing" where ``from_pretrained`` said it is a file."""
    weights = ckpt / "model.safetensors"
    message = f"{str(weights)!r} is a file; a checkpoint is the directory that holds config.json and " \
              f"model.safetensors: pass {str(ckpt)!r}"
    assert checkpoint_path_problem(weights) == message
    with pytest.raises(CheckpointError) as err:
        call(weights)
    assert str(err.value) == message


@pytest.mark.parametrize("call", [load_adapter, lambda p: merge_adapter(p, p.parent / "merged")],
                         ids=["load_adapter", "merge_adapter"])
def test_a_lora_adapter_path_names_the_adapter_files(ckpt, tmp_path, call):
    """``merge_adapter`` given a file said "config.json is missing", given a full checkpoint "adapter
    weights ... do not fit the base model: Can't find 'adapter_config.json'", given a run folder
    "config.json is missing" without naming the ``adapter/`` inside it."""
    adapter_file = ckpt / "model.safetensors"
    with pytest.raises(CheckpointError) as err:
        call(adapter_file)
    assert str(err.value) == (f"{str(adapter_file)!r} is a file; a LoRA adapter is the directory that holds "
                              f"adapter_config.json and adapter_model.safetensors: pass {str(ckpt)!r}")
    with pytest.raises(CheckpointError) as err:
        call(ckpt)
    assert str(err.value) == (f"{str(ckpt)!r} is a full medfm checkpoint, not a LoRA adapter (no adapter_config.json); "
                              "pass the adapter/ folder of a LoRA fine-tune")
    run = tmp_path / "run"
    (run / "adapter").mkdir(parents=True)
    for name in ("config.json", "adapter_config.json"):  # read after the folder check: contents unused here
        (run / "adapter" / name).write_text("{}")
    with pytest.raises(CheckpointError) as err:
        call(run)
    assert str(err.value) == (f"{str(run)!r} is not a LoRA adapter: adapter_config.json is missing; it holds a "
                              f"LoRA adapter in a subfolder: pass {str(run / 'adapter')!r}")
    assert not (tmp_path / "merged").exists() and not (ckpt.parent / "merged").exists()


def test_folder_problems_in_order(tmp_path):
    """The shared check: a missing path, a file, a folder without config.json (naming subfolders
    that hold one), then for an adapter the adapter file; a complete folder and hub ids pass."""
    nope = tmp_path / "nope"
    assert checkpoint_folder_problem(nope) == f"no checkpoint directory at {str(nope)!r} (hub ids need the prefix 'hf-hub:')"
    (tmp_path / "notes.txt").write_text("x")
    assert checkpoint_folder_problem(tmp_path / "notes.txt").startswith(f"{str(tmp_path / 'notes.txt')!r} is a file; ")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert checkpoint_folder_problem(empty) == f"{str(empty)!r} is not a medfm checkpoint: config.json is missing"
    (empty / "model").mkdir()
    (empty / "model" / "config.json").write_text("{}")
    assert checkpoint_folder_problem(empty).endswith(f"; it holds a checkpoint in a subfolder: pass {str(empty / 'model')!r}")
    assert checkpoint_folder_problem(empty / "model") is None
    assert "not a LoRA adapter" in checkpoint_folder_problem(empty / "model", adapter=True)
    (empty / "model" / "adapter_config.json").write_text("{}")
    assert checkpoint_folder_problem(empty / "model", adapter=True) is None
    assert checkpoint_path_problem("hf-hub:org/name") is None
