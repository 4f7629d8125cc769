"""Training state (model, optimizer, RNG, counters) saved as safetensors + JSON, never pickle.

The optimizer's ``state_dict`` is split into tensors (``state.<param>.<key>``, stored in
safetensors) and plain values (param groups, scalar state, stored as JSON), so a resumed
run restores it exactly.

RNG: torch's CPU generator (``rng.torch``) and, once CUDA is in use, every CUDA device's
generator (``rng.cuda.<i>``): dropout and stochastic depth on a GPU draw from the CUDA
generator, which ``torch.get_rng_state`` does not include (without it, a run resumed on a GPU
would replay the dropout masks of its first steps, since the runners reseed torch before
building the model). Augmentations, crops, flips and modality dropout draw from the per-step
generator of :class:`medfm.training.loop.Trainer`, which needs no state.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import torch
from safetensors.torch import load_file, save_file

from medfm.io import interrupted_version

STATE_TENSORS = "training_state.safetensors"
STATE_JSON = "trainer_state.json"


def _split_optimizer(opt_state: Dict[str, Any]) -> Tuple[Dict[str, torch.Tensor], Dict[str, Any]]:
    tensors: Dict[str, torch.Tensor] = {}
    plain: Dict[str, Any] = {"param_groups": opt_state["param_groups"], "scalars": {}}
    for pid, entry in opt_state["state"].items():
        for key, val in entry.items():
            if isinstance(val, torch.Tensor):
                tensors[f"optimizer.{pid}.{key}"] = val.detach().contiguous().cpu()
            else:
                plain["scalars"][f"{pid}.{key}"] = val
    return tensors, plain


def _join_optimizer(tensors: Dict[str, torch.Tensor], plain: Dict[str, Any]) -> Dict[str, Any]:
    state: Dict[int, Dict[str, Any]] = {}
    for name, val in tensors.items():
        if not name.startswith("optimizer."):
            continue
        _, pid, key = name.split(".", 2)
        state.setdefault(int(pid), {})[key] = val
    for name, val in plain["scalars"].items():
        pid, key = name.split(".", 1)
        state.setdefault(int(pid), {})[key] = val
    return {"state": state, "param_groups": plain["param_groups"]}


def save_training_state(directory: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                        counters: Dict[str, Any]) -> None:
    """Write model + optimizer tensors and the RNG state to ``directory`` (which must exist)."""
    opt_tensors, opt_plain = _split_optimizer(optimizer.state_dict())
    tensors = {f"model.{k}": v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    tensors.update(opt_tensors)
    tensors["rng.torch"] = torch.get_rng_state()
    tensors.update(_cuda_rng_states())
    save_file(tensors, str(Path(directory) / STATE_TENSORS))
    payload = {"counters": counters, "optimizer": opt_plain}
    (Path(directory) / STATE_JSON).write_text(json.dumps(payload, indent=1))


def find_training_state(directory: Path) -> Optional[Path]:
    """The folder a resume reads its training state from, found without changing anything: ``directory`` when it
    holds one (:data:`STATE_JSON`), else the previous version a kill inside the checkpoint's rename window left
    aside (``.<name>.old-<id>``, :func:`medfm.io.interrupted_version`) when that one holds it. The resume loads
    and checks the state there, and only then repairs the folder (:func:`medfm.io.restore_interrupted_dir`), so
    that a refused resume leaves it as it was (repaired first, a refused resume had renamed and deleted folders).

    Returns:
        that folder, or None when neither holds a training state (nothing to resume: the run starts over).

    Raises:
        FileExistsError: ``directory`` is missing and several earlier versions wait beside it (ambiguous).
    """
    directory = Path(directory)
    source = interrupted_version(directory) or directory
    return source if (source / STATE_JSON).is_file() else None


def load_training_state(directory: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> Dict[str, Any]:
    """Restore what :func:`save_training_state` wrote; returns the counters.

    Raises:
        ValueError: missing/corrupt files (also a ``trainer_state.json`` without its entries, which was a bare
            ``KeyError: 'optimizer'``), or an optimizer state that does not fit the model's trainable parameters
            (another mode, LoRA settings or frozen layers; was torch's "loaded state dict contains a parameter group
            that doesn't match ...").
        CheckpointError: model weights that do not fit the model (:func:`medfm.hub.load_exact`).
    """
    directory = Path(directory)
    try:
        tensors = load_file(str(directory / STATE_TENSORS))
        payload = json.loads((directory / STATE_JSON).read_text())
        optimizer_state = _join_optimizer(tensors, payload["optimizer"])
        counters, rng = payload["counters"], tensors["rng.torch"]
    except Exception as err:
        raise ValueError(f"cannot resume from {directory}: training state missing or corrupt "
                         f"({type(err).__name__}: {err})") from None
    from medfm.hub import load_exact

    model_state = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    load_exact(model, model_state, where=str(directory))
    try:
        optimizer.load_state_dict(optimizer_state)
    except (ValueError, KeyError) as err:
        raise ValueError(f"cannot resume from {directory}: its optimizer state does not fit the model's trainable "
                         f"parameters ({err}); resume with the run's settings (mode, LoRA, frozen layers)") from None
    torch.set_rng_state(rng)
    _restore_cuda_rng_states(tensors)
    return counters


def _cuda_rng_states() -> Dict[str, torch.Tensor]:
    """``{"rng.cuda.<i>": (n,) uint8 state}`` per CUDA device once CUDA is initialised (a run
    training on a GPU), else empty (a CPU run draws nothing from the CUDA generators)."""
    if not (torch.cuda.is_available() and torch.cuda.is_initialized()):
        return {}
    return {f"rng.cuda.{i}": state for i, state in enumerate(torch.cuda.get_rng_state_all())}


def _restore_cuda_rng_states(tensors: Dict[str, torch.Tensor]) -> None:
    """Set each CUDA device's generator that :func:`_cuda_rng_states` saved and this machine has.

    A state saved on a GPU and resumed without one (or the reverse) restores nothing: the
    bit-identical resume holds on the same hardware only (:mod:`medfm.training.loop`)."""
    saved = {int(k.rsplit(".", 1)[1]): v for k, v in tensors.items() if k.startswith("rng.cuda.")}
    if not saved or not torch.cuda.is_available():
        return
    for device in range(min(len(saved), torch.cuda.device_count())):
        torch.cuda.set_rng_state(saved[device], device)
