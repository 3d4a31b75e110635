"""Finding adapters: the built-in ones and any installed package's, through the ``hub.adapters``
entry-point group (``[project.entry-points."hub.adapters"] my-system = "my_pkg:MyAdapter"``).

Installed is not enabled: the hub uses only the adapters its allowlist names (``HUB_ADAPTERS``, default
the three built-ins), so a package installed next to the hub (or pulled in by another one) delivers
nothing until an operator lists it. :func:`enable` loads every listed adapter when the hub starts and
refuses to start it when one does not load: a hub that silently skipped it would queue the deliveries of
every organisation whose endpoint names it, and retry them until they dead-lettered.

The allowlist is per process (one hub per process): the last :func:`enable` holds. A process that never
calls it (the conformance kit, a script) has the built-ins, each loaded when first asked for.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from importlib.metadata import EntryPoint, entry_points

from hub.adapters.base import Adapter, AdapterConfig

GROUP = "hub.adapters"
BUILT_IN = ("webhook", "fhir-r4", "mailbox")


class UnknownAdapter(LookupError):
    """No enabled adapter has this name (not installed, or not on the allowlist)."""


class AdapterLoadError(RuntimeError):
    """Adapters on the allowlist that cannot be used; ``problems``: one line per adapter, with the reason."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("adapters on the allowlist (HUB_ADAPTERS) do not load: " + "; ".join(problems))
        self.problems = list(problems)


_enabled: tuple[str, ...] = BUILT_IN
_loaded: dict[str, type[Adapter]] = {}
_problems: list[str] = []


def enable(names: Sequence[str]) -> list[str]:
    """Make ``names`` the adapters this process uses, loading each now; return them. Raise
    :class:`AdapterLoadError` naming every one that is not installed or does not load, and why."""
    global _enabled, _loaded, _problems
    installed = _entry_points()
    loaded: dict[str, type[Adapter]] = {}
    problems: list[str] = []
    for name in dict.fromkeys(names):
        try:
            loaded[name] = _load(installed, name)
        except Exception as exc:  # an import error is any exception the package's import raised
            problems.append(f"{name}: {_reason(exc)}")
    _enabled, _loaded, _problems = tuple(loaded), loaded, problems
    if problems:
        raise AdapterLoadError(problems)
    return list(_enabled)


def load_problems() -> list[str]:
    """Why adapters of the last :func:`enable` did not load (empty when all did): for ``/readyz``."""
    return list(_problems)


def available() -> list[str]:
    """The names of the enabled adapters, which endpoints may name."""
    return sorted(_enabled)


def enabled(name: str) -> bool:
    return name in _enabled


def adapter_class(name: str) -> type[Adapter]:
    """The enabled adapter ``name``; :class:`UnknownAdapter` if it is not installed or not enabled."""
    if name not in _enabled:
        raise UnknownAdapter(name)
    if name not in _loaded:
        _loaded[name] = _load(_entry_points(), name)
    return _loaded[name]


def _entry_points() -> dict[str, EntryPoint]:
    found: dict[str, EntryPoint] = {}
    for ep in entry_points(group=GROUP):
        found.setdefault(ep.name, ep)  # the first on the path wins, as importing would
    return found


def _load(installed: dict[str, EntryPoint], name: str) -> type[Adapter]:
    if name not in installed:
        raise UnknownAdapter(name)
    cls = installed[name].load()
    check_adapter(cls, name)
    return cls  # type: ignore[no-any-return]


def check_adapter(cls: object, name: str) -> None:
    """Raise ``TypeError`` unless ``cls`` keeps the adapter contract (``hub.adapters.base.Adapter``)."""
    if not (isinstance(cls, type) and issubclass(cls, Adapter)):
        raise TypeError(f"{name} is not a hub.adapters.base.Adapter")
    if inspect.isabstract(cls):
        raise TypeError(f"{name} does not implement {', '.join(sorted(cls.__abstractmethods__))}")
    config = getattr(cls, "Config", None)
    if not (isinstance(config, type) and issubclass(config, AdapterConfig)):
        raise TypeError(f"{name}.Config is not a hub.adapters.base.AdapterConfig")


def _reason(exc: Exception) -> str:
    if isinstance(exc, UnknownAdapter):
        return f"not installed (no entry point in the {GROUP} group)"
    return f"{type(exc).__name__}: {exc}"
