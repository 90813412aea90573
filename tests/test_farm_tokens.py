"""The farm's access control and signed webhooks, with a real PostgreSQL and the real gateway process (issue 24).

No worker runs in this module: jobs stay queued, which is what the limit and isolation tests need; the signed
webhook here is the one the gateway sends for a queued job it cancels (test_farm_metrics.py checks the workers'
signed webhooks). Tokens are made with the real `jobs token` CLI.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import uuid

import httpx
import psycopg
import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from comfy_runtime.farm import signing, tokens
from comfy_runtime.farm.client import FarmClient
from comfy_runtime.farm.config import FarmSettings
from comfy_runtime.farm.schema import FARM_DDL
from local_servers.farm_processes import GatewayProcess
from tests.support.farm import job
from tests.support.paths import PROJECT_ROOT


@pytest.fixture(scope="module")
def env(hv_env, pg) -> dict[str, str]:
    return {**hv_env, "HV_FARM_DATABASE_URL": pg.url, "HV_FARM_SYNC_WAIT_SECONDS": "0",
            "HV_FARM_WEBHOOK_ALLOWED_HOSTS": '["127.0.0.1"]'}


@pytest.fixture(scope="module")
def client(pg):
    with FarmClient(FarmSettings(database_url=pg.url, webhook_allowed_hosts=["127.0.0.1"])) as farm:
        farm.ensure_schema()
        yield farm


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "comfy_runtime", "jobs", "token", *args], cwd=PROJECT_ROOT,
                          env={**os.environ, **env}, capture_output=True, text=True, timeout=60)


def make_token(env: dict[str, str], name: str, *options: str) -> dict[str, str]:
    made = cli(env, "create", "--name", name, "--json", *options)
    assert made.returncode == 0, made.stderr
    return json.loads(made.stdout)


@pytest.fixture(scope="module")
def people(env, client) -> dict[str, dict[str, str]]:
    return {"alice": make_token(env, "alice", "--max-active", "2"), "bob": make_token(env, "bob"),
            "root": make_token(env, "root", "--admin")}


@pytest.fixture(scope="module")
def gateway(env, client, people, tmp_path_factory):
    process = GatewayProcess(env, tmp_path_factory.mktemp("gateway") / "gateway.log").start()
    try:
        yield process.wait_ready()
    finally:
        process.stop()


def as_(person: dict[str, str]) -> dict[str, str]:
    return {"Authorization": f"Bearer {person['token']}", "Prefer": "respond-async"}


def test_the_token_cli_shows_a_token_once_and_the_database_keeps_only_its_hash(env, people, pg):
    alice = people["alice"]
    assert alice["token"].startswith("hvf_") and len(alice["token"]) >= 40
    assert alice["webhook_secret"].startswith("whsec_")
    with psycopg.connect(pg.url) as conn:
        row, everything = conn.execute(
            "SELECT token_sha256, row_to_json(t)::text FROM hv_farm_tokens t WHERE name = 'alice'").fetchone()
    assert bytes(row) == hashlib.sha256(alice["token"].encode()).digest()
    assert alice["token"] not in everything and alice["token"][4:20] not in everything  # not kept, in any column
    listed = cli(env, "list")
    assert listed.returncode == 0, listed.stderr
    assert {"alice", "bob", "root"} <= {line.split()[0] for line in listed.stdout.splitlines()[1:]}
    assert "admin" in next(line for line in listed.stdout.splitlines() if line.startswith("root"))
    assert all(p["token"] not in listed.stdout and p["webhook_secret"] not in listed.stdout for p in people.values())
    taken = cli(env, "create", "--name", "alice")
    assert taken.returncode == 1 and "exists already" in taken.stderr and not taken.stdout
    plain = cli(env, "create", "--name", "erin", "--admin")  # for people: both lines, the token last
    secret_line, token_line = plain.stdout.splitlines()
    assert secret_line.split()[-1].startswith("whsec_") and token_line.split()[-1].startswith("hvf_")
    assert "shown once" in plain.stderr
    bad = cli(env, "create", "--name", "al ice")
    assert bad.returncode == 1 and "is not allowed" in bad.stderr


def test_no_token_a_wrong_one_and_a_revoked_one_answer_401_with_the_fix(env, gateway, people):
    carol = make_token(env, "carol")
    with httpx.Client(base_url=gateway.url, timeout=30) as http:
        assert http.get("/health-check").status_code == 200  # the probes need no token
        for headers, says in (({}, "no token"), ({"Authorization": "Basic Zm9vOmJhcg=="}, "Bearer <token>"),
                              ({"Authorization": "Bearer hvf_" + "x" * 43}, "not one this farm issued"),
                              ({"Authorization": "Bearer " + people["alice"]["token"][:-1]}, "not one this farm"),
                              ({"Authorization": people["alice"]["token"]}, "Bearer <token>")):
            refused = http.post("/predictions", json={"input": job()}, headers=headers)
            assert refused.status_code == 401, (headers, refused.text)
            assert refused.headers["WWW-Authenticate"] == "Bearer"
            (detail,) = refused.json().values()
            assert says in detail and "\n" not in detail, detail
            assert http.get(f"/predictions/{uuid.uuid4().hex}", headers=headers).status_code == 401
        made = http.post("/predictions", json={"input": job()}, headers=as_(carol))
        assert made.status_code == 202, made.text
        revoked = cli(env, "revoke", "carol")
        assert revoked.returncode == 0, revoked.stderr
        # refused on the very next request, with no restart and nothing cached
        after = http.get(f"/predictions/{made.json()['id']}", headers=as_(carol))
        assert after.status_code == 401 and "was revoked" in after.json()["detail"], after.text
        assert http.post("/predictions", json={"input": job()}, headers=as_(carol)).status_code == 401
        assert http.get(f"/predictions/{made.json()['id']}", headers=as_(people["root"])).status_code == 200
    assert cli(env, "revoke", "carol").returncode == 1  # revoking twice says there is no such active token


def test_another_tokens_prediction_is_not_found_on_get_cancel_and_put_and_admins_see_all(gateway, people, client):
    alice, bob, root = people["alice"], people["bob"], people["root"]
    with httpx.Client(base_url=gateway.url, timeout=30) as http:
        mine = http.put(f"/predictions/alice-{uuid.uuid4().hex[:8]}", json={"input": job(prompt="alice's secret")},
                        headers=as_(alice))
        assert mine.status_code == 202, mine.text
        prediction_id = mine.json()["id"]
        assert http.get(f"/predictions/{prediction_id}", headers=as_(alice)).json()["input"]["prompt"] == "alice's secret"
        missing = http.get("/predictions/no-such-id", headers=as_(bob))
        for answer in (http.get(f"/predictions/{prediction_id}", headers=as_(bob)),
                       http.post(f"/predictions/{prediction_id}/cancel", headers=as_(bob))):
            assert answer.status_code == 404, answer.text
            # the same answer as for an id that does not exist: nothing tells bob it is there
            assert answer.json()["detail"] == missing.json()["detail"].replace("no-such-id", prediction_id)
        # PUT with alice's id: neither her prediction nor its input comes back, and nothing is queued for bob
        taken = http.put(f"/predictions/{prediction_id}", json={"input": job(prompt="alice's secret")},
                         headers=as_(bob))
        assert taken.status_code == 409 and "secret" not in taken.text and "is taken" in taken.text, taken.text
        assert client.get(prediction_id)["status"] == "starting"  # bob's cancel did nothing

        # a prediction from before tokens (no owner): admins only
        old = client.submit(job())
        assert http.get(f"/predictions/{old['id']}", headers=as_(alice)).status_code == 404
        assert http.get(f"/predictions/{old['id']}", headers=as_(root)).status_code == 200

        assert http.get(f"/predictions/{prediction_id}", headers=as_(root)).json()["input"]["prompt"] == "alice's secret"
        canceled = http.post(f"/predictions/{prediction_id}/cancel", headers=as_(root))
        assert canceled.status_code == 200 and canceled.json()["status"] == "canceled", canceled.text
        client.cancel(old["id"])


def test_a_token_over_its_limit_gets_429_with_retry_after_and_the_others_still_submit(gateway, people, client):
    alice, bob = people["alice"], people["bob"]  # alice: --max-active 2
    with httpx.Client(base_url=gateway.url, timeout=30) as http:
        running = [http.post("/predictions", json={"input": job(seed=seed)}, headers=as_(alice)) for seed in (1, 2)]
        assert [r.status_code for r in running] == [202, 202], [r.text for r in running]
        over = http.post("/predictions", json={"input": job(seed=3)}, headers=as_(alice))
        assert over.status_code == 429 and int(over.headers["Retry-After"]) > 0, over.text
        assert "--max-active 2" in over.json()["detail"]
        # the same PUT again is not a new job: it answers the existing one even at the limit
        first = running[0].json()["id"]
        assert http.put(f"/predictions/{first}", json={"input": job(seed=1)}, headers=as_(alice)).status_code == 202
        assert http.post("/predictions", json={"input": job()}, headers=as_(bob)).status_code == 202
        http.post(f"/predictions/{first}/cancel", headers=as_(alice))
        again = http.post("/predictions", json={"input": job(seed=4)}, headers=as_(alice))  # a slot is free again
        assert again.status_code == 202, again.text
    with client.store.connection() as conn:
        assert conn.execute("SELECT count(*) AS n FROM hv_farm_predictions WHERE token_name = 'alice' "
                            "AND status IN ('starting', 'processing')").fetchone()["n"] == 2
        conn.execute("UPDATE procrastinate_jobs SET status = 'cancelled' WHERE status = 'todo'")
        conn.execute("UPDATE hv_farm_predictions SET status = 'canceled' WHERE status = 'starting'")


def test_concurrent_submits_of_one_token_cannot_pass_its_limit(env, gateway, client):
    from concurrent.futures import ThreadPoolExecutor

    gina = make_token(env, "gina", "--max-active", "2")
    with httpx.Client(base_url=gateway.url, timeout=30) as http, ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda seed: http.post("/predictions", json={"input": job(seed=seed)},
                                                       headers=as_(gina)), range(8)))
    assert sorted(a.status_code for a in answers) == [202] * 2 + [429] * 6, [a.text for a in answers]
    for answer in answers:
        if answer.status_code == 202:
            client.cancel(answer.json()["id"])


def test_a_rotated_token_keeps_its_predictions_and_the_old_one_is_refused_at_once(env, gateway):
    old = make_token(env, "frank")
    with httpx.Client(base_url=gateway.url, timeout=30) as http:
        made = http.post("/predictions", json={"input": job()}, headers=as_(old)).json()
        rotated = cli(env, "rotate", "frank", "--json")
        assert rotated.returncode == 0, rotated.stderr
        new = json.loads(rotated.stdout)
        assert new["token"] != old["token"] and new["webhook_secret"] == old["webhook_secret"]
        assert http.get(f"/predictions/{made['id']}", headers=as_(old)).status_code == 401
        assert http.get(f"/predictions/{made['id']}", headers=as_(new)).json()["id"] == made["id"]
        fresh = json.loads(cli(env, "rotate", "frank", "--new-secret", "--json").stdout)
        assert fresh["webhook_secret"] != old["webhook_secret"]
        assert http.get(f"/predictions/{made['id']}", headers=as_(new)).status_code == 401
        assert http.post(f"/predictions/{made['id']}/cancel", headers=as_(fresh)).json()["status"] == "canceled"


def test_webhooks_are_signed_with_the_tokens_secret_and_a_tampered_body_fails(gateway, people, webhooks):
    alice, bob = people["alice"], people["bob"]
    with httpx.Client(base_url=gateway.url, timeout=30) as http:
        made = http.post("/predictions", json={"input": job(), "webhook": f"{webhooks.url}/hook"}, headers=as_(alice))
        assert made.status_code == 202, made.text
        assert http.post(f"/predictions/{made.json()['id']}/cancel", headers=as_(alice)).json()["status"] == "canceled"
    assert webhooks.wait_final(made.json()["id"])["status"] == "canceled"
    (headers, body), = [(h, b) for h, b in webhooks.deliveries if json.loads(b)["id"] == made.json()["id"]]
    assert headers["webhook-signature"].startswith("v1,") and headers["webhook-id"].startswith("msg_")
    # the receiver's check, with the standardwebhooks package as a receiver would use it
    assert Webhook(alice["webhook_secret"]).verify(body, headers)["status"] == "canceled"
    tampered = body.replace(b'"canceled"', b'"succeeded"', 1)
    assert tampered != body
    with pytest.raises(WebhookVerificationError):
        Webhook(alice["webhook_secret"]).verify(tampered, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(bob["webhook_secret"]).verify(body, headers)  # another token's secret
    assert signing.verify(alice["webhook_secret"], body, headers)
    assert not signing.verify(alice["webhook_secret"], tampered, headers)


def test_no_log_line_carries_a_token_or_secret(gateway, people):
    logs = gateway.logs(tail=None)
    assert '"POST /predictions HTTP/1.1" 401' in logs and '"POST /predictions HTTP/1.1" 202' in logs  # it logs requests
    for person in people.values():
        assert person["token"] not in logs and person["webhook_secret"] not in logs


def test_auth_off_serves_without_tokens_and_warns_at_every_start(env, client, tmp_path):
    for start in range(2):
        process = GatewayProcess({**env, "HV_FARM_AUTH": "off"}, tmp_path / f"open{start}.log").start()
        try:
            process.wait_ready()
            with httpx.Client(base_url=process.url, timeout=30) as http:
                made = http.post("/predictions", json={"input": job()}, headers={"Prefer": "respond-async"})
                assert made.status_code == 202, made.text
                assert http.post(f"/predictions/{made.json()['id']}/cancel").status_code == 200
        finally:
            process.stop()
        assert process.logs(tail=None).count("HV_FARM_AUTH=off: the gateway serves without tokens") == 1


def test_an_existing_database_gets_the_owner_column_and_its_old_jobs_are_admin_only(pg):
    from procrastinate.schema import SchemaManager

    with psycopg.connect(pg.url, autocommit=True) as conn:
        conn.execute("CREATE DATABASE before_tokens")
    old_url = pg.url.rsplit("/", 1)[0] + "/before_tokens"
    with psycopg.connect(old_url, autocommit=True) as conn:  # the schema as the farm made it before issue 24
        conn.execute(SchemaManager.get_schema())
        conn.execute(FARM_DDL)
        conn.execute("INSERT INTO hv_farm_predictions (id, input) VALUES ('old-one', '{}')")
    with FarmClient(FarmSettings(database_url=old_url)) as farm:
        farm.ensure_schema()
        farm.ensure_schema()  # twice: a second gateway or worker booting changes nothing
        with farm.store.connection() as conn:
            made = tokens.create(conn, "dave")
            member = tokens.authenticate(conn, f"Bearer {made.token}")
        assert farm.store.get("old-one")["token_name"] is None
        assert farm.get("old-one")["id"] == "old-one"  # the operator (admin) sees it
        with pytest.raises(LookupError):
            farm.get("old-one", member)
        with farm.store.connection() as conn:  # the condition a list route filters with
            for who, seen in ((member, []), (tokens.OPERATOR, ["old-one"])):
                where, params = tokens.visible_to(who)
                rows = conn.execute(f"SELECT id FROM hv_farm_predictions p WHERE {where}", params).fetchall()
                assert [row["id"] for row in rows] == seen
