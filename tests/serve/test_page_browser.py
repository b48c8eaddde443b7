"""The try-it page in a real browser: headless Chromium driven by Selenium against
`deeprec serve` on a free loopback port. Skips where no chromium/chromedriver is installed
(.ci/run installs them with apt where it can)."""

from __future__ import annotations

import json
import shutil
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest

from deeprec import DeepRec

from .conftest import serve_process
from .test_items_and_page import titled_dataset

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def _browser() -> tuple[str, str]:
    pytest.importorskip("selenium", reason="selenium is not installed (the dev extra has it)")
    browser = next((p for p in map(shutil.which, BROWSERS) if p), None)
    driver = shutil.which("chromedriver")
    if browser is None or driver is None:
        pytest.skip(
            "no chromium/chromedriver binary found (apt-get install chromium chromium-driver)"
        )
    return browser, driver


def _run_dir(tmp_path: Path, name: str, **params) -> Path:
    model = DeepRec(hidden=[16], epochs=3, batch_size=16, seed=0, **params).fit(titled_dataset())
    run = tmp_path / name
    model.save(run / "best")
    (run / "summary.json").write_text(json.dumps({"best_epoch": 3}))
    return run


@contextmanager
def _chrome(browser: str, driver: str):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1400,1000",
    ):
        options.add_argument(arg)
    chrome = webdriver.Chrome(service=Service(driver), options=options)
    try:
        yield chrome
    finally:
        chrome.quit()


def test_page_search_rate_recommend(tmp_path):
    browser, driver = _browser()
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    user_run = _run_dir(tmp_path, "user")
    item_run = _run_dir(tmp_path, "item", orientation="item")
    with ExitStack() as stack:
        user_base = stack.enter_context(serve_process(user_run))
        item_base = stack.enter_context(serve_process(item_run))
        chrome = stack.enter_context(_chrome(browser, driver))
        wait = WebDriverWait(chrome, 15)

        chrome.get(user_base + "/")
        wait.until(ec.text_to_be_present_in_element((By.ID, "model-info"), "DeepRec"))
        box = chrome.find_element(By.ID, "search")
        box.send_keys("star")
        wait.until(
            lambda d: (
                (rows := d.find_elements(By.CSS_SELECTOR, "#results li .title"))
                and all("Star" in r.text for r in rows)
            )
        )
        results = chrome.find_elements(By.CSS_SELECTOR, "#results li")
        assert len(results) >= 3
        for row, value in zip(results[:3], ("5", "4", "1"), strict=True):
            row.find_element(By.CSS_SELECTOR, f'.stars button[data-value="{value}"]').click()
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#rated li")) == 3)
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#recs li")) == 10)
        wait.until(ec.text_to_be_present_in_element((By.ID, "recs-status"), "From 3 rating"))
        recs = chrome.find_elements(By.CSS_SELECTOR, "#recs li .title")
        assert all(r.text.startswith("Film ") for r in recs)
        rated = {r.get_attribute("data-item") for r in results[:3]}
        shown = {
            li.get_attribute("data-item")
            for li in chrome.find_elements(By.CSS_SELECTOR, "#recs li")
        }
        assert not rated & shown  # rated items are excluded
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#similar li")) == 8)
        assert "Similar to Film" in chrome.find_element(By.ID, "similar-title").text
        assert chrome.find_element(By.ID, "notice").get_attribute("hidden") is not None
        chrome.save_screenshot(str(tmp_path / "page.png"))

        chrome.get(item_base + "/")
        wait.until(ec.visibility_of_element_located((By.ID, "notice")))
        assert "cannot recommend for new users" in chrome.find_element(By.ID, "notice").text
        chrome.find_element(By.ID, "search").send_keys("moon")
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#results li .stars button"))
        chrome.find_element(By.CSS_SELECTOR, "#results li .stars button").click()
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#similar li")) == 8)
        assert chrome.find_elements(By.CSS_SELECTOR, "#recs li") == []
        assert "Not available" in chrome.find_element(By.ID, "recs-status").text
        errors = [
            e for e in chrome.get_log("browser") if e.get("level") == "SEVERE"
        ]  # no failed request or script error on the item-based page either
        assert errors == [], [e["message"] for e in errors]
