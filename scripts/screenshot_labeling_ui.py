"""Take a screenshot of the Label Studio labeling UI for one real task -> docs/labeling-ui.png.

Starts a local Label Studio (from the migrated template, see onereward.testing.local_label_studio),
exports a small synthetic candidates artifact to it with ``run_export``, starts headless
Chromium (Debian's ``chromium`` package: ``apt-get install -y chromium``), logs in through the
Django login form and opens one task of the four-dimension project, all driven over the Chrome
DevTools protocol (``websocket-client``). Stops only the processes it started.

Usage: .venv/bin/python scripts/screenshot_labeling_ui.py [--out docs/labeling-ui.png] [--chromium PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import websocket

from onereward.annotate.export import run_export
from onereward.synth.candidates import make_candidates
from onereward.synth.stage import make_pool
from onereward.testing.local_label_studio import default_venv, free_port, server_from_template

REPO = Path(__file__).resolve().parents[1]


class DevTools:
    """Minimal Chrome DevTools protocol client over one page's websocket."""

    def __init__(self, ws_url: str) -> None:
        self.ws = websocket.create_connection(ws_url, timeout=60)
        self.next_id = 0

    def send(self, method: str, **params) -> dict:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self.next_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def evaluate(self, expression: str):
        res = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        return res.get("result", {}).get("value")

    def wait_for(self, expression: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.evaluate(expression):
                    return
            except RuntimeError:
                pass
            time.sleep(0.5)
        raise TimeoutError(f"page never satisfied: {expression}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default=str(REPO / "docs" / "labeling-ui.png"), help="PNG to write")
    parser.add_argument(
        "--chromium", default=shutil.which("chromium") or "/usr/bin/chromium", help="browser binary"
    )
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--height", type=int, default=1500)
    args = parser.parse_args(argv)
    if not Path(args.chromium).is_file():
        print(
            f"--chromium: {args.chromium} not found; install it with: apt-get install -y chromium",
            file=sys.stderr,
        )
        return 2

    work = Path(tempfile.mkdtemp(prefix="onereward-screenshot-"))
    server = server_from_template(default_venv() / "onereward-template", work / "ls")
    browser = None
    try:
        server.start()
        os.environ["LABEL_STUDIO_API_KEY"] = server.token
        make_pool(work / "pool", 6, seed=11, image_size=128)
        make_candidates(work / "pool", work / "candidates", per_item=4, seed=11)
        run_export(
            str(work / "candidates"),
            str(work / "project"),
            label_studio_url=server.url,
            document_root=str(server.document_root),
            project_title="onereward demo",
        )
        project = json.loads((work / "project" / "project.json").read_text())
        tasks = json.loads((work / "project" / "tasks.json").read_text())
        task = next(t for t in tasks if t["data"]["dimension_set"] == "prompted")
        pid = project["projects"]["prompted"]["project_id"]

        port = free_port()
        browser = subprocess.Popen(
            [args.chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
             f"--user-data-dir={work / 'chromium'}", f"--remote-debugging-port={port}",
             f"--window-size={args.width},{args.height}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        pages = []
        for _ in range(60):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=2) as r:
                    pages = [p for p in json.loads(r.read()) if p.get("type") == "page"]
                if pages:
                    break
            except OSError:
                pass
            time.sleep(0.5)
        cdp = DevTools(pages[0]["webSocketDebuggerUrl"])
        cdp.send("Page.enable")
        cdp.send(
            "Emulation.setDeviceMetricsOverride",
            width=args.width,
            height=args.height,
            deviceScaleFactor=1,
            mobile=False,
        )
        cdp.send("Page.navigate", url=f"{server.url}/user/login/")
        cdp.wait_for("!!document.querySelector('input[name=email]')")
        cdp.evaluate(
            "(() => { const f = document.querySelector('form');"
            f" f.querySelector('input[name=email]').value = {json.dumps('admin@onereward.local')};"
            f" f.querySelector('input[name=password]').value = {json.dumps(server.password)};"
            " f.submit(); return true; })()"
        )
        cdp.wait_for("!location.pathname.startsWith('/user/login')")
        cdp.send("Page.navigate", url=f"{server.url}/projects/{pid}/data?task={task['id']}")
        # Wait until the candidates are rendered (all five images loaded) and the radios are there.
        cdp.wait_for(
            "document.querySelectorAll('img').length >= 5 && "
            "[...document.querySelectorAll('img')].filter(i => i.src.includes('local-files')).every(i => i.complete "
            "&& i.naturalWidth > 0) && document.querySelectorAll('input[type=radio]').length > 0",
            timeout=90,
        )
        time.sleep(2)
        shot = cdp.send("Page.captureScreenshot", format="png")
        import base64

        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(base64.b64decode(shot["data"]))
        print(f"wrote {out} (task {task['id']} of project {pid})")
        return 0
    finally:
        if browser is not None:
            browser.terminate()
            browser.wait(timeout=20)
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
