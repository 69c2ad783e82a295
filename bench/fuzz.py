#!/usr/bin/env python3
"""Benchmark: a coverage-guided fuzz run (atheris, libFuzzer) of every parser of network and disk bytes.

The targets are the parsers tests/unit/fuzz drives with hypothesis, called through the same test
helpers and test bodies, so a clean rejection is what those tests accept: the parser's documented
error (TokenError, CredentialError, InvalidArgument, AdmissionRefused, the framing errors the
endpoint drops a peer for, ModelError, BadAnnouncement, ...) or a value the test's assertions hold
for. A crash is anything else: another exception or a failed assertion, an input that runs past
TIMEOUT_S, or a process whose peak RSS passes RSS_LIMIT_MB. A target stops at its first crash and
leaves the input in the folder printed; the script then exits 1.

Each target runs alone in a child process (`bench/fuzz.py --child NAME WORK`), our services
modules instrumented for coverage as they are imported, seeded with valid bytes: a real invite
token, credential and gossip message, the first 8 KiB of the SmolLM2 GGUF, a signed Nostr
listing. A target that holds several parsers picks one by its input's first byte.

Env: BENCH_FUZZ_S (60: seconds per target), BENCH_FUZZ_TARGETS (all; comma-separated names).
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from importlib.metadata import version
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SECONDS = int(os.environ.get("BENCH_FUZZ_S", "60"))
TIMEOUT_S = 10  # one input's bound: the slowest seed takes milliseconds; the tests' asyncio steps give up at 10 s too
RSS_LIMIT_MB = 2048  # a child idles at 100-250 MB; a parser that allocates what a length field claims passes this
GRACE_S = 120  # a child's imports and seeding, and its last input, on top of its fuzzing time


@dataclass(frozen=True)
class Parser:
    check: Callable[[bytes], None]  # one input through the parser: returns on a value or its refusal, raises on anything else
    seeds: tuple[bytes, ...]  # valid inputs: where mutation starts


def body_of(test: Any) -> Any:
    """A hypothesis test's own body, called with one input of ours instead of generated ones."""
    return test.hypothesis.inner_test


def text(data: bytes) -> str:
    return data.decode("utf-8", "replace")


# --- targets: each imports its test module when called (in the child, under instrumentation) -------


def invite_tokens() -> list[Parser]:
    from services.common import invite
    from tests.unit.fuzz import test_tokens as tokens

    token = tokens.TOKEN.encode()
    body = base64.urlsafe_b64decode(token.removeprefix(invite.PREFIX) + "==")[: -invite.CHECKSUM_BYTES]
    return [
        Parser(lambda data: tokens.decoded_invite(text(data)), (token.encode(),)),
        # A body behind a right checksum: what a mutated token almost never reaches.
        Parser(lambda data: tokens.decoded_invite(tokens.checksummed(data)), (body,)),
    ]


def credentials() -> list[Parser]:
    from tests.unit.fuzz import test_tokens as tokens

    def credential_or_revocation(data: bytes) -> None:
        tokens.decoded_credential(data)
        tokens.decoded_revocation(data)

    return [
        Parser(credential_or_revocation, (tokens.CREDENTIAL.encode(), tokens.REVOCATION.encode())),
        Parser(lambda data: tokens.decoded_public_token(text(data)), (tokens.PUBLIC_TOKEN.encode(),)),
    ]


def gossip() -> list[Parser]:
    from google.protobuf.message import DecodeError

    from services.gossip.blackboard.sync import post_to_proto
    from services.gossip.probe import PeerUnreachable
    from services.proto.mesh.v1 import node_pb2, peer_pb2
    from tests.unit.fuzz import test_gossip_messages as messages
    from tests.unit.fuzz import test_peer_streams as streams

    def acked(data: bytes) -> None:
        async def probe(node: Any) -> None:
            try:
                await node.protocol.ping("10.0.0.2:7000", "b")
            except PeerUnreachable:
                pass  # the probe loop's one expected failure

        messages.on_node(probe, (data,))

    def posted(data: bytes) -> None:
        try:
            post = peer_pb2.BoardPost.FromString(data)
        except DecodeError:
            return  # the message holding it is refused whole (INVALID_ARGUMENT)
        body_of(messages.test_a_post_is_refused_or_kept_where_a_board_keeps_it)(post, messages.NOW)

    state = peer_pb2.GossipState(
        from_node_id="b",
        members=[peer_pb2.Member(record=node_pb2.NodeRecord(node_id="b", name="beta", version=3), address="10.0.0.2:7000", status="alive", incarnation=1)],
        credentials=[messages.CREDENTIAL],
    )
    post = post_to_proto(messages.VALID_POST)
    return [
        Parser(
            body_of(messages.test_any_peer_message_is_answered_or_invalid),
            (
                messages.VALID_PING.SerializeToString(),
                peer_pb2.GossipMessage(ping=state).SerializeToString(),
                peer_pb2.GossipMessage(board_posts=peer_pb2.BoardPosts(posts=[post])).SerializeToString(),
                peer_pb2.GossipMessage(board_digest=peer_pb2.BoardDigest(ids=["x"], floor_at=messages.NOW, floor_id="x")).SerializeToString(),
            ),
        ),
        Parser(acked, (peer_pb2.GossipMessage(ack=state).SerializeToString(),)),
        Parser(posted, (post.SerializeToString(),)),
        Parser(
            body_of(streams.test_the_secret_never_reaches_a_paired_peer_whatever_the_message),
            (peer_pb2.GossipMessage(ping=streams.STATE).SerializeToString(), peer_pb2.GossipMessage(ack=streams.STATE).SerializeToString()),
        ),
    ]


def admission() -> list[Parser]:
    from services.common.records import MeshView, NodeRecord
    from services.gateway.peers import pairing
    from services.proto.mesh.v1 import peer_pb2
    from tests.unit.fuzz import test_peer_streams as streams

    # A request whose reveal matches its commitment (the fuzzer builds one in seconds) is whole, and
    # waits for an operator's approval as designed: no wait here, so it ends with the refusal it gets then.
    pairing.WAIT_FOR_APPROVAL = 0.0

    def paired(data: bytes) -> None:
        view = MeshView(own=NodeRecord(node_id="member", name="member"), mesh_id=streams.MESH)
        server, writer = pairing.PairingServer(lambda: view, streams.PairingGossip(), "member-fp"), streams.Writer()
        try:
            streams.run(lambda: server.serve(object(), streams.reader_of(data), writer))
        except streams.MALFORMED:
            return  # the endpoint drops the peer's connection
        assert writer.written, "a pairing stream ended unanswered"

    hello = peer_pb2.AdmissionHello(
        mesh_id=streams.MESH, nonce=bytes(32), fingerprint="client-fp", node_id="client", address="10.0.0.2:7000", credential=streams.CLIENT_CREDENTIAL
    )
    challenge = peer_pb2.AdmissionChallenge(nonce=bytes(32), node_id="server", credential=streams.SERVER_CREDENTIAL, signature=bytes(72))
    request = peer_pb2.PairRequest(node_id="joiner", name="joiner", public_key=streams.EC_DER, commitment=bytes(32))
    return [
        Parser(body_of(streams.test_any_stream_is_one_frame_or_a_framing_error), (streams.frames(b"payload"),)),
        Parser(body_of(streams.test_a_server_admits_no_one_for_garbage), (streams.hello_stream(hello, bytes(72)),)),
        Parser(body_of(streams.test_a_client_is_admitted_nowhere_by_garbage_and_says_why), (streams.frames(challenge.SerializeToString()),)),
        Parser(paired, (streams.frames(request.SerializeToString(), bytes(32)),)),
    ]


def tunnels() -> list[Parser]:
    from tests.unit.fuzz import test_peer_streams as streams

    head = {"path": "/v1/chat/completions", "model": "alpha", "request_id": "r-1", "body_bytes": 2}
    answer = streams.frames(b'{"status": 200, "content_type": "text/event-stream"}', b"data: 1", b"data: 2", b"")
    return [
        Parser(body_of(streams.test_a_tunnel_head_reaches_only_the_llama_server_api_or_drops_the_peer), (streams.head_stream(head, b"{}"),)),
        Parser(body_of(streams.test_an_rpc_head_names_a_port_or_drops_the_peer), (streams.frames(b'{"port": 50052}'),)),
        Parser(streams.answered, (answer,)),
    ]


def api_bodies() -> list[Parser]:
    from tests.unit.fuzz import test_api_bodies as bodies

    def parser_of(schema: Any) -> Callable[[bytes], None]:
        return lambda data: bodies.parsed(data, schema)

    return [Parser(parser_of(schema), (json.dumps(body).encode(),)) for _, schema, body in bodies.ROUTES]


def upstream_answers() -> list[Parser]:
    from tests.unit.fuzz import test_api_bodies as bodies

    def relayed(data: bytes) -> None:
        """The stream `data[1:]` in chunks of 1 + data[0] % 32 bytes."""
        step, stream = 1 + (data[:1] or b"\0")[0] % 32, data[1:]
        body_of(bodies.test_a_stream_passes_whole_events_on_whatever_its_chunks)([stream], list(range(step, len(stream), step)))

    usage = {"usage": {"prompt_tokens": 12, "completion_tokens": 5, "input_tokens": 12, "output_tokens": 5}, "timings": {"prompt_n": 12, "predicted_n": 5}}
    events = b'event: message_start\ndata: {"type": "message_start"}\n\n: ping\r\n\r\ndata: {"usage": {"completion_tokens": 5}}\n\ndata: [DONE]\n\n'
    return [
        Parser(body_of(bodies.test_any_upstream_answer_gives_token_counts), (json.dumps(usage).encode(),)),
        Parser(lambda data: body_of(bodies.test_any_upstream_error_becomes_an_anthropic_error)(503, data), (b'{"error": {"message": "busy", "code": 503}}',)),
        Parser(relayed, (b"\x07" + events,)),
    ]


def gguf_headers() -> list[Parser]:
    from tests.unit.fuzz import test_gguf_headers as headers

    folder = Path(tempfile.mkdtemp())
    seeds = (headers.small_gguf(), headers.smollm2_head()[: 8 * 1024])
    return [
        Parser(lambda data: body_of(headers.test_a_damaged_header_is_a_model_error_or_a_header)(folder, data), seeds),
        Parser(headers.measured, seeds),
    ]


def lan() -> list[Parser]:
    from zeroconf import ServiceInfo

    from services.gateway.discovery.lan import SERVICE_TYPE
    from tests.unit.fuzz import test_discovery as discovery
    from tests.unit.fuzz import test_peer_streams as streams

    def announced(data: bytes) -> None:
        """`data` as a TXT record's bytes, read into properties by zeroconf as lan.py has them read."""
        body_of(discovery.test_any_txt_record_is_an_announcement_within_bounds_or_refused)(
            ServiceInfo(SERVICE_TYPE, f"x.{SERVICE_TYPE}", properties=data).properties
        )

    def answered(data: bytes) -> None:
        """`data` as a source connection id (8 bytes) and the datagram a probe got back."""
        body_of(streams.test_any_datagram_is_an_answer_or_not)(data[8:], data[:8].ljust(8, b"\0"))

    txt = ServiceInfo(SERVICE_TYPE, f"x.{SERVICE_TYPE}", properties=discovery.TXT).text
    source = b"cid-0001"
    negotiation = bytes([0x80]) + bytes(4) + bytes([len(source)]) + source + bytes([0]) + bytes.fromhex("00000001")
    return [Parser(announced, (txt,)), Parser(answered, (source + negotiation,))]


def nostr() -> list[Parser]:
    from services.gateway.discovery.nostr import SUBSCRIPTION
    from tests.unit.fuzz import test_discovery as discovery

    message = json.dumps(["EVENT", SUBSCRIPTION, discovery.EVENT_JSON])
    return [
        Parser(lambda data: body_of(discovery.test_any_relay_message_is_an_event_the_end_or_nothing)(text(data)), (message.encode(),)),
        Parser(lambda data: body_of(discovery.test_any_event_json_beside_a_good_one_is_refused_alone)([text(data)]), (discovery.SIGNED.encode(),)),
        Parser(lambda data: discovery.judged(replace(discovery.EVENT, content=text(data))), (discovery.EVENT.content.encode(),)),
    ]


@dataclass(frozen=True)
class Target:
    name: str
    parses: str
    parsers: Callable[[], list[Parser]]


TARGETS = [
    Target("invite", "invite tokens as pasted; a token body behind a right checksum", invite_tokens),
    Target("credentials", "credentials, revocations (gossip, admission) and public tokens (listings)", credentials),
    Target("gossip", "a peer's gossip message (HandlePeerMessage), a probe's ack, a board post; gossip through the secrecy filter", gossip),
    Target("admission", "a QUIC stream's frame, an admission hello (server) and challenge (client), a pairing request", admission),
    Target("tunnel", "an HTTP tunnel head (serving side), an RPC tunnel head, an HTTP tunnel answer (requesting side)", tunnels),
    Target("api-bodies", "OpenAI and Anthropic request bodies: chat, completions, responses, messages, count_tokens", api_bodies),
    Target("upstream", "an upstream's answer (token counts), its error for Anthropic clients, an SSE stream in any chunks", upstream_answers),
    Target("gguf", "a GGUF header on disk (fields, tensor sizes, layers, MoE), a download's first bytes (header length)", gguf_headers),
    Target("lan", "a LAN announcement's TXT record, a QUIC ping's answer", lan),
    Target("nostr", "a relay's message, an event's JSON, a listing's content", nostr),
]


# --- the child: one target under libFuzzer ---------------------------------------------------------


def fuzz_child(target: Target, work: Path, flags: list[str]) -> None:
    import atheris

    with atheris.instrument_imports(include=["services"]):
        parsers = target.parsers()
    corpus = work / "corpus"
    corpus.mkdir()
    for index, parser in enumerate(parsers):
        for number, seed in enumerate(parser.seeds):
            (corpus / f"seed-{index}-{number}").write_bytes(bytes([index]) + seed)

    def one_input(data: bytes) -> None:
        if data:
            parsers[data[0] % len(parsers)].check(data[1:])

    print(f"fuzz: started {time.time()}", file=sys.stderr, flush=True)
    atheris.Setup([sys.argv[0], *flags, str(corpus)], one_input)
    atheris.Fuzz()


# --- the parent: each target in turn, and the table ------------------------------------------------


@dataclass(frozen=True)
class Result:
    target: Target
    executions: int
    seconds: float
    artifacts: list[Path]


def fuzz_target(target: Target, seconds: int, found: Path) -> Result:
    flags = [
        f"-max_total_time={seconds}",
        f"-timeout={TIMEOUT_S}",
        f"-rss_limit_mb={RSS_LIMIT_MB}",
        f"-artifact_prefix={found}/{target.name}-",
        "-print_final_stats=1",
    ]
    with tempfile.TemporaryDirectory(prefix=f"mesh-bench-fuzz-{target.name}-") as work:
        log = found / f"{target.name}.log"
        with log.open("w") as out:
            command = [sys.executable, __file__, "--child", target.name, work, *flags]
            # Its temporary files (the corpus, the GGUF written per input, gossip's homes) go with `work`.
            environment = {**os.environ, "TMPDIR": work}
            finished = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, env=environment, timeout=seconds + GRACE_S, check=False)
        ended = time.time()
    output = log.read_text(errors="replace")
    artifacts = sorted(path for path in found.iterdir() if re.fullmatch(rf"{target.name}-(crash|timeout|oom)-[0-9a-f]+", path.name))
    executions = re.search(r"stat::number_of_executed_units: (\d+)", output)
    started = re.search(r"fuzz: started ([\d.]+)", output)
    if executions is None or started is None or (finished.returncode != 0 and not artifacts):
        raise SystemExit(f"{target.name}: the fuzzer did not run (exit {finished.returncode}); see {log}:\n{output[-3000:]}")
    return Result(target, int(executions.group(1)), ended - float(started.group(1)), artifacts)


def main() -> int:
    from bench.common import CACHE  # here, not at the top: a child imports our modules only under instrumentation

    chosen = [name for name in os.environ.get("BENCH_FUZZ_TARGETS", "").split(",") if name]
    unknown = set(chosen) - {target.name for target in TARGETS}
    if unknown:
        raise SystemExit(f"unknown targets {sorted(unknown)}; known: {', '.join(target.name for target in TARGETS)}")
    targets = [target for target in TARGETS if not chosen or target.name in chosen]
    found = CACHE / "fuzz" / time.strftime("%Y%m%d-%H%M%S")
    found.mkdir(parents=True)
    print(f"fuzz: {len(targets)} targets, {SECONDS} s each; logs and crash inputs in {found}", file=sys.stderr, flush=True)
    results = []
    for target in targets:
        results.append(fuzz_target(target, SECONDS, found))
        print(f"   {target.name}: {results[-1].executions} executions, {len(results[-1].artifacts)} crashes", file=sys.stderr, flush=True)
    print(f"\nFuzz: atheris {version('atheris')}, {SECONDS} s per target, per input {TIMEOUT_S} s, RSS limit {RSS_LIMIT_MB} MB\n")
    print("| target | what it parses | executions | seconds | crashes | crash input |")
    print("|---|---|---|---|---|---|")
    for result in results:
        inputs = ", ".join(str(path) for path in result.artifacts) or "–"
        print(f"| {result.target.name} | {result.target.parses} | {result.executions} | {result.seconds:.0f} | {len(result.artifacts)} | {inputs} |")
    return 1 if any(result.artifacts for result in results) else 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        fuzz_child(next(target for target in TARGETS if target.name == sys.argv[2]), Path(sys.argv[3]), sys.argv[4:])
    else:
        sys.exit(main())
