"""Stop latency on a big model in the browser: seconds from a click on Stop until the certificate is shown.

Starts the app in its own process (``streamlit run app.py``, as tests/test_browser.py's ``_server()`` does) with
``RS_MODELS_DIR`` set to a temp folder holding a random-weights ResNet-50 (``r50.safetensors``, torchvision's
``resnet50()`` state dict, with a sidecar ``r50.safetensors.json`` = {"label": "ResNet-50 random",
"arch": "torchvision:resnet50"}: 224×224, shorter side to 232 as torchvision's reference weights, ImageNet
mean/std). In headless Chromium (/usr/bin/chromium, Playwright): opens Certify, chooses "ResNet-50 random (server)"
in the sidebar's Model menu, uploads a 320×240 JPEG, sets n max, then ``--repeats`` times (in one session):

  Start → selection   from the click on Start until the progress text "selection samples (choosing the
                      class c_A)" is visible;
  (waits until the progress text says "estimation samples", then ``--settle`` seconds more)
  Stop → ended        from the click on Stop until "Ended: stopped" is visible (the certificate is shown);

and reads the batch size the run used (and its samples/s) from the downloaded certificate JSON. Prints Markdown:
median and range of each latency, and whether the goal (Stop → certificate shown ≤ 2 s) was met.

    RS_DATA_DIR=/work/shared/data .venv/bin/python benchmarks/bench_stop_latency.py [--repeats 3] [--n-max 100000]
        [--settle 2] [--estimation-timeout 90] [--shots DIR]

Slow on a CPU: a ResNet-50 forward pass of a few 224×224 images takes about 0.5 s, so n0 = 100 selection samples
take tens of seconds. Needs Chromium and Playwright (never ``playwright install``: the system Chromium is used).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
LABEL = "ResNet-50 random"
GOAL_S = 2.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _model_folder(folder: Path) -> None:
    """A random-weights ResNet-50 and its sidecar, as an administrator would put them in RS_MODELS_DIR."""
    import safetensors.torch
    import torch
    import torchvision

    torch.manual_seed(0)
    safetensors.torch.save_file(torchvision.models.resnet50().state_dict(), str(folder / "r50.safetensors"))
    (folder / "r50.safetensors.json").write_text(json.dumps({"label": LABEL, "arch": "torchvision:resnet50"}))


def _photo(path: Path) -> Path:
    """A 320×240 colour JPEG with some structure (gradients and shapes)."""
    from PIL import Image, ImageDraw

    w, h = 320, 240
    img = Image.new("RGB", (w, h))
    img.putdata([(int(255 * x / w), int(255 * y / h), int(255 * (1 - (x + y) / (w + h)))) for y in range(h)
                 for x in range(w)])
    draw = ImageDraw.Draw(img)
    draw.ellipse((150, 60, 250, 160), fill=(230, 200, 40))
    draw.rectangle((30, 150, 130, 190), fill=(20, 40, 160))
    draw.polygon([(60, 30), (110, 120), (10, 120)], fill=(200, 30, 30))
    img.save(path, quality=90)
    return path


class Server:
    """``streamlit run app.py`` on a free port with RS_MODELS_DIR set; its output goes to a log file."""

    def __init__(self, models_dir: Path, log: Path) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        env = {**os.environ, "RS_MODELS_DIR": str(models_dir)}
        self._out = open(log, "wb")  # noqa: SIM115 — closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.port", str(self.port),
             "--server.address", "127.0.0.1", "--server.headless", "true"],
            cwd=ROOT, env=env, stdout=self._out, stderr=subprocess.STDOUT)
        deadline = time.time() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                if self.proc.poll() is not None or time.time() > deadline:
                    self.stop()
                    raise RuntimeError(f"streamlit did not start: {self.tail()}") from None
                time.sleep(0.3)

    def tail(self, n: int = 2000) -> str:
        return self.log.read_text(errors="replace")[-n:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._out.close()


def _visible(page, text: str, timeout_s: float) -> None:
    page.get_by_text(text, exact=False).first.wait_for(timeout=timeout_s * 1000)


def _one_run(page, args) -> dict[str, float]:
    """Start, wait for estimation, Stop; the latencies and what the certificate says."""
    progress = page.locator("[data-testid='stProgress']")
    t0 = time.perf_counter()
    page.get_by_role("button", name="Start", exact=True).click()
    progress.filter(has_text="selection samples (choosing the class c_A)").first.wait_for(timeout=60_000)
    to_selection = time.perf_counter() - t0
    progress.filter(has_text="estimation samples").first.wait_for(timeout=args.estimation_timeout * 1000)
    to_estimation = time.perf_counter() - t0
    page.wait_for_timeout(args.settle * 1000)
    if page.get_by_text("Ended: stopped").count():
        raise RuntimeError("the previous run's result is still on screen")
    t0 = time.perf_counter()
    page.get_by_role("button", name="Stop", exact=True).click()
    _visible(page, "Ended: stopped", 60)
    to_ended = time.perf_counter() - t0
    with page.expect_download() as info:
        page.get_by_role("button", name="Download the certificate (JSON)").click()
    cert = json.loads(Path(info.value.path()).read_text())["certificate"]
    return {"start_to_selection_s": to_selection, "start_to_estimation_s": to_estimation, "stop_to_ended_s": to_ended, "batch_size": cert.get("batch_size"),
            "n": cert["n"], "drawn": cert["n"] + sum(cert.get("counts_selection") or []),
            "elapsed_s": cert.get("elapsed_s"), "stop_reason": cert.get("stop_reason")}


def _summary(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} s ({min(values):.2f}–{max(values):.2f})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--n-max", type=int, default=100_000)
    ap.add_argument("--settle", type=float, default=2.0, help="seconds of estimation before Stop")
    ap.add_argument("--estimation-timeout", type=float, default=90.0,
                    help="seconds to wait for estimation votes after selection shows")
    ap.add_argument("--shots", type=Path, default=None, help="folder for a screenshot of the last stopped run")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        sys.exit(f"no Chromium at {CHROMIUM}")
    runs = []
    with tempfile.TemporaryDirectory(prefix="rslab-bench-stop-") as tmp:
        tmp = Path(tmp)
        (tmp / "models").mkdir()
        _model_folder(tmp / "models")
        photo = _photo(tmp / "photo.jpg")
        server = Server(tmp / "models", tmp / "server.log")
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                page = browser.new_page(viewport={"width": 1280, "height": 1300})
                try:
                    page.goto(f"{server.url}/Certify")
                    _visible(page, "Certify an input", 60)
                    sidebar = page.locator("[data-testid='stSidebar']")
                    sidebar.get_by_role("combobox", name="Model", exact=True).click()
                    page.get_by_role("option", name=f"{LABEL} (server)", exact=True).click()
                    t0 = time.perf_counter()
                    sidebar.locator("[data-testid='stCaptionContainer']").filter(
                        has_text="torchvision:resnet50").first.wait_for(timeout=180_000)
                    load_s = time.perf_counter() - t0
                    page.locator("[data-testid='stMain'] [data-testid='stFileUploader'] input[type='file']").first \
                        .set_input_files(str(photo))
                    _visible(page, "What the model sees — upload photo.jpg", 60)
                    box = page.get_by_label("n max (estimation)", exact=True)
                    box.fill(str(args.n_max))
                    box.press("Enter")
                    page.wait_for_timeout(1000)
                    for i in range(args.repeats):
                        runs.append(_one_run(page, args))
                        r = runs[-1]
                        print(f"run {i + 1}: Start → selection {r['start_to_selection_s']:.2f} s, → estimation "
                              f"{r['start_to_estimation_s']:.1f} s, Stop → ended "
                              f"{r['stop_to_ended_s']:.2f} s, batch {r['batch_size']}, n = {r['n']:,} "
                              f"({r['stop_reason']})", file=sys.stderr)
                    if args.shots is not None:
                        args.shots.mkdir(parents=True, exist_ok=True)
                        page.set_viewport_size({"width": 1280, "height": 2300})
                        page.wait_for_timeout(1500)
                        page.screenshot(path=str(args.shots / "stop_latency.png"), full_page=True)
                except Exception:
                    shot = Path(tempfile.gettempdir()) / "bench_stop_latency_failed.png"
                    page.screenshot(path=str(shot), full_page=True)
                    texts = page.locator("[data-testid='stProgress']").all_inner_texts()
                    print(f"failed; progress text: {texts}; screenshot: {shot}\nserver log (tail):\n{server.tail()}",
                          file=sys.stderr)
                    raise
                finally:
                    browser.close()
        finally:
            server.stop()
    import torch

    stops = [r["stop_to_ended_s"] for r in runs]
    starts = [r["start_to_selection_s"] for r in runs]
    batches = sorted({r["batch_size"] for r in runs})
    rates = [r["drawn"] / r["elapsed_s"] for r in runs if r.get("elapsed_s")]
    print(f"Stop latency in Chromium: ResNet-50 (random weights, server folder), 224×224, CPU "
          f"({torch.get_num_threads()} threads, {os.cpu_count()} CPUs), n max {args.n_max:,}, Stop after "
          f"{args.settle:g} s of estimation, {len(runs)} runs; model load {load_s:.1f} s")
    print()
    print("| measure | median (range) |")
    print("|---|---|")
    print(f"| Stop → \"Ended: stopped\" shown | {_summary(stops)} |")
    print(f"| Start → first selection progress shown | {_summary(starts)} |")
    print(f"| batch size used (certificate.batch_size) | {', '.join(str(b) for b in batches)} |")
    if rates:
        print(f"| samples/s (certificate: n0 + n drawn / elapsed_s) | {statistics.median(rates):,.1f} |")
    print()
    verdict = "met" if statistics.median(stops) <= GOAL_S else "NOT met"
    print(f"Goal Stop → certificate shown ≤ {GOAL_S:g} s: {verdict} (median {statistics.median(stops):.2f} s, "
          f"worst {max(stops):.2f} s).")


if __name__ == "__main__":
    main()
