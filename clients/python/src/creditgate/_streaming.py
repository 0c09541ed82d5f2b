"""Streamed answers as iterators (sync) and async iterators. Closing one early, or leaving a `with` block,
closes its HTTP connection: that is how the server learns the client is gone, and it aborts the upstream call."""

from __future__ import annotations

import json
from types import TracebackType
from typing import Any, AsyncIterator, Iterator, Self

import httpx

from ._errors import APIConnectionError, UpstreamError, error_detail
from ._sse import LineSplitter, ServerSentEvent, SSEDecoder
from ._types import ChatCompletionChunk, CompletionUsage, FinalCall, QueueEvent, ToolCall

_QUEUE_EVENTS = {"start", "chunk", "error", "done"}


def _parse(event: ServerSentEvent) -> Any:
    try:
        return json.loads(event.data)
    except ValueError as cause:
        raise APIConnectionError(f"the stream sent a frame that is not JSON: {event.data[:100]}") from cause


class _ChatState:
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


def _lines(texts: Iterator[str]) -> Iterator[str]:
    splitter = LineSplitter()
    for text in texts:
        yield from splitter.feed(text)
    yield from splitter.flush()


async def _alines(texts: AsyncIterator[str]) -> AsyncIterator[str]:
    splitter = LineSplitter()
    async for text in texts:
        for line in splitter.feed(text):
            yield line
    for line in splitter.flush():
        yield line


def _queue_event(event: ServerSentEvent) -> QueueEvent | None:
    if event.event not in _QUEUE_EVENTS:
        return None
    return {"event": event.event, "data": _parse(event)}  # type: ignore[typeddict-item]


class ChatStream:
    """A streamed chat call: iterate it for OpenAI `chat.completion.chunk`s (ChatCompletionChunk); `text`,
    `tool_calls` grow as chunks arrive; `final_call()` reads the rest. `close()` (or leaving a `with` block)
    disconnects."""

    def __init__(self, response: httpx.Response, job_id: str | None = None) -> None:
        self._state = _ChatState(response, job_id)
        self._iterator: Iterator[ChatCompletionChunk] | None = None

    @property
    def job_id(self) -> str | None:
        return self._state.job_id

    @property
    def call_id(self) -> str | None:
        return self._state.call_id

    @property
    def text(self) -> str:
        return self._state.text

    @property
    def tool_calls(self) -> list[ToolCall]:
        return self._state.tool_calls

    def __iter__(self) -> Iterator[ChatCompletionChunk]:
        if self._iterator is None:
            self._iterator = self._chunks()
        return self._iterator

    def _chunks(self) -> Iterator[ChatCompletionChunk]:
        decoder = SSEDecoder()
        try:
            for line in _lines(self._state.response.iter_text()):
                event = decoder.feed(line)
                if event is not None and (chunk := self._state.decode(event)) is not None:
                    yield chunk
            last = decoder.flush()
            if last is not None and (chunk := self._state.decode(last)) is not None:
                yield chunk
            if not self._state.done:
                raise APIConnectionError("the stream ended before [DONE]")
        except httpx.TransportError as cause:
            raise APIConnectionError(f"the stream was cut off: {cause}") from cause
        finally:
            self._state.response.close()

    def final_call(self) -> FinalCall:
        """Reads the stream to its end (if nobody did) and returns what it assembled."""
        for _ in self:
            pass
        return self._state.final()

    def close(self) -> None:
        """Disconnects; the server aborts the upstream request and records what was produced."""
        self._state.response.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()


class AsyncChatStream:
    """The async twin of ChatStream: `async for chunk in stream`, `await stream.aclose()`, `async with`."""

    def __init__(self, response: httpx.Response, job_id: str | None = None) -> None:
        self._state = _ChatState(response, job_id)
        self._iterator: AsyncIterator[ChatCompletionChunk] | None = None

    @property
    def job_id(self) -> str | None:
        return self._state.job_id

    @property
    def call_id(self) -> str | None:
        return self._state.call_id

    @property
    def text(self) -> str:
        return self._state.text

    @property
    def tool_calls(self) -> list[ToolCall]:
        return self._state.tool_calls

    def __aiter__(self) -> AsyncIterator[ChatCompletionChunk]:
        if self._iterator is None:
            self._iterator = self._chunks()
        return self._iterator

    async def _chunks(self) -> AsyncIterator[ChatCompletionChunk]:
        decoder = SSEDecoder()
        try:
            async for line in _alines(self._state.response.aiter_text()):
                event = decoder.feed(line)
                if event is not None and (chunk := self._state.decode(event)) is not None:
                    yield chunk
            last = decoder.flush()
            if last is not None and (chunk := self._state.decode(last)) is not None:
                yield chunk
            if not self._state.done:
                raise APIConnectionError("the stream ended before [DONE]")
        except httpx.TransportError as cause:
            raise APIConnectionError(f"the stream was cut off: {cause}") from cause
        finally:
            await self._state.response.aclose()

    async def final_call(self) -> FinalCall:
        async for _ in self:
            pass
        return self._state.final()

    async def aclose(self) -> None:
        """Disconnects; the server aborts the upstream request and records what was produced."""
        await self._state.response.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *_: type[BaseException] | BaseException | TracebackType | None) -> None:
        await self.aclose()


class QueueStream:
    """The events of a queued call (`start`, `chunk`..., `error`?, `done`), replayed from its start."""

    def __init__(self, response: httpx.Response) -> None:
        self._response = response

    def __iter__(self) -> Iterator[QueueEvent]:
        decoder = SSEDecoder()
        try:
            for line in _lines(self._response.iter_text()):
                event = decoder.feed(line)
                if event is not None and (item := _queue_event(event)) is not None:
                    yield item
                    if item["event"] == "done":
                        return
            raise APIConnectionError("the stream ended before its done event")
        except httpx.TransportError as cause:
            raise APIConnectionError(f"the stream was cut off: {cause}") from cause
        finally:
            self._response.close()

    def close(self) -> None:
        self._response.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()


class AsyncQueueStream:
    def __init__(self, response: httpx.Response) -> None:
        self._response = response

    async def __aiter__(self) -> AsyncIterator[QueueEvent]:
        decoder = SSEDecoder()
        try:
            async for line in _alines(self._response.aiter_text()):
                event = decoder.feed(line)
                if event is not None and (item := _queue_event(event)) is not None:
                    yield item
                    if item["event"] == "done":
                        return
            raise APIConnectionError("the stream ended before its done event")
        except httpx.TransportError as cause:
            raise APIConnectionError(f"the stream was cut off: {cause}") from cause
        finally:
            await self._response.aclose()

    async def aclose(self) -> None:
        await self._response.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *_: type[BaseException] | BaseException | TracebackType | None) -> None:
        await self.aclose()
