"""Prompt templates: modality descriptions, MedMNIST flag -> modality, readable class names.

Two uses:

* **Pretraining texts.** Every image of the pretraining corpus without its own caption gets a
  modality/organ description (``modality_texts("chest_xray")`` -> "a chest X-ray", "a frontal
  chest radiograph", ...). These texts never name a class of a classification set.
* **Zero-shot classification** (CLIP, Radford et al. 2021, Sec. 3.1.4): each class becomes
  one text per template (``"a chest X-ray showing {label}"``) with a readable class name
  (``"pneumonia"``, ``"no pneumonia (normal)"``); the class embedding is the normalised mean
  of its template embeddings (prompt ensembling).
"""
from __future__ import annotations

import re
import string
from typing import Dict, List, Optional, Sequence, Tuple

from medfm.arg_checks import check_list
from medfm.registry import close_match_hint

#: modality tag -> descriptions (first one is the canonical phrase used in class prompts)
MODALITY_TEXTS: Dict[str, Tuple[str, ...]] = {
    "chest_xray": ("a chest X-ray", "a frontal chest radiograph", "an X-ray image of the chest"),
    "breast_ultrasound": ("a breast ultrasound image", "an ultrasound scan of the breast"),
    "abdominal_ct": ("an abdominal CT slice", "a computed tomography image of the abdomen"),
    "chest_ct": ("a chest CT slice", "a computed tomography image of the chest"),
    "head_ct": ("a head CT slice", "a computed tomography image of the head"),
    "breast_mri": ("a breast MRI slice", "a magnetic resonance image of the breast"),
    "hand_xray": ("a hand X-ray", "a radiograph of the hand"),
    "brain_mri_flair": ("a brain MRI slice, FLAIR sequence", "a FLAIR magnetic resonance image of the brain"),
    "brain_mri_pre_contrast": ("a brain MRI slice, pre-contrast sequence",
                               "a pre-contrast magnetic resonance image of the brain"),
    "brain_mri_post_contrast": ("a brain MRI slice, post-contrast sequence",
                                "a post-contrast magnetic resonance image of the brain"),
    "hippocampus_mri": ("a brain MRI crop around the hippocampus",
                        "a magnetic resonance image of the hippocampus region"),
    "retinal_fundus": ("a retinal fundus photograph", "a colour photograph of the retina"),
    "retinal_fundus_crop": ("a close-up crop of a retinal fundus photograph showing blood vessels",
                            "a magnified patch of the retina with vessels"),
    "retinal_oct": ("a retinal OCT scan", "an optical coherence tomography image of the retina"),
    "colon_pathology": ("a colon histopathology patch", "an H&E-stained tissue patch from the colon"),
    "dermatoscopy": ("a dermatoscopic image of a skin lesion", "a dermoscopy photograph of the skin"),
    "blood_microscopy": ("a microscopy image of a blood cell", "a blood smear cell image"),
    "kidney_microscopy": ("a microscopy image of kidney cortex cells", "a fluorescence image of kidney cells"),
    "electron_microscopy": ("an electron microscopy image of brain tissue", "an electron micrograph of a synapse"),
    "adrenal_shape": ("a cross-section of a 3D adrenal gland shape mask from CT",
                      "a slice of a segmented adrenal gland"),
    "vessel_shape": ("a cross-section of a 3D brain vessel shape from MR angiography",
                     "a slice of a segmented intracranial vessel"),
    "organ_ct": ("a CT crop of an abdominal organ", "a computed tomography patch of an organ"),
    "lung_nodule_ct": ("a chest CT crop around a lung nodule", "a computed tomography patch of a lung nodule"),
    "rib_ct": ("a chest CT crop around a rib", "a computed tomography patch of a rib"),
    "chest_radiology": ("a radiology image of the chest",),
    "abdominal_radiology": ("a radiology image of the abdomen",),
    "head_radiology": ("a radiology image of the head",),
    "radiology": ("a radiology image",),
}

#: MedMNIST v2 flag -> modality tag (Yang et al. 2023, Table 1)
FLAG_MODALITY: Dict[str, str] = {
    "pathmnist": "colon_pathology", "chestmnist": "chest_xray", "dermamnist": "dermatoscopy",
    "octmnist": "retinal_oct", "pneumoniamnist": "chest_xray", "retinamnist": "retinal_fundus",
    "breastmnist": "breast_ultrasound", "bloodmnist": "blood_microscopy", "tissuemnist": "kidney_microscopy",
    "organamnist": "abdominal_ct", "organcmnist": "abdominal_ct", "organsmnist": "abdominal_ct",
    "organmnist3d": "organ_ct", "nodulemnist3d": "lung_nodule_ct", "adrenalmnist3d": "adrenal_shape",
    "fracturemnist3d": "rib_ct", "vesselmnist3d": "vessel_shape", "synapsemnist3d": "electron_microscopy",
}

#: readable class names in label-index order, where INFO's names are terse or ambiguous
READABLE_LABELS: Dict[str, Tuple[str, ...]] = {
    "pneumoniamnist": ("no pneumonia (normal)", "pneumonia"),
    "breastmnist": ("a malignant tumour", "a normal or benign finding"),
    "retinamnist": ("no diabetic retinopathy", "mild diabetic retinopathy", "moderate diabetic retinopathy",
                    "severe diabetic retinopathy", "proliferative diabetic retinopathy"),
    "adrenalmnist3d": ("a normal adrenal gland", "adrenal hyperplasia"),
    "vesselmnist3d": ("a normal vessel", "an aneurysm"),
}

#: class templates per modality; "{label}" is the readable class name
CLASS_TEMPLATES: Dict[str, Tuple[str, ...]] = {
    "chest_xray": ("a chest X-ray showing {label}", "a frontal chest radiograph with {label}",
                   "an X-ray image of the chest: {label}"),
    "breast_ultrasound": ("a breast ultrasound image showing {label}", "an ultrasound scan of the breast with {label}"),
}
DEFAULT_CLASS_TEMPLATES: Tuple[str, ...] = ("{modality} showing {label}", "{modality} with {label}")


def _unknown(kind: str, name: str, known: Sequence[str]) -> KeyError:
    if not isinstance(name, str):
        return KeyError(f"{kind} must be a string, got {type(name).__name__}")
    return KeyError(f"unknown {kind} {name!r}{close_match_hint(name, sorted(known), n=3, fallback='known')}")


def modality_texts(modality: str) -> Tuple[str, ...]:
    """Descriptions of a modality tag, canonical one first.

    Raises:
        KeyError: unknown tag (with close matches).
    """
    if not isinstance(modality, str) or modality not in MODALITY_TEXTS:
        raise _unknown("modality", modality, MODALITY_TEXTS)
    return MODALITY_TEXTS[modality]


def modality_of(flag: str) -> str:
    """Modality tag of a MedMNIST flag (``"pneumoniamnist"`` -> ``"chest_xray"``).

    Raises:
        KeyError: unknown flag (with close matches).
    """
    if not isinstance(flag, str) or flag not in FLAG_MODALITY:
        raise _unknown("MedMNIST flag", flag, FLAG_MODALITY)
    return FLAG_MODALITY[flag]


def class_names(flag: str) -> List[str]:
    """Readable class names of a MedMNIST flag in label order (:data:`READABLE_LABELS` or INFO's).

    Raises:
        KeyError: unknown flag.
    """
    modality_of(flag)
    if flag in READABLE_LABELS:
        return list(READABLE_LABELS[flag])
    from medfm.data.medmnist_info import INFO

    labels = INFO[flag]["label"]
    return [labels[str(i)] for i in range(len(labels))]


def class_prompts(flag: str, names: Optional[Sequence[str]] = None,
                  templates: Optional[Sequence[str]] = None) -> List[List[str]]:
    """Zero-shot prompts of a MedMNIST flag: one list of texts per class, in label order.

    Args:
        flag: MedMNIST flag; picks the modality and its templates.
        names: class names (default :func:`class_names`).
        templates: strings with ``{label}`` (and optionally ``{modality}``); default the
            modality's :data:`CLASS_TEMPLATES` or :data:`DEFAULT_CLASS_TEMPLATES`.

    Returns:
        ``K`` lists of ``T`` prompts, e.g. ``[["a chest X-ray showing no pneumonia (normal)", ...], ...]``.

    Raises:
        KeyError: unknown flag; ValueError: ``names`` not one distinct non-empty string per class of
        ``flag``; a template reading an attribute or index of a placeholder (``{label.upper}``, ``{label[0]}``:
        was called "without a '{label}' placeholder"), without ``{label}``, with a field other than
        ``{label}``/``{modality}``, a ``!r``/``!a`` conversion (``{label!r}`` put the class name in Python's
        quotes: ``"a chest X-ray showing 'pneumonia'"``), malformed braces or a format spec a string refuses
        (``{label:d}``): :func:`check_template`; duplicate templates.
    """
    modality = modality_of(flag)
    names = _strings("names", names) if names is not None else class_names(flag)
    templates = (_strings("templates", templates) if templates is not None
                 else list(CLASS_TEMPLATES.get(modality, DEFAULT_CLASS_TEMPLATES)))
    if not names or not templates:
        raise ValueError("class_prompts needs at least one class name and one template")
    expected = len(class_names(flag))
    if len(names) != expected:
        raise ValueError(f"{flag} has {expected} classes but {len(names)} class names were given")
    dup = sorted({n for n in names if names.count(n) > 1} | {t for t in templates if templates.count(t) > 1})
    if dup:
        raise ValueError(f"class names and templates must be distinct; {dup[0]!r} is repeated")
    for t in templates:
        check_template(t)
    phrase = MODALITY_TEXTS[modality][0]
    return [[t.format(label=n, modality=phrase) for t in templates] for n in names]


def check_template(template: str, fields: Sequence[str] = ("label", "modality"), required: str = "label",
                   filler: str = "a class name") -> None:
    """Refuse a ``str.format`` template whose placeholders would not be filled in as plain text.

    The one rule of medfm's prompt templates: the zero-shot class templates (:func:`class_prompts`: ``{label}``,
    ``{modality}``) and the target prompts of :class:`medfm.adapters.text_seg.TextConditionedSegmenter`
    (``{modality}``, ``{target}``). Each placeholder is one of ``fields``, filled in with a string as it is: no
    attribute or index (``{label.upper}`` put ``<built-in method upper ...>`` in the prompt, ``{label[0]}`` its first
    letter), no ``!r`` / ``!a`` conversion (``{label!r}`` put the text in Python's quotes: ``"a chest X-ray showing
    'pneumonia'"``), no format spec a string refuses (``{label:d}``, ``{label!z}``); ``required`` must be there.

    Args:
        template: the template (a string).
        fields: the placeholders filled in, in the order the messages name them.
        required: the placeholder every template needs.
        filler: what ``required`` is filled in with, for the message ("a class name").

    Raises:
        ValueError: one line naming the template: malformed braces, a placeholder read as an attribute or index
            or converted ("... {label} and {modality} are filled in as plain strings: write {label}"), no
            ``{<required>}`` ("every template needs a '{label}' placeholder, got ..."), another field
            ("... has field(s) ['x']; only {label} and {modality} are filled in"), a format spec a string
            refuses ("... cannot be filled in with a class name: ...").
    """
    allowed = " and ".join(f"{{{f}}}" for f in fields)
    try:
        parsed = [(f, c) for _, f, _, c in string.Formatter().parse(template) if f is not None]
    except ValueError as err:
        raise ValueError(f"template {template!r} has malformed braces ({err})") from None
    for f, c in parsed:
        base = _field_base(f)
        if base not in fields:
            continue
        if f != base:  # '{label.upper}', '{label[0]}': format() reads an attribute/item of the string
            problem = f"reads an attribute or index of a placeholder ({{{f}}})"
        elif c in ("r", "a"):  # '{label!r}': "a chest X-ray showing 'pneumonia'", in Python's quotes
            problem = f"converts a placeholder ({{{f}!{c}}} puts the text in Python quotes)"
        else:
            continue
        raise ValueError(f"template {template!r} {problem}; {allowed} are filled in as plain strings: write {{{base}}}")
    found = {f for f, _ in parsed}
    if required not in found:
        raise ValueError(f"every template needs a '{{{required}}}' placeholder, got {template!r}")
    if found - set(fields):
        raise ValueError(f"template {template!r} has field(s) {sorted(found - set(fields))}; only {allowed} are filled "
                         "in")
    try:  # a format spec or conversion that a string refuses ('{label:d}', '{label!z}')
        template.format(**{f: f for f in fields})
    except ValueError as err:
        raise ValueError(f"template {template!r} cannot be filled in with {filler}: {err}") from None


def _field_base(field: str) -> str:
    """The placeholder name of a format field: ``"label"`` for ``"label.upper"`` or ``"label[0]"``."""
    return re.split(r"[.\[]", field, maxsplit=1)[0]


def _strings(what: str, values: Sequence[str]) -> List[str]:
    """``values`` as a list of non-blank strings: a list or tuple (the container rule of
    :func:`medfm.arg_checks.check_list`: a bare string is refused, not split into characters).

    Raises:
        ValueError: a bare string or another value that is no list or tuple, a non-string or blank item.
    """
    values = check_list(what, values, what="a list of strings", sequence=True)
    bad = [v for v in values if not isinstance(v, str) or not v.strip()]
    if bad:
        raise ValueError(f"{what} must be non-empty strings, got {bad[0]!r}")
    return values


__all__ = [
    "MODALITY_TEXTS", "FLAG_MODALITY", "READABLE_LABELS", "CLASS_TEMPLATES", "DEFAULT_CLASS_TEMPLATES",
    "modality_texts", "modality_of", "class_names", "class_prompts", "check_template",
]
