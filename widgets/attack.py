"""Certify page: after a certificate, search for an adversarial example — the empirical side of the certificate.

CERTIFY says no ℓ2 perturbation below R changes g's class; :class:`rs_core.attacks.AttackRun` searches for the
smallest one that does (PGD on the soft smoothed classifier, the change confirmed by PREDICT with fresh samples), so
the page can show the interval in which g's true robustness lies: certified ≥ R, adversarial at D. The adversarial
input is then certified too (CERTIFY with the certificate's settings and a derived seed): it should be certified for
another class or abstained on. D < R is a soundness alarm, said loudly and recorded in the certificate's JSON.

The search runs in one background thread per session, held in the session state: the page stays usable, a fragment
polls its progress twice a second, Stop ends it within one optimisation step, and a watcher stops it a few seconds
after the browser session ends. Every model call takes the device's turn from the app's scheduler
(:func:`rs_core.smoothing.jobs.default_scheduler`), so the search shares a device fairly with the live runs.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import streamlit as st
import torch
from torch import nn

from rs_core import ABSTAIN, CertifyStream
from rs_core.attacks import METHODS, AttackResult, AttackRun
from rs_core.logs.verify import tensor_sha256
from rs_core.rounding import floor_str
from rs_core.smoothing.jobs import default_scheduler
from rs_core.smoothing.results import Certificate, Snapshot
from rs_core.smoothing.seeding import attack_seed, derive_seed

from . import errors, figures, report, state

LOG = logging.getLogger("rs_lab")
KEY = "attack"  # the session's AttackJob
EPS_KEY, STEPS_KEY, M_KEY, METHOD_KEY = "atk_eps", "atk_steps", "atk_m", "atk_method"
DEFAULTS_FOR = "atk_defaults_for"  # the certificate job whose R the ε max default was made from
DEFAULT_STEPS, DEFAULT_M = 100, 32
METHOD_LABELS = {"auto": "auto (PGD, or gradient-free without gradients)", "pgd": "PGD + bisection on ε",
                 "ddn": "DDN (decoupled direction and norm)", "boundary": "boundary (gradient-free)"}
MAX_STEPS, MAX_M = 10_000, 4_096
# The adversarial input's CERTIFY draws from a child of the attack's seed that the attack itself never uses (it uses
# the root for its optimisation and path 1 for its PREDICT confirmations): its samples are neither the clean
# certificate's nor the attack's.
ADV_CERTIFY_PATH = 2
BATCH_SECONDS = 0.5  # the adversarial CERTIFY's batches, sized by time like the page's: Stop answers within one
GRACE_S = 2.0  # a session gone this long (closed or reloaded tab) has its search stopped
CLIP = (0.0, 1.0)  # images in [0, 1] before the model's own normalization: the units of σ and of the radius


class _Turns(nn.Module):
    """The model with every forward pass taken in a turn of the device's lock, between the live runs' batches (the
    scheduler hands turns out by time): a search does not contend with other sessions' sampling for the device."""

    def __init__(self, model: nn.Module, device: str) -> None:
        super().__init__()
        self.inner, self.device_name = model, device
        self.training = False  # a wrapper of an eval-mode model (CERTIFY refuses train mode); the shared model untouched

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return default_scheduler().exclusive(self.device_name, lambda: self.inner(x))


@dataclass
class AttackJob:
    """One search of this session and what it refers to: the certificate's job (a newer certificate makes the
    search outdated), its radius, the settings; filled in by the worker thread as it goes."""

    certificate_job: Any  # the live.Run's Job whose certificate this search is about
    source: str
    radius: float
    clean_class: int
    settings: dict[str, Any]
    attack: AttackRun
    x: torch.Tensor  # CPU copy of the attacked input
    adv_seed: int
    started: float = field(default_factory=time.monotonic)
    phase: str = "attack"  # "attack" → "certify" (the adversarial input) → "done"
    result: AttackResult | None = None
    stream: CertifyStream | None = None
    adv_snapshot: Snapshot | None = None
    adv_certificate: Certificate | None = None
    error: str | None = None
    cancelled: str | None = None
    stop_requested: bool = False
    record: dict[str, Any] | None = None
    finished: threading.Event = field(default_factory=threading.Event)

    @property
    def done(self) -> bool:
        return self.finished.is_set()

    def stop(self) -> None:
        """Ends the search within one step (then PREDICT confirms what it has), or the adversarial CERTIFY within
        one batch (its certificate is still valid)."""
        self.stop_requested = True
        self.attack.stop()
        if self.stream is not None:
            self.stream.stop()

    def wait(self, timeout: float | None = None) -> bool:
        return self.finished.wait(timeout)


def default_eps_max(radius: float, input_shape: tuple[int, ...]) -> float:
    """A few times the certified radius, at least 1 (an abstention or a tiny radius still gets a useful range), and
    never beyond √d, the farthest two [0, 1] images can be apart."""
    return round(min(max(4.0 * radius, 1.0), math.sqrt(math.prod(input_shape))), 2)


def problems(eps_max: Any, steps: Any, m: Any, input_shape: tuple[int, ...]) -> list[str]:
    """What is wrong with the search's settings, each named as on the page; empty when all are valid."""
    diag = math.sqrt(math.prod(input_shape))
    out = []
    if isinstance(eps_max, bool) or not isinstance(eps_max, (int, float)) or not 0 < eps_max <= diag:
        out.append(f"ε max must be a number > 0 and ≤ {diag:.4g} (√d: no two [0, 1] inputs of this size are farther "
                   f"apart), got {eps_max}")
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= MAX_STEPS:
        out.append(f"steps must be a whole number from 1 to {MAX_STEPS:,}, got {steps}")
    if isinstance(m, bool) or not isinstance(m, int) or not 1 <= m <= MAX_M:
        out.append(f"m must be a whole number from 1 to {MAX_M:,} (noise draws per step), got {m}")
    return out



def _record(job: AttackJob, class_names: list[str]) -> dict[str, Any]:
    """The attack as the certificate's JSON carries it: settings, result, the interval and the alarm."""
    res, cert = job.result, job.adv_certificate
    out: dict[str, Any] = {"settings": dict(job.settings), "certified_radius": job.radius}
    if job.error is not None:
        out["error"] = job.error
    if res is not None:
        found = res.found
        out.update({
            "result": res.record(),
            "interval": {"certified_at_least": job.radius, "adversarial_at": res.distance if found else None,
                         "none_found_up_to": None if found else res.eps_max},
            "soundness_alarm": bool(found and res.distance < job.radius),
            "adversarial_input_sha256_float32": None if res.x_adv is None else tensor_sha256(res.x_adv.cpu()),
            "adversarial_class_name": None if res.adv_prediction is None else
            report.class_label(class_names, res.adv_prediction),
        })
    out["adversarial_certificate"] = None if cert is None else {
        **cert.to_dict(), "class_name": report.class_label(class_names, cert.prediction)}
    if job.cancelled:
        out["cancelled"] = job.cancelled
    return out


def _work(job: AttackJob, model: nn.Module, device: str, params: dict[str, Any], extra: dict[str, Any],
          class_names: list[str]) -> None:
    """The worker thread: the search, then CERTIFY at the adversarial input; the record goes into the run's
    ``extra`` before ``finished`` is set, so the page's next full run serves it in the certificate's download."""
    try:
        job.result = res = job.attack.run()
        if res.found and res.x_adv is not None and not job.stop_requested:
            job.phase = "certify"
            job.stream = stream = CertifyStream(
                model, res.x_adv.detach().to(device), params["sigma"], n0=params["n0"], n_max=params["n_max"],
                alpha=params["alpha"], batch_size=params["batch_size"], seed=job.adv_seed,
                batch_seconds=BATCH_SECONDS)
            if job.stop_requested:  # Stop pressed while the stream was being built
                stream.stop()
            for snap in stream:
                job.adv_snapshot = snap
            job.adv_certificate = stream.certificate()
    except ValueError as err:  # an invalid setting: its message names it and holds no server detail
        job.error = str(err)
    except Exception as err:  # reported on the page by an id, the details in the server's log
        error_id = errors.new_error_id()
        LOG.error("error %s in the attack: %s: %s", error_id, type(err).__name__, err, exc_info=err)
        job.error = f"the search failed (error id {error_id}; whoever runs this server finds the details in its log)"
    finally:
        job.phase = "done"
        job.record = _record(job, class_names)
        extra["attack"] = job.record
        job.finished.set()


def _watch(job: AttackJob, alive: Callable[[], bool]) -> None:
    """Stops the search once its browser session has been gone for GRACE_S (a network blip reconnects within it)."""
    gone_since = None
    while not job.wait(0.5):
        try:
            ok = bool(alive())
        except Exception:  # noqa: BLE001 — a broken callback must not end the watch
            ok = True
        if ok:
            gone_since = None
        elif gone_since is None:
            gone_since = time.monotonic()
        elif time.monotonic() - gone_since >= GRACE_S:
            job.cancelled = "the session ended"
            job.stop()
            return


def start(run: Any, model: nn.Module, device: str, *, eps_max: float, steps: int, m: int, n_predict: int,
          method: str = "auto") -> AttackJob:
    """Stop this session's previous search and start one on ``run``'s input and certificate (a live.Run), with the
    certificate's σ, α, n0, n max, batch size and seed; returns it (also kept under ``KEY``)."""
    ss = st.session_state
    old: AttackJob | None = ss.get(KEY)
    if old is not None and not old.done:
        old.stop()
    cert = run.job.certificate
    batch = int(cert.batch_size)
    settings = {"eps_max": float(eps_max), "steps": int(steps), "m": int(m), "alpha": float(cert.alpha),
                "n_predict": int(n_predict), "batch_size": batch, "seed": int(cert.seed), "method": method,
                "clip": list(CLIP)}
    x = run.x.detach().cpu()
    turns = _Turns(model, device)
    attack = AttackRun(turns, x.to(device), float(cert.sigma), eps_max=float(eps_max), steps=int(steps), m=int(m),
                       alpha=float(cert.alpha), n_predict=int(n_predict), batch_size=batch, seed=int(cert.seed),
                       method=method, clip=CLIP)
    job = AttackJob(certificate_job=run.job, source=run.source, radius=float(cert.radius),
                    clean_class=int(cert.prediction), settings=settings, attack=attack, x=x,
                    adv_seed=derive_seed(attack_seed(int(cert.seed)), ADV_CERTIFY_PATH))
    run.extra.pop("attack", None)  # the previous search's record is replaced by this one's once it ends
    params = {"sigma": float(cert.sigma), "alpha": float(cert.alpha), "n0": int(cert.n0),
              "n_max": int(cert.n_max or max(cert.n, 1)), "batch_size": batch}
    launch(job, turns, device, params, run.extra, list(run.class_names), alive=state.browser_session()[1])
    ss[KEY] = job
    return job


def launch(job: AttackJob, model: nn.Module, device: str, params: dict[str, Any], extra: dict[str, Any],
           class_names: list[str], *, alive: Callable[[], bool] | None = None) -> None:
    """Run ``job`` in a background thread (the search, then CERTIFY at the adversarial input with ``params``: σ, α,
    n0, n max, batch size), its record written into ``extra`` at the end; with ``alive`` ("is the browser session
    still connected?"), a watcher stops it once that has said False for GRACE_S."""
    threading.Thread(target=_work, args=(job, model, device, params, extra, class_names), name="rs-attack",
                     daemon=True).start()
    if alive is not None:
        threading.Thread(target=_watch, args=(job, alive), name="rs-attack-watch", daemon=True).start()


def follow(run: Any) -> None:
    """Called on every run of the page: a search about a certificate that has since been replaced is stopped (its
    result stays, marked outdated)."""
    job: AttackJob | None = st.session_state.get(KEY)
    if job is not None and run is not None and job.certificate_job is not run.job and not job.done:
        job.stop()


def _eta(job: AttackJob) -> str:
    p = job.attack.latest()
    if job.phase == "certify":
        snap = job.adv_snapshot
        if snap is None:
            return "certifying the adversarial input: drawing the n0 selection samples…"
        return (f"certifying the adversarial input (CERTIFY, seed {job.adv_seed}): {snap.n:,} / {snap.n_max:,} "
                f"estimation samples")
    if p is None:
        return f"PREDICT at the input ({job.settings['n_predict']:,} fresh samples), then the search…"
    rate = p.step / p.elapsed_s if p.elapsed_s > 0 else 0.0
    left = "" if rate <= 0 else f" · at most {(p.steps - p.step) / rate:,.0f} s left for the search"
    best = "none yet" if math.isinf(p.best) else f"{p.best:.4f}"
    return (f"attack step {p.step:,} of at most {p.steps:,} · ‖δ‖₂ now {p.distance:.4f} · smallest change of the soft "
            f"classifier so far: {best}{left} (then PREDICT confirms the point)")


def _fraction(job: AttackJob) -> float:
    if job.phase == "certify":
        snap = job.adv_snapshot
        return 0.0 if snap is None else min(1.0, snap.n / max(snap.n_max, 1))
    p = job.attack.latest()
    return 0.0 if p is None else min(1.0, p.step / max(p.steps, 1))


@st.fragment(run_every=0.5)
@errors.guarded("the attack's progress")  # a fragment's reruns are outside the page's guard
def _poll() -> None:
    """Progress and Stop, redrawn twice a second while the rest of the page stays usable; the whole page reruns once
    the search has ended (its result then shows, and the certificate's download carries it)."""
    job: AttackJob | None = st.session_state.get(KEY)
    if job is None:
        return
    if st.button("Stop the search", key="atk_stop", type="primary", disabled=job.done,
                 help="Ends the search within one step; the point found so far is still confirmed by PREDICT"):
        job.stop()
    st.progress(_fraction(job), text=_eta(job))
    if job.done:
        st.rerun()


def _interval(job: AttackJob, names: list[str]) -> None:
    res = job.result
    lab = report.class_label
    r = floor_str(job.radius)
    if res is None:
        return
    if res.clean_prediction == ABSTAIN:
        st.info(f"PREDICT abstains at the input ({res.n_predict:,} fresh samples at α = {res.alpha:g}): g has no class "
                "there to change, so there is nothing to attack.")
        return
    if res.found and res.distance < job.radius:
        st.error(f"**Soundness alarm:** the attack found an adversarial example at D = {res.distance:.4f}, *inside* "
                 f"the certified radius R = {r}: PREDICT (fresh samples) says class "
                 f"{lab(names, res.adv_prediction)} there, not {lab(names, res.clean_prediction)}. Either this "
                 f"certificate is one of the ≤ α = {res.alpha:g} that fail, or PREDICT's confirmation erred "
                 f"(≤ 2α), or the certification or the attack has a bug. It is recorded in the certificate's JSON "
                 "download (attack.soundness_alarm): please report it.", icon=":material/error:")
    elif res.found:
        st.success(f"**Certified ≥ {r}; the attack found an adversarial example at D = {res.distance:.4f}** — "
                   f"g says {lab(names, res.adv_prediction)} there instead of {lab(names, res.clean_prediction)} "
                   f"(PREDICT, {res.n_predict:,} fresh samples). g's true robustness at this input lies between the "
                   f"two: R is a lower bound (CERTIFY), D an upper one (an example found); D / R = "
                   f"{res.distance / job.radius:.2f}." if job.radius > 0 else
                   f"**The attack found an adversarial example at D = {res.distance:.4f}** (nothing was certified).")
    else:
        st.info(f"**Certified ≥ {r}; the attack found no adversarial example up to ε max = {res.eps_max:g}** "
                f"({res.steps:,} steps). g's true robustness here is at least R; the attack gives no upper bound "
                "below ε max (a stronger attack — more steps, larger m — might still find one).")
    if res.stopped:
        st.caption(f"You stopped the search after {res.steps:,} steps: the result is what it had found by then.")
    if job.cancelled:
        st.caption(f"The search was cancelled: {job.cancelled}.")
    if res.reason:
        st.caption(f"Gradient-free search ({res.method}): {res.reason}.")
    st.plotly_chart(figures.interval_figure(job.radius, res.distance if res.found else None, res.eps_max),
                    width="stretch", key="atk_interval")


def _images(job: AttackJob, names: list[str]) -> None:
    res = job.result
    if res is None or res.x_adv is None:
        return
    x_adv = res.x_adv.detach().cpu()
    delta = x_adv - job.x
    picture, factor = figures.perturbation_display(delta)
    lab = report.class_label
    st.image([figures.to_display(job.x), figures.to_display(x_adv), picture],
             caption=[f"input x (g: {lab(names, res.clean_prediction)})",
                      f"adversarial x + δ (g: {lab(names, res.adv_prediction)})",
                      f"perturbation δ ×{factor:.3g} (grey = 0)"], width=140)
    how = "amplified" if factor > 1 else "scaled"
    st.caption(f"The perturbation δ = x_adv − x, ‖δ‖₂ = {res.distance:.4f} (largest change of one value "
               f"{float(delta.abs().max()):.3f}), shown {how} ×{factor:.3g} around grey so that the largest change "
               "reaches black or white: lighter = added, darker = removed.")


def _adversarial_certificate(job: AttackJob, names: list[str]) -> None:
    res, cert = job.result, job.adv_certificate
    if res is None or not res.found:
        return
    lab = report.class_label
    if cert is None:
        why = "you stopped the search" if job.stop_requested else "it did not run"
        st.caption(f"The adversarial input was not certified: {why}.")
        return
    seed = f"CERTIFY with the certificate's σ, α, n0, n max and a fresh derived seed {cert.seed}"
    stopped = " (stopped: the certificate holds for the samples drawn)" if cert.stop_reason == "stopped" else ""
    if cert.prediction == ABSTAIN:
        st.info(f"**The adversarial input certified too** ({seed}){stopped}: **abstain** — the smoothed classifier "
                f"makes no claim there (pA ≥ {floor_str(cert.p_lower)} ≤ 1/2), as expected next to its boundary.")
    elif cert.prediction != job.clean_class:
        st.info(f"**The adversarial input certified too** ({seed}){stopped}: class **{lab(names, cert.prediction)}** "
                f"within radius {floor_str(cert.radius)} — another class than the input's, as expected.")
    else:
        st.warning(f"**The adversarial input certified too** ({seed}){stopped}: CERTIFY gives the input's own class "
                   f"**{lab(names, cert.prediction)}** (radius {floor_str(cert.radius)}), where PREDICT said "
                   f"{lab(names, res.adv_prediction)}. Each errs with probability ≤ α; a point this close to g's "
                   "boundary can get either answer. Search again with more steps or a larger m for a point further "
                   "across.", icon="⚠️")


def _result(job: AttackJob, names: list[str]) -> None:
    if job.error is not None:
        st.error(f"The search for an adversarial example did not finish: {job.error}")
        return
    _interval(job, names)
    _images(job, names)
    _adversarial_certificate(job, names)
    res = job.result
    if res is not None:
        s = job.settings
        st.caption(f"Search: {res.method}, {res.steps:,} of at most {s['steps']:,} steps, m = {res.m} noise draws per "
                   f"step, ε max = {res.eps_max:g}, seed {res.seed} (the certificate's: the attack draws its own noise stream "
                   "from it, never the certificate's samples), "
                   f"PREDICT with {res.n_predict:,} samples at α = {res.alpha:g}, {res.elapsed_s:.1f} s. The result "
                   "is in the certificate's JSON download (\"attack\").")


def section(run: Any, settings: Any, *, n_predict: int) -> None:
    """The search's controls and result under a finished certificate (``run``: the page's live.Run; ``settings``:
    the sidebar's, whose model must still be the certificate's)."""
    ss = st.session_state
    cert = run.job.certificate
    shape = tuple(run.x.shape)
    st.divider()
    st.subheader("Search for an adversarial example")
    if (getattr(cert, "noise", "gaussian"), getattr(cert, "norm", "l2")) != ("gaussian", "l2"):
        # The searches measure ℓ2 distances on the Gaussian-smoothed classifier: set against an ℓ1 or ℓ∞ radius,
        # or run on another noise's g, their distance would compare nothing with this certificate.
        st.info(f"Not available for this certificate ({cert.noise} noise, {cert.norm} radius): the search looks for "
                "the smallest ℓ2 perturbation of the Gaussian-smoothed classifier. Choose Gaussian noise and the ℓ2 "
                "norm in the sidebar to compare a certificate with an attack.")
        return
    st.caption("The certificate is a lower bound. How far is the truth? An ℓ2 attack on the smoothed classifier g "
               "(PGD, DDN or a gradient-free boundary search on the mean softmax over m noise draws; the change of "
               "class confirmed by PREDICT with fresh "
               "samples) looks for the smallest perturbation that changes g's answer, outside the certified radius "
               "if the certificate is sound.")
    default_eps = default_eps_max(float(cert.radius), shape)
    if ss.get(DEFAULTS_FOR) is not run.job:  # a new certificate: ε max from its radius, once, then as the user sets
        ss[DEFAULTS_FOR] = run.job
        state.remember(EPS_KEY, default_eps)
    # Kept values: they survive a visit to another page (Streamlit forgets the state of widgets a run does not draw).
    c1, c2, c3 = st.columns(3)
    eps_max = c1.number_input("ε max (largest ‖δ‖₂ searched)", step=0.25, format="%.4g",
                              help="Default: 4 × the certified radius (at least 1): enough room to find where g "
                                   "really changes", **state.kept(EPS_KEY, default_eps))
    steps = c2.number_input("steps", step=10, **state.kept(STEPS_KEY, DEFAULT_STEPS),
                            help="Optimisation steps (each m forward and backward passes); the search stops sooner "
                                 "once its bisection on the budget is done. Fewer than about 60 often leave the "
                                 "first, full-budget descent too short to find anything")
    m = c3.number_input("m (noise draws per step)", step=8, **state.kept(M_KEY, DEFAULT_M),
                        help="The soft smoothed classifier is the mean softmax over m noise draws (Salman et al.)")
    method = st.radio("method", list(METHODS), format_func=METHOD_LABELS.get, horizontal=True,
                      **state.kept(METHOD_KEY, "auto"),
                      help="PGD: steps inside a ball of radius ε, halving ε while the class still changes. DDN "
                           "(Rony et al. 2019): one descent whose norm shrinks 5 % after a step that changed the "
                           "class and grows 5 % after one that did not. Boundary: no gradients needed (ONNX files): "
                           "a bisection along a direction, then the boundary's estimated normal. Auto: PGD when the "
                           "model gives gradients, else boundary")
    wrong = problems(eps_max, steps, m, shape)
    for p in wrong:
        st.error(p)
    job: AttackJob | None = ss.get(KEY)
    mine = job is not None and job.certificate_job is run.job
    model_now = settings.model_sha256 == run.model.get("sha256") and \
        settings.model_record().get("preprocess") == run.model.get("preprocess")
    blocked = ("the certificate abstained: there is no certified class to attack" if cert.prediction == ABSTAIN
               else None) or \
        (None if model_now else "the sidebar's model has changed since this certificate: certify again first") or \
        ("; ".join(wrong) if wrong else None) or \
        ("a search is running: stop it first" if job is not None and not job.done else None)
    if st.button("Search for an adversarial example", key="atk_start", disabled=blocked is not None) and \
            (job is None or job.done):
        start(run, settings.base_model, settings.device, eps_max=float(eps_max), steps=int(steps), m=int(m),
              n_predict=n_predict, method=str(method))
        st.rerun()  # the page again, with the search's progress and Stop
    if blocked:
        st.caption(f"Search is disabled: {blocked}")
    if job is None:
        return
    if not job.done:
        _poll()
        return
    if not mine:
        res = job.result
        found = "" if res is None else (f", adversarial at D = {res.distance:.4f}" if res.found else
                                         f", none found up to ε max = {res.eps_max:g}")
        st.warning(f"Outdated: the last search was about an earlier certificate ({job.source}, certified ≥ "
                   f"{floor_str(job.radius)}{found}), which this one replaced. Search again for this certificate.")
        return
    _result(job, run.class_names)
