"""Header names and header value parsers (RFC 3261 §7.3, §20, §25 and extensions).

Values are wire strings (one character per octet, see :mod:`sipline.sip.uri`), already
unfolded by the message layer. Every parser raises :class:`SipParseError` on malformed input.
Each parser has a fast path (one compiled regex for the common, tidy form) and a careful path
that handles linear whitespace, quoted strings and error diagnosis.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from .errors import SipParseError
from .uri import (
    HOST_RE,
    PORT_RE,
    AbsoluteURI,
    SipURI,
    TelURI,
    _check_ipv6,
    parse_uri,
    sip_uri_pattern,
)

__all__ = [
    "COMPACT_FORMS",
    "CSeq",
    "NameAddr",
    "Via",
    "canonical_name",
    "format_params",
    "is_token",
    "parse_content_length",
    "parse_cseq",
    "parse_expires",
    "parse_max_forwards",
    "parse_name_addr",
    "parse_name_addr_list",
    "parse_params",
    "parse_token_list",
    "parse_uint",
    "parse_via",
    "quote",
    "split_comma",
    "text_from_wire",
    "text_to_wire",
    "unquote",
]

TOKEN_CHARS = r"A-Za-z0-9\-.!%*_+`'~"
TOKEN = f"[{TOKEN_CHARS}]++"
_TOKEN_RE = re.compile(TOKEN)
# A generic-param value: token / host (IPv4, hostname, IPv6 with or without brackets).
_GVALUE = rf"[{TOKEN_CHARS}:\[\]]++"
_QUOTED = r'"(?:[^"\\]++|\\.)*+"'
_QUOTED_RE = re.compile(_QUOTED, re.DOTALL)
_QPAIR_RE = re.compile(r"\\(.)", re.DOTALL)

#: Compact header forms (RFC 3261 §7.3.3 and the extensions that define one).
COMPACT_FORMS: dict[str, str] = {
    "i": "call-id",
    "m": "contact",
    "e": "content-encoding",
    "l": "content-length",
    "c": "content-type",
    "f": "from",
    "s": "subject",
    "k": "supported",
    "t": "to",
    "v": "via",
    "o": "event",
    "r": "refer-to",
    "b": "referred-by",
    "u": "allow-events",
    "x": "session-expires",
    "y": "identity",
    "a": "accept-contact",
    "j": "reject-contact",
    "d": "request-disposition",
}

# Raw header name as received -> canonical lowercase long name. Pre-seeded with the usual
# spellings and filled as new names are met (bounded, so hostile input cannot grow it forever).
_NAME_CACHE: dict[str, str] = {}
_NAME_CACHE_MAX = 4096
_COMMON_NAMES = (
    "Via", "Max-Forwards", "To", "From", "Call-ID", "Call-Id", "CSeq", "Contact", "Allow",
    "Supported", "User-Agent", "Server", "Content-Type", "Content-Length", "Route",
    "Record-Route", "Expires", "Require", "Proxy-Require", "Unsupported", "Authorization",
    "Proxy-Authorization", "WWW-Authenticate", "Proxy-Authenticate", "Accept",
    "Accept-Encoding", "Accept-Language", "Allow-Events", "Event", "Subscription-State",
    "Date", "Timestamp", "Session-Expires", "Min-SE", "Min-Expires", "Retry-After",
    "Warning", "Subject", "Organization", "Priority", "Reply-To", "Refer-To", "Referred-By",
    "P-Asserted-Identity", "P-Preferred-Identity", "Privacy", "Path", "Service-Route",
    "RSeq", "RAck", "Content-Disposition", "Content-Encoding", "Content-Language",
    "MIME-Version", "Identity", "Reason", "Replaces", "In-Reply-To", "Alert-Info",
    "Call-Info", "Error-Info", "SIP-ETag", "SIP-If-Match",
)
for _n in _COMMON_NAMES:
    _NAME_CACHE[_n] = _n.lower()
    _NAME_CACHE[_n.lower()] = _n.lower()
    _NAME_CACHE[_n.upper()] = _n.lower()
for _c, _long in COMPACT_FORMS.items():
    _NAME_CACHE[_c] = _long
    _NAME_CACHE[_c.upper()] = _long
    _NAME_CACHE[_long] = _long

#: Canonical display spelling for names added through the API in lowercase.
PRETTY_NAMES: dict[str, str] = {n.lower(): n for n in _COMMON_NAMES}
PRETTY_NAMES["call-id"] = "Call-ID"
PRETTY_NAMES["cseq"] = "CSeq"


def is_token(text: str) -> bool:
    return _TOKEN_RE.fullmatch(text) is not None


def canonical_name(raw: str) -> str:
    """Return the lowercase long form of a header name (``"v"`` -> ``"via"``).

    Surrounding whitespace is ignored. Raises :class:`SipParseError` if the name is not a token.
    """
    key = _NAME_CACHE.get(raw)
    if key is not None:
        return key
    name = raw.strip(" \t")
    if _TOKEN_RE.fullmatch(name) is None:
        raise SipParseError("Malformed header name")
    key = name.lower()
    key = COMPACT_FORMS.get(key, key)
    if len(_NAME_CACHE) < _NAME_CACHE_MAX:
        _NAME_CACHE[raw] = key
    return key


def text_from_wire(value: str) -> str:
    """Turn a wire string into text: decode its octets as UTF-8 when they are valid UTF-8."""
    if value.isascii():
        return value
    raw = value.encode("latin-1", "replace")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return value


def text_to_wire(text: str) -> str:
    """Turn text into a wire string (its UTF-8 octets), e.g. for a display name with accents."""
    return text if text.isascii() else text.encode("utf-8").decode("latin-1")


def unquote(value: str) -> str:
    """Remove the quotes of a quoted-string and resolve its quoted-pairs; else return as is."""
    if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
        inner = value[1:-1]
        return _QPAIR_RE.sub(r"\1", inner) if "\\" in inner else inner
    return value


def quote(text: str) -> str:
    """Make a quoted-string of ``text``."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


# ---------------------------------------------------------------------------------------------
# Comma lists and parameters


def split_comma(value: str, *, allow_empty: bool = False, what: str = "header") -> list[str]:
    """Split a header value on commas outside quoted strings and outside ``<...>``.

    Elements are stripped of surrounding whitespace. Empty elements raise
    :class:`SipParseError` unless ``allow_empty`` is true, in which case they are dropped.
    """
    if '"' not in value and "<" not in value:
        parts = value.split(",")
        out = []
        for p in parts:
            p = p.strip(" \t")
            if p:
                out.append(p)
            elif not allow_empty:
                raise SipParseError(f"Empty list element in {what}")
        return out
    out = []
    start = 0
    i = 0
    n = len(value)
    in_angle = False
    while i < n:
        c = value[i]
        if c == '"' and not in_angle:
            m = _QUOTED_RE.match(value, i)
            if m is None:
                raise SipParseError(f"Unterminated quoted string in {what}")
            i = m.end()
            continue
        if c == "<":
            in_angle = True
        elif c == ">":
            in_angle = False
        elif c == "," and not in_angle:
            p = value[start:i].strip(" \t")
            if p:
                out.append(p)
            elif not allow_empty:
                raise SipParseError(f"Empty list element in {what}")
            start = i + 1
        i += 1
    if in_angle:
        raise SipParseError(f"Unterminated <> in {what}")
    p = value[start:].strip(" \t")
    if p:
        out.append(p)
    elif not allow_empty:
        raise SipParseError(f"Empty list element in {what}")
    return out


_PARAM_RE = re.compile(
    rf"[ \t]*;[ \t]*({TOKEN})(?:[ \t]*=[ \t]*({_GVALUE}|{_QUOTED}))?[ \t]*", re.DOTALL
)
# Parameters in their tidy form: no whitespace and no quoted strings.
_TIDY_PARAMS = rf"(?:;{TOKEN}(?:={_GVALUE})?)*+"
_TIDY_PARAMS_RE = re.compile(_TIDY_PARAMS)


def _split_tidy_params(text: str) -> dict[str, str | None]:
    params: dict[str, str | None] = {}
    if text:
        for item in text[1:].split(";"):
            name, eq, value = item.partition("=")
            params[name.lower()] = value if eq else None
    return params


def _scan_params(text: str, pos: int, what: str) -> tuple[dict[str, str | None], int]:
    """Scan ``*(SEMI generic-param)`` from ``pos``; return the dict and the end position."""
    params: dict[str, str | None] = {}
    match = _PARAM_RE.match
    n = len(text)
    while pos < n:
        m = match(text, pos)
        if m is None:
            break
        params[m.group(1).lower()] = m.group(2)
        pos = m.end()
    return params, pos


_PARAM_EQ_RE = re.compile(rf"{TOKEN}[ \t]*+=[ \t]*+")


def _param_error(rest: str, what: str) -> SipParseError:
    """Name the defect of a parameter list that failed to parse (error path only)."""
    r = rest.lstrip(" \t")
    if r.startswith(";"):
        after = r[1:].lstrip(" \t")
        if not after or after[0] in ";,":
            return SipParseError(f"Empty parameter in {what}")
        m = _PARAM_EQ_RE.match(after)
        if m is not None and after[m.end() : m.end() + 1] == '"' and (
            _QUOTED_RE.match(after, m.end()) is None
        ):
            return SipParseError(f"Unterminated quoted string in {what}")
        return SipParseError(f"Malformed parameter in {what}")
    if r.startswith(","):
        return SipParseError(f"Unexpected comma in {what}")
    return SipParseError(f"Malformed {what} header")


def parse_params(text: str, *, what: str = "header") -> dict[str, str | None]:
    """Parse a ``;name=value;flag`` list into an ordered dict (keys lowercased).

    Values are kept raw (a quoted-string keeps its quotes: use :func:`unquote`); a flag maps to
    None. Empty parameters (``;;``) and anything that is not a parameter raise.
    """
    if _TIDY_PARAMS_RE.fullmatch(text) is not None:
        return _split_tidy_params(text)
    params, pos = _scan_params(text, 0, what)
    if text[pos:].strip(" \t"):
        raise _param_error(text[pos:], what)
    return params


def format_params(params: dict[str, str | None]) -> str:
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params.items())


class _Params:
    """Mixin: a ``params`` dict parsed lazily from already-validated raw text.

    ``_params`` is None only while ``_praw`` is the text a parser matched with
    ``_TIDY_PARAMS`` (every parser that leaves it None does; the others set the dict),
    so the lazy split needs no second check.
    """

    __slots__ = ()
    _params: dict[str, str | None] | None
    _praw: str

    @property
    def params(self) -> dict[str, str | None]:
        p = self._params
        if p is None:
            p = _split_tidy_params(self._praw)
            self._params = p  # type: ignore[misc]  # the slot lives in the subclasses
        return p

    @params.setter
    def params(self, value: dict[str, str | None]) -> None:
        self._params = {k.lower(): v for k, v in value.items()}  # type: ignore[misc]

    def _params_text(self) -> str:
        praw = self._praw
        if self._params is None and praw == praw.lower():
            return praw  # as received, already canonical
        return format_params(self.params)


# ---------------------------------------------------------------------------------------------
# Via


class Via(_Params):
    """One Via value: ``SIP/2.0/UDP host:port;params``."""

    __slots__ = ("_params", "_praw", "host", "port", "protocol", "transport")

    protocol: str
    transport: str
    host: str
    port: int | None

    def __init__(
        self,
        transport: str = "",
        host: str = "",
        port: int | None = None,
        params: dict[str, str | None] | None = None,
        *,
        protocol: str = "SIP/2.0",
    ) -> None:
        if not transport and not host:
            return  # the parsers' allocation (see _new_via): they fill in every slot
        self.protocol = protocol
        self.transport = transport.upper()
        self.host = host.lower()
        self.port = port
        self._params = {k.lower(): v for k, v in params.items()} if params else {}
        self._praw = ""

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")

    @property
    def received(self) -> str | None:
        return self.params.get("received")

    @property
    def rport(self) -> str | None:
        """None if absent, ``""`` if present without a value, else the value."""
        p = self.params
        if "rport" not in p:
            return None
        v = p["rport"]
        return "" if v is None else v

    @property
    def maddr(self) -> str | None:
        return self.params.get("maddr")

    @property
    def ttl(self) -> int | None:
        v = self.params.get("ttl")
        if v is None:
            return None
        return parse_uint(v, 255, "Via ttl")

    @property
    def sent_by(self) -> tuple[str, int | None]:
        return self.host, self.port

    def copy(self) -> Via:
        v = _new_via(Via)
        v.protocol = self.protocol
        v.transport = self.transport
        v.host = self.host
        v.port = self.port
        v._params = None if self._params is None else dict(self._params)
        v._praw = self._praw
        return v

    def __str__(self) -> str:
        hp = self.host if self.port is None else f"{self.host}:{self.port}"
        return f"{self.protocol}/{self.transport} {hp}{self._params_text()}"

    def __repr__(self) -> str:
        return f"Via({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Via):
            return NotImplemented
        return str(self) == str(other)

    __hash__ = None  # type: ignore[assignment]


# How the parsers allocate a Via (then fill in its slots): the cheapest way in both builds.
# Interpreted, ``Via.__new__`` is ``object.__new__``; compiled with mypyc (which refuses
# ``object.__new__`` for its native classes) it runs ``__init__`` without arguments, which
# leaves the slots unset as well. The same holds for NameAddr, SipURI, Request and Response.
_new_via = Via.__new__

_VIA_FAST_RE = re.compile(
    rf"SIP/2\.0/(UDP|TCP|TLS|SCTP|WSS?) ([a-z0-9_.\-]++|\[[0-9A-Fa-f:.]++\])"
    rf"(?::({PORT_RE}))?({_TIDY_PARAMS})"
)
_VIA_SLOW_RE = re.compile(
    rf"[ \t]*({TOKEN})[ \t]*/[ \t]*({TOKEN})[ \t]*/[ \t]*({TOKEN})[ \t]+({HOST_RE})"
    r"(?:[ \t]*:[ \t]*([0-9]+))?"
)


def _via_one(value: str) -> Via:
    m = _VIA_FAST_RE.fullmatch(value)
    if m is None:
        return _via_slow(value)
    transport, host, port, praw = m.groups()
    v = _new_via(Via)
    v.protocol = "SIP/2.0"
    v.transport = transport
    v.host = _check_via_ipv6(host) if host[0] == "[" else host
    v.port = None if port is None else int(port)
    v._params = None
    v._praw = praw
    return v


def _check_via_ipv6(host: str) -> str:
    try:
        return _check_ipv6(host)
    except SipParseError:
        raise SipParseError("Malformed Via header: bad IPv6 address") from None


def _via_slow(value: str) -> Via:
    m = _VIA_SLOW_RE.match(value)
    if m is None:
        raise SipParseError("Malformed Via header")
    name, version, transport, host, port = m.groups()
    v = _new_via(Via)
    v.protocol = f"{name.upper()}/{version}"
    v.transport = transport.upper()
    v.host = _check_via_ipv6(host) if host[0] == "[" else host.lower()
    if port is None:
        v.port = None
    else:
        v.port = _bounded_int(port, 65535, "Malformed Via header: port out of range")
    params, pos = _scan_params(value, m.end(), "Via")
    if value[pos:].strip(" \t"):
        raise _param_error(value[pos:], "Via")
    v._params = params
    v._praw = format_params(params)
    return v


def parse_via(value: str) -> list[Via]:
    """Parse one Via header value, which may hold several comma-separated Vias."""
    value = value.strip(" \t")
    if "," not in value:
        if not value:
            raise SipParseError("Empty Via header")
        return [_via_one(value)]
    return [_via_one(v) for v in split_comma(value, what="Via")]


# ---------------------------------------------------------------------------------------------
# name-addr / addr-spec


class NameAddr(_Params):
    """A name-addr or addr-spec with header parameters (From, To, Contact, Route, ...).

    ``display`` is unquoted with quoted-pairs resolved (None when absent). For the addr-spec
    form without ``<>``, parameters after the URI are header parameters (RFC 3261 §20.10).
    ``uri`` is parsed on first access (its syntax was already checked).
    """

    __slots__ = ("_params", "_praw", "_uri", "_utext", "display")

    display: str | None
    _uri: SipURI | TelURI | AbsoluteURI | None
    _utext: str

    def __init__(
        self,
        uri: SipURI | TelURI | AbsoluteURI | str | None = None,
        display: str | None = None,
        params: dict[str, str | None] | None = None,
    ) -> None:
        if uri is None:
            return  # the parsers' allocation (see _new_via): they fill in every slot
        self._uri = parse_uri(uri) if isinstance(uri, str) else uri
        self._utext = str(self._uri)
        self.display = display
        self._params = {k.lower(): v for k, v in params.items()} if params else {}
        self._praw = ""

    @property
    def uri(self) -> SipURI | TelURI | AbsoluteURI:
        u = self._uri
        if u is None:
            u = self._uri = parse_uri(self._utext)
        return u

    @uri.setter
    def uri(self, value: SipURI | TelURI | AbsoluteURI) -> None:
        self._uri = value

    @property
    def tag(self) -> str | None:
        if self._params is None and "tag" not in self._praw.lower():
            return None
        return self.params.get("tag")

    @tag.setter
    def tag(self, value: str | None) -> None:
        if value is None:
            self.params.pop("tag", None)
        else:
            self.params["tag"] = value

    @property
    def q(self) -> float | None:
        v = self.params.get("q")
        if v is None:
            return None
        if _QVALUE_RE.fullmatch(v) is None or float(v) > 1.0:
            raise SipParseError("Bad q value in Contact")
        return float(v)

    @property
    def expires(self) -> int | None:
        v = self.params.get("expires")
        if v is None:
            return None
        return parse_uint(unquote(v), 2**32 - 1, "expires parameter")

    def copy(self) -> NameAddr:
        a = _new_name_addr(NameAddr)
        a.display = self.display
        a._uri = None if self._uri is None else self._uri.copy()
        a._utext = self._utext
        a._params = None if self._params is None else dict(self._params)
        a._praw = self._praw
        return a

    def __str__(self) -> str:
        uri = self._utext if self._uri is None else str(self._uri)
        if self.display is None:
            return f"<{uri}>{self._params_text()}"
        return f"{quote(self.display)} <{uri}>{self._params_text()}"

    def __repr__(self) -> str:
        return f"NameAddr({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, NameAddr):
            return NotImplemented
        return str(self) == str(other)

    __hash__ = None  # type: ignore[assignment]


_new_name_addr = NameAddr.__new__  # see _new_via

_QVALUE_RE = re.compile(r"[01](?:\.[0-9]{0,3})?")

# Fast paths for the tidy forms: `"Display" <sip-uri>;p=v`, `Display Name <sip-uri>;p` and
# `sip-uri;p=v`. The URI grammar is checked by the same pattern parse_uri uses.
_NA_FAST_RE = re.compile(
    rf'(?:"([^"\\]*+)"[ \t]*+|({TOKEN}(?:[ \t]++{TOKEN})*+)?[ \t]*+)'
    rf"<({sip_uri_pattern('(?:')})>"
    rf"({_TIDY_PARAMS})"
)
_ADDR_SPEC_FAST_RE = re.compile(rf"({sip_uri_pattern('(?:', addr_spec=True)})({_TIDY_PARAMS})")
_DISPLAY_TOKENS_RE = re.compile(rf"((?:{TOKEN}(?:[ \t]+{TOKEN})*)?)[ \t]*<")
_ADDR_SPEC_URI_RE = re.compile(r"[^\s;,<>\"]+")


def _uri_in(text: str, what: str) -> SipURI | TelURI | AbsoluteURI:
    try:
        return parse_uri(text)
    except SipParseError as e:
        raise SipParseError(f"Malformed {what} header: {e.reason}") from None


def _name_addr_fast(value: str, what: str) -> NameAddr | None:
    if value[-1:] == ">" or "<" in value:
        m = _NA_FAST_RE.fullmatch(value)
        if m is None:
            return None
        quoted, display, utext, praw = m.groups()
        if quoted is not None:
            display = quoted
        elif display is not None and ("\t" in display or "  " in display):
            display = " ".join(display.split())
    else:
        m = _ADDR_SPEC_FAST_RE.fullmatch(value)
        if m is None:
            return None
        utext, praw = m.groups()
        display = None
    a = _new_name_addr(NameAddr)
    a.display = display
    a._uri = _uri_in(utext, what) if "[" in utext else None
    a._utext = utext
    a._params = None
    a._praw = praw
    return a


def _name_addr_at(value: str, pos: int, what: str, single: bool) -> tuple[NameAddr, int]:
    """Careful parser: one name-addr/addr-spec with params starting at ``pos``.

    Returns the value and the position where it stopped (at a comma or the end).
    """
    n = len(value)
    while pos < n and value[pos] in " \t":
        pos += 1
    if pos >= n:
        raise SipParseError(f"Empty {what} header")
    display: str | None = None
    if value[pos] == '"':
        m = _QUOTED_RE.match(value, pos)
        if m is None:
            raise SipParseError(f"Unterminated quoted string in {what}")
        display = unquote(m.group(0))
        pos = m.end()
        while pos < n and value[pos] in " \t":
            pos += 1
        if pos >= n or value[pos] != "<":
            raise SipParseError(f"Malformed {what} header: display name without <URI>")
        angle = True
    else:
        m = _DISPLAY_TOKENS_RE.match(value, pos)
        if m is not None:
            toks = m.group(1).split()
            display = " ".join(toks) if toks else None
            pos = m.end() - 1
            angle = True
        else:
            lt = value.find("<", pos)
            if lt >= 0:
                head = value[pos:lt]
                if "," in head and '"' not in head:
                    raise SipParseError(f"Unquoted display name contains a comma in {what}")
                if '"' in head:
                    raise SipParseError(f"Malformed display name in {what}")
                raise SipParseError(f"Malformed display name in {what}")
            angle = False
    if angle:
        gt = value.find(">", pos)
        if gt < 0:
            raise SipParseError(f"Unterminated <> in {what}")
        inner = value[pos + 1 : gt]
        if inner != inner.strip(" \t"):
            raise SipParseError(f"Whitespace inside <> in {what}")
        if "<" in inner:
            raise SipParseError(f"Malformed {what} header: nested <")
        uri = _uri_in(inner, what)
        utext = inner
        pos = gt + 1
    else:
        m = _ADDR_SPEC_URI_RE.match(value, pos)
        if m is None:
            raise SipParseError(f"Malformed {what} header")
        text = m.group(0)
        if "?" in text:
            raise SipParseError(f"URI with headers must be enclosed in <> in {what}")
        uri = _uri_in(text, what)
        utext = text
        pos = m.end()
    params, pos = _scan_params(value, pos, what)
    while pos < n and value[pos] in " \t":
        pos += 1
    if pos < n and not (value[pos] == "," and not single):
        if value[pos] == ",":
            raise SipParseError(f"Multiple values in single-valued {what} header")
        raise _param_error(value[pos:], what)
    a = _new_name_addr(NameAddr)
    a.display = display
    a._uri = uri
    a._utext = utext
    a._params = params
    a._praw = format_params(params)
    return a, pos


def parse_name_addr(value: str, *, what: str = "header") -> NameAddr:
    """Parse a single name-addr or addr-spec with parameters (From, To, Refer-To...)."""
    value = value.strip(" \t")
    a = _name_addr_fast(value, what)
    if a is not None:
        return a
    return _name_addr_at(value, 0, what, True)[0]


def parse_name_addr_list(value: str, *, what: str = "header") -> list[NameAddr]:
    """Parse a comma-separated list of name-addr/addr-spec values (Contact, Route...)."""
    value = value.strip(" \t")
    if "," not in value:
        return [parse_name_addr(value, what=what)]
    out = []
    for item in split_comma(value, what=what):
        a = _name_addr_fast(item, what)
        if a is None:
            a = _name_addr_at(item, 0, what, True)[0]
        out.append(a)
    return out


# ---------------------------------------------------------------------------------------------
# CSeq and numbers


class CSeq(NamedTuple):
    seq: int
    method: str

    def __str__(self) -> str:
        return f"{self.seq} {self.method}"


_CSEQ_RE = re.compile(rf"([0-9]+)[ \t]+({TOKEN})")
_DIGITS_RE = re.compile(r"[0-9]+")
_CSEQ_MAX = 2**31 - 1


def _bounded_int(digits: str, maximum: int, reason: str) -> int:
    """int() of an ASCII digit string, refusing attacker-sized values before converting."""
    d = digits.lstrip("0")
    if len(d) > len(str(maximum)):
        raise SipParseError(reason)
    n = int(d) if d else 0
    if n > maximum:
        raise SipParseError(reason)
    return n


#: Methods defined by RFC 3261 and its extensions.
RFC_METHODS = frozenset(
    ["INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "PRACK", "SUBSCRIBE", "NOTIFY", "PUBLISH", "INFO", "REFER", "MESSAGE", "UPDATE"]
)
_tuple_new = tuple.__new__


def parse_cseq(value: str) -> CSeq:
    """Parse ``1*DIGIT LWS Method``; the number must be below 2**31."""
    parts = value.strip(" \t").split(" ")
    if len(parts) == 2:
        num, method = parts
        if len(num) < 10 and num.isdigit() and num.isascii() and method in RFC_METHODS:
            return _tuple_new(CSeq, (int(num), method))
    m = _CSEQ_RE.fullmatch(value.strip(" \t"))
    if m is None:
        v = value.strip(" \t")
        if not v:
            raise SipParseError("Empty CSeq header")
        num, _, method = v.partition(" ")
        if not _DIGITS_RE.fullmatch(num):
            raise SipParseError("Bad CSeq: sequence number is not a number")
        raise SipParseError("Bad CSeq: invalid method")
    num, method = m.groups()
    if len(num) < 10:
        return CSeq(int(num), method)
    return CSeq(_bounded_int(num, _CSEQ_MAX, "Bad CSeq: number out of range"), method)


def parse_uint(value: str, maximum: int, what: str) -> int:
    """Parse a decimal number in 0..maximum; ``what`` names the field in the error reason."""
    v = value.strip(" \t")
    if _DIGITS_RE.fullmatch(v) is None:
        raise SipParseError(f"Bad {what}: not a number")
    return _bounded_int(v, maximum, f"Bad {what}: number out of range")


def parse_max_forwards(value: str) -> int:
    return parse_uint(value, 255, "Max-Forwards")


#: Content-Length values above this are refused outright (far above any sane message size).
MAX_CONTENT_LENGTH = 2**24


def parse_content_length(value: str) -> int:
    return parse_uint(value, MAX_CONTENT_LENGTH, "Content-Length")


def parse_expires(value: str) -> int:
    return parse_uint(value, 2**32 - 1, "Expires")


def parse_token_list(value: str, *, lower: bool = True, what: str = "header") -> list[str]:
    """Parse a comma-separated list of tokens (Require, Supported, Allow...)."""
    out = []
    for item in split_comma(value, allow_empty=True, what=what):
        if _TOKEN_RE.fullmatch(item) is None:
            raise SipParseError(f"Malformed {what} header")
        out.append(item.lower() if lower else item)
    return out


# Also used by the message layer.
__all__ += ["MAX_CONTENT_LENGTH", "PRETTY_NAMES", "RFC_METHODS", "TOKEN", "TOKEN_CHARS"]
