"""The evaluation-suite schema: what an ``eval_suites/<suite>.yaml`` file holds and how it is read.

A suite (YAML, loaded strictly into :class:`Suite` with :func:`medfm.config.from_dict` by
:func:`load_suite`) names datasets (MedMNIST 2D/3D flags at any released size, or labelled image
folders such as MedNIST), the protocol (``as-is``, ``linear`` probe, ``knn``, ``finetune``;
:mod:`medfm.evaluation.protocols`) with label fractions, MedMNIST-C corruptions and severities
(:mod:`medfm.data.corruptions`), metrics settings and CAM explanations. :func:`suite_overrides`
applies the command line's overrides. Configuration errors (misspelt key, unknown flag or corruption,
a bad value, a protocol option the suite's protocol would ignore) are one clear line when the suite is
read. :func:`medfm.evaluation.suites.run_suite` runs a suite.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, List, Optional, Tuple, Union

from medfm.arg_checks import check_number, number_fits, shown
from medfm.config import ConfigError, from_dict, load_yaml
from medfm.data.errors import MedFMDataError
from medfm.data.medmnist_info import SPLITS, check_medmnist_split, check_split  # a suite dataset's splits, their rule
from medfm.registry import close_match_hint
from medfm.suite_protocols import (  # the table and rules the command line's early checks read too
    PROTOCOL_OPTIONS,
    ProtocolSpec,  # a suite's protocol section (re-exported: suite readers import it from here)
    check_protocol_options,
    check_protocol_overrides,
    check_protocol_section,  # a suite file's protocol section, read first (medfm eval --suite reads it early)
    parse_probe_c,  # a probe C's rule (re-exported: suite readers import it from here)
)

SUITE_SCHEMA_VERSION = 1


@dataclass
class DatasetSpec:
    """One dataset of a suite.

    Attributes:
        flag: MedMNIST flag (2D or 3D), or None for an image folder.
        folder: image-folder dataset, a folder under the data root (or absolute).
        name: label in reports (default: flag, or the folder's name).
        size: MedMNIST released size / image-folder resize side (default: the encoder's
            img_size when released at it, else 28 for MedMNIST).
        split: evaluated split; train_split: split the linear/kNN protocols fit on;
            val_split: split the probe's C is chosen on (``protocol.linear_c: val``); by default
            ``val``, or none when ``split`` is ``val`` (a suite scoring the val split used to be
            refused for every protocol; only ``linear_c: val`` needs a val split, see
            :func:`medfm.evaluation.suites.run_suite`).
        split_rule: image folders only, how train/val/test are drawn
            (:func:`medfm.data.imagefolder.stratified_split`): ``sorted`` (default: the
            pretraining corpus's held-out rule, so corpus-pretrained checkpoints are never
            tested on images they saw; with ``random``, 1,439 of MedNIST's 1,800 test images
            are corpus images) or ``random`` (seeded).
        checkpoint: checkpoint for this dataset (overrides the command line).
        corruptions: apply the suite's corruptions to this dataset.
        max_samples: score at most this many images of ``split``: a fixed class-stratified subset
            drawn with seed :data:`~medfm.evaluation.subsets.SUBSET_SEED`
            (:func:`~medfm.evaluation.subsets.scored_subset_indices`), the same images clean,
            corrupted and for the CAMs; None (default): the whole split. Reports state the subset and
            leave out published full-test-set figures (a MedMNIST-C run over the 12 sets takes hours in
            full). The splits probes are fitted and tuned on are never reduced. A value below the number of
            classes in the scored split (a multi-label set's label groups) is refused when the suite runs, for
            the sets on disk only (:func:`medfm.evaluation.suite_data.check_max_samples`: a set that is not
            there is skipped, whatever its classes).

    Raises:
        UnknownSplitError: a ``split``, ``train_split`` or ``val_split`` not in :data:`SPLITS`
            (:func:`medfm.data.medmnist_info.check_medmnist_split`: ``split: unknown split 'tset' for MedMNIST
            'pneumoniamnist'; did you mean 'test'?``).
        ValueError: not exactly one of flag/folder, an unknown split rule, ``size`` not an
        integer >= 1, or ``train_split`` / a given ``val_split`` equal to ``split`` (the probe would be fitted or
        tuned on the scored split); ``max_samples`` not an integer >= 1 (:func:`medfm.arg_checks.check_number`:
        ``True`` and ``2.5`` are refused).
        UnknownDatasetError: unknown MedMNIST flag.
    """

    flag: Optional[str] = None
    folder: Optional[str] = None
    name: Optional[str] = None
    size: Optional[int] = None
    split: str = "test"
    train_split: str = "train"
    val_split: Optional[str] = None
    split_rule: str = "sorted"
    checkpoint: Optional[str] = None
    corruptions: bool = True
    max_samples: Optional[int] = None

    def __post_init__(self) -> None:
        if (self.flag is None) == (self.folder is None):
            raise ValueError("a dataset needs exactly one of 'flag' (MedMNIST) or 'folder' (image folder)")
        if self.size is not None:
            self.size = check_number("size", self.size, ge=1, integer=True, hint=" (an image side in px)")
        if self.max_samples is not None:
            self.max_samples = check_number("max_samples", self.max_samples, ge=1, integer=True,
                                            hint=" (a number of images; or left out: the whole split)")
        if self.flag is not None:
            from medfm.data.medmnist import available_sizes, dataset_info

            dataset_info(self.flag)  # unknown flag -> UnknownDatasetError with close matches
            if self.size is not None and self.size not in available_sizes(self.flag):
                raise ValueError(f"size {self.size} is not a released size of {self.flag}; it exists at "
                                 f"{', '.join(map(str, available_sizes(self.flag)))} px")
        from medfm.data.imagefolder import SPLIT_RULES

        if self.split_rule not in SPLIT_RULES:
            raise ValueError(f"split_rule must be one of {', '.join(SPLIT_RULES)}, got {self.split_rule!r}")
        if self.val_split is None:
            self.val_split = None if self.split == "val" else "val"
        for role in ("split", "train_split") + (("val_split",) if self.val_split is not None else ()):
            # unchecked, a misspelt split skipped the dataset at run time, exit 0
            if self.flag is not None:
                check_medmnist_split(self.flag, getattr(self, role), role)
            else:  # an image folder is split into the same three
                check_split(getattr(self, role), f"image folder {self.folder!r}", role)
        for role in ("train_split", "val_split"):
            if getattr(self, role) == self.split:  # (a val_split left out is None when split is val)
                raise ValueError(f"{role} and split are both {self.split!r}: the probe would be fitted or tuned on "
                                 "the split it is scored on; use different splits")
        self.name = self.name or self.flag or Path(str(self.folder)).name


@dataclass
class CorruptionSpec:
    """MedMNIST-C settings: ``names`` ("all" or a list), severities 1-5, resolution policy, seed.

    Raises:
        ValueError: a severity that is not an integer in 1..5, a resolution that is neither
            ``"native"`` nor an integer >= 8, ``workers`` not an integer >= 0 (``True`` is refused),
            ``seed`` not an integer (any integer: it is folded into each image's seed).
        UnknownCorruptionError: an unknown corruption name (with close matches).
    """

    names: Union[str, List[str]] = "all"
    severities: Tuple[int, ...] = (1, 2, 3, 4, 5)
    resolution: Union[int, str] = 224
    seed: int = 0
    workers: int = 2

    def __post_init__(self) -> None:
        if not self.severities or not all(number_fits(s, ge=1, le=5, integer=True) for s in self.severities):
            raise ValueError(f"corruptions.severities must be integers in 1..5, got {list(self.severities)}")
        if not (self.resolution == "native" or number_fits(self.resolution, ge=8, integer=True)):
            raise ValueError("corruptions.resolution must be 'native' or a side in px >= 8, got "
                             f"{shown(self.resolution)}")
        check_number("corruptions.workers", self.workers, ge=0, integer=True, hint=" (0 or 1: in this process)")
        check_number("corruptions.seed", self.seed, integer=True)
        if self.names != "all":
            from medfm.data.corruptions import UnknownCorruptionError, all_corruption_names

            known = all_corruption_names()
            names = [self.names] if isinstance(self.names, str) else list(self.names)
            for n in names:
                if n not in known:
                    raise UnknownCorruptionError(f"corruptions.names: unknown corruption {n!r}"
                                                 f"{close_match_hint(n, known, fallback='known')}")
            self.names = names


@dataclass
class MetricsSpec:
    """Bootstrap resamples for the 95% CIs, ECE bins and the binary decision threshold.

    Raises:
        ValueError: ``n_boot`` or ``ece_bins`` not an integer >= 1, ``threshold`` not a number in (0, 1)
            (:mod:`medfm.arg_checks`: ``True``, ``2.5`` resamples and NaN are refused).
    """

    n_boot: int = 1000
    ece_bins: int = 15
    threshold: float = 0.5

    def __post_init__(self) -> None:
        self.n_boot = check_number("metrics.n_boot", self.n_boot, ge=1, integer=True)
        self.ece_bins = check_number("metrics.ece_bins", self.ece_bins, ge=1, integer=True)
        if not number_fits(self.threshold, gt=0, lt=1):
            raise ValueError(f"metrics.threshold must be a probability in (0, 1), got {shown(self.threshold)}")


@dataclass
class CamSpec:
    """CAM grid: ``per_class`` test images per class (seeded), methods (gradcam, eigencam).

    Raises:
        ValueError: ``per_class`` not an integer >= 1, ``seed`` not an integer >= 0, an unknown method.
    """

    enabled: bool = True
    per_class: int = 2
    methods: Tuple[str, ...] = ("gradcam", "eigencam")
    seed: int = 0

    def __post_init__(self) -> None:
        from medfm.evaluation.cam import CAM_METHODS

        check_number("cam.per_class", self.per_class, ge=1, integer=True, hint=" (or set cam.enabled: false)")
        check_number("cam.seed", self.seed, ge=0, integer=True)
        bad = [m for m in self.methods if m not in CAM_METHODS]
        if bad or not self.methods:  # a CAM failure is only recorded in the report, so check names here
            raise ValueError(f"cam.methods must be names from {', '.join(CAM_METHODS)}, got {list(self.methods)}")


@dataclass
class Suite:
    """An evaluation suite (one ``eval_suites/*.yaml`` file).

    Attributes:
        name, description: shown in the report.
        datasets: :class:`DatasetSpec` entries (mappings in YAML).
        protocol, corruptions (None: clean only), metrics, cam: the sections above.
        batch_size: inference batch; 64 by default because on CPU larger batches spend a
            third of the time in page faults for the activation buffers (measured: 7.2 vs
            5.0 ms/image for ResNet-18 at 28 px, batch 256 vs 64, one thread).

    Raises:
        ValueError: ``datasets`` not a non-empty list, ``batch_size`` not an integer >= 1.
        ConfigError: a bad dataset entry (named ``datasets[i]``).
    """

    name: str
    datasets: List[Any]
    description: str = ""
    protocol: ProtocolSpec = field(default_factory=ProtocolSpec)
    corruptions: Optional[CorruptionSpec] = None
    metrics: MetricsSpec = field(default_factory=MetricsSpec)
    cam: CamSpec = field(default_factory=CamSpec)
    batch_size: int = 64

    def __post_init__(self) -> None:
        if not isinstance(self.datasets, list) or not self.datasets:
            raise ValueError("datasets must be a non-empty list")
        check_number("batch_size", self.batch_size, ge=1, integer=True)
        self.datasets = [d if isinstance(d, DatasetSpec) else from_dict(DatasetSpec, d, where=f"datasets[{i}]")
                         for i, d in enumerate(self.datasets)]


def load_suite(path: Union[str, Path]) -> Suite:
    """Read and validate a suite YAML.

    The ``protocol`` section is read first, its ``finetune`` settings included
    (:func:`medfm.suite_protocols.check_protocol_section`, the check ``medfm eval --suite`` makes before the run's
    imports, so both name the same mistake), then the whole file.

    Raises:
        ConfigError: missing file, bad YAML, misspelt key (with "did you mean"), bad value,
            unknown MedMNIST flag or corruption name, a ``protocol`` option that the suite's
            protocol does not use (:func:`check_protocol_options`; a command-line ``--protocol``
            may still switch to another protocol, which then uses its defaults for its options).
    """
    data = load_yaml(path, what="suite")
    check_protocol_section(data.get("protocol"), Path(path).name, settings=True)  # medfm eval --suite's early check
    try:
        suite = from_dict(Suite, data, where=Path(path).name)
    except (MedFMDataError, ValueError) as err:
        if isinstance(err, ConfigError):
            raise
        raise ConfigError(f"{Path(path).name}: {err}") from None
    return suite


def suite_overrides(suite: Suite, protocol: Optional[str] = None, label_fractions: Optional[str] = None,
                    workers: Optional[int] = None, batch_size: Optional[int] = None,
                    probe_c: Optional[str] = None, max_samples: Optional[int] = None) -> Suite:
    """``suite`` with command-line overrides applied (``None`` keeps the suite's value).

    Args:
        protocol: ``as-is``, ``linear``, ``knn`` or ``finetune``.
        label_fractions: comma list, e.g. ``"0.01,0.1,1"`` (:func:`medfm.suite_protocols.parse_label_fractions`).
        workers: corruption worker processes; batch_size: inference batch size.
        probe_c: the linear probe's C, a number or ``"val"``.
        max_samples: every dataset's ``max_samples`` (:class:`DatasetSpec`).

    Raises:
        ConfigError: a bad protocol, fraction list, probe C, workers, batch size or max_samples
            (each checked as the suite's own key is: ``2.5`` is refused, not truncated to 2); label
            fractions for the ``as-is`` protocol, a probe C for another than ``linear``, or ``workers``
            for a suite that corrupts no data set (all three were ignored without a word).
    """
    from dataclasses import replace

    try:
        pr = suite.protocol
        if protocol is not None:
            pr = replace(pr, name=protocol)
        if label_fractions is not None:
            pr = replace(pr, label_fractions=label_fractions)  # parsed by ProtocolSpec (parse_label_fractions)
        if probe_c is not None:
            pr = replace(pr, linear_c=probe_c)
        suite.protocol = pr
    except ValueError as err:
        raise ConfigError(f"--protocol/--label-fraction/--probe-c: {err}") from None
    try:  # were ignored, exit 0; medfm eval refuses them before its imports (medfm.cli_checks)
        check_protocol_overrides(pr.name, label_fractions=label_fractions, probe_c=probe_c)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    if workers is not None and (suite.corruptions is None or not any(d.corruptions for d in suite.datasets)):
        raise ConfigError("--workers: the MedMNIST-C worker count, and this suite corrupts no data set (no "
                          "corruptions: section, or corruptions: false on every dataset)")  # was dropped
    try:
        if workers is not None:
            suite.corruptions = replace(suite.corruptions, workers=workers)
        if batch_size is not None:
            suite.batch_size = check_number("batch_size", batch_size, ge=1, integer=True)
    except ValueError as err:
        raise ConfigError(f"--workers/--batch-size: {err}") from None
    if max_samples is not None:
        try:
            suite.datasets = [replace(d, max_samples=max_samples) for d in suite.datasets]
        except ValueError as err:
            raise ConfigError(f"--max-samples: {err}") from None
    return suite


__all__ = ["SUITE_SCHEMA_VERSION", "SPLITS", "DatasetSpec", "CorruptionSpec", "parse_probe_c", "PROTOCOL_OPTIONS",
           "check_protocol_options", "ProtocolSpec",
           "MetricsSpec", "CamSpec", "Suite", "load_suite", "suite_overrides"]
