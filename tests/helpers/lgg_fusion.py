"""A generated TCGA-LGG multimodal data root (``lgg_tcga_flair_seg_3ch``: 3-channel slices, masks and the clinical
table) for the ``medfm fuse`` and LGG data tests."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from medfm.data.lgg_fusion import CLINICAL_COLUMNS

#: the patients of :func:`write_fake_lgg`: (case folder, pre missing, post missing)
CASES = [("TCGA_AA_0001_20000101", False, False), ("TCGA_AA_0002_20000102", True, True),
         ("TCGA_AA_0003_20000103", False, True)]
#: the side of its slices (px)
SIDE = 16


def write_fake_lgg(root: Path, slices: int = 3) -> Path:
    """Write ``root/lgg_tcga_flair_seg_3ch`` for the :data:`CASES`: ``slices`` seeded random ``(SIDE, SIDE, 3)`` PNGs
    per patient (a missing 'pre' or 'post' is a copy of FLAIR, channel 1), masks with a 4 x 4 lesion on odd slices,
    and ``data.csv`` (one missing clinical value per patient). Returns ``root``, a data root."""
    folder = root / "lgg_tcga_flair_seg_3ch"
    rng = np.random.default_rng(0)
    for case, pre_missing, post_missing in CASES:
        d = folder / "images" / case
        d.mkdir(parents=True)
        for n in range(1, slices + 1):
            img = rng.integers(0, 256, (SIDE, SIDE, 3), dtype=np.uint8)
            if pre_missing:
                img[..., 0] = img[..., 1]
            if post_missing:
                img[..., 2] = img[..., 1]
            mask = np.zeros((SIDE, SIDE), np.uint8)
            if n % 2:
                mask[4:8, 4:8] = 255
            Image.fromarray(img).save(d / f"{case}_{n}.png")
            Image.fromarray(mask).save(d / f"{case}_{n}_mask.png")
    header = ",".join(["Patient", *CLINICAL_COLUMNS, "death01"])
    rows = []
    for i, (case, _, _) in enumerate(CASES):
        vals = [str(float(i + j)) for j in range(len(CLINICAL_COLUMNS))]
        vals[i] = ""  # a real missing value
        rows.append(",".join(["_".join(case.split("_")[:3]), *vals, "1"]))
    (folder / "data.csv").write_text("\n".join([header, *rows]) + "\n")
    return root
