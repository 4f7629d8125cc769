"""Neighbourhood attention: NATTEN's border/dilation rule against a naive per-pixel loop."""
from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

from medfm.encoders.layers.neighborhood_attention import (
    NeighborhoodAttention2D,
    effective_window,
    natten_available,
    neighborhood_attention_2d,
    neighborhood_indices,
    neighborhood_mask,
    window_starts,
)


def natten_window_start(index: int, length: int, kernel: int, dilation: int) -> int:
    """NATTEN's ``get_window_start`` (csrc naive CPU kernels), transcribed literally."""
    half = kernel // 2
    if dilation <= 1:
        return max(index - half, 0) + (index + half >= length) * (length - index - half - 1)
    ni = index - half * dilation
    if ni < 0:
        return index % dilation
    if index + half * dilation >= length:
        imodd = index % dilation
        a = (length // dilation) * dilation
        b = length - a
        if imodd < b:
            return length - b + imodd - 2 * half * dilation
        return a + imodd - kernel * dilation
    return ni


def naive_na2d(q, k, v, kernel, dilation):
    """Per-pixel loop: softmax over the k*k window keys of each query. q,k,v: (B, H, W, h, d)."""
    b, height, width, heads, dim = q.shape
    out = torch.zeros_like(q)
    for y in range(height):
        ys = natten_window_start(y, height, kernel[0], dilation[0])
        rows = [ys + i * dilation[0] for i in range(kernel[0])]
        for x in range(width):
            xs = natten_window_start(x, width, kernel[1], dilation[1])
            cols = [xs + j * dilation[1] for j in range(kernel[1])]
            keys = k[:, rows][:, :, cols].reshape(b, -1, heads, dim)  # (B, kh*kw, h, d)
            vals = v[:, rows][:, :, cols].reshape(b, -1, heads, dim)
            logits = torch.einsum("bhd,bnhd->bhn", q[:, y, x], keys) / math.sqrt(dim)
            out[:, y, x] = torch.einsum("bhn,bnhd->bhd", logits.softmax(-1), vals)
    return out


@pytest.mark.parametrize("kernel,dilation", [(3, 1), (3, 2), (3, 3), (5, 1), (7, 1)])
def test_sdpa_matches_naive_loop_on_9x9(kernel, dilation):
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 9, 9, 2, 8) for _ in range(3))
    got = neighborhood_attention_2d(q, k, v, kernel, dilation, backend="sdpa")
    ref = naive_na2d(q, k, v, (kernel, kernel), (dilation, dilation))
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)


def test_non_square_map_and_per_axis_window():
    torch.manual_seed(1)
    q, k, v = (torch.randn(1, 9, 7, 1, 4) for _ in range(3))
    got = neighborhood_attention_2d(q, k, v, (3, 5), (3, 1), backend="sdpa")
    torch.testing.assert_close(got, naive_na2d(q, k, v, (3, 5), (3, 1)), atol=1e-5, rtol=1e-5)


def test_window_starts_match_natten_rule_exhaustively():
    for length in range(1, 20):
        for kernel in (1, 3, 5, 7):
            for dilation in range(1, 6):
                if kernel * dilation > length:
                    continue
                ref = [natten_window_start(i, length, kernel, dilation) for i in range(length)]
                assert window_starts(length, kernel, dilation).tolist() == ref, (length, kernel, dilation)


def test_windows_stay_in_dilation_group_and_contain_query():
    idx = neighborhood_indices(11, 3, 2)
    assert idx.shape == (11, 3)
    for i, row in enumerate(idx.tolist()):
        assert all(0 <= j < 11 and j % 2 == i % 2 for j in row)
        assert i in row


def test_mask_rows_have_exactly_kernel_area_keys():
    mask = neighborhood_mask(9, 9, 3, 3)
    assert mask.shape == (81, 81) and mask.dtype == torch.bool
    assert (mask.sum(1) == 9).all()
    # interior query (4, 4) with dilation 3 sees rows/cols {1, 4, 7}
    keys = {(int(n) // 9, int(n) % 9) for n in mask[4 * 9 + 4].nonzero().flatten()}
    assert keys == {(r, c) for r in (1, 4, 7) for c in (1, 4, 7)}
    # corner query (0, 0) without dilation: window shifted inside the map
    corner = neighborhood_mask(9, 9, 3, 1)[0].nonzero().flatten().tolist()
    assert corner == [0, 1, 2, 9, 10, 11, 18, 19, 20]


def test_effective_window_clamps_kernel_and_dilation():
    assert effective_window(28, 28, 7, 1) == ((7, 7), (1, 1))
    assert effective_window(14, 14, 7, None) == ((7, 7), (2, 2))  # largest dilation that fits
    assert effective_window(28, 28, 7, 5) == ((7, 7), (4, 4))  # 7 * 5 > 28
    assert effective_window(7, 7, 7, None) == ((7, 7), (1, 1))
    assert effective_window(4, 4, 7, None) == ((4, 4), (1, 1))  # whole axis: global
    assert effective_window(4, 9, 3, 2) == ((3, 3), (1, 2))


def test_kernel_larger_than_map_is_global_attention():
    torch.manual_seed(2)
    q, k, v = (torch.randn(2, 4, 4, 2, 8) for _ in range(3))
    got = neighborhood_attention_2d(q, k, v, 7, None, backend="sdpa")
    flat = [t.reshape(2, 16, 2, 8).transpose(1, 2) for t in (q, k, v)]
    ref = F.scaled_dot_product_attention(*flat).transpose(1, 2).reshape(2, 4, 4, 2, 8)
    torch.testing.assert_close(got, ref, atol=1e-6, rtol=1e-6)


def test_module_matches_functional_and_backpropagates():
    torch.manual_seed(3)
    layer = NeighborhoodAttention2D(16, num_heads=2, kernel_size=3, dilation=2, backend="sdpa")
    x = torch.randn(2, 9, 9, 16, requires_grad=True)
    out = layer(x)
    q, k, v = layer.qkv(x).reshape(2, 9, 9, 3, 2, 8).unbind(3)
    ref = layer.proj(naive_na2d(q, k, v, (3, 3), (2, 2)).reshape(2, 9, 9, 16))
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    out.square().mean().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert layer.qkv.weight.grad is not None


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="divisible"):
        NeighborhoodAttention2D(10, num_heads=3)
    with pytest.raises(ValueError, match="odd"):
        NeighborhoodAttention2D(8, num_heads=2, kernel_size=4)
    with pytest.raises(ValueError, match="backend"):
        NeighborhoodAttention2D(8, num_heads=2, backend="flash")
    with pytest.raises(ValueError, match=r"\(B, H, W, 8\)"):
        NeighborhoodAttention2D(8, num_heads=2)(torch.randn(1, 8, 5, 5))
    with pytest.raises(ValueError, match="exceeds"):
        window_starts(8, 3, 3)
    if not natten_available():
        with pytest.raises(RuntimeError, match="NATTEN"):
            q = torch.randn(1, 5, 5, 1, 4)
            neighborhood_attention_2d(q, q, q, 3, backend="natten")


@pytest.mark.skipif(not (torch.cuda.is_available() and natten_available()), reason="needs CUDA and NATTEN")
def test_natten_backend_matches_sdpa_on_gpu():
    torch.manual_seed(4)
    q, k, v = (torch.randn(2, 14, 14, 2, 32, device="cuda") for _ in range(3))
    for dilation in (1, 2):
        got = neighborhood_attention_2d(q, k, v, 7, dilation, backend="natten")
        ref = neighborhood_attention_2d(q, k, v, 7, dilation, backend="sdpa")
        torch.testing.assert_close(got, ref, atol=1e-4, rtol=1e-4)
