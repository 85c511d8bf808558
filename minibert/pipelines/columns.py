"""The types of the columns a task's results become, written without any columnar library.

A task module says what its records hold (`string`, `float64`, a list of structs, a vector of N floats);
only the Ray front end, which needs Arrow, turns these into Arrow types (`minibert/ray/actor.py`). So the
CLI, the server and `pipeline()` never import pyarrow, which a plain install does not have.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Kind:
    """One column type: a scalar (`name` only), `list` (of `item`), `struct` (of `fields`) or `vector`
    (`size` values of scalar `item`, one array per row)."""

    name: str
    item: "Kind | None" = None
    fields: tuple[tuple[str, "Kind"], ...] = ()
    size: int = 0


STRING = Kind("string")
FLOAT64 = Kind("float64")
FLOAT32 = Kind("float32")
INT64 = Kind("int64")


def list_of(item: Kind) -> Kind:
    return Kind("list", item=item)


def struct(fields) -> Kind:
    return Kind("struct", fields=tuple(fields))


def vector(size: int, item: Kind = FLOAT32) -> Kind:
    return Kind("vector", item=item, size=int(size))
