"""Screenshot the MLflow UI (runs list, run comparison, model registry) with headless Chromium.

Starts ``mlflow ui`` on a free 127.0.0.1 port, drives Debian's ``chromium`` over the DevTools protocol
(``--remote-debugging-pipe``, stdlib only), writes PNGs and prints their paths. From the repo root:
``.venv/bin/python tools/ui_screenshots.py --experiment galaxyprop-mock --model galaxyprop-z``."""
import argparse
import base64
import contextlib
import fcntl
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--hide-scrollbars",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--remote-debugging-pipe"]
SLEEP = "const sleep = ms => new Promise(r => setTimeout(r, ms));"
# Scroll the runs grid to the first parent row named PREFIX* that has an expander; expand up to N of them.
EXPAND_JS = SLEEP + """(async (pre, n) => { const vp = document.querySelector('.ag-body-viewport'), done = new Set();
  const top = e => e.getBoundingClientRect().top, link = b => b.closest('.ag-row')?.querySelector('a[href*="/runs/"]');
  const find = () => [...document.querySelectorAll('button[data-component-id$="runnamecellrenderer.tsx_46"]')].filter(
    b => link(b)?.textContent.startsWith(pre) && !done.has(link(b).href)).sort((a, b) => top(a) - top(b));
  let hits = find(); while (vp && !hits.length && vp.scrollTop + vp.clientHeight < vp.scrollHeight) {
    vp.scrollTop += vp.clientHeight / 2; await sleep(400); hits = find(); } if (!vp || !hits.length) return 0;
  vp.scrollTop += top(hits[0]) - top(vp) - 60; await sleep(600);
  for (let i = 0; i < n; i++) { const b = find().find(b => b.getBoundingClientRect().bottom < innerHeight);
    if (!b) break; done.add(link(b).href); b.click(); await sleep(700); } return done.size; })"""
# Switch a registered-model page to the compact (legacy) versions table: one row per version.
COMPACT_JS = SLEEP + """(async () => { document.querySelector('button[role=switch][aria-checked=true]')?.click();
  await sleep(800); [...document.querySelectorAll('[role=dialog] button')]
    .find(b => b.textContent.trim() === 'Disable')?.click(); await sleep(1000); })()"""
CLOSE_ASSISTANT = "document.querySelector('button[data-component-id=\"mlflow.assistant.chat_panel.close\"]')?.click()"


class Chrome:
    """Headless Chromium controlled over the DevTools protocol on fds 3/4 (--remote-debugging-pipe)."""

    def __init__(self, exe: str, width: int, height: int) -> None:
        self.profile, self._ids, self._buf = tempfile.mkdtemp(prefix="uishots-"), itertools.count(1), b""
        self.size = {"width": width, "height": height}
        (r3, self._w), (self._r, w4) = os.pipe(), os.pipe()
        hi = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (r3, w4)]  # out of the way of fds 3/4
        self.proc = subprocess.Popen(  # chromium reads CDP commands from fd 3 and writes replies to fd 4
            [exe, *FLAGS, f"--user-data-dir={self.profile}", f"--window-size={width},{height}"], pass_fds=(3, 4),
            preexec_fn=lambda: (os.dup2(hi[0], 3), os.dup2(hi[1], 4)), start_new_session=True,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        list(map(os.close, (r3, w4, *hi)))

    def send(self, method: str, session: str | None = None, **params: object) -> dict:
        """Send one CDP command and return its result (events in between are skipped)."""
        msg = {"id": (i := next(self._ids)), "method": method, "params": params}
        os.write(self._w, json.dumps(msg | ({"sessionId": session} if session else {})).encode() + b"\0")
        while True:
            while b"\0" not in self._buf:
                self._buf += os.read(self._r, 1 << 20) or sys.exit("error: chromium exited unexpectedly")
            raw, self._buf = self._buf.split(b"\0", 1)
            if (reply := json.loads(raw)).get("id") == i:
                return reply["result"] if "result" in reply else sys.exit(f"error: CDP {method}: {reply.get('error')}")

    def shot(self, url: str, out: Path, ready_js: str, prep_js: str | None = None, timeout: float = 60) -> None:
        """Open URL in a new tab, wait until READY_JS is truthy, run PREP_JS, save a PNG, reset storage."""
        target = self.send("Target.createTarget", url="about:blank")["targetId"]
        sid = self.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        js = lambda expr: self.send(  # noqa: E731
            "Runtime.evaluate", sid, expression=expr, returnByValue=True, awaitPromise=True)["result"].get("value")
        self.send("Emulation.setDeviceMetricsOverride", sid, **self.size, deviceScaleFactor=1, mobile=False)
        self.send("Page.navigate", sid, url=url)
        end = time.monotonic() + timeout
        while not (ready := js(f"!!({ready_js})")) and time.monotonic() < end:
            time.sleep(0.3)
        if not ready:
            print(f"warning: {out.name}: page not ready after {timeout:.0f}s", file=sys.stderr)
        js(f"{CLOSE_ASSISTANT}; {prep_js or 0}")
        time.sleep(1.5)  # let plots and layout settle
        out.write_bytes(base64.b64decode(self.send("Page.captureScreenshot", sid, format="png")["data"]))
        js("localStorage.clear()")  # UI toggles persist in localStorage; start each page from defaults
        self.send("Target.closeTarget", targetId=target)


def stop(proc: subprocess.Popen) -> None:
    """Terminate a child by its PID (waiting up to 10 s), then SIGKILL the process group it leads."""
    proc.terminate()
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(10)
    with contextlib.suppress(ProcessLookupError):  # then whatever is left of its process group
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def start_ui(tracking_uri: str, artifact_root: str) -> tuple[subprocess.Popen, str]:
    """Start ``mlflow ui`` on a free port and return (process, base URL) once /health answers."""
    with socket.create_server(("127.0.0.1", 0)) as s:
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", tracking_uri, "--default-artifact-root",
           artifact_root, "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    env = os.environ | {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # no huey job workers for a read-only UI
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, env=env)
    base, end = f"http://127.0.0.1:{port}", time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < end:
        with contextlib.suppress(OSError), urllib.request.urlopen(f"{base}/health", timeout=2):
            return proc, base
        time.sleep(0.5)
    stop(proc)
    sys.exit(f"error: mlflow ui did not answer on {base}/health")


def main() -> None:
    """Parse arguments, start the UI, take the screenshots and print the PNG paths."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tracking-uri", default="sqlite:///mlruns/mlflow.db", help="also used as registry URI")
    ap.add_argument("--artifact-root", default="mlruns/artifacts", help="--default-artifact-root for mlflow ui")
    ap.add_argument("--experiment", required=True, help="experiment name")
    ap.add_argument("--model", action="append", default=[], help="registered model name (repeatable)")
    ap.add_argument("--out", type=Path, default=Path("reports/plots/ui"), help="output folder")
    ap.add_argument("--max-compare", type=int, default=8, help="compare at most this many train: stage runs")
    ap.add_argument("--target", action="append", default=[],
                    help="also the runs of this target's results sorted by val_crps, and its three best compared")
    a = ap.parse_args()
    exe = shutil.which("/usr/lib/chromium/chromium") or shutil.which("chromium")  # real binary: no launcher noise
    if exe is None:
        sys.exit("error: chromium not found; install it with `apt-get install chromium`")
    from mlflow import MlflowClient
    client = MlflowClient(a.tracking_uri, registry_uri=a.tracking_uri)
    if (exp := client.get_experiment_by_name(a.experiment)) is None:
        sys.exit(f"error: experiment {a.experiment!r} not found in {a.tracking_uri}")
    eid, newest, q = exp.experiment_id, {}, urllib.parse.quote
    for run in client.search_runs([eid], "tags.mlflow.parentRunId IS NULL and attributes.run_name LIKE 'train:%'",
                                  max_results=5000, order_by=["attributes.start_time DESC"]):
        newest.setdefault(run.info.run_name, run.info.run_id)  # newest top-level run of each train stage
    jobs = [(f"#/experiments/{eid}/runs", "runs", "document.querySelector('.ag-row a')", f"{EXPAND_JS}('train:', 3)")]
    if ids := list(newest.values())[: a.max_compare]:
        jobs.append((f"#/compare-runs?runs={q(json.dumps(ids))}&experiments={q(json.dumps([eid]))}", "compare_train",
                     "document.querySelector('.js-plotly-plot')", None))
    for target in a.target:  # the results of one target ranked as the registry ranks them, the best three compared
        where = f"tags.stage = 'train' and tags.target = '{target}'"
        jobs.append((f"#/experiments/{eid}/runs?searchFilter={q(where)}&orderByKey={q('metrics.`val_crps`')}"
                     "&orderByAsc=true", f"runs_{target}_by_val_crps", "document.querySelector('.ag-row a')", None))
        best = client.search_runs([eid], f"{where} and metrics.val_crps > 0", order_by=["metrics.val_crps ASC"],
                                  max_results=3)
        if best:
            ids = [r.info.run_id for r in best]
            jobs.append((f"#/compare-runs?runs={q(json.dumps(ids))}&experiments={q(json.dumps([eid]))}",
                         f"compare_best_{target}", "document.querySelector('.js-plotly-plot')", None))
    for model in a.model:  # version page: the newest version carrying an alias, else the newest version
        m, aliased = q(model, safe=""), client.get_registered_model(model).aliases.values()
        v = max(map(int, aliased or [x.version for x in client.search_model_versions(f"name='{model}'")]), default=0)
        jobs += [(f"#/models/{m}/versions/{v}", f"model_{model}_v{v}",
                  "document.body.innerText.includes('Registered At')", None)] if v else []
        jobs.append((f"#/models/{m}", f"model_{model}", "document.querySelector('a[href*=\"/versions/\"]')",
                     COMPACT_JS))
    a.out.mkdir(parents=True, exist_ok=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("error: terminated"))  # so the finally below cleans up
    chrome, ui = Chrome(exe, 1600, 1000), None
    try:
        ui, base = start_ui(a.tracking_uri, a.artifact_root)
        for route, name, ready, prep in jobs:
            chrome.shot(f"{base}/{route}", png := a.out / f"mlflow_{name}.png", ready, prep)
            print(png)
    finally:
        stop(chrome.proc), shutil.rmtree(chrome.profile, ignore_errors=True)
        if ui is not None:
            stop(ui)


if __name__ == "__main__":
    main()
