"""Deterministic resampling / cross-entropy: the same values as PyTorch's ops, and chosen when asked for."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from medfm.encoders.layers import deterministic as det
from medfm.encoders.layers.deterministic import (adaptive_avg_pool, adaptive_pool_matrix, cross_entropy_map,
                                                 linear_resize, linear_resize_matrix)

CASES = [((2, 3, 7, 9), (14, 18)), ((2, 3, 8, 8), (5, 3)), ((1, 2, 4, 5, 6), (9, 3, 12)), ((2, 3, 11), (4,)),
         ((1, 1, 3, 3), (1, 1)), ((1, 2, 5), (5,))]


@pytest.mark.parametrize("shape,size", CASES)
def test_matrix_forms_equal_pytorchs_interpolate_and_adaptive_pooling(shape, size):
    x = torch.randn(*shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    mode = {3: "linear", 4: "bilinear", 5: "trilinear"}[x.ndim]
    pool = {3: F.adaptive_avg_pool1d, 4: F.adaptive_avg_pool2d, 5: F.adaptive_avg_pool3d}[x.ndim]
    torch.testing.assert_close(det._separable(x, size, linear_resize_matrix),
                               F.interpolate(x, size=size, mode=mode, align_corners=False), rtol=0, atol=1e-12)
    torch.testing.assert_close(det._separable(x, size, adaptive_pool_matrix), pool(x, size), rtol=0, atol=1e-12)


def test_hand_computed_weights():
    # 2 -> 4, align_corners=False: sources -0.25 (clamped to 0), 0.25, 0.75, 1.25 (upper neighbour clamped)
    assert linear_resize_matrix(2, 4, dtype=torch.float64).tolist() == [[1, 0], [0.75, 0.25], [0.25, 0.75], [0, 1]]
    # 5 -> 2 adaptive windows: [0, 3) and [2, 5)
    assert adaptive_pool_matrix(5, 2, dtype=torch.float64).tolist() == [[1 / 3, 1 / 3, 1 / 3, 0, 0], [0, 0, 1 / 3, 1 / 3, 1 / 3]]


def test_the_matrix_path_is_taken_only_for_gradients_under_deterministic_kernels(monkeypatch):
    calls = []
    monkeypatch.setattr(det, "_separable", lambda x, size, m: calls.append(m) or torch.zeros(x.shape[:2] + tuple(size)))
    monkeypatch.setattr(det, "needs_deterministic", lambda x: x.requires_grad)  # stands in for "a GPU tensor"
    x = torch.rand(1, 2, 4, 4)
    assert linear_resize(x, (8, 8)).shape == (1, 2, 8, 8) and adaptive_avg_pool(x, (2, 2)).shape == (1, 2, 2, 2)
    assert calls == []
    x.requires_grad_(True)
    linear_resize(x, (8, 8)), adaptive_avg_pool(x, (2, 2))
    assert calls == [linear_resize_matrix, adaptive_pool_matrix]


def test_needs_deterministic_is_false_on_a_cpu_even_with_deterministic_kernels():
    x = torch.rand(1, 1, 2, 2, requires_grad=True)
    prev = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        assert not det.needs_deterministic(x)
    finally:
        torch.use_deterministic_algorithms(prev)


def test_cross_entropy_map_equals_pytorchs_and_its_gradient():
    logits = torch.randn(2, 3, 5, 6, dtype=torch.float64, requires_grad=True)
    target = torch.randint(0, 3, (2, 5, 6))
    a = cross_entropy_map(logits, target)
    (ga,) = torch.autograd.grad(a, logits)
    b = F.cross_entropy(logits, target)
    (gb,) = torch.autograd.grad(b, logits)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    torch.testing.assert_close(ga, gb, rtol=0, atol=1e-12)
    # hand-computed: uniform logits over K=4 classes -> log 4 whatever the target
    assert abs(cross_entropy_map(torch.zeros(1, 4, 2, 2), torch.tensor([[[0, 1], [2, 3]]])).item() - 1.3862944) < 1e-6


def test_bad_shapes_are_named():
    with pytest.raises(ValueError, match=r"one output size >= 1 per axis; got shape \(1, 2, 4, 4\) and size \(8,\)"):
        linear_resize(torch.rand(1, 2, 4, 4), (8,))
    with pytest.raises(ValueError, match="target shape"):
        cross_entropy_map(torch.rand(1, 3, 4, 4), torch.zeros(1, 1, 4, 4, dtype=torch.long))


def test_the_one_hot_form_equals_pytorchs_cross_entropy_and_its_gradient():
    logits = torch.randn(2, 3, 4, 5, 3, dtype=torch.float64, requires_grad=True)
    target = torch.randint(0, 3, (2, 4, 5, 3))
    (ga,) = torch.autograd.grad(a := det._one_hot_cross_entropy(logits, target), logits)
    (gb,) = torch.autograd.grad(b := F.cross_entropy(logits, target), logits)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    torch.testing.assert_close(ga, gb, rtol=0, atol=1e-12)


def test_cross_entropy_map_makes_no_one_hot_copy_off_a_gpu_even_under_deterministic_kernels(monkeypatch):
    def no_one_hot(*args, **kwargs):
        raise AssertionError("one-hot path taken")

    monkeypatch.setattr(det.F, "one_hot", no_one_hot)
    logits, target = torch.randn(2, 3, 4, 4), torch.randint(0, 3, (2, 4, 4))
    prev = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        assert torch.equal(cross_entropy_map(logits, target), F.cross_entropy(logits, target))
    finally:
        torch.use_deterministic_algorithms(prev)
    assert torch.equal(cross_entropy_map(logits, target), F.cross_entropy(logits, target))


def test_cross_entropy_map_takes_the_one_hot_form_under_deterministic_kernels_off_the_cpu(monkeypatch):
    calls = []
    monkeypatch.setattr(det, "_one_hot_cross_entropy", lambda logits, target: calls.append(logits.device.type))
    logits, target = torch.empty(2, 3, 4, 4, device="meta"), torch.empty(2, 4, 4, dtype=torch.long, device="meta")
    prev = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        cross_entropy_map(logits, target)  # "meta" stands in for a GPU
    finally:
        torch.use_deterministic_algorithms(prev)
    assert calls == ["meta"]


def test_each_resampling_matrix_is_built_once_per_shape_device_and_dtype():
    built = []

    def matrix(n_in, n_out, device=None, dtype=torch.float32):
        built.append((n_in, n_out))
        return linear_resize_matrix(n_in, n_out, device=device, dtype=dtype)

    x = torch.rand(1, 2, 4, 6)
    first = det._separable(x, (8, 3), matrix)
    assert torch.equal(det._separable(x, (8, 3), matrix), first)
    assert built == [(4, 8), (6, 3)]
    det._separable(x.double(), (8, 3), matrix)
    assert built == [(4, 8), (6, 3), (4, 8), (6, 3)]
