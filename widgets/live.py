"""The one live-run component of every page that samples: start a job, watch it, stop it, see why it ended.

A page builds its stream and calls :func:`start`; the job goes to the server-wide scheduler
(:func:`rs_core.smoothing.jobs.default_scheduler`), which owns the device locks, caps how many jobs sample at once
(``RS_LAB_MAX_JOBS``), and cancels the job a few seconds after this browser session ends (tab closed or
reloaded). :func:`show` draws a queued, running or finished run the same way on every page: its place in
the queue, a progress bar with an ETA, the votes, Stop, and errors.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import streamlit as st
import torch

from rs_core.logs.verify import tensor_sha256
from rs_core.rounding import floor_str
from rs_core.smoothing.jobs import Job, LiveSnapshot, LiveStream, default_scheduler

from . import errors, figures, report, state
from .inputs import Chosen

StageNames = Callable[[LiveSnapshot], list[str]]


@dataclass
class Run:
    """One sampling run of this session: the job, and what it was started with (for stale marks and reports)."""

    job: Job
    x: torch.Tensor  # [C, H, W] on the CPU
    source: str
    true_label: int | None
    file_sha256: str | None
    class_names: list[str]
    model: dict[str, Any]  # label, file, arch, sha256 (or the estimator and experts)
    params: dict[str, Any]  # σ, α, n0, n max, batch size, seed … as started
    extra: dict[str, Any] = field(default_factory=dict)
    input_sha256: str = ""
    options: dict[str, Any] | None = None  # the image options that made x (rs_core.data.prepare_input's), if any

    def __post_init__(self) -> None:
        if not self.input_sha256:
            self.input_sha256 = tensor_sha256(self.x)



def start(key: str, build: Callable[[], LiveStream], device: str, chosen: Chosen, *, class_names: list[str],
          model: dict[str, Any], params: dict[str, Any], predict: Callable[[], Any] | None = None,
          extra: dict[str, Any] | None = None) -> Run:
    """Stop this page's previous run, build the stream (holding the device's lock: constructors probe the model),
    submit it and keep the :class:`Run` under ``key`` in the session."""
    ss = st.session_state
    old: Run | None = ss.get(key)
    if old is not None:
        old.job.stop()
    scheduler = default_scheduler()
    stream = scheduler.exclusive(device, build)
    owner, alive = state.browser_session()
    job = scheduler.submit(stream, predict=predict, owner=owner, alive=alive)
    job.wait_for_votes(timeout=0.5)  # so the first frame after Start already shows votes
    run = Run(job=job, x=chosen.x.detach().cpu(), source=chosen.source, true_label=chosen.true_label,
              file_sha256=chosen.file_sha256, class_names=list(class_names), model=model, params=params,
              extra=extra or {}, options=chosen.options)
    # Count certifications per input and model in this session: reporting the best of several is multiple testing.
    counts = ss.setdefault("certified_inputs", {})
    k = (run.input_sha256, model.get("sha256"))
    counts[k] = counts.get(k, 0) + 1
    run.extra["repeat"] = counts[k]
    ss[key] = run
    return run


def repeat_count(run: Run) -> int:
    return int(run.extra.get("repeat", 1))


def _eta(snap: LiveSnapshot, n0: int) -> str:
    inner = snap.inner
    rate = inner.samples_per_s
    if rate <= 0:
        return "estimating time…"
    drawn0 = n0 if inner.phase == "estimation" or inner.counts_selection is None else int(inner.counts_selection.sum())
    left = (n0 - drawn0) + (inner.n_max - inner.n) + (snap.stages - snap.stage) * (n0 + inner.n_max)
    seconds = left / rate
    text = f"{seconds:,.0f} s" if seconds < 120 else f"{seconds / 60:,.1f} min"
    return f"at most {text} left" if snap.stages > 1 else f"{text} left"


def live_view(run: Run, key: str, stage_names: StageNames) -> None:
    """Progress, metrics and votes from the job's latest snapshot (read-only)."""
    snap = run.job.snapshot
    if snap is None:
        st.progress(0.0, text="drawing the n0 selection samples…")
        return
    inner = snap.inner
    names = stage_names(snap)
    stage = f"{snap.label} (stage {snap.stage} of {snap.stages}) · " if snap.stages > 1 else ""
    if inner.phase == "selection" or inner.n == 0:
        counts, title = inner.counts_selection, f"{stage}selection votes (n0 = {int(inner.counts_selection.sum()):,})"
    else:
        counts, title = inner.counts, f"{stage}votes after n = {inner.n:,} of {inner.n_max:,} estimation samples"
    n0 = run.job.stream.n0
    eta = "" if run.job.done else f" · {_eta(snap, n0)}"
    if inner.phase == "selection" and not run.job.done:
        drawn = int(inner.counts_selection.sum()) if inner.counts_selection is not None else 0
        st.progress(min(1.0, drawn / n0), text=f"{stage}{drawn:,} / {n0:,} selection samples (choosing the class c_A)"
                                               f"{eta}")
    else:
        st.progress(min(1.0, inner.n / inner.n_max),
                    text=f"{stage}{inner.n:,} / {inner.n_max:,} estimation samples{eta}")
    m = st.columns(4)
    choosing = inner.phase == "selection" and inner.top_class < 0 and not run.job.done
    m[0].metric("top class (n0 votes)", "choosing…" if choosing else report.class_label(names, inner.top_class),
                help="c_A: the class most voted by the n0 selection samples, drawn before and apart from the "
                     "estimation samples")
    m[1].metric("pA ≥ (anytime bound)", floor_str(inner.p_lower))
    m[2].metric("radius (anytime)", floor_str(inner.radius) if inner.p_lower > 0.5 else "— (abstain so far)")
    m[3].metric("samples/s", f"{inner.samples_per_s:,.0f}")
    st.plotly_chart(figures.vote_figure(counts, names, top_class=inner.top_class, title=title), width="stretch",
                    key=f"{key}_votes")


def _queued(run: Run) -> None:
    scheduler = default_scheduler()
    pos = run.job.position()
    st.info(f"Waiting for a free slot: number {pos} in the queue. {scheduler.running} run(s) are sampling on this "
            f"server now (at most {scheduler.max_running} at once); yours starts as soon as one ends.")


@st.fragment(run_every=0.5)
@errors.guarded("the live view")  # a fragment's rerun runs this alone, outside app.py's guard
def _poll(key: str, stage_names: StageNames) -> None:
    run: Run | None = st.session_state.get(key)
    if run is None:
        return
    if st.button("Stop", key=f"{key}_stop", type="primary", disabled=run.job.done):
        run.job.stop()
    if run.job.queued:
        _queued(run)
    else:
        live_view(run, key, stage_names)
    if run.job.done:
        st.rerun()  # the whole page: show the result, stop polling


def show(run: Run, key: str, stage_names: StageNames) -> bool:
    """Draw ``run``: polling while it is queued or sampling; once done, why it ended. True when it is done and
    has a certificate to show (the page then draws its result)."""
    job = run.job
    if not job.done:
        _poll(key, stage_names)
        return False
    if job.error is not None:
        st.error(f"Certification failed: {type(job.error).__name__}: {job.error}")
        return False
    if job.cancelled is not None:
        st.warning(f"This run was cancelled: {job.cancelled}. Its certificate below is valid for the samples "
                   "drawn before.")
    if job.started_at is None:
        st.info("Stopped while waiting in the queue: no sample was drawn.")
        return False
    return True


def empty_chart(names: list[str], key: str, title: str = "Votes per class appear here while sampling runs") -> None:
    """The chart's place before the first run (the browser loads Plotly now, so the first votes draw at once)."""
    st.plotly_chart(figures.vote_figure(np.zeros(len(names), dtype=np.int64), names, top_class=None, title=title),
                    width="stretch", key=f"{key}_empty")


PARAM_NAMES = {"sigma": "σ", "sigmas": "σ list", "alpha": "α", "n0": "n0", "n_max": "n max", "seed": "seed",
               "best": "best-σ mode", "alpha_split": "α split", "estimator": "σ-estimator", "noise": "noise",
               "norm": "norm"}


def stale_reasons(run: Run, chosen: Chosen | None, model_sha256: str | None, params_now: dict[str, Any], *,
                  preprocess_now: dict[str, Any] | None = None) -> list[str]:
    """What differs between a run and what the page shows now: the input, the model, or a setting.
    Empty when the result is for what is on screen. Compared by content, never by widget state: the tensor the model
    gets and the uploaded file's sha256 (a certificate names the file), the model's sha256, the parameters — so a
    choice that comes back unchanged after a page switch or a menu round trip leaves the result current."""
    reasons = []
    x = None if chosen is None else chosen.x
    if x is None or tuple(x.shape) != tuple(run.x.shape) or not torch.equal(x.detach().cpu(), run.x) \
            or chosen.file_sha256 != run.file_sha256:
        reasons.append("the input")
    if model_sha256 != run.model.get("sha256"):
        reasons.append("the model")
    elif preprocess_now is not None and preprocess_now != run.model.get("preprocess"):
        reasons.append("the model's preprocessing")  # same file, another normalization chosen in the sidebar
    for name, label in PARAM_NAMES.items():
        if name in run.params and params_now.get(name) != run.params[name]:
            then, now = run.params[name], params_now.get(name)
            if isinstance(then, bool) and isinstance(now, bool):  # a switch, in words: not "(True → False)"
                reasons.append(f"{label} (was {'on' if then else 'off'}, now {'on' if now else 'off'})")
            else:
                reasons.append(f"{label} ({_shown(then)} → {_shown(now)})")
    return reasons


def _shown(v: Any) -> str:
    """A setting as the page shows it: numbers as typed (0.5, not 0.5000), a σ list as {0.25, 0.5}."""
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return f"{v:g}"
    if isinstance(v, (tuple, list)):
        return "{" + ", ".join(_shown(x) for x in v) + "}"
    return "none" if v is None else str(v)


def start_button(key: str, blocked: str | None, on_start: Callable[[], None], *, explain: bool = True,
                 label: str = "Start") -> None:
    """The page's Start: disabled, with the reason beside it, while ``blocked`` says why it cannot run."""
    st.button(label, key=key, type="primary", disabled=blocked is not None,
              on_click=on_start if blocked is None else None)
    if blocked is not None and explain:
        st.caption(f"{label} is disabled: {blocked}")


def stale_warning(run: Run, chosen: Chosen | None, model_sha256: str | None, params_now: dict[str, Any], *,
                  preprocess_now: dict[str, Any] | None = None) -> None:
    """An old result must never read as the answer for what is chosen now: say what changed since it started."""
    stale = stale_reasons(run, chosen, model_sha256, params_now, preprocess_now=preprocess_now)
    if stale:
        st.warning(f"This result is for an earlier choice: {', '.join(stale)} changed since it was started "
                   f"({run.source}). Press Start to certify what is shown above.")
