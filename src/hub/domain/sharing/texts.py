"""Swedish and English texts of every reason and remedy the engine gives."""

from __future__ import annotations

from hub.domain.policy import LegalBasis

# --------------------------------------------------------------------------------------------- texts
# Stable codes with Swedish and English templates. Codes are the API; texts may be improved freely.

BASIS_LABELS: dict[LegalBasis, tuple[str, str]] = {
    "consent": ("samtycke", "consent"),
    "report-of-concern": ("en orosanmälan", "a report of concern"),
    "necessary-disclosure": ("nödvändigt utlämnande", "necessary disclosure"),
}
"""Swedish and English labels for the legal bases, used in texts."""

REASON_TEXTS: dict[str, tuple[str, str]] = {
    "consent-applies": (
        "Samtycke {ref} gäller och omfattar: {categories}.",
        "Consent {ref} is valid and covers: {categories}.",
    ),
    "consent-of-another-organisation-applies": (
        "Ett samtycke som en annan organisation har registrerat för barnet gäller och omfattar: {categories}. "
        "Det visas inte för er organisation, eftersom det inte namnger den.",
        "A consent another organisation recorded for the child is valid and covers: {categories}. It is not "
        "shown to your organisation, as it does not name it.",
    ),
    "consent-withdrawn": (
        "Samtycke {ref} återkallades {withdrawn_at}.",
        "Consent {ref} was withdrawn at {withdrawn_at}.",
    ),
    "consent-not-yet-valid": (
        "Samtycke {ref} gäller först från {valid_from}.",
        "Consent {ref} is not valid until {valid_from}.",
    ),
    "consent-expired": (
        "Samtycke {ref} upphörde att gälla {valid_until}.",
        "Consent {ref} expired at {valid_until}.",
    ),
    "consent-exceeds-max-duration": (
        "Samtycke {ref} gäller längre än policyns längsta tillåtna giltighetstid ({max_days} dagar) "
        "och är därför ogiltigt.",
        "Consent {ref} runs longer than the policy's maximum duration ({max_days} days) and is therefore invalid.",
    ),
    "consent-sender-not-covered": (
        "Samtycke {ref} omfattar inte avsändaren {sender}.",
        "Consent {ref} does not cover the sender {sender}.",
    ),
    "consent-recipient-not-covered": (
        "Samtycke {ref} omfattar inte mottagaren {recipient}.",
        "Consent {ref} does not cover the recipient {recipient}.",
    ),
    "consent-purpose-not-covered": (
        "Samtycke {ref} omfattar inte ändamålet {purpose}.",
        "Consent {ref} does not cover the purpose {purpose}.",
    ),
    "consent-guardian-missing": (
        "Samtycke {ref} kräver samtycke från {required} vårdnadshavare men har {present}.",
        "Consent {ref} needs the agreement of {required} guardian(s) but has {present}.",
    ),
    "consent-guardian-categories": (
        "Alla vårdnadshavare som måste samtycka har inte samtyckt till: {categories} (samtycke {ref}).",
        "Not every guardian who must consent agreed to: {categories} (consent {ref}).",
    ),
    "consent-child-missing": (
        "Barnet är {age} år och barnets eget samtycke krävs för: {categories} (samtycke {ref}).",
        "The child is {age} and the child's own consent is required for: {categories} (consent {ref}).",
    ),
    "consent-categories-not-covered": (
        "Samtycke {ref} omfattar inte: {categories}.",
        "Consent {ref} does not cover: {categories}.",
    ),
    "no-consent": (
        "Det finns inget samtycke för barnet som er organisation har registrerat eller som namnger den och "
        "som omfattar delningen.",
        "No consent for the child that your organisation recorded, or that names it, covers this share.",
    ),
    "consent-not-found": (
        "Samtycke {ref} finns inte bland de samtycken för barnet som er organisation kan se.",
        "Consent {ref} is not among the consents for this child that your organisation can see.",
    ),
    "report-of-concern-applies": (
        "Anmälningsplikten vid oro för barn bryter sekretessen utan samtycke för: {categories}.",
        "The duty to report concern about a child overrides secrecy without consent for: {categories}.",
    ),
    "report-purpose-mismatch": (
        "Anmälningsplikten gäller bara ändamålet {expected}, inte {purpose}.",
        "The duty to report concern applies only to the purpose {expected}, not {purpose}.",
    ),
    "report-recipient-type-not-allowed": (
        "En orosanmälan får bara tas emot av: {types}; mottagaren är {recipient}.",
        "A report of concern may only be received by: {types}; the recipient is {recipient}.",
    ),
    "necessity-assessment-applies": (
        "Nödvändigt utlämnande enligt er dokumenterade prövning {ref} för: {categories}.",
        "Necessary disclosure under your recorded assessment {ref} for: {categories}.",
    ),
    "no-necessity-assessment": (
        "Er organisation har ingen dokumenterad prövning av nödvändigt utlämnande för barnet; ett sådant "
        "utlämnande kräver en.",
        "Your organisation has recorded no necessity assessment for the child; necessary disclosure requires one.",
    ),
    "necessity-assessment-not-found": (
        "Prövning {ref} av nödvändigt utlämnande finns inte bland er organisations prövningar för barnet.",
        "Necessity assessment {ref} is not among your organisation's assessments for this child.",
    ),
    "necessity-assessment-other-recipient": (
        "Prövning {ref} gäller en annan mottagare.",
        "Assessment {ref} concerns a different recipient.",
    ),
    "necessity-assessment-stale": (
        "Prövning {ref} gjordes {decided_at} och är äldre än {max_age_days} dagar.",
        "Assessment {ref} was made at {decided_at} and is older than {max_age_days} days.",
    ),
    "necessity-assessment-in-future": (
        "Prövning {ref} är daterad efter tidpunkten för delningen ({decided_at}).",
        "Assessment {ref} is dated after the time of the share ({decided_at}).",
    ),
    "necessity-assessment-incomplete": (
        "Prövning {ref} saknar: {fields}.",
        "Assessment {ref} lacks: {fields}.",
    ),
    "necessity-assessment-categories-not-covered": (
        "Prövning {ref} omfattar inte: {categories}.",
        "Assessment {ref} does not cover: {categories}.",
    ),
    "category-never-shared-onward": (
        "Socialtjänstens svar på en orosanmälan går bara till den som anmälde, genom hubben, och delas aldrig "
        "vidare: {categories}.",
        "Social services' answer to a report of concern goes only to the reporter, through the hub, and is never "
        "shared onward: {categories}.",
    ),
    "category-not-allowed-for-basis": (
        "Policyn tillåter aldrig att {basis_sv} omfattar: {categories}.",
        "The policy never lets {basis_en} carry: {categories}.",
    ),
    "statute-cited": (
        "Grunden ({basis_sv}) vilar på {statute_sv} (rättsliga grunder, version {version}).",
        "The basis ({basis_en}) rests on {statute_en} (legal bases, version {version}).",
    ),
    "statute-cited-provision-unconfirmed": (
        "Grunden ({basis_sv}) vilar på {statute_sv} (rättsliga grunder, version {version}); kapitel och "
        "paragraf är inte bekräftade i hubbens källor och anges inte.",
        "The basis ({basis_en}) rests on {statute_en} (legal bases, version {version}); the chapter and "
        "section are not confirmed in the hub's sources and are not given.",
    ),
    "consent-refused": (
        "Vårdnadshavare eller barnet avböjde samtycke till ändamålet {purpose} {refused_at} (er begäran); "
        "att fråga igen direkt är inte en väg framåt.",
        "A guardian or the child refused consent for the purpose {purpose} at {refused_at} (your request); "
        "asking again at once is not a way forward.",
    ),
    "identity-protected": (
        "Barnet har skyddade personuppgifter: {categories} lämnas inte ut till mottagaren {recipient}.",
        "The child has protected personal data: {categories} are not disclosed to the recipient {recipient}.",
    ),
    "categories-denied": (
        "Följande kategorier får inte delas: {categories}.",
        "These categories may not be shared: {categories}.",
    ),
    "no-legal-basis": (
        "Delningen nekas: ingen rättslig grund tillåter någon av de begärda kategorierna. Bara grunder som er "
        "organisation har registrerat eller namnges i beskrivs.",
        "Sharing is denied: no legal basis allows any of the requested categories. Only bases your "
        "organisation recorded or is named in are described.",
    ),
    "no-categories-requested": (
        "Inga kategorier begärdes; inget delas.",
        "No categories were requested; nothing is shared.",
    ),
    # Problems found by check_consent.
    "consent-period-empty": (
        "Giltighetstiden måste sluta efter att den börjar.",
        "The validity period must end after it starts.",
    ),
    "consent-period-too-long": (
        "Giltighetstiden får vara högst {max_days} dagar.",
        "The validity period may be at most {max_days} days.",
    ),
    "consent-period-ended": (
        "Giltighetstiden har redan gått ut.",
        "The validity period has already ended.",
    ),
    "guardian-count-out-of-range": (
        "Antalet vårdnadshavare måste vara 1 eller 2.",
        "The number of guardians must be 1 or 2.",
    ),
    "no-guardian-grantor": (
        "Minst en vårdnadshavare måste ha samtyckt.",
        "At least one guardian must have agreed.",
    ),
    "more-guardians-than-custody": (
        "Fler vårdnadshavare har angetts än antalet vårdnadshavare.",
        "More guardian grantors are given than the number of guardians.",
    ),
    "duplicate-grantor": (
        "Samma person anges mer än en gång.",
        "The same grantor is given more than once.",
    ),
    "grantor-categories-outside-consent": (
        "En samtyckande person kan bara samtycka till kategorier som samtycket omfattar.",
        "A grantor can only agree to categories the consent covers.",
    ),
    "required-field-empty": (
        "Fältet får inte vara tomt.",
        "The field must not be empty.",
    ),
    "withdrawal-incomplete": (
        "Ett återkallande måste ange när, av vem och varför.",
        "A withdrawal must state when, by whom and why.",
    ),
}
"""Swedish and English templates for reason and consent-problem codes."""

REMEDY_TEXTS: dict[str, tuple[str, str]] = {
    "recipient-reaches-sender": (
        "Mottagaren får en markering om skyddade personuppgifter och er organisations kontaktuppgifter, och "
        "når er den vägen i stället för barnet eller familjen. Policyn lämnar {categories} bara till de "
        "organisationer den anger för barn med skyddade personuppgifter.",
        "The recipient gets a marker that the child's personal data are protected and your organisation's "
        "contact details, and reaches you that way instead of the child or the family. The policy releases "
        "{categories} only to the organisations it names for children with protected personal data.",
    ),
    "record-consent": (
        "Registrera ett samtycke från vårdnadshavarna (och barnet där det krävs) som omfattar avsändaren, "
        "mottagaren, ändamålet {purpose} och: {categories}.",
        "Record a consent from the guardians (and the child where required) covering the sender, the "
        "recipient, the purpose {purpose} and: {categories}.",
    ),
    "new-consent": (
        "Inhämta ett nytt samtycke; samtycke {ref} är återkallat.",
        "Obtain a new consent; consent {ref} has been withdrawn.",
    ),
    "renew-consent": (
        "Förnya samtycket; samtycke {ref} har upphört att gälla.",
        "Renew the consent; consent {ref} has expired.",
    ),
    "wait-for-consent-start": (
        "Dela tidigast {valid_from}, när samtycke {ref} börjar gälla.",
        "Share on or after {valid_from}, when consent {ref} takes effect.",
    ),
    "consent-within-max-duration": (
        "Registrera samtycket på nytt med en giltighetstid på högst {max_days} dagar.",
        "Record the consent again with a period of at most {max_days} days.",
    ),
    "consent-covering-sender": (
        "Ett samtycke som omfattar avsändaren {sender}.",
        "A consent covering the sender {sender}.",
    ),
    "consent-covering-recipient": (
        "Ett samtycke som omfattar mottagaren {recipient}.",
        "A consent covering the recipient {recipient}.",
    ),
    "consent-covering-purpose": (
        "Ett samtycke som omfattar ändamålet {purpose}.",
        "A consent covering the purpose {purpose}.",
    ),
    "consent-covering-categories": (
        "Ett samtycke där alla som måste samtycka omfattar: {categories}.",
        "A consent in which everyone who must consent covers: {categories}.",
    ),
    "consent-from-second-guardian": (
        "Samtycke även från den andra vårdnadshavaren (gemensam vårdnad).",
        "Consent from the second guardian as well (joint custody).",
    ),
    "consent-from-guardian": (
        "Samtycke från {required} vårdnadshavare.",
        "Consent from {required} guardian(s).",
    ),
    "child-consent": (
        "Barnets eget samtycke till: {categories}.",
        "The child's own consent to: {categories}.",
    ),
    "other-legal-basis": (
        "Åberopa en annan rättslig grund (samtycke eller nödvändigt utlämnande); anmälningsplikten "
        "gäller bara {expected}.",
        "Invoke another legal basis (consent or necessary disclosure); the duty to report concern "
        "applies only to {expected}.",
    ),
    "report-to-allowed-recipient-type": (
        "Skicka orosanmälan till en mottagare av typen: {types}.",
        "Send the report of concern to a recipient of type: {types}.",
    ),
    "basis-other-than-consent": (
        "Samtycke avböjdes: pröva en annan grund. Misstänker ni att barnet far illa gäller anmälningsplikten "
        "mot socialtjänsten; annars en dokumenterad prövning av nödvändigt utlämnande. Ny begäran om samtycke "
        "tidigast {ask_again_from}.",
        "Consent was refused: consider another basis. If you suspect the child is being harmed, the duty to "
        "report concern to social services applies; otherwise a recorded necessity assessment. A new request "
        "for consent not before {ask_again_from}.",
    ),
    "recorded-necessity-assessment": (
        "En dokumenterad prövning av nödvändigt utlämnande hos avsändaren för denna mottagare (vem som "
        "beslutat, motivering, ärendereferens) som omfattar: {categories}.",
        "A recorded necessity assessment by the sender for this recipient (who decided, justification, "
        "case reference) covering: {categories}.",
    ),
}
"""Swedish and English templates for remedy codes."""
