"""What the gateway checks of an Anthropic Messages request before relaying it; other fields pass
through to llama-server, which reads them (tools, tool_choice, stop_sequences, thinking…)."""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr


class Message(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["user", "assistant"]
    # Text, or a list of content blocks (text, image, tool_use, tool_result…).
    content: StrictStr | list[dict[str, Any]]


class Metadata(BaseModel):
    model_config = ConfigDict(extra="allow")

    user_id: StrictStr | None = None


class CountTokensRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: StrictStr
    messages: list[Message] = Field(min_length=1)
    system: StrictStr | list[dict[str, Any]] | None = None


class MessagesRequest(CountTokensRequest):
    # Required by Anthropic's API (llama-server would default it): a client that leaves it out
    # would fail against Anthropic, so it fails here the same way.
    max_tokens: Annotated[StrictInt, Field(ge=1)]
    stream: StrictBool = False
    metadata: Metadata | None = None

    def affinity(self) -> str:
        """What keeps a conversation on one node across its turns (KV-cache reuse): the user id when
        given, else what every turn repeats: the system prompt and the messages up to and
        including the first user message."""
        if self.metadata is not None and self.metadata.user_id:
            return f"user:{self.metadata.user_id}"
        first_user = next((i for i, m in enumerate(self.messages) if m.role == "user"), len(self.messages) - 1)
        opening = [self.system, *({"role": m.role, "content": m.content} for m in self.messages[: first_user + 1])]
        return "conversation:" + hashlib.sha256(json.dumps(opening, sort_keys=True).encode()).hexdigest()
