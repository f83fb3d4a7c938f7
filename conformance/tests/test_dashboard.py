"""The dashboard (`/dashboard` on the admin listener) in headless Chromium: Debian's chromium
driven by playwright (its own browser downloads are never used). The page loads with the admin
credentials, shows the counters, follows traffic, and shows a warm-up job with its progress;
without credentials it is refused."""

from __future__ import annotations

import os
import shutil

import pytest
import requests

from test_warm import OPERATOR, api, operator_extra, put_prefix, wait_job

MIB = 1 << 20
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture
def browser_context(tmp_path):
    if not os.path.exists(CHROMIUM):
        pytest.fail("chromium is not installed (conformance/run installs it)", pytrace=False)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        def launch(name, credentials=None):
            return p.chromium.launch_persistent_context(
                str(tmp_path / name), executable_path=CHROMIUM, headless=True, args=ARGS,
                http_credentials=credentials)
        yield launch


def text(page, sel: str) -> str:
    return page.locator(sel).inner_text().strip()


def test_dashboard_shows_live_numbers_and_warm_jobs(cistern_factory, moto, tmp_path, browser_context):
    c = cistern_factory.with_config("dash", chunk_size="1MiB", extra=operator_extra(tmp_path))
    page_html = api(c, "GET", "/dashboard").text
    assert "<script>" in page_html and "src=" not in page_html and "<link" not in page_html, \
        "the page is self-contained"

    ctx = browser_context("profile", {"username": OPERATOR.access_key, "password": OPERATOR.secret})
    page = ctx.new_page()
    foreign = []
    page.on("request", lambda r: foreign.append(r.url) if not r.url.startswith(c.admin) else None)
    resp = page.goto(c.admin + "/dashboard?interval=300")
    assert resp.status == 200
    page.wait_for_function("Number(document.body.dataset.polls || 0) >= 1", timeout=15000)
    assert text(page, "#error") == ""
    requests0 = int(text(page, "#requests"))
    memory0 = int(page.locator("#served-memory").get_attribute("data-bytes"))
    assert text(page, "#hit-ratio") == "–"  # no object read yet

    # Traffic: one miss, then hits of the same object.
    prefix, objs = put_prefix(moto, {"hot.bin": 2 * MIB})
    key = prefix + "hot.bin"
    for _ in range(4):
        assert c.get("motoi", key).body == objs[key]
    page.wait_for_function(f"Number(document.getElementById('requests').textContent) >= {requests0 + 4}",
                           timeout=15000)
    page.wait_for_function(
        f"Number(document.getElementById('served-memory').dataset.bytes) > {memory0}", timeout=15000)
    assert text(page, "#hit-ratio") == "75.0 %", text(page, "#hit-ratio")  # 3 hits of 4 reads
    assert int(page.locator("#served-origin").get_attribute("data-bytes")) >= 2 * MIB
    assert int(text(page, "#origin-requests")) >= 2
    page.wait_for_function(
        f"document.getElementById('hot').textContent.includes('motoi/{key}')", timeout=15000)

    # A warm-up job appears with its progress.
    wprefix, wobjs = put_prefix(moto, {f"{i}.bin": MIB for i in range(3)})
    r = api(c, "POST", "/admin/warm", json={"bucket": "motoi", "prefix": wprefix})
    assert r.status_code == 201, r.text
    job = r.json()["id"]
    wait_job(c, job)
    row = page.locator(f"#jobs tr[data-job='{job}']")
    row.wait_for(timeout=15000)
    page.wait_for_function(
        f"document.querySelector(\"#jobs tr[data-job='{job}'] td.state\").textContent === 'done'",
        timeout=15000)
    assert row.locator("td.objects").inner_text() == "3 / 3"
    assert f"motoi/{wprefix}" in row.inner_text()
    assert row.locator(".bar > div").get_attribute("style").replace(".0", "") == "width: 100%;"
    assert not foreign, f"the page fetched from elsewhere: {foreign}"
    ctx.close()

    # Without credentials the page (which lists object keys) is refused: a browser is asked
    # for them (headless Chromium gives up on the prompt), a plain request gets 401.
    anon = browser_context("anon")
    with pytest.raises(Exception, match="ERR_INVALID_AUTH_CREDENTIALS"):
        anon.new_page().goto(c.admin + "/dashboard")
    resp = anon.request.get(c.admin + "/dashboard")
    assert resp.status == 401 and resp.headers["www-authenticate"].startswith("Basic")
    anon.close()
    assert requests.get(c.admin + "/admin/stats", timeout=10).status_code == 401
