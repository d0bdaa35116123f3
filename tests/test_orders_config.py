"""ERP configuration: adapters by name, development secrets, production refusals, the http adapter
end to end (an order placed through the API reaches the loopback ERP server), the outbox policy row."""

from __future__ import annotations

import pytest

from crm.access.policy import Viewer, write_decision
from crm.config import ConfigError, Settings
from crm.integrations.erp import HttpAdapter, StubAdapter, get_adapter
from crm.integrations.erp.erp_server import ErpServer, simulator_on
from crm.integrations.erp.stub import SimulatorSettings, faults_from_config
from tests.conftest import make_app
from tests.orders_support import OrderWorld, signed, stub


def test_development_defaults_and_generated_secrets(tmp_path, monkeypatch):
    monkeypatch.setenv("CRM_INSTANCE_PATH", str(tmp_path))
    cfg = Settings.from_env({}).flask_config()
    assert cfg["CRM_ERP_ADAPTER"] == "stub" and cfg["CRM_ERP_SEND_AFTER_COMMIT"] is True
    assert cfg["CRM_ERP_CALLBACK_SECRET"] and cfg["CRM_ERP_HTTP_SECRET"]
    assert cfg["CRM_ERP_CALLBACK_SECRET"] == Settings.from_env({}).flask_config()["CRM_ERP_CALLBACK_SECRET"]
    assert (tmp_path / "crm_erp_callback_secret.key").exists()
    assert cfg["CRM_ERP_RETRY_BASE_SECONDS"] == 30 and cfg["CRM_ERP_MAX_ATTEMPTS"] == 12


@pytest.mark.parametrize("env, words", [
    ({"CRM_ERP_ADAPTER": "carrier-pigeon"}, "CRM_ERP_ADAPTER"),
    ({"CRM_ERP_ADAPTER": "http"}, "CRM_ERP_HTTP_URL"),
    ({"CRM_ERP_TIMEOUT_SECONDS": "soon"}, "CRM_ERP_TIMEOUT_SECONDS"),
    ({"CRM_ERP_MAX_ATTEMPTS": "-1"}, "CRM_ERP_MAX_ATTEMPTS"),
])
def test_bad_erp_settings_are_refused(tmp_path, monkeypatch, env, words):
    monkeypatch.setenv("CRM_INSTANCE_PATH", str(tmp_path))
    with pytest.raises(ConfigError) as info:
        Settings.from_env(env)
    assert words in str(info.value)


def _production(**extra):
    from cryptography.fernet import Fernet

    env = {"CRM_ENV": "production", "CRM_SECRET_KEY": "s" * 40, "CRM_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
           "CRM_BLIND_INDEX_KEY": "b" * 40, "CRM_AUDIT_KEY": "a" * 40,
           "CRM_DATABASE_URL": "postgresql+psycopg://x@127.0.0.1/x",
           "CRM_PUBLIC_URL": "https://crm.pharma.example", "CRM_EMAIL_BACKEND": "smtp",
           "CRM_SMTP_URL": "smtp://relay.pharma.example:587"}
    env.update(extra)
    return env


def test_production_needs_the_http_secret_with_the_http_adapter(tmp_path, monkeypatch):
    monkeypatch.setenv("CRM_INSTANCE_PATH", str(tmp_path))
    with pytest.raises(ConfigError) as info:
        Settings.from_env(_production(CRM_ERP_ADAPTER="http", CRM_ERP_HTTP_URL="https://erp.example/api"))
    assert "CRM_ERP_HTTP_SECRET" in str(info.value)
    ok = Settings.from_env(_production(CRM_ERP_ADAPTER="http", CRM_ERP_HTTP_URL="https://erp.example/api",
                                       CRM_ERP_HTTP_SECRET="x" * 32)).flask_config()
    assert ok["CRM_ERP_HTTP_URL"] == "https://erp.example/api"
    assert ok["CRM_ERP_CALLBACK_SECRET"] == ""  # not generated: every callback is refused until it is set
    assert not list(tmp_path.glob("*.key")), "production must not generate keys"


def test_without_a_callback_secret_every_callback_is_refused(client, app, monkeypatch):
    monkeypatch.setitem(app.config, "CRM_ERP_CALLBACK_SECRET", "")
    body, headers = signed("", {"order_key": "k", "status": "shipped"})
    assert client.post("/api/v1/integrations/erp/callback", data=body, headers=headers).status_code == 401


def test_the_adapter_is_chosen_by_name(tmp_path):
    http_app = make_app(f"sqlite:///{tmp_path / 'a.sqlite3'}", CRM_ERP_ADAPTER="http",
                        CRM_ERP_HTTP_URL="http://127.0.0.1:9/erp", CRM_ERP_HTTP_SECRET="s")
    adapter = get_adapter(http_app)
    assert isinstance(adapter, HttpAdapter) and adapter.prefix == "/erp" and get_adapter(http_app) is adapter
    stub_app = make_app(f"sqlite:///{tmp_path / 'b.sqlite3'}", CRM_ERP_STUB_FAIL_FIRST=2)
    assert isinstance(get_adapter(stub_app), StubAdapter)
    assert get_adapter(stub_app).faults.down_next == 2  # faults by configuration
    for each in (http_app, stub_app):
        with each.app_context():
            from crm.extensions import db

            db.engine.dispose()


def test_stub_faults_from_configuration():
    faults = faults_from_config({"CRM_ERP_STUB_FAIL_FIRST": "3", "CRM_ERP_STUB_SLOW_SECONDS": "0.5",
                                 "CRM_ERP_STUB_TIMEOUT_AFTER_COMMIT": "1"})
    assert (faults.down_next, faults.slow_seconds, faults.timeout_after_commit_next) == (3, 0.5, 1)


def test_an_order_travels_through_the_http_adapter_to_the_loopback_erp(app, db, factory, api, tmp_path,
                                                                       monkeypatch, runner):
    w = OrderWorld(db, factory, app)
    stub(app).faults.reset()
    simulator = simulator_on(f"sqlite:///{tmp_path / 'erp.sqlite3'}", SimulatorSettings())
    with ErpServer(simulator, "loopback-secret") as server:
        monkeypatch.setitem(app.extensions, "crm_erp_adapter",
                            HttpAdapter(server.url, "loopback-secret", timeout=2, retries=0))
        rep = api(w.rep)
        order_id = rep.post("/api/v1/orders", json={"hcp_id": w.hcp.id, "lines": [{"sku": "CARD-10", "quantity": 5}]}
                            ).get_json()["id"]
        assert rep.post(f"/api/v1/orders/{order_id}/submit").status_code == 202
        assert rep.get(f"/api/v1/orders/{order_id}").get_json()["status"] == "sent"
        assert runner.invoke(args=["crm", "erp", "sync"]).exit_code == 0
        assert runner.invoke(args=["crm", "erp", "sync"]).exit_code == 0
        assert rep.get(f"/api/v1/orders/{order_id}").get_json()["status"] == "shipped"
        assert simulator.order_count() == 1


def test_only_admins_manage_the_erp_outbox():
    for role in ("field_rep", "marketer", "call_centre", "medical", "compliance"):
        decision = write_decision(Viewer(1, role), "erp_outbox.manage")
        assert not decision.allowed and decision.rule == "erp_outbox.manage:role"
    assert write_decision(Viewer(1, "admin"), "erp_outbox.manage").allowed


def test_the_stub_server_command_serves_until_stopped(runner, tmp_path, monkeypatch):
    from http.server import ThreadingHTTPServer

    served = []

    def serve_once(self, *args, **kwargs):
        served.append(self.server_address)
        raise KeyboardInterrupt

    monkeypatch.setattr(ThreadingHTTPServer, "serve_forever", serve_once)
    url = f"sqlite:///{tmp_path / 'stub.sqlite3'}"
    result = runner.invoke(args=["crm", "erp", "stub-server", "--port", "0", "--database", url])
    assert result.exit_code == 0, result.output
    assert "ERP stub serving on http://127.0.0.1:" in result.output and "stopped" in result.output
    assert served and (tmp_path / "stub.sqlite3").exists()
