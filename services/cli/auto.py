"""`mesh-llm --auto`: find a mesh and join it, or start one of its own, before the node's services start.

Looks on the LAN (mDNS) and, meanwhile, in the public directory (the Nostr relays of --relay or the
settings), scores every mesh as the seed did (discovery/scoring.py), probes the best few that can
be joined (a QUIC version-negotiation round trip to their listed addresses: discovery/ping.py) and
joins the first that answers, with its listing's public-join token: the node stores the public
credential as its mesh identity (never a mesh secret) and dials the token's addresses. With none,
it starts a mesh of its own serving its --model models, else the largest catalog model that fits
its memory (--client cannot: it serves nothing, so that is an error). What it found, ignored and
chose is printed, and the mesh it ends up in is remembered in <home>/auto.json for next time's +500.
The ignored listings are counted by listing.py's reasons (unsigned and expired ones included:
nostr.py hands every event a relay returns to it) plus a missing or unusable join token.

Owns the lines the user reads, <home>/auto.json, and storing the chosen mesh's identity; the
decisions are discovery/choice.py's and scoring.py's, the reading of relays and LAN lan.py's and nostr.py's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil
from zeroconf import Error

from services.cli.flags import Options, UsageError, models_of, relays_of
from services.common import addresses, mesh_identity
from services.common.invite import new_mesh_id, new_secret
from services.common.mesh_identity import MeshIdentity
from services.common.records import DownloadPolicy
from services.gateway.discovery import choice, ping
from services.gateway.discovery.announcement import LanScan
from services.gateway.discovery.choice import Option, Probe, Skip
from services.gateway.discovery.lan import browse, version
from services.gateway.discovery.nostr import Directory, RelayError, read_directory
from services.gateway.discovery.scoring import Preferences, rank
from services.placement.settings import PlacementSettings
from services.runner.models import ModelError, catalog_of, resolve

BROWSE_SECONDS = 3.0  # as `discover`: a LAN node answers within a second, with room for a lost packet
DIRECTORY_SECONDS = 3.0  # for the relays, in parallel with the browse
LAST_FILE = "auto.json"
ROWS_SHOWN = 10  # meshes listed one a line at most (best first): a busy directory would bury the choice
GB = 10**9


@dataclass(frozen=True)
class Joining:
    """Join this mesh: its identity is stored; gossip dials `seeds`."""

    mesh_id: str
    seeds: tuple[str, ...]


@dataclass(frozen=True)
class Starting:
    """Start a mesh of its own with these options (the --model models, or the catalog model chosen)."""

    options: Options


def decide(options: Options, home: Path) -> Joining | Starting:
    """Look, choose, store the identity, remember the mesh; UsageError when nothing can be done."""
    args = options.args
    scan, lan_failure, directory = _look(relays_of(args), time.time())
    listings = directory.reading.listings
    preferences = Preferences(region=args.region, last_mesh_id=last_mesh(home), held=held_models(options))
    ranked = rank(choice.candidates(scan.meshes, listings), preferences)
    choices = choice.options(ranked, listings, scan.meshes)
    ours = version()
    short = choice.shortlist(choices, ours)
    probes = asyncio.run(_probe_all(short))
    picked = choice.pick(short, probes)
    for line in report(scan, lan_failure, directory, choices, choice.skipped(choices, short, probes, ours), picked, probes):
        print(line, flush=True)
    if picked is not None and picked.token is not None:
        return _join(home, picked)
    if args.client:
        raise UsageError("--client --auto: no public mesh to join, and a client node serves nothing to start one with")
    return _start_own(options, home)


def held_models(options: Options) -> frozenset[str]:
    """Models this node could serve where a mesh wants them: its --model models and the catalog's on its disk."""
    if options.args.client:
        return frozenset()
    named = {model.model_id for model in options.models} | {model.model_id for model in options.fetching}
    return frozenset(named | {entry.name for entry in catalog_of(options.args.models_dir).values() if _on_disk(entry.name, options.args.models_dir)})


def report(
    scan: LanScan,
    lan_failure: str,
    directory: Directory,
    choices: Sequence[Option],
    reasons: dict[str, Skip],
    picked: Option | None,
    probes: dict[str, Probe],
) -> list[str]:
    """What --auto saw, ignored and chose: a summary, the refusals counted, one line per mesh."""
    lan = f"LAN: cannot browse ({lan_failure})" if lan_failure else f"LAN: {len(scan.meshes)} mesh{'es' if len(scan.meshes) != 1 else ''}"
    answered = f"{len(directory.answered)} of {len(directory.relays)} relays answered" if directory.relays else "no relays set"
    lines = [f"mesh-llm: --auto looked around: {lan}; directory: {len(directory.reading.listings)} listed ({answered})"]
    ignored: Counter[str] = Counter({str(reason): count for reason, count in directory.reading.rejected.items()})
    ignored.update(str(reason) for reason in choice.token_refusals(choices).elements())
    if ignored:
        counts = ", ".join(f"{count} {reason}" for reason, count in sorted(ignored.items()))
        lines.append(f"mesh-llm: --auto ignored {ignored.total()} listing{'s' if ignored.total() != 1 else ''}: {counts}")
    shown = [option for index, option in enumerate(choices) if index < ROWS_SHOWN or option is picked]
    for option in shown:
        lines.append(f"  {_row(option, reasons.get(option.scored.candidate.mesh_id), option is picked, probes)}")
    if len(choices) > len(shown):
        lines.append(f"  ... and {len(choices) - len(shown)} more")
    if picked is not None:
        candidate = picked.scored.candidate
        lines.append(f"mesh-llm: --auto joins mesh {candidate.name or candidate.mesh_id} ({candidate.mesh_id}), score {picked.scored.score}")
    return lines


def _row(option: Option, reason: Skip | None, picked: bool, probes: dict[str, Probe]) -> str:
    candidate = option.scored.candidate
    parts = ", ".join(f"{rule} {points:+d}" for rule, points in option.scored.parts)
    probe = probes.get(candidate.mesh_id)
    rtt = f", RTT {probe.rtt * 1000:.1f} ms" if probe is not None and probe.rtt is not None else ""
    verdict = "joining" if picked else str(reason or "")
    if reason is Skip.LAN_ONLY:
        verdict += f" (ask to: mesh-llm --join-nearby {candidate.mesh_id})"
    name = f" {candidate.name}" if candidate.name else ""
    return f"{option.scored.score:>5}  {candidate.mesh_id}{name} [{parts}]{rtt}: {verdict}"


def last_mesh(home: Path) -> str:
    """The mesh --auto joined or started last time at this home; "" for none (or an unreadable file)."""
    try:
        fields = json.loads((home / LAST_FILE).read_text())
    except (FileNotFoundError, ValueError):
        return ""
    mesh_id = fields.get("mesh_id") if isinstance(fields, dict) else None
    return mesh_id if isinstance(mesh_id, str) else ""


def remember(home: Path, mesh_id: str) -> None:
    home.mkdir(parents=True, exist_ok=True)
    partial = home / f"{LAST_FILE}.tmp"
    partial.write_text(json.dumps({"mesh_id": mesh_id}))
    partial.replace(home / LAST_FILE)


def own_model(args: argparse.Namespace, memory_bytes: int, settings: PlacementSettings) -> str:
    """The catalog model a mesh of its own serves: the largest that fits (only those on disk with
    --download never); UsageError when none does."""
    entries = catalog_of(args.models_dir).values()
    if args.download == DownloadPolicy.NEVER:
        entries = [entry for entry in entries if _on_disk(entry.name, args.models_dir)]
    entry = choice.largest_fitting(entries, memory_bytes, settings.headroom, settings.context_bytes)
    if entry is None:
        raise UsageError(f"--auto: no mesh to join and no catalog model fits {memory_bytes / GB:.2f} GB to start one with")
    return entry.name


def _look(relays: list[str], now: float) -> tuple[LanScan, str, Directory]:
    try:
        return asyncio.run(_look_both(relays, now))
    except RelayError as bad:
        raise UsageError(f"--relay: {bad}") from None


async def _look_both(relays: list[str], now: float) -> tuple[LanScan, str, Directory]:
    """The LAN's meshes (none, with the reason, when mDNS cannot be used here) and the directory, at once."""
    lan = asyncio.ensure_future(browse(BROWSE_SECONDS))
    directory = await read_directory(relays, DIRECTORY_SECONDS, now)
    try:
        return await lan, "", directory
    except (OSError, Error) as failure:
        # No multicast here (a container, no interface up): the directory alone still finds meshes.
        return LanScan(()), str(failure) or type(failure).__name__, directory


async def _probe_all(short: Sequence[Option]) -> dict[str, Probe]:
    probes = await asyncio.gather(*(_probe(option) for option in short))
    return {option.scored.candidate.mesh_id: probe for option, probe in zip(short, probes, strict=True)}


async def _probe(option: Option) -> Probe:
    """The round trip to the nearest of the token's addresses that answers (they are probed at once)."""
    assert option.token is not None  # shortlisted options have one
    targets = []
    for address in option.token.addresses:
        try:
            targets.append(addresses.split(address))
        except ValueError:
            continue  # an address we cannot dial is no answer; another of the token's may do
    rtts = await asyncio.gather(*(ping.round_trip(host, port) for host, port in targets))
    answered = [rtt for rtt in rtts if rtt is not None]
    return Probe(min(answered) if answered else None)


def _join(home: Path, picked: Option) -> Joining:
    token = picked.token
    assert token is not None  # pick() only returns shortlisted options, which have one
    mesh_id = token.credential.mesh_id
    credential, authority = token.credential.encode(), token.credential.authority
    identity = MeshIdentity(mesh_id, b"", 0, credential=credential, signing_key=token.private_key, authority=authority, addresses=token.addresses)
    mesh_identity.save(home, identity)
    remember(home, mesh_id)
    return Joining(mesh_id, token.addresses)


def _start_own(options: Options, home: Path) -> Starting:
    """The options of a mesh of its own: a member identity (the stored one when it is a member's, so a
    mesh started before is started again), and a model."""
    stored = mesh_identity.load(home)
    if stored is None or not stored.member:
        stored = MeshIdentity(new_mesh_id(), new_secret())
        mesh_identity.save(home, stored)
    remember(home, stored.mesh_id)
    if options.models or options.fetching:
        print(f"mesh-llm: --auto found no mesh to join: starting mesh {stored.mesh_id} of its own", flush=True)
        return Starting(options)
    args = argparse.Namespace(**vars(options.args))
    settings = PlacementSettings()
    memory = int(args.max_vram * GB) if args.max_vram else psutil.virtual_memory().total
    args.model = [own_model(args, memory, settings)]
    models, fetching = models_of(args)
    print(
        f"mesh-llm: --auto found no mesh to join: starting mesh {stored.mesh_id} of its own with {args.model[0]}, the largest catalog model that fits {memory / GB:.2f} GB",
        flush=True,
    )
    return Starting(Options(args, models, None, fetching))


def _on_disk(name: str, models_dir: Path) -> bool:
    try:
        resolve(name, models_dir)
    except ModelError:
        # Not on this disk (a Hub model not downloaded), or not usable there: not held.
        return False
    return True
