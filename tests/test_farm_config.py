"""The farm's settings and SQL helpers, without servers: documented exactly, errors that say what to do."""

from __future__ import annotations

import re

import pytest

from comfy_runtime.farm.config import FarmNotConfigured, FarmSettings, env_names
from comfy_runtime.farm.schema import backlog_query
from tests.support.paths import PROJECT_ROOT


def test_docs_farm_documents_exactly_the_settings_the_farm_reads():
    text = (PROJECT_ROOT / "docs" / "farm.md").read_text()
    mentioned = set(re.findall(r"\bHV_FARM_[A-Z0-9_]*[A-Z0-9]", text))
    declared = set(env_names().values())
    assert declared - mentioned == set(), f"farm settings docs/farm.md does not describe: {declared - mentioned}"
    assert mentioned - declared == set(), f"HV_FARM_* names in docs/farm.md no setting has: {mentioned - declared}"


def test_a_farm_command_without_a_database_says_what_to_set(monkeypatch):
    monkeypatch.delenv("HV_FARM_DATABASE_URL", raising=False)
    with pytest.raises(FarmNotConfigured, match="HV_FARM_DATABASE_URL is not set"):
        FarmSettings().require_database()


def test_the_backlog_query_quotes_the_queue_name():
    assert backlog_query("hv-render").endswith("WHERE queue_name = 'hv-render' AND status IN ('todo', 'doing')")
    assert "'it''s'" in backlog_query("it's")


def test_an_unreachable_database_is_named_without_its_password():
    from comfy_runtime.farm.store import DatabaseUnavailable, JobStore
    from local_servers.processes import free_port

    with pytest.raises(DatabaseUnavailable) as refused:
        JobStore(f"postgresql://hv:topsecret@127.0.0.1:{free_port()}/farm").open(wait_seconds=1)
    assert "did not answer" in str(refused.value) and "HV_FARM_DATABASE_URL" in str(refused.value)
    assert "topsecret" not in str(refused.value) and "127.0.0.1" in str(refused.value)


@pytest.mark.parametrize("env, says", [
    ({}, "HV_FARM_DATABASE_URL is not set"),
    ({"HV_FARM_DATABASE_URL": "postgresql://hv@127.0.0.1:1/db"}, "HV_S3_BUCKET is not set"),
])
def test_a_worker_missing_its_database_or_bucket_refuses_to_start_and_says_what_to_set(env, says):
    import os
    import subprocess
    import sys

    clean = {k: v for k, v in os.environ.items() if not k.startswith(("HV_FARM_", "HV_S3_"))}
    done = subprocess.run([sys.executable, "-m", "comfy_runtime", "worker"], cwd=PROJECT_ROOT, env={**clean, **env},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and says in done.stderr, done.stderr[-2000:]  # a missing setting: a usage error
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("url", ["notaurl", "http://db.example.com/farm"])
def test_a_malformed_database_url_is_refused_at_once_naming_the_form(monkeypatch, url):
    import time

    from comfy_runtime.farm.client import FarmClient

    monkeypatch.setenv("HV_FARM_DATABASE_URL", url)
    started = time.monotonic()
    with pytest.raises(FarmNotConfigured) as refused:
        FarmClient()  # no pool, no 30 s of retries
    assert time.monotonic() - started < 5
    assert "not a PostgreSQL connection string" in str(refused.value)
    assert "postgresql://user:password@host:5432/dbname" in str(refused.value)
