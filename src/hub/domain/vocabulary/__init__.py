"""The shared vocabulary: versioned code systems, wheel variants with crosswalks, and the child's plan schema.

Everything here is pure: documents arrive as already-parsed ``dict`` objects (the loader in
``hub.vocabulary`` does the file I/O) and are validated into frozen pydantic models. A
:class:`Vocabulary` is the immutable registry the API layers (REST, GraphQL, FHIR) render from.

Errors (all carry ``field``, a JSON pointer or parameter name, and ``detail``)::

    VocabularyError (HubError)
    ├── InvalidVocabulary     a data file is wrong (start-up fails loudly, naming file and field)
    ├── UnknownVocabulary     no vocabulary with that name                       (NotFound)
    ├── UnknownVersion        the vocabulary exists, the version does not        (NotFound)
    ├── UnknownCode           a code is not in the code system it claims         (InvalidInput)
    └── InvalidRequest        e.g. an unsupported language, a system that is no variant (InvalidInput)
"""

from __future__ import annotations

from hub.domain.vocabulary.base import (
    CANONICAL_BASE,
    CANONICAL_WHEEL,
    SEMVER,
    Code,
    CodeSystemBase,
    Concept,
    ConceptEntry,
    DocumentBase,
    InvalidVocabulary,
    LocalizedText,
    PropertyValue,
    Status,
    UnknownCode,
    UnknownVersion,
    UnknownVocabulary,
    VocabularyError,
)
from hub.domain.vocabulary.codes import (
    Actor,
    ChildPlanSchemaDoc,
    CodeSystemDoc,
    LegalBasesDoc,
    LegalBasis,
    LifeStage,
    LifeStagesDoc,
    OrganisationType,
    OrganisationTypesDoc,
    PlanSection,
    ReferralStatus,
    ReferralStatusesDoc,
    ReferralTransition,
    Sector,
    StageEnd,
    VocabularyDocument,
)
from hub.domain.vocabulary.parsing import InvalidRequest, LoadedDocument, checksum_of, parse_document, semver_key
from hub.domain.vocabulary.registry import (
    CODE_SYSTEMS,
    Translation,
    TranslationMatch,
    TranslationResult,
    Vocabulary,
    VocabularyEntry,
    localize,
)
from hub.domain.vocabulary.tools import (
    Axis,
    FiveQuestionsDoc,
    InterventionLevelsDoc,
    LevelRelation,
    MyWorldTriangleDoc,
    PracticeModelDoc,
    PracticeStep,
    PractitionerQuestion,
    Quadrant,
    ResilienceMatrixDoc,
    TabbStep,
    TriangleSide,
)
from hub.domain.vocabulary.wheel import (
    ConceptMapSpec,
    ConversationQuestions,
    Equivalence,
    Goal,
    Indicator,
    MapElement,
    MapTarget,
    VariantDoc,
    WellbeingWheelDoc,
)

__all__ = [
    "CANONICAL_BASE",
    "CANONICAL_WHEEL",
    "CODE_SYSTEMS",
    "SEMVER",
    "Actor",
    "Axis",
    "ChildPlanSchemaDoc",
    "Code",
    "CodeSystemBase",
    "CodeSystemDoc",
    "Concept",
    "ConceptEntry",
    "ConceptMapSpec",
    "ConversationQuestions",
    "DocumentBase",
    "Equivalence",
    "FiveQuestionsDoc",
    "Goal",
    "Indicator",
    "InterventionLevelsDoc",
    "InvalidRequest",
    "InvalidVocabulary",
    "LegalBasesDoc",
    "LegalBasis",
    "LevelRelation",
    "LifeStage",
    "LifeStagesDoc",
    "LoadedDocument",
    "LocalizedText",
    "MapElement",
    "MapTarget",
    "MyWorldTriangleDoc",
    "OrganisationType",
    "OrganisationTypesDoc",
    "PlanSection",
    "PracticeModelDoc",
    "PracticeStep",
    "PractitionerQuestion",
    "PropertyValue",
    "Quadrant",
    "ReferralStatus",
    "ReferralStatusesDoc",
    "ReferralTransition",
    "ResilienceMatrixDoc",
    "Sector",
    "StageEnd",
    "Status",
    "TabbStep",
    "Translation",
    "TranslationMatch",
    "TranslationResult",
    "TriangleSide",
    "UnknownCode",
    "UnknownVersion",
    "UnknownVocabulary",
    "VariantDoc",
    "Vocabulary",
    "VocabularyDocument",
    "VocabularyEntry",
    "VocabularyError",
    "WellbeingWheelDoc",
    "checksum_of",
    "localize",
    "parse_document",
    "semver_key",
]
