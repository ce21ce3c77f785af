"""``__eq__``/``__hash__`` for the smoothing certifiers: value equality, except for fields that have none."""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

T = TypeVar("T")

__all__ = ["eq_by_value_except"]


def eq_by_value_except(*by_identity: str) -> Any:
    """Class decorator for a frozen dataclass declared with ``eq=False``: two instances are equal when
    their fields are equal, the ``by_identity`` fields compared with ``is`` (a ``torch.Generator`` has
    no value equality, and a fitted transform is compared as the object it is). The hash hashes the same
    key (``id`` for the identity fields), so equal instances hash alike."""

    def decorate(cls: type[T]) -> type[T]:
        names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
        unknown = set(by_identity) - set(names)
        if unknown:
            raise TypeError(f"{cls.__name__} has no fields {sorted(unknown)}")

        def key(self: Any) -> tuple[Any, ...]:
            return tuple(id(getattr(self, n)) if n in by_identity else getattr(self, n) for n in names)

        def __eq__(self: Any, other: object) -> bool:
            if type(other) is not type(self):
                return NotImplemented
            return key(self) == key(other)

        def __hash__(self: Any) -> int:
            return hash(key(self))

        cls.__eq__ = __eq__  # type: ignore[assignment,method-assign]
        cls.__hash__ = __hash__  # type: ignore[assignment,method-assign]
        return cls

    return decorate
