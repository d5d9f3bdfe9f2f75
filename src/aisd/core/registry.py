"""A tiny name -> factory registry so that systems can offer pluggable implementations by name.

Used for index kinds, chunkers, rerankers, online stores ...; an unknown name raises an error listing the known ones.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from aisd.core.errors import InvalidRequestError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._factories: dict[str, Callable[..., T]] = {}

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        def deco(factory: Callable[..., T]) -> Callable[..., T]:
            if name in self._factories:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._factories[name] = factory
            return factory

        return deco

    def names(self) -> list[str]:
        return sorted(self._factories)

    def create(self, name: str, /, *args: object, **kwargs: object) -> T:
        try:
            factory = self._factories[name]
        except KeyError:
            raise InvalidRequestError(
                f"unknown {self.kind} {name!r}; expected one of: {', '.join(self.names())}", param=self.kind
            ) from None
        return factory(*args, **kwargs)

    def __contains__(self, name: object) -> bool:
        return name in self._factories
