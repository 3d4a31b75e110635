"""The adapter conformance kit: a fixed set of scenarios run against an adapter, its config and its target.

Use it from the command line (``hub adapters check NAME --config FILE``) or from your own tests::

    from hub.adapters.conformance import run_conformance

    report = await run_conformance(MyAdapter, {"base_url": url, "api_key_ref": "journal"},
                                   secrets={"journal": "test-key"})
    assert report.ok, report.render()

Scenarios, in order (docs/adapters.md, "Running the conformance kit", says what each checks):

=================  ==========================================================================================
deliver            a referral is delivered: a Receipt, and the target answered 2xx
duplicate          the same message twice (one idempotency key): both succeed, the key reaches the target,
                   and no second effect is visible (remote ids, the target's ids, ``count_effects``)
timeout            the target never answers → DeliveryError (retryable) within the adapter's timeout
4xx                400/401/403/404/409/422 → PermanentDeliveryError naming the status; 408 and 429 →
                   DeliveryError, 429's Retry-After in ``retry_after_seconds``
5xx                500/502/504 → DeliveryError; 503's Retry-After (seconds, HTTP date) honoured
refused            nothing listens at the target's port → DeliveryError
status-round-trip  a status event is delivered; if the adapter has ``poll``, its answer is well formed
health             ``health()`` says ok against the target and not ok against a closed port, never raises
=================  ==========================================================================================

The failure scenarios run a fault-injecting proxy on loopback in front of the target: the adapter names
the Config field that holds its target URL in ``target_url_field``, and the kit points that field at the
proxy. Without one they are SKIPped. In every scenario, the message's personal data (the child's personal
identity number, the concern text) must not appear in an error's detail or a receipt.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import httpx
import yaml
from pydantic import ValidationError

from hub.adapters._kit_proxy import FaultProxy
from hub.adapters._kit_samples import KIT_PERSONAL_IDENTITY_NUMBER, make_samples
from hub.adapters._kit_scenarios import SCENARIOS, Kit, Outcome, ScenarioResult
from hub.adapters._kit_server import free_port, serve_asgi
from hub.adapters.base import Adapter, AdapterContext, Message
from hub.adapters.registry import GROUP, UnknownAdapter, check_adapter

__all__ = [
    "DEFAULT_HUB_URL",
    "KIT_PERSONAL_IDENTITY_NUMBER",
    "SCENARIOS",
    "Outcome",
    "Report",
    "ScenarioResult",
    "env_secrets",
    "load_adapter",
    "load_config_file",
    "run_conformance",
    "secret_env_var",
    "serve_asgi",
]

DEFAULT_HUB_URL = "https://hub.example"


@dataclass
class Report:
    adapter: str
    target: str | None
    results: list[ScenarioResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No scenario failed (SKIPs are allowed)."""
        return all(r.outcome != "FAIL" for r in self.results)

    def outcome(self, name: str) -> Outcome | None:
        return next((r.outcome for r in self.results if r.name == name), None)

    def render(self) -> str:
        width = max([len(r.name) for r in self.results] + [8])
        lines = [f"Conformance: {self.adapter}" + (f" → {self.target}" if self.target else "")]
        lines += [f"  {r.name:<{width}}  {r.outcome:<4}  {r.detail}".rstrip() for r in self.results]
        counts = {o: sum(r.outcome == o for r in self.results) for o in ("PASS", "FAIL", "SKIP")}
        lines.append(f"{counts['PASS']} passed, {counts['FAIL']} failed, {counts['SKIP']} skipped")
        return "\n".join(lines)


def secret_env_var(name: str) -> str:
    """The variable a secret named ``name`` comes from, exactly as in the hub: ``HUB_SECRET_`` + the
    name in upper case with ``-`` as ``_`` (``nora-bup`` → ``HUB_SECRET_NORA_BUP``)."""
    return "HUB_SECRET_" + name.upper().replace("-", "_")


def env_secrets(environ: Mapping[str, str] | None = None) -> Callable[[str], str]:
    """Resolve secret names like the hub does: ``HUB_SECRET_<NAME>``, else ``HUB_ADAPTER_SECRETS``
    (``name:value,name2:value2``). Unlike a hub in dev mode there is no made-up fallback value."""
    env = os.environ if environ is None else environ
    listed: dict[str, str] = {}
    for item in env.get("HUB_ADAPTER_SECRETS", "").split(","):
        name, sep, value = item.strip().partition(":")
        if sep:
            listed[name] = value

    def resolve(name: str) -> str:
        value = env.get(secret_env_var(name), listed.get(name))
        if value is None:
            raise KeyError(name)
        return value

    return resolve


async def run_conformance(
    adapter: type[Adapter],
    config: Mapping[str, Any],
    *,
    secrets: Callable[[str], str] | Mapping[str, str] | None = None,
    hub_url: str = DEFAULT_HUB_URL,
    timeout_seconds: float = 2.0,
    count_effects: Callable[[Message], Awaitable[int | None]] | None = None,
    scenarios: Sequence[str] | None = None,
) -> Report:
    """Run the scenarios (all, or those named) against ``adapter`` configured with ``config``.

    ``secrets`` resolves secret names (default: ``env_secrets()``); ``timeout_seconds`` is the context's
    timeout, so the ``timeout`` scenario takes about that long unless the config sets its own.
    ``count_effects(message)``, if given, asks the target how many records it holds for the message's
    idempotency key (None: unknown): the strongest evidence for the ``duplicate`` scenario.
    """
    names = list(scenarios or SCENARIOS)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        raise ValueError(f"unknown scenarios: {', '.join(unknown)} (known: {', '.join(SCENARIOS)})")
    label = f"{getattr(adapter, 'name', adapter.__name__)} ({adapter.__module__}:{adapter.__qualname__})"
    field_name = adapter.target_url_field
    target = str(config.get(field_name)) if field_name and config.get(field_name) else None
    report = Report(adapter=label, target=target)
    try:
        adapter.Config.model_validate(dict(config))
    except ValidationError as exc:
        report.results.append(ScenarioResult("config", "FAIL", f"the config is invalid: {_errors(exc)}"))
        return report
    resolve = secrets if callable(secrets) else _mapping_resolver(secrets) if secrets is not None else env_secrets()
    missing = _missing_secrets(adapter, config, resolve)
    if missing:
        hint = "" if secrets is not None else f" (set {', '.join(secret_env_var(m) for m in missing)})"
        report.results.append(ScenarioResult("secrets", "FAIL", f"not available: {', '.join(missing)}{hint}"))
        return report
    with ExitStack() as stack:
        proxy, proxied, reason = _start_proxy(stack, adapter, config, target)
        async with httpx.AsyncClient(trust_env=proxy is None) as http:
            kit = Kit(
                adapter_cls=adapter,
                config=proxied,
                context=AdapterContext(hub_url=hub_url, secret=resolve, http=http, timeout_seconds=timeout_seconds),
                samples=make_samples(hub_url),
                proxy=proxy,
                no_proxy_reason=reason,
                refused_url=_refused_url(target),
                count_effects=count_effects,
            )
            for name in names:
                try:
                    report.results.append(await SCENARIOS[name](kit))
                except Exception as exc:  # the adapter broke the scenario itself: that is a failure too
                    report.results.append(ScenarioResult(name, "FAIL", f"{type(exc).__name__}: {exc}"[:300]))
    return report


def check(adapter: type[Adapter], config: Mapping[str, Any], **options: Any) -> Report:
    """``run_conformance`` for synchronous callers (the CLI)."""
    return asyncio.run(run_conformance(adapter, config, **options))


def _missing_secrets(adapter: type[Adapter], config: Mapping[str, Any], resolve: Callable[[str], str]) -> list[str]:
    """Secret names the config references (``…_ref`` fields, or fields marked ``x-secret-ref``) that do not
    resolve: said up front, rather than as every scenario failing."""
    missing = []
    for name, info in adapter.Config.model_fields.items():
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        value = config.get(name)
        if isinstance(value, str) and (name.endswith("_ref") or extra.get("x-secret-ref")):
            try:
                resolve(value)
            except KeyError:
                missing.append(value)
    return missing


def _mapping_resolver(secrets: Mapping[str, str]) -> Callable[[str], str]:
    return lambda name: secrets[name]


def _errors(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or '(root)'}: {e['msg']}" for e in exc.errors())


def _start_proxy(
    stack: ExitStack, adapter: type[Adapter], config: Mapping[str, Any], target: str | None
) -> tuple[FaultProxy | None, dict[str, Any], str]:
    field_name = adapter.target_url_field
    if field_name is None or target is None:
        return None, dict(config), "the adapter declares no target_url_field (or the config leaves it empty)"
    url = httpx.URL(target)
    if url.scheme not in ("http", "https"):
        return None, dict(config), f"the target URL is not http(s) ({url.scheme})"
    origin = f"{url.scheme}://{url.netloc.decode('ascii')}"
    proxy = FaultProxy(origin)
    base = stack.enter_context(serve_asgi(proxy))
    path = url.raw_path.decode("ascii")
    proxied = {**config, field_name: base + path}
    try:
        adapter.Config.model_validate(proxied)
    except ValidationError as exc:
        stack.close()
        return None, dict(config), f"the config refuses a loopback http URL for the proxy ({_errors(exc)})"
    return proxy, proxied, ""


def _refused_url(target: str | None) -> str | None:
    if target is None:
        return None
    url = httpx.URL(target)
    if url.scheme not in ("http", "https"):
        return None
    return str(url.copy_with(scheme="http", host="127.0.0.1", port=free_port()))


# --- finding the adapter and its config (the CLI) ------------------------------------------------------


def load_adapter(name: str) -> type[Adapter]:
    """An adapter by entry-point name (only that entry point is loaded), or by ``module:Class``."""
    if ":" in name:
        module, _, attr = name.partition(":")
        cls = getattr(importlib.import_module(module), attr)
    else:
        found = [ep for ep in entry_points(group=GROUP) if ep.name == name]
        if not found:
            raise UnknownAdapter(name)
        cls = found[0].load()
    check_adapter(cls, name)
    return cls  # type: ignore[no-any-return]


def installed() -> Iterator[tuple[str, str, type[Adapter] | None, str]]:
    """Each ``hub.adapters`` entry point: name, value, the class (None if it fails to load), and a note."""
    for ep in sorted(entry_points(group=GROUP), key=lambda e: e.name):
        try:
            cls = load_adapter(ep.name)
        except Exception as exc:
            yield ep.name, ep.value, None, f"does not load: {type(exc).__name__}: {exc}"
            continue
        note = f"target_url_field={cls.target_url_field}" if cls.target_url_field else "no target_url_field"
        yield ep.name, ep.value, cls, note


def load_config_file(path: Path) -> dict[str, Any]:
    """An adapter config from a YAML or JSON file (a mapping of the Config's fields)."""
    text = path.read_text(encoding="utf-8")
    data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of config fields")
    return data
