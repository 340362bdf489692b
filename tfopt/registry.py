"""One small generic registry, instantiated for datasets, models, transforms and exporters.

Adding a dataset, model or technique means adding one file that decorates a function or class
with ``@REGISTRY.register("name")``; the file is imported by its package's ``__init__``.

Datasets and models also register their typed ``options`` (a pydantic class: the name selects it,
as tensorflow/models' ``hyperparams/oneof.py`` does) and, for models, a ``tiny`` set of options
for tests. Both travel in the entry, so the loader can check a pipeline without building anything.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable, Generic, Iterator, Mapping, Optional, TypeVar

from tfopt.errors import TfoptError

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    """A registered object and what the loader needs to know about it without calling it.

    Attributes:
        name: the registered name.
        obj: the registered function or class.
        options: its typed options (a pydantic model class), or None when it takes none.
        tiny: a few option values that make it small enough for tests.
    """

    name: str
    obj: T
    options: Optional[type] = None
    tiny: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))


class Registry(Generic[T]):
    """Name -> object map with helpful errors for unknown names."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}

    def register(
        self, name: str, *, options: Optional[type] = None, tiny: Optional[Mapping[str, Any]] = None
    ) -> Callable[[T], T]:
        """Decorator that registers ``obj`` under ``name``; duplicate names raise.

        Args:
            name: the name a pipeline uses.
            options: the typed options class the loader validates the pipeline's keys with.
            tiny: option values for a small instance in tests (validated by the tests).

        Example::

            @MODELS.register("small_cnn", options=Options, tiny={"filters": 4, "dense": 16})
            def small_cnn(input_shape, num_classes, *, filters=32, dense=128, dropout=0.25): ...
        """

        def deco(obj: T) -> T:
            if name in self._entries:
                raise ValueError(f"Duplicate {self.kind} name {name!r}: already registered.")
            self._entries[name] = Entry(name, obj, options, MappingProxyType(dict(tiny or {})))
            return obj

        return deco

    def get(self, name: str) -> T:
        return self.entry(name).obj

    def entry(self, name: str) -> Entry[T]:
        """The registration of ``name``: object, options class and tiny options."""
        try:
            return self._entries[name]
        except KeyError:
            raise TfoptError(self.unknown_message(name)) from None

    def unknown_message(self, name: str) -> str:
        known = ", ".join(sorted(self._entries)) or "(none)"
        close = difflib.get_close_matches(str(name), list(self._entries), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        return f"Unknown {self.kind} {name!r}.{hint} Known: {known}. Received: {self.kind}={name!r}"

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._entries))

    def items(self) -> list[tuple[str, T]]:
        return sorted((name, e.obj) for name, e in self._entries.items())

    def entries(self) -> list[Entry[T]]:
        """Every registration, sorted by name (for harness tests over the registry)."""
        return [self._entries[name] for name in sorted(self._entries)]
