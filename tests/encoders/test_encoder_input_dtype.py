"""Encoders accept float inputs of any float dtype (cast to the encoder's), found by the audit:
a float64 batch (NumPy's default) used to fail deep inside the first convolution."""
import pytest
import torch

import medfm
from medfm.encoders import EncoderInputError
from medfm.registry import ENCODERS

TEST_ENCODERS = medfm.list_encoders(test=True)


def _shape(name, b=2, side=16):
    return (b, 1) + (side,) * ENCODERS.tags(name).get("dims", 2)


@pytest.mark.parametrize("name", TEST_ENCODERS)
def test_float64_and_float16_inputs_match_float32(name):
    torch.manual_seed(0)
    enc = medfm.create_encoder(name, in_chans=1, img_size=16).eval()
    x = torch.rand(_shape(name))
    with torch.no_grad():
        ref = enc(x)
        assert torch.equal(enc(x.double()), ref)
        assert enc(x.half()).dtype == torch.float32
        maps = enc.forward_intermediates(x.double())
    assert all(m.dtype == torch.float32 for m in maps)


@pytest.mark.parametrize("name", ["resnet_test", "vit_test"])
def test_integer_inputs_still_rejected(name):
    enc = medfm.create_encoder(name, in_chans=1, img_size=16)
    with pytest.raises(EncoderInputError, match="float inputs"):
        enc(torch.zeros(_shape(name), dtype=torch.uint8))
