"""A one-dataset suite scored by a stand-in checkpoint: :func:`medfm.evaluation.suite_data.prepare_dataset` without
a model, for tests of what a suite loads, skips or refuses for an encoder's channels and dimensions."""
from __future__ import annotations

from types import SimpleNamespace
from typing import Any, Optional


def prepare_with_stand_in(monkeypatch, spec, protocol: str, in_chans: int, img_size: int, spatial_dims: int = 2,
                          data_root: Optional[str] = None, **protocol_options: Any):
    """:func:`prepare_dataset` of a suite holding ``spec`` (a :class:`DatasetSpec`) alone, its protocol ``protocol``
    with ``protocol_options``; every checkpoint match gives ``"ckpt"``, whose encoder takes ``in_chans`` channels at
    ``img_size`` px in ``spatial_dims`` dimensions (and no model: the stand-in cannot compute features). Errors are
    raised as :func:`prepare_dataset` raises them."""
    import medfm.evaluation.suite_data as suite_data
    from medfm.evaluation.suite_spec import ProtocolSpec, Suite

    monkeypatch.setattr(suite_data, "pick_checkpoint", lambda *a, **k: ("ckpt", None))
    encoder = SimpleNamespace(in_chans=in_chans, img_size=img_size, spatial_dims=spatial_dims, fixed_size=False)
    models = SimpleNamespace(get=lambda ckpt: (None, SimpleNamespace(encoder=encoder), None))
    suite = Suite(name="s", datasets=[spec], protocol=ProtocolSpec(name=protocol, **protocol_options))
    return suite_data.prepare_dataset(spec, suite, ["ckpt"], models, data_root)
