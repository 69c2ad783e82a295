"""Gateway settings (prefix MESH_GATEWAY_)."""

from __future__ import annotations

from pydantic import Field, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.common.exposure import is_loopback
from services.common.settings import TextList
from services.gateway.peers.datagrams import LARGEST, SMALLEST


class GatewaySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MESH_GATEWAY_", frozen=True)

    # Address of the OpenAI API; loopback unless --listen-all or --host (either then needs api_key).
    api_host: str = "127.0.0.1"
    # Port of the OpenAI API; 9337 is what clients and docs assume.
    api_port: int = 9337
    # False serves only the console (mesh-llm with no arguments).
    api_enabled: bool = True
    # Bearer key every API request must carry; empty means none, only allowed on loopback.
    api_key: str = ""
    # Every address peers may dial this node at, for the invite tokens the console shows (the CLI
    # lists each interface's); empty: gossip's one address.
    invite_addresses: TextList = []
    # Address of the console; always loopback (it shows the invite token, which holds the mesh secret).
    console_host: str = "127.0.0.1"
    # Port of the console page and its /api/status and /api/events.
    console_port: int = 3131
    # Seconds to wait for a local llama-server to accept a connection before answering 503.
    connect_timeout: float = 5.0
    # Address the QUIC endpoint binds: all interfaces, since it is the one port peers must reach.
    peer_host: str = "0.0.0.0"
    # UDP port of the QUIC endpoint (--bind-port); 0 picks a free one.
    peer_port: int = 0
    # Seconds a QUIC connection may stay silent before it is dropped (gossip pings keep live ones busy).
    peer_idle_timeout: float = 30.0
    # Bytes per QUIC datagram; 0 takes the smallest MTU of the interfaces peer_host can send on
    # (1452 on Ethernet, 16384 on loopback): see peers/datagrams.py.
    peer_datagram_bytes: int = 0
    # Times one answer may move to another server after its own failed mid-answer; past it the
    # client gets the API's error event. Each takeover reads the prompt and text so far again: 2
    # survives a second failure during the first continuation without holding a client forever.
    takeovers: int = Field(default=2, ge=0)
    # Seconds a cut streamed answer waits for another ready server of its model (a standby starting,
    # a llama-server restarting) while the client gets keep-alive comments: a small model loads
    # within it, and a client's read timeout (often 60 s or more) outlasts it.
    takeover_wait: float = Field(default=30.0, ge=0)
    # A gateway sends each server at most 2 x its slots requests at once (admission.py); requests
    # finding every server of their model full wait for room, at most `queue` of them and each at
    # most `queue_wait` seconds, then get 503 with Retry-After (a client's timeout would otherwise
    # end them with no answer, and waiting bodies would pile up in memory).
    queue: int = Field(default=64, ge=0)
    queue_wait: float = Field(default=15.0, ge=0)
    # Seconds an SSE client may sit without an event before a keepalive comment is sent.
    events_keepalive: float = 15.0
    # Announce this node on the LAN over mDNS (_mesh-llm._udp.local.: mesh id, models, QUIC port, never
    # a secret) so `mesh-llm discover` finds it; on by default, off with --no-announce.
    announce: bool = True
    # Nostr relays (ws:// or wss:// URLs) a published mesh's listing goes to (--relay, repeatable;
    # `mesh-llm discover` reads the same): two large public relays, so a listing is found from anywhere.
    relays: TextList = ["wss://relay.damus.io", "wss://nos.lol"]
    # Seconds between two publications of the listing (each expires LIFETIME later): a listing must
    # be renewed well before it expires, and relays rate-limit authors who write more often.
    publish_interval: float = 60.0

    @field_validator("api_key")
    @classmethod
    def _key_beyond_loopback(cls, value: str, info: ValidationInfo) -> str:
        host = info.data.get("api_host", "127.0.0.1")
        if not value and info.data.get("api_enabled", True) and not is_loopback(host):
            raise ValueError(f"the API binds {host}, which other machines can reach: it needs an API key")
        return value

    @field_validator("console_host")
    @classmethod
    def _console_on_loopback(cls, value: str) -> str:
        if not is_loopback(value):
            raise ValueError(f"{value} is reachable from other machines; the console binds loopback only (it shows the invite token)")
        return value

    @field_validator("relays")
    @classmethod
    def _relay_urls(cls, value: list[str]) -> list[str]:
        for url in value:
            if not url.startswith(("ws://", "wss://")) or len(url) <= len("wss://"):
                raise ValueError(f"{url!r} is not a relay URL (ws://HOST[:PORT] or wss://HOST[:PORT])")
        return value

    @field_validator("peer_datagram_bytes")
    @classmethod
    def _datagram_in_range(cls, value: int) -> int:
        if value and not SMALLEST <= value <= LARGEST:
            raise ValueError(f"must be 0 (from the MTU) or {SMALLEST} to {LARGEST} bytes")
        return value
