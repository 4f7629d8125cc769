import math

import pytest
import torch

import medfm
from medfm.objectives import nt_xent_loss
from medfm.registry import OBJECTIVES
from tests.conftest import train_objective_losses


def nt_xent_reference(z1, z2, t):
    """Plain loop over the 2B anchors (SimCLR eq. 1)."""
    z = torch.cat([z1, z2])
    z = z / z.norm(dim=1, keepdim=True)
    n = z.shape[0]
    b = n // 2
    total = 0.0
    for i in range(n):
        pos = (i + b) % n
        num = math.exp(float(z[i] @ z[pos]) / t)
        den = sum(math.exp(float(z[i] @ z[k]) / t) for k in range(n) if k != i)
        total += -math.log(num / den)
    return total / n


@pytest.mark.parametrize("t", [0.1, 0.5])
def test_nt_xent_matches_hand_written_reference(t):
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(5, 7, generator=g, dtype=torch.float64), torch.randn(5, 7, generator=g, dtype=torch.float64)
    assert nt_xent_loss(z1, z2, t).item() == pytest.approx(nt_xent_reference(z1, z2, t), abs=1e-5)


def test_nt_xent_hand_computed_two_pairs():
    # two orthogonal pairs with identical views: logits (1/t) for positive, 0 for the 2 negatives
    z1 = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    t = 0.5
    expected = -math.log(math.exp(2.0) / (math.exp(2.0) + 2.0))
    assert nt_xent_loss(z1, z1.clone(), t).item() == pytest.approx(expected, abs=1e-6)


def test_nt_xent_errors():
    with pytest.raises(ValueError, match="equal shape"):
        nt_xent_loss(torch.randn(4, 3), torch.randn(4, 2))
    with pytest.raises(ValueError, match="at least 2"):
        nt_xent_loss(torch.randn(1, 3), torch.randn(1, 3))
    with pytest.raises(ValueError, match="temperature"):
        nt_xent_loss(torch.randn(4, 3), torch.randn(4, 3), temperature=0)


def test_simclr_loss_decreases():
    torch.manual_seed(0)
    enc = medfm.create_encoder("resnet_test", in_chans=1, img_size=28)
    obj = OBJECTIVES.build("simclr", encoder=enc, hidden_dim=64, proj_dim=32)
    images = torch.rand(16, 1, 28, 28)
    losses = train_objective_losses(obj, {"image": images}, 12)
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3
