"""Dialog profiles (OpenSIPS ``profiles_with_value`` / ``profiles_no_value``).

A profile is a named set of live dialogs, optionally keyed by a value: "calls of
customer X", "calls to gateway 3". Its size answers call-admission questions
(``get_profile_size``) in O(1): each profile keeps its members per value and a total.
A dialog leaves every profile it is in when it ends.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sipline_dialog.dialog import Dialog


class ProfileError(ValueError):
    """An unknown profile, or a value given to (or missing from) the wrong kind."""


class Profile:
    """One profile: dialogs by value (the key ``None`` for a profile without values)."""

    __slots__ = ("members", "name", "size", "with_value")

    def __init__(self, name: str, with_value: bool) -> None:
        self.name = name
        self.with_value = with_value
        self.members: dict[str | None, set[Dialog]] = {}
        self.size = 0

    def add(self, value: str | None, dlg: Dialog) -> bool:
        group = self.members.get(value)
        if group is None:
            group = self.members[value] = set()
        elif dlg in group:
            return False
        group.add(dlg)
        self.size += 1
        return True

    def discard(self, value: str | None, dlg: Dialog) -> bool:
        group = self.members.get(value)
        if group is None or dlg not in group:
            return False
        group.remove(dlg)
        if not group:
            del self.members[value]  # no empty groups left behind by finished values
        self.size -= 1
        return True

    def count(self, value: str | None = None) -> int:
        """Dialogs in the profile: with ``value``, only those set with that value."""
        if value is None:
            return self.size
        group = self.members.get(value)
        return len(group) if group is not None else 0

    def dialogs(self, value: str | None = None) -> Iterator[Dialog]:
        if value is None:
            for group in self.members.values():
                yield from group
        else:
            yield from self.members.get(value, ())


class Profiles:
    """Every defined profile, by name."""

    def __init__(self) -> None:
        self.by_name: dict[str, Profile] = {}

    def define(self, name: str, with_value: bool) -> Profile:
        """Define a profile; defining it again with the same kind is a no-op.

        :raises ProfileError: when it exists with the other kind.
        """
        if not name or not isinstance(name, str):
            raise ProfileError(f"invalid profile name {name!r}")
        existing = self.by_name.get(name)
        if existing is not None:
            if existing.with_value != with_value:
                kind = "with values" if existing.with_value else "without values"
                raise ProfileError(f"dialog profile {name!r} is already defined {kind}")
            return existing
        profile = self.by_name[name] = Profile(name, with_value)
        return profile

    def get(self, name: str, value: str | None = None, *, setting: bool = False) -> Profile:
        """The profile ``name``, checking ``value`` against its kind.

        ``setting``: a profile with values needs one to add a dialog to it; a query
        may leave it out (the total over every value).
        """
        profile = self.by_name.get(name)
        if profile is None:
            known = ", ".join(sorted(self.by_name)) or "none"
            raise ProfileError(
                f"unknown dialog profile {name!r} (defined: {known}; define it in "
                "[plugins.dialog] profiles_no_value / profiles_with_value)"
            )
        if value is not None and not profile.with_value:
            raise ProfileError(f"dialog profile {name!r} has no values (got value {value!r})")
        if setting and value is None and profile.with_value:
            raise ProfileError(f"dialog profile {name!r} needs a value")
        return profile

    def __iter__(self) -> Iterator[Profile]:
        return iter(self.by_name.values())
