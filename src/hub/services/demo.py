"""Demo data: Region Örebro län and its 12 municipalities with fictional units of every kind.

The municipality names and codes are real and public; every unit, person and child is fictional.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from hub.db.repositories import OrganisationRepository
from hub.db.tables import Organisation

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

# Units the region runs once for the county (placed in Örebro), and county-wide actors.
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
DEFAULT_ROLES = ["system", "professional", "auditor"]


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
        orgs.append(DemoOrganisation(org_id, name, type_code, "1880", ROLES_BY_TYPE.get(type_code, DEFAULT_ROLES)))
    return orgs


async def load_demo(session: AsyncSession) -> list[DemoOrganisation]:
    """Insert or refresh the demo registry. Idempotent: running it twice changes nothing."""
    repo = OrganisationRepository(session)
    orgs = demo_organisations()
    for org in orgs:
        await repo.upsert(
            Organisation(
                id=org.id,
                name=org.name,
                type=org.type,
                municipality_code=org.municipality_code,
                region_code=REGION_CODE,
            )
        )
    await session.commit()
    return orgs
