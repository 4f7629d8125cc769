"""Public Python API of medfm.objectives called as a timm/open_clip user would (not through the CLI):
bad arguments to the loss and solver functions and to ``forward`` give one ValueError line naming the
problem, not an ``AttributeError``/``TypeError`` from inside torch, NumPy or SciPy, nor a silently odd
result (found by /tmp/helperB/probe1.py and probe2.py; the comment on each case says what the old code did).
"""
import numpy as np
import pytest
import torch

import medfm
from medfm.objectives import clip_loss, moco_infonce_loss, nt_xent_loss, sinkhorn_knopp, vicreg_loss
from medfm.objectives.graph_matching import knn_graph
from medfm.objectives.solvers import FactorizedQAP, hungarian, rrwm, sinkhorn_log
from medfm.objectives.swav import swav_loss
from medfm.registry import OBJECTIVES
from tests.helpers.small_objectives import SMALL

Z = torch.randn(4, 8, generator=torch.Generator().manual_seed(0))
QUEUE = torch.randn(16, 8, generator=torch.Generator().manual_seed(1))
INTS = torch.randint(0, 3, (4, 8), generator=torch.Generator().manual_seed(2))

# (call, message); comment: what the old code did
BAD_CALLS = [
    (lambda: nt_xent_loss(Z.numpy(), Z.numpy()), r"^nt_xent_loss: z1 must be a float torch\.Tensor, got ndarray$"),
    # AttributeError: 'str' object has no attribute 'type'
    (lambda: nt_xent_loss(INTS, INTS), r"^nt_xent_loss: z1 must be a float torch\.Tensor, got a torch\.int64 tensor$"),
    # a loss, silently cast
    (lambda: nt_xent_loss(Z.to(torch.complex64), Z.to(torch.complex64)), r"got a torch\.complex64 tensor$"),
    # a loss of the real part, with a ComplexWarning
    (lambda: clip_loss(Z.tolist(), Z.tolist(), 10.0), r"^clip_loss: image_emb must be a float torch\.Tensor, got list$"),
    # AttributeError: 'list' object has no attribute 'ndim'
    (lambda: clip_loss(Z, Z, float("inf")), r"^clip_loss: logit_scale must be one finite positive number, got inf$"),
    # a NaN loss
    (lambda: clip_loss(Z, Z, "10"), r"^clip_loss: logit_scale must be one finite positive number, got '10' \(str\)$"),
    # TypeError: new(): invalid data type 'str'
    (lambda: clip_loss(Z, Z, None), r"^clip_loss: logit_scale must be one finite positive number, got None"),
    # TypeError: must be real number, not NoneType
    (lambda: moco_infonce_loss(Z, Z, QUEUE.long()), r"^moco_infonce_loss: queue must be a float torch\.Tensor"),  # a loss
    (lambda: vicreg_loss(INTS, INTS), r"^vicreg_loss: z1 must be a float torch\.Tensor"),  # a loss
    (lambda: sinkhorn_knopp(Z, float("inf")), r"^sinkhorn_knopp: epsilon must be a finite number > 0, got inf$"),
    # uniform codes (the SwAV constructor refuses epsilon: inf)
    (lambda: sinkhorn_knopp(Z, "0.05"), r"^sinkhorn_knopp: epsilon must be a finite number > 0, got '0\.05' \(str\)$"),
    # TypeError: '>' not supported between instances of 'str' and 'int'
    (lambda: sinkhorn_knopp(Z, 0.05, 2.5), r"^sinkhorn_knopp: iterations must be an integer >= 1, got 2\.5$"),
    # TypeError: 'float' object cannot be interpreted as an integer
    (lambda: sinkhorn_knopp(Z, 0.05, True), r"^sinkhorn_knopp: iterations must be an integer >= 1, got True \(bool\)$"),
    # one iteration
    (lambda: sinkhorn_knopp(INTS), r"^sinkhorn_knopp: scores must be a float torch\.Tensor"),  # codes, silently cast
    (lambda: swav_loss([Z, Z], iterations=2.5), r"^sinkhorn_knopp: iterations must be an integer >= 1, got 2\.5$"),
    # TypeError from range()
    (lambda: swav_loss([Z, Z], epsilon=float("inf")), r"^sinkhorn_knopp: epsilon must be a finite number > 0"),  # a loss
    (lambda: swav_loss([Z, Z], assign_views=(0.5,)), r"^assign_views \[0\.5\] must index the 2 views$"),
    # TypeError: list indices must be integers or slices, not float
    (lambda: swav_loss([Z.tolist(), Z.tolist()]), r"^swav_loss: scores\[0\] must be a float torch\.Tensor, got list$"),
    # AttributeError: 'list' object has no attribute 'shape'
    (lambda: knn_graph(torch.randn(1, 6, 8), 2.5), r"^knn_graph: k must be an integer in \[1, 5\] for 6 nodes, got 2\.5$"),
    # TypeError from topk()
    (lambda: knn_graph(torch.randn(6, 8), 2), r"^knn_graph: z must be \(G, n, D\) embeddings .*got shape \(6, 8\)$"),
    # IndexError: Dimension out of range
    (lambda: sinkhorn_log(torch.rand(1, 3, 3), 0), r"^sinkhorn_log: iterations must be an integer >= 1, got 0$"),
    # exp(log_scores), unnormalised
    (lambda: hungarian(torch.rand(5, 5)), r"^hungarian: scores must be \(G, n, m\) \(G instances\), got shape \(5, 5\)$"),
    # SciPy's "expected a matrix (2-D array), got a 1 array"
]


@pytest.mark.parametrize("call, message", BAD_CALLS, ids=[f"case{i}" for i in range(len(BAD_CALLS))])
def test_bad_loss_and_solver_arguments_are_one_clear_value_error(call, message):
    with pytest.raises(ValueError, match=message) as info:
        call()
    assert "\n" not in str(info.value)


def _qap(nbr_dtype=torch.long):
    nbr = knn_graph(torch.randn(1, 5, 4, generator=torch.Generator().manual_seed(0)), 2).to(nbr_dtype)
    return FactorizedQAP(torch.rand(1, 5, 5), nbr, nbr, torch.rand(1, 5, 2, 5, 2))


def test_solver_objects_refuse_float_neighbours_and_a_dict_config():
    # float neighbour lists were accepted and failed in the first product inside torch.gather
    with pytest.raises(ValueError, match=r"^FactorizedQAP neighbour lists must be int64 \(or int32\) indices, got "
                                         r"torch\.float32"):
        _qap(torch.float32)
    # a dict of RRWM parameters failed with AttributeError: 'dict' object has no attribute 'iterations'
    with pytest.raises(ValueError, match=r"^rrwm: cfg must be an RRWMConfig .* got dict$"):
        rrwm(_qap(), {"iterations": 3})
    assert rrwm(_qap(torch.int32)).shape == (1, 5, 5)  # int32 indices still work


def test_losses_keep_float64_and_float16_inputs():
    """Guard against over-strict dtype checks (passes on the old code too): any float dtype is accepted."""
    ref = nt_xent_loss(Z, Z.flip(0))
    assert nt_xent_loss(Z.double(), Z.flip(0).double()).item() == pytest.approx(ref.item(), rel=1e-6)
    assert torch.isfinite(clip_loss(Z.half(), Z.half(), torch.tensor(10.0)))


def _build(name):
    torch.manual_seed(0)
    return OBJECTIVES.build(name, encoder=medfm.create_encoder("resnet_test", in_chans=1, img_size=16), **SMALL[name])


@pytest.mark.parametrize("name", OBJECTIVES.names())
@pytest.mark.parametrize("gen, shown", [(0, "0"), (np.random.default_rng(0), r"Generator\(PCG64\) .*\(Generator\)")],
                         ids=["seed", "numpy_generator"])
def test_forward_refuses_a_seed_or_numpy_generator_for_gen(name, gen, shown):
    """``model(batch, 0)`` failed in the random views with torch's many-line ``rand() received an invalid
    combination of arguments``; CLIP's text model is never loaded (the check comes first)."""
    model = _build(name)
    batch = {"image": torch.rand(4, 1, 16, 16), "text": ["a", "b", "c", "d"]}
    with pytest.raises(ValueError, match=rf"^{name}: gen must be a CPU torch\.Generator \(it draws the random views\) "
                                         rf"or None, got {shown}; e\.g\. torch\.Generator\(\)\.manual_seed\(0\)$"):
        model(batch, gen)


@pytest.mark.parametrize("text, message", [
    ("a chest x ray", r"^texts must be a list of strings, got str$"),  # was: "batch has 4 images but 13 texts"
    ([["a"], ["b"], ["c"], ["d"]], r"^texts must all be strings; got 4 item\(s\) of type list$"),  # unhashable type
    ((t for t in "abcd"), r"^texts must be a list of strings, got generator$"),  # object of type 'generator' has no len()
], ids=["str", "lists", "generator"])
def test_clip_checks_the_texts_before_counting_them(text, message):
    from medfm.text.encoders import TextEncoderError

    model = _build("clip")
    with pytest.raises(TextEncoderError, match=message):
        model({"image": torch.rand(4, 1, 16, 16), "text": text}, torch.Generator().manual_seed(0))
