"""The scope of a suite's refusal of grey data for an encoder of neither 1 nor 3 channels
(:func:`medfm.evaluation.suite_data.prepare_dataset`, ``linear``/``knn``): MedMNIST 2D and 3D sets alike, for 2D and
3D encoders; what an encoder of 1 or 3 channels takes (grey as it is, grey repeated to RGB, RGB) loads as before.

Guards of commit f40453b (review R1): the refusals fail on its parent (a 3D set, grey volumes, for such an encoder
was loaded as 3-channel volumes, which the encoder refuses at feature extraction, stopping the whole run), the
accepted cases pass on it and on f40453b alike.
"""
import pytest

from medfm.evaluation.suite_data import DatasetSkipped
from medfm.evaluation.suite_spec import DatasetSpec
from tests.helpers.stand_in_checkpoint import prepare_with_stand_in

#: (flag, protocol, the encoder's channels, its spatial dims, the channels the scored split is loaded with)
ACCEPTED = [("pneumoniamnist", "linear", 1, 2, 1), ("pneumoniamnist", "knn", 3, 2, 3),
            ("bloodmnist", "linear", 3, 2, 3), ("organmnist3d", "linear", 1, 2, 1), ("organmnist3d", "knn", 3, 2, 3),
            ("organmnist3d", "linear", 1, 3, 1), ("organmnist3d", "knn", 3, 3, 3)]
#: (flag, protocol, the encoder's channels, its spatial dims): grey 3D volumes for an encoder of 2 or 4 channels
REFUSED = [("organmnist3d", "linear", 4, 2), ("organmnist3d", "knn", 2, 3)]


def _prepare(write_medmnist, monkeypatch, flag, protocol, in_chans, dims):
    """:func:`prepare_dataset` of MedMNIST ``flag`` (a generated file) in a one-dataset suite, scored by a stand-in
    checkpoint whose ``dims``-D encoder takes ``in_chans`` channels at 28 px."""
    root = write_medmnist(flag)
    return prepare_with_stand_in(monkeypatch, DatasetSpec(flag=flag), protocol, in_chans, 28, dims,
                                 data_root=str(root))


@pytest.mark.parametrize("flag,protocol,in_chans,dims,chans", ACCEPTED,
                         ids=[f"{f}-{p}-{n}ch-{d}d" for f, p, n, d, _ in ACCEPTED])
def test_what_an_encoder_of_1_or_3_channels_takes_is_loaded_as_before(write_medmnist, monkeypatch, flag, protocol,
                                                                      in_chans, dims, chans):
    """Guard: grey data for a 1-channel encoder stays grey, for an RGB encoder is repeated to RGB; RGB stays RGB."""
    out = _prepare(write_medmnist, monkeypatch, flag, protocol, in_chans, dims)
    for key in ("ds", "train"):
        assert out[key][0]["image"].shape[0] == chans


@pytest.mark.parametrize("flag,protocol,in_chans,dims", REFUSED, ids=[f"{f}-{p}-{n}ch-{d}d" for f, p, n, d in REFUSED])
def test_grey_volumes_for_an_encoder_of_neither_1_nor_3_channels_are_skipped(write_medmnist, monkeypatch, flag,
                                                                            protocol, in_chans, dims):
    """Guard: skipped before the set is loaded, with the refusal's words, for a 2D (2.5D slices) or 3D encoder."""
    with pytest.raises(DatasetSkipped, match=rf"^grey data but the encoder takes {in_chans} channel\(s\)"):
        _prepare(write_medmnist, monkeypatch, flag, protocol, in_chans, dims)
