"""The Anthropic API surface of the gateway: /v1/messages and its error shape."""
