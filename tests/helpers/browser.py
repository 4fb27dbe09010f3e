"""Open a page in headless Chromium and report what a reader's browser would see.

A small Chrome DevTools Protocol client over ``--remote-debugging-pipe`` (NUL-separated
JSON on file descriptors 3 and 4 of the browser: no port, no websocket package, nothing
but the standard library). :func:`inspect_page` loads a file and returns
:class:`PageCheck`: every request the page made, console errors, uncaught exceptions,
failed loads, each ``<img>``'s decoded width, a full-page PNG screenshot and, on request,
the page printed to PDF.

Chromium runs headless, without sandbox (CI runs as root), GPU, QUIC or any background
networking, in a fresh profile, so nothing it does comes from anything but the page.

    python -m tests.helpers.browser work_dirs/demo/report.html \
        --screenshot docs/report-demo.png --colours 256     # the README's screenshot
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import io
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from queue import Empty, Queue
from typing import Any

BINARIES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
ENV_VAR = "MASSFACE_CHROMIUM"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-default-apps", "--disable-extensions", "--mute-audio",
         "--hide-scrollbars", "--remote-debugging-pipe")


def find_chromium() -> str | None:
    """``$MASSFACE_CHROMIUM``, else the first Chromium/Chrome on PATH."""
    env = os.environ.get(ENV_VAR)
    if env:
        return env if Path(env).is_file() else shutil.which(env)
    return next((p for p in map(shutil.which, BINARIES) if p), None)


class CdpError(RuntimeError):
    pass


class Browser:
    """One headless Chromium process driven over the DevTools pipe."""

    def __init__(self, binary: str, timeout: float = 60.0) -> None:
        self.timeout = timeout
        self.profile = tempfile.mkdtemp(prefix="massface-chromium-")
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()
        # the child expects the pipe on fds 3 (reads) and 4 (writes); move ours above any
        # low number first so that the dup2 calls cannot overwrite each other
        high_r = fcntl.fcntl(to_browser_r, fcntl.F_DUPFD, 10)
        high_w = fcntl.fcntl(from_browser_w, fcntl.F_DUPFD, 10)
        os.close(to_browser_r)
        os.close(from_browser_w)

        def child_fds() -> None:
            os.dup2(high_r, 3)
            os.dup2(high_w, 4)

        self.proc = subprocess.Popen(
            [binary, *FLAGS, f"--user-data-dir={self.profile}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            pass_fds=(3, 4), preexec_fn=child_fds)  # fds set before exec
        os.close(high_r)
        os.close(high_w)
        self._next_id = 0
        self._replies: dict[int, dict[str, Any]] = {}
        self.events: Queue[dict[str, Any]] = Queue()
        self._lock = threading.Condition()
        self._stderr: list[bytes] = []
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._drain_stderr, daemon=True).start()

    def _drain_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self._stderr.append(line)

    def _read(self) -> None:
        buf = b""
        with os.fdopen(self._from_browser, "rb", buffering=0) as pipe:
            while chunk := pipe.read(1 << 16):
                buf += chunk
                *messages, buf = buf.split(b"\0")
                for raw in messages:
                    msg = json.loads(raw)
                    if "id" in msg:
                        with self._lock:
                            self._replies[msg["id"]] = msg
                            self._lock.notify_all()
                    else:
                        self.events.put(msg)
        with self._lock:
            self._lock.notify_all()

    def send(self, method: str, params: dict[str, Any] | None = None,
             session: str | None = None) -> dict[str, Any]:
        """Call ``method`` and wait for its result; :class:`CdpError` on an error reply."""
        self._next_id += 1
        msg: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session is not None:
            msg["sessionId"] = session
        os.write(self._to_browser, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        with self._lock:
            while self._next_id not in self._replies:
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    raise CdpError(f"{method}: no reply (browser "
                                   f"{'exited' if self.proc.poll() is not None else 'silent'}"
                                   f"); stderr: {b''.join(self._stderr[-20:]).decode()!r}")
                self._lock.wait(min(left, 0.5))
            reply = self._replies.pop(self._next_id)
        if "error" in reply:
            raise CdpError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.send("Browser.close")
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        with contextlib.suppress(OSError):
            os.close(self._to_browser)
        shutil.rmtree(self.profile, ignore_errors=True)


@contextlib.contextmanager
def chromium(binary: str | None = None) -> Iterator[Browser]:
    """A running headless Chromium, closed (and its profile removed) afterwards."""
    path = binary or find_chromium()
    if path is None:
        raise FileNotFoundError("no Chromium found (apt-get install chromium)")
    browser = Browser(path)
    try:
        browser.send("Browser.getVersion")
        yield browser
    finally:
        browser.close()


@dataclass
class PageCheck:
    """What loading a page did and showed."""

    url: str
    requests: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    failed_loads: list[str] = field(default_factory=list)
    images: list[dict[str, Any]] = field(default_factory=list)
    svg_count: int = 0
    text: str = ""
    screenshot: bytes = b""
    pdf: bytes = b""

    def foreign_requests(self) -> list[str]:
        """Requests for anything but the page itself and inline ``data:`` URIs."""
        return [u for u in self.requests if u != self.url and not u.startswith("data:")]


def _collect(check: PageCheck, msg: dict[str, Any]) -> None:
    method, p = msg.get("method"), msg.get("params", {})
    if method == "Network.requestWillBeSent":
        check.requests.append(p["request"]["url"])
    elif method == "Network.loadingFailed":
        check.failed_loads.append(f"{p.get('errorText')} ({p.get('blockedReason', '')})")
    elif method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
        check.console_errors.append(" ".join(str(a.get("value", a.get("description", "")))
                                             for a in p.get("args", [])))
    elif method == "Runtime.exceptionThrown":
        check.console_errors.append(str(p.get("exceptionDetails", {}).get("text")))
    elif method == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
        check.console_errors.append(f"{p['entry'].get('source')}: {p['entry'].get('text')} "
                                    f"{p['entry'].get('url', '')}")


def _wait_for(browser: Browser, check: PageCheck, session: str, method: str,
              timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            msg = browser.events.get(timeout=max(0.05, deadline - time.monotonic()))
        except Empty:
            if time.monotonic() >= deadline:
                raise CdpError(f"{check.url}: no {method} within {timeout} s") from None
            continue
        if msg.get("sessionId") == session:
            _collect(check, msg)
            if msg.get("method") == method:
                return


def _drain(browser: Browser, check: PageCheck, session: str, quiet: float) -> None:
    """Collect events until none has come for ``quiet`` seconds (late requests, errors)."""
    while True:
        try:
            msg = browser.events.get(timeout=quiet)
        except Empty:
            return
        if msg.get("sessionId") == session:
            _collect(check, msg)


IMAGES_JS = """JSON.stringify({
  images: Array.from(document.images, i => ({src: i.currentSrc.slice(0, 40),
    complete: i.complete, naturalWidth: i.naturalWidth, naturalHeight: i.naturalHeight})),
  svgs: document.querySelectorAll('svg').length,
  text: document.body ? document.body.innerText : ''})"""


def inspect_page(browser: Browser, path: str | Path, *, width: int = 1280,
                 height: int = 900, pdf: bool = False, timeout: float = 60.0) -> PageCheck:
    """Load ``path`` in a new tab and return what happened (see :class:`PageCheck`)."""
    url = Path(path).resolve().as_uri()
    check = PageCheck(url)
    target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
    session = browser.send("Target.attachToTarget", {"targetId": target,
                                                     "flatten": True})["sessionId"]
    try:
        for domain in ("Page", "Runtime", "Log", "Network"):
            browser.send(f"{domain}.enable", session=session)
        browser.send("Emulation.setDeviceMetricsOverride",
                     {"width": width, "height": height, "deviceScaleFactor": 1,
                      "mobile": False}, session)
        browser.send("Page.navigate", {"url": url}, session)
        _wait_for(browser, check, session, "Page.loadEventFired", timeout)
        _drain(browser, check, session, quiet=0.5)
        info = json.loads(browser.send("Runtime.evaluate", {
            "expression": IMAGES_JS, "returnByValue": True}, session)["result"]["value"])
        check.images, check.svg_count, check.text = info["images"], info["svgs"], info["text"]
        size = browser.send("Page.getLayoutMetrics", session=session)["cssContentSize"]
        shot = browser.send("Page.captureScreenshot", {
            "format": "png", "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": width, "height": size["height"], "scale": 1}},
            session)
        check.screenshot = base64.b64decode(shot["data"])
        if pdf:
            out = browser.send("Page.printToPDF", {"printBackground": True}, session)
            check.pdf = base64.b64decode(out["data"])
        _drain(browser, check, session, quiet=0.2)
    finally:
        browser.send("Target.closeTarget", {"targetId": target})
    return check


def is_blank(png: bytes) -> bool:
    """True when the screenshot is (nearly) one colour: nothing was drawn."""
    import numpy as np
    from PIL import Image

    with Image.open(io.BytesIO(png)) as im:
        grey = np.asarray(im.convert("L"), dtype=np.float64)
    return grey.std() < 2.0 or np.unique(grey.astype(np.uint8)).size < 8


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("page")
    parser.add_argument("--screenshot", type=Path, help="write the full-page PNG here")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--max-height", type=int, default=0,
                        help="crop the screenshot to this many pixels (0: whole page)")
    parser.add_argument("--colours", type=int, default=0,
                        help="quantise the PNG to this many colours (0: keep true colour)")
    args = parser.parse_args()
    with chromium() as browser:
        check = inspect_page(browser, args.page, width=args.width)
    print(f"requests: {len(check.requests)} ({len(check.foreign_requests())} foreign: "
          f"{check.foreign_requests()[:5]}); console errors: {check.console_errors}; "
          f"images: {len(check.images)}, undecoded: "
          f"{sum(1 for i in check.images if not i['naturalWidth'])}; svgs: {check.svg_count}; "
          f"blank: {is_blank(check.screenshot)}")
    if args.screenshot:
        from PIL import Image

        with Image.open(io.BytesIO(check.screenshot)) as im:
            if args.max_height and im.height > args.max_height:
                im = im.crop((0, 0, im.width, args.max_height))
            if args.colours:
                im = im.convert("RGB").quantize(args.colours, Image.Quantize.MEDIANCUT,
                                                dither=Image.Dither.NONE)
            im.save(args.screenshot, optimize=True)
        print(f"wrote {args.screenshot}")


if __name__ == "__main__":
    main()
