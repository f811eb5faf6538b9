"""The web page in headless Chromium (Debian's package), driven by Playwright, against the real server."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tests.helpers.browser import CHROMIUM, CHROMIUM_ARGS, require_chromium, screenshot

pytestmark = pytest.mark.chromium


def test_upload_see_heat_map_and_send_feedback(
    server: str, sample_images: list[Path], service_env: dict[str, str], tmp_path: Path
) -> None:
    require_chromium("the web page test")
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 900, "height": 800})
        console: list[str] = []
        page.on("console", lambda message: console.append(message.text))
        response = page.goto(server + "/")
        assert response is not None
        policy = response.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "unsafe-inline" not in policy and "frame-ancestors 'none'" in policy
        expect(page.locator("#model")).to_contain_text("version 1")  # the page's own script ran
        border = page.locator(".panel").first.evaluate("panel => getComputedStyle(panel).borderTopStyle")
        assert border == "solid"  # and its own style sheet applied

        page.set_input_files("#file", str(sample_images[0]))
        expect(page.locator("#result")).to_be_visible()
        expect(page.locator("#label")).not_to_be_empty()
        assert page.locator("#topk tr").count() == 3
        # How far to trust it: the prediction set (the label first), the out-of-distribution line.
        expect(page.locator("#set")).to_contain_text(page.locator("#label").inner_text())
        expect(page.locator("#ood")).to_contain_text("score")
        heat_src = page.locator("#heat").get_attribute("src") or ""
        assert heat_src.startswith("data:image/png;base64,") and len(heat_src) > 200
        screenshot(page, tmp_path, "web-page.png")  # the README's picture of the page
        page.locator("#opacity").fill("20")
        assert page.locator("#heat").evaluate("img => img.style.opacity") == "0.2"

        shown = page.locator("#label").inner_text()
        other = next(option for option in page.locator("#truth option").all_inner_texts() if option != shown)
        page.select_option("#truth", other)
        page.click("#correct")
        expect(page.locator("#feedback")).to_contain_text(f'recorded "{other}"')
        prediction_id = page.locator("#version").inner_text().rsplit(" ", 1)[-1]

        page.set_input_files("#file", {"name": "notes.png", "mimeType": "image/png", "buffer": b"not an image"})
        expect(page.locator("#status")).to_contain_text("Refused (415)")
        browser.close()
    assert not [line for line in console if "Content Security Policy" in line], console

    database = service_env["MLOPS_PREDICTION_DB_URL"].removeprefix("sqlite:///")
    with sqlite3.connect(database) as connection:  # committed before the page could say "recorded"
        rows = connection.execute("SELECT prediction_id, label FROM feedback").fetchall()
    assert rows == [(prediction_id, other)]


def test_api_reference_works_with_nothing_but_the_service(server: str, tmp_path: Path) -> None:
    """/docs renders and runs requests on a network with no CDN: every request stays here."""
    require_chromium("the API reference test")
    from playwright.sync_api import expect, sync_playwright

    requested: list[str] = []
    console: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1100, "height": 900})
        page.on("request", lambda request: requested.append(request.url))
        page.on("console", lambda message: console.append(message.text))

        page.goto(server + "/docs")
        expect(page.locator(".opblock-summary-path", has_text="/predict/batch")).to_be_visible()
        health = page.locator("#operations-operations-health_health_get")
        health.locator(".opblock-summary").click()
        health.get_by_role("button", name="Try it out").click()
        health.get_by_role("button", name="Execute").click()
        expect(health.locator(".live-responses-table tr.response .response-col_status")).to_contain_text("200")
        screenshot(page, tmp_path, "api-docs.png")
        browser.close()

    assert server + "/docs/assets/swagger-ui-bundle.js" in requested and server + "/openapi.json" in requested
    elsewhere = [url for url in requested if not url.startswith((server, "data:", "blob:"))]
    assert not elsewhere, elsewhere
    assert not [line for line in console if "Content Security Policy" in line], console
