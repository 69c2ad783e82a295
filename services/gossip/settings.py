"""Gossip settings (prefix MESH_GOSSIP_)."""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict


class GossipSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MESH_GOSSIP_", frozen=True)

    # Named timing profile (lan, wan, test); peers and probing arrive with the mesh issue.
    profile: str = "lan"
