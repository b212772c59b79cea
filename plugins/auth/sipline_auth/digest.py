"""Digest computation (RFC 7616 §3.4, RFC 8760) and the wire format of challenges and credentials.

Pure functions, no I/O. SIP uses HTTP Digest with the request method and the
digest-uri (RFC 3261 §22.4); RFC 8760 adds SHA-256 and SHA-512-256 to MD5.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from typing import Any

#: Algorithm name on the wire -> hash constructor.
HASHES: dict[str, Callable[..., Any]] = {
    "MD5": hashlib.md5,
    "SHA-256": hashlib.sha256,
    "SHA-512-256": partial(hashlib.new, "sha512_256"),
}

#: Algorithm -> the ``subscriber`` column holding its HA1 (OpenSIPS 3.x names).
HA1_COLUMNS = {"MD5": "ha1", "SHA-256": "ha1_sha256", "SHA-512-256": "ha1_sha512t256"}

#: Preference order of RFC 8760 §2.4: strongest first.
DEFAULT_ALGORITHMS = ("SHA-256", "SHA-512-256", "MD5")

_CANONICAL = {name.upper(): name for name in HASHES}


def canonical_algorithm(name: str | None) -> str | None:
    """The registered spelling of ``name`` (case-insensitive; absent means MD5), or None."""
    if name is None:
        return "MD5"
    return _CANONICAL.get(name.upper())


def hexdigest(algorithm: str, data: str | bytes) -> str:
    """``H(data)`` in lower-case hex; text is hashed as UTF-8."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    return HASHES[algorithm](data).hexdigest()  # type: ignore[no-any-return]


def ha1(algorithm: str, username: str, realm: str, password: str) -> str:
    """``H(username ":" realm ":" password)`` (RFC 7616 §3.4.2, no -sess variant)."""
    return hexdigest(algorithm, f"{username}:{realm}:{password}")


def ha2(algorithm: str, method: str, uri: str, qop: str | None = None, body: bytes = b"") -> str:
    """``H(method ":" digest-uri)``, with ``":" H(body)`` appended for ``auth-int`` (§3.4.3)."""
    if qop == "auth-int":
        return hexdigest(algorithm, f"{method}:{uri}:{hexdigest(algorithm, body)}")
    return hexdigest(algorithm, f"{method}:{uri}")


def response(
    algorithm: str,
    ha1_hex: str,
    nonce: str,
    ha2_hex: str,
    *,
    qop: str | None = None,
    nc: str | None = None,
    cnonce: str | None = None,
) -> str:
    """The request-digest (RFC 7616 §3.4.1; without qop, the RFC 2069 form)."""
    if qop:
        return hexdigest(algorithm, f"{ha1_hex}:{nonce}:{nc}:{cnonce}:{qop}:{ha2_hex}")
    return hexdigest(algorithm, f"{ha1_hex}:{nonce}:{ha2_hex}")


# --------------------------------------------------------------------------- credentials

@dataclass(frozen=True, slots=True)
class DigestCredentials:
    """One parsed ``Authorization`` / ``Proxy-Authorization`` value (scheme Digest)."""

    username: str
    realm: str
    nonce: str
    uri: str
    response: str
    algorithm: str | None = None  # as sent; None when absent (MD5)
    qop: str | None = None
    nc: str | None = None
    cnonce: str | None = None
    opaque: str | None = None

    @property
    def nc_value(self) -> int:
        """The nonce count as an integer (0 without qop)."""
        return int(self.nc, 16) if self.nc else 0


_TOKEN = r"[A-Za-z0-9!#$%&'*+.^_`|~-]+"
# A quoted-string as an unrolled loop: runs of ordinary characters, quoted-pairs between.
_PARAM_RE = re.compile(
    rf'[ \t]*({_TOKEN})[ \t]*=[ \t]*(?:"([^"\\]*(?:\\.[^"\\]*)*)"|([^ \t",]+))[ \t]*(,|$)'
)
_SCHEME_RE = re.compile(r"[ \t]*Digest[ \t]+", re.IGNORECASE)
_NC_RE = re.compile(r"[0-9a-fA-F]{8}")
_QPAIR_RE = re.compile(r"\\(.)")
_REQUIRED = ("username", "realm", "nonce", "uri", "response")


def parse_auth_params(text: str) -> dict[str, str] | None:
    """``name=value, name="quoted"`` pairs (names lowercased, quotes removed); None if malformed."""
    params: dict[str, str] = {}
    pos = 0
    end = len(text)
    while pos < end:
        m = _PARAM_RE.match(text, pos)
        if m is None:
            return None
        name, quoted, token, comma = m.groups()
        name = name.lower()
        if name in params:
            return None  # a repeated parameter is ambiguous
        if quoted is None:
            params[name] = token
        else:
            params[name] = _QPAIR_RE.sub(r"\1", quoted) if "\\" in quoted else quoted
        pos = m.end()
        if not comma:
            break
    if text[pos:].strip(" \t"):
        return None
    return params


def parse_credentials(value: str) -> DigestCredentials | None:
    """Parse a Digest credentials header value; None when it is not Digest or is malformed."""
    m = _SCHEME_RE.match(value)
    if m is None:
        return None
    params = parse_auth_params(value[m.end():])
    if params is None or any(not params.get(name) for name in _REQUIRED):
        return None
    qop = params.get("qop")
    nc = params.get("nc")
    cnonce = params.get("cnonce")
    if qop is not None:
        qop = qop.lower()
        if nc is None or cnonce is None or _NC_RE.fullmatch(nc) is None:
            return None  # RFC 7616 §3.4: cnonce and nc go with qop
    return DigestCredentials(
        username=params["username"],
        realm=params["realm"],
        nonce=params["nonce"],
        uri=params["uri"],
        response=params["response"].lower(),
        algorithm=params.get("algorithm"),
        qop=qop,
        nc=nc,
        cnonce=cnonce,
        opaque=params.get("opaque"),
    )


# ---------------------------------------------------------------------------- challenges

def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def challenge(
    realm: str,
    nonce: str,
    algorithm: str,
    *,
    opaque: str | None = None,
    qop: Iterable[str] = ("auth",),
    stale: bool = False,
) -> str:
    """A ``WWW-Authenticate`` / ``Proxy-Authenticate`` value for one algorithm."""
    parts = [f"Digest realm={_quoted(realm)}", f"nonce={_quoted(nonce)}"]
    if opaque is not None:
        parts.append(f"opaque={_quoted(opaque)}")
    parts.append(f"algorithm={algorithm}")
    qops = ",".join(qop)
    if qops:
        parts.append(f"qop={_quoted(qops)}")
    if stale:
        parts.append("stale=true")
    return ", ".join(parts)
