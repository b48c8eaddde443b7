"""Take docs/page.png: `deeprec serve` a run, search, rate a few items in headless Chromium.

    python docs/page_screenshot.py RUN_DIR docs/page.png "star wars:5" "toy story:4" ...

Each "QUERY:VALUE" searches QUERY and gives its first hit VALUE stars; the last one's similar
items are shown. Needs selenium and chromium/chromedriver (see .ci/run).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time

import httpx
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait


def main(run: str, out: str, *rates: str) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "deeprec", "serve", "--run", run, "--port", str(port)]
    )
    base = f"http://127.0.0.1:{port}"
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or shutil.which("chromium-browser")
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1400,1050",
    ):
        options.add_argument(arg)
    chrome = None
    try:
        for _ in range(300):
            try:
                if httpx.get(base + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        chrome = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
        wait = WebDriverWait(chrome, 20)
        chrome.get(base + "/")
        wait.until(lambda d: "items" in d.find_element(By.ID, "model-info").text)
        box = chrome.find_element(By.ID, "search")
        for spec in rates:
            query, value = spec.rsplit(":", 1)
            box.clear()
            box.send_keys(query)
            time.sleep(0.8)
            first = chrome.find_element(By.CSS_SELECTOR, "#results li")
            first.find_element(By.CSS_SELECTOR, f'.stars button[data-value="{value}"]').click()
            time.sleep(0.8)
        box.clear()
        box.send_keys(rates[0].rsplit(":", 1)[0].split()[0])
        time.sleep(1.5)
        chrome.save_screenshot(out)
    finally:
        if chrome is not None:
            chrome.quit()
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main(*sys.argv[1:])
