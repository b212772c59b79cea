"""The memory location store: expiry by due time, the contact count kept up to date."""

from __future__ import annotations

from sipline_registrar.location import Binding, LocationStore


def b(contact: str, expires: float) -> Binding:
    return Binding(contact=contact, expires=expires, q=None, callid="c", cseq=1)


def test_expiry_pops_only_what_is_due_and_honours_refreshes():
    store = LocationStore()
    store.put("a@x", "k1", b("sip:1@h", 10))
    store.put("a@x", "k2", b("sip:2@h", 20))
    store.replace("b@x", {"k": b("sip:3@h", 10)})
    assert store.contacts == 3 and store.users == 2
    store.put("a@x", "k1", b("sip:1@h", 30))  # refreshed: its first due time is stale
    assert store.expire(15) == 1  # only b@x's binding
    assert store.users == 1 and store.contacts == 2
    assert store.get("a@x", "k1").expires == 30
    assert store.expire(25) == 1 and store.contacts == 1
    assert store.expire(30) == 1 and store.contacts == 0 and store.users == 0


def test_removed_bindings_are_not_expired_twice():
    store = LocationStore()
    store.put("a@x", "k", b("sip:1@h", 10))
    store.remove("a@x", "k")
    assert store.contacts == 0
    assert store.expire(100) == 0
    store.replace("a@x", {"k": b("sip:1@h", 10), "j": b("sip:2@h", 10)})
    store.remove_aor("a@x")
    assert store.contacts == 0 and store.expire(100) == 0


def test_stale_entries_are_compacted():
    store = LocationStore()
    for i in range(5000):  # one binding refreshed over and over
        store.put("a@x", "k", b("sip:1@h", 1000 + i))
    store.expire(0)
    assert len(store._expiry) <= 2 * store.contacts + 1024
    assert store.expire(10_000) == 1
