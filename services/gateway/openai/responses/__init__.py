"""POST /v1/responses, relayed to llama-server's own Responses API."""
