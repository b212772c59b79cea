"""The single exception type raised by the SIP message layer."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from .message import SipMessage

__all__ = ["SipParseError"]


class SipParseError(ValueError):
    """A SIP message, header value or URI is malformed.

    :param reason: a short ASCII phrase naming the defect. It is used verbatim as the reason
        phrase of the error response, so it never contains CR, LF or non-ASCII characters
        (anything else is replaced).
    :param status: the response status suggested for a request: 400, 505 (bad SIP version),
        501 (unknown method whose CSeq does not match), 513 (message too large).
    :param message: the partially parsed message when the start line and the header split
        succeeded, so that a caller can still build an error response from the raw Via, From,
        To, Call-ID and CSeq values it carries; otherwise None.
    """

    def __init__(self, reason: str, status: int = 400, message: SipMessage | None = None) -> None:
        if not reason.isascii() or not reason.isprintable():
            reason = "".join(c if " " <= c <= "~" else "?" for c in reason)
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.message = message

    def __repr__(self) -> str:
        return f"SipParseError({self.reason!r}, status={self.status})"
