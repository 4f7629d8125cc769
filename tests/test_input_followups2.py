"""Input follow-ups (2): what a direct call did before, and does now.

- a numpy masked array given to :func:`medfm.pipelines.segmentation.predict_probs` (``np.asarray`` dropped its
  mask), :func:`medfm.pipelines.classification.volume_to_tensor`, or the segmentation readers
  :func:`~medfm.pipelines.seg_inputs.read_input` (volumes), :func:`~medfm.pipelines.seg_inputs.read_channels` and
  :func:`~medfm.pipelines.seg_inputs.read_brain_mask` (which gave back a masked array) was used with the values
  stored under its mask; only the pipelines refused it: one rule, :func:`medfm.pipelines.inputs.refuse_masked`;
- :class:`medfm.data.imagefolder.ImageFolderDataset` skipped WebP, PPM and PGM files, which torchvision's
  ``ImageFolder`` reads, and every other entry of a class folder without a word: torchvision's extensions, and one
  warning for the rest;
- the report folder said ``FileExistsError: output <path> is a file; ...`` / ``cannot create output folder ...``,
  the text-embedding cache ``cannot create the text-embedding cache folder ...`` and
  :func:`~medfm.pipelines.segmentation.save_nifti` mkdir's ``[Errno 17]`` / ``[Errno 20]`` where the atomic writers say
  ``cannot write '<target>': '<file>' is a file, not a folder``: one wording, :func:`medfm.io.in_the_way_error`.
"""
from __future__ import annotations

import re

import nibabel as nib
import numpy as np
import pytest
import torch

import medfm
from medfm.adapters.segmentation import SegmentationModel
from medfm.data.imagefolder import IMAGE_EXTENSIONS
from medfm.evaluation.report import make_output_dir
from medfm.io import atomic_dir, atomic_write_text, in_the_way_error
from medfm.pipelines.classification import PipelineInputError, volume_to_tensor
from medfm.pipelines.seg_inputs import read_brain_mask, read_channels, read_input
from medfm.pipelines.segmentation import SegmentationInputError, predict_labels, predict_probs, save_nifti
from medfm.text.cache import EmbeddingCache
from tests.conftest import MASKED_HINT, load_image_folder, write_grey_image


def _masked(shape, value=0.5, dtype=np.float32):
    """A masked array of ``value`` with its first entry masked (a different value stored under it)."""
    data = np.full(shape, value, dtype)
    data.flat[0] = 0
    masked = np.ma.masked_array(data, mask=np.zeros(shape, bool))
    masked[(0,) * len(shape)] = np.ma.masked
    return masked


def _seg(encoder="resnet_test", in_chans=1, **inference):
    torch.manual_seed(0)
    return SegmentationModel(medfm.create_encoder(encoder, in_chans=in_chans, img_size=16), 2,
                             decoder={"stem_channels": 4}, inference=inference).eval()


# -- masked arrays, direct calls -----------------------------------------------------------------------------
@pytest.mark.parametrize("model, shape, spatial, noun", [
    (lambda: _seg(), (1, 16, 16), (16, 16), "image"),  # a 2D model: (C, H, W)
    (lambda: _seg("resnet3d_test"), (1, 16, 16, 16), (16, 16, 16), "volume"),  # a 3D model: (C, X, Y, Z)
    (lambda: _seg("resnet_test", in_chans=3, context_slices=1, slice_axis=2), (16, 16, 5), (16, 16, 5),
     "volume"),  # a 2.5D model: (X, Y, Z)
])
def test_predict_probs_refuses_a_masked_array(model, shape, spatial, noun):
    model = model()
    masked = _masked(shape)
    for call in (predict_probs, predict_labels):  # were the probabilities of masked.data, without a word
        with pytest.raises(SegmentationInputError) as err:
            call(model, masked)
        assert str(err.value) == f"{noun} is {MASKED_HINT}"
    assert predict_probs(model, masked.filled(0.0)).shape == (2, *spatial)


def test_volume_to_tensor_refuses_a_masked_volume():
    masked = _masked((8, 8, 8), 128, np.uint8)  # was resized with the 0 stored under the mask
    for volume in (masked, masked[None]):
        with pytest.raises(PipelineInputError) as err:
            volume_to_tensor(volume, 1, 8)
        assert str(err.value) == f"volume is {MASKED_HINT}"
    assert torch.equal(volume_to_tensor(masked.filled(128), 1, 8), torch.full((1, 8, 8, 8), 128 / 255))


def test_the_segmentation_readers_refuse_a_masked_array():
    with pytest.raises(SegmentationInputError) as err:  # was read as the volume masked.data
        read_input(_masked((8, 8, 8)), 1, volumetric=True)
    assert str(err.value) == f"volume is {MASKED_HINT}"
    with pytest.raises(SegmentationInputError) as err:  # 2D: refused already (uint8_image_array), same words
        read_input(_masked((8, 8)), 1, volumetric=False)
    assert str(err.value) == f"image is {MASKED_HINT}"
    with pytest.raises(SegmentationInputError) as err:  # was read as the volumes masked.data
        read_channels(_masked((2, 8, 8, 8)), 2)
    assert str(err.value) == f"volume is {MASKED_HINT}"
    mask = _masked((8, 8, 8), 1.0)
    with pytest.raises(SegmentationInputError) as err:  # was a masked bool array, its first voxel masked
        read_brain_mask(mask, (8, 8, 8))
    assert str(err.value) == f"brain_mask is {MASKED_HINT}"
    brain = read_brain_mask(mask.filled(1.0), (8, 8, 8))
    assert type(brain) is np.ndarray and brain.dtype == bool and brain.all()
    assert read_input(_masked((8, 8, 8)).filled(0.5), 1, volumetric=True)["array"].shape == (8, 8, 8)


# -- image folders -------------------------------------------------------------------------------------------
def test_image_folder_reads_torchvisions_extensions():
    from torchvision.datasets.folder import IMG_EXTENSIONS

    assert sorted(IMAGE_EXTENSIONS) == sorted(IMG_EXTENSIONS)  # the samples torchvision's ImageFolder finds


def test_an_image_folder_reads_webp_and_names_what_it_skips(tmp_path):
    root = tmp_path / "f"
    for c, value in (("a", 10), ("b", 200)):
        (root / c).mkdir(parents=True)
        write_grey_image(root / c / "0.png", value)
    write_grey_image(root / "a" / "1.webp", 30, "WEBP")  # was skipped without a word
    write_grey_image(root / "a" / "2.PGM", 40, "PPM")
    (root / "a" / ".DS_Store").write_bytes(b"\0")  # hidden: skipped silently, as before
    ds, caught = load_image_folder(root)
    assert ds.files == ["a/0.png", "a/1.webp", "a/2.PGM", "b/0.png"] and caught == []
    assert ds.images[1].tolist() == np.full((8, 8), 30).tolist()  # lossless WebP of one value
    write_grey_image(root / "b" / "1.gif", 50, "GIF")  # was skipped without a word (not torchvision's either)
    (root / "b" / "notes.txt").write_text("x")
    (root / "b" / "more").mkdir()  # torchvision would search it
    ds, caught = load_image_folder(root)
    assert ds.files == ["a/0.png", "a/1.webp", "a/2.PGM", "b/0.png"]
    assert caught == [f"image folder {root}: skipped 3 entries of its class folders (e.g. b/1.gif): it reads the "
                      f"{', '.join(IMAGE_EXTENSIONS)} files directly in each class folder (torchvision ImageFolder's "
                      "extensions), not sub-folders; list other images in a labels.csv to read them"]
    (root / "b" / "notes.txt").unlink()
    (root / "b" / "1.gif").unlink()
    assert re.search(r": skipped 1 entry of its class folders \(e\.g\. b/more/\): ", load_image_folder(root)[1][0])
    (root / "labels.csv").write_text("file,label\nb/0.png,b\na/1.webp,a\n")
    write_grey_image(root / "b" / "1.gif", 50, "GIF")
    assert load_image_folder(root)[1] == []  # a labels.csv lists the samples: nothing is skipped


# -- a file in the way of a folder: one wording ------------------------------------------------------------------
def test_a_file_in_the_way_of_a_folder_has_one_wording(tmp_path):
    blocker = tmp_path / "f"
    blocker.write_text("keep")
    q = repr(str(blocker))
    for target in (blocker, blocker / "a" / "b"):
        base = f"cannot write {str(target)!r}: {q} is a file, not a folder"
        assert str(in_the_way_error(target, blocker)) == base
        with pytest.raises(NotADirectoryError) as err:  # the atomic writers' words (unchanged)
            with atomic_dir(target):
                pass
        assert str(err.value) == base
        with pytest.raises(NotADirectoryError) as err:  # was FileExistsError "output <f> is a file; ..." or
            make_output_dir(target)                     # "cannot create output folder <f/a/b>: <f> is a file"
        assert str(err.value) == f"{base}; choose another output folder"
    with pytest.raises(NotADirectoryError) as err:
        atomic_write_text(blocker / "x.json", "{}")
    assert str(err.value) == f"cannot write {str(blocker / 'x.json')!r}: {q} is a file, not a folder"
    for target in (blocker / "x.nii.gz", blocker / "a" / "x.nii.gz"):  # were mkdir's [Errno 17] / [Errno 20]
        with pytest.raises(NotADirectoryError) as err:
            save_nifti(nib.Nifti1Image(np.zeros((2, 2, 2), np.uint8), np.eye(4)), target)
        assert str(err.value) == f"cannot write {str(target)!r}: {q} is a file, not a folder"
    cache = EmbeddingCache("m", blocker / "cache")
    with pytest.raises(NotADirectoryError) as err:  # was "cannot create the text-embedding cache folder ..."
        cache.put_many(["a"], torch.ones(1, 4))
    assert str(err.value) == (f"cannot write {str(cache.folder)!r}: {q} is a file, not a folder; pass another "
                              "cache_dir for the text-embedding cache, or remove that file")
    assert blocker.read_text() == "keep"
