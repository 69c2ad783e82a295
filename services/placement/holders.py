"""The nodes that hold a model's GGUF, and which of them plans for it: pure, no I/O.

A holder is a node with the model's file on disk and the memory it offers. Only holders of the
same file (the same fingerprint) count for one model: a peer with another file under the name holds
another model. Among them one is elected to plan (a split's host, an expert split's planner): the
one with the most memory, ties broken by node id, so that every node elects the same one from the
same records. Must not import grpc, asyncio or anything that does I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Holder:
    """A node that has the model's GGUF on disk and offers memory to the mesh."""

    node_id: str
    memory: int
    fingerprint: str = ""  # of its file under the model's name
    fetches: bool = False  # holds no file: would fetch its layers of a split from the Hub (never hosts, never plans)


def elect(holders: Sequence[Holder]) -> Holder | None:
    """The holder that plans for the model: the most memory, then the lowest node id; None for none."""
    return min(holders, key=lambda holder: (-holder.memory, holder.node_id), default=None)


def same_file(holders: Sequence[Holder], fingerprint: str) -> tuple[list[Holder], list[Holder]]:
    """(holders of the file with this fingerprint, holders of another file under the same name)."""
    return [h for h in holders if h.fingerprint == fingerprint], [h for h in holders if h.fingerprint != fingerprint]


def other_files(others: Sequence[Holder], fingerprint: str) -> str:
    """Why some nodes with the model's name are not counted ("" when there are none)."""
    if not others:
        return ""
    named = ", ".join(f"{h.node_id} (file {h.fingerprint or 'without fingerprint'})" for h in others)
    verb = "holds" if len(others) == 1 else "hold"
    return f"; not counted: {named} {verb} another file under this name than ours ({fingerprint or 'without fingerprint'})"
