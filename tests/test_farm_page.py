"""The jobs page (GET /ui) in a real headless Chromium, against the real farm: PostgreSQL (initdb + pg_ctl), moto's
S3 server, the gateway (tokens on: alice signs in, bob is another member) and a worker process rendering the weight-free plumbing_farm workflow on the CPU.

The browser is Debian's `chromium` driven through its own `chromium-driver` by selenium. Without them the browser
tests skip on a developer's machine and fail in CI (.ci/run installs them). Screenshots are kept as artifacts
under bench/results/farm-page/ (gitignored); docs/img/farm-page.png is one of them.
"""

from __future__ import annotations

import re
import time

import httpx
import pytest

from comfy_runtime.farm.client import FarmClient, InvalidInput, validate_inputs
from comfy_runtime.farm.config import FarmSettings
from comfy_runtime.farm.page import CSP, input_declarations
from local_servers.farm_processes import GatewayProcess, WorkerProcess
from tests.support.browser import card, headless_chromium, sign_in, wait_for
from tests.support.farm import write_farm_workflow
from tests.support.paths import PROJECT_ROOT

BUCKET = "farm-page-videos"
PAGE_DIR = PROJECT_ROOT / "comfy_runtime" / "farm" / "jobs_page"
ARTIFACTS = PROJECT_ROOT / "bench" / "results" / "farm-page"
MARKUP = '<img src=x onerror="window.hvInjected=1;alert(1)"><script>window.hvInjected=2;alert(2)</script> & "fox"'


@pytest.fixture(scope="module")
def farm_env(hv_env, pg, s3, tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("farm-page")
    return {
        **hv_env, "HV_WORKFLOW": "plumbing_farm", "HV_WORKFLOWS_DIR": str(write_farm_workflow(root / "workflows")),
        "HV_OUTPUT_DIR": str(root / "outputs"), "HV_S3_BUCKET": BUCKET, "HV_S3_ENDPOINT_URL": s3.url,
        "HV_S3_PREFIX": "hv/", "AWS_ACCESS_KEY_ID": "farm-test", "AWS_SECRET_ACCESS_KEY": "farm-test",
        "HV_FARM_DATABASE_URL": pg.url, "HV_FARM_HEARTBEAT_SECONDS": "0.5", "HV_FARM_STALLED_SECONDS": "5",
        "HV_FARM_POLL_SECONDS": "1", "HV_FARM_SYNC_WAIT_SECONDS": "8",
    }


@pytest.fixture(scope="module")
def client(farm_env):
    with FarmClient(FarmSettings(database_url=farm_env["HV_FARM_DATABASE_URL"])) as farm:
        farm.ensure_schema()
        yield farm


@pytest.fixture(scope="module")
def tokens(client) -> dict[str, str]:
    """alice signs in to the page; bob is another member, whose jobs alice must never see."""
    from comfy_runtime.farm import tokens as farm_tokens

    with client.store.connection() as conn:
        return {name: farm_tokens.create(conn, name).token for name in ("alice", "bob")}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def worker(farm_env, client, tmp_path_factory):
    process = WorkerProcess(farm_env, tmp_path_factory.mktemp("page-worker") / "worker.log").start()
    try:
        yield process.wait_ready()
    finally:
        process.stop()


@pytest.fixture(scope="module")
def gateway(farm_env, client, tmp_path_factory):
    process = GatewayProcess(farm_env, tmp_path_factory.mktemp("page-gateway") / "gateway.log").start()
    try:
        yield process.wait_ready()
    finally:
        process.stop()


@pytest.fixture(scope="module")
def browser():
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with headless_chromium() as driver:
        yield driver


@pytest.fixture(scope="module")
def signed_in(browser, gateway, worker, tokens):
    """The page open and signed in as alice (the module's browser tests share it)."""
    sign_in(browser, gateway.url, tokens["alice"])
    assert browser.execute_script("return sessionStorage.getItem('hv-farm-token')") == tokens["alice"]
    return browser


def fill_and_submit(driver, **values) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    driver.execute_script("document.getElementById('submit-form').reset(); document.getElementById('more-inputs').open = true")
    for name, value in values.items():
        field = driver.find_element(By.ID, f"input-{name}")
        if field.tag_name == "select":
            Select(field).select_by_value(str(value))
        else:
            field.clear()
            field.send_keys(str(value))
    before = set(job_ids(driver))
    driver.find_element(By.ID, "submit-button").click()
    return before


def job_ids(driver) -> list[str]:
    return driver.execute_script("return [...document.querySelectorAll('#job-list .job')].map(j => j.dataset.id)")


def new_job(driver, before: set[str]) -> str:
    return wait_for(driver, lambda d: next((i for i in job_ids(d) if i not in before), None), timeout=30)


def shot(driver, name: str) -> None:
    driver.execute_script("window.scrollTo(0, 0)")
    driver.save_screenshot(str(ARTIFACTS / f"{name}.png"))


# -- the routes, over plain HTTP --------------------------------------------------------------------------
def test_the_page_is_served_under_a_strict_csp_and_only_its_own_files(gateway):
    page = httpx.get(f"{gateway.url}/ui", timeout=10)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert policy == CSP and "script-src 'self'" in policy and "unsafe-inline" not in policy
    assert "unsafe-eval" not in policy and "default-src 'none'" in policy
    assert page.headers["x-content-type-options"] == "nosniff"
    script = httpx.get(f"{gateway.url}/ui/page.js", timeout=10)
    assert script.headers["content-type"].startswith("text/javascript") and "textContent" in script.text
    for path in ("/ui/gateway.py", "/ui/..%2Fgateway.py", "/ui/%2E%2E/page.py", "/ui/page"):
        answer = httpx.get(f"{gateway.url}{path}", timeout=10)
        # 404 under /ui; a path normalised out of /ui is no route at all, so the token check answers first (401).
        assert answer.status_code in (401, 404) and "import" not in answer.text, (path, answer.status_code)
    assert httpx.get(f"{gateway.url}/", timeout=10, follow_redirects=False).headers["location"] == "/ui"


def test_the_page_files_hold_no_inline_script_and_insert_no_html():
    html = (PAGE_DIR / "index.html").read_text()
    js = "\n".join(line for line in (PAGE_DIR / "page.js").read_text().splitlines() if not line.strip().startswith("//"))
    assert "<script>" not in html and "<script " not in html.replace('<script src="/ui/page.js" defer>', "")
    assert "<style" not in html and " style=" not in html
    assert not [word for word in (" onclick", " onload", " onerror", " onsubmit", "javascript:") if word in html]
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert sink not in js, sink


def test_inputs_are_the_param_rules_and_predictions_list_newest_first_per_token(gateway, client, tokens):
    declared = httpx.get(f"{gateway.url}/inputs", timeout=10).json()  # no token: the form is no one's data
    assert declared == input_declarations()
    by_name = {item["name"]: item for item in declared["inputs"]}
    assert (by_name["width"]["minimum"], by_name["width"]["maximum"], by_name["width"]["step"]) == (64, 1280, 16)
    assert (by_name["num_frames"]["minimum"], by_name["num_frames"]["step"]) == (1, 4)
    assert by_name["prompt"]["required"] and by_name["output_format"]["choices"] == ["mp4", "webm", "gif"]
    assert (by_name["steps"]["minimum"], by_name["steps"]["maximum"]) == (1, 100)

    bob = bearer(tokens["bob"])
    job = {"prompt": "bob's", "width": 64, "height": 64, "num_frames": 1, "steps": 1}
    alices = httpx.post(f"{gateway.url}/predictions", json={"input": {**job, "prompt": "alice's first"}},
                        headers={**bearer(tokens["alice"]), "Prefer": "respond-async"}, timeout=10).json()["id"]
    ids = [httpx.post(f"{gateway.url}/predictions", json={"input": job}, headers={**bob, "Prefer": "respond-async"},
                      timeout=10).json()["id"] for _ in range(3)]
    first = httpx.get(f"{gateway.url}/predictions", params={"limit": 2}, headers=bob, timeout=10).json()
    assert [p["id"] for p in first["results"]] == ids[:0:-1] and "logs" not in first["results"][0]
    second = httpx.get(f"{gateway.url}{first['next']}", headers=bob, timeout=10).json()
    assert [p["id"] for p in second["results"]] == ids[:1] and second["next"] is None
    # Another member lists none of them; no token is refused.
    alice = httpx.get(f"{gateway.url}/predictions", headers=bearer(tokens["alice"]), timeout=10).json()
    assert [p["id"] for p in alice["results"]] == [alices]
    # nor through the cursor: bob's id as alice's `before` is an empty page, not a view of when it was made
    assert httpx.get(f"{gateway.url}/predictions", params={"before": ids[2]}, headers=bearer(tokens["alice"]),
                     timeout=10).json() == {"results": [], "next": None}
    assert httpx.get(f"{gateway.url}/predictions", timeout=10).status_code == 401
    bad = httpx.get(f"{gateway.url}/predictions", params={"limit": 0}, headers=bob, timeout=10)
    assert bad.status_code == 422 and bad.json()["detail"][0]["msg"] == "limit=0 is out of range: use 1-100"
    for prediction_id in [*ids, alices]:
        client.cancel(prediction_id)


def test_a_wrong_token_is_refused_at_sign_in(browser, gateway):
    from selenium.webdriver.common.by import By

    browser.get(f"{gateway.url}/ui")
    browser.find_element(By.ID, "token").send_keys("hvf_not-a-token")
    browser.find_element(By.ID, "sign-in-button").click()
    message = wait_for(browser, lambda d: d.find_element(By.ID, "sign-in-error").text)
    assert "refused the token (401)" in message, message
    assert not browser.find_element(By.ID, "app").is_displayed()
    assert browser.execute_script("return sessionStorage.getItem('hv-farm-token')") is None


# -- the page in the browser ------------------------------------------------------------------------------
def test_sign_in_submit_watch_progress_and_play_the_video(signed_in, client, s3):
    from selenium.webdriver.common.by import By

    frames, fps = 9, 8
    before = fill_and_submit(signed_in, prompt="a fox in the snow", width=64, height=64, num_frames=frames, steps=30,
                             fps=fps)  # mp4, the default: Debian's chromium plays H.264
    prediction_id = new_job(signed_in, before)
    job = card(signed_in, prediction_id)
    assert job.find_element(By.CSS_SELECTOR, ".prompt").text == "a fox in the snow"
    seen, etas = set(), set()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        seen.add(int(job.find_element(By.CSS_SELECTOR, "progress").get_attribute("value")))
        etas.add(job.find_element(By.CSS_SELECTOR, ".eta").text)
        if job.get_attribute("data-status") == "processing" and 30 < max(seen) < 100 and len(etas) > 1:
            shot(signed_in, "rendering")
        if job.get_attribute("data-status") in ("succeeded", "failed", "canceled"):
            break
        time.sleep(0.05)
    assert job.get_attribute("data-status") == "succeeded", client.get(prediction_id)
    seen.add(int(job.find_element(By.CSS_SELECTOR, "progress").get_attribute("value")))  # as it ended
    assert any(0 < value < 100 for value in seen) and max(seen) == 100, sorted(seen)  # it moved, and reached the end
    assert job.find_element(By.CSS_SELECTOR, ".percent").text == "100%"
    assert any(text.startswith("ETA ") and "…" not in text for text in etas), etas
    video = job.find_element(By.CSS_SELECTOR, "video.video")
    state = wait_for(signed_in, lambda d: d.execute_script(
        "const v = arguments[0]; return v.readyState >= 2 && [v.readyState, v.duration, v.currentSrc]", video))
    ready, duration, source = state
    assert source.startswith(f"{s3.url}/{BUCKET}/") and ready >= 2, source  # the delivered object itself
    assert abs(duration - frames / fps) <= 1 / fps, (duration, frames / fps)  # within a frame
    assert job.find_element(By.CSS_SELECTOR, ".cancel").is_displayed() is False
    shot(signed_in, "succeeded")


def test_an_input_out_of_range_shows_the_gateways_line_beside_the_field(signed_in):
    from selenium.webdriver.common.by import By

    with pytest.raises(InvalidInput) as refused:
        validate_inputs({"prompt": "x", "width": 65})
    expected = refused.value.problems[0]["msg"]
    before = fill_and_submit(signed_in, prompt="x", width=65)
    shown = wait_for(signed_in, lambda d: d.find_element(By.ID, "error-width").text)
    assert shown == expected and "multiple of 16" in shown
    assert signed_in.find_element(By.ID, "input-width").get_attribute("aria-invalid") == "true"
    assert signed_in.find_element(By.ID, "error-width").is_displayed()
    assert set(job_ids(signed_in)) == before  # nothing was queued
    shot(signed_in, "refused")


def test_cancel_a_running_job_from_the_page(signed_in, client):
    from selenium.webdriver.common.by import By

    before = fill_and_submit(signed_in, prompt="a long one", width=64, height=64, num_frames=1, steps=100)
    prediction_id = new_job(signed_in, before)
    job = card(signed_in, prediction_id)
    wait_for(signed_in, lambda d: job.get_attribute("data-status") == "processing"
             and int(job.find_element(By.CSS_SELECTOR, "progress").get_attribute("value")) > 0
             and re.match(r"ETA \d", job.find_element(By.CSS_SELECTOR, ".eta").text))
    shot(signed_in, "farm-page")  # docs/img/farm-page.png: a job rendering above the finished one
    job.find_element(By.CSS_SELECTOR, ".cancel").click()
    wait_for(signed_in, lambda d: job.get_attribute("data-status") == "canceled", timeout=30)
    ended = client.get(prediction_id)
    assert ended["status"] == "canceled" and ended["started_at"] is not None, ended  # it was running
    assert ended["farm"]["progress"]["step"] < 100
    assert not job.find_element(By.CSS_SELECTOR, ".cancel").is_displayed()
    shot(signed_in, "canceled")


def test_a_prompt_full_of_markup_shows_as_text_and_runs_nothing(signed_in, client, gateway, tokens):
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By

    before = fill_and_submit(signed_in, prompt=MARKUP, width=64, height=64, num_frames=1, steps=1)
    prediction_id = new_job(signed_in, before)
    job = card(signed_in, prediction_id)
    wait_for(signed_in, lambda d: job.get_attribute("data-status") == "succeeded")
    assert job.find_element(By.CSS_SELECTOR, ".prompt").get_attribute("textContent") == MARKUP
    assert client.get(prediction_id)["input"]["prompt"] == MARKUP
    injected = signed_in.execute_script(
        "return [window.hvInjected === undefined, document.querySelectorAll('#job-list script, img[src=\"x\"]').length]")
    assert injected == [True, 0]
    with pytest.raises(NoAlertPresentException):
        signed_in.switch_to.alert.text  # noqa: B018 (reading it is the check: an alert would be open)
    shot(signed_in, "markup")
    # alice's page lists alice's jobs, all of them, and nothing of bob's.
    listed = httpx.get(f"{gateway.url}/predictions", headers=bearer(tokens["alice"]), timeout=10).json()["results"]
    assert set(job_ids(signed_in)) == {p["id"] for p in listed}
    # The page itself never needed what its policy forbids: no violation was reported all module long.
    console = [entry["message"] for entry in signed_in.get_log("browser")]
    assert not [line for line in console if "Content Security Policy" in line or "Refused to" in line], console
