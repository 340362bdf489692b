"""report.html of a real run in a real browser: headless Chromium loads it offline, with no console error,
the plots drawn, the recommendation shown, and a click on a header re-sorts the results table.

Chromium is driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``: JSON messages
ended by NUL on file descriptors 3 and 4) with the standard library only. Debian's ``chromium``
package is installed by ``make setup`` where apt and root are available; elsewhere the test is
skipped saying so.
"""

from __future__ import annotations

import fcntl
import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any, Optional

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="headless Chromium not installed (Debian: apt-get install chromium; make setup does it as root)",
)


class DevTools:
    """A headless Chromium and one page, driven over the DevTools protocol on a pipe."""

    def __init__(self, exe: str, profile: Path, timeout: float = 30.0) -> None:
        to_browser, self._from_browser = os.pipe(), os.pipe()
        fds = (to_browser[0], self._from_browser[1])

        def child() -> None:  # the browser reads commands on fd 3 and writes replies on fd 4
            high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in fds]
            os.dup2(high[0], 3)
            os.dup2(high[1], 4)

        args = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--remote-debugging-pipe",
                f"--user-data-dir={profile}", "--host-resolver-rules=MAP * ~NOTFOUND", "about:blank"]  # fmt: skip
        self.proc = subprocess.Popen(
            args, pass_fds=(3, 4), preexec_fn=child, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        os.close(fds[0])
        os.close(fds[1])
        self._write, self._read = to_browser[1], self._from_browser[0]
        self.timeout, self._buf, self._id, self.events = timeout, b"", 0, []
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Runtime", "Log", "Page"):
            self.send(f"{domain}.enable", session=True)

    def send(self, method: str, params: Optional[dict] = None, session: bool = False) -> dict:
        self._id += 1
        msg: dict[str, Any] = {"id": self._id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = self.session
        os.write(self._write, json.dumps(msg).encode() + b"\0")
        reply = self._until(lambda m: m.get("id") == self._id)
        assert "error" not in reply, f"{method}: {reply['error']}"
        return reply.get("result", {})

    def _until(self, done) -> dict:
        deadline = time.monotonic() + self.timeout
        while True:
            while b"\0" in self._buf:
                raw, self._buf = self._buf.split(b"\0", 1)
                msg = json.loads(raw)
                if "method" in msg:
                    self.events.append(msg)
                if done(msg):
                    return msg
            left = deadline - time.monotonic()
            assert left > 0, "Chromium did not answer in time"
            if select.select([self._read], [], [], left)[0]:
                chunk = os.read(self._read, 1 << 16)
                assert chunk, "Chromium closed the DevTools pipe"
                self._buf += chunk

    def load(self, url: str) -> None:
        self.send("Page.navigate", {"url": url}, session=True)
        self._until(lambda m: m.get("method") == "Page.loadEventFired")

    def js(self, expression: str) -> Any:
        out = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True}, session=True)
        assert "exceptionDetails" not in out, out["exceptionDetails"]
        return out["result"].get("value")

    def click(self, selector: str) -> None:
        """A real mouse click (press and release) at the middle of the element."""
        x, y = self.js(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
            " e.scrollIntoView({block: 'center'}); const r = e.getBoundingClientRect();"
            " return [r.x + r.width / 2, r.y + r.height / 2]; })()"
        )
        for kind in ("mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", {"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1},
                      session=True)  # fmt: skip

    def errors(self) -> list[str]:
        """Console errors, uncaught exceptions and browser log errors (a failed load among them)."""
        out = []
        for e in self.events:
            p = e.get("params", {})
            if e["method"] == "Runtime.exceptionThrown":
                out.append(p["exceptionDetails"].get("text", "exception"))
            elif e["method"] == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                out.append(" ".join(str(a.get("value", a.get("description"))) for a in p.get("args", [])))
            elif e["method"] == "Log.entryAdded" and p["entry"]["level"] == "error":
                out.append(p["entry"]["text"])
        return out

    def close(self) -> None:
        try:
            self.send("Browser.close")
        except AssertionError:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._write)
        os.close(self._read)


@pytest.fixture(scope="module")
def page(real_report, tmp_path_factory):
    run, folder = real_report
    browser = DevTools(CHROMIUM, tmp_path_factory.mktemp("chromium_profile"))
    try:
        browser.load((folder / "report.html").resolve().as_uri())
        yield browser, run
    finally:
        browser.close()


def _column(browser: DevTools, header: str) -> list[str]:
    return browser.js(
        "(() => { const t = document.querySelector('table.sortable');"
        f" const i = [...t.tHead.rows[0].cells].findIndex(c => c.textContent.trim() === {json.dumps(header)});"
        " return [...t.tBodies[0].rows].map(r => r.cells[i].textContent.trim()); })()"
    )


def test_report_loads_offline_without_console_errors(page) -> None:
    browser, _ = page
    assert browser.js("document.readyState") == "complete"
    assert browser.errors() == []
    assert browser.js("performance.getEntriesByType('resource').length") == 0  # nothing fetched: self-contained


def test_plots_and_recommendation_are_shown(page) -> None:
    browser, run = page
    headline = browser.js("document.querySelector('#recommendation .headline').textContent")
    assert headline.startswith("Deploy ") and ".tflite:" in headline
    assert browser.js("document.querySelector('#recommendation').getBoundingClientRect().top") < 400  # at the top
    exported = sum(1 for r in run.results if r.format != "keras")
    sizes = browser.js("[...document.querySelectorAll('figure.plot svg')].map(s => s.getBoundingClientRect().width)")
    assert len(sizes) == 2 and min(sizes) > 300  # accuracy vs size, accuracy vs latency: drawn, not empty
    titles = browser.js("[...document.querySelectorAll('figure.plot g.tfopt-point > title')].map(t => t.textContent)")
    assert len(titles) == 2 * exported
    assert any(t.startswith("pruned_80 / int8: validation ") and "gzip " in t for t in titles)
    images = browser.js("[...document.images].map(i => i.complete && i.naturalWidth > 0)")
    assert images and all(images)  # the PNG plots (latency bars, per-layer sparsity) decode


def test_clicking_a_header_sorts_the_results_table(page) -> None:
    browser, run = page
    before = _column(browser, "gzip (KiB)")
    assert len(before) == len(run.results)
    as_number = [float(v.replace(",", "")) for v in before]
    assert as_number != sorted(as_number)  # the table starts in run order, not sorted by gzip size
    browser.click("table.sortable th:nth-child(7)")
    assert browser.js("document.querySelector('table.sortable th:nth-child(7)').textContent") == "gzip (KiB)"
    after = [float(v.replace(",", "")) for v in _column(browser, "gzip (KiB)")]
    assert after == sorted(as_number)  # numeric order: "9.0" before "12.3"
    browser.click("table.sortable th:nth-child(7)")
    assert [float(v.replace(",", "")) for v in _column(browser, "gzip (KiB)")] == sorted(as_number, reverse=True)
    browser.click("table.sortable th:nth-child(1)")  # a text column: variants grouped alphabetically
    variants = _column(browser, "variant")
    assert variants == sorted(variants)
    assert browser.errors() == []
