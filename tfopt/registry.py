"""One small generic registry, instantiated for datasets, models, transforms and exporters.

Adding a dataset, model or technique means adding one file that decorates a function or class
with ``@REGISTRY.register("name")``; the file is imported by its package's ``__init__``.
"""

from __future__ import annotations

import difflib
from typing import Callable, Generic, Iterator, TypeVar

from tfopt.errors import TfoptError

T = TypeVar("T")


class Registry(Generic[T]):
    """Name -> object map with helpful errors for unknown names."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator that registers ``obj`` under ``name``; duplicate names raise."""

        def deco(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"Duplicate {self.kind} name {name!r}: already registered.")
            self._items[name] = obj
            return obj

        return deco

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise TfoptError(self.unknown_message(name)) from None

    def unknown_message(self, name: str) -> str:
        known = ", ".join(sorted(self._items)) or "(none)"
        close = difflib.get_close_matches(str(name), list(self._items), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        return f"Unknown {self.kind} {name!r}.{hint} Known: {known}. Received: {self.kind}={name!r}"

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._items))

    def items(self) -> list[tuple[str, T]]:
        return sorted(self._items.items())
