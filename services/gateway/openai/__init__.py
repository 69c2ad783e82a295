"""The OpenAI-compatible API surface: one folder per resource."""
