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

Performance notes (this is the hot path of the server). A message goes down the first of
three paths that takes it; all three give the same result (the fuzz tests compare them):

1. A parser specialised for its header layout (the sequence of header names): one regex over
   the whole header block that splits every line and checks the values. Built once a layout
   has been parsed successfully twice (see ``_Spec``); bounded.
2. The tidy path (requests): lines split once, then the checked header lines are joined and
   matched by one regex (``_REQUEST_TIDY_RE``).
3. The general path: per-header parsers that accept every legal form and name the defect of
   what they reject.

Objects are allocated with ``X.__new__`` and their slots assigned (the cheapest way both
interpreted and compiled with mypyc: see ``_new_via`` in :mod:`sipline.sip.headers`), and
parsed values live in dedicated slots. ``push_via`` on an unchanged message splices the new
line into the received bytes instead of re-joining the header lines.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from operator import itemgetter
from typing import Any, cast

from .errors import SipParseError
from .headers import (
    _NAME_CACHE,
    _TIDY_PARAMS,
    RFC_METHODS,
    TOKEN,
    TOKEN_CHARS,
    CSeq,
    NameAddr,
    Via,
    _name_addr_at,
    _name_addr_fast,
    _new_name_addr,
    _new_via,
    _tuple_new,
    _via_one,
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
from .uri import (
    _HDRCHAR,
    _PASSWORD,
    _USER,
    URI_PARAMS_RE,
    AbsoluteURI,
    SipURI,
    TelURI,
    parse_uri,
    sip_uri_pattern,
    uri_from_groups,
)

__all__ = [
    "MAX_HEADERS",
    "REASON_PHRASES",
    "RFC_METHODS",
    "Request",
    "Response",
    "SipMessage",
    "make_response",
    "parse_message",
    "reason_phrase",
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


class _Unset:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<unset>"


#: Marks a cached optional value (Max-Forwards, Content-Length) that was not parsed yet.
_UNSET: object = _Unset()
#: ``_dirty`` of an unchanged message whose lines do not map 1:1 onto its bytes (bare LFs,
#: leading CRLFs): unchanged it is returned as received, changed it is re-joined.
_PRISTINE_RAW: object = _Unset()


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


# Header key -> the slot caching its parsed value (others live in the _pc dict).
_CACHE_SLOTS = {
    "via": "_via",
    "from": "_from",
    "to": "_to",
    "cseq": "_cseq",
    "call-id": "_cid",
}
_OPTIONAL_SLOTS = {"max-forwards": "_mf", "content-length": "_cl"}


class SipMessage:
    """Common part of :class:`Request` and :class:`Response`.

    Header names given to the accessors are case-insensitive and may be compact forms.
    Parsed values (``via``, ``from_``...) are cached; the cache of a header is dropped when
    that header is changed through this API. Objects returned by the parsed accessors must not
    be mutated in place: change a copy and write it back (``set_top_via``, ``set_header``,
    ``Request.uri = ...``).
    """

    __slots__ = (
        "_bend",
        "_body",
        "_bstart",
        "_cid",
        "_cl",
        "_cseq",
        "_data",
        "_dirty",
        "_from",
        "_keys",
        "_lines",
        "_mf",
        "_pc",
        "_start",
        "_to",
        "_values",
        "_via",
        "version",
    )

    _data: bytes
    _bstart: int
    _bend: int
    _keys: list[str]
    _values: list[str] | None  # header values, derived from _lines on first use
    _lines: list[str]
    # False: unchanged; True: re-join the lines; (offset, bytes): unchanged but for lines
    # inserted at one byte offset (the proxy's push_via), spliced into the received bytes;
    # _PRISTINE_RAW: unchanged, lines not 1:1 with the bytes (no splicing).
    _dirty: Any
    _body: bytes | None
    _start: str | None
    version: str
    _via: list[Via] | None
    _from: NameAddr | None
    _to: NameAddr | None
    _cseq: CSeq | None
    _cid: str | None
    _mf: object
    _cl: object
    _pc: dict[str, object] | None

    def _init_empty(self) -> None:
        self._data = b""
        self._bstart = 0
        self._bend = 0
        self._keys = []
        self._values = []
        self._lines = []
        self._dirty = True
        self._body = b""
        self._start = None
        self.version = "SIP/2.0"
        self._reset_cache()

    def _reset_cache(self) -> None:
        self._via = None
        self._from = None
        self._to = None
        self._cseq = None
        self._cid = None
        self._mf = _UNSET
        self._cl = _UNSET
        self._pc = None

    # -- raw header access ---------------------------------------------------------------

    def _vals(self) -> list[str]:
        """The value of every header line (unfolded, not stripped), built on first use."""
        try:
            values = self._values
        except AttributeError:  # parsed messages start without it
            values = None
        if values is None:
            values = self._values = [_line_value(line) for line in self._lines]
        return values

    def _values_of(self, key: str) -> list[str]:
        """The values (unfolded, not stripped) of the lines of canonical name ``key``.

        Only the matching lines are looked at: the hot path asks for absent or
        rare headers (Route, Proxy-Require) on messages with many others.
        """
        keys = self._keys
        if key not in keys:
            return []
        values = getattr(self, "_values", None)
        if values is not None:
            return [v for k, v in zip(keys, values) if k == key]
        lines = self._lines
        return [_line_value(lines[i]) for i, k in enumerate(keys) if k == key]

    def get(self, name: str) -> str | None:
        """The value of the first header line named ``name`` (unfolded, stripped), or None."""
        key = _key(name)
        keys = self._keys
        if key in keys:
            return _line_value(self._lines[keys.index(key)]).strip(" \t")
        return None

    def get_all(self, name: str) -> list[str]:
        """One value per header line named ``name``, in order."""
        return [v.strip(" \t") for v in self._values_of(_key(name))]

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
        for line, value in zip(self._lines, self._vals()):
            yield line.partition(":")[0].rstrip(" \t"), value.strip(" \t")

    def _changed(self, key: str) -> None:
        """Drop the cached parse of ``key`` and mark the message for re-serialisation."""
        slot = _CACHE_SLOTS.get(key)
        if slot is not None:
            setattr(self, slot, None)
        else:
            slot = _OPTIONAL_SLOTS.get(key)
            if slot is not None:
                setattr(self, slot, _UNSET)
            else:
                pc = getattr(self, "_pc", None)
                if pc:
                    pc.pop(key, None)
        self._dirty = True

    def add_header(self, name: str, value: str, *, first: bool = False) -> None:
        """Append a header line (or put it at the top of the header block when ``first``).

        ``value`` is a wire string (see the module docstring; :func:`text_to_wire` converts
        text); characters beyond latin-1 are written as UTF-8. CR and LF are refused.
        """
        key = _key(_check_name(name))
        value = _wire(value)
        line = f"{name}: {value}"
        if first:
            self._keys.insert(0, key)
            self._lines.insert(0, line)
        else:
            self._keys.append(key)
            self._lines.append(line)
        self._values = None
        self._changed(key)

    def set_header(self, name: str, value: str) -> None:
        """Replace the first ``name`` line in place and drop the others; append if absent."""
        key = _key(_check_name(name))
        value = _wire(value)
        keys = self._keys
        if key in keys:
            i = keys.index(key)
            self._lines[i] = f"{name}: {value}"
            j = len(keys) - 1
            while j > i:
                if keys[j] == key:
                    del keys[j], self._lines[j]
                j -= 1
        else:
            keys.append(key)
            self._lines.append(f"{name}: {value}")
        self._values = None
        self._changed(key)

    def remove_header(self, name: str) -> int:
        """Remove every ``name`` line; return how many were removed."""
        key = _key(name)
        keys = self._keys
        n = keys.count(key)
        if n:
            keep = [i for i, k in enumerate(keys) if k != key]
            self._keys = [keys[i] for i in keep]
            self._lines = [self._lines[i] for i in keep]
            self._values = None
            self._changed(key)
        return n

    # -- parsed, cached accessors --------------------------------------------------------

    def _required(self, key: str, pretty: str) -> str:
        keys = self._keys
        if key not in keys:
            raise SipParseError(f"Missing {pretty} header")
        return _line_value(self._lines[keys.index(key)]).strip(" \t")

    @property
    def via(self) -> list[Via]:
        """Every Via value, top first (a line may hold several)."""
        vias = self._via
        if vias is None:
            vias = []
            for v in self._values_of("via"):
                vias.extend(parse_via(v))
            self._via = vias
        return vias

    @property
    def top_via(self) -> Via | None:
        vias = self._via
        if vias is None:
            keys = self._keys
            if "via" not in keys:
                return None
            # Only the first line: a proxy asks for the top Via of requests and
            # responses that carry several, and rarely for the others.
            first = parse_via(_line_value(self._lines[keys.index("via")]))
            if len(first) == self._keys.count("via") == 1 or not first:
                self._via = first
            return first[0] if first else None
        return vias[0] if vias else None

    @property
    def from_(self) -> NameAddr:
        a = self._from
        if a is None:
            a = self._from = parse_name_addr(self._required("from", "From"), what="From")
        return a

    @property
    def to(self) -> NameAddr:
        a = self._to
        if a is None:
            a = self._to = parse_name_addr(self._required("to", "To"), what="To")
        return a

    @property
    def call_id(self) -> str:
        c = self._cid
        if c is None:
            c = self._required("call-id", "Call-ID")
            if not c or " " in c or "\t" in c:
                raise SipParseError("Malformed Call-ID header")
            self._cid = c
        return c

    @property
    def cseq(self) -> CSeq:
        c = self._cseq
        if c is None:
            c = self._cseq = parse_cseq(self._required("cseq", "CSeq"))
        return c

    @property
    def max_forwards(self) -> int | None:
        mf = self._mf
        if mf is _UNSET:
            v = self.get("max-forwards")
            mf = self._mf = None if v is None else parse_max_forwards(v)
        return mf  # type: ignore[return-value]

    @property
    def content_length(self) -> int | None:
        cl = self._cl
        if cl is _UNSET:
            v = self.get("content-length")
            cl = self._cl = None if v is None else parse_content_length(v)
        return cl  # type: ignore[return-value]

    def _cached(self, key: str, parse: Callable[..., object], *args: object) -> object:
        """``parse(*args)`` cached under ``key`` until that header changes."""
        pc = getattr(self, "_pc", None)
        if pc is None:
            pc = self._pc = {}
        elif key in pc:
            return pc[key]
        value = pc[key] = parse(*args)
        return value

    def _parse_expires(self) -> int | None:
        v = self.get("expires")
        return None if v is None else parse_expires(v)

    @property
    def expires(self) -> int | None:
        return cast("int | None", self._cached("expires", self._parse_expires))

    def _parse_contacts(self) -> tuple[list[NameAddr], bool]:
        contacts: list[NameAddr] = []
        star = False
        for v in self._values_of("contact"):
            v = v.strip(" \t")
            if v == "*":
                star = True
            else:
                contacts.extend(parse_name_addr_list(v, what="Contact"))
        if star and (contacts or self._keys.count("contact") > 1):
            raise SipParseError("Contact * mixed with other contacts")
        return contacts, star

    @property
    def contacts(self) -> list[NameAddr]:
        """Every Contact value (empty for ``Contact: *``, see :attr:`contact_star`)."""
        return cast("tuple[list[NameAddr], bool]", self._cached("contact", self._parse_contacts))[0]

    @property
    def contact_star(self) -> bool:
        """True for ``Contact: *`` (REGISTER removing every binding)."""
        return cast("tuple[list[NameAddr], bool]", self._cached("contact", self._parse_contacts))[1]

    def _parse_addr_list(self, key: str, what: str) -> list[NameAddr]:
        out: list[NameAddr] = []
        for v in self._values_of(key):
            out.extend(parse_name_addr_list(v, what=what))
        return out

    @property
    def routes(self) -> list[NameAddr]:
        r = self._cached("route", self._parse_addr_list, "route", "Route")
        return cast("list[NameAddr]", r)

    @property
    def record_routes(self) -> list[NameAddr]:
        r = self._cached("record-route", self._parse_addr_list, "record-route", "Record-Route")
        return cast("list[NameAddr]", r)

    def _parse_tokens(self, key: str, what: str, lower: bool) -> list[str]:
        out: list[str] = []
        for v in self._values_of(key):
            out.extend(parse_token_list(v, lower=lower, what=what))
        return out

    def _tokens(self, key: str, what: str, lower: bool) -> list[str]:
        return cast("list[str]", self._cached(key, self._parse_tokens, key, what, lower))

    @property
    def require(self) -> list[str]:
        """Option tags of Require, lowercased."""
        return self._tokens("require", "Require", True)

    @property
    def proxy_require(self) -> list[str]:
        """Option tags of Proxy-Require, lowercased."""
        return self._tokens("proxy-require", "Proxy-Require", True)

    @property
    def supported(self) -> list[str]:
        """Option tags of Supported, lowercased."""
        return self._tokens("supported", "Supported", True)

    @property
    def allow(self) -> list[str]:
        """Allowed methods, case kept (method names are case-sensitive)."""
        return self._tokens("allow", "Allow", False)

    # -- Via manipulation for proxies ----------------------------------------------------

    def push_via(self, via: Via | str) -> None:
        """Add a new top Via (a line of its own, above the existing Via lines)."""
        if isinstance(via, str) and via.isascii() and via.isprintable():
            value = via
        else:
            value = _wire(str(via))
        keys = self._keys
        try:
            i = keys.index("via")
        except ValueError:
            i = 0
        line = "Via: " + value
        keys.insert(i, "via")
        self._lines.insert(i, line)
        self._values = None
        self._via = None
        dirty = self._dirty
        if dirty is True:
            return
        # Unchanged so far: splice the new line into the received bytes at the offset of
        # the line it goes before, instead of re-joining every line.
        offset = len(self._start) + 2  # type: ignore[arg-type]
        if i:
            offset += sum(map(len, self._lines[:i])) + 2 * i
        if dirty is False:
            if self._cl is not None:
                self._dirty = (offset, line.encode("latin-1") + b"\r\n")
                return
        elif dirty is not _PRISTINE_RAW and dirty[0] == offset:
            self._dirty = (offset, line.encode("latin-1") + b"\r\n" + dirty[1])
            return
        self._dirty = True

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
        value = _line_value(self._lines[i])
        rest = split_comma(value, what="Via")[1:] if "," in value else []
        if rest:
            name = self._lines[i].partition(":")[0].rstrip(" \t")
            self._lines[i] = f"{name}: {', '.join(rest)}"
        else:
            del self._keys[i], self._lines[i]
        self._values = None
        self._dirty = True
        self._via = vias[1:]
        return vias[0]

    def set_top_via(self, via: Via) -> None:
        """Replace the top Via value only (e.g. after adding ``received``/``rport``)."""
        vias = self.via
        i = self._top_via_line()
        value = _line_value(self._lines[i])
        text = _wire(str(via))
        if "," in value:
            parts = split_comma(value, what="Via")
            parts[0] = text
            text = ", ".join(parts)
        name = self._lines[i].partition(":")[0].rstrip(" \t")
        self._lines[i] = f"{name}: {text}"
        self._values = None
        self._dirty = True
        self._via = [via] + vias[1:]

    # -- body and serialisation ----------------------------------------------------------

    @property
    def body(self) -> bytes:
        """The body, raw and untouched. Setting it rewrites Content-Length."""
        try:
            b = self._body
        except AttributeError:  # parsed messages slice it out on first use
            b = None
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
        dirty = self._dirty
        if dirty is False or dirty is _PRISTINE_RAW:
            data = self._data
            if self._bend == len(data) and self._cl is not None:
                return data
            if self._cl is not None:
                return data[: self._bend]
        elif dirty is not True:
            data = self._data
            offset: int = dirty[0]
            inserted: bytes = dirty[1]
            return data[:offset] + inserted + data[offset : self._bend]
        keys = self._keys
        body = self.body
        if "content-length" not in keys:
            keys.append("content-length")
            self._lines.append(f"Content-Length: {len(body)}")
            self._values = None
            self._cl = len(body)
        start = self._start
        if start is None:
            start = self._start = self._start_line()
        self._dirty = True
        return (start + "\r\n" + "\r\n".join(self._lines) + "\r\n\r\n").encode("latin-1") + body

    def __bytes__(self) -> bytes:
        return self.to_bytes()

    def _copy_into(self, m: SipMessage) -> None:
        m._data = self._data
        m._bstart = self._bstart
        m._bend = self._bend
        m._keys = self._keys[:]
        m._values = getattr(self, "_values", None)  # never mutated in place: shared safely
        m._lines = self._lines[:]
        m._dirty = self._dirty
        m._body = getattr(self, "_body", None)
        m._start = self._start
        m.version = self.version
        m._reset_cache()
        # Immutable parsed values can be shared; mutable ones are re-parsed on demand.
        m._cseq = self._cseq
        m._cid = self._cid
        m._mf = self._mf
        m._cl = self._cl

    @property
    def is_request(self) -> bool:
        return isinstance(self, Request)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._start_line()!r}>"


class Request(SipMessage):
    """A SIP request. ``uri`` is parsed from ``raw_uri`` on first access and cached.

    After changing ``uri`` in place, assign it back (``req.uri = uri``) so that the start
    line is rewritten.
    """

    __slots__ = ("_method", "_ruri", "_uri")

    _method: str
    _ruri: str
    _uri: SipURI | TelURI | AbsoluteURI | tuple[str | None, ...] | None

    def __init__(
        self,
        method: str = "",
        uri: SipURI | TelURI | AbsoluteURI | str = "",
        headers: list[tuple[str, str]] | None = None,
        body: bytes = b"",
    ) -> None:
        if not method and not uri:
            return  # the parser's allocation (see _new_request): it fills in every slot
        if not is_token(method):
            raise ValueError(f"invalid method {method!r}")
        self._init_empty()
        self._method = method
        self.set_uri(uri)
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
        """The Request-URI text as received (or as last set)."""
        return self._ruri

    @property
    def uri(self) -> SipURI | TelURI | AbsoluteURI:
        u = self._uri
        if u is None:
            u = self._uri = parse_uri(self._ruri)
        elif u.__class__ is tuple:
            u = self._uri = uri_from_groups(u)
        return u  # type: ignore[return-value]

    @uri.setter
    def uri(self, value: SipURI | TelURI | AbsoluteURI | str) -> None:
        self.set_uri(value)

    def set_uri(self, value: SipURI | TelURI | AbsoluteURI | str) -> None:
        """Set the Request-URI (``req.uri = value`` does the same).

        Text is kept verbatim on the wire (it must parse as a URI); a URI object is
        serialised. Compiled code calls this method: mypyc types a property assignment by the
        getter's type, which has no ``str``.
        """
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
        """An independent copy (for forking): same bytes, own header lists and caches."""
        m = _new_request(Request)
        self._copy_into(m)
        m._method = self._method
        m._ruri = self._ruri
        m._uri = None if self._uri is None else self.uri.copy()
        return m


class Response(SipMessage):
    """A SIP response."""

    __slots__ = ("_reason", "_status")

    _status: int
    _reason: str

    def __init__(
        self,
        status: int = 0,
        reason: str | None = None,
        headers: list[tuple[str, str]] | None = None,
        body: bytes = b"",
    ) -> None:
        if not status:
            return  # the parser's allocation (see _new_request): it fills in every slot
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
        """An independent copy: same bytes, own header lists and caches."""
        m = _new_response(Response)
        self._copy_into(m)
        m._status = self._status
        m._reason = self._reason
        return m


# How the parser allocates messages (then fills in their slots): see _new_via in headers.py.
_new_request = Request.__new__
_new_response = Response.__new__


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
            value = _unfold(value)
        keys.append(key)
        values.append(value)
    return keys, values, lines


def _unfold(value: str) -> str:
    """Replace each line fold (LWS around CRLF) with one space (RFC 3261 §7.3.1).

    Done with str methods: a regex for it backtracks quadratically on long blank runs.
    """
    parts = value.replace("\r\n", "\n").split("\n")
    out = [parts[0].rstrip(" \t")]
    out.extend(p.strip(" \t") for p in parts[1:-1])
    out.append(parts[-1].lstrip(" \t"))
    return " ".join(out)


def _line_value(line: str) -> str:
    """The value part of a raw header line, unfolded (not stripped)."""
    value = line.partition(":")[2]
    if "\n" in value:
        value = _unfold(value)
    return value


def _start_error(start: str) -> tuple[str, int]:
    """Reason and status for a request line that is not ``Method SP URI SP SIP/2.0``."""
    parts = start.split(" ")
    if start.endswith((" ", "\t")):
        return "Trailing whitespace in request line", 400
    if "" in parts or "\t" in start:
        return "Extra whitespace in request line", 400
    if len(parts) > 3:
        return "Whitespace in Request-URI", 400
    return "Malformed request line", 400


def parse_message(
    data: object, *, stream: bool = False, max_size: int = 65535
) -> Request | Response:
    """Parse one SIP message.

    :param data: the datagram (``stream=False``) or the message framed by a
        :class:`~sipline.sip.framing.StreamFramer` (``stream=True``): bytes, bytearray or
        memoryview.
    :param stream: over a stream transport Content-Length is mandatory and must match exactly.
        Over UDP a missing Content-Length means "the rest of the datagram" and bytes beyond
        Content-Length are ignored (RFC 3261 §18.3).
    :param max_size: larger input raises with status 513.
    :raises SipParseError: for any malformed input (and only that exception). Once the start
        line and the header lines are split, the error carries the partial message.
    """
    if data.__class__ is bytes:
        buf: bytes = data
    elif isinstance(data, (bytes, bytearray, memoryview)):
        buf = bytes(data)
    else:  # typed ``object`` so that this holds compiled too (mypyc checks declared types)
        raise SipParseError("Message must be bytes")
    n = len(buf)
    if n > max_size:
        raise SipParseError("Message too large", 513)
    # The tidy case: CRLF line ends only, no leading CRLFs, a blank line after the headers.
    # Anything else (bare LFs, stray CRs, no blank line) takes the lenient split. A bare LF
    # inside a line is never let through: a downstream parser could see a header there that
    # this one did not.
    end = buf.find(b"\r\n\r\n")
    unterminated = False
    dirty: object = False
    if end > 0 and buf[0] > 32:
        head = buf[:end].decode("latin-1")
        # A parser specialised for this header layout, if one was built (see _Spec).
        specs = _SPECS.get(_spec_key(head))
        if specs is not None:
            for spec in specs:
                m = spec.regex.fullmatch(head)
                if m is not None:
                    built = spec.build(m, buf, n, end + 4, stream, head)
                    if built is not None:
                        return built
                    break
        lines = head.split("\r\n")
        if head.count("\n") != len(lines) - 1:
            lines, bstart, unterminated = _split_lenient(buf)
            dirty = _PRISTINE_RAW
        else:
            bstart = end + 4
    else:
        lines, bstart, unterminated = _split_lenient(buf)
        dirty = _PRISTINE_RAW
        head = ""
    start = lines[0]
    hlines = lines
    del hlines[0]
    if len(hlines) > MAX_HEADERS:
        raise SipParseError("Too many headers")

    # Header lines: one pass for the tidy case, the careful split at the first oddity
    # (folding, whitespace before the colon, a name never seen before, no colon).
    keys: list[str] = []
    values: list[str] | None = None  # derived from the lines on first use
    kappend = keys.append
    cache_get = _NAME_CACHE.get
    key: str | None = ""
    for line in hlines:
        name, colon, _ = line.partition(":")
        key = cache_get(name)
        if key is None or not colon:
            break
        kappend(key)
    if key is not None and dirty is False and len(keys) == len(hlines) and start[:4] != "SIP/":
        q = _tidy_request(buf, n, bstart, start, keys, hlines, stream)
        if q is not None:
            _learn(head, start, keys, hlines)
            return q
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
        q = _new_request(Request)
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
    msg._data = buf
    msg._bstart = bstart
    msg._keys = keys
    if values is not None:
        msg._values = values
    msg._lines = hlines
    msg._dirty = dirty
    msg._start = start
    msg._bend = n
    # The parsed-value slots are filled by the validation below; every path that does not
    # end in a successful fast validation resets them first.
    if header_error is not None:
        msg._reset_cache()
        header_error.message = msg
        raise header_error
    if unterminated or error is not None:
        msg._reset_cache()
        if unterminated:
            raise SipParseError("Missing blank line after headers", 400, msg)
        raise SipParseError(error[0], error[1], msg)  # type: ignore[index]

    # Framing by Content-Length.
    if keys and keys[-1] == "content-length" or "content-length" in keys:
        v = _line_value(hlines[keys.index("content-length")]).strip(" \t")
        if len(v) < 8 and v.isdigit() and v.isascii():
            cl = int(v)
        else:
            try:
                cl = parse_content_length(v)
            except SipParseError as e:
                msg._reset_cache()
                e.message = msg
                raise
        if cl > n - bstart or (stream and cl != n - bstart) or keys.count("content-length") > 1:
            msg._reset_cache()
            if cl > n - bstart or (stream and cl != n - bstart):
                raise SipParseError("Content-Length mismatch", 400, msg)
            raise SipParseError("Duplicate Content-Length header", 400, msg)
        msg._cl = cl
        msg._bend = bstart + cl
    else:
        msg._cl = None
        if stream:
            msg._reset_cache()
            raise SipParseError("Missing Content-Length on stream transport", 400, msg)

    try:
        if msg.__class__ is Request:
            _validate_request_careful(msg, keys)
        else:
            _validate_response(msg, keys, hlines)  # type: ignore[arg-type]
    except SipParseError as e:
        e.message = msg
        raise
    if head and dirty is False and msg.__class__ is Response:
        _learn(head, start, keys, hlines)  # (requests learn from the tidy path only)
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
    r = _new_response(Response)
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


_REQUIRED = (("via", "Via"), ("from", "From"), ("to", "To"), ("call-id", "Call-ID"),
             ("cseq", "CSeq"))
_SINGLE = (("from", "From"), ("to", "To"), ("call-id", "Call-ID"), ("cseq", "CSeq"),
           ("max-forwards", "Max-Forwards"))


def _missing_or_duplicate(keys: list[str], required: tuple[tuple[str, str], ...]) -> None:
    """Raise for the first missing required header or duplicated single-valued header."""
    for key, pretty in required:
        if key not in keys:
            raise SipParseError(f"Missing {pretty} header")
    for key, pretty in _SINGLE:
        if keys.count(key) > 1:
            raise SipParseError(f"Duplicate {pretty} header")


def _parse_vias(keys: list[str], values: list[str]) -> list[Via]:
    if keys.count("via") == 1:
        v = values[keys.index("via")].strip(" \t")
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


def _tidy_uri(group: str) -> str:
    """A narrower SIP URI pattern for the one-regex check: lowercase scheme, no IPv6, port
    as 1-5 digits (range-checked by the caller where it is captured)."""
    return (
        rf"{group}sips?):(?:{group}[{_USER}]++)(?::{group}[{_PASSWORD}]*+))?@)?"
        rf"{group}[A-Za-z0-9_.\-]++)(?::{group}[0-9]{{1,5}}))?"
        rf"{group}{URI_PARAMS_RE})(?:\?{group}[{_HDRCHAR}=&]*+))?"
    )


# The tidy request in one regex match: the start line and the lines of every header the
# checks need, joined by "\n" (which no tidy line contains). Groups: method (1), R-URI (2,
# its parts 3-9), top Via (10-13), CSeq number (14; its method must equal the request method),
# From (15-18), To (19-22), Call-ID (23), Max-Forwards (24), Content-Length (25). Only the tidy common forms
# match; anything else (IPv6, quoted-pairs, addr-spec From/To, a second Via value on the
# line, an unknown version...) takes the general path, which accepts a superset and names the
# defect of what it rejects.
_NAME = rf"[{TOKEN_CHARS} \t]*+:[ \t]*+"
# RFC 3261 word characters (Call-ID = word ["@" word]).
_WORD = TOKEN_CHARS + r"()<>:\\\"/\[\]?{}"
_NA_TIDY = (
    rf'{_NAME}(?:"([^"\\\n]*+)"|({TOKEN}(?: {TOKEN})*+))?[ \t]*+'
    rf"<({sip_uri_pattern('(?:', ipv6=False)})>({_TIDY_PARAMS})[ \t]*+"
)
_REQUEST_TIDY_RE = re.compile(
    rf"({TOKEN}) (" + _tidy_uri("(") + ") SIP/2\\.0\n"
    + rf"{_NAME}SIP/2\.0/(UDP|TCP|TLS|SCTP|WSS?) ([a-z0-9_.\-]++)(?::([0-9]{{1,5}}))?"
    + rf"({_TIDY_PARAMS})[ \t]*+\n"
    + rf"{_NAME}([0-9]{{1,9}}) \1[ \t]*+\n"
    + _NA_TIDY + "\n"
    + _NA_TIDY + "\n"
    + rf"{_NAME}([{_WORD}]++(?:@[{_WORD}]++)?)[ \t]*+\n"
    + rf"(?:{_NAME}([0-9]{{1,3}})[ \t]*+)?\n"
    + rf"(?:{_NAME}([0-9]{{1,7}})[ \t]*+)?"
)


# Header layout cache: the sequence of header keys of a message -> the positions the checks
# need. Messages from one kind of user agent share a layout, so this turns a dozen list scans
# into one tuple hash. Bounded, so hostile input cannot grow it without limit.
_LAYOUTS: dict[tuple[str, ...], tuple[int, ...]] = {}
_LAYOUTS_MAX = 2048


def _layout(keys: list[str]) -> tuple[int, ...]:
    """(via, from, to, call-id, cseq, max-forwards, content-length) line positions for the
    tidy request check (-1 when absent), then the number of Via lines; () when a required
    header is missing or a single-valued one is repeated."""
    sig = tuple(keys)
    lay = _LAYOUTS.get(sig)
    if lay is not None:
        return lay
    count = keys.count
    lay = ()
    if (
        "via" in keys
        and count("from") == count("to") == count("call-id") == count("cseq") == 1
        and count("max-forwards") <= 1
        and count("content-length") <= 1
    ):
        lay = tuple(
            keys.index(k) if k in keys else -1
            for k in ("via", "from", "to", "call-id", "cseq", "max-forwards", "content-length")
        ) + (count("via"),)
    if len(_LAYOUTS) < _LAYOUTS_MAX:
        _LAYOUTS[sig] = lay
    return lay


def _tidy_request(
    data: bytes, n: int, bstart: int, start: str, keys: list[str], lines: list[str], stream: bool
) -> Request | None:
    """A tidy request checked by one regex match (see _REQUEST_TIDY_RE), or None for the
    general path."""
    lay = _LAYOUTS.get(tuple(keys))
    if lay is None:
        lay = _layout(keys)
    if not lay:
        return None
    i_via, i_from, i_to, i_cid, i_cseq, i_mf, i_cl, n_via = lay
    m = _REQUEST_TIDY_RE.fullmatch("\n".join((
        start, lines[i_via], lines[i_cseq], lines[i_from], lines[i_to], lines[i_cid],
        "" if i_mf < 0 else lines[i_mf], "" if i_cl < 0 else lines[i_cl],
    )))
    if m is None:
        return None
    g = m.groups()
    mf = g[23]
    port = g[6]
    vport = g[11]
    cl = g[24]
    if cl is None:
        if i_cl >= 0 or stream:
            return None
        bend = n
    else:
        bend = bstart + int(cl)
        if bend > n or (stream and bend != n):
            return None
    if (
        g[8] is not None
        or (mf is not None and int(mf) > 255)
        or (port is not None and len(port) == 5 and int(port) > 65535)
        or (vport is not None and len(vport) == 5 and int(vport) > 65535)
    ):
        return None
    via = _new_via(Via)
    via.protocol = "SIP/2.0"
    via.transport = g[9]
    via.host = g[10]
    via.port = None if vport is None else int(vport)
    via._params = None
    via._praw = g[12]
    vias = [via]
    if n_via != 1:
        try:
            for k, line in zip(keys[i_via + 1 :], lines[i_via + 1 :]):
                if k == "via":
                    vias.extend(parse_via(_line_value(line)))
        except SipParseError:
            return None
    q = _new_request(Request)
    q._method = g[0]
    q._ruri = g[1]
    q._uri = g[2:9]
    q.version = "SIP/2.0"
    q._data = data
    q._bstart = bstart
    q._bend = bend
    q._keys = keys
    q._lines = lines
    q._dirty = False
    q._start = start
    q._cl = None if cl is None else bend - bstart
    q._via = vias
    q._cseq = _tuple_new(CSeq, (int(g[13]), g[0]))
    q._from = _tidy_name_addr(g, 14)
    q._to = _tidy_name_addr(g, 18)
    q._cid = g[22]
    q._mf = None if mf is None else int(mf)
    return q


def _tidy_name_addr(g: tuple[str | None, ...], i: int) -> NameAddr:
    """A NameAddr from the 4 groups of _NA_TIDY/_NA_VALUE starting at ``i``."""
    a = _new_name_addr(NameAddr)
    d = g[i]
    a.display = g[i + 1] if d is None else d
    a._uri = None
    a._utext = g[i + 2]  # type: ignore[assignment]
    a._params = None
    a._praw = g[i + 3]  # type: ignore[assignment]
    return a


def _validate_request_careful(msg: Request, keys: list[str]) -> None:
    cl = msg._cl
    msg._reset_cache()
    msg._cl = cl
    values = msg._vals()
    try:
        uri = parse_uri(msg._ruri)
    except SipParseError as e:
        raise SipParseError(f"Bad Request-URI: {e.reason}") from None
    if isinstance(uri, SipURI) and uri.headers is not None:
        raise SipParseError("Request-URI must not carry headers")
    msg._uri = uri
    _missing_or_duplicate(keys, _REQUIRED)
    msg._via = _parse_vias(keys, values)
    cseq = parse_cseq(values[keys.index("cseq")])
    msg._cseq = cseq
    if cseq.method != msg._method:
        raise SipParseError(
            "CSeq method does not match request method",
            400 if msg._method in RFC_METHODS else 501,
        )
    msg._from = _name_addr(values[keys.index("from")], "From")
    msg._to = _name_addr(values[keys.index("to")], "To")
    cid = values[keys.index("call-id")].strip(" \t")
    if not cid or " " in cid or "\t" in cid:
        raise SipParseError("Malformed Call-ID header")
    msg._cid = cid
    if "max-forwards" in keys:
        msg._mf = parse_max_forwards(values[keys.index("max-forwards")])
    else:
        msg._mf = None


def _validate_response(msg: Response, keys: list[str], lines: list[str]) -> None:
    cl = msg._cl
    msg._reset_cache()
    msg._cl = cl
    if "via" not in keys:
        raise SipParseError("Missing Via header")
    if "cseq" not in keys:
        raise SipParseError("Missing CSeq header")
    if keys.count("cseq") > 1:
        raise SipParseError("Duplicate CSeq header")
    vias: list[Via] = []
    for k, line in zip(keys, lines):
        if k == "via":
            value = _line_value(line).strip(" \t")
            if "," in value or not value:
                vias.extend(parse_via(value))
            else:
                vias.append(_via_one(value))
    msg._via = vias
    msg._cseq = parse_cseq(_line_value(lines[keys.index("cseq")]))


# ---------------------------------------------------------------------------------------------
# Layout-specialised parsers
#
# SIP stacks write their headers in a fixed order, so a server sees the same few header layouts
# (the sequence of header names) again and again. Once a layout has been parsed successfully
# twice, one regex is compiled for it: it matches the whole header block at once, captures every
# line, and checks the same values with the same tidy patterns as the tidy path. A message that
# does not match (another layout, or any surprise in a value) takes the normal path, so the
# results are the same either way (the fuzz tests compare both). The caches are bounded, so
# hostile input cannot make the server compile regexes without limit.

_LINE = "[\x00-\x09\x0b\x0c\x0e-\xff]*+"  # anything but CR and LF (the head is latin-1)
_VIA_TIDY = (r"[ \t]*+SIP/2\.0/(UDP|TCP|TLS|SCTP|WSS?) ([a-z0-9_.\-]++)(?::([0-9]{1,5}))?"
             rf"({_TIDY_PARAMS})[ \t]*+")
_NA_VALUE = (rf'[ \t]*+(?:"([^"\\\n\r]*+)"|({TOKEN}(?: {TOKEN})*+))?[ \t]*+'
             rf"<({sip_uri_pattern('(?:', ipv6=False)})>({_TIDY_PARAMS})[ \t]*+")
_CID_VALUE = rf"[ \t]*+([{_WORD}]++(?:@[{_WORD}]++)?)[ \t]*+"
_SPECS: dict[tuple[str, int], list[_Spec]] = {}
_SPECS_MAX = 256
_SPECS_PER_KEY = 4
_SEEN: dict[tuple[str, ...], int] = {}
_SEEN_MAX = 4096
_MAX_SPEC_LINES = 40
# How many specialised parsers may ever be compiled (about 2 ms each), kept or not, and how
# many times one layout is tried.
_COMPILE_BUDGET = 1024
_TRIES: dict[tuple[str, ...], int] = {}
_MAX_TRIES = 3


class _Spec:
    """A compiled parser for one header layout (see above)."""

    __slots__ = (
        "cid",
        "cl",
        "cseq",
        "from_",
        "keys",
        "lines",
        "mf",
        "regex",
        "request",
        "to",
        "vias",
    )

    def __init__(self, start: str, keys: list[str], lines: list[str]) -> None:
        request = not start.startswith("SIP/")
        self.request = request
        if request:
            parts = [rf"({TOKEN}) (" + _tidy_uri("(") + r") SIP/2\.0"]
            ngroups = 9
        else:
            parts = [rf"SIP/2\.0 ([1-6][0-9][0-9]) ({_LINE})"]
            ngroups = 2
        line_groups: list[int] = []
        vias: list[int] = []
        self.cseq = self.from_ = self.to = self.cid = self.mf = self.cl = -1
        for key, line in zip(keys, lines):
            name = re.escape(line.partition(":")[0]) + ":"
            line_groups.append(ngroups)
            ngroups += 1
            if key == "via":
                # Several Vias may share a line ("Via: a, b", as sipp answers); the layout
                # is learnt with the count of its sample (see _via_counts).
                count = max(1, _via_count(line))
                vias.extend(range(ngroups, ngroups + 4 * count, 4))
                value, extra = ",".join([_VIA_TIDY] * count), 4 * count
            elif key == "cseq":
                self.cseq = ngroups
                if request:
                    value, extra = r"[ \t]*+([0-9]{1,9}) \1[ \t]*+", 1
                else:
                    value, extra = rf"[ \t]*+([0-9]{{1,9}}) ({TOKEN})[ \t]*+", 2
            elif key == "content-length":
                self.cl = ngroups
                value, extra = r"[ \t]*+([0-9]{1,7})[ \t]*+", 1
            elif request and key in ("from", "to"):
                setattr(self, "from_" if key == "from" else "to", ngroups)
                value, extra = _NA_VALUE, 4
            elif request and key == "call-id":
                self.cid = ngroups
                value, extra = _CID_VALUE, 1
            elif request and key == "max-forwards":
                self.mf = ngroups
                value, extra = r"[ \t]*+([0-9]{1,3})[ \t]*+", 1
            else:
                value, extra = _LINE, 0
            parts.append(f"({name}{value})")
            ngroups += extra
        self.regex = re.compile("\r\n".join(parts))
        self.keys = tuple(keys)
        # A C-level getter of the line groups, in order (a 1-tuple needs the slow form).
        self.lines = itemgetter(*line_groups) if len(line_groups) > 1 else (
            lambda g, i=line_groups[0]: (g[i],))
        self.vias = tuple(vias)

    def build(
        self, m: re.Match[str], data: bytes, n: int, bstart: int, stream: bool, head: str
    ) -> Request | Response | None:
        """The message for a match of this layout; None sends it down the normal path."""
        g = m.groups()
        cl = self.cl
        if cl < 0:
            if stream:
                return None
            bend = n
        else:
            bend = bstart + int(g[cl])
            if bend > n or (stream and bend != n):
                return None
        vias = []
        for i in self.vias:
            port = g[i + 2]
            if port is not None and len(port) == 5 and int(port) > 65535:
                return None
            via = _new_via(Via)
            via.protocol = "SIP/2.0"
            via.transport = g[i]
            via.host = g[i + 1]
            via.port = None if port is None else int(port)
            via._params = None
            via._praw = g[i + 3]
            vias.append(via)
        msg: Request | Response
        if self.request:
            mf = None if self.mf < 0 else int(g[self.mf])
            port = g[6]
            if (
                g[8] is not None
                or (mf is not None and mf > 255)
                or (port is not None and len(port) == 5 and int(port) > 65535)
            ):
                return None
            q = _new_request(Request)
            q._method = method = g[0]
            q._ruri = g[1]
            q._uri = g[2:9]
            q._cseq = _tuple_new(CSeq, (int(g[self.cseq]), method))
            # Inlined _tidy_name_addr (this is the hottest path of the server).
            i = self.from_
            a = _new_name_addr(NameAddr)
            d = g[i]
            a.display = g[i + 1] if d is None else d
            a._uri = None
            a._utext = g[i + 2]
            a._params = None
            a._praw = g[i + 3]
            q._from = a
            i = self.to
            a = _new_name_addr(NameAddr)
            d = g[i]
            a.display = g[i + 1] if d is None else d
            a._uri = None
            a._utext = g[i + 2]
            a._params = None
            a._praw = g[i + 3]
            q._to = a
            q._cid = g[self.cid]
            q._mf = mf
            msg = q
        else:
            r = _new_response(Response)
            r._status = int(g[0])
            reason = g[1]
            if not reason.isascii():
                try:
                    reason = reason.encode("latin-1").decode("utf-8")
                except UnicodeDecodeError:
                    pass
            r._reason = reason
            r._cseq = _tuple_new(CSeq, (int(g[self.cseq]), g[self.cseq + 1]))
            r._from = r._to = r._cid = None
            r._mf = _UNSET
            msg = r
        msg.version = "SIP/2.0"
        msg._data = data
        msg._bstart = bstart
        msg._bend = bend
        msg._keys = list(self.keys)
        msg._lines = list(self.lines(g))
        msg._dirty = False
        msg._start = head[: head.find("\r\n")]
        msg._cl = None if cl < 0 else bend - bstart
        msg._via = vias
        return msg


def _via_count(line: str) -> int:
    """How many Via values a Via line holds, as far as a specialised parser is concerned."""
    return line.count("SIP/2.0/")


def _via_counts(keys: list[str], lines: list[str]) -> list[str]:
    return [str(_via_count(line)) for key, line in zip(keys, lines) if key == "via"]


def _spec_key(head: str) -> tuple[str, int]:
    """Where the specialised parsers of a header block are filed: by method (or status
    code) and number of lines. The same layout is learnt separately for each method (an
    ACK and a BYE often share one); the line count sorts the layouts of one method (the
    200 of an INVITE and of a BYE) so that a message is tried against one parser, not
    several that fail late."""
    sp = head.find(" ")
    return head[: sp + 4 if head[:sp] == "SIP/2.0" else sp], head.count("\n")


def _learn(head: str, start: str, keys: list[str], lines: list[str]) -> None:
    """Count a successfully parsed layout; specialise it the second time it is seen."""
    key = _spec_key(head)
    # ... and for each count of Vias per Via line.
    sig = (key[0], *keys, *_via_counts(keys, lines))
    seen = _SEEN.get(sig, 0)
    if seen < 0 or len(lines) > _MAX_SPEC_LINES or "via" not in keys:
        return
    if seen < 1:
        if len(_SEEN) < _SEEN_MAX:
            _SEEN[sig] = seen + 1
        return
    global _COMPILE_BUDGET
    specs = _SPECS.get(key, [])
    if (
        len(specs) >= _SPECS_PER_KEY
        or _COMPILE_BUDGET <= 0
        or sum(len(v) for v in _SPECS.values()) >= _SPECS_MAX
    ):
        _SEEN[sig] = -1  # no room: stay on the normal paths
        return
    _COMPILE_BUDGET -= 1
    spec = _Spec(start, keys, lines)
    # Keep it only if it matches the message it was learnt from. That message may have had
    # an untidy value: then the layout is counted again, and given up after a few tries.
    if spec.regex.fullmatch(head) is not None:
        _SPECS[key] = [*specs, spec]
        _SEEN[sig] = -1
    else:
        tries = _TRIES.get(sig, 0) + 1
        _TRIES[sig] = tries
        _SEEN[sig] = -1 if tries >= _MAX_TRIES else 0


# ---------------------------------------------------------------------------------------------
# Responses


_COPIED = frozenset(("via", "from", "to", "call-id", "cseq"))


def _to_has_tag(request: SipMessage, value: str) -> bool | None:
    a = request._to
    if a is None:
        try:
            a = parse_name_addr(value, what="To")
        except SipParseError:
            return None
    return a.tag is not None


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
    lines: list[str] = []
    rlines = request._lines
    for i, k in enumerate(request._keys):
        if k in _COPIED:
            line = rlines[i]
            if (
                k == "to"
                and to_tag is not None
                and status > 100
                and _to_has_tag(request, _line_value(line)) is False
            ):
                line = line.rstrip(" \t") + ";tag=" + _wire(to_tag)
            keys.append(k)
            lines.append(line)
    for name, value in headers or ():
        key = _key(_check_name(name))
        if key == "content-length":
            continue
        keys.append(key)
        lines.append(f"{name}: {_wire(value)}")
    if type(body) is not bytes:
        body = bytes(body)
    keys.append("content-length")
    lines.append(f"Content-Length: {len(body)}")
    r = _new_response(Response)
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
    r._values = None
    r._lines = lines
    r._reset_cache()
    r._cl = len(body)
    r._dirty = False
    r._body = body
    return r
