"""The model list in the OpenAI shape, from the mesh view: pure."""

from __future__ import annotations

from services.common.records import MeshView


def model_list(view: MeshView) -> dict:
    """Each model served once, with the nodes serving it and their states (extra fields)."""
    models: dict[str, dict] = {}
    for record in (view.own, *(peer.record for peer in view.peers)):
        for served in record.served:
            if served.kind != "llama-server":
                continue
            entry = models.setdefault(served.model_id, {
                "id": served.model_id, "object": "model", "created": int(record.updated_at), "owned_by": "mesh-llm", "nodes": [],
            })
            entry["nodes"].append({"node_id": record.node_id, "name": record.name, "state": served.state})
    return {"object": "list", "data": [models[name] for name in sorted(models)]}
