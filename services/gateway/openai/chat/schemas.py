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
        """What keeps a session on one node (KV-cache reuse): the user, else the conversation so far."""
        if self.user:
            return f"user:{self.user}"
        if len(self.messages) > 1:
            earlier = json.dumps([m.model_dump() for m in self.messages[:-1]], sort_keys=True).encode()
            return "conversation:" + hashlib.sha256(earlier).hexdigest()
        return ""
