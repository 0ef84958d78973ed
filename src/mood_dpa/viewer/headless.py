"""Drive the system Chromium headless over its DevTools pipe: open a page, run script, click, take screenshots.

Used by the browser test, ``benchmarks/bench_viewer.py`` (open time, screenshots for the docs) and
anyone who wants pictures of a browser folder without a screen. ``--remote-debugging-pipe`` speaks the
DevTools protocol as NUL-separated JSON on file descriptors 3 (commands in) and 4 (events out), so no
websocket client and no browser download are needed: only Debian's ``chromium`` (or any Chrome).
The browser runs with a fresh profile folder, no network services, and is stopped on :meth:`close`.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from ..errors import MoodError

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--no-default-browser-check",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-extensions",
         "--hide-scrollbars", "--mute-audio", "--remote-debugging-pipe")


def find_chromium() -> str | None:
    """Path of a Chromium or Chrome executable (``MOOD_DPA_CHROMIUM`` first), None when there is none."""
    env = os.environ.get("MOOD_DPA_CHROMIUM")
    if env:
        return env if Path(env).is_file() else None
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


def _high_dup(fd: int) -> int:
    return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)  # closed in the browser unless dup2'ed to 3 / 4


class Chromium:
    """One headless browser with one page. ``with Chromium() as page: page.open(url); page.evaluate(...)``."""

    def __init__(self, width: int = 1400, height: int = 900, executable: str | None = None, timeout: float = 60.0):
        exe = executable or find_chromium()
        if exe is None:
            raise MoodError("no Chromium found (install Debian's 'chromium' or set MOOD_DPA_CHROMIUM)")
        self.timeout = timeout
        self.profile = tempfile.mkdtemp(prefix="mood-dpa-chromium-")
        cmd_r, self._cmd_w = os.pipe()
        self._evt_r, evt_w = os.pipe()
        a, b = _high_dup(cmd_r), _high_dup(evt_w)

        def child_fds() -> None:  # the DevTools pipe is fds 3 (read) and 4 (write) in the browser
            os.dup2(a, 3)
            os.dup2(b, 4)

        self.proc = subprocess.Popen([exe, *FLAGS, f"--user-data-dir={self.profile}", f"--window-size={width},{height}",
                                      "about:blank"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, close_fds=False, preexec_fn=child_fds)
        for fd in (cmd_r, evt_w, a, b):
            os.close(fd)
        self._next = 0
        self._replies: dict[int, dict] = {}
        self._cond = threading.Condition()
        self.events: list[dict] = []
        self.errors: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.session = None
        targets = self.call("Target.getTargets")["targetInfos"]
        page = next(t for t in targets if t["type"] == "page")
        self.session = self.call("Target.attachToTarget", targetId=page["targetId"], flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            self.call(f"{domain}.enable")
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)

    # ------------------------------------------------------------ protocol
    def _read(self) -> None:
        buf = b""
        while True:
            try:
                chunk = os.read(self._evt_r, 1 << 16)
            except OSError:
                chunk = b""
            if not chunk:
                with self._cond:
                    self._replies[-1] = {"error": {"message": "browser closed"}}
                    self._cond.notify_all()
                return
            buf += chunk
            while b"\0" in buf:
                raw, buf = buf.split(b"\0", 1)
                msg = json.loads(raw)
                with self._cond:
                    if "id" in msg:
                        self._replies[msg["id"]] = msg
                    else:
                        self._event(msg)
                    self._cond.notify_all()

    def _event(self, msg: dict) -> None:
        self.events.append(msg)
        method, params = msg.get("method"), msg.get("params", {})
        if method == "Runtime.exceptionThrown":
            d = params.get("exceptionDetails", {})
            self.errors.append("exception: " + (d.get("exception", {}).get("description") or d.get("text", "")))
        elif method == "Runtime.consoleAPICalled" and params.get("type") == "error":
            args = params.get("args", [])
            self.errors.append("console.error: " + " ".join(str(a.get("value", a.get("description", ""))) for a in args))
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            self.errors.append("log: " + params["entry"].get("text", ""))

    def call(self, method: str, **params) -> dict:
        """Send one DevTools command and wait for its reply (MoodError on a protocol error or a time-out)."""
        with self._cond:
            self._next += 1
            ident = self._next
        msg: dict[str, Any] = {"id": ident, "method": method, "params": params}
        if self.session is not None and not method.startswith("Target."):
            msg["sessionId"] = self.session
        os.write(self._cmd_w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        with self._cond:
            while ident not in self._replies and -1 not in self._replies:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise MoodError(f"Chromium did not answer {method} within {self.timeout:.0f} s")
                self._cond.wait(left)
            reply = self._replies.pop(ident, None) or self._replies[-1]
        if "error" in reply:
            raise MoodError(f"Chromium: {method}: {reply['error'].get('message')}")
        return reply.get("result", {})

    # ------------------------------------------------------------ page helpers
    def open(self, url: str, ready: str | None = None, timeout: float | None = None) -> Any:
        """Navigate to ``url``; with ``ready`` (a JS expression), wait until it is truthy and return its value."""
        self.call("Page.navigate", url=url)
        return self.wait_for(ready or "document.readyState === 'complete'", timeout)

    def evaluate(self, expression: str) -> Any:
        """The value of a JS expression (promises awaited); a thrown error is a MoodError."""
        res = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in res:
            d = res["exceptionDetails"]
            raise MoodError(f"script failed: {d.get('exception', {}).get('description') or d.get('text')}")
        return res.get("result", {}).get("value")

    def wait_for(self, expression: str, timeout: float | None = None, interval: float = 0.02) -> Any:
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise MoodError(f"timed out waiting for {expression!r}; page errors: {self.errors or 'none'}")
            time.sleep(interval)

    def click(self, x: float, y: float) -> None:
        """A left click at page coordinates (CSS pixels), as a user's mouse does it."""
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left" if kind != "mouseMoved" else "none",
                      buttons=1 if kind == "mousePressed" else 0, clickCount=1)

    def click_element(self, selector: str, fx: float = 0.5, fy: float = 0.5) -> tuple[float, float]:
        """Click at the fraction (fx, fy) of the element's box; returns the page coordinates clicked."""
        box = self.evaluate(f"(() => {{ const r = document.querySelector({json.dumps(selector)}).getBoundingClientRect();"
                            " return [r.left, r.top, r.width, r.height]; })()")
        x, y = box[0] + fx * box[2], box[1] + fy * box[3]
        self.click(x, y)
        return x, y

    def key(self, key: str) -> None:
        """Press and release one key (e.g. 'ArrowDown', 'm') on the focused element."""
        codes = {"ArrowDown": 40, "ArrowUp": 38, "ArrowLeft": 37, "ArrowRight": 39}
        extra = {"windowsVirtualKeyCode": codes[key]} if key in codes else {"text": key}
        for kind in ("keyDown", "keyUp"):
            self.call("Input.dispatchKeyEvent", type=kind, key=key, **(extra if kind == "keyDown" else {}))

    def screenshot(self, path: str | os.PathLike) -> Path:
        """The viewport as a PNG file."""
        data = self.call("Page.captureScreenshot", format="png")["data"]
        path = Path(path)
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        try:
            if self.proc.poll() is None:
                try:
                    self.call("Browser.close")
                except MoodError:
                    pass
                try:
                    self.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(timeout=10)
        finally:
            for fd in (self._cmd_w, self._evt_r):
                try:
                    os.close(fd)
                except OSError:
                    pass
            shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> "Chromium":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
