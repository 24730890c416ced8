"""A small headless-Chromium driver over the Chrome DevTools Protocol.

No browser-automation package is needed: Chromium is started with a debugging port on
127.0.0.1, and the page is driven over one websocket with the ``websockets`` package that the
lock already carries (uvicorn, under dagster-webserver, depends on it).
"""

import base64
import itertools
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

from websockets.sync.client import connect

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # Small /dev/shm in containers crashes the renderer; use /tmp instead.
    "--disable-dev-shm-usage",
    "--disable-extensions",
    "--disable-default-apps",
    "--mute-audio",
    "--hide-scrollbars",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
]


def find_chromium() -> str | None:
    for name in (os.environ.get("MLOPS_CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


class CDPError(RuntimeError):
    pass


class Browser:
    """One headless Chromium with one page. Use as a context manager; it always ends the
    browser it started (by its PID, then its process group) and removes its profile."""

    def __init__(self, executable: str, width: int = 1440, height: int = 900):
        self.executable = executable
        self.width, self.height = width, height
        self.profile = Path(tempfile.mkdtemp(prefix="mlops_ui_chromium_"))
        self.proc: subprocess.Popen | None = None
        self.ws = None
        self._ids = itertools.count(1)
        self.events: list[dict] = []
        self.requests: list[str] = []  # every URL the page asked for (Network.requestWillBeSent)

    # ---------------------------------------------------------------- life cycle
    def __enter__(self) -> "Browser":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def start(self, timeout: float = 60) -> None:
        log = open(self.profile.parent / f"{self.profile.name}.log", "wb")
        self.proc = subprocess.Popen(
            [self.executable, *CHROMIUM_FLAGS, f"--user-data-dir={self.profile}",
             f"--window-size={self.width},{self.height}", "about:blank"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )
        self._log_path = log.name
        port_file = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while not (port_file.exists() and port_file.read_text().count("\n") >= 1):
            if self.proc.poll() is not None:
                raise CDPError(f"chromium exited with {self.proc.returncode}: {self.log_tail()}")
            if time.monotonic() > deadline:
                raise CDPError(f"chromium did not open its debugging port: {self.log_tail()}")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as resp:
            targets = json.load(resp)
        page = next(t for t in targets if t.get("type") == "page")
        # No keepalive pings: the DevTools socket does not answer them while the page is busy.
        self.ws = connect(page["webSocketDebuggerUrl"], max_size=None, open_timeout=10, ping_interval=None)
        self.send("Page.enable")
        self.send("Runtime.enable")
        self.send("Network.enable")
        self.send("Emulation.setDeviceMetricsOverride",
                  {"width": self.width, "height": self.height, "deviceScaleFactor": 1, "mobile": False})

    def log_tail(self, n: int = 2000) -> str:
        try:
            return Path(self._log_path).read_text(errors="replace")[-n:]
        except Exception:
            return ""

    def close(self) -> None:
        if self.ws is not None:
            try:
                self.ws.close()
            except Exception:
                pass
            self.ws = None
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self.proc is not None:
            # Helpers (zygote, renderers, crashpad) share the browser's process group.
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        shutil.rmtree(self.profile, ignore_errors=True)
        try:
            os.unlink(self._log_path)
        except (AttributeError, OSError):
            pass

    # ---------------------------------------------------------------- protocol
    def send(self, method: str, params: dict | None = None, timeout: float = 60) -> dict:
        ident = next(self._ids)
        self.ws.send(json.dumps({"id": ident, "method": method, "params": params or {}}))
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise CDPError(f"no answer to {method} in {timeout} s")
            msg = json.loads(self.ws.recv(timeout=left))
            if msg.get("id") == ident:
                if "error" in msg:
                    raise CDPError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            if "method" in msg:
                if msg["method"] == "Network.requestWillBeSent":
                    self.requests.append(msg["params"]["request"]["url"])
                self.events.append(msg)
                del self.events[:-500]

    def eval(self, expression: str, timeout: float = 30):
        result = self.send("Runtime.evaluate", {
            "expression": expression, "returnByValue": True, "awaitPromise": True,
        }, timeout=timeout)
        if "exceptionDetails" in result:
            raise CDPError(f"JS error in {expression[:80]!r}: {result['exceptionDetails']}")
        return result["result"].get("value")

    # ---------------------------------------------------------------- page helpers
    def goto(self, url: str, timeout: float = 60) -> None:
        self.send("Page.navigate", {"url": url})
        self.wait_for("document.readyState === 'complete'", timeout, what=f"load of {url}")

    def wait_for(self, predicate_js: str, timeout: float = 60, what: str | None = None,
                 interval: float = 0.25):
        """Poll a JS expression until it is truthy; return its value."""
        deadline = time.monotonic() + timeout
        last_error = None
        while time.monotonic() < deadline:
            try:
                value = self.eval(predicate_js)
                if value:
                    return value
            except CDPError as e:
                last_error = e
            time.sleep(interval)
        raise CDPError(f"timed out after {timeout} s waiting for {what or predicate_js!r}"
                       + (f" (last error: {last_error})" if last_error else ""))

    def text(self) -> str:
        return self.eval("document.body ? document.body.innerText : ''") or ""

    def wait_for_text(self, *needles: str, timeout: float = 60) -> str:
        js = "(() => { const t = document.body ? document.body.innerText : ''; return %s ? t : ''; })()" % (
            " && ".join(f"t.includes({json.dumps(n)})" for n in needles))
        try:
            return self.wait_for(js, timeout, what=f"text {needles}")
        except CDPError as e:
            missing = [n for n in needles if n not in self.text()]
            raise CDPError(f"{e}; missing {missing}") from None

    def click_text(self, label: str, selector: str = "button, a, [role=button], [role=tab]") -> bool:
        """Click the first visible element matching ``selector`` whose text is ``label``."""
        return bool(self.eval("""(() => {
            const want = %s;
            for (const el of document.querySelectorAll(%s)) {
                const r = el.getBoundingClientRect();
                if (r.width > 0 && r.height > 0 && el.innerText.trim() === want) { el.click(); return true; }
            }
            return false; })()""" % (json.dumps(label), json.dumps(selector))))

    def click_icon(self, aria_label: str) -> bool:
        """Click the visible button whose icon has ``aria-label`` (Dagster's icon buttons)."""
        return bool(self.eval("""(() => {
            for (const icon of document.querySelectorAll('[aria-label=' + JSON.stringify(%s) + ']')) {
                const el = icon.closest('button, a, [role=button]');
                if (!el) continue;
                const r = el.getBoundingClientRect();
                if (r.width > 0 && r.height > 0) { el.click(); return true; }
            }
            return false; })()""" % json.dumps(aria_label)))

    def resize(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        self.send("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})

    def press(self, key: str, code: str, keycode: int, modifiers: int = 0) -> None:
        """A key press; ``modifiers``: 1 Alt, 2 Ctrl, 4 Meta, 8 Shift."""
        for kind in ("keyDown", "keyUp"):
            self.send("Input.dispatchKeyEvent", {"type": kind, "modifiers": modifiers, "key": key,
                                                 "code": code, "windowsVirtualKeyCode": keycode})

    def links(self) -> list[str]:
        return self.eval("Array.from(document.querySelectorAll('a[href]')).map(a => a.href)") or []

    def screenshot(self, path: Path, clip: tuple[int, int, int, int] | None = None) -> Path:
        """A PNG of the viewport, or of ``clip`` = (x, y, width, height) in CSS pixels."""
        params = {"format": "png", "fromSurface": True}
        if clip:
            x, y, w, h = clip
            params["clip"] = {"x": x, "y": y, "width": w, "height": h, "scale": 1}
        data = self.send("Page.captureScreenshot", params)["data"]
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path
