import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from services.common import credentials
from services.common.invite import InviteToken, TokenError, decode, new_secret
from services.gateway.peers import proof
from services.gateway.peers.framing import MAX_FRAME_BYTES, FrameError, StreamKind, encode_frame, frame_length, stream_kind

TOKEN = InviteToken("abcdef0123456789", new_secret(), ("10.0.0.2:7000", "host.local:7001"), "ab" * 32)


def test_token_round_trips() -> None:
    assert decode(TOKEN.encode()) == TOKEN


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("hello", "not a mesh-llm invite token"),
        (TOKEN.encode()[:-3], "truncated"),
        (TOKEN.encode()[:30] + "x" + TOKEN.encode()[31:], "truncated or altered"),
        ("mesh1-", "truncated or altered"),
    ],
)
def test_bad_tokens_say_why(text: str, fragment: str) -> None:
    with pytest.raises(TokenError, match=fragment):
        decode(text)


def test_token_with_a_bad_address_is_refused() -> None:
    with pytest.raises(TokenError, match="addresses"):
        decode(InviteToken("m", new_secret(), ("no-port",), "f").encode())


def test_signatures_bind_key_side_fingerprints_and_nonces() -> None:
    key, nonce_a, nonce_b = ec.generate_private_key(ec.SECP256R1()), proof.new_nonce(), proof.new_nonce()
    public = credentials.public_der(key)
    transcript = proof.transcript("mesh", "client-fp", "server-fp", nonce_a, nonce_b)
    given = credentials.sign(key, "client", transcript)
    assert credentials.signed(public, "client", transcript, given)
    assert not credentials.signed(credentials.public_der(ec.generate_private_key(ec.SECP256R1())), "client", transcript, given)  # another key
    assert not credentials.signed(public, "server", transcript, given)  # reflected to the other role
    relayed = proof.transcript("mesh", "client-fp", "mitm-fp", nonce_a, nonce_b)
    assert not credentials.signed(public, "client", relayed, given)  # a man in the middle's certificate
    replayed = proof.transcript("mesh", "client-fp", "server-fp", nonce_a, proof.new_nonce())
    assert not credentials.signed(public, "client", replayed, given)  # a fresh server nonce


def test_framing_limits_and_kinds() -> None:
    frame = encode_frame(b"hello")
    assert frame_length(frame[:4]) == 5 and frame[4:] == b"hello"
    with pytest.raises(FrameError):
        encode_frame(b"x" * (MAX_FRAME_BYTES + 1))
    with pytest.raises(FrameError):
        frame_length((MAX_FRAME_BYTES + 1).to_bytes(4, "big"))
    assert stream_kind(bytes([StreamKind.GOSSIP])) == StreamKind.GOSSIP
    with pytest.raises(FrameError):
        stream_kind(b"\x63")
