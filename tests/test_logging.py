"""Structured logs: JSON lines (or text) with the request id and job id, the level from the settings,
X-Request-ID taken when valid, echoed, and named in problem bodies; no query strings or link tokens."""

from __future__ import annotations

import json
import logging
import logging.config
import re
from collections.abc import Iterator
from typing import Any

import pytest

import crm.web
from crm.config import ConfigError, log_settings
from crm.logging import configure_logging, gunicorn_logconfig, job_context

HEX_ID = re.compile(r"[0-9a-f]{32}")


@pytest.fixture
def json_logs() -> Iterator[None]:
    configure_logging("INFO", "json")
    yield
    configure_logging("INFO", "text")


def lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]


def request_lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    return [line for line in lines(capsys) if line["logger"] == "crm.request"]


def test_a_request_is_one_json_line_with_its_fields(client, json_logs, capsys):
    capsys.readouterr()
    resp = client.get("/healthz", headers={"X-Request-ID": "req-42"})
    assert resp.status_code == 200 and resp.headers["X-Request-ID"] == "req-42"
    [line] = request_lines(capsys)
    assert set(line) == {"time", "level", "logger", "message", "request_id", "job_id", "method", "path", "status",
                         "duration_ms"}
    assert line["time"].endswith("Z") and line["level"] == "INFO"
    assert (line["request_id"], line["job_id"], line["method"], line["path"], line["status"]) == (
        "req-42", None, "GET", "/healthz", 200)
    assert line["message"] == "GET /healthz 200" and line["duration_ms"] >= 0


def test_a_generated_request_id_is_echoed_in_the_header_the_problem_body_and_the_log(client, json_logs, capsys):
    capsys.readouterr()
    resp = client.get("/api/v1/hcps")
    assert resp.status_code == 401 and resp.mimetype == "application/problem+json"
    rid = resp.headers["X-Request-ID"]
    assert HEX_ID.fullmatch(rid)
    assert resp.get_json()["request_id"] == rid
    [line] = request_lines(capsys)
    assert line["request_id"] == rid and line["status"] == 401
    # every request gets its own
    assert client.get("/api/v1/hcps").headers["X-Request-ID"] != rid


def test_lines_logged_inside_a_view_carry_the_request_id(client, json_logs, capsys, monkeypatch):
    real = crm.web.text

    def logging_text(sql: str) -> Any:
        logging.getLogger("crm.somewhere").warning("inside the view")
        return real(sql)

    monkeypatch.setattr(crm.web, "text", logging_text)
    capsys.readouterr()
    client.get("/healthz", headers={"X-Request-ID": "trace-me"})
    inside = [line for line in lines(capsys) if line["message"] == "inside the view"]
    assert [(x["request_id"], x["level"], x["logger"]) for x in inside] == [("trace-me", "WARNING", "crm.somewhere")]
    # after the request, no id leaks onto lines of the same thread
    logging.getLogger("crm.somewhere").warning("after")
    assert [x["request_id"] for x in lines(capsys) if x["message"] == "after"] == [None]


@pytest.mark.parametrize("bad", ["x" * 201, "bad\x01id", "caf\u00e9", " leading-space", ""])
def test_an_invalid_request_id_is_replaced(client, bad):
    resp = client.get("/healthz", headers={"X-Request-ID": bad})
    assert resp.headers["X-Request-ID"] != bad and HEX_ID.fullmatch(resp.headers["X-Request-ID"])


def test_a_request_id_of_200_printable_characters_is_kept(client):
    rid = "a" * 190 + " !~{}[]<>/"
    assert client.get("/healthz", headers={"X-Request-ID": rid}).headers["X-Request-ID"] == rid


def test_no_query_string_or_link_token_reaches_the_log(client, json_logs, capsys):
    capsys.readouterr()
    client.get("/api/v1/hcps?q=someone%40clinic.example")
    client.get("/consent/confirm/secret-link-token-value")
    out = capsys.readouterr().err
    assert "someone" not in out and "secret-link-token-value" not in out
    assert '"path": "/consent/confirm/<token>"' in out


def test_the_job_id_is_on_every_line_inside_a_job(json_logs, capsys):
    log = logging.getLogger("crm.jobs")
    with job_context("job-7"):
        log.info("working")
    log.info("idle")
    got = {x["message"]: x["job_id"] for x in lines(capsys)}
    assert got == {"working": "job-7", "idle": None}


def test_an_exception_stays_on_one_json_line(json_logs, capsys):
    try:
        raise ValueError("boom\nsecond line")
    except ValueError:
        logging.getLogger("crm.x").exception("failed")
    out = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(out) == 1
    record = json.loads(out[0])
    assert record["level"] == "ERROR" and "ValueError: boom" in record["exception"]


def test_text_format_names_the_request_and_job(client, capsys):
    configure_logging("INFO", "text")
    capsys.readouterr()
    client.get("/healthz", headers={"X-Request-ID": "txt-1"})
    [line] = [x for x in capsys.readouterr().err.splitlines() if " crm.request " in x]
    assert "[request=txt-1 job=None] GET /healthz 200" in line and "status=200" in line


def test_the_level_drops_lines_below_it(client, capsys):
    configure_logging("WARNING", "json")
    try:
        capsys.readouterr()
        client.get("/healthz")
        logging.getLogger("crm.x").warning("kept")
        assert [x["message"] for x in lines(capsys)] == ["kept"]  # the INFO request line is dropped
    finally:
        configure_logging("INFO", "text")


def test_configuring_twice_leaves_one_handler(json_logs, capsys):
    configure_logging("INFO", "json")
    logging.getLogger("crm.x").warning("once")
    assert [x["message"] for x in lines(capsys)] == ["once"]


def test_log_settings_from_the_environment():
    assert log_settings({}) == {"CRM_LOG_LEVEL": "INFO", "CRM_LOG_FORMAT": "text"}
    assert log_settings({"CRM_ENV": "production"}) == {"CRM_LOG_LEVEL": "INFO", "CRM_LOG_FORMAT": "json"}
    assert log_settings({"CRM_ENV": "production", "CRM_LOG_FORMAT": "TEXT", "CRM_LOG_LEVEL": "debug"}) == {
        "CRM_LOG_LEVEL": "DEBUG", "CRM_LOG_FORMAT": "text"}
    with pytest.raises(ConfigError, match="CRM_LOG_LEVEL"):
        log_settings({"CRM_LOG_LEVEL": "verbose"})
    with pytest.raises(ConfigError, match="CRM_LOG_FORMAT"):
        log_settings({"CRM_LOG_FORMAT": "xml"})


def test_gunicorn_logs_through_the_same_format(capsys):
    logging.config.dictConfig(gunicorn_logconfig("INFO", "json"))
    try:
        logging.getLogger("gunicorn.error").info("Booting worker")
        logging.getLogger("gunicorn.access").info("127.0.0.1 GET /")  # replaced by the app's request line
        got = [(x["logger"], x["message"]) for x in lines(capsys)]
        assert got == [("gunicorn.error", "Booting worker")]
    finally:
        configure_logging("INFO", "text")
