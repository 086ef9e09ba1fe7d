"""Typed registries that hold what plugins registered."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Generic, TypeVar

from .errors import PluginError, UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    """Names (and aliases) → registered objects, remembering which plugin registered each.

    Claiming a name twice raises :class:`PluginError` naming both plugins; looking up an
    unknown name raises :class:`UnknownNameError` with close matches.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._owner: dict[str, str] = {}
        self._canonical: dict[str, str] = {}

    def add(self, name: str, item: T, *, aliases: tuple[str, ...] = (), plugin: str = "?") -> None:
        if not isinstance(name, str) or not name:
            raise PluginError(
                f"plugin {plugin!r} registered a {self.kind} without a name: {item!r}"
            )
        for key in (name, *aliases):
            if key in self._owner:
                raise PluginError(
                    f"{self.kind} name {key!r} is claimed twice: by plugin {self._owner[key]!r} "
                    f"({_describe(self._items[self._canonical[key]])}) and by plugin {plugin!r} "
                    f"({_describe(item)}). Uninstall one of them or disable it with "
                    f"TUNEKIT_DISABLE_PLUGINS={plugin}."
                )
        self._items[name] = item
        for key in (name, *aliases):
            self._owner[key] = plugin
            self._canonical[key] = name

    def get(self, name: str) -> T:
        try:
            return self._items[self._canonical[name]]
        except (KeyError, TypeError):
            raise UnknownNameError(self.kind, str(name), self._owner) from None

    def canonical(self, name: str) -> str:
        self.get(name)
        return self._canonical[name]

    def owner(self, name: str) -> str:
        return self._owner[self.canonical(name)]

    def names(self) -> list[str]:
        return sorted(self._items)

    def aliases_of(self, name: str) -> list[str]:
        return sorted(k for k, v in self._canonical.items() if v == name and k != name)

    def __contains__(self, name: object) -> bool:
        return name in self._canonical

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)


def _describe(item: object) -> str:
    if isinstance(item, type):
        return f"{item.__module__}.{item.__qualname__}"
    return repr(item)
