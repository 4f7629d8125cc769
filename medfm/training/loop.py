"""The one training loop behind ``medfm pretrain`` and ``medfm finetune``.

Determinism and resume: the epoch's sample order is ``randperm`` under a generator seeded
by (seed, epoch) and every step's augmentations draw from a generator seeded by
(seed, global step); model, optimizer and torch RNG state are checkpointed (safetensors +
JSON) into ``<output>/checkpoint`` atomically every ``checkpoint_every`` steps and at each
epoch end. A run killed at any moment and restarted with ``resume=True`` therefore ends
with the same weights as an uninterrupted run with the same seed (on the same hardware
and thread count; on a GPU only with ``deterministic=True``, see
:mod:`medfm.training.determinism`).

Mixed precision is ``torch.autocast`` in bf16 (CPU or CUDA); ``precision="auto"`` picks
bf16 when the CPU has AVX-512 BF16 / AMX or the GPU supports bf16. (DESIGN.md planned an
accelerate-based loop; accelerate's process-wide ``AcceleratorState`` refuses a second
precision in the same process — tests, benchmarks, notebooks — so the loop autocasts
directly. It is single-device.)
"""
from __future__ import annotations

import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn
from tqdm.auto import tqdm

from medfm.arg_checks import check_bool
from medfm.checkpoint_ids import ADAPTER_WEIGHTS_NAME, WEIGHTS_NAME
from medfm.io import RUN_FOLDER_ADVICE, atomic_dir, atomic_write_text, refuse_file_in_the_way, restore_interrupted_dir
from medfm.training.determinism import deterministic_kernels
from medfm.training.state import find_training_state, load_training_state, save_training_state
# the train section and the seed rule, torch-free (a recipe is read without torch); re-exported here
from medfm.training.train_config import MAX_SEED, PRECISIONS, TrainConfig, check_seed

log = logging.getLogger(__name__)

def cpu_supports_bf16() -> bool:
    """True when this CPU has native bf16 arithmetic (AVX-512 BF16 or AMX)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def training_device() -> torch.device:
    """The device :class:`Trainer` trains on: CUDA when available, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_precision(precision: str, device: torch.device) -> str:
    """Map "auto" to "bf16" or "fp32" for ``device``; returns "bf16" or "no"."""
    if precision == "auto":
        if device.type == "cuda":
            precision = "bf16" if torch.cuda.is_bf16_supported() else "fp32"
        else:
            precision = "bf16" if cpu_supports_bf16() else "fp32"
    return "bf16" if precision == "bf16" else "no"


def lr_at(step: int, total: int, warmup: int, cfg: TrainConfig) -> float:
    """Learning rate at optimizer ``step`` (0-based): linear warm-up then cosine decay."""
    if warmup > 0 and step < warmup:
        return cfg.lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    floor = cfg.lr * cfg.min_lr_ratio
    return floor + (cfg.lr - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def param_groups(model: nn.Module, weight_decay: float):
    """AdamW groups: decay for weights of rank >= 2, none for biases, norms and embeddings' scalars."""
    decay, no_decay = [], []
    for _, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (decay if p.ndim >= 2 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def get_batch(dataset: Any, indices: torch.Tensor) -> Dict[str, Any]:
    """A dict batch for ``indices``: ``dataset.get_batch`` when available, else collate items."""
    if hasattr(dataset, "get_batch"):
        return dataset.get_batch(indices)
    from torch.utils.data import default_collate

    return default_collate([dataset[int(i)] for i in indices])


def steps_per_epoch(n_samples: int, batch_size: int) -> int:
    """Optimizer steps in one epoch of ``n_samples`` (``n_samples // batch_size``: the last incomplete batch
    is dropped). Runners call it once their training set is known, before they write anything (a set smaller
    than a batch was refused by :class:`Trainer`, after ``config.yaml`` had been written).

    Raises:
        ValueError: fewer samples than one batch (names both and ``train.batch_size``).
    """
    if n_samples < batch_size:
        raise ValueError(f"the training set has {n_samples} samples, fewer than one batch of {batch_size} "
                         "(train.batch_size)")
    return n_samples // batch_size


def corrupt_state_error(state_dir: Path, detail: str) -> ValueError:
    """The error of a resumed training state that cannot be this run's: ``cannot resume from <state_dir>: training
    state corrupt (<detail>)`` (:func:`check_resume_counters`; ``medfm vqa``'s epoch log:
    :func:`medfm.training.vqa.check_state_log`). Returned, for the caller to raise."""
    return ValueError(f"cannot resume from {state_dir}: training state corrupt ({detail})")


def check_resume_counters(state_dir: Path, counters: Dict[str, Any], steps: int, epochs: int, n_samples: int,
                          batch_size: int, keys: Sequence[Optional[str]] = ("epoch", "step_in_epoch", "global_step")
                          ) -> Tuple[int, int, int]:
    """Refuse a resumed training state whose counters do not fit this run: another training set size or batch
    size gives another number of steps per epoch, and the run silently skipped or repeated steps (a finished
    run's state resumed on 32 samples instead of 16 trained nothing and reported success). The check of
    :class:`Trainer` and of the runners with their own loop (``medfm vqa``).

    Args:
        state_dir: the state's folder, for the message.
        counters: what :func:`medfm.training.state.load_training_state` returned.
        steps: this run's optimizer steps per epoch; epochs: its ``train.epochs``.
        n_samples, batch_size: what ``steps`` comes from, for the message.
        keys: the counters' names of the finished epochs, the steps done in the current epoch and the steps
            done in all; ``None`` for the second: a state saved at epoch ends only, whose count is 0
            (``medfm vqa``: ``("epoch", None, "step")``; its epoch log is its own check).

    Returns:
        ``(epoch, step in epoch, global step)`` as integers.

    Raises:
        ValueError: ``cannot resume from <state_dir>: training state corrupt (counters ...)`` (a counter missing
            or no integer), ``cannot resume from <state_dir>: its state (epoch 2, step 0, global step 8) does not
            fit this run's 2 epochs of 4 steps (16 samples, batch 4); ...``.
    """
    try:
        epoch, step, done = (0 if key is None else int(counters[key]) for key in keys)
    except (KeyError, TypeError, ValueError):
        shown = {k: v for k, v in counters.items() if k in keys} if isinstance(counters, dict) else counters
        raise corrupt_state_error(state_dir, f"counters {shown!r}") from None
    if done != epoch * steps + step or step >= steps or epoch > epochs:
        raise ValueError(f"cannot resume from {state_dir}: its state (epoch {epoch}, step {step}, global step {done}) "
                         f"does not fit this run's {epochs} epochs of {steps} steps ({n_samples} samples, batch "
                         f"{batch_size}); resume with the run's data and train settings, or choose another output")
    return epoch, step, done


def check_output_folder(output: Path) -> None:
    """Refuse a run folder ``output`` that is a file, or lies under one, before anything is read or written
    (it failed with ``[Errno 17] File exists`` when the run created it, after the data were read).

    Raises:
        NotADirectoryError: ``output`` or one of its parents is an existing file (the topmost named), in medfm's one
            wording (:func:`medfm.io.refuse_file_in_the_way` with :data:`medfm.io.RUN_FOLDER_ADVICE`): ``cannot
            write 'runs/x/out': 'runs/x' is a file, not a folder; a run writes its files in a folder there: choose
            another output`` (was ``Not a directory: output ... is a file; ...`` / ``... lies under ..., a file;
            ...``, words of its own).
    """
    refuse_file_in_the_way(Path(output), RUN_FOLDER_ADVICE)


def refuse_existing_run(output: Path, resume: bool,
                        state_dirs: "Sequence[str] | Dict[str, Optional[str]]" = ("checkpoint",),
                        advice: Optional[str] = None) -> None:
    """Refuse to start a new run in ``output`` when it already holds a run's training state, and a run
    folder that cannot be one (:func:`check_output_folder`).

    Runners call this before they write anything (``config.yaml``, a LoRA ``base/``), so a
    refused run leaves the existing run's files untouched (a refused LoRA run used to
    overwrite the ``base/`` weights the existing adapter was trained on).

    Args:
        output: the run directory.
        resume: True when the caller continues the run (only finished weights without a state are refused);
            a ``bool`` (``resume="no"`` used to resume).
        state_dirs: sub-directories of ``output`` that hold a resumable state (``trainer_state.json``), looked at
            in their order; a dict gives each its own advice (None: ``advice``), so that one call checks sub-folders
            that need different advice (``medfm fuse``: another run's models, which a resume would not continue, then
            the recipe's, :func:`medfm.training.fusion_run.start_run`; it took a call per advice).
        advice: what the error tells the user to do (default: ``pass --resume to continue it or choose another
            --output``).

    Raises:
        FileExistsError: one of ``state_dirs`` holds a state and ``resume`` is False
            (``runs/x already holds a checkpoint (checkpoint/); pass --resume to continue it or choose another
            --output``), also one a kill inside its rename window left aside
            (:func:`medfm.training.state.find_training_state`; named: ``(checkpoint/, set aside as
            .checkpoint.old-… by a kill while it was saved)``; a new run used to start over it, ``metrics.jsonl``
            emptied), or several such versions wait beside a missing one (ambiguous).
        FileExistsError: no state is found but a folder beside one of ``state_dirs`` holds a finished run's
            weights (:func:`finished_weights`: its ``checkpoint/`` deleted by hand, a new run overwrote the run's
            weights and results and emptied its ``metrics.jsonl``): ``runs/x already holds a finished run's weights
            (model/model.safetensors) with no training state to resume; a new run would overwrite them and the
            run's results: choose another --output or delete runs/x/model``, with ``resume`` too (nothing to
            continue: the run started over them). A run killed before its first checkpoint has none (a partial
            ``metrics.jsonl``, ``config.yaml``, a LoRA ``base/``): not refused.
        NotADirectoryError: ``output`` is a file or under one.
        ValueError: ``resume`` not true/false.
    """
    check_bool("resume", resume)
    check_output_folder(output)
    advices = state_dirs if isinstance(state_dirs, dict) else dict.fromkeys(state_dirs)
    stateless = []
    for sub, own in advices.items():  # a state set aside by a kill inside the checkpoint's rename window too
        found = find_training_state(Path(output) / sub)
        if found is None:
            stateless.append(sub)
        elif not resume:
            aside = "" if found == Path(output) / sub else f", set aside as {found.name} by a kill while it was saved"
            raise FileExistsError(f"{output} already holds a checkpoint ({sub}/{aside}); "
                                  f"{own or advice or 'pass --resume to continue it or choose another --output'}")
    weights = finished_weights(output, stateless)  # --resume too: with no state, it starts over them
    if weights is not None:
        raise FileExistsError(f"{output} already holds a finished run's weights ({weights.relative_to(output)}) with "
                              "no training state to resume; a new run would overwrite them and the run's results: "
                              f"choose another --output or delete {weights.parent}")


#: where a run leaves its finished weights, relative to the folder its training state is saved in (``output``, a
#: fusion model's ``models/<label>``): ``model/`` (:func:`medfm.training.adaptation.save_final`, a fusion model's),
#: ``adapter/`` (LoRA) and ``checkpoint/`` (``medfm pretrain``'s and ``medfm vqa``'s final weights). Not ``base/``:
#: a LoRA run writes its starting weights there before its first step.
FINAL_WEIGHTS = tuple(f"{folder}/{name}" for folder in ("model", "adapter", "checkpoint")
                      for name in (WEIGHTS_NAME, ADAPTER_WEIGHTS_NAME))


def finished_weights(output: Path, state_dirs: Sequence[str] = ("checkpoint",)) -> Optional[Path]:
    """The first finished run's weights file (:data:`FINAL_WEIGHTS`) in a folder that holds one of ``state_dirs``
    of ``output`` (``checkpoint``: ``output`` itself; ``models/late/checkpoint``: ``output/models/late``), or None.

    A run writes these files once its training has ended, so they mark a finished run also when its ``checkpoint/``
    was deleted (:func:`refuse_existing_run`); a run killed before its first checkpoint has none.

    Args:
        output: the run directory; state_dirs: sub-directories of ``output`` that hold a resumable state.

    Returns:
        the file's path under ``output``, e.g. ``runs/x/model/model.safetensors``; None when there is none.
    """
    folders = dict.fromkeys(Path(output) / Path(sub).parent for sub in state_dirs)  # in order, once each
    for folder in folders:
        for rel in FINAL_WEIGHTS:
            if (folder / rel).is_file():
                return folder / rel
    return None


def host_threads() -> Dict[str, Any]:
    """``{"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads()}``: the machine's CPU count and the torch
    CPU threads this process computes with now (the names of ``host`` in ``medfm eval --suite``'s ``results.json``).
    A training run's record of them is the ``"host"`` entry of every training row of its ``metrics.jsonl``
    (:func:`set_train_threads`)."""
    return {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads()}


def set_train_threads(cfg: TrainConfig) -> Dict[str, Any]:
    """Apply ``cfg.num_threads`` (torch's CPU threads, for the process; None: torch's setting is left alone) when a
    run starts training: after every check, a resumed state's included, so that a refused run leaves the process's
    settings as they were (set when :class:`Trainer` was built, or before ``medfm vqa`` checked its resumed state,
    they were changed by a refused resume). The one place of :meth:`Trainer.fit`, ``medfm vqa``'s loop
    (:func:`medfm.training.vqa.run_vqa`) and ``medfm fuse``'s start (:func:`medfm.training.fusion_run.start_run`).

    Returns:
        what the run trains with, :func:`host_threads` once the setting is applied: the runs' loops write it as
        ``"host"`` into every training row of ``metrics.jsonl`` (a :class:`Trainer` row per logged step, a ``medfm
        vqa`` row per epoch), so that the thread count behind a run's weights can be read afterwards (a recipe
        without ``num_threads`` trains with torch's default, the machine's core count, and another count gives
        other weights for the same seed); a run resumed with another count (allowed: ``train.num_threads`` is one
        of :data:`medfm.training.resume.OPERATIONAL_KEYS`) shows both, row by row.
    """
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    return host_threads()


def check_finite_loss(loss: torch.Tensor, epoch: int, step: int) -> None:
    """Stop a run whose loss became NaN/inf (before it is stepped or saved).

    Args:
        loss: the scalar loss; epoch: 0-based epoch; step: step within the epoch.

    Raises:
        ValueError: non-finite ``loss`` (names the 1-based epoch and the step).
        TypeError: ``loss`` is no one-element tensor (a float, a per-sample vector: was torch's
            ``isfinite()`` argument error or "Boolean value of Tensor ... is ambiguous"; checked only when
            the finiteness test fails, so a good step pays nothing).
    """
    try:
        finite = bool(torch.isfinite(loss))
    except (TypeError, RuntimeError):
        what = f"a tensor of shape {tuple(loss.shape)}" if isinstance(loss, torch.Tensor) else repr(loss)[:60]
        raise TypeError(f"the step's loss must be a scalar tensor, got {what} (step_fn returns "
                        "{'loss': scalar tensor, ...})") from None
    if not finite:
        raise ValueError(f"loss became {loss.item()} at epoch {epoch + 1}, step {step}; lower train.lr or check the "
                         "data")


def read_metrics_log(path: Path) -> List[Dict[str, Any]]:
    """The records of a ``metrics.jsonl`` (one JSON object per line), in the order written.

    Blank lines are skipped, and so is a last line that does not parse: the record a run killed
    mid-write cut off (:meth:`Trainer._log` appends whole lines; a resume trims the cut line).

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: a line other than the last is not a JSON object (names the file and line).
    """
    lines = [(i, ln) for i, ln in enumerate(Path(path).read_text().splitlines(), 1) if ln.strip()]
    rows = []
    for i, ln in lines:
        try:
            record = json.loads(ln)
        except ValueError:
            record = None
        if not isinstance(record, dict):
            if i == lines[-1][0]:
                break
            raise ValueError(f"{path}:{i} is not a JSON object (a metrics.jsonl line): {ln[:80]!r}")
        rows.append(record)
    return rows


StepFn = Callable[[nn.Module, Dict[str, Any], torch.Generator], Dict[str, torch.Tensor]]
SaveFn = Callable[[nn.Module, Path], None]


def note_other_versions(source: Path) -> None:
    """Log a warning (this module's logger) when the training state in ``source`` was saved under other versions
    than are installed now: its ``config.json``'s ``versions`` (:func:`medfm.hub.model_config`) against
    :func:`medfm.versions.versions`. The resumed run goes on, but it may not match an uninterrupted run bit for
    bit (the same CLIP recipe trained other weights on another install: docs/ssl_results.md). Nothing is said for
    a state without a readable ``config.json`` or one saved before versions were recorded."""
    from medfm.versions import version_changes

    try:
        recorded = json.loads((Path(source) / "config.json").read_text()).get("versions")
    except (OSError, ValueError, AttributeError):
        return
    changed = version_changes(recorded)
    if changed:
        then = ", ".join(f"{name} {old}" for name, (old, _) in changed.items())
        now = ", ".join(f"{name} {new or 'not installed'}" for name, (_, new) in changed.items())
        log.warning("resuming from %s, saved with %s; installed now: %s. The resumed run may not match an "
                    "uninterrupted run bit for bit", source, then, now)


class Trainer:
    """Runs ``step_fn`` over a dataset with AdamW + cosine, checkpoints and resume.

    Args:
        model: the module to train (its trainable parameters are optimised).
        step_fn: ``(model, batch, gen) -> {"loss": scalar, ...}``; ``gen`` seeds augmentations.
        dataset: a map-style dataset of dict samples, ideally with ``get_batch(indices)``.
        cfg: :class:`TrainConfig`.
        output: run directory (``metrics.jsonl``, ``checkpoint/``, ``training_curve.png`` drawn once at the end of a
        fit).
        save_fn: writes the user-facing checkpoint files of ``model`` into a directory.
        epoch_end_fn: optional ``(model, epoch) -> dict`` of extra metrics (e.g. validation).

    Raises:
        TypeError: ``cfg`` not a :class:`TrainConfig`; a step whose result has no scalar ``"loss"`` tensor.
        ValueError: dataset smaller than one batch; a model without trainable parameters; non-finite loss
            (names the step); a resumed state whose counters do not fit this run's steps per epoch (another
            training set or batch size), before ``fit`` writes anything or calls its ``before_write``.
        FileExistsError: ``output`` already holds a checkpoint and ``resume`` is False, or a finished run's weights
            without a training state, ``resume`` or not (:func:`refuse_existing_run`).
        NotADirectoryError: ``output`` is a file or under one.
        DeterminismError: ``cfg.deterministic`` and an op without a deterministic kernel on the device
            (:mod:`medfm.training.determinism`).
    """

    def __init__(self, model: nn.Module, step_fn: StepFn, dataset: Any, cfg: TrainConfig, output: Path,
                 save_fn: SaveFn, epoch_end_fn: Optional[Callable[[nn.Module, int], Dict[str, Any]]] = None) -> None:
        if not isinstance(cfg, TrainConfig):
            raise TypeError(f"cfg must be a TrainConfig, got {type(cfg).__name__}")
        if not any(p.requires_grad for p in model.parameters()):
            raise ValueError("the model has no trainable parameters (every parameter has requires_grad=False)")
        self.cfg = cfg
        self.output = Path(output)
        self.step_fn = step_fn
        self.dataset = dataset
        self.save_fn = save_fn
        self.epoch_end_fn = epoch_end_fn
        self.steps_per_epoch = steps_per_epoch(len(dataset), cfg.batch_size)
        self.device = training_device()
        self.bf16 = resolve_precision(cfg.precision, self.device) == "bf16"
        self.model = model.to(self.device)
        self.optimizer = torch.optim.AdamW(param_groups(self.model, cfg.weight_decay), lr=cfg.lr)
        self.total_steps = self.steps_per_epoch * cfg.epochs
        self.warmup_steps = int(round(cfg.warmup_epochs * self.steps_per_epoch))
        self._host: Optional[Dict[str, Any]] = None  # set_train_threads' record, when a fit starts training

    @property
    def checkpoint_dir(self) -> Path:
        """``<output>/checkpoint``: the resumable checkpoint (``save_fn`` files + training state),
        replaced atomically at each save."""
        return self.output / "checkpoint"

    def _save(self, counters: Dict[str, Any]) -> None:
        with atomic_dir(self.checkpoint_dir) as tmp:
            self.save_fn(self.model, tmp)
            save_training_state(tmp, self.model, self.optimizer, counters)

    def _log(self, record: Dict[str, Any]) -> None:
        with open(self.output / "metrics.jsonl", "a") as fh:
            fh.write(json.dumps(record) + "\n")

    def _trim_log(self, global_step: int) -> None:
        """Drop log lines after the checkpoint's ``global_step`` (atomic rewrite). A last line that does
        not parse is the record a kill cut off mid-write (always after the checkpoint): dropped too
        (:func:`read_metrics_log`)."""
        path = self.output / "metrics.jsonl"
        if path.is_file():
            keep = [r for r in read_metrics_log(path) if r.get("step", 0) <= global_step]
            atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in keep))

    def _plot_curve(self) -> None:
        """``<output>/training_curve.png`` from ``metrics.jsonl`` (:func:`medfm.evaluation.plots.plot_training_curve`),
        drawn once when a fit ends. A figure that cannot be drawn is logged (a warning of this module's logger, as
        medfm's other "not done, going on" notes) instead of failing the finished run (its checkpoint is already
        saved): a ``warnings.warn`` became an error under ``python -W error`` and failed that run after all."""
        from medfm.evaluation.plots import plot_training_curve

        try:
            plot_training_curve(read_metrics_log(self.output / "metrics.jsonl"), self.output / "training_curve.png")
        except Exception as e:  # noqa: BLE001 - a figure must not lose a finished run
            log.warning("training_curve.png not written for %s: %s: %s", self.output, type(e).__name__, e)

    def fit(self, resume: bool = False, before_write: Optional[Callable[[], None]] = None) -> nn.Module:
        """Train to the end (or continue a killed run with ``resume=True``); returns the model.

        ``before_write``: called once the run may start, before the fit writes anything (``metrics.jsonl``):
        after a resumed state is loaded and its counters checked (:func:`check_resume_counters`), so that a
        runner writing its ``config.yaml`` and ``init.json`` there leaves the run folder as it was when the
        resume is refused (written before the fit, they were rewritten with the new ``--data-root`` first). The
        resumed state is read where it is found (:func:`medfm.training.state.find_training_state`: ``checkpoint/``,
        or the previous version a kill inside its rename window left aside), and the folder repaired
        (:func:`medfm.io.restore_interrupted_dir`) only once the checks passed, just before ``before_write``: a
        refused resume leaves the run folder exactly as it was (repaired first, it had renamed and deleted folders).
        A state saved under other versions than are installed now is resumed with a warning naming them
        (:func:`note_other_versions`).

        When the last epoch ends, ``<output>/training_curve.png`` is drawn from ``metrics.jsonl``
        (once; not when the fit raises)."""
        cfg = self.cfg
        # before mkdir (a file there was an "[Errno 17] File exists") and before a resume restores anything
        refuse_existing_run(self.output, resume)
        counters = {"epoch": 0, "step_in_epoch": 0, "global_step": 0}
        # checkpoint/, or the version a kill inside its rename window left aside (read there: missed, the run
        # started over with metrics.jsonl emptied)
        source = find_training_state(self.checkpoint_dir) if resume else None
        resumed = source is not None
        if resumed:  # read once, checked before anything is written
            counters = load_training_state(source, self.model, self.optimizer)
            check_resume_counters(source, counters, self.steps_per_epoch, self.cfg.epochs,
                                  len(self.dataset), self.cfg.batch_size)
            note_other_versions(source)
        if resume:  # the checks passed: put the version aside back, delete the leftovers of kills (the first write)
            restore_interrupted_dir(self.checkpoint_dir)
        if before_write is not None:
            before_write()
        self.output.mkdir(parents=True, exist_ok=True)
        if resumed:
            self._trim_log(counters["global_step"])
        else:
            torch.manual_seed(cfg.seed)
            (self.output / "metrics.jsonl").write_text("")
        # every check passed: a refused run (e.g. a resume) left the thread count alone; each step row records it
        self._host = set_train_threads(cfg)
        with deterministic_kernels(cfg.deterministic):
            self._train(counters)
        self._plot_curve()
        return self.model

    def _train(self, counters: Dict[str, Any]) -> None:
        """The epochs from ``counters`` (a fresh run's zeros or a checkpoint's) to the end; every step row of
        ``metrics.jsonl`` gets ``"host"``: what :func:`set_train_threads` returned when the fit started."""
        cfg = self.cfg
        device = self.device
        n = len(self.dataset)
        for epoch in range(counters["epoch"], cfg.epochs):
            self.model.train()
            order = torch.randperm(n, generator=torch.Generator().manual_seed(cfg.seed * 7919 + epoch))
            start = counters["step_in_epoch"] if epoch == counters["epoch"] else 0
            bar = tqdm(range(start, self.steps_per_epoch), desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False,
                       mininterval=2.0, initial=start, total=self.steps_per_epoch)
            t0, seen = time.perf_counter(), 0
            for step in bar:
                gstep = epoch * self.steps_per_epoch + step
                idx = order[step * cfg.batch_size:(step + 1) * cfg.batch_size]
                batch = {k: (v.to(device) if isinstance(v, torch.Tensor) else v)
                         for k, v in get_batch(self.dataset, idx).items()}
                gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + gstep)
                lr = lr_at(gstep, self.total_steps, self.warmup_steps, cfg)
                for group in self.optimizer.param_groups:
                    group["lr"] = lr
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=self.bf16):
                    out = self.step_fn(self.model, batch, gen)
                loss = out.get("loss") if isinstance(out, dict) else None  # (no loss: check_finite_loss names it)
                check_finite_loss(loss, epoch, step)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.grad_clip:
                    torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
                self.optimizer.step()
                hook = getattr(self.model, "on_step_end", None)
                if callable(hook):
                    hook(gstep)
                seen += idx.numel()
                done = gstep + 1
                if done % cfg.log_every == 0 or step == self.steps_per_epoch - 1:
                    rec = {"step": done, "epoch": epoch + 1, "lr": lr,
                           **{k: float(v.detach()) for k, v in out.items()
                              if isinstance(v, torch.Tensor) and v.ndim == 0}}
                    rec["img_per_s"] = round(seen / max(1e-9, time.perf_counter() - t0), 1)
                    rec["time"] = time.perf_counter()
                    rec["host"] = self._host
                    self._log(rec)
                    bar.set_postfix(loss=f"{rec['loss']:.4f}")
                at_end = step == self.steps_per_epoch - 1
                if cfg.checkpoint_every and done % cfg.checkpoint_every == 0 and not at_end:
                    self._save({"epoch": epoch, "step_in_epoch": step + 1, "global_step": done})
            bar.close()
            counters = {"epoch": epoch + 1, "step_in_epoch": 0, "global_step": (epoch + 1) * self.steps_per_epoch}
            if self.epoch_end_fn is not None:
                extra = self.epoch_end_fn(self.model, epoch)
                if extra:
                    self._log({"step": counters["global_step"], "epoch": epoch + 1, **extra})
            self._save(counters)


__all__ = ["Trainer", "TrainConfig", "StepFn", "SaveFn", "PRECISIONS", "MAX_SEED", "FINAL_WEIGHTS", "check_seed",
           "cpu_supports_bf16", "training_device", "resolve_precision", "lr_at", "param_groups", "get_batch",
           "steps_per_epoch", "corrupt_state_error", "check_resume_counters", "check_output_folder",
           "refuse_existing_run", "finished_weights", "host_threads", "set_train_threads", "check_finite_loss",
           "read_metrics_log", "note_other_versions"]
