"""What the gateway checks of a chat request before relaying it; other fields pass through."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: StrictStr
    # Text, a list of content parts, or null (an assistant turn that only calls tools).
    content: StrictStr | list[dict[str, Any]] | None = None


class ChatCompletionRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: StrictStr
    messages: list[ChatMessage] = Field(min_length=1)
    stream: StrictBool = False
    user: StrictStr | None = None

    def affinity(self) -> str:
        """What keeps a conversation on one node across its turns (KV-cache reuse, one MoE shard):
        the user when given, else what every turn repeats unchanged: the messages up to and
        including the first user message (the system or developer text and the opening question).
        Later messages grow each turn, so they must not count."""
        if self.user:
            return f"user:{self.user}"
        first_user = next((i for i, m in enumerate(self.messages) if m.role == "user"), len(self.messages) - 1)
        opening = [{"role": m.role, "content": m.content} for m in self.messages[: first_user + 1]]
        return "conversation:" + hashlib.sha256(json.dumps(opening, sort_keys=True).encode()).hexdigest()
