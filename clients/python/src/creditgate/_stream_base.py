"""What the sync and async streams share: decoding a chat stream's events into chunks (and assembling the call
from them), and a queued call's events."""

from __future__ import annotations

import json
from typing import Any

import httpx

from ._errors import APIConnectionError, UpstreamError, error_detail
from ._sse import ServerSentEvent
from ._types import ChatCompletionChunk, CompletionUsage, FinalCall, QueueEvent, ToolCall

_QUEUE_EVENTS = {"start", "chunk", "error", "done"}


def _parse(event: ServerSentEvent) -> Any:
    try:
        return json.loads(event.data)
    except ValueError as cause:
        raise APIConnectionError(f"the stream sent a frame that is not JSON: {event.data[:100]}") from cause


class ChatState:
    """What a chat stream has assembled so far: content, tool calls by index, finish reason, usage."""

    def __init__(self, response: httpx.Response, job_id: str | None) -> None:
        self.response = response
        self.job_id: str | None = response.headers.get("x-job-id") or job_id
        self.call_id: str | None = response.headers.get("x-call-id")
        self.text = ""
        self.tool_calls: list[ToolCall] = []
        self.finish_reason: str | None = None
        self.usage: CompletionUsage | None = None
        self.done = False

    def decode(self, event: ServerSentEvent) -> ChatCompletionChunk | None:
        """The chunk an event carries, or None; an in-band error raises UpstreamError."""
        if self.done:
            return None
        if event.data == "[DONE]":
            self.done = True
            return None
        payload = _parse(event)
        error = error_detail(payload)
        if error is not None:
            raise UpstreamError(str(error.get("message")), error=error, headers=self.response.headers)
        chunk: ChatCompletionChunk = payload
        usage = chunk.get("usage")
        if usage:
            self.usage = usage
        choices = chunk.get("choices") or []
        if choices:
            choice = choices[0]
            delta = choice.get("delta") or {}
            self.text += delta.get("content") or ""
            self.finish_reason = choice.get("finish_reason") or self.finish_reason
            for part in delta.get("tool_calls") or []:
                index = part["index"]
                while len(self.tool_calls) <= index:
                    self.tool_calls.append({"id": "", "type": "function", "function": {"name": "", "arguments": ""}})
                call = self.tool_calls[index]
                call["id"] = call["id"] or part.get("id") or ""
                function = part.get("function") or {}
                call["function"]["name"] += function.get("name") or ""
                call["function"]["arguments"] += function.get("arguments") or ""
        return chunk

    def final(self) -> FinalCall:
        if not self.done:
            raise APIConnectionError("the stream ended before [DONE]")
        final: FinalCall = {"content": self.text, "tool_calls": self.tool_calls, "finish_reason": self.finish_reason}
        if self.usage is not None:
            final["usage"] = self.usage
        return final


def queue_event(event: ServerSentEvent) -> QueueEvent | None:
    """The event of a queued call a server-sent event carries, or None for one of another type."""
    if event.event not in _QUEUE_EVENTS:
        return None
    return {"event": event.event, "data": _parse(event)}  # type: ignore[typeddict-item]
