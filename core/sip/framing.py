"""Message framing for stream transports (TCP, TLS): RFC 3261 §18.3, RFC 5626 §4.4.1."""

from __future__ import annotations

import re

from .errors import SipParseError
from .headers import MAX_CONTENT_LENGTH, parse_uint

__all__ = ["KEEPALIVE_PING", "KEEPALIVE_PONG", "StreamFramer"]

#: RFC 5626 keep-alive: a client sends a double CRLF, the server answers a single CRLF.
KEEPALIVE_PING = b"\r\n\r\n"
KEEPALIVE_PONG = b"\r\n"

_HEADER_END_RE = re.compile(rb"\r?\n\r?\n")
# Content-Length lines (long or compact form). The name starts its line: a line starting with
# whitespace continues the previous header and is never a Content-Length.
_CL_RE = re.compile(rb"\n(?:[Cc][Oo][Nn][Tt][Ee][Nn][Tt]-[Ll][Ee][Nn][Gg][Tt][Hh]|[lL])"
                    rb"[ \t]*+:[ \t]*+([^\r\n]*+)")


class StreamFramer:
    """Cut a byte stream into SIP messages by Content-Length.

    ``feed`` returns every complete message found so far (header block plus exactly
    Content-Length body bytes) and keeps the rest buffered. A bare double CRLF between
    messages is returned as the item :data:`KEEPALIVE_PING`; lone CRLFs are skipped.

    Framing errors (missing, negative, non-numeric or conflicting Content-Length; headers or
    a message larger than ``max_size``) raise :class:`SipParseError`: the stream cannot be
    resynchronised, so the transport closes the connection. The framer is unusable afterwards
    (every later call raises the same error). Messages completed in the same call before the
    bad one are returned first, and the error is raised by the next call; ``error`` shows it
    at once.
    """

    __slots__ = ("_buf", "_error", "_need", "_scan", "max_size")

    def __init__(self, max_size: int = 65535) -> None:
        self.max_size = max_size
        self._buf = bytearray()
        self._error: SipParseError | None = None
        # Where to resume looking for the end of the headers, and the total size of the
        # message being received once its headers are known: trickled input (one byte per
        # read) costs linear, not quadratic, time.
        self._scan = 0
        self._need = -1

    @property
    def buffered(self) -> int:
        """How many bytes are waiting for the rest of their message."""
        return len(self._buf)

    @property
    def error(self) -> SipParseError | None:
        """The framing error that broke the stream, if any: the transport should close."""
        return self._error

    def feed(self, data: bytes) -> list[bytes]:
        """Add received bytes; return the messages (and keep-alive pings) now complete.

        :raises SipParseError: when the framing is lost. Messages framed earlier in the same
            call are still returned, and the error is raised by the next call instead.
        """
        if self._error is not None:
            raise self._error
        buf = self._buf
        buf += data
        out: list[bytes] = []
        try:
            while buf:
                need = self._need
                if need < 0:
                    # Skip CRLFs between messages; a double CRLF is a keep-alive ping.
                    if buf[0] in (13, 10):
                        if buf[:4] == KEEPALIVE_PING:
                            out.append(KEEPALIVE_PING)
                            del buf[:4]
                            continue
                        if len(buf) < 4 and KEEPALIVE_PING.startswith(bytes(buf)):
                            break  # maybe the start of a ping: wait for more
                        del buf[: 2 if buf[:2] == b"\r\n" else 1]
                        continue
                    m = _HEADER_END_RE.search(buf, self._scan)
                    if m is None:
                        if len(buf) > self.max_size:
                            raise SipParseError("Message headers too large", 513)
                        self._scan = max(0, len(buf) - 3)
                        break
                    end, hend = m.start(), m.end()
                    if hend > self.max_size:
                        raise SipParseError("Message headers too large", 513)
                    need = hend + self._content_length(bytes(buf[:end]))
                    if need > self.max_size:
                        raise SipParseError("Message too large", 513)
                    self._need = need
                if len(buf) < need:
                    break
                out.append(bytes(buf[:need]))
                del buf[:need]
                self._need = -1
                self._scan = 0
        except SipParseError as e:
            self._error = e
            buf.clear()
            if out:
                # Deliver the messages framed before the bad one; the error is raised by the
                # next call (and is visible as ``error`` at once).
                return out
            raise
        return out

    @staticmethod
    def _content_length(head: bytes) -> int:
        found = _CL_RE.findall(head)
        if not found:
            raise SipParseError("Missing Content-Length on stream transport")
        values = {v.strip(b" \t") for v in found}
        if len(values) > 1:
            raise SipParseError("Conflicting Content-Length headers")
        value = values.pop()
        if not value.isdigit():
            raise SipParseError("Bad Content-Length: not a number")
        return parse_uint(value.decode("ascii"), MAX_CONTENT_LENGTH, "Content-Length")
