"""Gossip settings (prefix MESH_GOSSIP_) and the named timing profiles."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.common import invite
from services.common.settings import TextList


@dataclass(frozen=True)
class Profile:
    """SWIM timings. Worst-case time to declare a crashed node dead is about
    probe_interval * members + probe_timeout * 2 + suspicion_timeout; `dead_within` states the bound tests assert.
    A post reaches every member within about board_interval * (members - 1) (rounds take peers in turn): `board_within`."""

    probe_interval: float  # seconds between two probes of this node
    probe_timeout: float  # seconds a direct ping may take before indirect probes start
    indirect_probes: int  # peers asked to ping a silent member for us
    suspicion_timeout: float  # seconds a suspect has to refute before it is declared dead
    forget_after: float  # seconds a dead member's tombstone is kept (so stale gossip cannot revive it)
    join_timeout: float  # seconds a joining node tries its bootstrap addresses before giving up
    dead_within: float  # the bound, in seconds, on detecting a crashed node in a small mesh
    board_interval: float  # seconds between two blackboard anti-entropy rounds of this node (one peer each)
    board_within: float  # the bound, in seconds, on a post reaching every member of a small mesh


# LAN: a crash is noticed within 5 s; WAN: slower links, fewer false alarms; test: fast, for test meshes.
LAN = Profile(
    probe_interval=0.5,
    probe_timeout=0.5,
    indirect_probes=2,
    suspicion_timeout=2.0,
    forget_after=600.0,
    join_timeout=15.0,
    dead_within=5.0,
    board_interval=2.0,
    board_within=10.0,
)
WAN = Profile(
    probe_interval=2.0,
    probe_timeout=2.0,
    indirect_probes=3,
    suspicion_timeout=10.0,
    forget_after=1800.0,
    join_timeout=30.0,
    dead_within=20.0,
    board_interval=5.0,
    board_within=30.0,
)
TEST = Profile(
    probe_interval=0.2,
    probe_timeout=0.4,
    indirect_probes=2,
    suspicion_timeout=1.0,
    forget_after=120.0,
    join_timeout=8.0,
    dead_within=3.0,
    board_interval=0.5,
    board_within=3.0,
)
PROFILES = {"lan": LAN, "wan": WAN, "test": TEST}


class GossipSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MESH_GOSSIP_", frozen=True)

    # Named timing profile: lan (default, home and lab networks), wan, or test (test meshes).
    profile: str = "lan"
    # QUIC addresses (host:port) of nodes to join through, from the invite token; empty starts a mesh.
    seeds: TextList = []
    # This node's QUIC address as peers should dial it (host:port); set by the CLI, by hand under
    # honcho or compose (the advertised host and the gateway's MESH_GATEWAY_PEER_PORT).
    address: str = ""
    # Invite token of a mesh to join, for a node started without the CLI (honcho, compose): its
    # addresses are dialled with the seeds and its mesh id and secret become this node's, as
    # `mesh-llm --join TOKEN` does (the CLI passes seeds and stores the mesh itself). Empty: none.
    join: str = ""
    # Seconds to wait for a join before giving up; 0 takes the profile's join_timeout.
    join_timeout: float = 0.0
    # Seconds a model's demand is remembered after its last request (then it leaves every node's map).
    demand_ttl: float = 86400.0
    # The mesh's name (--mesh-name: LAN announcements and the public listing); "" leaves it to the mesh.
    mesh_name: str = ""
    # The region the public listing names (--region), for --auto's region filter; "" for none.
    region: str = ""
    # Clients (API-only nodes) the listing admits (--max-clients); at that many it is delisted; 0: no limit.
    max_clients: int = 0
    # List the mesh on the Nostr relays (--publish); members given none of these flags copy the mesh's.
    publish: bool = False
    # The blackboard on in a public mesh (--blackboard); it is on in private meshes regardless.
    blackboard: bool = False

    @field_validator("profile")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in PROFILES:
            raise ValueError(f"unknown profile {value!r}; one of {', '.join(PROFILES)}")
        return value

    @field_validator("join")
    @classmethod
    def _joinable(cls, value: str, info: ValidationInfo) -> str:
        if not value.strip():
            return ""
        try:
            invite.decode(value)
        except invite.TokenError as bad:
            raise ValueError(str(bad)) from None
        # Peers dial a member at the address it gossips: without one, the mesh would drop it.
        if not info.data.get("address"):
            raise ValueError("a joining node needs MESH_GOSSIP_ADDRESS, the host:port peers dial it at (its MESH_GATEWAY_PEER_PORT)")
        return value.strip()

    def timings(self) -> Profile:
        return PROFILES[self.profile]

    def token(self) -> invite.InviteToken | None:
        """The mesh to join from `join`, or None."""
        return invite.decode(self.join) if self.join else None

    def bootstrap(self) -> list[str]:
        """Addresses to join through: the seeds, then the join token's."""
        token = self.token()
        return list(dict.fromkeys([*self.seeds, *(token.bootstrap if token else ())]))
