"""A class of twenty on one server: time to each certificate, equality with its solo run, aggregate throughput and
fair shares, with the app's scheduler (fair turns by time, time-sized batches re-timed as the run goes).

Each "session" is one CERTIFY job as the Certify page submits it: the shipped MNIST model, σ = 0.5, its own input
(an MNIST test image when $RS_DATA_DIR has MNIST, else a random 28×28 image) and seed, n0 = 100, ``--num``
estimation samples, ``batch_seconds = 0.5`` within ``--batch``. Measured:

  solo      each session alone, one after the other: its certificate and its samples/s;
  together  all sessions submitted at once to one Scheduler (the app's cap of running jobs, the rest queued FIFO):
            each session's time from submission to certificate, whether its certificate equals its solo one
            (counts, bound, radius, class), its samples/s while it ran against its fair share (the solo rate
            divided by the number of jobs running alongside it), and the aggregate samples/s against one alone.

With ``--browsers k`` (default 3), while the sessions run together, k headless Chromium sessions use the app on a
running server (``streamlit run app.py``, its own process and scheduler, the same CPU): each opens the Certify page
(the page load's time under load is measured), uploads a drawn "1", sets n max = ``--num`` and its own seed, and
presses Start; measured: each one's time from Start to its certificate, and whether the certificate the page shows
(radius, pA bound, counts) equals the library's solo run of the same input and seed.

Prints Markdown. The goals (issue 26): aggregate ≥ 0.8× one session alone; every certificate equal to its solo
run; no session below half its fair share.

    RS_DATA_DIR=../shared/data python benchmarks/bench_load.py [--sessions 20] [--num 20000] [--batch 1000]
        [--max-running 4] [--browsers 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

from rs_core import CertifyStream
from rs_core.data import data_dir, get_dataset
from rs_core.models.checkpoints import CHECKPOINTS_DIR, load_checkpoint
from rs_core.smoothing.jobs import Scheduler


def _inputs(k: int) -> list[torch.Tensor]:
    if (data_dir() / "mnist" / "MNIST" / "raw").exists():
        data = get_dataset("mnist", "test")
        return [data[i * 97][0] for i in range(k)]
    g = torch.Generator().manual_seed(0)
    return [torch.rand(1, 28, 28, generator=g) for _ in range(k)]


def _key(cert) -> tuple:
    return cert.prediction, cert.radius, cert.p_lower, cert.counts.tolist(), cert.counts_selection.tolist()


def _digit_png(path: Path) -> Path:
    from PIL import Image

    img = Image.new("L", (160, 160), 255)
    img.paste(0, (72, 20, 90, 140))  # a dark "1" on white paper
    img.save(path)
    return path


def _browsers(k: int, num: int, loaded: threading.Event) -> list[tuple]:
    """k Chromium sessions on a fresh server: (page load s, a later visitor's page load under load s, Start →
    certificate s, the shown table, png, seed)."""
    from bench_stop_latency import CHROMIUM, CHROMIUM_ARGS, Server
    from playwright.sync_api import sync_playwright

    work = Path(tempfile.mkdtemp(prefix="rs-load-"))
    png = _digit_png(work / "one.png")
    server = Server(work, work / "server.log")
    rows = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            pages, starts = [], []
            for i in range(k):
                page = browser.new_context(viewport={"width": 1280, "height": 1300}).new_page()
                t = time.perf_counter()
                page.goto(f"{server.url}/Certify")
                page.get_by_text("Certify an input").first.wait_for(timeout=120_000)
                load_s = time.perf_counter() - t
                page.locator("[data-testid='stFileUploader'] input[type='file']").first.set_input_files(str(png))
                page.get_by_text("What the model sees").first.wait_for(timeout=60_000)
                for label, value in (("n max (estimation)", str(num)), ("Seed", str(20 + i))):
                    box = page.get_by_label(label, exact=True)
                    box.fill(value)
                    box.press("Enter")
                    page.wait_for_timeout(400)
                pages.append((page, load_s, 20 + i))
            loaded.set()  # the load starts; then each page's Start, one after the other
            for page, _, _ in pages:
                page.get_by_role("button", name="Start", exact=True).click()
                starts.append(time.perf_counter())
            # One more visitor while everything samples: the page load's time under load.
            late = browser.new_context(viewport={"width": 1280, "height": 1300}).new_page()
            t = time.perf_counter()
            late.goto(f"{server.url}/Certify")
            late.get_by_text("Certify an input").first.wait_for(timeout=120_000)
            under_load_s = time.perf_counter() - t
            for (page, load_s, seed), t in zip(pages, starts, strict=True):
                page.get_by_text("is certified within").first.wait_for(timeout=600_000)
                cert_s = time.perf_counter() - t
                table = page.locator("[data-testid='stTable']").first.inner_text(timeout=300_000)
                cells = [c for c in (x.strip() for x in table.split("\n")) if c]
                shown = {key: cells[cells.index(key) + 1] for key in ("radius", "pA lower bound", "counts (n)")}
                rows.append((load_s, under_load_s, cert_s, shown, png, seed))
            browser.close()
    finally:
        loaded.set()
        server.stop()
    return rows


def _same_as_solo(loaded, shown: dict[str, str], png: Path, seed: int, num: int) -> str:
    from rs_core.data import load_image, prepare_input
    from rs_core.logs.document import class_label
    from rs_core.rounding import floor_str

    x = prepare_input(load_image(png.read_bytes()), loaded.input_shape, invert=None, frame_digit=True,
                      preprocess=loaded.preprocessing)
    solo = CertifyStream(loaded.model, x, 0.5, n0=100, n_max=num, batch_size=1000, seed=seed).run()
    want = {"radius": floor_str(solo.radius), "pA lower bound": floor_str(solo.p_lower, 5),
            "counts (n)": ", ".join(f"{class_label(loaded.class_names, i)}: {int(v)}"  # the page's votes text
                                    for i, v in enumerate(solo.counts) if v)}
    return "yes" if shown == want else f"**no**: {shown} vs {want}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sessions", type=int, default=20)
    ap.add_argument("--num", type=int, default=20_000, help="estimation samples per session")
    ap.add_argument("--batch", type=int, default=1000, help="the largest batch (the sidebar's batch size)")
    ap.add_argument("--max-running", type=int, default=4, help="the scheduler's cap (the app's default is 4)")
    ap.add_argument("--browsers", type=int, default=3, help="Chromium sessions on a running server meanwhile (0: none)")
    args = ap.parse_args()
    model = load_checkpoint(CHECKPOINTS_DIR / "mnist/mnist_cnn/noise_0.50/checkpoint.pth.tar", "cpu").model
    xs = _inputs(args.sessions)

    def stream(i: int) -> CertifyStream:
        return CertifyStream(model, xs[i], 0.5, n0=100, n_max=args.num, batch_size=args.batch, seed=1000 + i,
                             batch_seconds=0.5)

    CertifyStream(model, xs[0], 0.5, n0=100, n_max=2000, batch_size=args.batch, seed=0).run()  # warm-up
    solo, solo_rate = [], []
    for i in range(args.sessions):
        t = time.perf_counter()
        solo.append(stream(i).run())
        solo_rate.append((args.num + 100) / (time.perf_counter() - t))
    alone = statistics.median(solo_rate)

    print(f"Load: {args.sessions} sessions, mnist_cnn on CPU ({torch.get_num_threads()} threads), n = {args.num:,} "
          f"each, batches sized to 0.5 s within {args.batch}, cap {args.max_running} running; one session alone: "
          f"{alone:,.0f} samples/s (median of {args.sessions}); all {args.sessions} alone, one after another: "
          f"{sum((args.num + 100) / r for r in solo_rate):.1f} s\n")
    print("| run | aggregate / one alone (goal ≥ 0.8) | certificates = solo | min / median share of a fair share "
          "(goal min ≥ 0.5) | time to certificate: first / median / last |")
    print("|---|---|---|---|---|")
    phases = [("the sessions alone on the machine", 0)] + (
        [(f"the same, with {args.browsers} Chromium sessions on a server meanwhile", args.browsers)]
        if args.browsers else [])
    browser_rows: list[tuple] = []
    for label, k in phases:
        row, rows = _together(args, stream, solo, alone, k)
        browser_rows += rows
        print(f"| {label} | {row} |")
    if browser_rows:
        loaded = load_checkpoint(CHECKPOINTS_DIR / "mnist/mnist_cnn/noise_0.50/checkpoint.pth.tar", "cpu")
        print(f"\nThe {len(browser_rows)} Chromium sessions (a running server, its own scheduler, the same CPU; "
              f"n max {args.num:,}):\n")
        print("| session | its page load (before the load) | Start → certificate | certificate shown = library solo "
              "run |")
        print("|---|---|---|---|")
        for k, (load_s, _, cert_s, shown, png, seed) in enumerate(browser_rows):
            same = _same_as_solo(loaded, shown, png, seed, args.num)
            print(f"| {k + 1} | {load_s:.1f} s | {cert_s:.1f} s | {same} |")
        print(f"\nOne more visitor's page load while all of them sample: {browser_rows[0][1]:.1f} s.")


def _together(args, stream, solo, alone: float, browsers_k: int) -> tuple[str, list[tuple]]:
    """All sessions submitted at once to one Scheduler (with k Chromium sessions meanwhile): one table row."""
    scheduler = Scheduler(max_running=args.max_running)
    browser_rows: list[tuple] = []
    browsers = None
    if browsers_k:
        start_load = threading.Event()
        browsers = threading.Thread(target=lambda: browser_rows.extend(_browsers(browsers_k, args.num, start_load)))
        browsers.start()
        start_load.wait(300)  # the browsers' pages are loaded and their Start pressed: now the load begins
    t0 = time.perf_counter()
    jobs = [scheduler.submit(scheduler.exclusive("cpu", lambda i=i: stream(i))) for i in range(args.sessions)]
    ends = []
    for job in jobs:
        assert job.wait() and job.error is None, job.error
        ends.append(time.perf_counter())
    wall = time.perf_counter() - t0
    if browsers is not None:
        browsers.join()
    equal = [_key(job.certificate) == _key(s) for job, s in zip(jobs, solo, strict=True)]
    # Each job's rate while it ran, against its fair share: the solo rate over the jobs running alongside it (on
    # the scheduler's clock: started_at is time.monotonic(); elapsed_s is the stream's own duration).
    runs = [(job.started_at, job.started_at + job.certificate.elapsed_s) for job in jobs]
    shares = []
    for (start, end) in runs:
        grid = np.linspace(start, end, 50)
        alongside = np.mean([sum(s <= t <= e for s, e in runs) for t in grid])
        rate = (args.num + 100) / max(end - start, 1e-9)
        shares.append(rate / (alone / alongside))
    aggregate = args.sessions * (args.num + 100) / wall
    times = [e - t0 for e in ends]
    row = (f"**{aggregate / alone:.2f}×** ({aggregate:,.0f} samples/s) | **{sum(equal)} of {len(equal)}** | "
           f"**{min(shares):.2f}** / {statistics.median(shares):.2f} | {min(times):.1f} / "
           f"{statistics.median(times):.1f} / {max(times):.1f} s")
    return row, browser_rows

if __name__ == "__main__":
    main()
