"""medfm: multimodal medical foundation models.

Public entry points: :func:`create_encoder`, :func:`list_encoders`, :func:`from_pretrained`,
:func:`save_pretrained`, :func:`pipeline`.
"""
from __future__ import annotations

__version__ = "0.1.0"



def __getattr__(name: str):  # lazy (PEP 562): `import medfm` and `medfm --help` do not load torch
    if name in ("create_encoder", "list_encoders"):
        from medfm import encoders

        return getattr(encoders, name)
    if name in ("from_pretrained", "save_pretrained"):
        from medfm import hub

        return getattr(hub, name)
    if name == "pipeline":
        from medfm.pipelines import pipeline

        return pipeline
    raise AttributeError(f"module 'medfm' has no attribute {name!r}")


__all__ = ["__version__", "create_encoder", "list_encoders", "from_pretrained", "save_pretrained", "pipeline"]
