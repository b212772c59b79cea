"""Digest computation against the RFCs' published examples, and the credentials parser."""

from __future__ import annotations

import pytest
from sipline_auth import digest

# RFC 7616 §3.9.1 (with errata 4495: the password is "Circle of Life").
RFC7616 = {
    "username": "Mufasa",
    "realm": "http-auth@example.org",
    "password": "Circle of Life",
    "method": "GET",
    "uri": "/dir/index.html",
    "nonce": "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
    "cnonce": "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
    "nc": "00000001",
    "qop": "auth",
}


@pytest.mark.parametrize(
    ("algorithm", "expected"),
    [
        ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
        ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
    ],
)
def test_rfc7616_section_3_9_1(algorithm, expected):
    v = RFC7616
    ha1 = digest.ha1(algorithm, v["username"], v["realm"], v["password"])
    ha2 = digest.ha2(algorithm, v["method"], v["uri"])
    got = digest.response(algorithm, ha1, v["nonce"], ha2, qop=v["qop"], nc=v["nc"],
                          cnonce=v["cnonce"])
    assert got == expected


def test_rfc2617_section_3_5_md5_with_qop():
    ha1 = digest.ha1("MD5", "Mufasa", "testrealm@host.com", "Circle Of Life")
    ha2 = digest.ha2("MD5", "GET", "/dir/index.html")
    got = digest.response("MD5", ha1, "dcd98b7102dd2f0e8b11d0f600bfb0c093", ha2,
                          qop="auth", nc="00000001", cnonce="0a4f113b")
    assert got == "6629fae49393a05397450978507c4ef1"


def test_rfc2069_md5_without_qop():
    ha1 = digest.ha1("MD5", "Mufasa", "testrealm@host.com", "CircleOfLife")
    ha2 = digest.ha2("MD5", "GET", "/dir/index.html")
    got = digest.response("MD5", ha1, "dcd98b7102dd2f0e8b11d0f600bfb0c093", ha2)
    assert got == "1949323746fe6a43ef61f9606e7febea"


def test_sha512_256_is_the_truncated_sha512_variant():
    # FIPS 180-4 example "abc" for SHA-512/256 (not SHA-512 cut to 256 bits).
    assert digest.hexdigest("SHA-512-256", "abc") == (
        "53048e2681941ef99b2e29b76b4c7dabe4c2d0c634fc6d46e0e2f13107e7af23"
    )


def test_auth_int_hashes_the_body():
    plain = digest.ha2("SHA-256", "INVITE", "sip:bob@example.com", "auth")
    with_body = digest.ha2("SHA-256", "INVITE", "sip:bob@example.com", "auth-int", b"v=0\r\n")
    body_hash = digest.hexdigest("SHA-256", b"v=0\r\n")
    assert with_body == digest.hexdigest("SHA-256", f"INVITE:sip:bob@example.com:{body_hash}")
    assert plain != with_body


def test_parse_credentials_sip_style():
    value = (
        'Digest username="bob", realm="biloxi.com", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", '
        'uri="sip:bob@biloxi.com", qop=auth, nc=00000001, cnonce="0a4f113b", '
        'response="6629FAE49393A05397450978507C4EF1", opaque="5ccc069c403ebaf9f0171e9517f40e41", '
        "algorithm=sha-256"
    )
    c = digest.parse_credentials(value)
    assert c is not None
    assert (c.username, c.realm, c.uri, c.qop, c.nc_value, c.cnonce) == (
        "bob", "biloxi.com", "sip:bob@biloxi.com", "auth", 1, "0a4f113b")
    assert c.response == "6629fae49393a05397450978507c4ef1"  # hex compared lower case
    assert digest.canonical_algorithm(c.algorithm) == "SHA-256"
    assert digest.canonical_algorithm(None) == "MD5"
    assert digest.canonical_algorithm("SHA-1") is None


@pytest.mark.parametrize(
    "value",
    [
        'Basic dXNlcjpwYXNz',
        'Digest username="a", realm="r", nonce="n", uri="u"',  # no response
        'Digest username="a", realm="r", nonce="n", uri="u", response="x", qop=auth',  # no nc
        ('Digest username="a", realm="r", nonce="n", uri="u", response="x", qop=auth, '
         'nc=1, cnonce="c"'),  # nc is 8 hex digits
        'Digest username="a", username="b", realm="r", nonce="n", uri="u", response="x"',
        'Digest username="a" realm="r", nonce="n", uri="u", response="x"',  # missing comma
        'Digest username="a, realm="r"',
        "Digest",
    ],
)
def test_parse_credentials_refuses_malformed(value):
    assert digest.parse_credentials(value) is None


def test_parse_credentials_quoted_pairs_and_commas_inside_quotes():
    c = digest.parse_credentials(
        r'Digest username="al\"ice", realm="a, b", nonce="n", uri="sip:x", response="ab"'
    )
    assert c is not None and c.username == 'al"ice' and c.realm == "a, b"


def test_challenge_format():
    value = digest.challenge("example.com", "abc", "SHA-256", opaque="op", qop=("auth",),
                             stale=True)
    assert value == ('Digest realm="example.com", nonce="abc", opaque="op", '
                     'algorithm=SHA-256, qop="auth", stale=true')
