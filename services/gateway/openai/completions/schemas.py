"""What the gateway checks of a completion request before relaying it; other fields pass through."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, StrictBool, StrictInt, StrictStr


class CompletionRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: StrictStr
    # A string, a batch of strings, or token ids (one list or a batch of lists).
    prompt: StrictStr | list[StrictStr] | list[StrictInt] | list[list[StrictInt]]
    stream: StrictBool = False
    user: StrictStr | None = None

    def affinity(self) -> str:
        return f"user:{self.user}" if self.user else ""
