"""Choosing the label language: ``Accept-Language`` (sv or en, default sv)."""

from __future__ import annotations

SUPPORTED = ("sv", "en")
DEFAULT = "sv"


def negotiate(accept_language: str | None) -> str:
    """The best supported language by q-value; Swedish when nothing supported is asked for."""
    if not accept_language:
        return DEFAULT
    best: tuple[float, str] | None = None
    for part in accept_language.split(","):
        tag, _, params = part.strip().partition(";")
        primary = tag.strip().lower().split("-")[0]
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        if primary in SUPPORTED and q > 0 and (best is None or q > best[0]):
            best = (q, primary)
    return best[1] if best else DEFAULT
