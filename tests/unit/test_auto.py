"""`mesh-llm --auto` (services/cli/auto.py over discovery/choice.py): which mesh it joins among
what the LAN and the directory show and the probes answer, which listings it ignores and counts,
and, with none to join, the mesh of its own it starts with the largest catalog model that fits."""

from __future__ import annotations

import argparse
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest

from services.cli import auto
from services.cli.flags import UsageError, check
from services.common import credentials, mesh_identity
from services.common.catalog import CATALOG, CatalogEntry
from services.common.invite import InviteToken
from services.common.mesh_identity import MeshIdentity
from services.gateway.discovery import choice
from services.gateway.discovery.announcement import Announcement, LanMesh, LanNode, LanScan
from services.gateway.discovery.choice import Probe, Skip
from services.gateway.discovery.listing import Listing, ListingEvent, Reading, Rejection, content_of, read_all, tags_of
from services.gateway.discovery.nostr import Directory
from services.gateway.discovery.scoring import Preferences, rank
from services.placement.settings import PlacementSettings
from tests.nodes import free_port

NOW = 1_800_000_000
SECRET = bytes(range(32))
OURS = "0.1.0"
SMOLLM2 = "SmolLM2-135M-Instruct"
PORTS = ("--port", str(free_port()), "--console", str(free_port()))
ANYWHERE = Preferences(region="", last_mesh_id="", held=frozenset())


def token_for(mesh_id: str, address: str = "127.0.0.9:7000") -> str:
    """The public-join token a member of `mesh_id` would list."""
    return credentials.current_public_token(mesh_id, SECRET, (), [address])


def listed(mesh_id: str, *, nodes: int = 1, served: tuple[str, ...] = (), region: str = "", version: str = OURS, join: str | None = None) -> Listing:
    return Listing(
        mesh_id=mesh_id,
        name=f"name-{mesh_id}",
        region=region,
        served=served,
        wanted=(),
        memory_bytes=8 * 10**9,
        node_count=nodes,
        client_count=0,
        max_clients=0,
        version=version,
        join_token=token_for(mesh_id) if join is None else join,
        community=False,
        publisher="ab" * 32,
        created_at=NOW - 10,
        expires_at=NOW + 110,
    )


def heard(mesh_id: str, nodes: int = 1, models: tuple[str, ...] = ()) -> LanMesh:
    members = tuple(LanNode(Announcement(mesh_id, "", f"{mesh_id}-{i}", f"n{i}", models, len(models), 7000, 10**9, OURS), 0.001) for i in range(nodes))
    return LanMesh(mesh_id, "", members, models, len(models), nodes * 10**9, 0.001)


def chosen(listings: list[Listing], lan: list[LanMesh], answering: set[str] | None, preferences: Preferences = ANYWHERE) -> str | None:
    """The mesh --auto joins: ranked, shortlisted, probed (the meshes in `answering` answer; None: all)."""
    ranked = rank(choice.candidates(lan, listings), preferences)
    options = choice.options(ranked, listings, lan)
    short = choice.shortlist(options, OURS)
    probes = {option.scored.candidate.mesh_id: Probe(0.002 if answering is None or option.scored.candidate.mesh_id in answering else None) for option in short}
    picked = choice.pick(short, probes)
    return None if picked is None else picked.scored.candidate.mesh_id


ALL = None  # every probed mesh answers


@pytest.mark.parametrize(
    ("listings", "lan", "answering", "preferences", "expected"),
    [
        pytest.param([listed("a", served=(SMOLLM2,)), listed("b")], [], ALL, ANYWHERE, "a", id="a served model wins"),
        pytest.param([listed("a"), listed("b", nodes=3)], [], ALL, ANYWHERE, "b", id="more nodes win"),
        pytest.param([listed("a", served=(SMOLLM2,)), listed("b")], [], {"b"}, ANYWHERE, "b", id="the best does not answer: the next"),
        pytest.param([listed("a", served=(SMOLLM2,)), listed("b")], [], set(), ANYWHERE, None, id="none answers"),
        pytest.param([listed("a", nodes=5), listed("b")], [], ALL, replace(ANYWHERE, last_mesh_id="b"), "b", id="joined last time: +500"),
        pytest.param([listed("a", nodes=5, join=""), listed("b")], [], ALL, ANYWHERE, "b", id="no join token: skipped"),
        pytest.param([listed("a", nodes=5, join="mlpub1_garbage"), listed("b")], [], ALL, ANYWHERE, "b", id="unreadable token: skipped"),
        pytest.param([listed("a", nodes=5, join=token_for("b")), listed("b")], [], ALL, ANYWHERE, "b", id="a token for another mesh: skipped"),
        pytest.param([listed("a", nodes=5, version="0.2.0"), listed("b")], [], ALL, ANYWHERE, "b", id="another release: skipped"),
        pytest.param([listed("a", nodes=5, version="unknown"), listed("b")], [], ALL, ANYWHERE, "a", id="unknown release: tried"),
        pytest.param([listed("a", served=(SMOLLM2,))], [heard("z", nodes=10, models=("x", "y"))], ALL, ANYWHERE, "a", id="a LAN-only mesh is not joined"),
        pytest.param([listed("a"), listed("b", nodes=2)], [heard("a")], ALL, ANYWHERE, "b", id="seen on the LAN too: scored by its listing"),
        pytest.param([listed("a", nodes=3, region="us"), listed("b", region="eu")], [], ALL, replace(ANYWHERE, region="EU"), "b", id="region filters"),
        pytest.param([listed("a", nodes=3, region="us"), listed("b", region="eu")], [heard("a")], ALL, replace(ANYWHERE, region="eu"), "a", id="nearby kept"),
        pytest.param(
            [listed("a", nodes=6), listed("b", nodes=5), listed("c", nodes=4), listed("d", nodes=3)],
            [],
            {"d"},
            ANYWHERE,
            None,
            id="only the best three are probed",
        ),
        pytest.param([], [], ALL, ANYWHERE, None, id="nothing found"),
    ],
)
def test_which_mesh_is_joined(listings: list[Listing], lan: list[LanMesh], answering: set[str] | None, preferences: Preferences, expected: str | None) -> None:
    assert chosen(listings, lan, answering, preferences) == expected


def test_a_full_mesh_is_not_viable_unless_much_else_speaks_for_it() -> None:
    full = replace(listed("a", nodes=10), client_count=4, max_clients=4)
    assert chosen([full], [], ALL) is None
    assert chosen([full, listed("b")], [], ALL) == "b"


def test_a_mesh_on_both_sources_is_one_candidate_marked_nearby() -> None:
    candidates = choice.candidates([heard("a", nodes=2, models=("m",)), heard("z")], [listed("a", nodes=4)])
    assert [(c.mesh_id, c.node_count, c.nearby) for c in candidates] == [("a", 4, True), ("z", 1, True)]


def test_why_each_mesh_was_passed_over() -> None:
    listings = [listed("a", nodes=6), listed("b", nodes=5, join=""), listed("c", nodes=4, version="9.0"), listed("d", nodes=3), listed("e"), listed("f")]
    lan = [heard("z", nodes=10)]
    options = choice.options(rank(choice.candidates(lan, listings), ANYWHERE), listings, lan)
    short = choice.shortlist(options, OURS)
    assert [option.scored.candidate.mesh_id for option in short] == ["a", "d", "e"]
    probes = {"a": Probe(None), "d": Probe(0.001), "e": Probe(0.001)}
    assert choice.skipped(options, short, probes, OURS) == {
        "z": Skip.LAN_ONLY,
        "a": Skip.UNREACHABLE,
        "b": Skip.NO_TOKEN,
        "c": Skip.VERSION,
        "e": Skip.OUTRANKED,
        "f": Skip.NOT_PROBED,
    }  # d: joined


def signed_event(listing: Listing, *, signature_ok: bool = True, content: str | None = None) -> ListingEvent:
    return ListingEvent(listing.publisher, 31990, listing.created_at, tags_of(listing), content_of(listing) if content is None else content, signature_ok)


def test_bad_listings_are_ignored_and_counted_and_the_good_one_joined() -> None:
    good = listed("good", served=(SMOLLM2,))
    events = [
        signed_event(good),
        signed_event(listed("malformed"), content="{not json"),
        signed_event(listed("forged", nodes=10), signature_ok=False),
        signed_event(replace(listed("expired", nodes=10), created_at=NOW - 300, expires_at=NOW - 180)),
        signed_event(replace(listed("full", nodes=10), client_count=3, max_clients=3)),
        signed_event(listed("tokenless", nodes=10, join="")),
    ]
    reading = read_all(events, NOW)
    assert reading.rejected == Counter({Rejection.MALFORMED: 1, Rejection.UNSIGNED: 1, Rejection.EXPIRED: 1, Rejection.FULL: 1})
    assert chosen(list(reading.listings), [], ALL) == "good"
    options = choice.options(rank(choice.candidates([], reading.listings), ANYWHERE), reading.listings, [])
    lines = auto.report(LanScan(()), "", Directory(reading, ("ws://r",), ("ws://r",)), options, {}, None, {})
    assert "ignored 5 listings: 1 expired, 1 full, 1 listed without a join token, 1 malformed, 1 unsigned" in lines[1]


def test_the_report_names_the_mesh_joined_and_why_others_were_not() -> None:
    listings = [listed("a", served=(SMOLLM2,)), listed("b")]
    lan = [heard("z")]
    options = choice.options(rank(choice.candidates(lan, listings), ANYWHERE), listings, lan)
    short = choice.shortlist(options, OURS)
    probes = {"a": Probe(0.0015), "b": Probe(0.002)}
    picked = choice.pick(short, probes)
    lines = auto.report(
        LanScan(tuple(lan)),
        "",
        Directory(Reading(tuple(listings), Counter()), ("ws://r",), ()),
        options,
        choice.skipped(options, short, probes, OURS),
        picked,
        probes,
    )
    assert lines[0] == "mesh-llm: --auto looked around: LAN: 1 mesh; directory: 2 listed (0 of 1 relays answered)"
    assert lines[1].split()[:2] == ["115", "a"] and "RTT 1.5 ms: joining" in lines[1]
    assert "served models +10" in lines[1]
    assert lines[2].split()[:2] == ["105", "b"] and lines[2].endswith("RTT 2.0 ms: answered, but a better one did too")
    assert lines[3].endswith("(ask to: mesh-llm --join-nearby z)")
    assert lines[4] == "mesh-llm: --auto joins mesh name-a (a), score 115"


def entry(name: str, size: int) -> CatalogEntry:
    return CatalogEntry(name=name, file=f"{name}.gguf", size_bytes=size, quant="Q4_K_M", repo="org/repo")


MB = 10**6
SETTINGS = PlacementSettings()


@pytest.mark.parametrize(
    ("entries", "memory", "expected"),
    [
        pytest.param(list(CATALOG.values()), 300 * MB, None, id="nothing fits 0.3 GB (the context alone is 268 MB)"),
        pytest.param(list(CATALOG.values()), 500 * MB, SMOLLM2, id="0.5 GB: SmolLM2"),
        pytest.param(list(CATALOG.values()), 800 * MB, "Qwen2.5-0.5B-Instruct", id="0.8 GB: the next size"),
        pytest.param([entry("small", 100 * MB), entry("big", 1000 * MB)], 1_368_435_456, "big", id="exactly fits"),
        pytest.param([entry("small", 100 * MB), entry("big", 1000 * MB)], 1_368_435_455, "small", id="a byte short"),
        pytest.param([entry("b", 100 * MB), entry("a", 100 * MB)], 10**12, "b", id="same size: by name"),
    ],
)
def test_the_largest_catalog_model_that_fits(entries: list[CatalogEntry], memory: int, expected: str | None) -> None:
    # 1,368,435,456: 1000 MB with 10% headroom plus 268,435,456 bytes of context, as placement counts
    found = choice.largest_fitting(entries, memory, SETTINGS.headroom, SETTINGS.context_bytes)
    assert (found.name if found else None) == expected


def test_a_mesh_of_its_own_serves_what_fits_or_is_refused(tmp_path: Path) -> None:
    args = argparse.Namespace(models_dir=tmp_path, download="catalog")
    assert auto.own_model(args, 500 * MB, SETTINGS) == SMOLLM2
    with pytest.raises(UsageError, match=r"no catalog model fits 0.20 GB"):
        auto.own_model(args, 200 * MB, SETTINGS)
    # --download never: only what is on disk (SmolLM2 ships in a package), however much memory
    assert auto.own_model(argparse.Namespace(models_dir=tmp_path, download="never"), 10**12, SETTINGS) == SMOLLM2


def test_the_mesh_joined_is_stored_as_a_public_credential_and_remembered(tmp_path: Path) -> None:
    listing = listed("a")
    option = choice.options(rank(choice.candidates([], [listing]), ANYWHERE), [listing], [])[0]
    joining = auto._join(tmp_path, option)
    assert joining == auto.Joining("a", ("127.0.0.9:7000",))
    stored = mesh_identity.load(tmp_path)
    assert stored is not None and not stored.member and (stored.mesh_id, stored.addresses) == ("a", ("127.0.0.9:7000",))
    assert credentials.decode(stored.credential).kind == credentials.Kind.PUBLIC and stored.signing_key and stored.authority
    assert auto.last_mesh(tmp_path) == "a"


def test_a_mesh_of_its_own_is_a_member_mesh(tmp_path: Path) -> None:
    options = check(["--auto", "--max-vram", "0.5", "--models-dir", str(tmp_path), *PORTS])
    mesh_identity.save(tmp_path, MeshIdentity("public-one", b"", 0, credential=b"c"))
    started = auto._start_own(options, tmp_path)
    assert [model.model_id for model in started.options.models] == [SMOLLM2] and started.options.args.model == [SMOLLM2]
    own = mesh_identity.load(tmp_path)
    assert own is not None and own.member and own.mesh_id != "public-one"
    assert auto.last_mesh(tmp_path) == own.mesh_id
    assert auto._start_own(options, tmp_path).options.args.model == [SMOLLM2]
    assert mesh_identity.load(tmp_path) == own  # a member mesh stored is started again


def test_last_mesh_reads_nothing_from_a_bad_file(tmp_path: Path) -> None:
    assert auto.last_mesh(tmp_path) == ""
    (tmp_path / auto.LAST_FILE).write_text("[1]")
    assert auto.last_mesh(tmp_path) == ""
    auto.remember(tmp_path, "m1")
    assert auto.last_mesh(tmp_path) == "m1"


@pytest.mark.parametrize(
    ("theirs", "ours", "expected"),
    [("0.1.0", "0.1.3", True), ("0.2.0", "0.1.0", False), ("1.0", "0.1.0", False), ("unknown", "0.1.0", True), ("0.1.0", "", True), ("0.x", "0.1", True)],
)
def test_releases_that_may_be_joined(theirs: str, ours: str, expected: bool) -> None:
    assert choice.compatible(theirs, ours) is expected


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["--auto", "--join", InviteToken("0123456789abcdef", bytes(32), ("127.0.0.9:9",), "f" * 64).encode()], "pick one"),
        (["--auto", "--join-nearby"], "pick one"),
        (["--client", "--auto", "--model", SMOLLM2], "--client serves no model"),
    ],
)
def test_flags_that_contradict_auto(argv: list[str], fragment: str) -> None:
    with pytest.raises(UsageError, match=fragment):
        check(argv)


def test_client_auto_is_accepted() -> None:
    assert check(["--client", "--auto", *PORTS]).args.auto


def test_a_busy_directory_shows_the_best_ten_and_the_one_joined() -> None:
    listings = [listed(f"m{index:02}", nodes=10 - index // 2, join="" if index < 11 else None) for index in range(14)]
    options = choice.options(rank(choice.candidates([], listings), ANYWHERE), listings, [])
    short = choice.shortlist(options, OURS)
    probes = {option.scored.candidate.mesh_id: Probe(0.001) for option in short}
    picked = choice.pick(short, probes)
    assert picked is not None and picked.scored.candidate.mesh_id == "m11"
    lines = auto.report(
        LanScan(()), "", Directory(Reading(tuple(listings), Counter()), (), ()), options, choice.skipped(options, short, probes, OURS), picked, probes
    )
    rows = [line for line in lines if line.startswith("  ")]
    assert [row.split()[1] for row in rows[:-1]] == [f"m{index:02}" for index in range(10)] + ["m11"]
    assert rows[-1] == "  ... and 3 more"
