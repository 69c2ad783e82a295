"""The console on :3131: a page, /api/status (JSON) and /api/events (SSE)."""
