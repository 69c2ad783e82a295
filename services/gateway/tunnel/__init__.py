"""HTTP over QUIC between gateways: a request's head and body out, the response streamed back."""
