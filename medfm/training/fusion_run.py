"""``medfm fuse``'s run folder: the checks before a run starts or resumes, and its ``config.yaml``.

A fusion run folder holds ``config.yaml`` (the resolved recipe) and one ``models/<label>/`` per model of the
recipe. :func:`start_run` checks that folder before anything is written or any data are read (another run's
models, a resume with other settings or fewer models, a model folder the run's ``config.yaml`` does not list, a resume
of models without a readable ``config.yaml`` to check the recipe against), then reads the LGG sets;
:func:`recipe_writer` writes ``config.yaml`` once, when the first trained model's fit is about to write. The
trainers and the protocol are in :mod:`medfm.training.fusion`, which re-exports these names.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Tuple

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
            (:func:`medfm.training.loop.refuse_existing_run`, one call: each kind with its own advice); a model
            folder holding finished weights without a training state (:func:`medfm.training.loop.finished_weights`):
            a model of the recipe with ``resume`` too unless its ``model/`` is there to be reused; another run's
            (``resume`` False) with the advice of its checkpoint (``runs/f already holds a finished run's weights
            (models/other/model/model.safetensors); another run's model, not this recipe's (...): choose another
            --output or move runs/f away``; it said a new run would overwrite them).
        ConfigError: ``resume`` of a folder whose ``models/`` hold models but whose ``config.yaml`` is missing or
            unreadable (:func:`refuse_unchecked_resume`: the recipe cannot be checked; it resumed as the recipe said);
            ``resume`` with a recipe that drops a model of the run (named as such) or differs from the
            run's ``config.yaml`` otherwise (:func:`medfm.training.resume.check_resume_recipe`), except for models
            added to ``models``: the models train independently, so ``--resume`` reuses the finished ones and trains
            the new ones; a model folder the run's ``config.yaml`` does not list that holds a model, of an added model
            or of none of the recipe (:func:`refuse_unrecorded_models`: another run's; the latter was ignored).
        MedFMDataError: LGG data missing.
        ValueError: fewer training slices than ``train.batch_size`` (:func:`medfm.training.loop.steps_per_epoch`);
            ConfigError: a single-modality model whose slices are fewer
            (:func:`medfm.training.fusion.check_training_sets`; both before anything is written or any model trains).
    """
    from medfm.data.lgg_fusion import LGGFusionSet
    from medfm.training.fusion import check_training_sets
    from medfm.training.loop import finished_weights, refuse_existing_run, set_train_threads
    from medfm.training.resume import check_resume_recipe
    from medfm.training.state import find_training_state

    output = Path(output)
    # every other model's folder: its state is found in checkpoint/ or where a kill in its rename window left it
    others = sorted(p.name for p in output.glob("models/*") if p.is_dir() and p.name not in recipe.models)
    foreign = (f"another run's model, not this recipe's (--resume would not continue it): choose another --output "
               f"or move {output} away")
    state_dirs = {f"models/{label}/checkpoint": foreign for label in others}  # first: its advice is not --resume
    if not resume:  # another run's finished weights without a state: the new run would not overwrite them (as
        # refuse_existing_run says of its own) but mix two runs in one folder; --resume: refuse_unrecorded_models
        weights = finished_weights(output, [sub for sub in state_dirs if find_training_state(output / sub) is None])
        if weights is not None:
            raise FileExistsError(f"{output} already holds a finished run's weights ({weights.relative_to(output)}); "
                                  f"{foreign}")
    state_dirs.update(dict.fromkeys(f"models/{label}/checkpoint" for label in sorted(recipe.models)))
    if resume:  # only finished weights are refused then: not a model/ a resume reuses (fit_or_reuse), nor another
        # run's model (refused below with its own words)
        state_dirs = [f"models/{label}/checkpoint" for label in sorted(recipe.models)
                      if not (output / "models" / label / "model").is_dir()]
    refuse_existing_run(output, resume, state_dirs)
    saved = refuse_unchecked_resume(output, resume)  # config.yaml, read once: None when not read there
    added = check_resume_recipe(output, recipe, resume, may_add=("models",), saved=saved)  # a model may be added
    if resume:  # a folder config.yaml does not list: an added model's, or (left by an older medfm) none of the recipe's
        refuse_unrecorded_models(output, [key.split(".", 1)[1] for key in added], others)
    t0 = time.perf_counter()
    train = LGGFusionSet("train", recipe.data.img_size, data_root, recipe.data.cache_dir)
    test = LGGFusionSet("test", recipe.data.img_size, data_root, recipe.data.cache_dir)
    natural = train.presence()  # the masks only: no batch of the whole set's images
    check_training_sets(recipe, train, natural)  # fewer slices than a batch: before anything is written or trained
    set_train_threads(recipe.train)  # after every check: a refused run leaves the process's settings as they were
    return output, train, test, natural, t0


def holds_model(folder: Path) -> bool:
    """Whether a fusion run's model folder ``folder`` (``<output>/models/<label>``) holds a model: a final
    ``model/`` or a training record (:func:`medfm.training.run_folder.holds_training_record`: a checkpoint, one a
    kill set aside, a non-empty ``metrics.jsonl``). False for a missing or empty folder."""
    from medfm.training.run_folder import holds_training_record

    return (Path(folder) / "model").is_dir() or holds_training_record(folder)


def refuse_unchecked_resume(output: Path, resume: bool) -> Optional[Dict[str, Any]]:
    """Refuse to resume a run whose ``models/`` hold models (:func:`holds_model`) while its ``config.yaml`` is
    missing or cannot be read (a run from an older medfm, a damaged file): the recipe cannot be checked against the
    settings they were trained with, nor a model folder against the run's list
    (:func:`medfm.training.resume.check_resume_recipe` only warns then: the run resumed as the recipe said, reusing
    whatever the folders held). Nothing happens without ``resume`` or when no model folder holds a model.

    Returns:
        the run's ``config.yaml`` as read here (:func:`medfm.config.load_yaml`), for
        :func:`medfm.training.resume.check_resume_recipe`'s ``saved`` (read once per resume); None when it was not
        read (no ``resume``, or no model folder holds a model).

    Raises:
        ConfigError: ``cannot resume runs/f: it has no config.yaml (or: its config.yaml cannot be read: ...), so the
            recipe cannot be checked against the settings of the models in models/late/, models/single_pre/ (...);
            write the recipe the run was started with to runs/f/config.yaml, or choose a new --output``.
    """
    from medfm.config import ConfigError, load_yaml

    if not resume:
        return None
    held = [f"models/{p.name}/" for p in sorted(Path(output).glob("models/*")) if p.is_dir() and holds_model(p)]
    if not held:
        return None
    path = Path(output) / "config.yaml"
    why = "it has no config.yaml"
    if path.is_file():
        try:
            return load_yaml(path)  # a mapping, or a ConfigError naming the file and what is wrong
        except ConfigError as err:
            why = f"its config.yaml cannot be read ({err})"
    raise ConfigError(f"cannot resume {output}: {why}, so the recipe cannot be checked against the settings of the "
                      f"models in {', '.join(held)} (a run from an older medfm, or a damaged file: --resume would "
                      f"reuse them as this recipe's); write the recipe the run was started with to {path}, or choose "
                      "a new --output")


def refuse_unrecorded_models(output: Path, labels: List[str], others: Sequence[str] = ()) -> None:
    """Refuse a resume whose model folders not listed in the run's ``config.yaml`` hold a model (:func:`holds_model`):
    another run's (one started beside them by an older medfm). For the added models (``labels``: in the recipe, not in
    ``config.yaml``, :func:`medfm.training.resume.check_resume_recipe`) they were reused as this recipe's and mixed
    into its results; the folders of no model of the recipe (``others``, left when ``config.yaml`` does not list them
    either: check_resume_recipe refuses a dropped model) were ignored, left beside the resumed run's models.

    Raises:
        ConfigError: ``cannot resume runs/f: models/late/ holds a model that the run's config.yaml does not list
            (...); move that folder away, or choose a new --output``; for one of ``others``: ``... does not list,
            nor does the recipe (...)``.
    """
    from medfm.config import ConfigError

    for label in [*labels, *others]:
        if holds_model(Path(output) / "models" / label):
            why = ("--resume would reuse it as this recipe's" if label in labels else
                   "--resume would leave it beside this recipe's models, as if the run had trained it")
            nor = "" if label in labels else ", nor does the recipe"
            raise ConfigError(f"cannot resume {output}: models/{label}/ holds a model that the run's config.yaml does "
                              f"not list{nor} (left by another run: its settings are unknown, and {why}); move that "
                              "folder away, or choose a new --output")


class RecipeWriter:
    """A fusion run's once-only writes (:func:`recipe_writer`): ``config.yaml`` with the earlier report's removal
    (calling it: every trained model's ``before_write``), and the earlier report's removal alone
    (:meth:`clear_report`: the runners' call before the protocol, for a resume reusing every model).

    Attributes:
        recipe: the resolved :class:`medfm.training.fusion.FusionRecipe` (or segmentation recipe).
        output: the run folder.
        written: whether ``config.yaml`` was written by this run; report_cleared: whether the earlier report went.
    """

    def __init__(self, recipe: "FusionRecipe", output: Path) -> None:
        self.recipe, self.output = recipe, Path(output)
        self.written = self.report_cleared = False

    def __call__(self) -> None:
        """Write ``<output>/config.yaml`` (:func:`medfm.training.runs.write_run_record`; ``medfm fuse`` takes no
        ``--init``) and remove the earlier report (:meth:`clear_report`), at the first call; later calls do nothing.
        Raises what ``write_run_record`` raises (OSError: ``output`` not writable)."""
        from medfm.training.runs import write_run_record

        if not self.written:
            write_run_record(self.output, self.recipe, takes_init=False)
            self.written = True
            self.clear_report()

    def clear_report(self) -> None:
        """Remove an earlier report's files from ``output`` (:func:`medfm.evaluation.report.start_report_dir` with
        :data:`medfm.evaluation.fusion_report.PROTOCOL_REPORT_FILES`), once per run: a later call (the runners',
        before the protocol, after a model trained) does nothing. Raises as ``start_report_dir``."""
        from medfm.evaluation.fusion_report import PROTOCOL_REPORT_FILES
        from medfm.evaluation.report import start_report_dir

        if not self.report_cleared:
            start_report_dir(self.output, PROTOCOL_REPORT_FILES)
            self.report_cleared = True


def recipe_writer(recipe: "FusionRecipe", output: Path) -> RecipeWriter:
    """The ``before_write`` of a fusion run's fits (:func:`medfm.training.fusion.fit_or_reuse`), one per run given
    to every fit: writes ``<output>/config.yaml``, the resolved recipe (:func:`medfm.training.runs.write_run_record`;
    ``medfm fuse`` takes no ``--init``), at its first call: once the first trained model's resumed state is checked,
    before its fit writes anything; later calls do nothing (each fit used to rewrite it). A resume reusing every
    model leaves it as it was. An earlier report goes with it (:func:`medfm.evaluation.report.start_report_dir`, as
    ``medfm vqa``'s): a resumed finished run's ``results.json`` must not outlive a failed fit or evaluation. The
    runners call its :meth:`RecipeWriter.clear_report` before the protocol: the earlier report goes there when every
    model was reused, and is not cleared a second time when one trained.

    Returns:
        the :class:`RecipeWriter` (called with no arguments); it raises what ``write_run_record`` raises (OSError:
        ``output`` not writable).
    """
    return RecipeWriter(recipe, output)


__all__ = ["start_run", "holds_model", "refuse_unchecked_resume", "refuse_unrecorded_models", "recipe_writer",
           "RecipeWriter"]
