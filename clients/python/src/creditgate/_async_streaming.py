"""Streamed answers as async iterators: AsyncChatStream and AsyncQueueStream. Closing one early, or leaving its
`async with` block, closes its HTTP connection: that is how the server learns the client is gone, and it aborts the
upstream call. The sync streams (_streaming.py) are generated from this file by scripts/generate_sync.py: change
them here."""

from __future__ import annotations

from types import TracebackType
from typing import AsyncIterator, Self

import httpx

from ._errors import APIConnectionError
from ._sse import LineSplitter, SSEDecoder
from ._stream_base import ChatState, queue_event
from ._types import ChatCompletionChunk, FinalCall, QueueEvent, ToolCall


async def _lines(texts: AsyncIterator[str]) -> AsyncIterator[str]:
    splitter = LineSplitter()
    async for text in texts:
        for line in splitter.feed(text):
            yield line
    for line in splitter.flush():
        yield line


class AsyncChatStream:
    """A streamed chat call: iterate it for OpenAI `chat.completion.chunk`s (ChatCompletionChunk); `text`,
    `tool_calls` grow as chunks arrive; `final_call()` reads the rest. `aclose()` (or leaving its `async with` block)
    disconnects."""

    def __init__(self, response: httpx.Response, job_id: str | None = None) -> None:
        self._state = ChatState(response, job_id)
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
            async for line in _lines(self._state.response.aiter_text()):
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
        """Reads the stream to its end (if nobody did) and returns what it assembled."""
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


class AsyncQueueStream:
    """The events of a queued call (`start`, `chunk`..., `error`?, `done`), replayed from its start."""

    def __init__(self, response: httpx.Response) -> None:
        self._response = response

    async def __aiter__(self) -> AsyncIterator[QueueEvent]:
        decoder = SSEDecoder()
        try:
            async for line in _lines(self._response.aiter_text()):
                event = decoder.feed(line)
                if event is not None and (item := queue_event(event)) is not None:
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
