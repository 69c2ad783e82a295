"""The model list in the OpenAI shape, from the mesh view: pure.

One entry per model id, as every OpenAI client expects (pickers and SDKs key models by `id`), and
the id is the name a request puts in `model`. Two different files served under one name (their
fingerprints differ) are not hidden: each node in `nodes` says which file it serves, `fingerprints`
lists them all, and `clash` says in words that requests for the name may reach either file. Two
entries with one id would look like a choice, but a request can only name the id, so there is no
choice to offer; one entry that says the truth is what a user of the API can act on (rename one file).
"""

from __future__ import annotations

from services.common.records import MeshView, ProcessKind


def model_list(view: MeshView) -> dict:
    """Each model served once, with the nodes serving it, their states and files (extra fields)."""
    models: dict[str, dict] = {}
    for record in (view.own, *(peer.record for peer in view.peers)):
        for served in record.served:
            if served.kind != ProcessKind.LLAMA_SERVER:
                continue
            entry = models.setdefault(
                served.model_id,
                {
                    "id": served.model_id,
                    "object": "model",
                    "created": int(record.updated_at),
                    "owned_by": "mesh-llm",
                    "nodes": [],
                },
            )
            entry["nodes"].append({"node_id": record.node_id, "name": record.name, "state": served.state, "fingerprint": served.fingerprint})
    for entry in models.values():
        # A node that sent no fingerprint (an older version) proves no clash.
        entry["fingerprints"] = sorted({node["fingerprint"] for node in entry["nodes"] if node["fingerprint"]})
        if len(entry["fingerprints"]) > 1:
            entry["clash"] = (
                f"{len(entry['fingerprints'])} different files are served under the name {entry['id']} "
                f"(see nodes); a request for it may be answered by any of them: rename one to tell them apart"
            )
    return {"object": "list", "data": [models[name] for name in sorted(models)]}
