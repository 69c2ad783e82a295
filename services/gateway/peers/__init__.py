"""The node's QUIC endpoint: identity, admission, stream framing, and links to peers."""
