"""What the gateway checks of a Responses API request before relaying it; other fields pass
through to llama-server (tools, max_output_tokens, reasoning…). llama-server keeps no state
between requests, so `previous_response_id` is refused there, in the OpenAI error shape."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import BaseModel, ConfigDict, StrictBool, StrictStr


class ResponsesRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: StrictStr
    # Text, or a list of input items (messages, function calls and their outputs).
    input: StrictStr | list[dict[str, Any]]
    instructions: StrictStr | None = None
    stream: StrictBool = False
    prompt_cache_key: StrictStr | None = None
    user: StrictStr | None = None

    def affinity(self) -> str:
        """What keeps a conversation on one node across its turns (KV-cache reuse): the client's
        cache key or user when given, else what every turn repeats: the instructions and the
        input items up to and including the first user message."""
        if self.prompt_cache_key or self.user:
            return f"user:{self.prompt_cache_key or self.user}"
        if isinstance(self.input, str):
            opening: list[Any] = [self.instructions, self.input]
        else:
            first_user = next((i for i, item in enumerate(self.input) if item.get("role") == "user"), len(self.input) - 1)
            opening = [self.instructions, *self.input[: first_user + 1]]
        return "conversation:" + hashlib.sha256(json.dumps(opening, sort_keys=True).encode()).hexdigest()
