"""The real gateway against a real PostgreSQL that the test stops and starts (issue 22 items 3, 4 and the 422
echo cap): 503 with Retry-After at once while the database is gone, one log line per outage, green again within
a probe or two of its return; a PUT with another input than the stored prediction's is 409; a hostile body is
not mirrored back in a 422."""

from __future__ import annotations

import time

import httpx
import pytest

from comfy_runtime.farm.client import FarmClient
from comfy_runtime.farm.config import FarmSettings
from tests.support.farm import gateway_with_token, job


@pytest.fixture(scope="module")
def client(pg):
    with FarmClient(FarmSettings(database_url=pg.url)) as farm:
        farm.ensure_schema()
        yield farm


@pytest.fixture(scope="module")
def gateway(hv_env, pg, client, tmp_path_factory):
    env = {**hv_env, "HV_FARM_DATABASE_URL": pg.url, "HV_FARM_SYNC_WAIT_SECONDS": "0"}
    with gateway_with_token(env, client, tmp_path_factory.mktemp("gateway") / "gateway.log", "outage-tests") as process:
        yield process


def _timed(call):
    started = time.monotonic()
    response = call()
    return response, time.monotonic() - started


def test_without_its_database_the_gateway_answers_503_at_once_and_recovers_within_seconds(gateway, pg):
    with httpx.Client(base_url=gateway.url, timeout=30, headers=gateway.headers) as http:
        made = http.post("/predictions", json={"input": job()}, headers={"Prefer": "respond-async"})
        assert made.status_code == 202, made.text
        pg.stop()
        try:
            answers = []
            for _ in range(3):
                answers += [_timed(lambda: http.post("/predictions", json={"input": job()})),
                            _timed(lambda: http.get(f"/predictions/{made.json()['id']}")),
                            _timed(lambda: http.get("/health-check"))]
            for response, _ in answers:
                assert response.status_code == 503, response.text
                assert response.headers["Retry-After"] == "2"
                assert "database does not answer" in response.text and "Traceback" not in response.text
            slowest = max(seconds for _, seconds in answers)
            print(f"database down: slowest of {len(answers)} answers (POST, GET, health) {slowest:.2f} s")
            assert slowest < 2  # the probe notices within PROBE_SECONDS; the readiness probe gives up at 4 s
            time.sleep(1.5)  # several probes into the outage
            assert http.get("/health-check").status_code == 503
        finally:
            pg.start()
        back = time.monotonic()
        while http.get("/health-check").status_code != 200:
            assert time.monotonic() - back < 20, gateway.logs()
            time.sleep(0.1)
        print(f"database back: health green after {time.monotonic() - back:.2f} s")
        assert http.get(f"/predictions/{made.json()['id']}").status_code == 200
    logs = gateway.logs(tail=None)
    assert logs.count("does not answer") == 1 and logs.count("answers again") == 1, logs
    assert "Traceback" not in logs and "Server got itself in trouble" not in logs


def test_a_put_with_another_input_than_the_stored_one_is_409_the_same_input_answers_it(gateway):
    with httpx.Client(base_url=gateway.url, timeout=30, headers=gateway.headers) as http:
        first = http.put("/predictions/put-409", json={"input": job()}, headers={"Prefer": "respond-async"})
        assert first.status_code == 202, first.text
        again = http.put("/predictions/put-409", json={"input": job()})
        assert again.status_code == 202 and again.json()["id"] == "put-409"
        other = http.put("/predictions/put-409", json={"input": job(prompt="a cat", steps=2)})
        assert other.status_code == 409, other.text
        (problem,) = other.json()["detail"]
        assert problem["loc"] == ["body", "input"]
        assert "differs in prompt, steps" in problem["msg"] and "use a new id" in problem["msg"]
        assert http.get("/predictions/put-409").json()["input"]["prompt"] == "a fox"


def test_a_422_does_not_mirror_a_hostile_body(gateway, client):
    before = client.store.count()
    huge = "x" * 100_000
    with httpx.Client(base_url=gateway.url, timeout=30, headers=gateway.headers) as http:
        for body in ({"input": job(**{huge: 1})}, {"input": job(prompt="a fox " + huge, steps=0)},
                     {"input": job(), "webhook": "http://" + huge + ".example/"}):
            refused = http.post("/predictions", json=body)
            assert refused.status_code == 422, refused.text
            assert len(refused.content) < 4000 and huge not in refused.text
            assert all("\n" not in problem["msg"] for problem in refused.json()["detail"])
    assert client.store.count() == before
