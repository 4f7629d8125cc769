"""The ``medfm`` argument parser: every subcommand's arguments, help texts and examples.

:func:`build_parser` defines what the command line accepts; :mod:`medfm.cli` runs the parsed
command. Nothing here imports torch or the library: ``medfm --help`` and usage errors answer at once.
"""
from __future__ import annotations

import argparse
import textwrap
from pathlib import Path
from typing import Any, Callable, Sequence

from medfm.suite_protocols import PROTOCOLS as SUITE_PROTOCOLS

#: ``medfm eval --protocol`` choices: the suite protocols (:data:`medfm.suite_protocols.PROTOCOLS`), and
#: zeroshot (image-text checkpoints with --data)
EVAL_PROTOCOLS = SUITE_PROTOCOLS + ("zeroshot",)
#: what a training row of a run's ``metrics.jsonl`` records (the help of the training commands;
#: :func:`medfm.training.loop.set_train_threads`)
LOGGED_STEP = "a row per logged step: loss, lr, images/s and host, the CPU count and torch threads the run trained with"
#: a run's ``init.json`` in the help of the commands that take --init (:func:`medfm.training.resume.record_init`)
INIT_RECORD = "init.json (the --init the run started from, if any; a --resume must give the same)"
#: a LoRA run's own ``base/`` in the help of finetune and segment (:func:`medfm.training.adaptation.lora_base`)
LORA_BASE = ("base/ (when the run starts from random weights or from a checkpoint that does not fit the encoder: its "
             "starting weights, the base the adapter records)")


def _describe(*paragraphs: str) -> str:
    """A subcommand's ``--help`` description: each paragraph filled to 78 columns (the help is
    formatted raw so that the example lines of the epilog keep their layout)."""
    return "\n\n".join(textwrap.fill(p, 78) for p in paragraphs)


def _examples(*commands: str) -> str:
    """A subcommand's ``--help`` epilog: the example command lines, as written."""
    return "example" + ("s" if len(commands) > 1 else "") + ":\n" + "\n".join(f"  {c}" for c in commands)


def _choice_of(choices: Sequence[str]) -> Callable[[str], str]:
    """argparse type: one of ``choices``, a typo answered with "did you mean"
    (:func:`medfm.registry.close_match_hint`).

    Raises:
        argparse.ArgumentTypeError: any other text (one line, exit 2).
    """
    from medfm.registry import close_match_hint

    def choice(text: str) -> str:
        if text not in choices:
            hint = close_match_hint(text, choices, n=2, fallback="choose from")
            raise argparse.ArgumentTypeError(f"invalid choice {text!r}{hint}")
        return text

    return choice


def _add_choice(sp: argparse.ArgumentParser, flag: str, choices: Sequence[str], **kwargs: Any) -> None:
    """``sp.add_argument(flag, ...)`` taking one of ``choices`` (shown as ``{a,b}``, as argparse's
    own ``choices=`` does), a typo answered with "did you mean" (:func:`_choice_of`)."""
    sp.add_argument(flag, type=_choice_of(choices), metavar="{" + ",".join(choices) + "}", **kwargs)


def build_parser() -> argparse.ArgumentParser:
    """The ``medfm`` argument parser: every subcommand with a description, an example and a help
    text (with units and defaults) for every argument."""
    p = argparse.ArgumentParser(
        prog="medfm", formatter_class=argparse.RawDescriptionHelpFormatter,
        description=_describe("Medical foundation models: pretrain, adapt, evaluate, share.",
                              "Each command runs one step on local files; `medfm <command> --help` says what "
                              "it reads, what it writes where, and gives an example."),
        epilog=_examples("medfm pretrain pretrain/simclr_resnet18_pneumoniamnist.yaml --output runs/pt",
                         "medfm finetune finetune/lora_resnet18_pneumoniamnist.yaml --init runs/pt/checkpoint "
                         "--output runs/ft",
                         "medfm merge runs/ft/adapter runs/model",
                         "medfm eval runs/model --data pneumoniamnist --output runs/eval",
                         "medfm card runs/model --results runs/eval/results.json"))
    sub = p.add_subparsers(dest="command", required=True, metavar="<command>")

    def command(name: str, help: str, description: Sequence[str], examples: Sequence[str]) -> argparse.ArgumentParser:
        """A subcommand: ``help`` in ``medfm --help``'s list, ``description`` paragraphs and
        ``examples`` in its own ``--help``."""
        return sub.add_parser(name, help=help, description=_describe(help[0].upper() + help[1:] + ".", *description),
                              epilog=_examples(*examples), formatter_class=argparse.RawDescriptionHelpFormatter)

    def data_root(sp):
        sp.add_argument("--data-root", default=None, metavar="DIR",
                        help="folder that holds the data set folders (medmnist/, chase_db1/, ...); "
                             "default: $MEDFM_DATA, else ~/.cache/medfm")

    def recipe_command(name: str, help: str, description: Sequence[str], example: str, recipes: str,
                       init: bool = True, resume: str = "continue a stopped run from <output>/checkpoint"):
        """A subcommand that runs a recipe: ``<recipe> --output DIR [--init] [--resume] [--epochs N] [--data-root]``."""
        sp = command(name, help, description, [example])
        sp.add_argument("recipe", type=Path, help=f"recipe file (YAML), e.g. {recipes}")
        if init:
            sp.add_argument("--init", default=None, metavar="CHECKPOINT",
                            help="medfm checkpoint (folder or hf-hub:org/name) whose encoder initialises the model "
                                 "(default: the recipe's encoder.pretrained, else random weights)")
        sp.add_argument("--output", type=Path, required=True, metavar="DIR",
                        help="run folder to write (created; a folder holding an earlier run is refused without "
                             "--resume)")
        if resume:
            sp.add_argument("--resume", action="store_true", help=resume)
        sp.add_argument("--epochs", type=positive_int, default=None, metavar="N",
                        help="train for N epochs (default: the recipe's train.epochs)")
        data_root(sp)
        return sp

    recipe_command(
        "pretrain", "self-supervised pretraining of an image encoder from a recipe",
        ["The recipe names the data, the encoder, the objective (SimCLR, MoCo, SwAV, graph matching, CLIP, ...) "
         "and the training settings; pretrain/README.md lists the shipped recipes.",
         f"Writes into --output: config.yaml (the resolved recipe), metrics.jsonl ({LOGGED_STEP}), "
         "training_curve.png, and checkpoint/: the pretrained encoder as a medfm checkpoint (for finetune --init, "
         "vqa --init or eval --suite) with the training state that --resume continues from.",
         "Outside --output, in $XDG_CACHE_HOME/medfm (default ~/.cache/medfm), it keeps what later runs reuse: the "
         "pretraining corpus (data.dataset: corpus), preprocessed once per image size, in its corpus folder, and the "
         "clip objective's text embeddings in its text_embeddings folder; both are rebuilt when deleted."],
        "medfm pretrain pretrain/simclr_resnet18_pneumoniamnist.yaml --output runs/pt",
        "pretrain/simclr_resnet18_pneumoniamnist.yaml", init=False)
    sp = recipe_command(
        "finetune", "fine-tune a classifier (linear probe, full or LoRA) from a recipe",
        ["Trains an encoder and a new classification head on a MedMNIST data set; the recipe's mode says what "
         "is trained (linear: the head only; full: everything; lora: LoRA adapters and the head). "
         "finetune/README.md lists the shipped recipes.",
         f"Writes into --output: config.yaml (the resolved recipe), {INIT_RECORD}, metrics.jsonl ({LOGGED_STEP}; "
         "with a validation split, its accuracy and AUC per epoch), training_curve.png, checkpoint/ (the training "
         "state for --resume) and the final model: model/ (a medfm checkpoint), or for LoRA adapter/ (fold it into "
         f"its base with medfm merge) and {LORA_BASE}."],
        "medfm finetune finetune/lora_resnet18_pneumoniamnist.yaml --init runs/pt/checkpoint --output runs/ft",
        "finetune/lora_resnet18_pneumoniamnist.yaml")
    sp.add_argument("--dataset", default=None, metavar="FLAG",
                    help="MedMNIST data set to train on, e.g. breastmnist (default: the recipe's data.dataset)")
    # checked as eval's (cli_checks.label_fraction_option)
    sp.add_argument("--label-fraction", default=None, metavar="F",
                    help="train on a stratified, seeded fraction F in (0, 1] of the training labels, e.g. 0.1 "
                         "(default: the recipe's data.label_fraction, else 1: all)")
    recipe_command(
        "segment", "train and evaluate a segmentation model from a recipe",
        ["A U-Net on a 2D, 2.5D or 3D data set (CHASE_DB1, TCGA-LGG, MSD Hippocampus, BraTS), or, with a "
         "tasks: list, one text-conditioned segmenter for several data sets (finetune/seg_*.yaml).",
         f"Writes into --output: config.yaml (the resolved recipe), {INIT_RECORD}, metrics.jsonl ({LOGGED_STEP}), "
         "training_curve.png, checkpoint/ (the training state for --resume), the final model: model/ (a medfm "
         f"checkpoint), or for LoRA adapter/ and {LORA_BASE}; results.json and results.md (the test Dice, and "
         "HD95 and surface Dice unless the recipe sets eval.distances: false; CHASE_DB1: also the second observer "
         "scored against the first, a human reference; BraTS: also the whole tumour, tumour core and enhancing "
         "tumour regions; text-conditioned: per task, with the Dice of a task's query in results.json) and "
         "overlays/*.png (the first eval.overlays test cases; text-conditioned: tasks/<task>/overlays/*.png "
         "instead)."],
        "medfm segment finetune/seg_unet_chase_db1.yaml --output runs/chase",
        "finetune/seg_unet_chase_db1.yaml")
    recipe_command(
        "vqa", "train and evaluate a VQA model on VQA-RAD from a recipe",
        ["An image encoder (random, or --init from a SimCLR or CLIP checkpoint; frozen, or trained with LoRA or "
         "in full as the recipe's mode says) and a frozen text encoder for the question (the recipe's "
         "text_encoder, MiniLM by default), with an answer classifier on top (finetune/vqa_*.yaml).",
         f"Writes into --output: config.yaml (the resolved recipe), {INIT_RECORD}, metrics.jsonl (a row per "
         "epoch: mean loss, lr, the test accuracy drawn in the training curve and host, the CPU count and torch "
         "threads the run trained with), "
         "train_state/ (the training state of the last finished epoch, which --resume continues from), "
         "checkpoint/ (the trained model as a medfm checkpoint, with its model card), predictions.jsonl, "
         "training_curve.png, accuracy_by_question_type.png, results.json and report.md (closed, open and "
         "overall test accuracy with 95% confidence intervals)."],
        "medfm vqa finetune/vqa_resnet18_clip.yaml --init runs/clip/checkpoint --output runs/vqa",
        "finetune/vqa_resnet18_clip.yaml",
        resume="continue a stopped run from <output>/train_state (the last finished epoch)")
    recipe_command(
        "fuse", "train and evaluate missing-modality fusion models on TCGA-LGG from a recipe",
        ["Every model of the recipe (fusers and single-modality baselines) is trained and scored on the test "
         "patients by subset of present modalities, with their natural missingness and, unless the recipe is "
         "for segmentation (task: segmentation), with the MCAR/MNAR protocol (finetune/fusion_lgg_*.yaml).",
         "Writes into --output: config.yaml (the resolved recipe), models/<name>/, one run folder per model "
         f"(metrics.jsonl, {LOGGED_STEP}; training_curve.png; checkpoint/, the training state for --resume; model/, "
         "the trained model as a medfm checkpoint), results.json, report.md and subsets.png (every model's test "
         "AUC, or for segmentation its Dice per patient, per subset of present modalities)."],
        "medfm fuse finetune/fusion_lgg_missing.yaml --output runs/fusion",
        "finetune/fusion_lgg_missing.yaml",
        init=False, resume="continue: train the unfinished models, reuse the finished ones")

    sp = command(
        "eval", "evaluate checkpoint(s) on one data set split (--data) or a suite (--suite)",
        ["--data scores one classifier checkpoint on a MedMNIST split (or, with --protocol zeroshot, an "
         "image-text checkpoint with class prompts). --suite runs an evaluation suite (eval_suites/*.yaml): "
         "several data sets, a protocol (as-is, linear probe, kNN, fine-tuning), label fractions, MedMNIST-C "
         "corruptions.",
         "Writes into --output (default: a folder next to the first checkpoint): results.json, report.md, "
         "predictions and plots; with --suite one folder per data set and run, and a summary report.md."],
        ["medfm eval runs/model --data pneumoniamnist --split test --output runs/eval",
         "medfm eval --suite eval_suites/medmnist_c.yaml runs/model --output runs/suite"])
    sp.add_argument("checkpoint", nargs="*",
                    help="checkpoint folder(s) or hf-hub:org/name id(s); --data takes exactly one, --suite any "
                         "number (or none: the suite's datasets[].checkpoint)")
    which = sp.add_mutually_exclusive_group(required=True)
    which.add_argument("--data", default=None, metavar="FLAG", help="MedMNIST data set to score, e.g. pneumoniamnist")
    which.add_argument("--suite", type=Path, default=None, metavar="YAML",
                       help="evaluation suite file, e.g. eval_suites/medmnist_c.yaml")
    _add_choice(sp, "--split", ("train", "val", "test"), default=None,
                help="--data only: split to score (default: test)")
    sp.add_argument("--size", type=positive_int, default=None, metavar="PX",
                    help="--data only: image side in pixels, e.g. 64 (default: the checkpoint's img_size)")
    _add_choice(sp, "--protocol", EVAL_PROTOCOLS, default=None,
                help="how the checkpoint is scored (default: as-is with --data, the suite's protocol with "
                     "--suite); linear/knn: a probe on frozen features; finetune: train the encoder and a new "
                     "head on each label fraction, then score; zeroshot: a CLIP checkpoint on --data with class "
                     "prompts")
    sp.add_argument("--label-fraction", default=None, metavar="F[,F...]",
                    help="--suite only: comma list of training label fractions in (0, 1] for linear/knn/finetune, "
                         "e.g. 0.01,0.1,1 (default: the suite's, else 1)")
    sp.add_argument("--probe-c", default=None, metavar="C",
                    help="--suite only: the linear probe's inverse L2 strength C > 0, or 'val' to choose it on "
                         "the val split (CLIP protocol); default: the suite's, else 1.0")
    sp.add_argument("--cache-dir", default=None, metavar="DIR",
                    help="--suite with corruptions only: cache root of corrupted data sets (default: ~/.cache/medfm)")
    sp.add_argument("--workers", type=non_negative_int, default=None, metavar="N",
                    help="--suite with corruptions only: processes that build corrupted sets; 0 or 1: in this process "
                         "(default: the suite's corruptions.workers, else 2)")
    sp.add_argument("--threads", type=positive_int, default=None, metavar="N",
                    help="torch CPU threads for inference (default: torch's choice)")
    sp.add_argument("--max-samples", type=positive_int, default=None, metavar="N",
                    help="--suite only: score a fixed class-stratified subset of at most N images of each data "
                         "set's split (the same images clean and corrupted; reports say so); default: the suite's "
                         "datasets[].max_samples, else every image")
    sp.add_argument("--output", type=Path, default=None, metavar="DIR",
                    help="output folder (default: <checkpoint>/eval-<flag>-<split> with --data, "
                         "<checkpoint>/eval-<suite> with --suite); an earlier evaluation of the same mode there "
                         "is replaced as a whole, any other non-empty folder is refused")
    sp.add_argument("--batch-size", type=positive_int, default=None, metavar="N",
                    help="inference batch size in images (default: 256 with --data; the suite's, else 64, with "
                         "--suite)")
    data_root(sp)

    sp = command(
        "merge", "fold a LoRA adapter into its base weights and save a full checkpoint",
        ["Reads the adapter/ folder of a LoRA fine-tune and the base checkpoint it records (or --base).",
         "Writes OUTPUT: a medfm checkpoint (config.json, model.safetensors, README.md) that loads without "
         "peft; OUTPUT must not exist or be empty."],
        ["medfm merge runs/ft/adapter runs/model"])
    sp.add_argument("adapter", help="LoRA adapter folder (the adapter/ of a finetune or segment run)")
    sp.add_argument("output", type=Path, help="folder to write the merged checkpoint to (new or empty)")
    sp.add_argument("--base", default=None, metavar="CHECKPOINT",
                    help="base checkpoint folder or hf-hub:org/name id (default: the one recorded in the adapter, "
                         "e.g. after the base was moved)")

    sp = command(
        "card", "rewrite a checkpoint's model card with evaluation results",
        ["Takes the results.json of medfm eval (with --suite: a data set's <output>/<dataset>/results.json, or "
         "<output>/<dataset>/<protocol>-f<fraction>/results.json when it was scored in several runs), or "
         "of the segment, vqa or fuse run that trained the checkpoint; results that record another checkpoint's "
         "weights (SHA-256) are refused.",
         "Writes <checkpoint>/README.md (replaced whole)."],
        ["medfm card runs/model --results runs/eval/results.json"])
    sp.add_argument("checkpoint", help="checkpoint folder whose README.md is rewritten")
    sp.add_argument("--results", type=Path, required=True, metavar="JSON",
                    help="results.json of an evaluation of this checkpoint")

    sp = command(
        "push", "upload a checkpoint to the Hugging Face hub",
        ["Creates the hub repository if needed and uploads config, weights, model card and (for a LoRA "
         "adapter) adapter files; other files stay local unless --include names them. Uses the token that "
         "`hf auth login` stored; nothing in the checkpoint folder is changed.",
         "Prints what was uploaded and the repository URL."],
        ["medfm push runs/model my-org/medfm-resnet18-pneumonia --include 'eval-*/results.json'"])
    sp.add_argument("checkpoint", help="checkpoint folder to upload")
    sp.add_argument("repo_id", help="hub repository, org/name")
    sp.add_argument("--private", action="store_true",
                    help="make the repository private, an existing public one too (default: a new repository "
                         "gets the account's default visibility, an existing one keeps its own)")
    sp.add_argument("--include", action="append", default=[], metavar="GLOB",
                    help="also upload files matching GLOB, relative to the checkpoint (repeatable; e.g. "
                         "'eval-*/results.json'); by default only config, weights, card and adapter files go up")

    sp = command(
        "verify-data", "check data set files against their published checksums",
        ["Folders with a SHA256SUMS file are checked by sha256, medmnist/*.npz by the md5s its loader checks. "
         "Writes nothing; prints one line per data set and exits 1 when a file is missing or changed."],
        ["medfm verify-data", "medfm verify-data medmnist chase_db1 --data-root ../shared/data"])
    sp.add_argument("datasets", nargs="*", metavar="FOLDER",
                    help="data set folders under the data root, e.g. medmnist (default: every one with a "
                         "SHA256SUMS, and medmnist/)")
    data_root(sp)

    sp = command(
        "bench", "training throughput: the medfm loop against a bare torch loop",
        ["Trains the encoder with a 2-class head on one repeated random batch, first in a plain PyTorch loop "
         "and then with medfm's Trainer, on the device the Trainer picks, after 3 warm-up steps. "
         "Writes nothing; prints a Markdown table of images per second and their ratio."],
        ["medfm bench --encoder resnet18 --img-size 28 --batch-size 128 --steps 20"])
    sp.add_argument("--encoder", default="resnet18", help="registered 2D encoder name (default: resnet18)")
    sp.add_argument("--img-size", type=positive_int, default=28, metavar="PX",
                    help="image side in pixels (default: 28)")
    sp.add_argument("--batch-size", type=positive_int, default=128, metavar="N",
                    help="images per step (default: 128)")
    sp.add_argument("--steps", type=positive_int, default=20, metavar="N",
                    help="timed steps per loop, after the warm-up (default: 20)")
    _add_choice(sp, "--precision", ("auto", "bf16", "fp32"), default="auto",
                help="auto: bf16 where the device supports it, else fp32 (default: auto)")
    return p


def _int_at_least(text: str, minimum: int) -> int:
    """``text`` as an integer >= ``minimum``, or a one-line argparse error."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
    return value


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    return _int_at_least(text, 0)


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    return _int_at_least(text, 1)


__all__ = ["EVAL_PROTOCOLS", "build_parser", "non_negative_int", "positive_int"]
