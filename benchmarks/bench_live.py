"""Throughput of a background Job while a page renders, as ratios to the job alone, in one run.

The app samples in a worker thread of the Streamlit process while other threads render pages.
Those threads hold the GIL, and the worker needs it between torch operations. This measures
samples/s of a Job (shipped MNIST model, CPU) in four settings, interleaved round by round:

  alone            the job by itself;
  render 5 ms      with a thread that mimics the Certify page's live view twice a second
                   (Plotly figure built and validated as st.plotly_chart does, plus the full
                   gc.collect(2) Streamlit runs after each script run by default),
                   Python's default 5 ms GIL switch interval;
  render 1 ms      the same with a 1 ms switch interval (what widgets/__init__.py sets);
  render 1 ms, no gc  and without the post-run gc.collect (.streamlit/config.toml: postScriptGC = false).

Prints a Markdown table of median ratios to "alone" with their range over rounds.

    python benchmarks/bench_live.py
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import threading
import time

import numpy as np
import plotly.graph_objects as go
import torch

from rs_core import CertifyStream
from rs_core.models.checkpoints import CHECKPOINTS_DIR, load_checkpoint
from rs_core.smoothing.jobs import Scheduler


def _render_loop(stop: threading.Event, with_gc: bool) -> None:
    counts = np.arange(10) * 100
    while not stop.is_set():
        fig = {"data": [{"type": "bar", "x": [str(i) for i in range(10)], "y": counts.tolist()}],
               "layout": {"title": {"text": "votes"}, "template": "plotly_white"}}
        go.Figure(fig).to_dict()  # what st.plotly_chart's validation does
        if with_gc:
            gc.collect(2)
        stop.wait(0.5)


def _rate(model, x, n: int, batch: int, seed: int) -> float:
    stream = CertifyStream(model, x, 0.5, n0=100, n_max=n, batch_size=batch, seed=seed)
    t = time.perf_counter()
    Scheduler().submit(stream).wait()
    return n / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--num", type=int, default=30_000)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    loaded = load_checkpoint(CHECKPOINTS_DIR / "mnist/mnist_cnn/noise_0.50/checkpoint.pth.tar")
    x = torch.rand(loaded.input_shape, generator=torch.Generator().manual_seed(0))
    settings = {"render 5 ms": (0.005, True), "render 1 ms": (0.001, True), "render 1 ms, no gc": (0.001, False)}
    ratios: dict[str, list[float]] = {k: [] for k in settings}
    alone_rates = []
    _rate(loaded.model, x, 2000, args.batch, 0)  # warm-up
    for r in range(args.rounds):
        sys.setswitchinterval(0.005)
        alone = _rate(loaded.model, x, args.num, args.batch, r)
        alone_rates.append(alone)
        for name, (interval, with_gc) in settings.items():
            sys.setswitchinterval(interval)
            stop = threading.Event()
            th = threading.Thread(target=_render_loop, args=(stop, with_gc))
            th.start()
            try:
                ratios[name].append(_rate(loaded.model, x, args.num, args.batch, r) / alone)
            finally:
                stop.set()
                th.join()
    print(f"Job, mnist_cnn, CPU ({torch.get_num_threads()} threads), n = {args.num:,}, batch {args.batch}, "
          f"{args.rounds} rounds; alone: {statistics.median(alone_rates):,.0f} samples/s (median)\n")
    print("| setting | samples/s vs alone (median, range) |\n|---|---|")
    for name, vals in ratios.items():
        print(f"| {name} | {statistics.median(vals):.2f}x ({min(vals):.2f}–{max(vals):.2f}) |")


if __name__ == "__main__":
    main()
