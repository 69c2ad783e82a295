"""POST /v1/messages and /v1/messages/count_tokens, relayed to llama-server's own Anthropic API."""
