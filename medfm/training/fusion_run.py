"""``medfm fuse``'s run folder: the checks before a run starts or resumes, and its ``config.yaml``.

A fusion run folder holds ``config.yaml`` (the resolved recipe) and one ``models/<label>/`` per model of the
recipe. :func:`start_run` checks that folder before anything is written or any data are read (another run's
models, a resume with other settings or fewer models, a model folder the run's ``config.yaml`` does not list), then
reads the LGG sets; :func:`recipe_writer` writes ``config.yaml`` once, when the first trained model's fit is about
to write. The trainers and the protocol are in :mod:`medfm.training.fusion`, which re-exports these names.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Tuple

if TYPE_CHECKING:
    import torch

    from medfm.training.fusion import FusionRecipe


def start_run(recipe: "FusionRecipe", output: Path, data_root: Optional[str],
              resume: bool = False) -> Tuple[Path, Any, Any, Dict[str, "torch.Tensor"], float]:
    """Check the run folder, load the LGG train/test sets and check every model's training set, then set threads.

    Writes nothing: ``config.yaml`` (the resolved recipe) is written by :func:`recipe_writer`, which the runners
    give every trained model's fit as its ``before_write`` (:func:`medfm.training.fusion.fit_or_reuse`): once the
    first trained model's resumed state fits the data, so that a refused resume (another ``--data-root``) leaves the
    run folder as it was. ``train.num_threads`` is applied after every check
    (:func:`medfm.training.loop.set_train_threads`: a refused run leaves torch's thread count as it was).

    Args:
        recipe: the resolved :class:`medfm.training.fusion.FusionRecipe`.
        output: the run folder; data_root: the LGG data root (None: the default resolution).
        resume: whether the run continues (``--resume``).

    Returns:
        ``(output, train, test, natural, t0)``: ``output`` as a Path, the LGG train/test sets
        (:class:`medfm.data.lgg_fusion.LGGFusionSet`), ``natural`` the training set's own presence
        ``{modality: (N,) bool}`` (:meth:`medfm.data.lgg_fusion.LGGFusionSet.presence`, read once here for
        :func:`medfm.training.fusion.check_training_sets` and kept for the runners: the mnar masks, the fits),
        ``t0`` the ``time.perf_counter()`` after the folder checks.

    Raises:
        FileExistsError: ``resume`` is False and ``output/models/`` holds a checkpoint, of a model of the recipe
            (``pass --resume to continue it``) or of any other (a new run beside another run's models mixed the two
            in one folder; its error says to move the folder away, not to pass --resume; checked before anything is
            written); also one a kill inside its rename window left aside
            (:func:`medfm.training.loop.refuse_existing_run`, a call per kind: each has its own advice).
        ConfigError: ``resume`` with a recipe that drops a model of the run (named as such) or differs from the
            run's ``config.yaml`` otherwise (:func:`medfm.training.resume.check_resume_recipe`), except for models
            added to ``models``: the models train independently, so ``--resume`` reuses the finished ones and trains
            the new ones (an added model whose folder holds a model already: :func:`refuse_unrecorded_models`).
        MedFMDataError: LGG data missing.
        ValueError: fewer training slices than ``train.batch_size`` (:func:`medfm.training.loop.steps_per_epoch`);
            ConfigError: a single-modality model whose slices are fewer
            (:func:`medfm.training.fusion.check_training_sets`; both before anything is written or any model trains).
    """
    from medfm.data.lgg_fusion import LGGFusionSet
    from medfm.training.fusion import check_training_sets
    from medfm.training.loop import refuse_existing_run, set_train_threads
    from medfm.training.resume import check_resume_recipe

    output = Path(output)
    # every other model's folder: its state is found in checkpoint/ or where a kill in its rename window left it
    others = sorted(p.name for p in output.glob("models/*") if p.is_dir() and p.name not in recipe.models)
    refuse_existing_run(output, resume, [f"models/{label}/checkpoint" for label in others],
                        advice=f"another run's model, not this recipe's (--resume would not continue it): "
                        f"choose another --output or move {output} away")
    refuse_existing_run(output, resume, [f"models/{label}/checkpoint" for label in sorted(recipe.models)])
    added = check_resume_recipe(output, recipe, resume, may_add=("models",))  # a model may be added to a finished run
    refuse_unrecorded_models(output, [key.split(".", 1)[1] for key in added])
    t0 = time.perf_counter()
    train = LGGFusionSet("train", recipe.data.img_size, data_root, recipe.data.cache_dir)
    test = LGGFusionSet("test", recipe.data.img_size, data_root, recipe.data.cache_dir)
    natural = train.presence()  # the masks only: no batch of the whole set's images
    check_training_sets(recipe, train, natural)  # fewer slices than a batch: before anything is written or trained
    set_train_threads(recipe.train)  # after every check: a refused run leaves the process's settings as they were
    return output, train, test, natural, t0


def refuse_unrecorded_models(output: Path, labels: List[str]) -> None:
    """Refuse a resume whose added models (``labels``: in the recipe, not in the run's ``config.yaml``,
    :func:`medfm.training.resume.check_resume_recipe`) have a final ``model/`` or a training record
    (:func:`medfm.training.run_folder.holds_training_record`) in ``output/models/<label>/`` already: another run's
    (one started beside them by an older medfm), they were reused as this recipe's and mixed into its results.

    Raises:
        ConfigError: ``cannot resume runs/f: models/late/ holds a model that the run's config.yaml does not list
            (...); move that folder away, or choose a new --output``.
    """
    from medfm.config import ConfigError
    from medfm.training.run_folder import holds_training_record

    for label in labels:
        folder = Path(output) / "models" / label
        if (folder / "model").is_dir() or holds_training_record(folder):
            raise ConfigError(f"cannot resume {output}: models/{label}/ holds a model that the run's config.yaml does "
                              "not list (left by another run: its settings are unknown, and --resume would reuse it "
                              "as this recipe's); move that folder away, or choose a new --output")


def recipe_writer(recipe: "FusionRecipe", output: Path) -> Callable[[], None]:
    """The ``before_write`` of a fusion run's fits (:func:`medfm.training.fusion.fit_or_reuse`), one per run given
    to every fit: writes ``<output>/config.yaml``, the resolved recipe (:func:`medfm.training.runs.write_run_record`;
    ``medfm fuse`` takes no ``--init``), at its first call: once the first trained model's resumed state is checked,
    before its fit writes anything; later calls do nothing (each fit used to rewrite it). A resume reusing every
    model leaves it as it was. An earlier report goes with it (:func:`medfm.evaluation.report.start_report_dir`, as
    ``medfm vqa``'s): a resumed finished run's ``results.json`` must not outlive a failed fit or evaluation.

    Returns:
        the callable (no arguments); it raises what ``write_run_record`` raises (OSError: ``output`` not writable).
    """
    from medfm.evaluation.fusion_report import PROTOCOL_REPORT_FILES
    from medfm.evaluation.report import start_report_dir
    from medfm.training.runs import write_run_record

    written: List[bool] = []

    def write() -> None:
        if not written:
            write_run_record(Path(output), recipe, takes_init=False)
            start_report_dir(output, PROTOCOL_REPORT_FILES)
            written.append(True)
    return write


__all__ = ["start_run", "refuse_unrecorded_models", "recipe_writer"]
