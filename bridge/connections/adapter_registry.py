"""The adapter registry: CRM types found through the ``crm_bridge.adapters`` entry-point group,
so a separately installed package can add a type without touching ``bridge/``."""

from __future__ import annotations

from functools import cache
from importlib.metadata import entry_points

from crm_adapters.base import Adapter

ENTRY_POINT_GROUP = "crm_bridge.adapters"


class UnknownAdapterType(LookupError):
    pass


@cache
def adapter_types() -> dict[str, type[Adapter]]:
    """Every registered adapter class by its type slug (loaded once per process)."""
    found: dict[str, type[Adapter]] = {}
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        adapter_class = entry.load()
        found[getattr(adapter_class, "type", None) or entry.name] = adapter_class
    return dict(sorted(found.items()))


def adapter_class(type_slug: str) -> type[Adapter]:
    try:
        return adapter_types()[type_slug]
    except KeyError:
        known = ", ".join(adapter_types()) or "none"
        raise UnknownAdapterType(f"unknown connection type {type_slug!r} (known: {known})") from None
