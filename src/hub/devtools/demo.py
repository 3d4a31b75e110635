"""Demo data: Region Örebro län and its 12 municipalities with fictional units of every kind, each
with a delivery endpoint, and a service directory with waiting times (some recently confirmed, some stale).

The municipality names and codes are real and public; every unit, person and child is fictional.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from hub.adapters.registry import UnknownAdapter, adapter_class
from hub.db.registry import EndpointRepository, Service, ServiceRepository
from hub.db.repositories import OrganisationRepository
from hub.db.tables import Organisation
from hub.services.context import utcnow
from hub.services.registry import validate_endpoint_config

REGION_CODE = "18"

# (slug, name, SCB municipality code)
MUNICIPALITIES: list[tuple[str, str, str]] = [
    ("askersund", "Askersund", "1882"),
    ("degerfors", "Degerfors", "1862"),
    ("hallsberg", "Hallsberg", "1861"),
    ("hallefors", "Hällefors", "1863"),
    ("karlskoga", "Karlskoga", "1883"),
    ("kumla", "Kumla", "1881"),
    ("laxa", "Laxå", "1860"),
    ("lekeberg", "Lekeberg", "1814"),
    ("lindesberg", "Lindesberg", "1885"),
    ("ljusnarsberg", "Ljusnarsberg", "1864"),
    ("nora", "Nora", "1884"),
    ("orebro", "Örebro", "1880"),
]

# Units every municipality has (municipal services, and the region's local primary care).
LOCAL_UNITS: list[tuple[str, str]] = [
    ("forskola", "Förskolan Solrosen"),
    ("grundskola", "Björkdalsskolan"),
    ("gymnasieskola", "Gymnasiet Lärkan"),
    ("elevhalsa", "Elevhälsan"),
    ("socialtjanst-myndighet", "Socialtjänsten, barn och familj (myndighet)"),
    ("socialtjanst-oppenvard", "Socialtjänsten, öppenvård barn och unga"),
    ("lss", "LSS-handläggning barn"),
    ("familjecentral", "Familjecentralen Kompassen"),
    ("kultur-fritid", "Kultur och fritid, fritidsgården Ekot"),
    ("bvc", "BVC Vårdcentralen Lönnen"),
    ("mvc", "Barnmorskemottagningen Lönnen"),
    ("vardcentral", "Vårdcentralen Lönnen"),
]

# Units the region runs once for the county, and county-wide actors: registered without a municipality
# (a county-wide unit), which the service directory and referral routing read as "serves the county".
COUNTY_UNITS: list[tuple[str, str, str]] = [
    ("region-forsta-linjen", "forsta-linjen", "Första linjen barn och unga, Region Örebro län (demo)"),
    ("region-bup", "bup", "BUP Region Örebro län (demo)"),
    ("region-buh", "buh", "Barn- och ungdomshabiliteringen, Region Örebro län (demo)"),
    ("region-barnklinik", "barnklinik", "Barnkliniken, Region Örebro län (demo)"),
    ("region-samordning", "regional-samordning", "TABB regional samordning, Region Örebro län (demo)"),
    ("polis-bergslagen", "polis", "Lokalpolisområde Bergslagen (demo)"),
    ("civil-barnens-rost", "civilsamhalle", "Föreningen Barnens röst (demo)"),
]

ROLES_BY_TYPE: dict[str, list[str]] = {"regional-samordning": ["coordinator", "auditor", "admin"]}
DEFAULT_ROLES = ["system", "professional", "auditor", "admin"]


@dataclass(frozen=True)
class DemoOrganisation:
    id: str
    name: str
    type: str
    municipality_code: str | None
    roles: list[str]


def demo_organisations() -> list[DemoOrganisation]:
    orgs: list[DemoOrganisation] = []
    for slug, name, code in MUNICIPALITIES:
        for type_code, unit in LOCAL_UNITS:
            orgs.append(
                DemoOrganisation(f"{slug}-{type_code}", f"{unit}, {name} (demo)", type_code, code, DEFAULT_ROLES)
            )
    for org_id, type_code, name in COUNTY_UNITS:
        orgs.append(DemoOrganisation(org_id, name, type_code, None, ROLES_BY_TYPE.get(type_code, DEFAULT_ROLES)))
    return orgs


# Endpoints: the mailbox needs no receiving server, so it is every demo organisation's default.
DEFAULT_ENDPOINT: tuple[str, dict[str, Any]] = ("mailbox", {})


# `hub demo-receiver` (port 8901) plays the case systems of the tour: BUP's journal and the Nora school's.
def _demo_webhook(path: str) -> tuple[str, dict[str, Any]]:
    return ("webhook", {"url": f"http://127.0.0.1:8901/{path}", "secret_ref": "demo-webhook"})


ENDPOINTS: dict[str, tuple[str, dict[str, Any]]] = {
    "region-bup": _demo_webhook("bup"),
    "nora-elevhalsa": _demo_webhook("nora-elevhalsa"),
    "nora-grundskola": _demo_webhook("nora-grundskola"),
    "region-buh": ("fhir-r4", {"base_url": "http://127.0.0.1:8900/fhir"}),
}


@dataclass(frozen=True)
class DemoService:
    id: str
    organisation_id: str
    name: str
    description: str
    intervention_level: str
    trappan_step: int
    ages: tuple[int, int]
    referral_kinds: list[str]
    dimensions: list[str]
    waiting_days: int | None
    confirmed_days_ago: int | None  # None: never confirmed
    municipality_codes: list[str] = field(default_factory=list)


# (suffix, unit, name, description, level, step, ages, referral kinds, dimensions, base wait in days)
LOCAL_SERVICES: list[tuple[str, str, str, str, str, int, tuple[int, int], list[str], list[str], int]] = [
    (
        "elevhalsa-insats",
        "elevhalsa",
        "Elevhälsans insatser",
        "Kurator, skolpsykolog, skolsköterska och specialpedagog: utredning och stöd kring en elev.",
        "selective",
        2,
        (6, 19),
        ["begaran-om-insats", "samverkansforfragan", "sip-kallelse"],
        ["achieving", "healthy", "included", "safe"],
        7,
    ),
    (
        "socialtjanst-mottagning",
        "socialtjanst-myndighet",
        "Mottagningen barn och unga",
        "Tar emot orosanmälningar och ansökningar; förhandsbedömning inom 14 dagar.",
        "indicated",
        3,
        (0, 17),
        ["orosanmalan", "samverkansforfragan", "sip-kallelse"],
        ["safe", "nurtured"],
        0,
    ),
    (
        "oppenvard-familjestod",
        "socialtjanst-oppenvard",
        "Familjestöd och samtal för barn och unga",
        "Öppenvårdens stöd utan biståndsbeslut: föräldraskapsstöd, samtalsgrupper, familjebehandling.",
        "selective",
        2,
        (0, 20),
        ["samverkansforfragan", "sip-kallelse"],
        ["nurtured", "safe", "responsible", "included"],
        14,
    ),
    (
        "familjecentral",
        "familjecentral",
        "Öppen förskola och föräldrastöd",
        "Familjecentralens öppna verksamhet för blivande föräldrar och familjer med barn 0–6 år.",
        "universal",
        0,
        (0, 6),
        ["samverkansforfragan"],
        ["nurtured", "active", "included"],
        0,
    ),
]

# When each service's waiting time was last confirmed (days ago; None: never), cycled for variety.
CONFIRMATIONS: list[int | None] = [3, 20, 150, None, 45, 400]

# The county's services, and a few local ones with names of their own (Nora's barnombud, Örebro's
# familjestödjare).
NAMED_SERVICES: list[DemoService] = [
    DemoService(
        "region-bup-utredning",
        "region-bup",
        "BUP – utredning och behandling",
        "Barn- och ungdomspsykiatrisk bedömning, utredning och behandling vid måttlig till svår psykisk ohälsa.",
        "indicated",
        3,
        (0, 17),
        ["remiss", "samverkansforfragan", "sip-kallelse"],
        ["healthy", "safe"],
        75,
        10,
    ),
    DemoService(
        "region-bup-akut",
        "region-bup",
        "BUP akutmottagning",
        "Akut bedömning vid allvarlig psykisk ohälsa, dygnet runt.",
        "indicated",
        3,
        (0, 17),
        ["remiss"],
        ["healthy", "safe"],
        0,
        1,
    ),
    DemoService(
        "region-forsta-linjen-samtal",
        "region-forsta-linjen",
        "Första linjen – samtalsstöd",
        "Samtalsstöd vid lätt till måttlig psykisk ohälsa: oro, nedstämdhet, sömnproblem, stress.",
        "selective",
        2,
        (6, 17),
        ["remiss", "samverkansforfragan"],
        ["healthy", "included"],
        21,
        200,
    ),
    DemoService(
        "region-buh-habilitering",
        "region-buh",
        "Barn- och ungdomshabilitering",
        "Insatser för barn med varaktig funktionsnedsättning (autism, intellektuell eller rörelsenedsättning).",
        "indicated",
        3,
        (0, 17),
        ["remiss", "sip-kallelse"],
        ["healthy", "achieving", "included", "active"],
        120,
        None,
    ),
    DemoService(
        "region-barnklinik-bedomning",
        "region-barnklinik",
        "Barnmedicinsk bedömning",
        "Barnläkarbedömning efter remiss, till exempel vid misstänkt fysisk misshandel, tillväxt eller smärta.",
        "indicated",
        2,
        (0, 17),
        ["remiss"],
        ["healthy", "safe"],
        30,
        40,
    ),
    DemoService(
        "nora-barnombud",
        "nora-socialtjanst-oppenvard",
        "Barnombudsteamet",
        "Nora kommuns barnombud: en väg in och samordning kring barnet mellan skola, socialtjänst och vård.",
        "selective",
        2,
        (0, 17),
        ["samverkansforfragan", "sip-kallelse"],
        ["safe", "healthy", "achieving", "nurtured", "included"],
        5,
        2,
    ),
    DemoService(
        "orebro-familjestodjare",
        "orebro-socialtjanst-oppenvard",
        "Familjestödjare",
        "Örebro kommuns familjestödjare: stöd till familjen och samordning tidigt, innan behoven växer.",
        "selective",
        1,
        (0, 17),
        ["samverkansforfragan"],
        ["nurtured", "safe", "included"],
        10,
        60,
    ),
]


def demo_services() -> list[DemoService]:
    services = list(NAMED_SERVICES)
    n = 0
    for i, (slug, _name, _code) in enumerate(MUNICIPALITIES):
        for suffix, unit, name, description, level, step, ages, kinds, dimensions, wait in LOCAL_SERVICES:
            services.append(
                DemoService(
                    f"{slug}-{suffix}",
                    f"{slug}-{unit}",
                    name,
                    description,
                    level,
                    step,
                    ages,
                    kinds,
                    dimensions,
                    wait + (i * 7) % 30 if wait else wait,
                    CONFIRMATIONS[n % len(CONFIRMATIONS)],
                )
            )
            n += 1
    return services


def _endpoint_config(adapter: str, config: dict[str, Any]) -> dict[str, Any]:
    try:
        adapter_class(adapter)
    except (UnknownAdapter, ImportError):
        return config  # the adapter is not installed (yet): store the config unvalidated; the demo must load
    return validate_endpoint_config(adapter, config)


async def load_demo(session: AsyncSession) -> list[DemoOrganisation]:
    """Insert or refresh the demo registry. Idempotent: running it twice changes nothing (a waiting time
    confirmed since the first run is kept, and an endpoint is replaced only when it differs)."""
    repo = OrganisationRepository(session)
    endpoints = EndpointRepository(session)
    now = utcnow()
    orgs = demo_organisations()
    for org in orgs:
        await repo.upsert(
            Organisation(
                id=org.id,
                name=org.name,
                type=org.type,
                municipality_code=org.municipality_code,
                region_code=REGION_CODE,
                created_at=now,  # kept on a second load: the upsert leaves created_at alone
            )
        )
    for org in orgs:
        adapter, config = ENDPOINTS.get(org.id, DEFAULT_ENDPOINT)
        config = _endpoint_config(adapter, config)
        current = await endpoints.active_for(org.id)
        if current is None or (current.adapter, current.config) != (adapter, config):
            await endpoints.replace(org.id, adapter=adapter, config=config, now=now)
    services = ServiceRepository(session)
    for d in demo_services():
        confirmed = None if d.confirmed_days_ago is None else now - timedelta(days=d.confirmed_days_ago)
        await services.upsert_keeping_wait(
            Service(
                id=d.id,
                organisation_id=d.organisation_id,
                name=d.name,
                description=d.description,
                intervention_level=d.intervention_level,
                trappan_step=d.trappan_step,
                age_min=d.ages[0],
                age_max=d.ages[1],
                referral_kinds=d.referral_kinds,
                dimensions=d.dimensions,
                municipality_codes=d.municipality_codes,
                waiting_days=d.waiting_days,
                waiting_confirmed_at=confirmed,
                active=True,
                created_at=now,
                updated_at=now,
            )
        )
    await session.commit()
    return orgs
