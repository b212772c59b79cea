"""Helpers of the auth tests: a digest client written from RFC 7616 alone, SIP requests.

The client side deliberately does not use ``sipline_auth.digest``: the server is
tested against an independent implementation (hashlib and the RFC's formulas).
Imported by the test modules next to it (``from authkit import ...``).
"""

from __future__ import annotations

import hashlib
import re
import uuid

_HASH = {"MD5": "md5", "SHA-256": "sha256", "SHA-512-256": "sha512_256"}
_PARAM = re.compile(r'([a-zA-Z0-9-]+)=("([^"]*)"|[^\s,]+)')


def parse_challenge(value: str) -> dict[str, str]:
    """The parameters of a ``Digest`` challenge (quotes removed)."""
    assert value.startswith("Digest "), value
    return {m.group(1).lower(): m.group(3) if m.group(3) is not None else m.group(2)
            for m in _PARAM.finditer(value[7:])}


def H(algorithm: str, text: str) -> str:
    return hashlib.new(_HASH[algorithm], text.encode()).hexdigest()


def authorization(
    challenge: dict[str, str],
    method: str,
    uri: str,
    user: str,
    password: str,
    *,
    nc: int = 1,
    cnonce: str | None = None,
    qop: str | None = "auth",
    username: str | None = None,
) -> str:
    """The credentials answering ``challenge`` (RFC 7616 §3.4)."""
    alg = challenge.get("algorithm", "MD5")
    cnonce = cnonce or uuid.uuid4().hex[:16]
    realm, nonce = challenge["realm"], challenge["nonce"]
    ha1 = H(alg, f"{user}:{realm}:{password}")
    ha2 = H(alg, f"{method}:{uri}")
    ncs = f"{nc:08x}"
    if qop:
        resp = H(alg, f"{ha1}:{nonce}:{ncs}:{cnonce}:{qop}:{ha2}")
    else:
        resp = H(alg, f"{ha1}:{nonce}:{ha2}")
    parts = [f'Digest username="{username or user}"', f'realm="{realm}"', f'nonce="{nonce}"',
             f'uri="{uri}"', f'response="{resp}"', f"algorithm={alg}"]
    if qop:
        parts += [f"qop={qop}", f"nc={ncs}", f'cnonce="{cnonce}"']
    if "opaque" in challenge:
        parts.append(f'opaque="{challenge["opaque"]}"')
    return ", ".join(parts)


def challenges(resp) -> list[dict[str, str]]:
    """Every challenge of a 401/407, in order."""
    name = "WWW-Authenticate" if resp.status == 401 else "Proxy-Authenticate"
    return [parse_challenge(v) for v in resp.get_all(name)]


def pick(resp, algorithm: str = "SHA-256") -> dict[str, str]:
    for ch in challenges(resp):
        if ch["algorithm"] == algorithm:
            return ch
    raise AssertionError(f"no {algorithm} challenge in {resp!r}")


def register(hostport: str, local: str, user: str, *, domain: str | None = None,
             contact: str | None = None, call_id: str | None = None, cseq: int = 1,
             auth: str | None = None, expires: int = 300) -> bytes:
    """A REGISTER for ``user@domain`` (default: the server's host:port's host)."""
    domain = domain or hostport.rsplit(":", 1)[0]
    lines = [
        f"REGISTER sip:{hostport} SIP/2.0",
        f"Via: SIP/2.0/UDP {local};branch=z9hG4bK{uuid.uuid4().hex[:12]};rport",
        "Max-Forwards: 70",
        f"From: <sip:{user}@{domain}>;tag={uuid.uuid4().hex[:8]}",
        f"To: <sip:{user}@{domain}>",
        f"Call-ID: {call_id or uuid.uuid4().hex}",
        f"CSeq: {cseq} REGISTER",
        f"Contact: {contact or f'<sip:{user}@{local}>'}",
        f"Expires: {expires}",
    ]
    if auth:
        lines.append(f"Authorization: {auth}")
    lines += ["Content-Length: 0", "", ""]
    return "\r\n".join(lines).encode()


def invite(hostport: str, local: str, caller: str, callee: str, *, domain: str | None = None,
           from_domain: str | None = None, call_id: str | None = None, cseq: int = 1,
           auth: str | None = None, extra: str = "") -> bytes:
    domain = domain or hostport.rsplit(":", 1)[0]
    from_domain = from_domain or domain
    lines = [
        f"INVITE sip:{callee}@{hostport} SIP/2.0",
        f"Via: SIP/2.0/UDP {local};branch=z9hG4bK{uuid.uuid4().hex[:12]};rport",
        "Max-Forwards: 70",
        f"From: <sip:{caller}@{from_domain}>;tag={uuid.uuid4().hex[:8]}",
        f"To: <sip:{callee}@{domain}>",
        f"Call-ID: {call_id or uuid.uuid4().hex}",
        f"CSeq: {cseq} INVITE",
        f"Contact: <sip:{caller}@{local}>",
    ]
    if auth:
        lines.append(f"Proxy-Authorization: {auth}")
    if extra:
        lines.append(extra)
    lines += ["Content-Length: 0", "", ""]
    return "\r\n".join(lines).encode()


def masked(resp) -> tuple:
    """A response with its nonces, tags and Call-ID blanked: what must not vary by cause."""
    headers = []
    for name, value in resp.iter_headers():
        if name.lower() in ("via", "call-id", "from", "to", "cseq"):
            continue
        headers.append((name, re.sub(r'nonce="[^"]*"', 'nonce="*"', value)))
    return resp.status, resp.reason, tuple(headers), resp.body
