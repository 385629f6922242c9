"""Typed configuration for crmsync, read from ``CRMSYNC_*`` environment variables and ``.env``.

The connection settings have flat names that deployments rely on (``CRMSYNC_DATABASE_URL``,
``CRMSYNC_SALESFORCE_INSTANCE_URL``, ...). Tuning groups are nested models addressed with a double
underscore (``CRMSYNC_SYNC__PAGE_SIZE``). Settings are built once by :func:`get_settings` in the
entry points and passed down explicitly; tests construct their own ``Settings(...)``.

Secrets are :class:`pydantic.SecretStr`, so they never appear in ``repr`` or logs. In ``prod`` a
missing or well-known default secret stops start-up with :class:`InsecureSettingsError`, which
names the offending setting.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from app.auth_modes import (
    HubSpotAuth,
    HubSpotAuthFields,
    SalesforceAuth,
    SalesforceAuthFields,
    hubspot_mode,
    hubspot_problems,
    salesforce_login_url,
    salesforce_mode,
    salesforce_problems,
)
from app.core.types import CrmName
from app.domain.config import ScoringConfig
from app.settings_scoring import build_scoring_config

# The CRM write path's types load with the push that uses them, not with every command's settings.
if TYPE_CHECKING:
    from app.crm.writes import WriteTuning

DEFAULT_DATABASE_URL = "sqlite:///./var/crmsync.db"
DEFAULT_HUBSPOT_BASE_URL = "https://api.hubapi.com"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# SQLAlchemy drivers crmsync ships with; anything else is refused at load, not at first use.
SUPPORTED_DATABASE_DRIVERS = frozenset({"sqlite", "sqlite+pysqlite", "postgresql+psycopg"})
DATABASE_URL_EXAMPLES = "sqlite:///./var/crmsync.db or postgresql://user:password@host:5432/dbname"

# Values that mean "nobody set this": placeholders from templates and examples.
WELL_KNOWN_DEFAULT_SECRETS = frozenset(
    {"", "changeme", "changethis", "change-me", "secret", "password", "admin", "test", "dev"}
)


class InsecureSettingsError(RuntimeError):
    """Raised when ``CRMSYNC_ENV=prod`` and a required secret is missing or a default.

    Not a ``ValueError`` on purpose: pydantic would fold it into a generic validation error,
    and start-up code must be able to tell "unsafe for production" from "malformed".
    """


class SyncSettings(BaseModel):
    """Knobs of the pull engine (``CRMSYNC_SYNC__<KEY>``)."""

    page_size: int = Field(2000, ge=200, le=2000, description="Salesforce REST batchSize.")
    hubspot_page_size: int = Field(200, ge=1, le=200, description="HubSpot search page size.")
    lookback_seconds: int = Field(
        300,
        ge=0,
        description="Overlap re-read behind the cursor, for rows committed late with old stamps.",
    )
    bulk_threshold: int = Field(
        10_000,
        ge=0,
        description="Expected row count above which a Salesforce pull uses Bulk API 2.0.",
    )
    prefetch_pages: int = Field(
        1,
        ge=0,
        le=4,
        description="Pages read ahead while the current page is written (0: strictly serial).",
    )
    lease_seconds: float = Field(
        60,
        ge=1,
        description=(
            "TTL of a pass's (CRM, object) lease; a heartbeat renews it every third of this, so "
            "a pass killed on another host blocks the next one at most this long (on this "
            "host, not at all: a lease whose process is gone is taken over at once)."
        ),
    )
    request_timeout_seconds: float = Field(30.0, gt=0)
    max_retries: int = Field(6, ge=0, le=20)
    retry_max_wait_seconds: float = Field(60.0, gt=0)


class PushSettings(BaseModel):
    """Knobs of the push (CS -> CRM writes, ``CRMSYNC_PUSH__<KEY>``); see ADR 0006."""

    bulk_threshold: int = Field(
        2_000,
        ge=0,
        description=(
            "Records of one object above which a Salesforce push uses one Bulk API 2.0 ingest "
            "job per kind (update / upsert) instead of sObject Collections."
        ),
    )
    salesforce_chunk: int = Field(
        200, ge=1, le=200, description="Records per Salesforce sObject Collections call."
    )
    hubspot_chunk: int = Field(100, ge=1, le=100, description="Inputs per HubSpot batch call.")
    retry_attempts: int = Field(
        10,
        ge=1,
        description=(
            "Pushes that try a record the CRM refused with a retriable error (lock, rate "
            "limit, 5xx past the retries) again, changed or not; then it waits for a change."
        ),
    )
    target_check_ttl_seconds: float = Field(
        86_400,
        ge=0,
        description=(
            "How long a passed check of the CRM's target fields (describe / properties) is "
            "trusted before a push reads them again; a changed mapping is checked at once."
        ),
    )

    def tuning(self) -> WriteTuning:
        """The adapters' and the preview's view of these settings."""
        from app.crm.writes import WriteTuning

        return WriteTuning(
            salesforce_chunk=self.salesforce_chunk,
            hubspot_chunk=self.hubspot_chunk,
            bulk_threshold=self.bulk_threshold,
        )


class WebhookSettings(BaseModel):
    """Webhook processing and the new-onboarding notice (``CRMSYNC_WEBHOOKS__<KEY>``);
    docs/webhooks.md."""

    embedded_worker: bool = Field(
        True,
        description=(
            "Process inbox events inside `crmsync serve` (threads); false when a separate "
            "worker processes them."
        ),
    )
    worker_threads: int = Field(2, ge=1, le=32, description="Embedded worker threads.")
    enqueue_jobs: bool = Field(
        True,
        description=(
            "With the embedded worker off, hand each delivery's new events to the job queue "
            "right after they are stored (one `crmsync.webhooks` job per batch), so a separate "
            "`crmsync worker` starts on them at once instead of at the next sweep."
        ),
    )
    batch_size: int = Field(
        50,
        ge=1,
        le=200,
        description=(
            "Events a worker takes at once: their deals are read from the CRM in one batch "
            "call per object, each still started in its own transaction."
        ),
    )
    sweep_seconds: float = Field(
        2.0, gt=0, description="How often the sweeper looks for due events (after a restart)."
    )
    lease_seconds: int = Field(
        300, ge=5, description="An attempt not finished by then is due again (a dead worker)."
    )
    max_attempts: int = Field(8, ge=1, le=50, description="Attempts before an event is dead.")
    backoff_seconds: float = Field(5.0, gt=0, description="First retry delay; doubles.")
    backoff_cap_seconds: float = Field(3600.0, gt=0, description="Longest retry delay.")
    push_writebacks: bool = Field(
        True,
        description=(
            "Push the handover note, CSM and onboarding status to the CRM right after "
            "processing (otherwise the next `crmsync push` sends them)."
        ),
    )
    writeback_triggered_by: str = Field(
        "webhook", description="sync_runs.triggered_by of the write-back pushes."
    )
    notice_url: str | None = Field(
        None, description="POST a JSON message here on every new onboarding (chat/ticketing)."
    )
    notice_attempts: int = Field(4, ge=1, le=20, description="Tries per notice.")
    notice_timeout_seconds: float = Field(5.0, gt=0)
    notice_backoff_seconds: float = Field(0.5, ge=0)
    notice_rounds: int = Field(
        6,
        ge=1,
        le=50,
        description=(
            "Delivery rounds per notice (each of notice_attempts tries) before it is marked "
            "failed; the rounds are 5 minutes apart, doubling."
        ),
    )

    @field_validator("notice_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        if not value.strip().startswith(("http://", "https://")):
            raise ValueError(f"{value!r} must start with https:// (or http://)")
        return value.strip()


class ConsoleSettings(BaseModel):
    """The web console at ``/console`` (docs/console.md)."""

    secure_cookie: bool | None = Field(
        None,
        description="Mark the session cookie Secure (sent over HTTPS only). Unset: Secure when "
        "CRMSYNC_PUBLIC_BASE_URL is https://, or when CRMSYNC_ENV=prod without one; not for a "
        "dev server on plain http://127.0.0.1.",
    )
    session_hours: int = Field(
        12, ge=1, le=24 * 30, description="How long a console sign-in lasts."
    )


class BudgetSettings(BaseModel):
    """crmsync's share of one CRM's daily API budget (``CRMSYNC_SALESFORCE__BUDGET_SHARE``,
    ``CRMSYNC_HUBSPOT__DAILY_LIMIT``, ...; docs/budget.md).

    The daily limit is the CRM's own (Salesforce ``/limits`` and ``Sforce-Limit-Info``, HubSpot's
    ``X-HubSpot-RateLimit-Daily`` headers) unless ``daily_limit`` is set, which wins (HubSpot
    OAuth apps report none).
    """

    budget_share: float = Field(
        1.0,
        gt=0,
        le=1,
        description=(
            "Fraction of the daily API limit crmsync may use; the rest is left to the org's "
            "other integrations. 1 (the default): all of it, so only the org running out stops "
            "crmsync's scheduled work, and backfills are not estimated first."
        ),
    )
    daily_limit: int | None = Field(
        None, ge=1, description="The daily API limit to assume instead of the CRM's report."
    )


class JobSettings(BaseModel):
    """Background jobs on huey and their schedule (``CRMSYNC_JOBS__<KEY>``; docs/jobs.md).

    Without ``CRMSYNC_REDIS_URL`` the queue is a SQLite file (``sqlite_file``, by default
    ``jobs.db`` in ``CRMSYNC_DATA_DIR``): nothing to install, one machine. With it, Redis: any
    number of workers on any number of machines.
    """

    name: str = Field(
        "crmsync",
        min_length=1,
        max_length=64,
        description="Queue name: the Redis key prefix (two deployments on one Redis differ).",
    )
    sqlite_file: Path | None = Field(
        None, description="The embedded queue's SQLite file (default: CRMSYNC_DATA_DIR/jobs.db)."
    )
    incremental_minutes: int = Field(
        5, ge=0, le=60, description="Incremental sync of every CRM every N minutes (0: off)."
    )
    nightly_hour: int = Field(
        2, ge=-1, le=23, description="UTC hour of the nightly recompute + push (-1: off)."
    )
    nightly_minute: int = Field(30, ge=0, le=59)
    sweep_seconds: int = Field(
        60,
        ge=1,
        description=(
            "How often the sweeper runs (whole minutes; below 60 means every minute) and how "
            "long a queued run or inbox event may wait before it is enqueued again."
        ),
    )
    retry_errors: bool = Field(
        True, description="Whether the sweeper retries retriable sync_errors whose time has come."
    )
    lease_wait_seconds: int = Field(
        5,
        ge=1,
        le=3600,
        description=(
            "A run that finds its (CRM, object) held by another run is tried again after this "
            "many seconds (the sweeper remains the backstop if that message is lost)."
        ),
    )


class ScoringSettings(BaseModel):
    """Domain thresholds (domain.md 10): ``CRMSYNC_SCORING__<GROUP>__<KEY>`` and an optional
    TOML file ``CRMSYNC_SCORING__FILE`` of the same groups (``[weights]``, ``[usage]``, ...).

    The environment wins over the file, the file over the defaults in
    ``app/domain/config.py`` (docs/domain-rules.md lists each). An unknown key or a value that
    breaks a rule (green below yellow) stops start-up, naming the setting.
    """

    model_config = ConfigDict(extra="allow")

    file: Path | None = None
    _config: ScoringConfig = PrivateAttr(default_factory=ScoringConfig)

    @model_validator(mode="after")
    def _build_config(self) -> ScoringSettings:
        self._config = build_scoring_config(self.file, self.model_extra or {})
        return self

    @property
    def config(self) -> ScoringConfig:
        """The :class:`ScoringConfig` the domain functions take."""
        return self._config


class RecomputeSettings(BaseModel):
    """The health recompute's processes (``CRMSYNC_RECOMPUTE__<KEY>``; docs/recompute.md)."""

    workers: int = Field(
        0,
        ge=0,
        le=32,
        description=(
            "Processes computing chunks side by side: 0 one per core this process may use (at "
            "most 4), 1 everything in the command's own process."
        ),
    )
    chunk_size: int = Field(
        5_000,
        ge=1,
        le=50_000,
        description="Accounts read, computed and written per transaction (memory per worker).",
    )


class Settings(BaseSettings):
    """All of crmsync's configuration. Build with :func:`get_settings` in entry points."""

    model_config = SettingsConfigDict(
        env_prefix="CRMSYNC_",
        env_nested_delimiter="__",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
    )

    env: Literal["dev", "prod"] = "dev"
    log_level: str = "INFO"
    database_url: str = DEFAULT_DATABASE_URL

    # Salesforce: the flow (app.auth_modes; inferred when unset) and its credentials.
    salesforce_auth: SalesforceAuth | None = None
    salesforce_login_url: str | None = None
    salesforce_instance_url: str | None = None
    salesforce_api_version: str = "59.0"
    salesforce_client_id: str | None = None
    salesforce_client_secret: SecretStr | None = None
    salesforce_username: str | None = None
    salesforce_private_key_file: Path | None = None
    salesforce_refresh_token: SecretStr | None = None
    salesforce_access_token: SecretStr | None = None
    salesforce_organization_id: str | None = None

    hubspot_auth: HubSpotAuth | None = None
    hubspot_base_url: str = DEFAULT_HUBSPOT_BASE_URL
    hubspot_access_token: SecretStr | None = None
    hubspot_client_id: str | None = None
    hubspot_client_secret: SecretStr | None = None
    hubspot_refresh_token: SecretStr | None = None
    hubspot_app_secret: SecretStr | None = None

    # Webhooks (docs/webhooks.md): the public URL the CRMs call (behind a proxy the signed URL is
    # this + the path), the secret path segment of the Salesforce route, and the HMAC key of
    # Flow / Apex JSON calls.
    public_base_url: str | None = None
    salesforce_webhook_secret: SecretStr | None = None
    salesforce_webhook_signing_secret: SecretStr | None = None

    ca_bundle: Path | None = None
    admin_bootstrap_key: SecretStr | None = None
    redis_url: str | None = None
    data_dir: Path = Field(
        Path("var"),
        description="Where crmsync keeps its local files (the embedded job queue); created.",
    )
    mapping_file: Path | None = None
    default_currency: str = Field(
        "EUR",
        min_length=3,
        max_length=3,
        description="Currency of CRM amounts that carry none (domain.md 0: EUR).",
    )

    sync: SyncSettings = SyncSettings()
    push: PushSettings = PushSettings()
    scoring: ScoringSettings = ScoringSettings()
    recompute: RecomputeSettings = RecomputeSettings()
    webhooks: WebhookSettings = WebhookSettings()
    jobs: JobSettings = JobSettings()
    console: ConsoleSettings = ConsoleSettings()
    # Nested as CRMSYNC_SALESFORCE__BUDGET_SHARE; the connection settings stay flat.
    salesforce: BudgetSettings = BudgetSettings()
    hubspot: BudgetSettings = BudgetSettings()

    @field_validator("salesforce_auth", "hubspot_auth", mode="before")
    @classmethod
    def _blank_auth_is_unset(cls, value: str | None) -> str | None:
        """``CRMSYNC_SALESFORCE_AUTH=`` (empty, as templates leave it) means "infer"."""
        if value is None or not str(value).strip():
            return None
        return str(value).strip().lower()

    @field_validator("salesforce_private_key_file", mode="before")
    @classmethod
    def _blank_path_is_unset(cls, value: str | Path | None) -> Path | None:
        if value is None or not str(value).strip():
            return None
        return Path(str(value).strip()).expanduser()

    @field_validator(
        "salesforce_instance_url", "salesforce_login_url", "hubspot_base_url", "public_base_url"
    )
    @classmethod
    def _normalise_url(cls, value: str | None) -> str | None:
        """Strip a trailing slash: Salesforce answers 404 to ``//services/...``."""
        if value is None or value == "":
            return None
        value = value.strip().rstrip("/")
        if "://" not in value:
            raise ValueError(f"{value!r} must start with https:// (or http://)")
        return value

    @field_validator("database_url")
    @classmethod
    def _normalise_database_url(cls, value: str) -> str:
        """Accept ``postgres://`` and plain ``postgresql://`` and use the psycopg 3 driver;
        refuse what is not a URL or names a database crmsync does not support."""
        value = value.strip()
        for prefix in ("postgres://", "postgresql://"):
            if value.startswith(prefix):
                value = "postgresql+psycopg://" + value[len(prefix) :]
        try:
            url = make_url(value)
        except ArgumentError:
            raise ValueError(
                f"{value!r} is not a database URL; expected {DATABASE_URL_EXAMPLES}"
            ) from None
        if url.drivername not in SUPPORTED_DATABASE_DRIVERS:
            raise ValueError(
                f"unsupported database {url.drivername!r}: crmsync runs on SQLite or "
                f"PostgreSQL ({DATABASE_URL_EXAMPLES})"
            )
        if url.drivername.startswith("postgresql") and not url.database:
            raise ValueError(f"no database name in the URL; expected {DATABASE_URL_EXAMPLES}")
        return value

    @field_validator("redis_url", mode="before")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        """Empty means unset (the embedded queue); otherwise a redis:// or rediss:// URL."""
        if value is None or not str(value).strip():
            return None
        value = str(value).strip()
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(f"{value!r} is not a Redis URL; expected redis://host:6379/0")
        return value

    @field_validator("log_level")
    @classmethod
    def _known_log_level(cls, value: str) -> str:
        level = value.strip().upper()
        if level not in LOG_LEVELS:
            raise ValueError(f"{value!r} is not a log level; use one of {', '.join(LOG_LEVELS)}")
        return level

    @field_validator("ca_bundle", mode="before")
    @classmethod
    def _ca_bundle_exists(cls, value: str | Path | None) -> Path | None:
        """A CA file that is not there would fail every CRM call with a TLS error: stop now."""
        if value is None or str(value).strip() == "":
            return None
        value = Path(str(value).strip())
        if not value.expanduser().is_file():
            raise ValueError(
                f"no CA file at {value}; point it at the PEM file of the CA that signs the "
                "CRM's certificate (crmsync sandbox prints it), or unset it to use the system CAs"
            )
        return value.expanduser()

    def _salesforce_fields(self) -> SalesforceAuthFields:
        return SalesforceAuthFields(
            auth=self.salesforce_auth,
            login_url=self.salesforce_login_url,
            instance_url=self.salesforce_instance_url,
            client_id=self.salesforce_client_id or None,
            client_secret=self.salesforce_client_secret is not None,
            username=self.salesforce_username or None,
            private_key_file=self.salesforce_private_key_file,
            refresh_token=self.salesforce_refresh_token is not None,
            access_token=self.salesforce_access_token is not None,
        )

    def _hubspot_fields(self) -> HubSpotAuthFields:
        return HubSpotAuthFields(
            auth=self.hubspot_auth,
            access_token=self.hubspot_access_token is not None,
            client_id=self.hubspot_client_id or None,
            client_secret=self.hubspot_client_secret is not None,
            refresh_token=self.hubspot_refresh_token is not None,
        )

    @property
    def salesforce_auth_mode(self) -> SalesforceAuth | None:
        """The Salesforce flow in use: ``CRMSYNC_SALESFORCE_AUTH`` or the one inferred."""
        return salesforce_mode(self._salesforce_fields())

    @property
    def salesforce_token_url_base(self) -> str | None:
        """Where token requests go (``CRMSYNC_SALESFORCE_LOGIN_URL`` or the flow's default)."""
        return salesforce_login_url(self._salesforce_fields(), self.salesforce_auth_mode)

    @property
    def hubspot_auth_mode(self) -> HubSpotAuth | None:
        return hubspot_mode(self._hubspot_fields())

    @property
    def salesforce_enabled(self) -> bool:
        return self.salesforce_auth_mode is not None

    @property
    def hubspot_enabled(self) -> bool:
        return self.hubspot_auth_mode is not None

    @property
    def console_secure_cookie(self) -> bool:
        """Whether the console's session cookie is Secure (:class:`ConsoleSettings`)."""
        if self.console.secure_cookie is not None:
            return self.console.secure_cookie
        if self.public_base_url is not None:
            return self.public_base_url.startswith("https://")
        return self.env == "prod"

    @property
    def enabled_crms(self) -> list[CrmName]:
        """The CRMs that have credentials, in a fixed order."""
        crms: list[CrmName] = []
        if self.salesforce_enabled:
            crms.append("salesforce")
        if self.hubspot_enabled:
            crms.append("hubspot")
        return crms

    def budget(self, crm: CrmName) -> BudgetSettings:
        return self.salesforce if crm == "salesforce" else self.hubspot

    def budget_guarded(self, crm: CrmName) -> bool:
        """Whether backfills of ``crm`` are estimated against a share first (a share below 1
        or a configured daily limit)."""
        config = self.budget(crm)
        return config.budget_share < 1 or config.daily_limit is not None

    @property
    def jobs_sqlite_file(self) -> Path:
        """The embedded queue's file: ``CRMSYNC_JOBS__SQLITE_FILE`` or ``<data dir>/jobs.db``."""
        return self.jobs.sqlite_file or self.data_dir / "jobs.db"

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @model_validator(mode="after")
    def _complete_crm_auth(self) -> Settings:
        """A half-configured flow stops start-up, naming each missing setting (exit 2)."""
        problems = salesforce_problems(self._salesforce_fields())
        problems += hubspot_problems(self._hubspot_fields())
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @model_validator(mode="after")
    def _refuse_insecure_prod(self) -> Settings:
        if self.env == "prod":
            problems = list(self.insecure_settings())
            if problems:
                raise InsecureSettingsError(
                    "refusing to start with CRMSYNC_ENV=prod: " + "; ".join(problems)
                )
        return self

    def insecure_settings(self) -> list[str]:
        """Name each setting that production must not run with, and why."""
        problems: list[str] = []

        def check(name: str, value: SecretStr | None, required: bool) -> None:
            if value is None:
                if required:
                    problems.append(f"CRMSYNC_{name} is missing")
                return
            if value.get_secret_value().strip().lower() in WELL_KNOWN_DEFAULT_SECRETS:
                problems.append(f"CRMSYNC_{name} is a default or empty value")

        if not self.enabled_crms:
            problems.append(
                "no CRM configured: set the Salesforce credentials (CRMSYNC_SALESFORCE_AUTH and "
                "its settings, e.g. CRMSYNC_SALESFORCE_CLIENT_ID and "
                "CRMSYNC_SALESFORCE_CLIENT_SECRET) or HubSpot's (CRMSYNC_HUBSPOT_ACCESS_TOKEN)"
            )
        sf_mode = self.salesforce_auth_mode
        if sf_mode is None and (self.salesforce_instance_url or self.salesforce_login_url):
            problems.append(
                "a Salesforce URL is set but no credentials: set CRMSYNC_SALESFORCE_CLIENT_ID "
                "and CRMSYNC_SALESFORCE_CLIENT_SECRET, or another flow (CRMSYNC_SALESFORCE_AUTH)"
            )
        if sf_mode == "session":
            # A pasted session id dies within hours and nothing can renew it: tests only.
            problems.append(
                "CRMSYNC_SALESFORCE_AUTH=session is for tests only: use jwt, refresh_token or "
                "client_credentials"
            )
        if sf_mode is not None:
            check("SALESFORCE_CLIENT_SECRET", self.salesforce_client_secret, required=False)
            check("SALESFORCE_REFRESH_TOKEN", self.salesforce_refresh_token, required=False)
            check("SALESFORCE_ACCESS_TOKEN", self.salesforce_access_token, required=False)
            if not self.salesforce_organization_id:
                problems.append(
                    "CRMSYNC_SALESFORCE_ORGANIZATION_ID is missing "
                    "(outbound messages are checked against it)"
                )
        hs_mode = self.hubspot_auth_mode
        if hs_mode is not None:
            if hs_mode == "private_app":
                check("HUBSPOT_ACCESS_TOKEN", self.hubspot_access_token, required=True)
            else:
                check("HUBSPOT_CLIENT_SECRET", self.hubspot_client_secret, required=True)
                check("HUBSPOT_REFRESH_TOKEN", self.hubspot_refresh_token, required=True)
            check("HUBSPOT_APP_SECRET", self.hubspot_app_secret, required=True)
        check("ADMIN_BOOTSTRAP_KEY", self.admin_bootstrap_key, required=False)
        bootstrap = self.admin_bootstrap_key
        if bootstrap is not None and 0 < len(bootstrap.get_secret_value().strip()) < 24:
            problems.append(
                "CRMSYNC_ADMIN_BOOTSTRAP_KEY is shorter than 24 characters: it is an admin key, "
                "use a long random value (or unset it and run `crmsync keys create`)"
            )
        if self.ca_bundle is not None and not self.ca_bundle.is_file():
            problems.append(f"CRMSYNC_CA_BUNDLE points to {self.ca_bundle}, which is not a file")
        return problems


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment and ``.env``."""
    return Settings()
