"""Fake segmentation data sets in their real on-disk formats (CHASE_DB1, MSD hippocampus, TCGA-LGG slices) for the
segmentation reader, runner and card tests."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def write_chase(root: Path, ids=("01L", "01R", "11L"), size=(40, 36)) -> Path:
    """Fake ``chase_db1/CHASEDB1`` files: RGB JPEGs and mode-"1" PNG masks for two observers."""
    folder = root / "chase_db1" / "CHASEDB1"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in ids:
        Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(folder / f"Image_{i}.jpg")
        for obs in ("1stHO", "2ndHO"):
            m = np.zeros((size[1], size[0]), bool)
            m[5:9, :] = True
            if obs == "2ndHO":
                m[20:22, :] = True
            Image.fromarray(m).convert("1").save(folder / f"Image_{i}_{obs}.png")
    return root


def write_hippocampus(root: Path, n=10) -> Path:
    """Fake ``msd_task04_hippocampus`` NIfTI volumes ``hippocampus_000`` ... of ``n`` cases (shapes ``(10 + i % 3, 12,
    9)``, uint8 and float32 images alternately; labels 1 and 2 in two boxes). Returns ``root``."""
    import nibabel as nib

    task = root / "msd_task04_hippocampus"
    for sub in ("imagesTr", "labelsTr"):
        (task / sub).mkdir(parents=True)
    rng = np.random.default_rng(0)
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    for i in range(n):
        shape = (10 + i % 3, 12, 9)
        img = rng.integers(0, 200, shape).astype(np.uint8 if i % 2 else np.float32)
        lab = np.zeros(shape, np.uint8)
        lab[2:5, 3:6, 2:4] = 1
        lab[5:8, 3:6, 2:4] = 2
        nib.save(nib.Nifti1Image(img, affine), str(task / "imagesTr" / f"hippocampus_{i:03d}.nii.gz"))
        nib.save(nib.Nifti1Image(lab, affine), str(task / "labelsTr" / f"hippocampus_{i:03d}.nii.gz"))
    return root


def write_lgg(root: Path, patients=("TCGA_AA_0001_20000101", "TCGA_AA_0002_20000101", "TCGA_BB_0003_20000101"),
              slices=(1, 2, 10)) -> Path:
    """Fake ``lgg_tcga_flair_seg_3ch`` slices: for each of ``patients``, a random 16 x 16 RGB PNG and a mask PNG per
    slice number in ``slices`` (lesion width ``n % 8``: none on slice 8, 16, ...). Returns ``root``."""
    rng = np.random.default_rng(0)
    for p in patients:
        folder = root / "lgg_tcga_flair_seg_3ch" / "images" / p
        folder.mkdir(parents=True)
        for n in slices:
            Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(folder / f"{p}_{n}.png")
            m = np.zeros((16, 16), np.uint8)
            m[4:8, 4:4 + n % 8] = 255
            Image.fromarray(m).save(folder / f"{p}_{n}_mask.png")
    return root
