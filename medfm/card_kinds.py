"""What a model card says about each kind of medfm checkpoint: the kind itself, its input,
outputs, training data and procedure, intended use and a usage snippet that works for it.

Used by :mod:`medfm.cards`; what the config does not hold is shown as "not recorded".
"""
from __future__ import annotations

import json
import math
import numbers
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from medfm.arg_checks import is_finite_number

NOT_RECORDED = "not recorded"

#: hub ``pipeline_tag`` per card kind (None: no hub pipeline fits)
PIPELINE_TAGS = {"classification": "image-classification", "segmentation": "image-segmentation",
                 "text_segmentation": "image-segmentation", "vqa": "visual-question-answering",
                 "fusion_classification": None, "fusion_segmentation": "image-segmentation",
                 "objective": "image-feature-extraction"}

#: the non-MedMNIST data sets medfm trains on: display name, where they come from, and their key
#: in :data:`medfm.data.corpus.SOURCE_FOLDERS` / :data:`medfm.data.corpus.SOURCE_LICENSES` (the
#: folder under the data root holding PROVENANCE.md and SHA256SUMS; the licence as PROVENANCE.md states it)
DATASETS: Dict[str, Dict[str, str]] = {
    "chase_db1": {"name": "CHASE_DB1", "source_key": "chase_db1",
                  "source": "CHASE_DB1 retinal vessel reference set (Fraz et al., IEEE TBME 2012; "
                            "Kingston University)"},
    "msd_hippocampus": {"name": "MSD Task04 Hippocampus", "source_key": "hippocampus",
                        "source": "Medical Segmentation Decathlon Task04 Hippocampus (cropped MRI volumes; "
                                  "Antonelli et al., Nat. Commun. 2022)"},
    "lgg_flair": {"name": "TCGA-LGG", "source_key": "lgg",
                  "source": "TCGA-LGG brain MRI with FLAIR-abnormality masks (Buda et al., Comput. Biol. Med. 2019; "
                            "Kaggle lgg-mri-segmentation, 23-patient subset)"},
    "brats2015": {"name": "BraTS 2015 (6 DeepMedic example cases)", "source_key": "brats2015",
                  "source": "BraTS 2015 training cases brats_2013_pat0001-0006 with FLAIR and T1c z-scored in the "
                            "brain by the provider (Menze et al., IEEE TMI 2015), as shipped with DeepMedic "
                            "(Kamnitsas et al., Med. Image Anal. 2017); folder split train 2 / validation 2 / test 2"},
    "vqa_rad": {"name": "VQA-RAD", "source_key": "vqa_rad",
                "source": "VQA-RAD (Lau et al., Scientific Data 2018; OSF 89kps), MEVF train/test split"},
}

#: licence text -> hub licence id (anything else: "other")
_LICENSE_IDS = {"CC BY 4.0": "cc-by-4.0", "CC BY-SA 4.0": "cc-by-sa-4.0", "CC0 1.0": "cc0-1.0"}
#: licence text -> (hub ``license_name``, ``license_link``) for licences outside the hub's list (``license: other``),
#: so a hub search shows e.g. BraTS's non-commercial terms instead of a bare "other"
_OTHER_LICENSES = {"CC BY-NC-SA 3.0 Switzerland (non-commercial use only, share-alike)":
                   ("cc-by-nc-sa-3.0-ch", "https://creativecommons.org/licenses/by-nc-sa/3.0/ch/")}


def other_license(records: Any) -> Dict[str, str]:
    """``{"license_name", "license_link"}`` for a card whose training data has exactly one licence
    outside the hub's list and known to :data:`_OTHER_LICENSES` (e.g. BraTS 2015's CC BY-NC-SA 3.0
    Switzerland); ``{}`` otherwise (hub licences, several licences, unconfirmed ones).

    Args:
        records: the checkpoint's data-set records (dicts with ``"license"`` text, see
            :func:`data_provenance`).
    """
    texts = {str(d.get("license")) for d in records if isinstance(d, dict) and d.get("license")}
    if len(texts) != 1 or texts & set(_LICENSE_IDS):
        return {}
    known = _OTHER_LICENSES.get(texts.pop())
    return {"license_name": known[0], "license_link": known[1]} if known else {}

#: what a training/test count counts, when the checkpoint does not say
_DEFAULT_UNITS = {"vqa": "question-answer pairs", "fusion_classification": "patients",
                  "fusion_segmentation": "patients"}

_NOT_A_DEVICE = ("**Not a medical device**: it has not been validated clinically and must not be used\n"
                 "for diagnosis or treatment decisions.")


def data_provenance(dataset: str, data_root: Optional[str] = None) -> Dict[str, Any]:
    """What a checkpoint records about a non-MedMNIST data set: name, licence, source, checksums.

    Args:
        dataset: a key of :data:`DATASETS` ("chase_db1", "msd_hippocampus", "lgg_flair", "brats2015", "vqa_rad").
        data_root: the run's data root (None: ``$MEDFM_DATA`` / the default), for the md5 of the
            folder's ``SHA256SUMS`` list (which fingerprints every file of the data set).

    Returns:
        ``{"dataset_name", "license", "license_id", "source", "provenance", "md5"}``; ``md5`` is
        ``{"SHA256SUMS": hex}`` or absent when the folder has no ``SHA256SUMS`` (e.g. test data).
        An unknown ``dataset`` gives ``{}`` (nothing is guessed).
    """
    info = DATASETS.get(dataset)
    if info is None:
        return {}
    from medfm.data.corpus import SOURCE_FOLDERS, SOURCE_LICENSES

    license_ = SOURCE_LICENSES.get(info["source_key"], NOT_RECORDED)
    folder = SOURCE_FOLDERS[info["source_key"]]
    out: Dict[str, Any] = {"dataset_name": info["name"], "license": license_,
                           "license_id": _LICENSE_IDS.get(license_, "other"), "source": info["source"],
                           "provenance": f"{folder}/PROVENANCE.md"}
    try:
        from medfm.data.checksums import SUMS_NAME
        from medfm.data.root import resolve_data_root
        from medfm.io import file_md5

        sums = Path(resolve_data_root(data_root)) / folder / SUMS_NAME
        if sums.is_file():
            out["md5"] = {SUMS_NAME: file_md5(sums)}
    except Exception:  # noqa: BLE001 - a missing data root only leaves the checksum unrecorded
        pass
    return out


def is_metric_number(value: Any) -> bool:
    """A measured metric value: a finite real number (:func:`medfm.arg_checks.is_finite_number`).

    ``bool``, non-numbers, NaN and inf are not: a card printed an undefined AUC (NaN in a run's own
    results, or a NaN/Infinity in an edited results file) as ``nan``/``inf`` in its table and its
    hub model-index. An undefined metric is shown by :func:`metric_text`.
    """
    return is_finite_number(value)


#: how a card shows a metric its results record as undefined (:func:`is_undefined_metric`)
UNDEFINED_METRIC = "n/a (undefined)"
#: the same for an AUC, which medfm leaves undefined only when the scored labels hold one class:
#: :func:`medfm.evaluation.metrics.binary_auc` then returns NaN without a warning;
#: :func:`medfm.evaluation.metrics.classification_metrics` names each such class in its ``warnings``
#: list and leaves it out of the mean AUC, which is NaN only when no column is defined
UNDEFINED_AUC = "n/a (undefined: the scored labels hold one class only)"


def is_undefined_metric(value: Any) -> bool:
    """A metric recorded as undefined: ``None`` (how a strict-JSON ``results.json`` writes NaN,
    :func:`medfm.io.to_jsonable`) or NaN (the results a run passes to its card in memory)."""
    if value is None:
        return True
    try:
        return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isnan(value)
    except (TypeError, ValueError, OverflowError):
        return False


def metric_value_text(value: Any, undefined: str = UNDEFINED_METRIC) -> Optional[str]:
    """How a card shows a recorded metric ``value``: the number to 4 decimals, ``undefined`` for a
    metric recorded as undefined (:func:`is_undefined_metric`), None for anything else (garbled: no row)."""
    if is_metric_number(value):
        return f"{value:.4f}"
    return undefined if is_undefined_metric(value) else None


def metric_text(mapping: Any, key: str) -> Optional[str]:
    """How a card shows ``mapping[key]`` (:func:`metric_value_text`), in every table: an undefined
    metric that the results record gets a row saying so (:data:`UNDEFINED_AUC` for key ``"auc"``,
    else :data:`UNDEFINED_METRIC`) instead of ``nan`` or of vanishing; None when ``key`` is missing
    (no row: nothing recorded)."""
    if not isinstance(mapping, dict) or key not in mapping:
        return None
    return metric_value_text(mapping[key], UNDEFINED_AUC if key == "auc" else UNDEFINED_METRIC)


def dict_section(mapping: Any, key: str) -> Dict[str, Any]:
    """``mapping[key]`` when it is a dict, else ``{}`` (results files may lack or garble sections)."""
    value = mapping.get(key) if isinstance(mapping, dict) else None
    return value if isinstance(value, dict) else {}


def shown_value(value: Any) -> Any:
    """A config value for the card, or "not recorded" (never ``None``)."""
    return NOT_RECORDED if value is None or value == "" else value


def _fused_segmenter(name: str) -> bool:
    """Whether fuser ``name`` is registered as a segmentation fuser (``fused_unet``)."""
    try:
        import medfm.adapters  # noqa: F401 - registers the fusers
        from medfm.registry import FUSERS

        return FUSERS.tags(name).get("task") == "segmentation"
    except Exception:  # noqa: BLE001 - an unknown fuser name: decided from its args below
        return False


def card_kind(cfg: Dict[str, Any]) -> str:
    """Which card a checkpoint config gets.

    Returns:
        "classification", "objective" (self-supervised encoder checkpoint), "segmentation",
        "text_segmentation", "vqa", "fusion_classification", "fusion_segmentation", or
        "other" (a config too bare to say; its card claims no task).
    """
    kind, name = cfg.get("kind"), cfg.get("name")
    if kind == "objective":
        return "objective"
    if kind == "fuser":
        seg = (_fused_segmenter(str(name))
               or "fusion" in dict_section(cfg, "args") and "decoder" in dict_section(cfg, "args"))
        return "fusion_segmentation" if seg else "fusion_classification"
    if name in ("classification", "segmentation", "text_segmentation", "vqa"):
        return str(name)
    return "other"


def _spatial(cfg: Dict[str, Any]) -> Tuple[str, Dict[str, Any]]:
    """``("2d" | "2.5d" | "3d", inference settings)`` of a segmentation checkpoint."""
    inference = dict_section(dict_section(cfg, "args"), "inference")
    if is_metric_number(inference.get("context_slices")) and inference["context_slices"] > 0:
        return "2.5d", inference
    dims = None
    enc_name = dict_section(cfg, "encoder").get("name")
    try:
        import medfm.encoders  # noqa: F401 - registers the encoders
        from medfm.registry import ENCODERS

        dims = ENCODERS.tags(str(enc_name)).get("dims") if enc_name else None
    except Exception:  # noqa: BLE001 - an unregistered encoder: the family decides
        dims = None
    if dims == 3 or (dims is None and str(cfg.get("family") or "").endswith("3d")):
        return "3d", inference
    return "2d", inference


def data_display_name(data: Dict[str, Any]) -> Optional[str]:
    """The data set's display name from a recorded ``training.data`` dict (None: not recorded)."""
    if data.get("flag"):
        return str(data["flag"])
    if data.get("dataset_name"):
        return str(data["dataset_name"])
    if data.get("dataset"):
        known = DATASETS.get(str(data["dataset"]))
        return known["name"] if known else str(data["dataset"])
    return None


def data_set_records(cfg: Dict[str, Any]) -> List[Dict[str, Any]]:
    """Every ``training.data``-like record of the config (text segmenters: one per task)."""
    training = dict_section(cfg, "training")
    tasks = dict_section(training, "tasks")
    if tasks:
        return [{**v, "task_name": k} for k, v in tasks.items() if isinstance(v, dict)]
    data = dict_section(training, "data")
    return [data] if data else []


def hub_dataset_id(data: Dict[str, Any]) -> Optional[str]:
    """The card's ``datasets:`` id of one data record: ``medmnist/<flag>``, the record's ``dataset``, or None."""
    if data.get("flag"):
        return f"medmnist/{data['flag']}"
    return str(data["dataset"]) if data.get("dataset") else None


def _fmt_md5(md5: Any) -> str:
    if isinstance(md5, dict) and md5:
        return ", ".join(f"{k} `{v}`" for k, v in md5.items())
    return f"`{md5}`" if md5 else NOT_RECORDED


def _count(data: Dict[str, Any], key: str, ids_key: str) -> Any:
    if is_metric_number(data.get(key)):
        return data[key]
    ids = data.get(ids_key)
    return len(ids) if isinstance(ids, list) else None


def training_data_text(cfg: Dict[str, Any]) -> str:
    """The "Training data" section: MedMNIST flags as before, other data sets by their own names."""
    records = data_set_records(cfg)
    if not records:
        return "Not recorded in this checkpoint's config."
    parts = []
    for data in records:
        if data.get("flag"):  # MedMNIST (classification, SSL): unchanged wording
            size = f", {data['size']} px" if data.get("size") else ""
            about = f" — {data['description']}" if data.get("description") else ""
            md5 = f"`{data['md5']}`" if data.get("md5") else NOT_RECORDED
            parts.append(f"`{shown_value(data.get('flag'))}` (MedMNIST v2{size}){about}\n\n"
                         f"License of the data: {data.get('license') or 'see the data source'}. "
                         f"Splits used: {shown_value(data.get('splits'))}. File md5: {md5}.")
            continue
        name = data_display_name(data)
        head = f"**{name}**" if name else "Data set: not recorded"
        if data.get("task_name"):
            head = f"Task `{data['task_name']}`: {head}"
        if data.get("dataset") and name != data.get("dataset"):
            head += f" (`{data['dataset']}`)"
        source = data.get("source") or NOT_RECORDED
        split = data.get("split_rule") or data.get("split")
        n_train = _count(data, "n_train", "train_ids" if "train_ids" in data else "patients")
        n_test = _count(data, "n_test", "test_ids")
        unit = data.get("unit") or _DEFAULT_UNITS.get(card_kind(cfg), "cases")
        counts = (f"{shown_value(n_train)} training / {shown_value(n_test)} test {unit}")
        lines = [f"{head}. Source: {source}.", "",
                 f"License of the data: {data.get('license') or NOT_RECORDED}"
                 + (f" (see `{data['provenance']}`)" if data.get("provenance") else "") + ".",
                 f"Split: {shown_value(split)}; {counts}.",
                 f"Checksums (md5): {_fmt_md5(data.get('md5'))}."]
        if data.get("train_missing"):
            lines.append(f"Training missingness: {data['train_missing']}.")
        parts.append("\n".join(lines))
    return "\n\n".join(parts)


def training_procedure_text(cfg: Dict[str, Any]) -> str:
    """The "Training procedure" section: the recorded pretraining/fine-tuning settings as JSON lines."""
    training = dict_section(cfg, "training")
    proc = []
    for stage in ("pretraining", "finetuning"):
        if training.get(stage):
            proc.append(f"- **{stage}**: `{json.dumps(training[stage], sort_keys=True)}`")
    if not proc:  # segmentation, VQA, fusion runners record their settings at the top of "training"
        recipe = dict_section(training, "recipe")
        settings = {k: training[k] for k in ("mode", "init", "lora", "fuser", "fuser_args", "loss_weights")
                    if training.get(k) is not None}
        train = training.get("train") or recipe.get("train")
        if train:
            settings["train"] = train
        if settings:
            proc.append(f"- **training**: `{json.dumps(settings, sort_keys=True)}`")
    return "\n".join(proc) or "Not recorded."


# -- results --------------------------------------------------------------------------------------

# -- what each kind takes, returns, is for, and how to call it --------------------------------------
def _image_input(pre: Dict[str, Any]) -> str:
    """The classification/SSL/VQA image input line (unchanged wording for classifiers)."""
    if pre.get("in_chans") and pre.get("img_size"):
        norm = f", normalised with mean {pre['mean']} / std {pre['std']}" if pre.get("mean") and pre.get("std") else ""
        if pre.get("spatial_dims") == 3:
            side = pre["img_size"]
            return (f"{pre['in_chans']}-channel {side}x{side}x{side} volumes (B, C, D, H, W), "
                    f"intensities in [0, 1]{norm}")
        return f"{pre['in_chans']}-channel {pre['img_size']}x{pre['img_size']} images, intensities in [0, 1]{norm}"
    return NOT_RECORDED


def _label_list(names: Any) -> str:
    return f"{names}" if isinstance(names, list) and names else NOT_RECORDED


def describe_kind(cfg: Dict[str, Any], model_id: str) -> Dict[str, str]:
    """``{summary, model_input, outputs, intended_use, limitations, how_to}`` for the card's kind."""
    kind = card_kind(cfg)
    args, pre, enc = dict_section(cfg, "args"), dict_section(cfg, "preprocessing"), dict_section(cfg, "encoder")
    records = data_set_records(cfg)
    names = [n for n in (data_display_name(d) for d in records) if n]
    on = " and ".join(names) if names else "a data set not recorded in this checkpoint"
    medmnist = any(d.get("flag") for d in records)
    general_use = ("Research on medical image analysis and benchmarking of foundation-model adapters. " + _NOT_A_DEVICE)
    n_train = [c for c in (_count(d, "n_train", "train_ids" if "train_ids" in d else "patients") for d in records)
               if c is not None]
    unit = (records[0].get("unit") if records else None) or _DEFAULT_UNITS.get(kind, "cases")
    trained_on = f"Trained on {sum(n_train)} training {unit} of {on}" if n_train else f"Trained on {on}"
    out: Dict[str, str] = {"how_to": ""}
    if kind in ("classification", "other"):
        if kind == "classification" and args.get("num_classes"):
            outputs = (f"{args['num_classes']} {args.get('task') or ''} scores over "
                       f"{shown_value(args.get('label_names'))}")
        else:
            outputs = f"{cfg['kind']} outputs" if cfg.get("kind") else NOT_RECORDED
        out.update(
            summary="A medfm model.", model_input=_image_input(pre), outputs=outputs,
            intended_use=("Research on medical image representation learning and benchmarking (MedMNIST-style "
                          "low-resolution\nimages). " + _NOT_A_DEVICE),
            limitations=("Trained and evaluated on one public benchmark at low resolution; performance on other "
                         "scanners, "
                         "sites, populations or resolutions is unknown. Scores are not calibrated probabilities of "
                         "disease."),
            how_to=(f'import medfm\nclf = medfm.pipeline("image-classification", model="{model_id}")\n'
                    'clf("image.png")  # an image path, PIL image or uint8 array (H, W) / (H, W, C)'))
        if pre.get("spatial_dims") == 3:  # the classification pipeline reads volumes for 3D encoders
            side = shown_value(pre.get("img_size"))
            out["how_to"] = (f'import medfm\nclf = medfm.pipeline("image-classification", model="{model_id}")\n'
                             "preds = clf(volume)  # (D, H, W) array (uint8, or float in [0, 1]) or a .nii/.nii.gz "
                             f"path (min-max scaled per volume); resized trilinearly to {side}^3\n"
                             "# or without the pipeline, on a batch (B, C, D, H, W) float in [0, 1] at that size:\n"
                             f'model = medfm.from_pretrained("{model_id}").eval()\n'
                             "probs = model.scores(model(volumes))")
        if kind == "other":  # too bare to say what it does: no task claimed
            out["how_to"] = f'import medfm\nmodel = medfm.from_pretrained("{model_id}")'
        return out
    if kind == "objective":
        size = pre.get("img_size")
        out.update(
            summary=f"Encoder pretrained with the self-supervised objective `{cfg.get('name')}`.",
            model_input=_image_input(pre),
            outputs=("encoder features (the objective's projection head and loss are for pretraining only); "
                     "fine-tune or probe the encoder for a task"),
            intended_use=(("Research on medical image representation learning and benchmarking (MedMNIST-style "
                           "low-resolution\n"
                           "images). " if medmnist
                           else "Research on medical image representation learning. ") + _NOT_A_DEVICE),
            limitations=(f"{trained_on} without labels. The features predict nothing by themselves; their quality for "
                         "a task is only known after fine-tuning or a probe on that task."),
            how_to=("import medfm\n"
                    f'encoder = medfm.create_encoder("{shown_value(enc.get("name"))}", '
                    f'in_chans={shown_value(pre.get("in_chans"))}, '
                    f'img_size={shown_value(size)}, pretrained="{model_id}")\n'
                    f"features = encoder(images)  # (B, {shown_value(pre.get('in_chans'))}, {shown_value(size)}, "
                    f"{shown_value(size)}) normalised as above -> (B, encoder.num_features)\n"
                    f"# or: medfm finetune <recipe> --init {model_id}"))
        return out
    if kind == "segmentation":
        spatial, inference = _spatial(cfg)
        chans = enc.get("in_chans") or pre.get("in_chans")
        roi = inference.get("roi_size")
        window = f"; sliding windows of {'x'.join(str(r) for r in roi)}" if isinstance(roi, list) and roi else ""
        if window and is_metric_number(inference.get("overlap")):  # recorded since the pipeline defaults to it
            window += f" (overlap {shown_value(inference['overlap'])}, as evaluated)"
        if inference.get("intensity") == "percentile":
            intensity = "intensities scaled per volume to [0, 1] by percentiles"
        elif spatial in ("3d", "2.5d"):  # the pipeline refuses volumes outside [0, 1]; it scales only 2D images
            intensity = "intensities already in [0, 1] (the caller scales them: uint8 / 255)"
        else:
            intensity = "intensities in [0, 1] (uint8 / 255)"
        brain = inference.get("intensity") == "brain_percentile"  # e.g. BraTS: the pipeline needs the brain mask
        if brain:
            pct = inference.get("percentiles") if isinstance(inference.get("percentiles"), list) else [None, None]
            intensity = (f"each channel scaled per case to [0, 1] by its {shown_value(pct[0])} / "
                         f"{shown_value(pct[-1])} percentiles "
                         "inside the brain mask, clipped, then cropped to the mask's bounding box + "
                         f"{shown_value(inference.get('crop_margin'))} voxels")
        prep = next((str(d["input_preprocessing"]) for d in records if d.get("input_preprocessing")), None)
        if prep:  # the task's own scaling (e.g. BraTS: percentiles inside the brain mask)
            intensity = prep
        if brain:
            intensity += "; the pipeline does this given the case's brain mask (predictions pasted back to full size)"
        elif prep:  # recorded before the pipeline could do it (BraTS checkpoints with intensity "unit")
            intensity += "; the caller does this scaling, the pipeline does not"
        if inference.get("normalize") not in (None, "none"):
            intensity += f", then `{inference['normalize']}` normalisation (done by the pipeline)"
        labels = _label_list(args.get("label_names"))
        if spatial == "3d":
            multi = is_metric_number(chans) and chans > 1
            source = "per-channel NIfTI files, a 4D NIfTI or an array" if multi else "NIfTI or array"
            model_input = f"3D volumes `({shown_value(chans)}, D, H, W)` ({source}), {intensity}{window} voxels"
            outputs = f"per-voxel class logits `(B, {shown_value(args.get('num_classes'))}, D, H, W)` over {labels}"
            call = ('out = seg("volume.nii.gz", output_path="mask.nii.gz")  # label volume, written with the input\'s '
                    'affine\nout["mask"]  # (D, H, W) uint8 label map, out["label_names"]')
            if multi:  # one case = the channel files in the model's channel order
                files = ", ".join(f'"channel{i + 1}.nii.gz"' for i in range(int(chans)))
                mask_arg = ', "brain_mask": "brainmask.nii.gz"' if brain else ""
                call = (f'out = seg({{"image": [{files}]{mask_arg}}}, output_path="mask.nii.gz")  # channels in the '
                        'model\'s '
                        "order, as in Model input; written with the first file's affine\n"
                        'out["mask"]  # (D, H, W) uint8 label map, out["label_names"]')
                if not brain and (prep or inference.get("intensity") != "percentile"):  # the caller scales
                    call = (f"out = seg(volume)  # ({chans}, D, H, W) float array, scaled to [0, 1] as in Model input\n"
                            'out["mask"]  # (D, H, W) uint8 label map, out["label_names"]')
        elif spatial == "2.5d":
            k = inference.get("context_slices")
            model_input = (f"3D volumes `(D, H, W)` (NIfTI or array), {intensity}; segmented slice by slice along axis "
                           f"{shown_value(inference.get('slice_axis'))}, each slice with its {k} neighbouring slices "
                           f"on each side as {2 * k + 1} input channels (2.5D){window} pixels")
            outputs = (f"per-pixel class logits `(B, {shown_value(args.get('num_classes'))}, H, W)` per slice "
                       f"over {labels}")
            call = ('out = seg("volume.nii.gz", output_path="mask.nii.gz")\n'
                    'out["mask"]  # (D, H, W) uint8 label map, out["label_names"]')
        else:
            scale = inference.get("scale")
            model_input = (f"{shown_value(chans)}-channel 2D images of any size (PIL, path or array), {intensity}"
                           + (f"; resized by {scale}" if is_metric_number(scale) and scale != 1 else "")
                           + f"{window} pixels")
            outputs = f"per-pixel class logits `(B, {shown_value(args.get('num_classes'))}, H, W)` over {labels}"
            call = ('out = seg("image.png")\nout["mask"]  # (H, W) uint8 label map in the input\'s geometry, '
                    'out["label_names"]')
        out.update(
            summary=f"{'3D' if spatial == '3d' else '2.5D' if spatial == '2.5d' else '2D'} U-Net segmenter on "
                    f"`{shown_value(enc.get('name'))}` for {on}.",
            model_input=model_input, outputs=outputs, intended_use=general_use,
            limitations=(f"{trained_on}; performance on other scanners, sites, populations, resolutions or fields of "
                         "view is unknown. Masks are not validated for clinical measurement."),
            how_to=(f"import medfm\n{call}" if call.startswith("from ") else
                    f'import medfm\nseg = medfm.pipeline("image-segmentation", model="{model_id}")\n{call}'))
        return out
    if kind == "text_segmentation":
        targets = [t for t in args.get("targets") or [] if isinstance(t, dict)]
        names_t = [str(t.get("name")) for t in targets]
        first = names_t[0] if names_t else "target"
        out.update(
            summary=f"Text-conditioned (MulModSeg) segmenter on `{shown_value(enc.get('name'))}` for {on}.",
            model_input=(f"{shown_value(enc.get('in_chans') or pre.get('in_chans'))}-channel 2D images of any size, "
                         "intensities in [0, 1], plus the target to segment: a known target "
                         f"({names_t or NOT_RECORDED}) or a free-text query (embedded by the frozen text encoder "
                         f"`{shown_value(dict_section(args, 'text_encoder').get('name'))}`)"),
            outputs="per-pixel background / target logits `(B, 2, H, W)` for the prompted target",
            intended_use=general_use,
            limitations=(f"{trained_on}; each target was only seen in its own data set's images, so prompting a "
                         "target in another modality is untested. Free-text queries are matched to the known prompts; "
                         "a query unlike all of them is not a new target."),
            how_to=(f'import medfm\nseg = medfm.pipeline("image-segmentation", model="{model_id}")\n'
                    f'out = seg("image.png", target="{first}")  # or query="free-text description"\n'
                    'out["mask"]  # (H, W) uint8 map: 1 = the target'))
        return out
    if kind == "vqa":
        answers = args.get("answers")
        n_ans = len(answers) if isinstance(answers, list) else None
        text = dict_section(args, "text_encoder")
        out.update(
            summary=f"Visual question answering on `{shown_value(enc.get('name'))}` for {on}.",
            model_input=(_image_input(pre) + " and an English question (embedded by the frozen text encoder "
                         f"`{shown_value(text.get('name') or text.get('model_name_or_path'))}`)"),
            outputs=(f"answer logits over {shown_value(n_ans)} answers (the closed vocabulary of the training split); "
                     "the pipeline returns the top-k answers with probabilities"),
            intended_use=general_use,
            limitations=(f"{trained_on}. Answers are chosen from the training answers only: a question whose answer is "
                         "not among them is always answered wrong. Accuracy on open questions is far below closed "
                         "(yes/no) ones; see the evaluation."),
            how_to=(f'import medfm\nvqa = medfm.pipeline("visual-question-answering", model="{model_id}")\n'
                    'vqa("image.png", "is there a fracture?")  # image path, PIL image or uint8 array -> '
                    '[{"answer", "score"}, ...] (top 5)'))
        return out
    # fusers
    mods = args.get("modalities") or pre.get("modalities")
    size = args.get("img_size") or pre.get("img_size")
    labels = _label_list(args.get("label_names"))
    has_clinical = isinstance(mods, list) and "clinical" in mods
    images = [m for m in mods if m != "clinical"] if isinstance(mods, list) else []
    model_input = (f"per sample any non-empty subset of the modalities {shown_value(mods)}: "
                   + (f"images `(1, {size}, {size})` float in [0, 1]" if images else "")
                   + (", " if images and has_clinical else "")
                   + (f"`clinical` a `({shown_value(args.get('clinical_features'))},)` float vector (NaN = missing "
                      "value)"
                      if has_clinical else "")
                   + "; absent modalities are left out of the sample and marked by the batch's presence masks "
                     "(`batch['present'][m]`)")
    sample = ", ".join(f'"{m}": torch.rand(1, {size}, {size})' for m in images[:2])
    if has_clinical:
        sample += (", " if sample
                   else "") + f'"clinical": torch.full(({args.get("clinical_features", "F")},), float("nan"))'
    fuser = cfg.get("name")
    seg = kind == "fusion_segmentation"
    out.update(
        summary=(f"Missing-modality {'segmentation' if seg else 'classification'} fuser `{fuser}` for {on}."),
        model_input=model_input,
        outputs=(f"per-pixel class logits `(B, {shown_value(args.get('num_classes'))}, {size}, {size})` over {labels}"
                 if seg else f"{shown_value(args.get('num_classes'))} class scores (logits) `(B, "
                             f"{shown_value(args.get('num_classes'))})` over {labels}"),
        intended_use=("Research on learning from incomplete multi-modal data (missing MR sequences / clinical values). "
                      + _NOT_A_DEVICE),
        limitations=(f"{trained_on}: a small cohort, so estimates are uncertain (see the confidence intervals); "
                     "performance under other missingness patterns, scanners or sites is unknown."),
        how_to=("import torch, medfm\nfrom medfm.data.multimodal import collate_modalities\n"
                f'model = medfm.from_pretrained("{model_id}").eval()\n'
                f"sample = {{{sample}}}  # leave out a modality the sample lacks\n"
                "batch = collate_modalities([sample], model.modalities)\nwith torch.no_grad():\n"
                + ('    mask = model(batch)["logits"].argmax(1)  # (B, S, S) label map' if seg else
                   '    probs = model(batch)["logits"].softmax(-1)  # (B, K) over model.label_names')))
    return out


