"""Finding adapters: the built-in ones and any installed package's, through the ``hub.adapters``
entry-point group (``[project.entry-points."hub.adapters"] my-system = "my_pkg:MyAdapter"``).

Each adapter is imported only when asked for, so one broken package cannot take the others down.
"""

from __future__ import annotations

from functools import cache
from importlib.metadata import EntryPoint, entry_points

from hub.adapters.base import Adapter

GROUP = "hub.adapters"


class UnknownAdapter(LookupError):
    pass


def available() -> list[str]:
    """The names of every installed adapter."""
    return sorted(ep.name for ep in entry_points(group=GROUP))


@cache
def adapter_class(name: str) -> type[Adapter]:
    found: list[EntryPoint] = [ep for ep in entry_points(group=GROUP) if ep.name == name]
    if not found:
        raise UnknownAdapter(name)
    cls = found[0].load()
    if not (isinstance(cls, type) and issubclass(cls, Adapter)):
        raise TypeError(f"entry point {name!r} in {GROUP} is not a hub.adapters.base.Adapter")
    return cls
