"""Small build arguments of every self-supervised objective of :data:`medfm.registry.OBJECTIVES`, for tests that build
them quickly on a tiny encoder."""
from __future__ import annotations

#: small builds of every objective (``OBJECTIVES.build(name, encoder=..., **SMALL[name])``); CLIP with ``text_dim``
#: given never loads its (missing) text model
SMALL = {
    "simclr": dict(proj_dim=8, hidden_dim=16),
    "moco": dict(proj_dim=8, hidden_dim=16, queue_size=16),
    "swav": dict(proj_dim=8, hidden_dim=16, n_prototypes=8, n_local_views=1),
    "graph_matching": dict(proj_dim=8, hidden_dim=16, graph_size=4, k=2, local_dim=4, edge_dim=3),
    "clip": dict(text_encoder={"name": "hf", "model_name_or_path": "never-loaded"}, text_dim=32, embed_dim=8,
                 proj_hidden_dim=16, text_cache=False),
}
