"""Gossip settings (prefix MESH_GOSSIP_) and the named timing profiles."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.common.settings import TextList


@dataclass(frozen=True)
class Profile:
    """SWIM timings. Worst-case time to declare a crashed node dead is about
    probe_interval * members + probe_timeout * 2 + suspicion_timeout; `dead_within` states the bound tests assert."""

    probe_interval: float  # seconds between two probes of this node
    probe_timeout: float  # seconds a direct ping may take before indirect probes start
    indirect_probes: int  # peers asked to ping a silent member for us
    suspicion_timeout: float  # seconds a suspect has to refute before it is declared dead
    forget_after: float  # seconds a dead member's tombstone is kept (so stale gossip cannot revive it)
    join_timeout: float  # seconds a joining node tries its bootstrap addresses before giving up
    dead_within: float  # the bound, in seconds, on detecting a crashed node in a small mesh


# LAN: a crash is noticed within 5 s; WAN: slower links, fewer false alarms; test: fast, for test meshes.
LAN = Profile(probe_interval=0.5, probe_timeout=0.5, indirect_probes=2, suspicion_timeout=2.0, forget_after=600.0, join_timeout=15.0, dead_within=5.0)
WAN = Profile(probe_interval=2.0, probe_timeout=2.0, indirect_probes=3, suspicion_timeout=10.0, forget_after=1800.0, join_timeout=30.0, dead_within=20.0)
TEST = Profile(probe_interval=0.2, probe_timeout=0.4, indirect_probes=2, suspicion_timeout=1.0, forget_after=120.0, join_timeout=8.0, dead_within=3.0)
PROFILES = {"lan": LAN, "wan": WAN, "test": TEST}


class GossipSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MESH_GOSSIP_", frozen=True)

    # Named timing profile: lan (default, home and lab networks), wan, or test (test meshes).
    profile: str = "lan"
    # QUIC addresses (host:port) of nodes to join through, from the invite token; empty starts a mesh.
    seeds: TextList = []
    # This node's QUIC address as peers should dial it (host:port); set by the CLI.
    address: str = ""
    # Seconds to wait for a join before giving up; 0 takes the profile's join_timeout.
    join_timeout: float = 0.0
    # Seconds a model's demand is remembered after its last request (then it leaves every node's map).
    demand_ttl: float = 86400.0

    @field_validator("profile")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in PROFILES:
            raise ValueError(f"unknown profile {value!r}; one of {', '.join(PROFILES)}")
        return value

    def timings(self) -> Profile:
        return PROFILES[self.profile]
