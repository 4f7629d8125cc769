"""Training and evaluating a VQA adapter on VQA-RAD (``medfm vqa <recipe> --output DIR``).

A run (MEVF split: train on the 3,064 train questions, score the 451 test questions once at
the end; there is no validation split, so nothing is selected on the test set; its per-epoch
accuracy is logged for the curve only):

1. decode the 314 referenced images once (``medfm.data.vqa_rad``), build the training
   answer vocabulary;
2. run the frozen text encoder once over all questions (``encode_tokens``);
3. mode ``frozen``: run the frozen image encoder once over the images and train only the
   fusion + heads on cached tokens; ``lora``: LoRA on the encoder (peft, head/fusion in
   ``modules_to_save``), merged into the weights before saving; ``full``: everything trains;
4. AdamW with linear warm-up + cosine decay (``medfm.training.loop.lr_at``), seeded order;
   the training forward runs under bf16 autocast when ``train.precision`` resolves to bf16
   (as in :class:`medfm.training.loop.Trainer`; the shipped recipes say ``fp32``), the loss
   and all evaluation in fp32;
   after every epoch the training state (weights, optimizer, RNG, log) is written atomically
   to ``train_state/``, so ``--resume`` continues after the last finished epoch with the
   same result as an uninterrupted run;
5. write ``checkpoint/`` (``medfm.hub`` layout; the text encoder is referenced, not saved),
   ``predictions.jsonl`` (top-k ranked answers per test question), ``metrics.jsonl``,
   ``results.json``, ``report.md``, ``accuracy_by_question_type.png``, ``training_curve.png``
   (:data:`VQA_REPORT_FILES`); an earlier report's files go when the run starts writing (with ``config.yaml``:
   :func:`medfm.evaluation.report.start_report_dir`), so a resumed finished run whose evaluation fails leaves no
   ``results.json`` beside its new checkpoint.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch
from torch import nn
from tqdm.auto import tqdm


from medfm.adapters.lora import LoraSettings
from medfm.arg_checks import check_number, is_integer, shown
from medfm.config import (ConfigError, check_field_types, from_dict, load_yaml, recipe_args_errors,
                          recipe_location, to_dict, with_overrides)
from medfm.io import atomic_dir, atomic_write_json, atomic_write_text, restore_interrupted_dir, to_jsonable
from medfm.training.loop import (TrainConfig, check_finite_loss, check_resume_counters, corrupt_state_error, lr_at,
                                 param_groups, resolve_precision, set_train_threads, steps_per_epoch)
from medfm.training.state import STATE_JSON, find_training_state, load_training_state, save_training_state
from medfm.training.recipes import EncoderConfig
from medfm.training.run_folder import discards_failed_output

VQA_MODES = ("frozen", "lora", "full")
#: the files a VQA run's report writes besides ``checkpoint/`` and ``results.json`` (its ``"files"``, cleared of an
#: earlier report when the run starts writing)
VQA_REPORT_FILES = ("predictions.jsonl", "metrics.jsonl", "accuracy_by_question_type.png", "training_curve.png",
                    "report.md")
#: published VQA-RAD test accuracies (closed / open, %), for the report
PUBLISHED = [
    {"model": "PubMedCLIP (Eslami et al. 2023)", "closed": 80.0, "open": 60.1},
    {"model": "BiomedCLIP (Zhang et al. 2023)", "closed": 79.8, "open": 67.6},
    {"model": "LLaVA-Med (Li et al. 2023)", "closed": 84.2, "open": 61.5},
]


@dataclass
class VQADataConfig:
    """VQA-RAD input: image side ``size`` px, ``in_chans`` (1: grayscale), ``data_root`` override.

    Raises:
        ValueError: ``size`` not an integer >= 1 (:func:`medfm.arg_checks.check_number`), ``in_chans``
            not the integer 1 or 3 (``True`` is refused, not taken as 1), ``data_root`` not a string or null.
    """

    size: int = 28
    in_chans: int = 1
    data_root: Optional[str] = None

    def __post_init__(self) -> None:
        check_field_types(self, "data.")
        check_number("data.size", self.size, ge=1, integer=True, hint=" (an image side in px, e.g. 28)")
        if not is_integer(self.in_chans) or self.in_chans not in (1, 3):
            raise ValueError(f"data.in_chans must be 1 (grayscale) or 3 (RGB), got {shown(self.in_chans)}")


@dataclass
class VQAHeadConfig:
    """Fusion + classifier options of :class:`medfm.adapters.vqa.VQAModel`, and the type-loss weight.

    ``type_weight`` (a finite number >= 0; 0: no answer-type loss) weighs the type loss in training
    (:meth:`medfm.adapters.vqa.VQAModel.loss`); the other options are :class:`~medfm.adapters.vqa.VQAModel`'s
    and are checked by its :func:`~medfm.adapters.vqa.check_vqa_head` (``heads`` splits ``dim`` only for the
    attention fusions; ``bilinear`` has none).

    Raises:
        ValueError: an unknown ``fusion``, a bad ``dim``/``heads``/``layers``/``dropout``
            (:func:`medfm.adapters.vqa.check_vqa_head`), ``type_weight`` not a finite number >= 0
            (:func:`medfm.arg_checks.check_number`), ``type_mask`` not true/false.
    """

    fusion: str = "cross_attention"
    dim: int = 128
    heads: int = 4
    layers: int = 2
    dropout: float = 0.1
    type_mask: bool = False
    type_weight: float = 0.5

    def __post_init__(self) -> None:
        from medfm.adapters.vqa import check_vqa_head

        check_vqa_head(self.fusion, self.dim, self.heads, self.layers, self.dropout)
        check_number("type_weight", self.type_weight, ge=0, hint=" (0: no answer-type loss)")
        check_field_types(self)  # (type_mask) the recipe reader checks types; this covers Python use


@dataclass
class VQARecipe:
    """``medfm vqa`` recipe (``finetune/vqa_*.yaml``).

    Attributes:
        requires_init: the recipe names a pretrained encoder; ``--init CKPT`` (or
            ``encoder.pretrained``) must be given.
        mode: "frozen" (encoder frozen, its tokens cached), "lora" or "full".
        text_encoder: spec of the frozen text encoder (``{"name": "minilm"}``).
        top_k: ranked answers written per test question. n_boot: bootstrap resamples.
        question_only: control run (mode "frozen" only): every image's tokens are zeros,
            so the model answers from the question alone (measures language priors).

    Raises:
        ValueError: an unknown ``mode``, ``question_only`` without mode "frozen", ``top_k`` or
            ``n_boot`` not an integer >= 1 (:func:`medfm.arg_checks.check_number`), a field of the wrong type
            (``question_only="no"`` zeroed the image tokens; each section is its dataclass or a mapping of its
            settings: :func:`medfm.config.check_field_types`); ConfigError: a bad mapping section.
    """

    data: VQADataConfig = field(default_factory=VQADataConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    requires_init: bool = False
    text_encoder: Dict[str, Any] = field(default_factory=lambda: {"name": "minilm"})
    head: VQAHeadConfig = field(default_factory=VQAHeadConfig)
    mode: str = "frozen"
    lora: LoraSettings = field(default_factory=LoraSettings)
    train: TrainConfig = field(default_factory=TrainConfig)
    top_k: int = 5
    n_boot: int = 1000
    question_only: bool = False

    def __post_init__(self) -> None:
        check_field_types(self)
        if self.mode not in VQA_MODES:
            raise ValueError(f"mode must be one of {VQA_MODES}, got {self.mode!r}")
        if self.question_only and self.mode != "frozen":
            raise ValueError("question_only (zeroed image tokens) needs mode: frozen")
        # checked here: both are first used after training, when the test set is scored
        check_number("top_k", self.top_k, ge=1, integer=True, hint=" (ranked answers per test question)")
        check_number("n_boot", self.n_boot, ge=1, integer=True, hint=" (bootstrap resamples)")


def load_vqa_recipe(path: Path, epochs: Optional[int] = None) -> VQARecipe:
    """Read a VQA recipe YAML (``epochs`` overrides ``train.epochs``).

    Raises:
        ConfigError: unknown keys (with "did you mean") or invalid values.
    """
    data = load_yaml(path)
    data = with_overrides(data, {"train": {"epochs": epochs}})  # a non-mapping train: is reported by from_dict
    return from_dict(VQARecipe, data, where=Path(path).name)



class _Tokens:
    """Cached inputs of one split: question tokens and (frozen mode) encoder tokens per image."""

    def __init__(self, ds: Any, q: torch.Tensor, m: torch.Tensor) -> None:
        self.ds, self.q, self.m = ds, q, m
        self.closed = torch.tensor([t == "CLOSED" for t in ds.answer_types])


@torch.no_grad()
def _image_feats(model: nn.Module, images: torch.Tensor, batch: int = 64) -> torch.Tensor:
    return torch.cat([model.image_features(images[i:i + batch]) for i in range(0, len(images), batch)])


def _logits(model: nn.Module, split: _Tokens, idx: torch.Tensor,
            feats: Optional[torch.Tensor]) -> Dict[str, torch.Tensor]:
    rows = split.ds.image_index[idx]
    image_feats = feats[rows] if feats is not None else model.image_features(split.ds.image_tensor(rows))
    mask = split.m[idx]
    length = max(1, int(mask.sum(dim=1).max()))  # drop columns that are padding for the whole batch
    return model.forward_tokens(image_feats, split.q[idx][:, :length], mask[:, :length])


@torch.no_grad()
def predict_logits(model: nn.Module, split: _Tokens, feats: Optional[torch.Tensor], batch: int = 128) -> torch.Tensor:
    """``(Q, A)`` answer logits for every question of ``split`` (model in eval mode)."""
    was = model.training
    model.eval()
    n = len(split.ds)
    out = torch.cat([_logits(model, split, torch.arange(i, min(n, i + batch)), feats)["logits"].float()
                     for i in range(0, n, batch)])
    model.train(was)
    return out


def check_state_log(state_dir: Path, counters: Dict[str, Any]) -> List[Dict[str, Any]]:
    """The epoch log of a resumed ``medfm vqa`` training state (``counters["log"]``: one record per finished epoch,
    :func:`run_vqa` saves it with the counters), as a new list; checked with the counters
    (:func:`medfm.training.loop.check_resume_counters`), before anything is written.

    Args:
        state_dir: the folder the state was read from (``<output>/train_state``, or the version a kill inside its
            rename window left aside), for the message.
        counters: what :func:`medfm.training.state.load_training_state` returned (a mapping).

    Raises:
        ValueError: ``cannot resume from <state_dir>: training state corrupt (its trainer_state.json counters have
            no list 'log')`` (:func:`medfm.training.loop.corrupt_state_error`; a state without one failed with a bare
            ``KeyError: 'log'``).
    """
    log = counters.get("log")
    if not isinstance(log, list):
        raise corrupt_state_error(state_dir, f"its {STATE_JSON} counters have no list 'log'")
    return list(log)


def _accuracy(logits: torch.Tensor, split: _Tokens) -> Dict[str, float]:
    hit = logits.argmax(dim=-1) == split.ds.answer_ids
    return {"acc": float(hit.float().mean()), "closed": float(hit[split.closed].float().mean()),
            "open": float(hit[~split.closed].float().mean())}


@discards_failed_output  # a failed run leaves no folder it created with nothing trained
def run_vqa(recipe: VQARecipe, output: Path, init: Optional[str] = None, data_root: Optional[str] = None,
            resume: bool = False) -> Dict[str, Any]:
    """Train + evaluate one VQA recipe; returns the ``results.json`` dict.

    ``resume``: continue from ``<output>/train_state`` (the last finished epoch); without a
    saved state the run starts from scratch. ``train.num_threads`` is applied when the epochs start, after every
    check (the recipe, the output folder, the training set's size and a resumed state's counters:
    :func:`medfm.training.loop.set_train_threads`, as :class:`medfm.training.loop.Trainer` does), so a refused run
    leaves torch's thread count as it was (a refused resume changed it), and recorded as ``host`` in each epoch's
    ``metrics.jsonl`` row (:func:`~medfm.training.loop.set_train_threads`); the questions' text encoding and the frozen
    mode's image features run before it, at the process's thread count, as the other runners' data preparation
    before their :class:`~medfm.training.loop.Trainer`'s fit. An earlier report's files in ``output``
    (``results.json`` first, then :data:`VQA_REPORT_FILES`) are removed right after ``config.yaml`` is written
    (:func:`medfm.evaluation.report.start_report_dir`): a resumed finished run whose evaluation then failed kept
    the old ``results.json`` beside the new checkpoint.

    Raises:
        ConfigError: a recipe that requires ``--init`` without one (``r.yaml: requires_init: ...``).
        ValueError: data/checkpoint errors
            of the loaders (MedFMDataError, CheckpointError) pass through; a missing local
            ``--init`` directory (CheckpointError) is reported before the data are read.
        ValueError: a non-finite training loss (names the epoch and step); a resumed state whose counters do not
            fit this run's steps per epoch (another training set, e.g. another ``--data-root``), or that lack
            the epoch log (``cannot resume from <output>/train_state: training state corrupt (...)``):
            :func:`medfm.training.loop.check_resume_counters`, the main loop's check, and :func:`check_state_log`,
            made before ``config.yaml`` and ``init.json`` are written (a refused resume leaves the run folder as it was:
            :func:`medfm.training.runs.write_run_record`); fewer training questions than ``train.batch_size``
            (:func:`medfm.training.loop.steps_per_epoch`, the main loop's rule), once the training split is read,
            before anything is written.
        FileExistsError: ``output`` holds a training state and ``resume`` is False (a new run
            would silently replace the finished one); checked before anything is written.
        ConfigError: ``resume`` with a recipe other than the run's ``config.yaml``, or with another ``init``
        than the run was started with (:func:`medfm.training.runs.check_run_start`); a 3D encoder
        (``r.yaml.encoder: vqa_rad is a 2D set but encoder 'resnet3d_10' is 3D; ...``, from its registration,
        before anything is built: :func:`medfm.training.runs.check_encoder_dims`); a bad ``encoder``,
        ``text_encoder``, ``head`` or (mode ``lora``) ``lora.target_modules`` value, with its recipe location
        (``r.yaml.head: ...``), from a check build at random initialisation
        (:func:`medfm.training.runs.check_encoder_args`, :func:`medfm.training.adaptation.check_lora_targets`)
        and the text encoder's load (:func:`medfm.training.runs.build_recipe_text_encoder`), both before the
        data are read.
        UnknownNameError: an unknown encoder (with close matches and the section's location).
    """
    from medfm.adapters.vqa import VQA_HEAD_MODULES, VQAModel
    from medfm.data.vqa_rad import VQARadDataset, data_md5s
    from medfm.encoders import create_encoder
    from medfm.evaluation.report import start_report_dir
    from medfm.training.adaptation import check_lora_targets
    from medfm.training.runs import (build_recipe_text_encoder, check_encoder_args, check_encoder_dims, check_run_start,
                                     write_run_record)

    cfg = recipe.train
    pretrained = init or recipe.encoder.pretrained
    if recipe.requires_init and not pretrained:
        where = recipe_location(recipe, "")
        raise ConfigError(f"{where + ': ' if where else ''}requires_init: this recipe starts from a pretrained "
                          "encoder: pass --init CKPT (a medfm checkpoint directory)")
    output = Path(output)
    check_run_start(output, recipe, init, resume, ("train_state",))  # before the images are decoded
    size = recipe.encoder.img_size or recipe.data.size
    head = {k: v for k, v in to_dict(recipe.head).items() if k != "type_weight"}
    # a 3D encoder, from its registration: the message every runner gives, before any build
    check_encoder_dims(recipe.encoder.name, 2, "vqa_rad", recipe_location(recipe.encoder, "encoder"))
    # the check build at random init and the frozen text encoder (loaded here rather than after the
    # data): a bad encoder, text encoder, head or LoRA value fails before the images are decoded
    check = check_encoder_args(recipe.encoder, recipe.data.in_chans, size)
    text = build_recipe_text_encoder(recipe)
    with recipe_args_errors(recipe_location(recipe.head, "head")):  # (answers: placeholders)
        check = VQAModel(check, ["no", "yes"], text.output_dim, **head)
    check_lora_targets(check, recipe, VQA_HEAD_MODULES)  # a target pattern that matches no encoder layer
    del check  # (not kept for the run: an encoder's memory)
    bf16 = resolve_precision(cfg.precision, torch.device("cpu")) == "bf16"  # the runner is CPU-only
    t0 = time.time()
    root = data_root or recipe.data.data_root
    train_ds = VQARadDataset("train", size, recipe.data.in_chans, root, progress=True)
    # the main loop's rule: fewer questions than a batch is refused (one short step per epoch was taken), before
    # anything is written
    per_epoch = steps_per_epoch(len(train_ds), cfg.batch_size)
    test_ds = VQARadDataset("test", size, recipe.data.in_chans, root, vocab=train_ds.vocab)

    questions = train_ds.questions + test_ds.questions
    q, m = text.encode_tokens(questions)
    n_tr = len(train_ds)
    train, test = _Tokens(train_ds, q[:n_tr], m[:n_tr]), _Tokens(test_ds, q[n_tr:], m[n_tr:])

    torch.manual_seed(cfg.seed)
    encoder = create_encoder(recipe.encoder.name, in_chans=recipe.data.in_chans, img_size=size, pretrained=pretrained,
                             **recipe.encoder.args)
    vocab = train_ds.vocab
    model = VQAModel(encoder, vocab.answers, text.output_dim, closed_answers=vocab.closed, open_answers=vocab.open,
                     text_encoder=text.spec, **head)
    model.set_text_encoder(text)
    net: nn.Module = model
    feats = None
    if recipe.mode == "frozen":
        encoder.requires_grad_(False)
        encoder.eval()
        feats = _image_feats(model, train_ds.image_tensor())
        if recipe.question_only:
            feats = torch.zeros_like(feats)
    elif recipe.mode == "lora":
        from medfm.adapters.lora import apply_lora

        net = apply_lora(model, recipe.lora, head_modules=VQA_HEAD_MODULES)
        model = net.base_model.model

    def set_train() -> None:
        model.train()
        if recipe.mode == "frozen":
            encoder.eval()

    opt = torch.optim.AdamW(param_groups(net, cfg.weight_decay), lr=cfg.lr)
    total, warmup = per_epoch * cfg.epochs, int(round(cfg.warmup_epochs * per_epoch))
    log: List[Dict[str, Any]] = []
    step, start = 0, 0
    state_dir = output / "train_state"
    # train_state/, or the version a kill inside its rename window left aside (as the main loop's Trainer.fit)
    source = find_training_state(state_dir) if resume else None
    if source is not None:
        counters = load_training_state(source, net, opt)
        # saved at epoch ends only: (epoch, no step within it, global step), as the main loop's check reads them
        start, _, step = check_resume_counters(source, counters, per_epoch, cfg.epochs, len(train_ds),
                                               cfg.batch_size, keys=("epoch", None, "step"))
        log = check_state_log(source, counters)
    if resume:  # the checks passed: put a version set aside back, delete the leftovers of kills (the first write)
        restore_interrupted_dir(state_dir)
    # after the data, the model and the resumed state's checks: a bad section, missing data or a refused resume
    # writes nothing (written before the state was read, they were rewritten by a resume then refused)
    write_run_record(output, recipe, init, resume)
    # an earlier report (a resumed finished run) goes now: its results.json must not outlive a failed evaluation
    start_report_dir(output, VQA_REPORT_FILES)
    host = set_train_threads(cfg)  # after every check, the resumed state's too: a refused run leaves it alone
    bar = tqdm(range(start, cfg.epochs), desc=f"vqa {recipe.encoder.name} ({recipe.mode})", initial=start,
               total=cfg.epochs)
    for epoch in bar:
        set_train()
        order = torch.randperm(len(train_ds), generator=torch.Generator().manual_seed(cfg.seed * 7919 + epoch))
        losses = []
        for s in range(per_epoch):
            idx = order[s * cfg.batch_size:(s + 1) * cfg.batch_size]
            for g in opt.param_groups:
                g["lr"] = lr_at(step, total, warmup, cfg)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                out = _logits(model, train, idx, feats)
            loss = model.loss(out, train_ds.answer_ids[idx], train.closed[idx], recipe.head.type_weight)
            check_finite_loss(loss, epoch, s)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip)
            opt.step()
            losses.append(loss.item())
            step += 1
        test_acc = _accuracy(predict_logits(model, test, feats), test)
        rec = {"epoch": epoch + 1, "step": step, "loss": sum(losses) / len(losses),
               "lr": lr_at(step - 1, total, warmup, cfg),
               "test_acc_curve_only": test_acc, "host": host}  # host: the thread count the epoch trained with
        log.append(rec)
        bar.set_postfix(loss=f"{rec['loss']:.3f}", test_closed=f"{test_acc['closed']:.3f}")
        with atomic_dir(state_dir) as tmp:
            save_training_state(tmp, net, opt, {"epoch": epoch + 1, "step": step, "log": log})
    atomic_write_text(output / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in log))
    train_s = time.time() - t0

    if recipe.mode == "lora":
        model = net.merge_and_unload()
        model.set_text_encoder(text)
    model.eval()
    return _finish(model, recipe, output, train, test, feats if recipe.mode == "frozen" else None, log, pretrained,
                   root, train_s, data_md5s(root))


def _finish(model: nn.Module, recipe: VQARecipe, output: Path, train: Any, test: Any, feats: Optional[torch.Tensor],
            log: List[Dict[str, Any]], init: Optional[str], root: Optional[str], train_s: float,
            md5s: Dict[str, str]) -> Dict[str, Any]:
    """Score the test split, save checkpoint + predictions + report, check the reload."""
    from medfm.evaluation.report import checkpoint_hash
    from medfm.evaluation.vqa import accuracy_by_group, majority_baseline, plot_group_accuracy, score_vqa
    from medfm.hub import from_pretrained, save_pretrained
    from medfm.versions import result_header

    ds = test.ds
    logits = predict_logits(model, test, feats)
    probs = logits.softmax(dim=-1)
    val, idx = probs.topk(min(recipe.top_k, probs.shape[1]), dim=-1)
    preds = [model.answers[int(i[0])] for i in idx]
    scores = score_vqa(preds, ds.answers, ds.answer_types, n_boot=recipe.n_boot, seed=recipe.train.seed)
    base = majority_baseline(train.ds.answers, train.ds.answer_types, ds.answers, ds.answer_types,
                             n_boot=recipe.n_boot, seed=recipe.train.seed)
    by_type = accuracy_by_group(scores["correct"], [r.question_type for r in ds.records])
    lines = [json.dumps({"qid": r.qid, "image": r.image_name, "question": r.question, "answer": r.answer,
                         "answer_type": r.answer_type, "question_type": r.question_type, "in_vocab": bool(a >= 0),
                         "correct": c, "top_k": [[model.answers[int(j)], round(float(p), 6)]
                                                 for p, j in zip(pv, iv)]}) + "\n"
             for r, a, c, pv, iv in zip(ds.records, ds.answer_ids.tolist(), scores["correct"], val, idx)]
    atomic_write_text(output / "predictions.jsonl", "".join(lines))

    ckpt = output / "checkpoint"
    from medfm.cards import data_provenance, write_card

    provenance = {k: v for k, v in data_provenance("vqa_rad", root).items() if k != "md5"}  # md5: of the split files
    extra = {"training": {"data": {**provenance, "dataset": "vqa_rad", "split": "MEVF trainset.json (3,064 QA)",
                                   "license": "CC0 1.0", "license_id": "cc0-1.0", "md5": md5s, "n_train": len(train.ds),
                                   "split_rule": "MEVF split: trainset.json for training, testset.json for the test",
                                   "n_test": len(ds), "unit": "question-answer pairs"},
                          "init": init, "mode": recipe.mode, "train": to_dict(recipe.train), "recipe": to_dict(recipe)},
             "family": model.encoder.family,
             "n_params": f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f}M",
             "summary": f"VQA adapter ({recipe.head.fusion}) on `{recipe.encoder.name}` trained on VQA-RAD"}
    save_pretrained(model, ckpt, extra_config=extra)
    reloaded = from_pretrained(ckpt)
    reloaded.set_text_encoder(model.text_encoder())
    re_feats = _image_feats(reloaded, ds.image_tensor()) if feats is not None else None
    if recipe.question_only:
        re_feats = torch.zeros_like(re_feats)
    re_logits = predict_logits(reloaded, test, re_feats)
    reload = {"same_top1": bool(torch.equal(re_logits.argmax(-1), logits.argmax(-1))),
              "max_abs_logit_diff": float((re_logits - logits).abs().max())}

    plot_group_accuracy(by_type, output / "accuracy_by_question_type.png",
                        f"VQA-RAD test, {recipe.encoder.name} ({recipe.mode}), exact match")
    _plot_curve(log, output / "training_curve.png")
    res: Dict[str, Any] = {
        **result_header("vqa"),
        "meta": {"checkpoint": str(ckpt), "checkpoint_sha256": checkpoint_hash(ckpt), "init": init,
                 "init_sha256": checkpoint_hash(init) if init and Path(init).is_dir() else None,
                 "encoder": recipe.encoder.name, "img_size": model.encoder.img_size, "mode": recipe.mode,
                 "fusion": recipe.head.fusion, "type_mask": recipe.head.type_mask,
                 "question_only": recipe.question_only, "dataset": "vqa_rad",
                 "split": "MEVF testset.json", "data_md5": md5s, "epochs": recipe.train.epochs,
                 "train_wall_s": round(train_s, 1)},
        "n_questions": len(ds), "vocab_size": len(model.answers),
        "out_of_vocab": {"n": int((ds.answer_ids < 0).sum()), "closed": int(((ds.answer_ids < 0) & test.closed).sum())},
        "metrics": {k: scores[k] for k in ("overall", "closed", "open")},
        "majority_baseline": {k: base[k] for k in ("overall", "closed", "open", "majority")},
        "by_question_type": by_type, "reload_check": reload, "published": PUBLISHED,
        "files": ["checkpoint", *VQA_REPORT_FILES, "results.json"],
    }
    res = to_jsonable(res)
    atomic_write_text(output / "report.md", render_report(res))
    atomic_write_json(output / "results.json", res)
    write_card(ckpt, res)  # the checkpoint's card with these test metrics (weights and their hash unchanged)
    return res


def _plot_curve(log: List[Dict[str, Any]], path: Path) -> None:
    from medfm.evaluation.plots import draw_series, new_figure, save_figure

    fig = new_figure((6.0, 3.5))
    ax = fig.add_subplot(1, 2, 1)
    draw_series(ax, log, ["loss"], x="epoch", ylabel="train loss")
    ax = fig.add_subplot(1, 2, 2)
    for key in ("closed", "open", "acc"):
        ax.plot([r["epoch"] for r in log], [r["test_acc_curve_only"][key] for r in log], label=key)
    ax.set_xlabel("epoch")
    ax.set_ylabel("test acc (curve only)")
    ax.legend()
    save_figure(fig, path)


def render_report(res: Dict[str, Any]) -> str:
    """``report.md`` of a VQA run (results + baseline + published figures + per question type, then the line of
    the results' header, :func:`medfm.versions.provenance_text`)."""
    from medfm.evaluation.report import markdown_table
    from medfm.versions import provenance_text

    def row(name: str, m: Dict[str, Any]) -> Dict[str, Any]:
        return {"model": name, **{k: 100 * m[k]["acc"] for k in ("closed", "open", "overall")},
                **{f"{k}_ci": f"[{100 * m[k]['ci']['low']:.1f}, {100 * m[k]['ci']['high']:.1f}]"
                   for k in ("closed", "open", "overall")}}

    meta = res["meta"]
    what = ("question only (image tokens zeroed)" if meta.get("question_only")
            else f"init {meta['init'] or 'random'}, {meta['mode']}")
    rows = [row(f"this run: {meta['encoder']} {meta['img_size']}px, {what}", res["metrics"]),
            row(f"majority answer per type ({res['majority_baseline']['majority']['CLOSED']!r} / "
                f"{res['majority_baseline']['majority']['OPEN']!r})", res["majority_baseline"])]
    rows += [{"model": p["model"] + " (published)", "closed": p["closed"], "open": p["open"]} for p in res["published"]]
    cols = {"model": "model", "closed": "closed %", "closed_ci": "95% CI", "open": "open %", "open_ci": "95% CI",
            "overall": "overall %", "overall_ci": "95% CI"}
    parts = ["# VQA-RAD report\n\n",
             f"Strict exact match after normalisation on the {res['n_questions']} MEVF test questions "
             f"({res['metrics']['closed']['n']} closed, {res['metrics']['open']['n']} open); "
             f"{res['out_of_vocab']['n']} test answers are outside the {res['vocab_size']}-answer training vocabulary "
             "and count as wrong.\n\n", markdown_table(rows, cols, floatfmt=".1f"),
             "\n## By question type\n\n", markdown_table(res["by_question_type"], ["group", "n", "acc"]),
             f"\nReload check (saved checkpoint re-scored): {res['reload_check']}\n\n",
             "![accuracy by question type](accuracy_by_question_type.png)\n![training curve](training_curve.png)\n",
             f"\n{provenance_text(res)}\n"]
    return "".join(parts)


__all__ = ["VQARecipe", "VQADataConfig", "VQAHeadConfig", "VQA_MODES", "VQA_REPORT_FILES", "PUBLISHED",
           "load_vqa_recipe", "run_vqa", "check_state_log", "predict_logits", "render_report"]
