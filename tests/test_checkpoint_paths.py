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
from medfm.checkpoint_ids import checkpoint_folder_problem, checkpoint_path_problem, subfolder_hint
from medfm.hub import CheckpointError, from_pretrained, load_config, resolve_checkpoint, save_pretrained
from medfm.hub_push import push_to_hub


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
                              "adapter_config.json and adapter_model.safetensors")  # its folder is no adapter
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
    (run / "adapter" / "adapter_model.safetensors").write_bytes(b"")
    with pytest.raises(CheckpointError) as err:
        call(run / "adapter" / "adapter_model.safetensors")
    assert str(err.value).endswith(f"adapter_model.safetensors: pass {str(run / 'adapter')!r}")
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


def test_a_file_names_its_folder_only_when_that_folder_is_a_checkpoint(tmp_path):
    """"pass '<parent>'" was suggested for any file, e.g. notes.txt in a folder that holds no
    checkpoint (passing it then failed with "config.json is missing"). A run folder's checkpoint
    subfolders are named instead; for ``full``, not a LoRA adapter folder."""
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "notes.txt").write_text("x")
    for adapter, words in ((False, "a checkpoint is the directory that holds config.json and model.safetensors"),
                           (True, "a LoRA adapter is the directory that holds adapter_config.json and "
                                  "adapter_model.safetensors")):
        assert checkpoint_folder_problem(plain / "notes.txt", adapter) == f"{str(plain / 'notes.txt')!r} is a file; {words}"
    run = tmp_path / "run"
    for sub, names in (("model", ("config.json", "model.safetensors")), ("adapter", ("config.json", "adapter_config.json"))):
        (run / sub).mkdir(parents=True)
        for name in names:
            (run / sub / name).write_text("{}")
    (run / "results.json").write_text("{}")
    problem = checkpoint_path_problem(run / "results.json")
    assert problem.endswith(f"model.safetensors; its folder holds checkpoints in subfolders: pass "
                            f"{str(run / 'adapter')!r} or {str(run / 'model')!r}"), problem
    assert checkpoint_path_problem(run / "results.json", full=True).endswith(
        f"; its folder holds a checkpoint in a subfolder: pass {str(run / 'model')!r}")
    assert checkpoint_path_problem(run / "results.json", adapter=True).endswith(
        f"; its folder holds a LoRA adapter in a subfolder: pass {str(run / 'adapter')!r}")
    assert checkpoint_path_problem(run / "adapter" / "config.json", full=True).endswith("config.json and model.safetensors")
    assert subfolder_hint(plain) == ""


def test_a_lora_adapter_is_refused_where_full_weights_are_loaded(tmp_path):
    """``--init`` / ``merge --base`` given a LoRA adapter failed after the imports with "checkpoint
    weights missing: <adapter>/model.safetensors"; ``full`` names it and the merge that makes one."""
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    for name in ("config.json", "adapter_config.json"):
        (adapter / name).write_text("{}")
    assert checkpoint_folder_problem(adapter) is None  # eval, card, push take an adapter
    assert checkpoint_folder_problem(adapter, full=True) == (
        f"{str(adapter)!r} is a LoRA adapter, not a full checkpoint (no model.safetensors): merge it into its base first "
        f"with `medfm merge {adapter} OUT` and pass OUT")
    (adapter / "model.safetensors").write_bytes(b"")  # full weights beside the adapter files: loadable
    assert checkpoint_folder_problem(adapter, full=True) is None


@pytest.mark.parametrize("call", [load_config, lambda p: update_card(p, "results.json"), load_adapter],
                         ids=["load_config", "update_card", "load_adapter"])
def test_a_hub_id_where_a_local_folder_is_read_says_so(call):
    """``update_card("hf-hub:org/model", ...)`` (``medfm card``) said "'hf-hub:org/model' is not a medfm
    checkpoint: config.json is missing"; a card is rewritten in a local folder."""
    with pytest.raises(CheckpointError) as err:
        call("hf-hub:org/model@main")
    what = "LoRA adapter" if call is load_adapter else "checkpoint"
    assert str(err.value) == (f"'hf-hub:org/model@main' is a hub id, not a local {what} folder: download it with "
                              "`hf download org/model --revision main --local-dir DIR` and pass DIR")


def test_the_library_names_a_starting_checkpoint_it_cannot_load_as_the_cli_does(tmp_path):
    """``create_encoder(pretrained=<adapter>)`` and a recipe's ``encoder.pretrained`` (the runners'
    :func:`medfm.training.runs.check_init_checkpoint`) said "checkpoint weights missing" for a LoRA
    adapter and let an empty folder through to the build; they now give the CLI's early message."""
    from medfm.encoders import create_encoder
    from medfm.training.recipes import EncoderConfig
    from medfm.training.runs import check_init_checkpoint

    adapter, empty = tmp_path / "adapter", tmp_path / "empty"
    adapter.mkdir()
    empty.mkdir()
    for name in ("config.json", "adapter_config.json"):
        (adapter / name).write_text("{}")
    lora = checkpoint_folder_problem(adapter, full=True)
    assert lora.startswith(f"{str(adapter)!r} is a LoRA adapter, not a full checkpoint")
    with pytest.raises(CheckpointError) as err:
        create_encoder("resnet_test", pretrained=str(adapter))
    assert str(err.value) == lora
    with pytest.raises(CheckpointError) as err:
        check_init_checkpoint(str(adapter), EncoderConfig(name="resnet_test"))
    assert str(err.value) == lora
    with pytest.raises(CheckpointError) as err:
        check_init_checkpoint(None, EncoderConfig(name="resnet_test", pretrained=str(empty)))
    assert str(err.value) == f"encoder.pretrained: {str(empty)!r} is not a medfm checkpoint: config.json is missing"


def test_a_file_of_a_folder_that_is_no_medfm_adapter_names_no_folder(tmp_path):
    """A peft folder without medfm's config.json is refused when passed as the adapter; a file in it
    suggested passing that folder anyway."""
    peft_only = tmp_path / "peft"
    peft_only.mkdir()
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        (peft_only / name).write_text("{}")
    problem = checkpoint_path_problem(peft_only / "adapter_model.safetensors", adapter=True)
    assert "pass" not in problem and checkpoint_folder_problem(peft_only, adapter=True) is not None
