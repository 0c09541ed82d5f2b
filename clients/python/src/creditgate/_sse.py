"""Server-sent events, read line by line (https://html.spec.whatwg.org/multipage/server-sent-events.html)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ServerSentEvent:
    event: str | None
    data: str


class SSEDecoder:
    """Feed it the lines of a text/event-stream; it returns an event at each blank line that ends one.
    Comments (`: keepalive`) and fields other than `event` and `data` are skipped."""

    def __init__(self) -> None:
        self._event: str | None = None
        self._data: list[str] = []

    def feed(self, line: str) -> ServerSentEvent | None:
        if line == "":
            if not self._data:
                self._event = None
                return None
            event = ServerSentEvent(self._event, "\n".join(self._data))
            self._event, self._data = None, []
            return event
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        return None

    def flush(self) -> ServerSentEvent | None:
        """The last event when the stream ended without its blank line."""
        return self.feed("")


class LineSplitter:
    """Text chunks in, complete lines out (split at CRLF, LF or CR, as SSE allows). Written here because the
    line iterator of older httpx releases (Debian 12 ships 0.23) can return several lines as one."""

    def __init__(self) -> None:
        self._buffer = ""

    def feed(self, text: str) -> list[str]:
        self._buffer += text
        lines: list[str] = []
        start = 0
        buffer = self._buffer
        length = len(buffer)
        i = 0
        while i < length:
            char = buffer[i]
            if char == "\n":
                lines.append(buffer[start:i])
                start = i + 1
            elif char == "\r":
                if i + 1 == length:
                    break  # a CR at the end may be the first half of a CRLF: wait for the next chunk
                lines.append(buffer[start:i])
                start = i + 2 if buffer[i + 1] == "\n" else i + 1
                i = start - 1
            i += 1
        self._buffer = buffer[start:]
        return lines

    def flush(self) -> list[str]:
        rest, self._buffer = self._buffer, ""
        return [rest.rstrip("\r")] if rest else []
