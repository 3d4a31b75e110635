"""The child's plan as a write model. Plain Python, no I/O.

The plan is written in the lead professional's own system; the hub holds its **versions** and routes them:

- the responsible organisation of the child's team (the lead professional, or the named person while
  there is none) sends the next version, naming the version it replaces by its ETag (``If-Match``);
  versions are numbered 1, 2, … per child. A team with neither role has no one to write a plan.
- **each section is a data category** (the vocabulary's ``child-plan`` 1.1.0 maps them). For each other
  current member the sharing engine decides which categories may travel; the member receives those
  sections (``plan-version``), or, with none, a notice that a plan exists and whom to ask
  (``plan-notice``). :meth:`ChildPlan.share` turns the engine's permitted categories into sections kept
  and withheld (with their category and the reason).
- members **review** a version against the five evaluation questions; its author hears of it.

Who may see a plan at all is the team's rule: its current members; everyone else is told it does not exist.
"""

from hub.domain.plans.plan import ChildPlan, PlanVersion, Review, Share, ShareKind
from hub.domain.plans.sections import METADATA, UNMAPPED, Withheld, categories_of, sections_of, split, strip

__all__ = [
    "METADATA",
    "UNMAPPED",
    "ChildPlan",
    "PlanVersion",
    "Review",
    "Share",
    "ShareKind",
    "Withheld",
    "categories_of",
    "sections_of",
    "split",
    "strip",
]
