"""Tools for trying and measuring the hub, never part of a running hub: the demo registry (``hub demo``,
``hub serve --demo``), the tour's receiving case system (``hub demo-receiver``) and synthetic referral
history (``hub synth``), with the bulk SQL only that needs.

They sit beside the layers and may use any of them; nothing on the production path (api, services, db,
domain, adapters, runtime, main) imports them — an import-linter contract in ``pyproject.toml`` says so.
"""
