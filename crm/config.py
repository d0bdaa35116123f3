"""Settings from the environment (names fixed by shared/API.md).

Development generates missing keys once into ``instance/`` and reuses them; production
(``CRM_ENV=production``) refuses to start without them, with a one-line message.
"""

from __future__ import annotations

import base64
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crm.security.crypto import KeyFormatError, generate_key, parse_key

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_INSTANCE = PROJECT_ROOT / "instance"


class ConfigError(RuntimeError):
    """A setting is missing or wrong; the message is meant for the operator, on one line."""


def _instance_dir() -> Path:
    return Path(os.environ.get("CRM_INSTANCE_PATH", str(DEFAULT_INSTANCE)))


def _dev_secret(name: str, make) -> str:
    """Read a generated development secret from instance/, creating it on first use."""
    folder = _instance_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name.lower()}.key"
    if path.exists():
        return path.read_text().strip()
    value = make()
    # O_EXCL: two workers starting at once must agree on one key.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as fh:
        fh.write(value)
    return value


@dataclass
class Settings:
    env: str = "development"
    database_url: str = ""
    secret_key: str = ""
    encryption_keys: list[str] = field(default_factory=list)
    blind_index_key: str = ""
    audit_key: str = ""  # HMAC key of the audit chain, kept outside the database
    audit_anchor_file: str = ""  # the audit chain's anchored head outside the database ("" = none)
    email_backend: str = "file"
    smtp_url: str = ""
    outbox_dir: str = ""
    esp_webhook_public_key: str = ""
    erp_adapter: str = "stub"
    erp: dict[str, Any] = field(default_factory=dict)  # the other CRM_ERP_* settings (issue 6)
    mail: dict[str, Any] = field(default_factory=dict)  # the mail outbox's retries (CRM_MAIL_*)
    consent: dict[str, Any] = field(default_factory=dict)  # CRM_DOUBLE_OPT_IN, validity, links (issue 3)
    reporting: dict[str, Any] = field(default_factory=dict)  # CRM_COMPANY_NAME, webhook tolerance
    max_body_mb: float = 10.0
    trusted_proxies: int = 0  # proxy hops in front whose X-Forwarded-For/-Proto are believed (issue 11)
    logging: dict[str, Any] = field(default_factory=dict)  # CRM_LOG_LEVEL, CRM_LOG_FORMAT (issue 13)
    queue: dict[str, Any] = field(default_factory=dict)  # CRM_QUEUE_URL and the jobs' settings (issue 13)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if environ is None else environ)
        mode = env.get("CRM_ENV", "development")
        production = mode == "production"
        instance = _instance_dir()

        def secret(name: str, make) -> str:
            value = env.get(name, "").strip()
            if value:
                return value
            if production:
                raise ConfigError(f"{name} is not set; it is required when CRM_ENV=production")
            return _dev_secret(name, make)

        # A new installation's generated key is AES-GCM; an existing key file (Fernet) is read as it is.
        keys_raw = secret("CRM_ENCRYPTION_KEYS", generate_key)
        keys = [k.strip() for k in keys_raw.split(",") if k.strip()]
        for k in keys:
            try:
                parse_key(k)
            except KeyFormatError as exc:
                raise ConfigError("CRM_ENCRYPTION_KEYS holds a value that is neither a Fernet key nor "
                                  "aesgcm:<32 bytes, URL-safe base64> (crm keys generate makes one)") from exc
        default_db = f"sqlite:///{instance / 'crm.sqlite3'}"
        database_url = env.get("CRM_DATABASE_URL", "").strip()
        if not database_url:
            if production:
                raise ConfigError("CRM_DATABASE_URL is not set; it is required when CRM_ENV=production")
            database_url = default_db
        try:
            max_body = float(env.get("CRM_MAX_BODY_MB", "10"))
        except ValueError as exc:
            raise ConfigError("CRM_MAX_BODY_MB must be a number of megabytes") from exc
        _check_adapters_named(env, production)
        backend = env.get("CRM_EMAIL_BACKEND", "file")
        if backend not in ("file", "smtp"):
            raise ConfigError("CRM_EMAIL_BACKEND must be 'file' or 'smtp'")
        if backend == "smtp" and not env.get("CRM_SMTP_URL"):
            raise ConfigError("CRM_SMTP_URL is required when CRM_EMAIL_BACKEND=smtp")
        return cls(
            env=mode,
            database_url=database_url,
            secret_key=secret("CRM_SECRET_KEY", lambda: secrets.token_urlsafe(48)),
            encryption_keys=keys,
            blind_index_key=secret(
                "CRM_BLIND_INDEX_KEY", lambda: base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
            ),
            audit_key=secret("CRM_AUDIT_KEY", lambda: secrets.token_urlsafe(32)),
            audit_anchor_file=env.get("CRM_AUDIT_ANCHOR_FILE", str(instance / "audit-anchor.json")).strip(),
            email_backend=backend,
            smtp_url=env.get("CRM_SMTP_URL", ""),
            outbox_dir=env.get("CRM_OUTBOX_DIR", str(instance / "outbox")),
            esp_webhook_public_key=env.get("CRM_ESP_WEBHOOK_PUBLIC_KEY", ""),
            erp_adapter=env.get("CRM_ERP_ADAPTER", "stub"),
            erp=_erp_settings(env, production, secret),
            mail=_mail_settings(env),
            consent=_consent_settings(env, production),
            reporting={
                # the reporting entity named in the transparency reports (Open Payments, EFPIA)
                "CRM_COMPANY_NAME": env.get("CRM_COMPANY_NAME", "").strip() or "Pharma CRM demo company",
                # how old a signed email-platform webhook may be before it is refused as a replay
                "CRM_ESP_WEBHOOK_TOLERANCE_SECONDS": _number(env, "CRM_ESP_WEBHOOK_TOLERANCE_SECONDS", "600", int),
            },
            max_body_mb=max_body,
            trusted_proxies=_number(env, "CRM_TRUSTED_PROXIES", "0", int),
            logging=log_settings(env),
            queue=queue_settings(env, instance),
        )

    def flask_config(self) -> dict[str, Any]:
        production = self.env == "production"
        return {
            "CRM_ENV": self.env,
            "SECRET_KEY": self.secret_key,
            "SQLALCHEMY_DATABASE_URI": self.database_url,
            "SQLALCHEMY_ENGINE_OPTIONS": engine_options(self.database_url),
            "CRM_ENCRYPTION_KEYS": self.encryption_keys,
            "CRM_BLIND_INDEX_KEY": self.blind_index_key,
            "CRM_AUDIT_KEY": self.audit_key,
            "CRM_AUDIT_ANCHOR_FILE": self.audit_anchor_file,
            "CRM_EMAIL_BACKEND": self.email_backend,
            "CRM_SMTP_URL": self.smtp_url,
            "CRM_OUTBOX_DIR": self.outbox_dir,
            "CRM_ESP_WEBHOOK_PUBLIC_KEY": self.esp_webhook_public_key,
            "CRM_ERP_ADAPTER": self.erp_adapter,
            **self.erp,
            **self.mail,
            "MAX_CONTENT_LENGTH": int(self.max_body_mb * 1024 * 1024),
            "SESSION_COOKIE_HTTPONLY": True,
            "SESSION_COOKIE_SAMESITE": "Lax",
            # Secure cookies in production; plain http://127.0.0.1 in development must still log in.
            "SESSION_COOKIE_SECURE": production,
            "SESSION_COOKIE_NAME": "__Host-crm" if production else "crm_session",
            "REMEMBER_COOKIE_HTTPONLY": True,
            "WTF_CSRF_TIME_LIMIT": None,
            "CRM_TOKEN_TTL_HOURS": 12,
            "CRM_SESSION_TTL_HOURS": 12,
            "CRM_TRUSTED_PROXIES": self.trusted_proxies,
            # Login throttling (docs/architecture.md): per (account, address), failures past the free ones
            # wait 1 s, 2 s, 4 s ... up to the cap; one address across all accounts has a higher allowance.
            "CRM_LOGIN_MAX_FAILS": 5,
            "CRM_LOGIN_MAX_FAILS_ADDRESS": 100,
            "CRM_LOGIN_BACKOFF_MAX_SECONDS": 900,
            "CRM_LOGIN_WINDOW_MINUTES": 60,
            "CRM_AUDIT_LOCK": True,
            # Consent (issue 3): email x promotional needs double opt-in; validity per purpose in months;
            # link lifetimes in days; the base URL for links in mails sent outside a request (CLI).
            **self.consent,
            **self.reporting,
            **self.logging,
            **self.queue,
        }


def _number(env: dict[str, str], name: str, default: str, kind: type = float) -> Any:
    try:
        value = kind(env.get(name, default))
    except ValueError as exc:
        raise ConfigError(f"{name} must be a number") from exc
    if value < 0:
        raise ConfigError(f"{name} must not be negative")
    return value


def _flag(env: dict[str, str], name: str, default: str) -> bool:
    value = env.get(name, default).strip().lower()
    if value not in ("1", "true", "yes", "on", "0", "false", "no", "off"):
        raise ConfigError(f"{name} must be true or false")
    return value in ("1", "true", "yes", "on")


def _check_adapters_named(env: dict[str, str], production: bool) -> None:
    """Production names its adapters: a default that silently writes mail to a folder or sends orders to
    the simulator is how a site loses both. The simulator is refused outright (orders would be confirmed
    that no warehouse ships); the file outbox only when named (a relay may pick the files up)."""
    if not production:
        return
    for name, choices in (("CRM_EMAIL_BACKEND", "'smtp' (or 'file' for a pickup-folder relay)"),
                          ("CRM_ERP_ADAPTER", "'http'")):
        if not env.get(name, "").strip():
            raise ConfigError(f"{name} is not set; when CRM_ENV=production name the adapter explicitly: {choices}")
    if env["CRM_ERP_ADAPTER"].strip() == "stub":
        raise ConfigError("CRM_ERP_ADAPTER=stub is the ERP simulator and is refused when CRM_ENV=production; "
                          "use 'http' with an ERP gateway")


def log_settings(env: dict[str, str]) -> dict[str, str]:
    """Logging (docs/architecture.md): the level, and JSON lines (production default) or text."""
    level = env.get("CRM_LOG_LEVEL", "").strip().upper() or "INFO"
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise ConfigError("CRM_LOG_LEVEL must be DEBUG, INFO, WARNING, ERROR or CRITICAL")
    default = "json" if env.get("CRM_ENV", "development") == "production" else "text"
    fmt = env.get("CRM_LOG_FORMAT", "").strip().lower() or default
    if fmt not in ("json", "text"):
        raise ConfigError("CRM_LOG_FORMAT must be 'json' or 'text'")
    return {"CRM_LOG_LEVEL": level, "CRM_LOG_FORMAT": fmt}


QUEUE_SCHEMES = ("sqlite", "redis", "rediss", "postgresql", "postgresql+psycopg", "memory")


def queue_settings(env: dict[str, str], instance: Path) -> dict[str, Any]:
    """The job queue (docs/architecture.md, "Background jobs"): where huey keeps its messages, and how
    jobs are leased, retried and batched."""
    url = env.get("CRM_QUEUE_URL", "").strip() or f"sqlite:///{instance / 'queue.db'}"
    scheme = url.partition("://")[0].lower()
    if "://" not in url or scheme not in QUEUE_SCHEMES:
        raise ConfigError("CRM_QUEUE_URL must be sqlite:///path, redis://host:port/db or postgresql://...")
    attempts = _number(env, "CRM_JOB_MAX_ATTEMPTS", "5", int)
    if attempts < 1:
        raise ConfigError("CRM_JOB_MAX_ATTEMPTS must be at least 1")
    batch = _number(env, "CRM_SEND_BATCH_SIZE", "500", int)
    if batch < 1:
        raise ConfigError("CRM_SEND_BATCH_SIZE must be at least 1")
    lease = _number(env, "CRM_JOB_LEASE_SECONDS", "300")
    if lease < 1:
        raise ConfigError("CRM_JOB_LEASE_SECONDS must be at least 1")
    return {
        "CRM_QUEUE_URL": url,
        # Tests only: run each job at once, in the process that queued it (huey's immediate mode).
        "CRM_QUEUE_IMMEDIATE": False,
        "CRM_JOB_MAX_ATTEMPTS": attempts,
        "CRM_JOB_RETRY_BASE_SECONDS": _number(env, "CRM_JOB_RETRY_BASE_SECONDS", "30"),
        "CRM_JOB_LEASE_SECONDS": lease,
        "CRM_SEND_BATCH_SIZE": batch,
        "CRM_QUEUE_PERIODIC": _flag(env, "CRM_QUEUE_PERIODIC", "true"),
    }


def _mail_settings(env: dict[str, str]) -> dict[str, Any]:
    """The mail outbox (docs/campaigns.md): hand-over after the commit, retries with backoff."""
    attempts = _number(env, "CRM_MAIL_MAX_ATTEMPTS", "8", int)
    if attempts < 1:
        raise ConfigError("CRM_MAIL_MAX_ATTEMPTS must be at least 1")
    return {
        "CRM_MAIL_SEND_AFTER_COMMIT": _flag(env, "CRM_MAIL_SEND_AFTER_COMMIT", "true"),
        "CRM_MAIL_MAX_ATTEMPTS": attempts,
        "CRM_MAIL_RETRY_BASE_SECONDS": _number(env, "CRM_MAIL_RETRY_BASE_SECONDS", "60"),
        "CRM_MAIL_RETRY_MAX_SECONDS": _number(env, "CRM_MAIL_RETRY_MAX_SECONDS", "21600"),
    }


def _consent_settings(env: dict[str, str], production: bool) -> dict[str, Any]:
    """Consent (docs/consent.md). Links in mails are built from CRM_PUBLIC_URL, never from a request's
    Host header, so production must set it."""
    public_url = env.get("CRM_PUBLIC_URL", "").strip().rstrip("/")
    if not public_url:
        if production:
            raise ConfigError("CRM_PUBLIC_URL is not set; it is required when CRM_ENV=production")
        public_url = "http://127.0.0.1:8000"
    months = _number(env, "CRM_CONSENT_VALIDITY_MONTHS", "24", int)
    if months < 1:
        raise ConfigError("CRM_CONSENT_VALIDITY_MONTHS must be at least 1")
    mail_from = env.get("CRM_MAIL_FROM", "").strip() or "Pharma CRM <no-reply@pharma.example>"
    # The mailto: of List-Unsubscribe (RFC 2369): a mailbox someone reads and records as withdrawals.
    mailto = env.get("CRM_UNSUBSCRIBE_MAILTO", "").strip() or \
        f"unsubscribe@{mail_from.rpartition('@')[2].strip('> ') or 'pharma.example'}"
    if not mailto.isascii() or any(c in mailto for c in ' <>,"\r\n') or mailto.count("@") != 1:
        raise ConfigError("CRM_UNSUBSCRIBE_MAILTO must be a plain ASCII email address")
    return {
        "CRM_DOUBLE_OPT_IN": _flag(env, "CRM_DOUBLE_OPT_IN", "true"),
        "CRM_CONSENT_VALIDITY_MONTHS": {p: months for p in
                                        ("promotional", "medical_information", "events", "market_research")},
        "CRM_CONSENT_TOKEN_DAYS": {"confirm": 7, "unsubscribe": 365, "preferences": 30},
        # the data-subject download link mailed to the HCP's own address: short-lived, single use
        "CRM_DATA_EXPORT_LINK_MINUTES": _number(env, "CRM_DATA_EXPORT_LINK_MINUTES", "30", int) or 30,
        # how long a staff data-subject export file (built by a job) stays downloadable
        "CRM_EXPORT_KEEP_DAYS": _number(env, "CRM_EXPORT_KEEP_DAYS", "7", int) or 7,
        # the single-use answer link of a survey mail
        "CRM_SURVEY_LINK_DAYS": _number(env, "CRM_SURVEY_LINK_DAYS", "30", int) or 30,
        "CRM_PUBLIC_URL": public_url,
        "CRM_MAIL_FROM": mail_from,
        "CRM_UNSUBSCRIBE_MAILTO": mailto,
    }


def _erp_settings(env: dict[str, str], production: bool, secret: Any) -> dict[str, Any]:
    """The ERP integration (docs/orders.md). The HTTP secret is required in production only with the
    ``http`` adapter; without CRM_ERP_CALLBACK_SECRET in production every ERP callback is refused."""
    adapter = env.get("CRM_ERP_ADAPTER", "stub")
    if adapter not in ("stub", "http"):
        raise ConfigError("CRM_ERP_ADAPTER must be 'stub' or 'http'")
    url = env.get("CRM_ERP_HTTP_URL", "").strip()
    if adapter == "http" and not url:
        raise ConfigError("CRM_ERP_HTTP_URL is required when CRM_ERP_ADAPTER=http")
    http_secret = env.get("CRM_ERP_HTTP_SECRET", "").strip()
    if not http_secret and (adapter == "http" or not production):
        http_secret = secret("CRM_ERP_HTTP_SECRET", lambda: secrets.token_urlsafe(32))
    callback_secret = env.get("CRM_ERP_CALLBACK_SECRET", "").strip()
    if not callback_secret and not production:
        callback_secret = _dev_secret("CRM_ERP_CALLBACK_SECRET", lambda: secrets.token_urlsafe(32))
    flag = env.get("CRM_ERP_SEND_AFTER_COMMIT", "1").strip().lower()
    return {
        "CRM_ERP_HTTP_URL": url,
        "CRM_ERP_HTTP_SECRET": http_secret,
        "CRM_ERP_CALLBACK_SECRET": callback_secret,
        "CRM_ERP_TIMEOUT_SECONDS": _number(env, "CRM_ERP_TIMEOUT_SECONDS", "10"),
        "CRM_ERP_HTTP_RETRIES": _number(env, "CRM_ERP_HTTP_RETRIES", "2", int),
        "CRM_ERP_SEND_AFTER_COMMIT": flag not in ("0", "false", "no", "off"),
        "CRM_ERP_RETRY_BASE_SECONDS": _number(env, "CRM_ERP_RETRY_BASE_SECONDS", "30"),
        "CRM_ERP_RETRY_MAX_SECONDS": _number(env, "CRM_ERP_RETRY_MAX_SECONDS", "3600"),
        "CRM_ERP_MAX_ATTEMPTS": _number(env, "CRM_ERP_MAX_ATTEMPTS", "12", int),
        "CRM_ERP_STUB_ACCEPT_AFTER_SECONDS": _number(env, "CRM_ERP_STUB_ACCEPT_AFTER_SECONDS", "0"),
        "CRM_ERP_STUB_SHIP_AFTER_SECONDS": _number(env, "CRM_ERP_STUB_SHIP_AFTER_SECONDS", "30"),
        "CRM_ERP_STUB_FAIL_FIRST": _number(env, "CRM_ERP_STUB_FAIL_FIRST", "0", int),
        "CRM_ERP_STUB_SLOW_SECONDS": _number(env, "CRM_ERP_STUB_SLOW_SECONDS", "0"),
        "CRM_ERP_STUB_TIMEOUT_AFTER_COMMIT": _number(env, "CRM_ERP_STUB_TIMEOUT_AFTER_COMMIT", "0", int),
        "CRM_ERP_STUB_SEED": env.get("CRM_ERP_STUB_SEED", "1").strip().lower() not in ("0", "false", "no", "off"),
    }


def engine_options(url: str) -> dict[str, Any]:
    if url.startswith("sqlite"):
        # One connection per thread; pragmas and BEGIN IMMEDIATE are set in crm.db.
        return {"connect_args": {"timeout": 30}}
    return {"pool_pre_ping": True}
