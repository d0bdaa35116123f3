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

from cryptography.fernet import Fernet

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
    email_backend: str = "file"
    smtp_url: str = ""
    outbox_dir: str = ""
    esp_webhook_public_key: str = ""
    erp_adapter: str = "stub"
    max_body_mb: float = 10.0

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

        keys_raw = secret("CRM_ENCRYPTION_KEYS", lambda: Fernet.generate_key().decode())
        keys = [k.strip() for k in keys_raw.split(",") if k.strip()]
        for k in keys:
            try:
                Fernet(k.encode())
            except Exception as exc:  # ValueError / binascii.Error
                raise ConfigError("CRM_ENCRYPTION_KEYS holds a value that is not a Fernet key") from exc
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
            email_backend=backend,
            smtp_url=env.get("CRM_SMTP_URL", ""),
            outbox_dir=env.get("CRM_OUTBOX_DIR", str(instance / "outbox")),
            esp_webhook_public_key=env.get("CRM_ESP_WEBHOOK_PUBLIC_KEY", ""),
            erp_adapter=env.get("CRM_ERP_ADAPTER", "stub"),
            max_body_mb=max_body,
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
            "CRM_EMAIL_BACKEND": self.email_backend,
            "CRM_SMTP_URL": self.smtp_url,
            "CRM_OUTBOX_DIR": self.outbox_dir,
            "CRM_ESP_WEBHOOK_PUBLIC_KEY": self.esp_webhook_public_key,
            "CRM_ERP_ADAPTER": self.erp_adapter,
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
            "CRM_LOGIN_MAX_FAILS_ACCOUNT": 5,
            "CRM_LOGIN_MAX_FAILS_ADDRESS": 20,
            "CRM_LOGIN_WINDOW_MINUTES": 15,
            "CRM_AUDIT_LOCK": True,
        }


def engine_options(url: str) -> dict[str, Any]:
    if url.startswith("sqlite"):
        # One connection per thread; pragmas and BEGIN IMMEDIATE are set in crm.db.
        return {"connect_args": {"timeout": 30}}
    return {"pool_pre_ping": True}
