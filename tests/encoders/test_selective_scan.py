"""The selective scan (Mamba S6) against the step-by-step recurrence, values and gradients."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import medfm.encoders.layers.selective_scan as ss
from medfm.encoders.layers.selective_scan import (
    SelectiveScanInputError, auto_chunk_size, linear_recurrence, selective_scan, selective_scan_chunked,
    selective_scan_ref,
)




def make_inputs(batch=2, dim=8, length=13, d_state=1, bc="grouped", groups=2, dtype=torch.float32, seed=0,
                delta_scale=0.5):
    """Random scan inputs in mamba_ssm's layout: u, delta (B, D, L); A (D, N); B, C; D, z, delta_bias."""
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=dtype)  # noqa: E731
    shapes = {"constant": (dim, d_state), "shared": (batch, d_state, length),
              "grouped": (batch, groups, d_state, length)}
    return dict(u=r(batch, dim, length), delta=r(batch, dim, length) * delta_scale,
                A=-(torch.rand(dim, d_state, generator=g, dtype=dtype) * 2 + 0.1),
                B=r(*shapes[bc]), C=r(*shapes[bc]), D=r(dim), z=r(batch, dim, length), delta_bias=r(dim) * 0.1)


def naive_recurrence(u, delta, A, B, C, D, z, delta_bias):
    """Independent hand-written loop for 4D B/C (one sample at a time, one channel at a time)."""
    dt = F.softplus(delta + delta_bias[:, None])
    batch, dim, length = u.shape
    groups, n = B.shape[1], A.shape[1]
    out = torch.zeros_like(u)
    for b in range(batch):
        for d in range(dim):
            g = d // (dim // groups)
            h = torch.zeros(n, dtype=u.dtype)
            for t in range(length):
                h = torch.exp(dt[b, d, t] * A[d]) * h + dt[b, d, t] * B[b, g, :, t] * u[b, d, t]
                out[b, d, t] = (h * C[b, g, :, t]).sum() + D[d] * u[b, d, t]
    return out * F.silu(z)


def test_reference_equals_an_independent_loop():
    args = make_inputs(d_state=3, length=7)
    torch.testing.assert_close(selective_scan_ref(**args), naive_recurrence(**args), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("bc", ["constant", "shared", "grouped"])
@pytest.mark.parametrize("d_state", [1, 4])
@pytest.mark.parametrize("chunk_size", [None, 1, 5, 13, 64])
def test_chunked_scan_equals_sequential_recurrence(bc, d_state, chunk_size):
    args = make_inputs(d_state=d_state, bc=bc, length=13)
    ref = selective_scan_ref(**args)
    out = selective_scan_chunked(**args, chunk_size=chunk_size)
    assert out.shape == ref.shape and out.dtype == torch.float32
    assert (out - ref).abs().max().item() < 1e-5


@pytest.mark.parametrize("optional", [{}, {"D": None}, {"z": None}, {"delta_bias": None}])
def test_optional_arguments_match_reference(optional):
    args = {**make_inputs(d_state=2), **optional}
    torch.testing.assert_close(selective_scan_chunked(**args, chunk_size=4), selective_scan_ref(**args),
                               atol=1e-5, rtol=1e-5)


def test_without_softplus_and_last_state():
    args = make_inputs(d_state=2)
    args["delta"] = args["delta"].abs()
    out, last = selective_scan_chunked(**args, delta_softplus=False, return_last_state=True)
    ref, ref_last = selective_scan_ref(**args, delta_softplus=False, return_last_state=True)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(last, ref_last, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("d_state,chunk_size", [(1, 3), (1, None), (3, 4), (3, None)])
@pytest.mark.parametrize("bc", ["shared", "grouped"])
def test_gradients_match_reference(d_state, chunk_size, bc):
    args = {k: v.requires_grad_() for k, v in make_inputs(d_state=d_state, bc=bc, length=11,
                                                              dtype=torch.float64).items()}
    names = list(args)
    ref = selective_scan_ref(**args)
    out = selective_scan_chunked(**args, chunk_size=chunk_size)
    g = torch.randn_like(ref)
    for name, a, b in zip(names, torch.autograd.grad(ref, list(args.values()), g),
                          torch.autograd.grad(out, list(args.values()), g)):
        torch.testing.assert_close(b, a, atol=1e-10, rtol=1e-9, msg=name)


def test_gradients_in_float32_match_reference():
    args = {k: v.requires_grad_() for k, v in make_inputs(d_state=1, length=9).items()}
    ref, out = selective_scan_ref(**args), selective_scan_chunked(**args, chunk_size=4)
    inputs = list(args.values())
    for a, b in zip(torch.autograd.grad(ref.sum(), inputs), torch.autograd.grad(out.sum(), inputs)):
        torch.testing.assert_close(b, a, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("chunk_size", [2, 5, 10])
def test_linear_recurrence_gradcheck_and_values(chunk_size):
    g = torch.Generator().manual_seed(1)
    log_a = -torch.rand(10, 3, generator=g, dtype=torch.float64)
    x = torch.randn(10, 3, generator=g, dtype=torch.float64)
    h, expected = torch.zeros(3, dtype=torch.float64), []
    for t in range(10):
        h = torch.exp(log_a[t]) * h + x[t]
        expected.append(h)
    torch.testing.assert_close(linear_recurrence(log_a, x, chunk_size), torch.stack(expected))
    assert torch.autograd.gradcheck(lambda la, xx: linear_recurrence(la, xx, chunk_size),
                                    (log_a.requires_grad_(), x.requires_grad_()))


def test_strong_decay_stays_finite_and_exact():
    # delta * A down to about -1000: exp of segment sums must never overflow
    args = make_inputs(d_state=4, length=40, delta_scale=30.0)
    args["A"] = args["A"] * 8
    args = {k: v.requires_grad_() for k, v in args.items()}
    out = selective_scan_chunked(**args, chunk_size=6)
    truth = selective_scan_ref(**{k: v.detach().double() for k, v in args.items()})
    assert torch.isfinite(out).all()
    # outputs reach ~300 here: float32 rounding of the reference itself is ~3e-5 absolute
    assert ((out.double() - truth).abs() / (1 + truth.abs())).max().item() < 1e-5
    grads = torch.autograd.grad(out.sum(), list(args.values()))
    assert all(torch.isfinite(gr).all() for gr in grads)


def test_bfloat16_inputs_compute_in_float32():
    args = make_inputs(d_state=1)
    out = selective_scan_chunked(**{k: v.bfloat16() for k, v in args.items()})
    assert out.dtype == torch.bfloat16
    ref = selective_scan_ref(**{k: v.bfloat16().float() for k, v in args.items()})
    torch.testing.assert_close(out.float(), ref, atol=0.05, rtol=0.02)


def test_cpu_inputs_never_touch_the_cuda_kernel(monkeypatch):
    def fail():
        raise AssertionError("mamba_ssm must only be imported for CUDA tensors")
    monkeypatch.setattr(ss, "cuda_selective_scan_fn", fail)
    args = make_inputs()
    torch.testing.assert_close(selective_scan(**args), selective_scan_ref(**args), atol=1e-5, rtol=1e-5)


def test_auto_chunk_size():
    assert auto_chunk_size(784, 64 * 256) == 784  # many channels: one chunk (plain loop)
    assert auto_chunk_size(784, 32) == 28  # few channels: sqrt(L)-sized chunks
    assert auto_chunk_size(5, 1) == 5


def test_bad_arguments_raise_clear_errors():
    args = make_inputs()
    with pytest.raises(SelectiveScanInputError, match="B must be"):
        selective_scan_chunked(**{**args, "B": torch.randn(2, 3, 1, 13)})  # 8 channels, 3 groups
    with pytest.raises(SelectiveScanInputError, match="delta shape"):
        selective_scan_chunked(**{**args, "delta": torch.randn(2, 8, 12)})
    with pytest.raises(SelectiveScanInputError, match="complex A"):
        selective_scan_ref(**{**args, "A": torch.complex(args["A"], args["A"])})
    with pytest.raises(SelectiveScanInputError, match="chunk_size"):
        selective_scan_chunked(**args, chunk_size=0)
    with pytest.raises(SelectiveScanInputError, match=r"\(batch, dim, length\)"):
        selective_scan(**{**args, "u": torch.randn(8, 13)})
