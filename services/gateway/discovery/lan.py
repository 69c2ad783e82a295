"""LAN discovery over mDNS/DNS-SD (zeroconf): this node's announcement, and browsing for others'.

Owns the zeroconf instances, the registered service and the browse. What an announcement says,
and whether a received one is believed, is announcement.py's; the RTT shown is ping.py's.

The announcement is made on the interface of the QUIC endpoint's address, or on every interface
when it is bound to all of them; a node bound to loopback (a test mesh on 127.0.0.x) announces
nothing: no other machine could dial it. It follows the node's mesh view (served models, memory,
mesh), at most once every REFRESH_GAP, and says goodbye when the gateway stops.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Sequence
from importlib import metadata

from zeroconf import BadTypeInNameException, Error, InterfaceChoice, ServiceStateChange, Zeroconf
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from services.common.exposure import is_loopback
from services.common.logs import event
from services.gateway.discovery import ping
from services.gateway.discovery.announcement import (
    SERVICE_TYPE,
    Announcement,
    BadAnnouncement,
    LanNode,
    LanScan,
    NotAnnounced,
    announcement_of,
    instance_name,
    meshes_of,
    parse,
    properties,
)
from services.gateway.mirror import MeshMirror

log = logging.getLogger(__name__)

REFRESH_GAP = 3.0  # seconds between two changes of the announcement at least: a busy mesh view must not flood the LAN
RETRY = 30.0  # seconds before trying again after zeroconf failed (an interface gone, port 5353 refused)
GOODBYE_TIMEOUT = 2.0  # seconds the goodbye may take while the gateway stops
RESOLVE_TIMEOUT = 2.0  # seconds to wait for an announcement's records after its name was heard
MAX_INSTANCES = 256  # announcements one browse reads at most: more are a flood, counted as ignored
MAX_ADDRESSES = 8  # addresses of one announcement probed for the RTT at most


def version() -> str:
    """mesh-llm's version, as installed (empty where it runs from a source tree without installing)."""
    try:
        return metadata.version("mesh-llm")
    except metadata.PackageNotFoundError:
        # Run from PYTHONPATH alone: the announcement says no version rather than a wrong one.
        return ""


def interfaces_for(peer_host: str) -> list[str] | InterfaceChoice:
    """Where to announce: the QUIC endpoint's own address, or every interface when it is bound to all."""
    try:
        specific = not ipaddress.ip_address(peer_host.strip("[]")).is_unspecified
    except ValueError:
        specific = False  # a host name: the interfaces it resolves to are not ours to guess
    return [peer_host.strip("[]")] if specific else InterfaceChoice.All


class LanAnnouncer:
    """Keeps this node's DNS-SD service current with its mesh view; withdraws it on stop."""

    def __init__(self, mirror: MeshMirror, peer_host: str, advertised: Sequence[str], mesh_llm_version: str) -> None:
        self.mirror = mirror
        self.peer_host = peer_host  # the QUIC endpoint's bound address
        self.advertised = tuple(advertised)  # where peers dial us ("host:port"); empty: gossip's one address
        self.version = mesh_llm_version
        self._registered: AsyncServiceInfo | None = None

    async def run(self) -> None:
        if is_loopback(self.peer_host):
            event(log, "not announced on the LAN: the QUIC endpoint is bound to loopback", host=self.peer_host)
            return
        while True:
            try:
                await self._announce()
            except (OSError, Error) as failure:
                # No multicast-capable interface, another responder claiming our name: try later.
                event(log, "LAN announcement failed", logging.WARNING, error=repr(failure), retry_in=RETRY)
                await asyncio.sleep(RETRY)

    async def _announce(self) -> None:
        zeroconf: AsyncZeroconf | None = None
        shown: Announcement | NotAnnounced | None = None
        try:
            while True:
                seen = self.mirror.changes.version
                wanted = announcement_of(self.mirror.view, self.advertised or (self.mirror.view.address,), self.version)
                if wanted is not None and wanted != shown:
                    if zeroconf is None and isinstance(wanted, Announcement):
                        # Opened only once there is something to say: no port 5353 for a node that never announces.
                        zeroconf = AsyncZeroconf(interfaces=interfaces_for(self.peer_host))
                    await self._show(zeroconf, wanted)
                    shown = wanted
                    await asyncio.sleep(REFRESH_GAP)
                await self.mirror.changes.wait_newer(seen)
        finally:
            if zeroconf is not None:
                await self._withdraw_on_stop(zeroconf)

    async def _show(self, zeroconf: AsyncZeroconf | None, wanted: Announcement | NotAnnounced) -> None:
        """Register, update or withdraw our service so that the LAN sees `wanted`."""
        if isinstance(wanted, NotAnnounced):
            event(log, "not announced on the LAN", reason=wanted.reason)
            if zeroconf is not None:
                await self._withdraw(zeroconf)
            return
        assert zeroconf is not None  # opened by the caller for an announcement
        info = service_info(wanted)
        if self._registered is not None and self._registered.name != info.name:
            await self._withdraw(zeroconf)
        if self._registered is None:
            await (await zeroconf.async_register_service(info))  # the second await: probed and announced
        else:
            await (await zeroconf.async_update_service(info))
        self._registered = info
        event(log, "announced on the LAN", instance=info.name, models=",".join(wanted.models), addresses=",".join(wanted.addresses), port=wanted.port)

    async def _withdraw(self, zeroconf: AsyncZeroconf) -> None:
        if self._registered is not None:
            # The second await waits for the goodbye packets; without it, closing would cancel them.
            await (await zeroconf.async_unregister_service(self._registered))
            self._registered = None

    async def _withdraw_on_stop(self, zeroconf: AsyncZeroconf) -> None:
        try:
            await asyncio.wait_for(self._withdraw(zeroconf), GOODBYE_TIMEOUT)
        except (TimeoutError, OSError, Error) as failure:
            # Stopping anyway: browsers forget us when the records' TTL runs out.
            event(log, "LAN goodbye not sent", logging.WARNING, error=repr(failure))
        finally:
            await zeroconf.async_close()


def service_info(announcement: Announcement) -> AsyncServiceInfo:
    instance = instance_name(announcement)
    return AsyncServiceInfo(
        SERVICE_TYPE,
        f"{instance}.{SERVICE_TYPE}",
        port=announcement.port,
        properties=properties(announcement),
        parsed_addresses=list(announcement.addresses),
        server=f"{instance}.local.",
    )


async def browse(seconds: float) -> LanScan:
    """The meshes announced on the LAN within `seconds` (then the answers still being read, at most
    RESOLVE_TIMEOUT and a ping later), with the RTT to each node's QUIC port."""
    zeroconf = AsyncZeroconf()
    heard: dict[str, asyncio.Task[LanNode | str | None]] = {}
    flood = 0

    def on_change(zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange) -> None:
        nonlocal flood
        if state_change is ServiceStateChange.Removed or name in heard:
            return
        if len(heard) >= MAX_INSTANCES:
            flood += 1
            return
        heard[name] = asyncio.ensure_future(_resolve(zeroconf, name))

    browser = AsyncServiceBrowser(zeroconf.zeroconf, [SERVICE_TYPE], handlers=[on_change])
    try:
        await asyncio.sleep(seconds)
        await browser.async_cancel()
        results = await asyncio.gather(*heard.values())
    finally:
        for task in heard.values():
            task.cancel()
        await zeroconf.async_close()
    nodes = [result for result in results if isinstance(result, LanNode)]
    reasons = tuple(result for result in results if isinstance(result, str))
    return LanScan(meshes_of(nodes), ignored=len(reasons) + flood, reasons=reasons + (("too many announcements",) if flood else ()))


async def _resolve(zeroconf: Zeroconf, name: str) -> LanNode | str | None:
    """The node behind an instance name, with its RTT; why it was not believed; None: no answer."""
    info = AsyncServiceInfo(SERVICE_TYPE, name)
    try:
        if not await info.async_request(zeroconf, int(RESOLVE_TIMEOUT * 1000)):
            return None  # gone, or never answered: nothing to believe or to count
    except BadTypeInNameException:
        return f"{name!r}: a bad instance name"
    try:
        announcement = parse(info.properties, info.parsed_addresses()[:MAX_ADDRESSES])
    except BadAnnouncement as bad:
        return str(bad)
    rtts = [rtt for rtt in await asyncio.gather(*(ping.round_trip(host, announcement.port) for host in announcement.addresses)) if rtt is not None]
    return LanNode(announcement, min(rtts) if rtts else None)
