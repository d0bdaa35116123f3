"""Configuration from the environment: development keys generated once, production refuses."""

from __future__ import annotations

import pytest

from crm.config import ConfigError, Settings

PRODUCTION_ADAPTERS = {"CRM_EMAIL_BACKEND": "smtp", "CRM_SMTP_URL": "smtp://relay.pharma.example:587",
                       "CRM_ERP_ADAPTER": "http", "CRM_ERP_HTTP_URL": "https://erp.pharma.example/crm",
                       "CRM_ERP_HTTP_SECRET": "e" * 32}


def _production_env(**extra):
    from cryptography.fernet import Fernet

    env = {"CRM_ENV": "production", "CRM_SECRET_KEY": "s" * 40, "CRM_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
           "CRM_BLIND_INDEX_KEY": "b" * 40, "CRM_AUDIT_KEY": "a" * 40,
           "CRM_DATABASE_URL": "postgresql+psycopg://x@127.0.0.1/x",
           "CRM_PUBLIC_URL": "https://crm.pharma.example", **PRODUCTION_ADAPTERS}
    env.update(extra)
    return {k: v for k, v in env.items() if v is not None}


def test_development_generates_keys_once_and_reuses_them(tmp_path, monkeypatch):
    monkeypatch.setenv("CRM_INSTANCE_PATH", str(tmp_path))
    first = Settings.from_env({})
    second = Settings.from_env({})
    assert first.secret_key == second.secret_key
    assert first.encryption_keys == second.encryption_keys
    assert first.blind_index_key == second.blind_index_key
    assert first.audit_key == second.audit_key and len(first.audit_key) >= 32
    assert (tmp_path / "crm_audit_key.key").exists()
    assert first.audit_anchor_file == str(tmp_path / "audit-anchor.json")
    assert (tmp_path / "crm_secret_key.key").exists()
    assert first.database_url == f"sqlite:///{tmp_path / 'crm.sqlite3'}"
    assert first.outbox_dir == str(tmp_path / "outbox")


@pytest.mark.parametrize("missing", ["CRM_SECRET_KEY", "CRM_ENCRYPTION_KEYS", "CRM_BLIND_INDEX_KEY",
                                     "CRM_AUDIT_KEY", "CRM_DATABASE_URL", "CRM_PUBLIC_URL"])
def test_production_refuses_a_missing_secret_with_one_line(missing, tmp_path, monkeypatch):
    monkeypatch.setenv("CRM_INSTANCE_PATH", str(tmp_path))
    from cryptography.fernet import Fernet

    env = {"CRM_ENV": "production", "CRM_SECRET_KEY": "s" * 40, "CRM_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
           "CRM_BLIND_INDEX_KEY": "b" * 40, "CRM_AUDIT_KEY": "a" * 40,
           "CRM_DATABASE_URL": "postgresql+psycopg://x@127.0.0.1/x",
           "CRM_PUBLIC_URL": "https://crm.pharma.example", **PRODUCTION_ADAPTERS}
    del env[missing]
    with pytest.raises(ConfigError) as info:
        Settings.from_env(env)
    assert missing in str(info.value) and "\n" not in str(info.value)
    assert not list(tmp_path.glob("*.key")), "production must not generate keys"


def test_bad_values_are_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("CRM_INSTANCE_PATH", str(tmp_path))
    with pytest.raises(ConfigError):
        Settings.from_env({"CRM_ENCRYPTION_KEYS": "not-a-key"})
    with pytest.raises(ConfigError):
        Settings.from_env({"CRM_EMAIL_BACKEND": "carrier-pigeon"})
    with pytest.raises(ConfigError):
        Settings.from_env({"CRM_EMAIL_BACKEND": "smtp"})
    with pytest.raises(ConfigError):
        Settings.from_env({"CRM_MAX_BODY_MB": "ten"})


def test_max_body_and_secure_cookies_in_production(tmp_path, monkeypatch):
    monkeypatch.setenv("CRM_INSTANCE_PATH", str(tmp_path))
    from cryptography.fernet import Fernet

    env = {"CRM_ENV": "production", "CRM_SECRET_KEY": "s" * 40, "CRM_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
           "CRM_BLIND_INDEX_KEY": "b" * 40, "CRM_AUDIT_KEY": "a" * 40,
           "CRM_DATABASE_URL": "postgresql+psycopg://x@127.0.0.1/x",
           "CRM_MAX_BODY_MB": "2", "CRM_PUBLIC_URL": "https://crm.pharma.example", **PRODUCTION_ADAPTERS}
    cfg = Settings.from_env(env).flask_config()
    assert cfg["MAX_CONTENT_LENGTH"] == 2 * 1024 * 1024
    assert cfg["SESSION_COOKIE_SECURE"] is True and cfg["SESSION_COOKIE_HTTPONLY"] is True
    assert cfg["SESSION_COOKIE_SAMESITE"] == "Lax"


def test_production_app_refuses_to_start_without_keys(tmp_path, monkeypatch):
    for name in ("CRM_SECRET_KEY", "CRM_ENCRYPTION_KEYS", "CRM_BLIND_INDEX_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CRM_ENV", "production")
    monkeypatch.setenv("CRM_INSTANCE_PATH", str(tmp_path))
    from crm import create_app

    with pytest.raises(ConfigError):
        create_app()


def test_password_hashes_use_full_argon2_cost_unless_configured(app):
    from argon2 import PasswordHasher

    from crm.security.passwords import hash_password, verify_password

    default = PasswordHasher()
    with app.app_context():
        saved = (app.config["CRM_ARGON2_TIME_COST"], app.config["CRM_ARGON2_MEMORY_KIB"])
        app.config["CRM_ARGON2_TIME_COST"] = app.config["CRM_ARGON2_MEMORY_KIB"] = None
        try:
            strong = hash_password("a long enough password")
        finally:
            app.config["CRM_ARGON2_TIME_COST"], app.config["CRM_ARGON2_MEMORY_KIB"] = saved
        assert f"m={default.memory_cost},t={default.time_cost}" in strong
        # hashes carry their own parameters: a strong hash verifies under the cheap test setting too
        assert verify_password(strong, "a long enough password")
        assert not verify_password(strong, "a long enough passwordX")


def test_consent_settings_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("CRM_INSTANCE_PATH", str(tmp_path))
    cfg = Settings.from_env({"CRM_DOUBLE_OPT_IN": "false", "CRM_CONSENT_VALIDITY_MONTHS": "12",
                             "CRM_PUBLIC_URL": "https://crm.example/"}).flask_config()
    assert cfg["CRM_DOUBLE_OPT_IN"] is False
    assert cfg["CRM_CONSENT_VALIDITY_MONTHS"]["promotional"] == 12
    assert cfg["CRM_PUBLIC_URL"] == "https://crm.example"
    assert Settings.from_env({}).flask_config()["CRM_DOUBLE_OPT_IN"] is True
    with pytest.raises(ConfigError):
        Settings.from_env({"CRM_DOUBLE_OPT_IN": "maybe"})
    with pytest.raises(ConfigError):
        Settings.from_env({"CRM_CONSENT_VALIDITY_MONTHS": "0"})


@pytest.mark.parametrize("missing", ["CRM_EMAIL_BACKEND", "CRM_ERP_ADAPTER"])
def test_production_refuses_an_adapter_left_to_its_default(missing, tmp_path, monkeypatch):
    monkeypatch.setenv("CRM_INSTANCE_PATH", str(tmp_path))
    for value in (None, "", "  "):
        with pytest.raises(ConfigError) as info:
            Settings.from_env(_production_env(**{missing: value}))
        message = str(info.value)
        assert missing in message and "explicitly" in message and "\n" not in message


def test_production_refuses_the_erp_simulator_even_when_named(tmp_path, monkeypatch):
    monkeypatch.setenv("CRM_INSTANCE_PATH", str(tmp_path))
    with pytest.raises(ConfigError) as info:
        Settings.from_env(_production_env(CRM_ERP_ADAPTER="stub"))
    assert "simulator" in str(info.value) and "CRM_ERP_ADAPTER" in str(info.value)


def test_production_takes_the_file_outbox_only_when_it_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv("CRM_INSTANCE_PATH", str(tmp_path))
    cfg = Settings.from_env(_production_env(CRM_EMAIL_BACKEND="file", CRM_SMTP_URL=None,
                                            CRM_OUTBOX_DIR=str(tmp_path / "pickup"))).flask_config()
    assert cfg["CRM_EMAIL_BACKEND"] == "file" and cfg["CRM_OUTBOX_DIR"] == str(tmp_path / "pickup")
    named = Settings.from_env(_production_env()).flask_config()
    assert named["CRM_EMAIL_BACKEND"] == "smtp" and named["CRM_ERP_ADAPTER"] == "http"


def test_development_keeps_its_defaults_for_the_adapters(tmp_path, monkeypatch):
    monkeypatch.setenv("CRM_INSTANCE_PATH", str(tmp_path))
    cfg = Settings.from_env({}).flask_config()
    assert cfg["CRM_EMAIL_BACKEND"] == "file" and cfg["CRM_ERP_ADAPTER"] == "stub"


def test_production_app_refuses_to_start_on_default_adapters(tmp_path, monkeypatch):
    env = _production_env(CRM_ERP_ADAPTER=None, CRM_EMAIL_BACKEND=None)
    for name in ("CRM_EMAIL_BACKEND", "CRM_ERP_ADAPTER"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("CRM_INSTANCE_PATH", str(tmp_path))
    from crm import create_app

    with pytest.raises(ConfigError) as info:
        create_app()
    assert "CRM_EMAIL_BACKEND" in str(info.value)


def test_mail_outbox_settings_have_defaults_and_refuse_nonsense(tmp_path, monkeypatch):
    monkeypatch.setenv("CRM_INSTANCE_PATH", str(tmp_path))
    cfg = Settings.from_env({}).flask_config()
    assert (cfg["CRM_MAIL_MAX_ATTEMPTS"], cfg["CRM_MAIL_RETRY_BASE_SECONDS"], cfg["CRM_MAIL_RETRY_MAX_SECONDS"],
            cfg["CRM_MAIL_SEND_AFTER_COMMIT"]) == (8, 60.0, 21600.0, True)
    tuned = Settings.from_env({"CRM_MAIL_MAX_ATTEMPTS": "3", "CRM_MAIL_SEND_AFTER_COMMIT": "0"}).flask_config()
    assert tuned["CRM_MAIL_MAX_ATTEMPTS"] == 3 and tuned["CRM_MAIL_SEND_AFTER_COMMIT"] is False
    for bad in ({"CRM_MAIL_MAX_ATTEMPTS": "0"}, {"CRM_MAIL_MAX_ATTEMPTS": "many"},
                {"CRM_MAIL_RETRY_BASE_SECONDS": "-1"}, {"CRM_MAIL_SEND_AFTER_COMMIT": "maybe"}):
        with pytest.raises(ConfigError):
            Settings.from_env(bad)
