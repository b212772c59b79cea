"""SIP, SIPS and tel URIs (RFC 3261 §19.1, §25; RFC 3966; RFC 5118).

Every string here is a "wire string": one character per octet as received (the message layer
decodes with latin-1), so nothing is lost and re-encoding with latin-1 gives the exact bytes.
"""

from __future__ import annotations

import ipaddress
import re

from .errors import SipParseError

__all__ = [
    "URI",
    "AbsoluteURI",
    "SipURI",
    "TelURI",
    "parse_uri",
    "unescape",
    "uri_equal",
]

# RFC 3261 §25 character classes, as regex class bodies.
_UNRESERVED = r"A-Za-z0-9\-_.!~*'()"
_USER = _UNRESERVED + r"%&=+$,;?/"
_PASSWORD = _UNRESERVED + r"%&=+$,"
_PARAMCHAR = _UNRESERVED + r"%\[\]/:&+$"
_HDRCHAR = _UNRESERVED + r"%\[\]/?:+$"
# Lenient hostname (underscores are common in the wild) or an IPv6 reference; IPv6 references
# are checked further by _check_ipv6.
HOST_RE = r"[A-Za-z0-9_.\-]++|\[[0-9A-Fa-f:.]++\]"
HOSTNAME_RE = r"[A-Za-z0-9_.\-]++"
#: 0..65535 as 1 to 5 digits (leading zeros allowed), so no range check is needed after it.
PORT_RE = (
    r"(?:[0-9]{1,4}+|0[0-9]{4}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]"
    r"|6553[0-5])"
)
URI_PARAMS_RE = rf"(?:;[{_PARAMCHAR}]++(?:=[{_PARAMCHAR}]++)?)*+"


def sip_uri_pattern(group: str = "(", *, addr_spec: bool = False, ipv6: bool = True) -> str:
    """The SIP/SIPS URI grammar as a regex; ``group`` opens each of its 7 groups.

    With ``addr_spec`` the user part excludes ``;``, ``?`` and ``,`` and there are no URI
    parameters or headers: that is the form allowed outside ``<>`` (RFC 3261 §20.10).
    Without ``ipv6`` only hostnames and IPv4 addresses match (fast paths leave IPv6
    references to the careful path, which validates them).
    """
    user = _USER.replace(";?", "").replace(",", "") if addr_spec else _USER
    tail = "" if addr_spec else (
        rf"{group}{URI_PARAMS_RE})"
        rf"(?:\?{group}[{_HDRCHAR}=&]*+))?"
    )
    return (
        rf"{group}[sS][iI][pP][sS]?):"
        rf"(?:{group}[{user}]++)(?::{group}[{_PASSWORD}]*+))?@)?"
        rf"{group}{HOST_RE if ipv6 else HOSTNAME_RE})"
        rf"(?::{group}{PORT_RE}))?"
        + tail
    )


_SIP_URI_RE = re.compile(sip_uri_pattern())
_SCHEME_RE = re.compile(r"([A-Za-z][A-Za-z0-9+\-.]*):")
_OPAQUE_RE = re.compile(r"[A-Za-z0-9\-_.!~*'();/?:@&=+$,%\[\]#]+")
# A tel number is a run of phone digits and visual separators; that it holds at least one
# digit is checked in code (a regex saying so would backtrack quadratically on long input).
_TEL_RE = re.compile(
    r"(\+[0-9().\-]++|[0-9A-Fa-f*#().\-]++)"
    rf"((?:;[{_PARAMCHAR}]++(?:=[{_PARAMCHAR}]++)?)*+)"
)
_TEL_DIGIT_RE = re.compile(r"[0-9A-Fa-f*#]")
_GLOBAL_DIGIT_RE = re.compile(r"[0-9]")
_ESCAPE_RE = re.compile(r"%([0-9A-Fa-f]{2})")
_VISUAL_SEP = str.maketrans("", "", "-.()")


def _unescape_one(m: re.Match[str]) -> str:
    return chr(int(m.group(1), 16))


def unescape(text: str) -> str:
    """Replace each ``%HH`` escape with its octet, once (never recursively).

    Invalid sequences such as ``%ZZ`` are left as they are.
    """
    if "%" not in text:
        return text
    return _ESCAPE_RE.sub(_unescape_one, text)


def _check_ipv6(ref: str) -> str:
    """Validate an IPv6 reference ``[...]``; return it lowercased.

    RFC 5118 §4.10: RFC 3261's ABNF allowed a three-colon form such as
    ``2001:db8:::192.0.2.1``; receivers tolerate it, so it is accepted as its two-colon twin.
    """
    inner = ref[1:-1]
    try:
        ipaddress.IPv6Address(inner)
    except ValueError:
        fixed = inner.replace(":::", "::", 1)
        if fixed == inner or ":::" in fixed:
            raise SipParseError("Malformed IPv6 reference in URI") from None
        try:
            ipaddress.IPv6Address(fixed)
        except ValueError:
            raise SipParseError("Malformed IPv6 reference in URI") from None
    return ref.lower()


def parse_uri_params(text: str) -> dict[str, str | None]:
    """Parse an already-validated ``;name=value;flag`` URI parameter string."""
    params: dict[str, str | None] = {}
    if not text:
        return params
    for item in text[1:].split(";"):
        name, eq, value = item.partition("=")
        params[name.lower()] = value if eq else None
    return params


def _format_params(params: dict[str, str | None]) -> str:
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params.items())


class SipURI:
    """A ``sip:`` or ``sips:`` URI.

    ``user`` and ``password`` are kept as received (still %-escaped); ``host`` is lowercased
    (IPv6 references keep their brackets); ``params`` keys are lowercased and values kept as
    received; ``headers`` is the raw text after ``?``.
    """

    __slots__ = ("_params", "_praw", "headers", "host", "password", "port", "scheme", "user")

    scheme: str
    user: str | None
    password: str | None
    host: str
    port: int | None
    headers: str | None
    _params: dict[str, str | None] | None
    _praw: str

    def __init__(
        self,
        host: str = "",
        user: str | None = None,
        *,
        scheme: str = "sip",
        password: str | None = None,
        port: int | None = None,
        params: dict[str, str | None] | None = None,
        headers: str | None = None,
    ) -> None:
        if not host:
            return  # the parsers' allocation (see _new_sip_uri): they fill in every slot
        self.scheme = scheme.lower()
        self.user = user
        self.password = password
        self.host = host.lower()
        self.port = port
        self._params = {k.lower(): v for k, v in params.items()} if params else {}
        self._praw = ""
        self.headers = headers

    @property
    def params(self) -> dict[str, str | None]:
        p = self._params
        if p is None:
            p = self._params = parse_uri_params(self._praw)
        return p

    @params.setter
    def params(self, value: dict[str, str | None]) -> None:
        self._params = {k.lower(): v for k, v in value.items()}

    @property
    def transport(self) -> str | None:
        t = self.params.get("transport")
        return t.lower() if t else None

    @property
    def lr(self) -> bool:
        return "lr" in self.params

    @property
    def maddr(self) -> str | None:
        return self.params.get("maddr")

    @property
    def user_unescaped(self) -> str | None:
        return None if self.user is None else unescape(self.user)

    @property
    def secure(self) -> bool:
        return self.scheme == "sips"

    def host_port(self) -> tuple[str, int | None]:
        return self.host, self.port

    def copy(self) -> SipURI:
        u = _new_sip_uri(SipURI)
        u.scheme = self.scheme
        u.user = self.user
        u.password = self.password
        u.host = self.host
        u.port = self.port
        u._params = None if self._params is None else dict(self._params)
        u._praw = self._praw
        u.headers = self.headers
        return u

    def with_params(self, params: dict[str, str | None] | None = None, **kw: str | None) -> SipURI:
        """Return a copy with parameters added or replaced (``None`` value = flag)."""
        u = self.copy()
        p = u.params
        for k, v in (params or {}).items():
            p[k.lower()] = v
        for k, v in kw.items():
            p[k.lower()] = v
        return u

    def without_params(self, *names: str) -> SipURI:
        u = self.copy()
        p = u.params
        for n in names:
            p.pop(n.lower(), None)
        return u

    def __str__(self) -> str:
        parts = [self.scheme, ":"]
        if self.user is not None:
            parts.append(self.user)
            if self.password is not None:
                parts.append(":")
                parts.append(self.password)
            parts.append("@")
        parts.append(self.host)
        if self.port is not None:
            parts.append(f":{self.port}")
        praw = self._praw
        if self._params is None and praw == praw.lower():
            parts.append(praw)  # as received, already canonical
        else:
            parts.append(_format_params(self.params))
        if self.headers is not None:
            parts.append("?")
            parts.append(self.headers)
        return "".join(parts)

    def __repr__(self) -> str:
        return f"SipURI({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, (SipURI, TelURI, AbsoluteURI)):
            return NotImplemented
        return uri_equal(self, other)

    def __hash__(self) -> int:
        return hash((self.scheme, self.user_unescaped, self.host, self.port))


class TelURI:
    """A ``tel:`` URI (RFC 3966): ``number`` as received and lowercased-key ``params``."""

    __slots__ = ("number", "params")
    scheme = "tel"

    def __init__(self, number: str, params: dict[str, str | None] | None = None) -> None:
        self.number = number
        self.params = {k.lower(): v for k, v in params.items()} if params else {}

    @property
    def is_global(self) -> bool:
        return self.number.startswith("+")

    @property
    def digits(self) -> str:
        """The number with visual separators removed."""
        return self.number.translate(_VISUAL_SEP)

    def copy(self) -> TelURI:
        return TelURI(self.number, dict(self.params))

    def __str__(self) -> str:
        return f"tel:{self.number}{_format_params(self.params)}"

    def __repr__(self) -> str:
        return f"TelURI({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, (SipURI, TelURI, AbsoluteURI)):
            return NotImplemented
        return uri_equal(self, other)

    def __hash__(self) -> int:
        return hash(("tel", self.digits.lower()))


class AbsoluteURI:
    """Any other ``scheme:opaque`` URI; the server decides whether it can handle it (416)."""

    __slots__ = ("opaque", "scheme")

    def __init__(self, scheme: str, opaque: str) -> None:
        self.scheme = scheme.lower()
        self.opaque = opaque

    def copy(self) -> AbsoluteURI:
        return AbsoluteURI(self.scheme, self.opaque)

    def __str__(self) -> str:
        return f"{self.scheme}:{self.opaque}"

    def __repr__(self) -> str:
        return f"AbsoluteURI({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, (SipURI, TelURI, AbsoluteURI)):
            return NotImplemented
        return uri_equal(self, other)

    def __hash__(self) -> int:
        return hash((self.scheme, unescape(self.opaque)))


URI = SipURI | TelURI | AbsoluteURI

# How the parsers allocate a SipURI (then fill in its slots): the cheapest way in both builds.
# Interpreted, ``SipURI.__new__`` is ``object.__new__``; compiled with mypyc (which refuses
# ``object.__new__`` for its native classes) it runs ``__init__`` without arguments, which
# leaves the slots unset as well.
_new_sip_uri = SipURI.__new__


def parse_uri(text: str) -> SipURI | TelURI | AbsoluteURI:
    """Parse a URI; raise :class:`SipParseError` when a sip/sips/tel URI is malformed.

    Any other syntactically valid ``scheme:...`` becomes an :class:`AbsoluteURI`.
    """
    m = _SIP_URI_RE.fullmatch(text)
    if m is not None:
        return uri_from_match(m)
    return _parse_uri_slow(text)


def uri_from_match(m: re.Match[str]) -> SipURI:
    """Build a SipURI from a match of the SIP URI pattern (groups as in sip_uri_pattern)."""
    return uri_from_groups(m.groups())


def uri_from_groups(groups: tuple[str | None, ...]) -> SipURI:
    """Build a SipURI from the 7 groups of :func:`sip_uri_pattern`, in order."""
    scheme, user, password, host, port, praw, headers = groups[:7]
    assert scheme is not None and host is not None and praw is not None  # always captured
    u = _new_sip_uri(SipURI)
    u.scheme = "sip" if scheme == "sip" else scheme.lower()
    u.user = user
    u.password = password
    u.host = _check_ipv6(host) if host[0] == "[" else host.lower()
    u.port = None if port is None else int(port)
    u._params = None
    u._praw = praw
    u.headers = headers
    return u


def _parse_uri_slow(text: str) -> SipURI | TelURI | AbsoluteURI:
    if not isinstance(text, str):
        raise SipParseError("Malformed URI")
    if not text:
        raise SipParseError("Empty URI")
    if text[0] == "<":
        raise SipParseError("URI enclosed in <>")
    if any(c in " \t\r\n" for c in text):
        raise SipParseError("Whitespace in URI")
    m = _SCHEME_RE.match(text)
    if m is None:
        raise SipParseError("Malformed URI: no scheme")
    scheme = m.group(1).lower()
    rest = text[m.end():]
    if scheme in ("sip", "sips"):
        raise SipParseError(_diagnose_sip(rest))
    if scheme == "tel":
        t = _TEL_RE.fullmatch(rest)
        number = "" if t is None else t.group(1)
        digit = _GLOBAL_DIGIT_RE if number[:1] == "+" else _TEL_DIGIT_RE
        if t is None or digit.search(number) is None:
            raise SipParseError("Malformed tel URI")
        return TelURI(t.group(1), parse_uri_params(t.group(2)))
    if _OPAQUE_RE.fullmatch(rest) is None:
        raise SipParseError("Malformed URI")
    return AbsoluteURI(scheme, rest)


def _diagnose_sip(rest: str) -> str:
    """Name the defect of a sip/sips URI that failed the fast regex (error path only)."""
    if "<" in rest or ">" in rest:
        return "Invalid character in SIP URI"
    hostpart = rest.split("?", 1)[0]
    at = hostpart.rfind("@")
    hostpart = hostpart[at + 1 :].split(";", 1)[0]
    if hostpart.startswith("["):
        if "]" not in hostpart:
            return "Malformed IPv6 reference in URI"
        port = hostpart[hostpart.index("]") + 1 :]
    else:
        if hostpart.count(":") > 1:
            return "IPv6 address in URI without brackets"
        port = hostpart.partition(":")[2] if ":" in hostpart else ""
    if port:
        digits = port.removeprefix(":")
        if not digits.isascii() or not digits.isdigit():
            return "Bad port in URI"
        if len(digits) > 5 or int(digits) > 65535:
            return "Bad port in URI"
    if not hostpart or hostpart.startswith(":"):
        return "Missing host in SIP URI"
    if ";;" in rest or rest.endswith(";"):
        return "Empty parameter in SIP URI"
    return "Malformed SIP URI"


def _params_equal(a: dict[str, str | None], b: dict[str, str | None]) -> bool:
    for name in ("user", "ttl", "method", "maddr", "transport"):
        if (name in a) != (name in b):
            return False
    for name, va in a.items():
        if name in b:
            vb = b[name]
            if (va is None) != (vb is None):
                return False
            if va is not None and vb is not None and unescape(va).lower() != unescape(vb).lower():
                return False
    return True


def _headers_set(headers: str | None) -> dict[str, str]:
    out: dict[str, str] = {}
    if headers:
        for item in headers.split("&"):
            name, _, value = item.partition("=")
            out[unescape(name).lower()] = unescape(value)
    return out


def uri_equal(a: URI, b: URI) -> bool:
    """Compare two URIs per RFC 3261 §19.1.4 (a practical subset).

    Escaped and unescaped forms are equal; user and password compare case-sensitively; host,
    scheme and parameter names case-insensitively; ``user``, ``ttl``, ``method``, ``maddr``
    and ``transport`` must appear in both or neither; other parameters only compare when both
    have them; URI headers must all match.
    """
    if isinstance(a, SipURI) and isinstance(b, SipURI):
        return (
            a.scheme == b.scheme
            and a.user_unescaped == b.user_unescaped
            and (None if a.password is None else unescape(a.password))
            == (None if b.password is None else unescape(b.password))
            and a.host == b.host
            and a.port == b.port
            and _params_equal(a.params, b.params)
            and _headers_set(a.headers) == _headers_set(b.headers)
        )
    if isinstance(a, TelURI) and isinstance(b, TelURI):
        return a.digits.lower() == b.digits.lower() and {
            k: (None if v is None else unescape(v).lower()) for k, v in a.params.items()
        } == {k: (None if v is None else unescape(v).lower()) for k, v in b.params.items()}
    if isinstance(a, AbsoluteURI) and isinstance(b, AbsoluteURI):
        return a.scheme == b.scheme and unescape(a.opaque) == unescape(b.opaque)
    return False
