"""Settings, read from the environment with the ``HUB_`` prefix. Built on demand, never at import."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, IPvAnyNetwork, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

_REPO_ROOT = Path(__file__).resolve().parents[2]


class Settings(BaseSettings):
    """Every knob of the hub. ``docs/operations.md`` documents each field."""

    model_config = SettingsConfigDict(env_prefix="HUB_", env_file=None, extra="ignore")

    # Where the embedded PostgreSQL keeps its data and dev mode keeps its keys.
    data_dir: Path = Path(".hub")
    # Any PostgreSQL; when unset, the hub starts the embedded PostgreSQL 18 in ``data_dir/pg``.
    database_url: SecretStr | None = None
    # The tables' owner, for migrations (and the grants they give HUB_DATABASE_URL's role, which then
    # cannot alter the audit trail). Unset: HUB_DATABASE_URL's role migrates and owns the tables. In
    # embedded mode the embedded server's superuser migrates and the hub runs as the role ``hub_app``.
    migrations_database_url: SecretStr | None = None
    database_pool_size: int = Field(default=10, ge=1, le=200)
    database_max_overflow: int = Field(default=10, ge=0, le=200)
    # While PostgreSQL is unreachable: a connection attempt gives up after this many seconds (requests and
    # /readyz answer 503 rather than hang), and each 503 asks the client to retry after this many (Retry-After).
    database_connect_timeout: float = Field(default=5.0, gt=0, le=300)
    database_retry_after_seconds: int = Field(default=5, ge=1, le=3600)
    # Where coordinators' flow queries read: a streaming replica of the primary (docs/operations.md,
    # "When a county outgrows one PostgreSQL"). Connections there are read-only; their audit entries
    # are written on the primary. Unset: they read the primary.
    flows_database_url: SecretStr | None = None
    migrations_dir: Path = _REPO_ROOT / "migrations"
    apply_migrations_on_start: bool = True

    # Dev mode: the hub makes its own signing key pair and ``hub token`` mints tokens with it.
    # Production sets this to false and configures issuer, audience and keys or a JWKS URL.
    dev_mode: bool = False
    jwt_issuer: str = "https://hub.local/dev"
    jwt_audience: str = "hub"
    jwt_algorithms: Annotated[list[Literal["RS256", "ES256"]], NoDecode] = ["RS256", "ES256"]
    # PEM public keys (a file with one or more concatenated PEM keys).
    jwt_public_key_file: Path | None = None
    jwks_url: str | None = None
    jwks_cache_seconds: int = Field(default=300, ge=0)
    jwt_leeway_seconds: int = Field(default=30, ge=0, le=300)
    dev_token_ttl_seconds: int = Field(default=8 * 3600, ge=60)
    # Federated sign-in (hub.api.issuers; docs/operations.md, "Federated sign-in"): a JSON or TOML file
    # listing the identity providers whose tokens the hub honours, each with its claim mapping.
    trusted_issuers_file: Path | None = None
    # Certificate-bound tokens (RFC 8705) behind a TLS-terminating proxy: the request header in which the
    # proxy forwards the client certificate, honoured only from trusted_proxies (comma separated CIDR).
    tls_client_cert_header: str | None = None
    trusted_proxies: Annotated[list[IPvAnyNetwork], NoDecode] = []
    # Strict tokens: a token's organisation must be registered and active, and the registry's answer is
    # cached this long per organisation. A deactivation takes effect at once in the process that made it
    # and within this many seconds in every other hub process. 0: ask the database on every request.
    organisation_cache_seconds: float = Field(default=30.0, ge=0, le=3600)

    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # Extra directories with vocabulary files (wheel variants a region adds), comma separated.
    vocabulary_dirs: Annotated[list[Path], NoDecode] = []
    # Public base URL, used in FHIR resources.
    public_url: str = "http://127.0.0.1:8000"

    # Lawful-sharing policy file; the default ships with the hub (docs/lawful-sharing.md).
    policy_file: Path | None = None
    # Pseudonym keys for personal identity numbers: "keyid:base64key,keyid2:base64key2". New pseudonyms
    # use pseudonym_key_id; older keys stay listed so records made before a rotation still match.
    # In dev mode a key is made and kept in data_dir when none is set.
    pseudonym_keys: SecretStr | None = None
    pseudonym_key_id: str | None = None

    # Referral payloads (personal data) are AES-256-GCM encrypted at rest: "keyid:base64key,…" (32-byte
    # keys). New payloads use payload_key_id; keep retired keys listed until their payloads are purged.
    payload_keys: SecretStr | None = None
    payload_key_id: str | None = None
    # Days after a referral's last change before its payload and free texts are purged (metadata stays).
    payload_retention_days: int = Field(default=90, ge=1)
    # A plan version's content (and its reviews' answers) is dropped this many days after the version was
    # sent; its metadata (number, author, sections, each member's share and decision) remains.
    plan_retention_days: int = Field(default=365, ge=1)

    # The audit log's sealer (docs/audit.md): one hub process at a time (an advisory lock) fixes the order
    # of new audit entries and their Merkle tree every audit_seal_interval_seconds, at most
    # audit_seal_batch_size entries a transaction, and signs a checkpoint every
    # audit_checkpoint_interval_seconds when the log grew. The signing key: base64 of a 32-byte Ed25519
    # private key (dev mode makes one in data_dir); audit_log_origin names the log in every checkpoint.
    audit_signing_key: SecretStr | None = None
    audit_log_origin: str = Field(default="hub-audit-log", min_length=1, pattern=r"^[^\n]+$")
    audit_seal_interval_seconds: float = Field(default=0.5, gt=0)
    audit_seal_batch_size: int = Field(default=5000, ge=1, le=100_000)
    audit_checkpoint_interval_seconds: float = Field(default=300.0, gt=0)
    # Whether `hub serve` and `hub worker` run the sealer (the lock keeps it to one of them at a time).
    audit_sealer: bool = True
    # The flows' folder (docs/operations.md, "The flows' folder"): the referral triggers only queue
    # (migration 0030); every `hub serve` and `hub worker` folds the queue into the coordinators' flow
    # tables every flow_fold_interval_seconds (one process at a time: an advisory lock), at most
    # flow_fold_batch_size queued rows a transaction (flow_folder: whether they run one). Readers fold what
    # is still queued before they read, folder or not.
    flow_folder: bool = True
    flow_fold_interval_seconds: float = Field(default=1.0, gt=0, le=3600)
    flow_fold_batch_size: int = Field(default=5000, ge=1, le=100_000)
    # The bearer token a scraper presents at /metrics (Prometheus: `authorization: {credentials: ...}`).
    # Unset, /metrics answers in dev mode only: its series name receiving organisations with their queues
    # and breakers, small counts included, which no organisation or coordinator may read unsuppressed.
    metrics_token: SecretStr | None = None

    # Delivery: the outbox worker. `hub serve` runs one in-process when serve_runs_worker (default: dev mode).
    serve_runs_worker: bool | None = None
    # Retries: exponential backoff with full jitter from the base, capped, until the attempts run out or the
    # horizon (hours since the entry was queued) has passed, whichever is first; then dead-lettered and the
    # sender told. The defaults ride out a receiver down for 72 hours.
    delivery_max_attempts: int = Field(default=100, ge=1, le=100_000)
    delivery_horizon_hours: float = Field(default=96.0, gt=0)
    delivery_backoff_base_seconds: float = Field(default=2.0, gt=0)
    delivery_backoff_max_seconds: float = Field(default=900.0, gt=0)
    # Circuit breaker per receiving organisation: after this many transient failures in a row it is down;
    # then one probe at a time goes to it, about every delivery_breaker_probe_seconds (with jitter), and
    # only the horizon gives its entries up (a failed probe says the receiver is down, not the message bad).
    delivery_breaker_threshold: int = Field(default=5, ge=1)
    delivery_breaker_probe_seconds: float = Field(default=0.5, gt=0)
    delivery_timeout_seconds: float = Field(default=10.0, gt=0)
    worker_batch_size: int = Field(default=20, ge=1, le=500)
    # Deliveries a worker has in flight at once (and its HTTP connections). More is slower, not faster:
    # httpx's pool checks every idle connection on each request.
    worker_concurrency: int = Field(default=8, ge=1, le=100)
    worker_poll_interval_seconds: float = Field(default=1.0, gt=0)
    # How long a claimed delivery is reserved; a worker that dies mid-delivery loses it after this. A live
    # worker's heartbeat extends it every third of it while the delivery runs.
    worker_lease_seconds: float = Field(default=15.0, gt=0)
    # How often adapters that poll (fhir-r4) are asked for status changes made in the receiver's system.
    status_poll_interval_seconds: float = Field(default=60.0, gt=0)
    # Mailbox: an unacknowledged message becomes fetchable again after this many seconds.
    mailbox_visibility_seconds: float = Field(default=300.0, gt=0)
    # Delivery targets: outside dev mode the hub refuses loopback, private, link-local and cloud-metadata
    # addresses (hub.adapters.addresses); on-premise receivers' networks, comma separated CIDR.
    endpoint_allowed_networks: Annotated[list[IPvAnyNetwork], NoDecode] = []
    # The delivery adapters the hub uses (entry points in the hub.adapters group), comma separated: an
    # installed adapter not listed is not loaded nor offered to endpoints; a listed one that does not
    # load stops the hub from starting (hub.adapters.registry).
    adapters: Annotated[list[str], NoDecode] = ["webhook", "fhir-r4", "mailbox"]
    # Secrets adapters reference by name (e.g. a webhook's signing secret): "name:value,…". Each can also
    # come from its own variable HUB_SECRET_<NAME> (upper case, '-' as '_'), which wins.
    adapter_secrets: SecretStr | None = None
    # Service directory: a waiting time confirmed longer ago than this is shown as unconfirmed.
    service_confirmation_max_age_days: int = Field(default=90, ge=1)

    # Sharing decisions and referral attempts (docs/lawful-sharing.md, "Rate limits"), counted per hub
    # process: at most sharing_limit_per_organisation per organisation and sharing_limit_per_child per
    # organisation and child in any window (then 429 with Retry-After). A refusal beyond the refusal
    # thresholds within a window is flagged in its audit entry (details.flagged). 0 turns one off.
    sharing_limit_window_seconds: float = Field(default=60.0, gt=0, le=86400)
    sharing_limit_per_organisation: int = Field(default=1200, ge=0)
    sharing_limit_per_child: int = Field(default=60, ge=0)
    sharing_refusals_flag_per_child: int = Field(default=10, ge=0)
    sharing_refusals_flag_per_organisation: int = Field(default=100, ge=0)

    # Coordinators' aggregates (docs/coordinators.md): a number is published only when it rests on at
    # least disclosure_k children (never below 3); an open referral with no transition for stall_days
    # is stalled; queries group and filter time by flows_finest_period at the finest.
    disclosure_k: int = Field(default=5, ge=3, le=100)
    stall_days: int = Field(default=30, ge=1, le=3650)
    # A handover gap: an offer of the named person's role unanswered for handover_days, or a stage whose
    # expected end passed handover_days ago without a new named person (coordinators' handover counts).
    handover_days: int = Field(default=14, ge=1, le=365)
    flows_finest_period: Literal["week", "month", "quarter", "year"] = "week"

    # GraphQL bounds (hub.api.graphql.limits): a request over any of them is refused before it runs. Cost:
    # 1 per selected field, more for fields that query the database (a flow table 50). The per-minute
    # budget is per organisation and per hub process (in memory), charged to requests that carry a token.
    graphql_max_tokens: int = Field(default=2000, ge=100, le=100_000)
    graphql_max_depth: int = Field(default=8, ge=2, le=64)
    graphql_max_aliases: int = Field(default=20, ge=0, le=10_000)
    graphql_max_fields: int = Field(default=500, ge=10, le=100_000)
    graphql_max_cost: int = Field(default=500, ge=10, le=1_000_000)
    graphql_cost_per_minute: int = Field(default=5000, ge=10, le=10_000_000)

    @field_validator("jwt_algorithms", "adapters", mode="before")
    @classmethod
    def _split_names(cls, value: object) -> object:
        return [v.strip() for v in value.split(",") if v.strip()] if isinstance(value, str) else value

    @field_validator("endpoint_allowed_networks", "trusted_proxies", mode="before")
    @classmethod
    def _split_networks(cls, value: object) -> object:
        return [v.strip() for v in value.split(",") if v.strip()] if isinstance(value, str) else value

    @field_validator("vocabulary_dirs", mode="before")
    @classmethod
    def _split_dirs(cls, value: object) -> object:
        return [Path(v.strip()) for v in value.split(",") if v.strip()] if isinstance(value, str) else value

    @cached_property
    def embedded(self) -> bool:
        return self.database_url is None

    @property
    def dev_pseudonym_key_file(self) -> Path:
        return self.data_dir / "dev-pseudonym-key"

    @property
    def runs_worker_in_serve(self) -> bool:
        return self.dev_mode if self.serve_runs_worker is None else self.serve_runs_worker

    @property
    def dev_payload_key_file(self) -> Path:
        return self.data_dir / "dev-payload-key"

    @property
    def dev_audit_signing_key_file(self) -> Path:
        return self.data_dir / "dev-audit-signing-key"

    @property
    def dev_key_file(self) -> Path:
        return self.data_dir / "dev-signing-key.pem"
