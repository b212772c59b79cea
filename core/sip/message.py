"""SIP message model, parser and serializer (RFC 3261 §7, §8.2.6, §18.3, §20).

Parsing is lazy: ``parse_message`` finds the end of the header block, splits the start line
and the header lines once, and parses only the values that every layer above needs anyway
(Request-URI, Via, From, To, Call-ID, CSeq, Max-Forwards, Content-Length). Everything else is
parsed on first access and cached. Serialising reuses the original text of every header line
that did not change, and returns the received bytes untouched when nothing changed at all.

Strings in the model are *wire strings*: the header block is decoded once with latin-1, so each
character is one octet and re-encoding gives the exact bytes back. UTF-8 text therefore shows
up as its octets (see :func:`sipline.sip.headers.text_from_wire`). The reason phrase of a
response is the exception: it is decoded as UTF-8 when it is valid UTF-8.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from .errors import SipParseError
from .headers import (
    _NA_FAST_RE,
    _VIA_FAST_RE,
    _NAME_CACHE,
    _name_addr_at,
    _name_addr_fast,
    _tuple_new,
    _via_one,
    PRETTY_NAMES,
    RFC_METHODS,
    CSeq,
    NameAddr,
    Via,
    canonical_name,
    is_token,
    parse_content_length,
    parse_cseq,
    parse_expires,
    parse_max_forwards,
    parse_name_addr,
    parse_name_addr_list,
    parse_token_list,
    parse_via,
    split_comma,
)
from .uri import _SIP_URI_RE, AbsoluteURI, SipURI, TelURI, parse_uri, uri_from_match

__all__ = [
    "SipMessage",
    "Request",
    "Response",
    "parse_message",
    "make_response",
    "reason_phrase",
    "REASON_PHRASES",
    "RFC_METHODS",
    "MAX_HEADERS",
]

MAX_HEADERS = 256

REASON_PHRASES: dict[int, str] = {
    100: "Trying",
    180: "Ringing",
    181: "Call Is Being Forwarded",
    182: "Queued",
    183: "Session Progress",
    199: "Early Dialog Terminated",
    200: "OK",
    202: "Accepted",
    204: "No Notification",
    300: "Multiple Choices",
    301: "Moved Permanently",
    302: "Moved Temporarily",
    305: "Use Proxy",
    380: "Alternative Service",
    400: "Bad Request",
    401: "Unauthorized",
    402: "Payment Required",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    407: "Proxy Authentication Required",
    408: "Request Timeout",
    410: "Gone",
    412: "Conditional Request Failed",
    413: "Request Entity Too Large",
    414: "Request-URI Too Long",
    415: "Unsupported Media Type",
    416: "Unsupported URI Scheme",
    417: "Unknown Resource-Priority",
    420: "Bad Extension",
    421: "Extension Required",
    422: "Session Interval Too Small",
    423: "Interval Too Brief",
    424: "Bad Location Information",
    428: "Use Identity Header",
    429: "Provide Referrer Identity",
    430: "Flow Failed",
    433: "Anonymity Disallowed",
    436: "Bad Identity-Info",
    437: "Unsupported Certificate",
    438: "Invalid Identity Header",
    439: "First Hop Lacks Outbound Support",
    440: "Max-Breadth Exceeded",
    469: "Bad Info Package",
    470: "Consent Needed",
    480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist",
    482: "Loop Detected",
    483: "Too Many Hops",
    484: "Address Incomplete",
    485: "Ambiguous",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    489: "Bad Event",
    491: "Request Pending",
    493: "Undecipherable",
    494: "Security Agreement Required",
    500: "Server Internal Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Server Time-out",
    505: "Version Not Supported",
    513: "Message Too Large",
    555: "Push Notification Service Not Supported",
    580: "Precondition Failure",
    600: "Busy Everywhere",
    603: "Decline",
    604: "Does Not Exist Anywhere",
    606: "Not Acceptable",
    607: "Unwanted",
    608: "Rejected",
}

_CLASS_PHRASES = {1: "Trying", 2: "OK", 3: "Redirection", 4: "Client Error", 5: "Server Error",
                  6: "Global Failure"}


def reason_phrase(status: int) -> str:
    """The default reason phrase for ``status`` (a class-generic one for unknown codes)."""
    phrase = REASON_PHRASES.get(status)
    if phrase is None:
        phrase = _CLASS_PHRASES.get(status // 100, "Unknown")
    return phrase


_VERSION_RE = re.compile(r"[Ss][Ii][Pp]/[0-9]+\.[0-9]+")
_TOKEN_METHOD_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")
_BLANK_LINE_RE = re.compile(rb"\r?\n\r?\n")
_LINE_SPLIT_RE = re.compile(r"\r?\n")
_FOLD_RE = re.compile(r"[ \t]*\r?\n[ \t]+")
_EMPTY: dict = {}


def _wire(value: str) -> str:
    """Make an API-supplied string a wire string; refuse CR/LF (header injection)."""
    if "\r" in value or "\n" in value:
        raise ValueError("header values must not contain CR or LF")
    if not value.isascii():
        try:
            value.encode("latin-1")
        except UnicodeEncodeError:
            value = value.encode("utf-8").decode("latin-1")
    return value


def _check_name(name: str) -> str:
    if not is_token(name):
        raise ValueError(f"invalid header name {name!r}")
    return name


def _key(name: str) -> str:
    key = _NAME_CACHE.get(name)
    if key is None:
        key = canonical_name(name)
    return key


class SipMessage:
    """Common part of :class:`Request` and :class:`Response`.

    Header names given to the accessors are case-insensitive and may be compact forms.
    Parsed values (``via``, ``from_``...) are cached; the caches of a header are dropped when
    that header is changed through this API. Objects returned by the parsed accessors must not
    be mutated in place: change them on a copy and write them back (``set_top_via``,
    ``set_header``, ``Request.uri = ...``).
    """

    __slots__ = (
        "_data", "_bstart", "_bend", "_keys", "_values", "_lines", "_pc", "_dirty", "_body",
        "_start", "version",
    )

    _data: bytes
    _bstart: int
    _bend: int
    _keys: list[str]
    _values: list[str]
    _lines: list[str]
    _pc: dict[str, object]
    _dirty: bool
    _body: bytes | None
    _start: str | None
    version: str

    def _init_empty(self) -> None:
        self._data = b""
        self._bstart = 0
        self._bend = 0
        self._keys = []
        self._values = []
        self._lines = []
        self._pc = {}
        self._dirty = True
        self._body = b""
        self._start = None
        self.version = "SIP/2.0"

    # -- raw header access ---------------------------------------------------------------

    def get(self, name: str) -> str | None:
        """The value of the first header line named ``name`` (unfolded, stripped), or None."""
        key = _key(name)
        keys = self._keys
        if key in keys:
            return self._values[keys.index(key)].strip(" \t")
        return None

    def get_all(self, name: str) -> list[str]:
        """One value per header line named ``name``, in order."""
        key = _key(name)
        return [v.strip(" \t") for k, v in zip(self._keys, self._values) if k == key]

    def get_list(self, name: str) -> list[str]:
        """The comma-separated elements of every ``name`` header line, in order."""
        out: list[str] = []
        for v in self.get_all(name):
            out.extend(split_comma(v, allow_empty=True, what=name))
        return out

    def has(self, name: str) -> bool:
        return _key(name) in self._keys

    def count(self, name: str) -> int:
        return self._keys.count(_key(name))

    def iter_headers(self) -> Iterator[tuple[str, str]]:
        """``(name as received, value)`` for every header line, in order."""
        for line, value in zip(self._lines, self._values):
            yield line.partition(":")[0].rstrip(" \t"), value.strip(" \t")

    def _changed(self, key: str) -> None:
        self._pc.pop(key, None)
        self._dirty = True

    def add_header(self, name: str, value: str, *, first: bool = False) -> None:
        """Append a header line (or put it at the top of the header block when ``first``)."""
        key = _key(_check_name(name))
        value = _wire(value)
        line = f"{name}: {value}"
        if first:
            self._keys.insert(0, key)
            self._values.insert(0, value)
            self._lines.insert(0, line)
        else:
            self._keys.append(key)
            self._values.append(value)
            self._lines.append(line)
        self._changed(key)

    def set_header(self, name: str, value: str) -> None:
        """Replace the first ``name`` line in place and drop the others; append if absent."""
        key = _key(_check_name(name))
        value = _wire(value)
        keys = self._keys
        if key in keys:
            i = keys.index(key)
            self._values[i] = value
            self._lines[i] = f"{name}: {value}"
            j = len(keys) - 1
            while j > i:
                if keys[j] == key:
                    del keys[j], self._values[j], self._lines[j]
                j -= 1
        else:
            keys.append(key)
            self._values.append(value)
            self._lines.append(f"{name}: {value}")
        self._changed(key)

    def remove_header(self, name: str) -> int:
        """Remove every ``name`` line; return how many were removed."""
        key = _key(name)
        keys = self._keys
        n = keys.count(key)
        if n:
            keep = [i for i, k in enumerate(keys) if k != key]
            self._keys = [keys[i] for i in keep]
            self._values = [self._values[i] for i in keep]
            self._lines = [self._lines[i] for i in keep]
            self._changed(key)
        return n

    # -- parsed, cached accessors --------------------------------------------------------

    def _required(self, key: str, pretty: str) -> str:
        keys = self._keys
        if key not in keys:
            raise SipParseError(f"Missing {pretty} header")
        return self._values[keys.index(key)].strip(" \t")

    @property
    def via(self) -> list[Via]:
        vias = self._pc.get("via")
        if vias is None:
            vias = []
            for k, v in zip(self._keys, self._values):
                if k == "via":
                    vias.extend(parse_via(v))
            self._pc["via"] = vias
        return vias  # type: ignore[return-value]

    @property
    def top_via(self) -> Via | None:
        vias = self._pc.get("via")
        if vias is None:
            vias = self.via
        return vias[0] if vias else None

    @property
    def from_(self) -> NameAddr:
        a = self._pc.get("from")
        if a is None:
            a = self._pc["from"] = parse_name_addr(self._required("from", "From"), what="From")
        return a  # type: ignore[return-value]

    @property
    def to(self) -> NameAddr:
        a = self._pc.get("to")
        if a is None:
            a = self._pc["to"] = parse_name_addr(self._required("to", "To"), what="To")
        return a  # type: ignore[return-value]

    @property
    def call_id(self) -> str:
        c = self._pc.get("call-id")
        if c is None:
            c = self._required("call-id", "Call-ID")
            if not c or " " in c or "\t" in c:
                raise SipParseError("Malformed Call-ID header")
            self._pc["call-id"] = c
        return c  # type: ignore[return-value]

    @property
    def cseq(self) -> CSeq:
        c = self._pc.get("cseq")
        if c is None:
            c = self._pc["cseq"] = parse_cseq(self._required("cseq", "CSeq"))
        return c  # type: ignore[return-value]

    def _optional_int(self, key: str, parser) -> int | None:  # type: ignore[no-untyped-def]
        pc = self._pc
        if key in pc:
            return pc[key]  # type: ignore[return-value]
        v = self.get(key)
        n = None if v is None else parser(v)
        pc[key] = n
        return n

    @property
    def max_forwards(self) -> int | None:
        return self._optional_int("max-forwards", parse_max_forwards)

    @property
    def content_length(self) -> int | None:
        return self._optional_int("content-length", parse_content_length)

    @property
    def expires(self) -> int | None:
        return self._optional_int("expires", parse_expires)

    def _contacts(self) -> tuple[list[NameAddr], bool]:
        c = self._pc.get("contact")
        if c is None:
            contacts: list[NameAddr] = []
            star = False
            for k, v in zip(self._keys, self._values):
                if k == "contact":
                    v = v.strip(" \t")
                    if v == "*":
                        star = True
                    else:
                        contacts.extend(parse_name_addr_list(v, what="Contact"))
            if star and (contacts or self._keys.count("contact") > 1):
                raise SipParseError("Contact * mixed with other contacts")
            c = self._pc["contact"] = (contacts, star)
        return c  # type: ignore[return-value]

    @property
    def contacts(self) -> list[NameAddr]:
        """Every Contact value (empty for ``Contact: *``, see :attr:`contact_star`)."""
        return self._contacts()[0]

    @property
    def contact_star(self) -> bool:
        return self._contacts()[1]

    def _addr_list(self, key: str, what: str) -> list[NameAddr]:
        r = self._pc.get(key)
        if r is None:
            r = []
            for k, v in zip(self._keys, self._values):
                if k == key:
                    r.extend(parse_name_addr_list(v, what=what))
            self._pc[key] = r
        return r  # type: ignore[return-value]

    @property
    def routes(self) -> list[NameAddr]:
        return self._addr_list("route", "Route")

    @property
    def record_routes(self) -> list[NameAddr]:
        return self._addr_list("record-route", "Record-Route")

    def _tokens(self, key: str, what: str, lower: bool) -> list[str]:
        r = self._pc.get(key)
        if r is None:
            r = []
            for k, v in zip(self._keys, self._values):
                if k == key:
                    r.extend(parse_token_list(v, lower=lower, what=what))
            self._pc[key] = r
        return r  # type: ignore[return-value]

    @property
    def require(self) -> list[str]:
        return self._tokens("require", "Require", True)

    @property
    def proxy_require(self) -> list[str]:
        return self._tokens("proxy-require", "Proxy-Require", True)

    @property
    def supported(self) -> list[str]:
        return self._tokens("supported", "Supported", True)

    @property
    def allow(self) -> list[str]:
        """Allowed methods, case kept (method names are case-sensitive)."""
        return self._tokens("allow", "Allow", False)

    # -- Via manipulation for proxies ----------------------------------------------------

    def push_via(self, via: Via | str) -> None:
        """Add a new top Via (a line of its own, above the existing Via lines)."""
        value = _wire(str(via))
        keys = self._keys
        i = keys.index("via") if "via" in keys else 0
        keys.insert(i, "via")
        self._values.insert(i, value)
        self._lines.insert(i, "Via: " + value)
        self._dirty = True
        pc = self._pc
        if isinstance(via, Via) and "via" in pc:
            pc["via"] = [via] + pc["via"]  # type: ignore[operator]
        else:
            pc.pop("via", None)

    def _top_via_line(self) -> int:
        keys = self._keys
        if "via" not in keys:
            raise SipParseError("Missing Via header")
        return keys.index("via")

    def pop_via(self) -> Via:
        """Remove and return the top Via value.

        When the top Via line holds several comma-separated values, only the first one is
        removed and the line is rewritten with the rest (their text kept as received).
        """
        vias = self.via
        i = self._top_via_line()
        value = self._values[i]
        if "," in value:
            rest = split_comma(value, what="Via")[1:]
        else:
            rest = []
        if rest:
            name = self._lines[i].partition(":")[0].rstrip(" \t")
            joined = ", ".join(rest)
            self._values[i] = joined
            self._lines[i] = f"{name}: {joined}"
        else:
            del self._keys[i], self._values[i], self._lines[i]
        self._dirty = True
        self._pc["via"] = vias[1:]
        return vias[0]

    def set_top_via(self, via: Via) -> None:
        """Replace the top Via value only (e.g. after adding ``received``/``rport``)."""
        vias = self.via
        i = self._top_via_line()
        value = self._values[i]
        text = _wire(str(via))
        if "," in value:
            parts = split_comma(value, what="Via")
            parts[0] = text
            text = ", ".join(parts)
        name = self._lines[i].partition(":")[0].rstrip(" \t")
        self._values[i] = text
        self._lines[i] = f"{name}: {text}"
        self._dirty = True
        self._pc["via"] = [via] + vias[1:]

    # -- body and serialisation ----------------------------------------------------------

    @property
    def body(self) -> bytes:
        b = self._body
        if b is None:
            b = self._body = self._data[self._bstart : self._bend]
        return b

    @body.setter
    def body(self, value: bytes) -> None:
        value = bytes(value)
        self._body = value
        self.set_header(self._cl_name(), str(len(value)))

    def _cl_name(self) -> str:
        keys = self._keys
        if "content-length" in keys:
            return self._lines[keys.index("content-length")].partition(":")[0].rstrip(" \t")
        return "Content-Length"

    def _start_line(self) -> str:  # pragma: no cover - overridden
        raise NotImplementedError

    def to_bytes(self) -> bytes:
        """The message on the wire.

        Unchanged: the received bytes (without anything after Content-Length). Changed: the
        start line and header lines are re-joined, reusing the original text of every line
        that did not change; Content-Length is added when absent.
        """
        if not self._dirty:
            data = self._data
            if self._bend == len(data):
                return data
            return data[: self._bend]
        keys = self._keys
        body = self._body
        if body is None:
            body = self._data[self._bstart : self._bend]
        if "content-length" not in keys:
            keys.append("content-length")
            cl = str(len(body))
            self._values.append(cl)
            self._lines.append("Content-Length: " + cl)
        start = self._start
        if start is None:
            start = self._start_line()
        return (start + "\r\n" + "\r\n".join(self._lines) + "\r\n\r\n").encode("latin-1") + body

    __bytes__ = to_bytes

    def _copy_into(self, m: SipMessage) -> None:
        m._data = self._data
        m._bstart = self._bstart
        m._bend = self._bend
        m._keys = self._keys[:]
        m._values = self._values[:]
        m._lines = self._lines[:]
        pc = self._pc
        m._pc = {k: pc[k] for k in ("cseq", "call-id", "max-forwards", "content-length") if k in pc}
        m._dirty = self._dirty
        m._body = self._body
        m._start = self._start
        m.version = self.version

    @property
    def is_request(self) -> bool:
        return isinstance(self, Request)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._start_line()!r}>"


class Request(SipMessage):
    """A SIP request. ``uri`` is parsed from ``raw_uri`` lazily and cached."""

    __slots__ = ("_method", "_ruri", "_uri")

    _method: str
    _ruri: str
    _uri: SipURI | TelURI | AbsoluteURI | None

    def __init__(
        self,
        method: str,
        uri: SipURI | TelURI | AbsoluteURI | str,
        headers: list[tuple[str, str]] | None = None,
        body: bytes = b"",
    ) -> None:
        if not is_token(method):
            raise ValueError(f"invalid method {method!r}")
        self._init_empty()
        self._method = method
        self.uri = uri  # type: ignore[assignment]
        for name, value in headers or ():
            self.add_header(name, value)
        if body or headers is not None:
            self.body = body

    @property
    def method(self) -> str:
        return self._method

    @method.setter
    def method(self, value: str) -> None:
        if not is_token(value):
            raise ValueError(f"invalid method {value!r}")
        self._method = value
        self._start = None
        self._dirty = True

    @property
    def raw_uri(self) -> str:
        return self._ruri

    @property
    def uri(self) -> SipURI | TelURI | AbsoluteURI:
        u = self._uri
        if u is None:
            u = self._uri = parse_uri(self._ruri)
        elif u.__class__ is _Match:
            u = self._uri = uri_from_match(u)  # type: ignore[arg-type]
        return u

    @uri.setter
    def uri(self, value: SipURI | TelURI | AbsoluteURI | str) -> None:
        if isinstance(value, str):
            text = _wire(value)
            value = parse_uri(text)
        else:
            text = _wire(str(value))
        if " " in text or "\t" in text:
            raise ValueError("Request-URI must not contain whitespace")
        self._ruri = text
        self._uri = value
        self._start = None
        self._dirty = True

    def _start_line(self) -> str:
        return f"{self._method} {self._ruri} {self.version}"

    def copy(self) -> Request:
        m = _new(Request)
        self._copy_into(m)
        m._method = self._method
        m._ruri = self._ruri
        m._uri = None if self._uri is None else self.uri.copy()
        return m


class Response(SipMessage):
    """A SIP response."""

    __slots__ = ("_status", "_reason")

    _status: int
    _reason: str

    def __init__(
        self,
        status: int,
        reason: str | None = None,
        headers: list[tuple[str, str]] | None = None,
        body: bytes = b"",
    ) -> None:
        self._init_empty()
        self.status = status
        self.reason = reason_phrase(status) if reason is None else reason
        for name, value in headers or ():
            self.add_header(name, value)
        if body or headers is not None:
            self.body = body

    @property
    def status(self) -> int:
        return self._status

    @status.setter
    def status(self, value: int) -> None:
        if not isinstance(value, int) or not 100 <= value <= 699:
            raise ValueError(f"invalid status code {value!r}")
        self._status = value
        self._start = None
        self._dirty = True

    @property
    def reason(self) -> str:
        return self._reason

    @reason.setter
    def reason(self, value: str) -> None:
        if "\r" in value or "\n" in value:
            raise ValueError("reason phrase must not contain CR or LF")
        self._reason = value
        self._start = None
        self._dirty = True

    def _start_line(self) -> str:
        reason = self._reason
        if not reason.isascii():
            reason = reason.encode("utf-8").decode("latin-1")
        return f"{self.version} {self._status} {reason}"

    def copy(self) -> Response:
        m = _new(Response)
        self._copy_into(m)
        m._status = self._status
        m._reason = self._reason
        return m


_new = object.__new__


# ---------------------------------------------------------------------------------------------
# Parsing


def _split_headers_careful(hlines: list[str]) -> tuple[list[str], list[str], list[str]]:
    """Header split for the unusual cases: folded lines, odd names, missing colons.

    Returns (keys, values, raw lines); a folded header's raw text keeps its CRLFs and its
    value is unfolded.
    """
    keys: list[str] = []
    values: list[str] = []
    lines: list[str] = []
    for line in hlines:
        if line[:1] in (" ", "\t"):
            if not lines:
                raise SipParseError("Continuation line without a header")
            lines[-1] = lines[-1] + "\r\n" + line
            continue
        lines.append(line)
    for raw in lines:
        name, colon, value = raw.partition(":")
        if not colon:
            raise SipParseError("Malformed header line: no colon")
        key = _NAME_CACHE.get(name)
        if key is None:
            try:
                key = canonical_name(name)
            except SipParseError:
                raise SipParseError("Malformed header name") from None
        if "\n" in value:
            value = _FOLD_RE.sub(" ", value)
        keys.append(key)
        values.append(value)
    return keys, values, lines


def _start_error(start: str) -> tuple[str, int]:
    """Reason and status for a request line that is not ``Method SP URI SP SIP/2.0``."""
    parts = start.split(" ")
    if start.endswith(" ") or start.endswith("\t"):
        return "Trailing whitespace in request line", 400
    if "" in parts or "\t" in start:
        return "Extra whitespace in request line", 400
    if len(parts) > 3:
        return "Whitespace in Request-URI", 400
    if len(parts) < 3:
        return "Malformed request line", 400
    return "Malformed request line", 400


_Match = type(re.compile("").match(""))


def parse_message(
    data: bytes, *, stream: bool = False, max_size: int = 65535
) -> Request | Response:
    """Parse one SIP message.

    :param data: the datagram (``stream=False``) or the message framed by a
        :class:`~sipline.sip.framing.StreamFramer` (``stream=True``).
    :param stream: over a stream transport Content-Length is mandatory and must match exactly.
        Over UDP a missing Content-Length means "the rest of the datagram" and bytes beyond
        Content-Length are ignored (RFC 3261 §18.3).
    :param max_size: larger input raises with status 513.
    :raises SipParseError: for any malformed input (and only that exception). Once the start
        line and the header lines are split, the error carries the partial message.
    """
    if data.__class__ is not bytes:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise SipParseError("Message must be bytes")
        data = bytes(data)
    n = len(data)
    if n > max_size:
        raise SipParseError("Message too large", 513)
    # The tidy case: CRLF line ends only, no leading CRLFs, a blank line after the headers.
    # Anything else (bare LFs, stray CRs, no blank line) takes the lenient split.
    end = data.find(b"\r\n\r\n")
    unterminated = False
    if end > 0 and data[0] > 32:
        head = data[:end].decode("latin-1")
        lines = head.split("\r\n")
        if head.count("\n") != len(lines) - 1:
            lines, bstart, unterminated = _split_lenient(data)
        else:
            bstart = end + 4
    else:
        lines, bstart, unterminated = _split_lenient(data)
    start = lines[0]
    hlines = lines
    del hlines[0]
    if len(hlines) > MAX_HEADERS:
        raise SipParseError("Too many headers")

    # Header lines: one pass for the tidy case, the careful split at the first oddity
    # (folding, whitespace before the colon, a name never seen before, no colon).
    keys: list[str] = []
    values: list[str] = []
    kappend = keys.append
    vappend = values.append
    cache_get = _NAME_CACHE.get
    key: str | None = ""
    for line in hlines:
        name, colon, value = line.partition(":")
        key = cache_get(name)
        if key is None or not colon:
            break
        kappend(key)
        vappend(value)
    header_error: SipParseError | None = None
    if key is None or len(keys) != len(hlines):
        try:
            keys, values, hlines = _split_headers_careful(hlines)
        except SipParseError as e:
            header_error = e
            keys, values, hlines = [], [], []

    # Start line.
    msg: Request | Response
    error: tuple[str, int] | None = None
    if start[:4] != "SIP/":
        parts = start.split(" ")
        if len(parts) == 3 and parts[0] and parts[1] and parts[2]:
            method, ruri, version = parts
        else:
            # Keep a partial request when the line is recognisably one, so that the caller
            # can still answer 400.
            reason_status = _start_error(start)
            words = start.split()
            if len(words) >= 3 and _VERSION_RE.fullmatch(words[-1]) is not None:
                method, ruri, version = words[0], " ".join(words[1:-1]), words[-1]
                error = reason_status
            else:
                raise SipParseError(*reason_status)
        if method not in RFC_METHODS and _TOKEN_METHOD_RE.fullmatch(method) is None:
            raise SipParseError("Malformed method in request line")
        q = _new(Request)
        q._method = method
        q._ruri = ruri
        q._uri = None
        msg = q
        if version != "SIP/2.0" and error is None:
            if _VERSION_RE.fullmatch(version) is None:
                error = ("Malformed SIP version", 400)
            elif version.upper() != "SIP/2.0":
                error = ("SIP version not supported", 505)
    else:
        msg = _parse_status_line(start)
        version = msg.version
    msg.version = version
    msg._data = data
    msg._bstart = bstart
    msg._keys = keys
    msg._values = values
    msg._lines = hlines
    msg._pc = pc = {}
    msg._dirty = False
    msg._body = None
    msg._start = start
    msg._bend = n
    if header_error is not None:
        header_error.message = msg
        raise header_error
    if unterminated:
        raise SipParseError("Missing blank line after headers", 400, msg)
    if error is not None:
        raise SipParseError(error[0], error[1], msg)

    # Framing by Content-Length.
    if keys and keys[-1] == "content-length" or "content-length" in keys:
        v = values[keys.index("content-length")].strip(" \t")
        if len(v) < 8 and v.isdigit() and v.isascii():
            cl = int(v)
        else:
            try:
                cl = parse_content_length(v)
            except SipParseError as e:
                e.message = msg
                raise
        if cl > n - bstart or (stream and cl != n - bstart):
            raise SipParseError("Content-Length mismatch", 400, msg)
        if keys.count("content-length") > 1:
            raise SipParseError("Duplicate Content-Length header", 400, msg)
        msg._bend = bstart + cl
        pc["content-length"] = cl
    elif stream:
        raise SipParseError("Missing Content-Length on stream transport", 400, msg)

    try:
        if msg.__class__ is Request:
            _validate_request(msg, keys, values, pc)  # type: ignore[arg-type]
        else:
            _validate_response(keys, values, pc)
    except SipParseError as e:
        e.message = msg
        raise
    return msg


def _parse_status_line(start: str) -> Response:
    parts = start.split(" ", 2)
    version = parts[0]
    code = parts[1] if len(parts) > 1 else ""
    reason = parts[2] if len(parts) > 2 else ""
    if len(code) != 3 or not code.isdigit() or not code.isascii() or code[0] not in "123456":
        raise SipParseError("Bad status code")
    if version != "SIP/2.0":
        if _VERSION_RE.fullmatch(version) is None:
            raise SipParseError("Malformed SIP version")
        if version.upper() != "SIP/2.0":
            raise SipParseError("SIP version not supported", 505)
    r = _new(Response)
    r._status = int(code)
    if not reason.isascii():
        try:
            reason = reason.encode("latin-1").decode("utf-8")
        except UnicodeDecodeError:
            pass
    r._reason = reason
    r.version = version
    return r


def _split_lenient(data: bytes) -> tuple[list[str], int, bool]:
    """Find the header block when the tidy CRLF form fails: bare LF line ends, leading CRLFs,
    stray CRs, or no blank line at all. Returns (lines, body start, unterminated)."""
    pos = 0
    n = len(data)
    while pos < n and data[pos] in (13, 10):
        pos += 1
    if pos >= n:
        raise SipParseError("Empty message")
    m = _BLANK_LINE_RE.search(data, pos)
    if m is None:
        head = data[pos:].decode("latin-1")
        bstart = n
        unterminated = True
        if head.endswith("\n"):
            head = head[:-2] if head.endswith("\r\n") else head[:-1]
    else:
        head = data[pos : m.start()].decode("latin-1")
        bstart = m.end()
        unterminated = False
    lines = _LINE_SPLIT_RE.split(head)
    if "\r" in head:
        for line in lines:
            if "\r" in line:
                raise SipParseError("Bare CR in message header")
    return lines, bstart, unterminated


def _first(keys: list[str], key: str, pretty: str) -> int:
    if key not in keys:
        raise SipParseError(f"Missing {pretty} header")
    i = keys.index(key)
    if keys.count(key) > 1:
        raise SipParseError(f"Duplicate {pretty} header")
    return i


_REQUIRED = (("via", "Via"), ("from", "From"), ("to", "To"), ("call-id", "Call-ID"),
             ("cseq", "CSeq"))
_SINGLE = (("from", "From"), ("to", "To"), ("call-id", "Call-ID"), ("cseq", "CSeq"),
           ("max-forwards", "Max-Forwards"))


def _missing_or_duplicate(keys: list[str], required: tuple[tuple[str, str], ...]) -> None:
    for key, pretty in required:
        if key not in keys:
            raise SipParseError(f"Missing {pretty} header")
    for key, pretty in _SINGLE:
        if keys.count(key) > 1:
            raise SipParseError(f"Duplicate {pretty} header")


def _parse_vias(keys: list[str], values: list[str], first: int) -> list[Via]:
    if keys.count("via") == 1:
        v = values[first].strip(" \t")
        if "," in v or not v:
            return parse_via(v)
        return [_via_one(v)]
    vias: list[Via] = []
    for k, v in zip(keys, values):
        if k == "via":
            vias.extend(parse_via(v))
    return vias


def _name_addr(value: str, what: str) -> NameAddr:
    value = value.strip(" \t")
    a = _name_addr_fast(value, what)
    if a is None:
        a = _name_addr_at(value, 0, what, True)[0]
    return a


def _validate_request(
    msg: Request, keys: list[str], values: list[str], pc: dict[str, object]
) -> None:
    """The checks every layer above relies on, with the tidy common forms inlined."""
    ruri = msg._ruri
    m = _SIP_URI_RE.fullmatch(ruri)
    if m is not None and "[" not in ruri:
        if m.lastindex == 7:
            raise SipParseError("Request-URI must not carry headers")
        msg._uri = m  # type: ignore[assignment]  # turned into a SipURI on first access
    else:
        try:
            uri = parse_uri(ruri)
        except SipParseError as e:
            raise SipParseError(f"Bad Request-URI: {e.reason}") from None
        if uri.__class__ is SipURI and uri.headers is not None:  # type: ignore[union-attr]
            raise SipParseError("Request-URI must not carry headers")
        msg._uri = uri
    try:
        i_via = keys.index("via")
        i_from = keys.index("from")
        i_to = keys.index("to")
        i_cid = keys.index("call-id")
        i_cseq = keys.index("cseq")
    except ValueError:
        _missing_or_duplicate(keys, _REQUIRED)
        raise  # pragma: no cover - the line above always raises
    count = keys.count
    if count("from") != 1 or count("to") != 1 or count("call-id") != 1 or count("cseq") != 1:
        _missing_or_duplicate(keys, _REQUIRED)

    # Via
    v = values[i_via].strip(" \t")
    if count("via") == 1 and "," not in v and (m := _VIA_FAST_RE.fullmatch(v)) is not None \
            and "[" not in v:
        transport, host, port, praw = m.groups()
        via = _new(Via)
        via.protocol = "SIP/2.0"
        via.transport = transport
        via.host = host
        via.port = None if port is None else int(port)
        via._params = None
        via._praw = praw
        pc["via"] = [via]
    else:
        pc["via"] = _parse_vias(keys, values, i_via)

    # CSeq
    parts = values[i_cseq].strip(" \t").split(" ")
    if len(parts) == 2 and parts[1] == msg._method and len(parts[0]) < 10 \
            and parts[0].isdigit() and parts[0].isascii():
        pc["cseq"] = _tuple_new(CSeq, (int(parts[0]), parts[1]))
    else:
        cseq = parse_cseq(values[i_cseq])
        pc["cseq"] = cseq
        if cseq.method != msg._method:
            raise SipParseError(
                "CSeq method does not match request method",
                400 if msg._method in RFC_METHODS else 501,
            )

    # From and To
    for i, key, what in ((i_from, "from", "From"), (i_to, "to", "To")):
        v = values[i].strip(" \t")
        m = _NA_FAST_RE.fullmatch(v)
        if m is not None and "[" not in v:
            quoted, display, utext, praw = m.groups()
            if quoted is not None:
                display = quoted
            elif display is not None and ("\t" in display or "  " in display):
                display = " ".join(display.split())
            a = _new(NameAddr)
            a.display = display
            a._uri = None
            a._utext = utext
            a._params = None
            a._praw = praw
            pc[key] = a
        else:
            pc[key] = _name_addr(v, what)

    cid = values[i_cid].strip(" \t")
    if not cid or " " in cid or "\t" in cid:
        raise SipParseError("Malformed Call-ID header")
    pc["call-id"] = cid
    if "max-forwards" in keys:
        v = values[keys.index("max-forwards")].strip(" \t")
        if len(v) <= 3 and v.isdigit() and v.isascii() and int(v) <= 255:
            pc["max-forwards"] = int(v)
        else:
            pc["max-forwards"] = parse_max_forwards(v)
        if count("max-forwards") > 1:
            raise SipParseError("Duplicate Max-Forwards header")


def _validate_response(keys: list[str], values: list[str], pc: dict[str, object]) -> None:
    if "via" not in keys:
        raise SipParseError("Missing Via header")
    i_cseq = _first(keys, "cseq", "CSeq")
    pc["via"] = _parse_vias(keys, values, keys.index("via"))
    pc["cseq"] = parse_cseq(values[i_cseq])


# ---------------------------------------------------------------------------------------------
# Responses


_COPIED = frozenset(("via", "from", "to", "call-id", "cseq"))


def _to_has_tag(request: SipMessage, value: str) -> bool | None:
    a = request._pc.get("to")
    if a is None:
        try:
            a = parse_name_addr(value, what="To")
        except SipParseError:
            return None
    return a.tag is not None  # type: ignore[union-attr]


def make_response(
    request: Request,
    status: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    headers: list[tuple[str, str]] | None = None,
    body: bytes = b"",
) -> Response:
    """Build a response to ``request`` per RFC 3261 §8.2.6.

    Every Via line, From, To, Call-ID and CSeq are copied verbatim (those present: this also
    works on the partial message of a :class:`SipParseError`). ``;tag=to_tag`` is added to To
    when ``to_tag`` is given, the status is above 100 and To has no tag yet. Content-Length is
    always written. The response's wire bytes are built at once, so ``to_bytes()`` is free.
    """
    if not isinstance(status, int) or not 100 <= status <= 699:
        raise ValueError(f"invalid status code {status!r}")
    if reason is None:
        reason = reason_phrase(status)
    elif "\r" in reason or "\n" in reason:
        raise ValueError("reason phrase must not contain CR or LF")
    keys: list[str] = []
    values: list[str] = []
    lines: list[str] = []
    rlines = request._lines
    rvalues = request._values
    for i, k in enumerate(request._keys):
        if k in _COPIED:
            line = rlines[i]
            value = rvalues[i]
            if k == "to" and to_tag is not None and status > 100:
                if _to_has_tag(request, value) is False:
                    tag = _wire(to_tag)
                    line = line.rstrip(" \t") + ";tag=" + tag
                    value = value.rstrip(" \t") + ";tag=" + tag
            keys.append(k)
            values.append(value)
            lines.append(line)
    for name, value in headers or ():
        key = _key(_check_name(name))
        if key == "content-length":
            continue
        value = _wire(value)
        keys.append(key)
        values.append(value)
        lines.append(f"{name}: {value}")
    if type(body) is not bytes:
        body = bytes(body)
    cl = str(len(body))
    keys.append("content-length")
    values.append(cl)
    lines.append("Content-Length: " + cl)
    r = _new(Response)
    r._status = status
    r._reason = reason
    r.version = "SIP/2.0"
    r._start = start = r._start_line()
    head = start + "\r\n" + "\r\n".join(lines) + "\r\n\r\n"
    data = head.encode("latin-1") + body
    r._data = data
    r._bstart = len(data) - len(body)
    r._bend = len(data)
    r._keys = keys
    r._values = values
    r._lines = lines
    r._pc = {}
    r._dirty = False
    r._body = body
    return r
