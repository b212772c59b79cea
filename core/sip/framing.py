"""Message framing for stream transports (TCP, TLS): RFC 3261 §18.3, RFC 5626 §4.4.1."""

from __future__ import annotations

import re

from .errors import SipParseError
from .headers import MAX_CONTENT_LENGTH, parse_uint

__all__ = ["StreamFramer", "KEEPALIVE_PING", "KEEPALIVE_PONG"]

#: RFC 5626 keep-alive: a client sends a double CRLF, the server answers a single CRLF.
KEEPALIVE_PING = b"\r\n\r\n"
KEEPALIVE_PONG = b"\r\n"

_HEADER_END_RE = re.compile(rb"\r?\n\r?\n")
# Content-Length lines (long or compact form) at the start of a header line.
_CL_RE = re.compile(rb"\n[ \t]*(?:[Cc][Oo][Nn][Tt][Ee][Nn][Tt]-[Ll][Ee][Nn][Gg][Tt][Hh]|[lL])"
                    rb"[ \t]*:[ \t]*([^\r\n]*)")


class StreamFramer:
    """Cut a byte stream into SIP messages by Content-Length.

    ``feed`` returns every complete message found so far (header block plus exactly
    Content-Length body bytes) and keeps the rest buffered. A bare double CRLF between
    messages is returned as the item :data:`KEEPALIVE_PING`; lone CRLFs are skipped.

    Framing errors (missing, negative, non-numeric or conflicting Content-Length; headers or
    a message larger than ``max_size``) raise :class:`SipParseError`: the stream cannot be
    resynchronised, so the transport closes the connection. The framer is unusable afterwards.
    """

    __slots__ = ("max_size", "_buf", "_failed")

    def __init__(self, max_size: int = 65535) -> None:
        self.max_size = max_size
        self._buf = bytearray()
        self._failed = False

    @property
    def buffered(self) -> int:
        """How many bytes are waiting for the rest of their message."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[bytes]:
        if self._failed:
            raise SipParseError("Stream framing already failed")
        buf = self._buf
        buf += data
        out: list[bytes] = []
        try:
            while buf:
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
                end = buf.find(b"\r\n\r\n")
                if end >= 0:
                    hend = end + 4
                    if b"\n\n" in buf[:hend]:
                        m = _HEADER_END_RE.search(buf)
                        assert m is not None
                        end, hend = m.start(), m.end()
                else:
                    m = _HEADER_END_RE.search(buf)
                    if m is None:
                        if len(buf) > self.max_size:
                            raise SipParseError("Message headers too large", 513)
                        break
                    end, hend = m.start(), m.end()
                if hend > self.max_size:
                    raise SipParseError("Message headers too large", 513)
                cl = self._content_length(bytes(buf[:end]))
                total = hend + cl
                if total > self.max_size:
                    raise SipParseError("Message too large", 513)
                if len(buf) < total:
                    break
                out.append(bytes(buf[:total]))
                del buf[:total]
        except SipParseError:
            self._failed = True
            buf.clear()
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
