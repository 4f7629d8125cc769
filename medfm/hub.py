"""Checkpoints in Hugging Face layout: ``save_pretrained`` / ``from_pretrained`` (uploads: :mod:`medfm.hub_push`).

A medfm checkpoint is a directory holding

* ``config.json``: ``kind`` ("adapter" or "objective") and ``name`` of the registered module,
  its ``args``, the ``encoder`` arguments for :func:`medfm.create_encoder`, ``preprocessing``
  (in_chans, img_size, mean/std, intensity range), ``medfm_version``, ``versions`` (medfm, torch and the
  other installed versions that wrote it, :func:`medfm.versions.versions`) and free metadata
  (training data, license, label names);
* ``model.safetensors``: the state dict (encoder weights under ``encoder.``);
* ``README.md``: the model card.

LoRA fine-tunes are saved adapter-only (peft's ``adapter_config.json`` +
``adapter_model.safetensors``, plus our ``config.json`` recording the base checkpoint); see
:mod:`medfm.adapters.lora`. Ids are local directories or ``hf-hub:org/name`` (timm/open_clip
convention). Nothing is ever unpickled.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Set, Union

import torch
from torch import nn

import medfm
from medfm.checkpoint_ids import (ADAPTER_CONFIG_NAME, CONFIG_NAME, HUB_PREFIX, TIMM_WEIGHTS,
                                  WEIGHTS_NAME, checkpoint_folder_problem, checkpoint_path_problem,
                                  hub_download_command, is_hub_id, start_checkpoint_problem)
from medfm.io import atomic_dir
from medfm.versions import versions


CARD_NAME = "README.md"


class CheckpointError(ValueError):
    """A checkpoint is missing, corrupt, or does not match the architecture asked for."""


# -- resolving ids -------------------------------------------------------------------------
def checkpoint_reference(path_or_id: Union[str, os.PathLike]) -> str:
    """How medfm records (and compares) a reference to a starting checkpoint.

    ``hf-hub:`` ids and ``"timm"`` (timm's pretrained weights) are kept as written; a local
    path is made absolute (``~`` expanded, relative to the current folder, symbolic links
    resolved), so a LoRA adapter's recorded base loads from any folder and ``runs/pt``,
    ``./runs/pt`` and its absolute path are one reference. The path need not exist.
    """
    ident = str(path_or_id)
    if is_hub_id(ident) or ident == TIMM_WEIGHTS:
        return ident
    return str(Path(ident).expanduser().resolve())


def check_local_checkpoint(path_or_id: Optional[Union[str, os.PathLike]]) -> None:
    """Refuse a local starting checkpoint that cannot be loaded, early (e.g. ``--init`` before a data
    set loads), with the message ``medfm`` gives before its imports.

    ``None``, ``"timm"`` and ``hf-hub:`` ids pass: those are fetched when the encoder is built.

    Raises:
        CheckpointError: the path is missing or is a file, a folder without ``config.json``, or a
            LoRA adapter (no full weights): :func:`medfm.checkpoint_ids.start_checkpoint_problem`.
    """
    problem = start_checkpoint_problem(path_or_id)
    if problem:
        raise CheckpointError(problem)


def resolve_checkpoint(path_or_id: Union[str, os.PathLike]) -> Path:
    """Local directory of a checkpoint id.

    Args:
        path_or_id: a local directory, or ``"hf-hub:org/name"`` (optionally ``@revision``),
            downloaded with ``huggingface_hub.snapshot_download``.

    Raises:
        CheckpointError: the directory does not exist or is a file (the message names its folder;
            :func:`medfm.checkpoint_ids.checkpoint_path_problem`, the check ``medfm`` runs before
            importing torch), or the hub cannot be reached (the message says how to work offline).
    """
    ident = str(path_or_id)
    if is_hub_id(ident):
        repo, revision = _parse_hub_id(ident)
        try:
            from huggingface_hub import snapshot_download

            return Path(snapshot_download(repo_id=repo, revision=revision))
        except Exception as err:  # offline, unknown repo, auth
            raise CheckpointError(
                f"could not fetch {ident!r} from the Hugging Face hub ({type(err).__name__}). Offline: "
                f"download it elsewhere with `{hub_download_command(ident)}` and pass DIR."
            ) from None
    problem = checkpoint_path_problem(ident)
    if problem:
        raise CheckpointError(problem)
    return Path(ident).expanduser()


def _parse_hub_id(ident: str) -> "tuple[str, Optional[str]]":
    """``(repo_id, revision or None)`` of ``"hf-hub:org/name[@revision]"``, checked offline.

    Raises:
        CheckpointError: an empty repo or revision, or a repo id the hub would refuse
            (``huggingface_hub.utils.validate_repo_id``: at most one ``/``, no spaces, ...).
    """
    repo, sep, revision = ident[len(HUB_PREFIX):].partition("@")
    expected = "'hf-hub:org/name' or 'hf-hub:org/name@revision'"
    if sep and not revision:
        raise CheckpointError(f"bad hub id {ident!r}: expected {expected} (empty revision after '@')")
    return checked_repo_id(repo, f"hub id {ident!r}", expected), (revision or None)


def checked_repo_id(repo: str, shown: str, expected: str) -> str:
    """``repo`` if the hub would accept it as a repo id (checked offline), else a one-line error.

    Args:
        repo: ``"org/name"``.
        shown: how the message names the value (``"hub repo id 'a/b/c'"``).
        expected: the accepted form, for the message (``"'org/name'"``).

    Raises:
        CheckpointError: ``bad <shown>: expected <expected> (<the hub's reason>)``, the reason from
            ``huggingface_hub.utils.validate_repo_id`` (at most one ``/``, no spaces, ...).
    """
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo)
    except HFValidationError as err:
        raise CheckpointError(f"bad {shown}: expected {expected} ({str(err).splitlines()[0]})") from None
    return repo


def load_config(path: Union[str, Path]) -> Dict[str, Any]:
    """Read and validate ``config.json`` of a checkpoint directory.

    Raises:
        CheckpointError: ``path`` is missing or a file, or its ``config.json`` is missing
            (:func:`medfm.checkpoint_ids.checkpoint_folder_problem`: a folder whose subfolders hold a
            ``config.json``, e.g. a run's ``model/`` and ``checkpoint/``, is told to pass one of
            those) or unparsable, not a JSON object, required keys absent, or
            keys of the wrong type (``kind``/``name`` non-empty strings, ``encoder`` an object
            naming the encoder or ``{}`` for multi-encoder fusers, ``args`` an object).
    """
    problem = checkpoint_folder_problem(path)
    if problem:
        raise CheckpointError(problem)
    cfg_path = Path(path).expanduser() / CONFIG_NAME
    try:
        cfg = json.loads(cfg_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"corrupt {cfg_path}: {err}") from None
    if not isinstance(cfg, dict):
        raise CheckpointError(f"{cfg_path} holds a JSON {_json_type(cfg)}, not an object; not a medfm checkpoint")
    missing = [k for k in ("kind", "name", "encoder") if k not in cfg]
    if missing:
        raise CheckpointError(f"{cfg_path} lacks required key(s) {missing}; not a medfm checkpoint")
    problem = _config_problem(cfg)
    if problem:
        raise CheckpointError(f"corrupt {cfg_path}: {problem}")
    return cfg


def _json_type(value: Any) -> str:
    """The JSON name of a parsed value's type ("array", "string", "null", ...)."""
    names = {list: "array", str: "string", type(None): "null", bool: "boolean", int: "number", float: "number"}
    return names.get(type(value), type(value).__name__)


def _config_problem(cfg: Dict[str, Any]) -> Optional[str]:
    """What is wrong with the types of a ``config.json`` dict's required keys, or None."""
    for key in ("kind", "name"):
        if not isinstance(cfg[key], str) or not cfg[key]:
            return f"{key!r} must be a non-empty string, got {cfg[key]!r}"
    enc = cfg["encoder"]
    if not isinstance(enc, dict):
        return f"'encoder' must be an object (create_encoder arguments), got a JSON {_json_type(enc)}"
    if enc and not isinstance(enc.get("name"), str):  # {}: a fuser, whose encoders are in its args
        return f"'encoder' must name the encoder ('name': str), got {enc!r}"
    if not isinstance(cfg.get("args", {}), dict):
        return f"'args' must be an object (the builder's keyword arguments), got {cfg['args']!r}"
    return None


def _read_weights(path: Union[str, Path], filename: str, read: Any) -> Any:
    """``read(str(file))`` of the safetensors file ``<path>/<filename>``, errors made clear.

    Raises:
        CheckpointError: file missing or not a valid safetensors file (truncated, corrupt).
    """
    from safetensors import SafetensorError

    file = Path(path) / filename
    if not file.is_file():
        index = file.with_name(file.name + ".index.json")
        if index.is_file():
            raise CheckpointError(f"{str(path)!r} holds sharded weights ({index.name}); medfm reads one {filename}: "
                                  "merge the shards into it (safetensors.torch.load_file each, save_file once)")
        raise CheckpointError(f"checkpoint weights missing: {file}")
    try:
        return read(str(file))
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"corrupt or truncated weights file {file}: {err}") from None


def load_state_dict(path: Union[str, Path], filename: str = WEIGHTS_NAME) -> Dict[str, torch.Tensor]:
    """Tensors of ``<path>/<filename>`` (safetensors).

    Raises:
        CheckpointError: file missing or not a valid safetensors file (truncated, corrupt).
    """
    from safetensors.torch import load_file

    return _read_weights(path, filename, load_file)


def encoder_weight_names(path_or_id: Union[str, os.PathLike]) -> Set[str]:
    """Names of the encoder tensors of a checkpoint (its ``encoder.*`` keys, prefix removed).

    Reads only the safetensors header, so it is cheap for any checkpoint size.

    Raises:
        CheckpointError: missing or corrupt checkpoint.
    """
    from safetensors import safe_open

    def header_keys(file: str) -> List[str]:
        with safe_open(file, framework="pt") as f:
            return list(f.keys())

    keys = _read_weights(resolve_checkpoint(path_or_id), WEIGHTS_NAME, header_keys)
    return {k[len("encoder."):] for k in keys if k.startswith("encoder.")}


# -- building modules from config ------------------------------------------------------------
def _registry(kind: str):
    from medfm.registry import ADAPTERS, FUSERS, OBJECTIVES

    registries = {"adapter": ADAPTERS, "objective": OBJECTIVES, "fuser": FUSERS}
    if kind not in registries:
        raise CheckpointError(f"unknown checkpoint kind {kind!r} (expected one of {sorted(registries)})")
    return registries[kind]


def build_from_config(cfg: Dict[str, Any], where: str = CONFIG_NAME) -> nn.Module:
    """A freshly initialised module described by a checkpoint ``config.json`` dict.

    Args:
        cfg: the config (see :func:`load_config`).
        where: how errors name the config (e.g. its path).

    Raises:
        CheckpointError: an unknown kind, adapter/objective/fuser or encoder name (with close
            matches), or arguments its builder refuses (unknown, missing, wrong type or value).
    """
    from medfm.registry import UnknownNameError

    registry = _registry(cfg["kind"])
    try:
        if not cfg.get("encoder"):  # multi-encoder modules (fusers) rebuild their encoders from their args
            return registry.build(cfg["name"], **cfg.get("args", {}))
        enc_cfg = dict(cfg["encoder"])
        encoder = medfm.create_encoder(enc_cfg.pop("name"), **enc_cfg)
        return registry.build(cfg["name"], encoder=encoder, **cfg.get("args", {}))
    except CheckpointError:  # e.g. a fuser's encoder initialised from another checkpoint: already clear
        raise
    except (UnknownNameError, TypeError, ValueError, KeyError) as err:
        text = err.args[0] if isinstance(err, KeyError) and err.args else err
        raise CheckpointError(f"{where} does not describe a model medfm can build "
                              f"({type(err).__name__}: {text})") from err


def preprocessing_of(encoder: nn.Module) -> Dict[str, Any]:
    """The preprocessing a checkpoint's encoder expects, for ``config.json``.

    3D encoders add ``"spatial_dims": 3`` (volumes ``(B, C, D, H, W)``); 2D configs are unchanged.
    """
    pre = {
        "in_chans": encoder.in_chans,
        "img_size": encoder.img_size,
        "mean": encoder.pixel_mean.flatten().tolist(),
        "std": encoder.pixel_std.flatten().tolist(),
        "intensity_range": [0.0, 1.0],
        "resize": "bilinear to img_size x img_size; uint8 inputs divided by 255",
    }
    if getattr(encoder, "spatial_dims", 2) == 3:
        pre.update(spatial_dims=3, resize="trilinear to img_size^3 voxels (the classification pipeline; MedMNIST 3D "
                                         "volumes already are); uint8 inputs divided by 255")
    return pre


def model_config(model: nn.Module, extra: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """The ``config.json`` dict of a medfm module (it carries ``medfm_spec`` and ``encoder``), with the
    metadata ``extra`` (training data, license, ...) added.

    Raises:
        CheckpointError: ``model`` is not a medfm adapter/objective module, or ``extra`` sets a key the
            module's own config writes (``kind``, ``name``, ``args``, ``encoder``, ``preprocessing``,
            ``medfm_version``, ``versions``): the checkpoint would no longer rebuild the module.
    """
    spec = getattr(model, "medfm_spec", None)
    encoder = getattr(model, "encoder", None)
    # what wrote it, for every kind: the same recipe trained other weights on another install
    written_by = {"medfm_version": medfm.__version__, "versions": versions()}
    if spec is not None and spec.get("kind") == "fuser" and encoder is None:  # one encoder per modality, in args
        cfg = {**written_by, "kind": "fuser", "name": spec["name"], "args": spec.get("args", {}), "encoder": {},
               "preprocessing": dict(getattr(model, "preprocessing", {}))}
        return with_extra_config(cfg, extra)
    if spec is None or encoder is None or not getattr(encoder, "config", None):
        raise CheckpointError(
            f"{type(model).__name__} is not a medfm module (needs .medfm_spec and an .encoder built by create_encoder)"
        )
    cfg = {
        **written_by,
        "kind": spec["kind"],
        "name": spec["name"],
        "args": spec.get("args", {}),
        "encoder": dict(encoder.config),
        "preprocessing": preprocessing_of(encoder),
    }
    return with_extra_config(cfg, extra)


def with_extra_config(cfg: Dict[str, Any], extra: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    """``cfg`` (the ``config.json`` keys a writer owns) with the metadata ``extra`` added.

    Raises:
        CheckpointError: ``extra`` sets keys of ``cfg`` (all named; one would overwrite the other).
    """
    clash = [k for k in (extra or {}) if k in cfg]
    if clash:
        raise CheckpointError(f"extra_config cannot set {', '.join(map(repr, clash))}: the model's own config.json "
                              f"writes {', '.join(cfg)} (the checkpoint would no longer rebuild the model)")
    return {**cfg, **(extra or {})}


def _write_weights(model: nn.Module, file: Path) -> None:
    """Write ``model.state_dict()`` as safetensors; tensors sharing storage (tied weights) are
    written as separate copies, since safetensors refuses shared memory (each name then loads back
    into its tied parameter with the same values).

    The header's ``__metadata__`` holds one key, ``format``: safetensors (0.8.0) writes that map in
    an order that changes from call to call, so two keys (``medfm_version`` was the second; it is in
    ``config.json``) made the files of identical weights differ in their bytes and sha256. With one
    key the file is a function of the tensors (two bit-identical GPU runs write the same bytes)."""
    from safetensors.torch import save_file

    state, seen = {}, set()
    for k, v in model.state_dict().items():
        v = v.detach().contiguous().cpu()
        ptr = v.untyped_storage().data_ptr()
        if v.numel() and ptr in seen:
            v = v.clone()
        seen.add(v.untyped_storage().data_ptr())
        state[k] = v
    save_file(state, str(file), metadata={"format": "pt"})


def _config_json(cfg: Dict[str, Any]) -> str:
    """``config.json`` text: numpy numbers, tuples and paths become JSON types (:func:`medfm.io.to_jsonable`).

    Raises:
        CheckpointError: a value with no JSON counterpart (the module could not be rebuilt from it).
    """
    from medfm.io import to_jsonable

    try:
        return json.dumps(to_jsonable(cfg), indent=2, sort_keys=False)
    except TypeError as err:
        raise CheckpointError(f"cannot save the config of a {cfg.get('kind')} {cfg.get('name')!r} as JSON: {err}; "
                              "its args/encoder arguments must be JSON values (numbers, strings, lists, "
                              "dicts)") from None


def refuse_non_checkpoint_dir(path: Union[str, Path],
                              advice: str = "saving would replace its contents: choose another path or delete it first"
                              ) -> None:
    """Refuse ``path`` as the place of a checkpoint to be written when writing it would destroy something else: a
    file, or a non-empty folder without ``config.json``. A missing or empty folder, or an earlier checkpoint
    (replaced), passes. Reads the filesystem only.

    Raises:
        CheckpointError: ``'<path>' exists and is not a checkpoint directory; <advice>``.
    """
    path = Path(path)
    if path.is_file() or (path.is_dir() and not (path / CONFIG_NAME).is_file() and any(path.iterdir())):
        raise CheckpointError(f"{str(path)!r} exists and is not a checkpoint directory; {advice}")


def save_pretrained(model: nn.Module, path: Union[str, Path], card: Optional[str] = None,
                    extra_config: Optional[Dict[str, Any]] = None) -> Path:
    """Save ``model`` as a checkpoint directory (written to a temp dir, then renamed).

    Args:
        model: a medfm adapter or objective module (e.g. ``ImageClassifier``, ``SimCLR``).
        path: target directory; an existing checkpoint there (a folder with ``config.json``)
            is replaced atomically, any other non-empty folder is refused.
        card: model card Markdown; default: a card generated from the config.
        extra_config: metadata merged into ``config.json`` (training data, license, ...); the keys
            the model's own config writes (``kind``, ``name``, ``args``, ``encoder``, ...) are refused.

    Returns:
        The checkpoint directory.

    Raises:
        CheckpointError: ``model`` is not a medfm module, ``extra_config`` sets a key of the model's
        own config (:func:`model_config`), or ``path`` is a file or a non-empty folder that is not
        a checkpoint (saving would delete its contents).
    """
    path = Path(path)
    refuse_non_checkpoint_dir(path)
    with atomic_dir(path) as tmp:
        write_checkpoint(model, tmp, card, extra_config)
    return path


def write_checkpoint(model: nn.Module, directory: Union[str, Path], card: Optional[str] = None,
                     extra_config: Optional[Dict[str, Any]] = None) -> None:
    """Write ``config.json``, ``model.safetensors`` and ``README.md`` into an existing directory.

    Not atomic by itself: :func:`save_pretrained` and the trainer call it inside a temp dir.
    """
    cfg = model_config(model, extra_config)
    if card is None:
        from medfm.cards import build_card

        card = build_card(cfg)
    directory = Path(directory)
    (directory / CONFIG_NAME).write_text(_config_json(cfg))
    _write_weights(model, directory / WEIGHTS_NAME)
    (directory / CARD_NAME).write_text(card)


def from_pretrained(path_or_id: Union[str, os.PathLike], map_location: Union[str, torch.device] = "cpu") -> nn.Module:
    """Load a checkpoint saved by :func:`save_pretrained` (or a LoRA adapter directory).

    Args:
        path_or_id: local directory or ``"hf-hub:org/name"``.
        map_location: device for the returned module.

    Returns:
        The module in eval mode, its weights bit-identical to the saved ones.

    Raises:
        CheckpointError: missing/corrupt files, unknown architecture, or weights that do not
            match the architecture (names the missing/unexpected/mis-shaped tensors).
    """
    path = resolve_checkpoint(path_or_id)
    if (path / ADAPTER_CONFIG_NAME).is_file():
        from medfm.adapters.lora import load_adapter

        return load_adapter(path).to(map_location).eval()
    cfg = load_config(path)
    model = build_from_config(cfg, where=str(path / CONFIG_NAME))
    state = load_state_dict(path)
    load_exact(model, state, where=str(path))
    model.medfm_checkpoint = str(path)
    return model.to(map_location).eval()


def _loads_exactly(src: torch.dtype, dst: torch.dtype) -> bool:
    """Whether values of dtype ``src`` load into ``dst`` unchanged: torch's type promotion of the
    two is ``dst`` itself (bf16/fp16 -> fp32, int32 -> int64 yes; fp64 -> fp32, fp32 -> bf16,
    fp16 <-> bf16, floats -> integers no). Integers into floats pass, as torch promotes them, although
    values beyond the significand (2^24 for fp32) would round; no medfm model has such a pair."""
    return torch.promote_types(src, dst) == dst


def check_fits(own: Dict[str, torch.Tensor], state: Dict[str, torch.Tensor], where: str = "checkpoint") -> None:
    """Check that ``state`` has exactly the names and shapes of ``own`` (a module's state dict),
    and dtypes that load into ``own``'s without loss (bf16/fp16 into fp32 is fine; fp64 into
    fp32, fp32 into bf16 or floats into integer buffers would change the values silently).

    Raises:
        CheckpointError: missing, unexpected, mis-shaped or lossy-dtype tensors, in one clear message.
    """
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [f"{k}: {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in own
              if k in state and state[k].shape != own[k].shape]
    lossy = [f"{k}: {state[k].dtype} into {own[k].dtype}" for k in own
             if k in state and not _loads_exactly(state[k].dtype, own[k].dtype)]
    if lossy:
        raise CheckpointError(f"weights in {where} would lose precision when loaded: {len(lossy)} tensor(s) "
                              f"(e.g. {lossy[:2]}); convert the file to the model's dtypes first")
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[:3]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[:3]})")
        if shapes:
            parts.append(f"{len(shapes)} mis-shaped (e.g. {shapes[:2]})")
        raise CheckpointError(f"weights in {where} do not match the architecture: " + "; ".join(parts))


def load_exact(model: nn.Module, state: Dict[str, torch.Tensor], where: str = "checkpoint") -> None:
    """Load ``state`` into ``model`` strictly, answering mismatches with one clear error.

    Raises:
        CheckpointError: missing, unexpected or mis-shaped tensors.
    """
    check_fits(model.state_dict(), state, where)
    model.load_state_dict(state, strict=True)


def load_encoder_weights(encoder: nn.Module, path_or_id: Union[str, os.PathLike]) -> None:
    """Copy the encoder weights of a medfm checkpoint into ``encoder``.

    The checkpoint may hold any module with an ``encoder`` (a pretraining objective, a
    classifier, ...); its encoder name, in_chans and img_size must match ``encoder``'s.
    An encoder whose layers were split into per-domain copies (a text segmenter's
    ``domain_norm`` / ``domain_stem``) takes a plain checkpoint: every copy gets the plain
    layer's tensors (:func:`medfm.adapters.domain_layers.domain_weight_sources`).

    Raises:
        CheckpointError: no full checkpoint there (a LoRA adapter: merge it first;
            :func:`check_local_checkpoint`), mismatched encoder architecture or weights.
    """
    path = resolve_checkpoint(path_or_id)
    check_local_checkpoint(path)
    cfg = load_config(path)
    want, have = cfg["encoder"], getattr(encoder, "config", {})
    for key in ("name", "in_chans", "img_size"):
        if have.get(key) is not None and want.get(key) != have.get(key):
            raise CheckpointError(
                f"checkpoint {str(path)!r} holds encoder {key}={want.get(key)!r} but {have.get(key)!r} was asked for"
            )
    state = load_state_dict(path)
    enc_state = {k[len("encoder."):]: v for k, v in state.items() if k.startswith("encoder.")}
    if not enc_state:
        raise CheckpointError(f"checkpoint {str(path)!r} has no encoder weights (no 'encoder.' tensors)")
    from medfm.adapters.domain_layers import domain_weight_sources

    enc_state = {name: enc_state[src] for name, src in domain_weight_sources(encoder, enc_state).items()}
    load_exact(encoder, enc_state, where=str(path))
