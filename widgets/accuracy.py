"""The Certified accuracy page's parts: which logs it opens on, which data set it shows, the curves and tables, and
"compute here" as a background job with progress and Stop.

The page follows the sidebar: it preselects the shipped logs of the sidebar's model (:func:`default_log_ids`)
and shows the sidebar's data set, until the user chooses otherwise. It never cuts curves without saying so:
restricting every log to the images common to all is off by default, and when on, the heading says to how many.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import streamlit as st

from rs_core.data import DATASETS, get_dataset
from rs_core.logs.attack_logs import (
    AttackLog,
    add_empirical_curves,
    attack_log_beside,
    check_gaussian_l2,
    check_same_images,
    parse_attack_log,
    read_attack_log,
)
from rs_core.logs.certify_logs import (
    NORM_TITLES,
    CertifyLog,
    accuracy_tables,
    common_images,
    distinct_labels,
    figure,
    format_certify_log,
    parse_radii,
    read_certify_log,
    read_uploads,
    same_images,
    upload_label,
)
from rs_core.models.shipped import ShippedLog, default_model, family_models, shipped_models
from rs_core.smoothing.jobs import Job, default_scheduler
from rs_core.smoothing.log_stream import ExamplesSnapshot, ExamplesStream
from rs_core.untrusted import MAX_LOG_BYTES

from . import errors, fields, state
from .state import Settings

NOT_STATED = "not stated"
SHIPPED_KEY, GROUP_KEY, COMMON_KEY = "acc_shipped", "acc_group", "acc_common"
NORM_KEY = "acc_norm"  # which norm's logs are shown when the chosen logs mix norms
UPLOADS_KEY, UPLOAD_DATASET_KEY = "acc_uploads", "acc_upload_dataset"
JOB_KEY, LIVE_LOGS = "acc_job", "live_logs"
ATTACK_UPLOADS_KEY, SHOW_ATTACKS_KEY = "acc_attack_uploads", "acc_show_attacks"
BATCH_SECONDS = 0.5  # batches sized to about this long: Stop is answered within about that, on any model


# -- which logs the page opens on ------------------------------------------------------------------------------

def default_log_ids(logs: Sequence[ShippedLog], model_id: str | None, dataset: str | None) -> list[str]:
    """The shipped logs preselected for the sidebar's model: its own logs and, for a model trained with noise, those
    of the same architecture trained at the other σ's (Cohen et al.'s one curve per σ). A model with no shipped
    log (the user's own, a server file): the σ family of the first model of ``dataset`` that has logs, or of the
    app's default model when the data set is unknown. All these logs certify the same test images."""
    models = {m.id: m for m in shipped_models()}

    def family(model) -> list[str]:
        # Logs of the model's own noise and its first norm only (Gaussian ℓ2, Laplace and uniform ℓ1): radii of
        # different norms are never drawn on one axis.
        native = ("gaussian", "l2") if model.noise == "gaussian" else (model.noise, "l1")
        single = [log for log in logs if log.kind == "single" and (log.noise, log.norm) == native]
        own = [log.id for log in single if log.model_id == model.id]
        if model.sigma <= 0:  # a clean model: its own logs (smoothed at several σ) only
            return own
        # The other σ's of its family; the model itself stands for its own σ (a model the index does not mark
        # "default" shows its curve, not the marked one's beside it).
        kin = {m.id for m in family_models() if (m.dataset, m.arch, m.noise) == (model.dataset, model.arch, model.noise)
               and m.sigma > 0 and m.sigma != model.sigma}
        chosen = [log for log in single if log.id in own or log.model_id in kin]
        return [log.id for log in sorted(chosen, key=lambda log: log.sigma or 0.0)]  # one curve per σ, in σ order

    model = models.get(model_id) if model_id else None
    if model is not None and family(model):
        return family(model)
    if dataset is None:
        fallback = default_model()
        dataset = fallback.dataset if fallback is not None else None
    for candidate in models.values():
        if candidate.dataset == dataset and candidate.sigma > 0 and family(candidate):
            return family(candidate)
    return []


def shipped_picker(available: dict[str, ShippedLog], settings: Settings) -> list[str]:
    """The multiselect of shipped logs: it follows the sidebar's model (:func:`default_log_ids`) until the user
    changes it, and keeps the user's choice across pages from then on."""
    ss = st.session_state
    touched = state.recall(SHIPPED_KEY + ".touched", False)
    value = state.recall(SHIPPED_KEY) if touched else default_log_ids(list(available.values()), settings.model_id,
                                                                      settings.dataset)
    ss[SHIPPED_KEY] = [k for k in value or [] if k in available]

    def chosen() -> None:
        state.remember(SHIPPED_KEY, list(ss[SHIPPED_KEY]))
        state.remember(SHIPPED_KEY + ".touched", True)

    return st.multiselect("Logs shipped with our checkpoints", list(available), key=SHIPPED_KEY, on_change=chosen,
                          format_func=lambda k: available[k].label,
                          help="Preselected: the logs of the sidebar's model (its σ family); choose any others")


@st.cache_data(show_spinner=False)
def _read_log(path: str, label: str, dataset: str, alpha: float) -> CertifyLog:
    return read_certify_log(path, label, dataset=dataset, alpha=alpha)


def shipped(chosen: list[str], available: dict[str, ShippedLog]) -> list[CertifyLog]:
    return [_read_log(str(available[k].path), available[k].label, available[k].dataset, available[k].alpha)
            for k in chosen]


# -- attack logs: empirical robust accuracy next to the certified one ---------------------------------------------

@dataclass(frozen=True)
class Empirical:
    """An attack log and the path of the certify log it belongs to (same model, σ and images), if known: its curve
    is drawn dashed in that log's colour."""

    log: AttackLog
    partner: str | None


@st.cache_data(show_spinner=False)
def _read_attack(path: str, dataset: str) -> AttackLog:
    return read_attack_log(path, dataset=dataset)


def attack_curves(chosen: list[str], available: dict[str, ShippedLog]) -> list[Empirical]:
    """The attack logs shipped beside the chosen shipped logs (``attack_<σ>`` next to ``sigma_<σ>``), shown with
    them unless unticked, and uploaded attack logs (their own colours: which model made them is not known)."""
    shipped_pairs = [(available[k], attack_log_beside(available[k].path)) for k in chosen]
    shipped_pairs = [(c, a) for c, a in shipped_pairs if a is not None]
    show = st.checkbox("Empirical robust accuracy (dashed): the attack logs shipped with the chosen logs"
                       + (f" ({len(shipped_pairs)})" if shipped_pairs else " (none for these logs)"), value=True,
                       key=SHOW_ATTACKS_KEY, help="python -m rs_core attack: per image, the smallest ℓ2 perturbation "
                       "found that changes the smoothed classifier's PREDICT. An upper bound on robust accuracy, "
                       "as certified accuracy is a lower one")
    out = [Empirical(_read_attack(str(a), c.dataset), str(c.path)) for c, a in shipped_pairs] if show else []
    uploads = st.file_uploader("Upload attack logs (idx label predict adv_distance adv_predict time …)",
                               accept_multiple_files=True, key=ATTACK_UPLOADS_KEY,
                               max_upload_size=MAX_LOG_BYTES // 2**20)
    for u in uploads or []:
        label = upload_label(u.name)
        try:
            log = parse_attack_log(u.getvalue(), f"{label} (attack)", label)
        except ValueError as err:
            st.error(str(err))
            continue
        out.append(Empirical(log, None))
    return out


def empirical_table(curves: list[Empirical], shown: list[CertifyLog], radii) -> dict[str, list] | None:
    """One row per attack log: empirical robust accuracy at each radius, and, when its certify log is shown on the
    same images, the certified accuracy beside it and the gap (empirical − certified)."""
    if not curves:
        return None
    by_path = {log.path: log for log in shown if log.path}
    rows: dict[str, list] = {"attack log": [], "n images": []}
    columns = [f"r = {r:g}" for r in radii]
    for c in columns:
        rows[c] = []
    for curve in curves:
        cert = by_path.get(curve.partner or "")
        emp = curve.log.empirical_accuracy(radii)
        certified = cert.certified_accuracy(radii) if cert is not None else None
        rows["attack log"].append(curve.log.label)
        rows["n images"].append(len(curve.log))
        for j, c in enumerate(columns):
            rows[c].append(f"{emp[j]:.3f}" + ("" if certified is None else
                                                f" (certified {certified[j]:.3f}, gap {emp[j] - certified[j]:+.3f})"))
    return rows


# -- uploads -----------------------------------------------------------------------------------------------------

def upload_picker() -> tuple[list, str | None]:
    """The uploader and the data set its logs index (None: not stated)."""
    c1, c2 = st.columns([3, 1])
    uploads = c1.file_uploader("Upload certify logs (Cohen et al.'s format: idx label predict radius correct time)",
                               accept_multiple_files=True, key=UPLOADS_KEY,
                               max_upload_size=MAX_LOG_BYTES // 2**20)  # what the log reader enforces
    dataset = c2.selectbox("Data set of the uploaded logs", [NOT_STATED, *DATASETS], key=UPLOAD_DATASET_KEY,
                           help="Logs are compared only with logs of the same data set: their idx columns "
                                "number different images otherwise")
    return list(uploads or []), None if dataset == NOT_STATED else dataset


def uploaded(uploads: list, dataset: str | None) -> tuple[list[CertifyLog], bool]:
    """The uploads as logs (each unreadable or empty one said in a message, the rest kept), and whether a file was
    added since the last run (the page then shows the uploads' data set)."""
    logs, problems = read_uploads([(u.name, u.getvalue()) for u in uploads], dataset)
    for p in problems:
        (st.error if p.level == "error" else st.warning)(p.message)
    ids = {str(getattr(u, "file_id", u.name)) for u in uploads}
    before = state.recall(UPLOADS_KEY + ".ids", set())
    state.remember(UPLOADS_KEY + ".ids", ids)
    return logs, bool(ids - before) and bool(logs)


# -- compute here: a scheduler job -------------------------------------------------------------------------------

class _Picks(Sequence):
    """Test images ``positions`` of a data set as ``(original index, x, label)``, loaded when the job reaches them."""

    def __init__(self, dataset, positions: np.ndarray) -> None:
        self.dataset, self.positions = dataset, [int(i) for i in positions]

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        pos = self.positions[i]
        x, label = self.dataset[pos]
        return self.dataset.original_index(pos), x, int(label)


@dataclass
class LiveLog:
    """A "compute here" run: its job and what its log is called once it ends."""

    job: Job
    label: str
    dataset: str | None
    alpha: float
    k: int
    n: int
    notes: list[str] = field(default_factory=list)



def _start(settings: Settings, k: int, n: int) -> None:
    ss = st.session_state
    if settings.dataset is None:
        ss[JOB_KEY + ".message"] = ("error", "The model does not name its data set: choose one in the sidebar.")
        return
    try:
        data = get_dataset(settings.dataset, "test")
    except (FileNotFoundError, ValueError):  # its message names a server folder: not for the page
        why = f"The {settings.dataset} test images are not on this server; whoever runs it sets RS_DATA_DIR to a " \
              "folder holding them."
        ss[JOB_KEY + ".message"] = ("error", why)
        return
    picks = np.unique(np.linspace(0, len(data) - 1, k).astype(int))
    model, device = settings.base_model, settings.device
    sigma, n0, alpha, batch, seed = settings.sigma, settings.n0, settings.alpha, settings.batch_size, settings.seed
    scheduler = default_scheduler()
    stream = scheduler.exclusive(device, lambda: ExamplesStream(model, _Picks(data, picks), sigma, n0, n, alpha, batch,
                                                                seed=seed, batch_seconds=BATCH_SECONDS))
    owner, alive = state.browser_session()
    label = (f"{settings.model_label}" + (f" + {settings.denoiser_label}" if settings.denoiser is not None else "")
             + f" at σ = {sigma:g} · here")
    ss[JOB_KEY] = LiveLog(job=scheduler.submit(stream, owner=owner, alive=alive), label=label,
                          dataset=settings.dataset, alpha=alpha, k=len(picks), n=n)
    ss.pop(JOB_KEY + ".message", None)


def _progress(run: LiveLog) -> None:
    job = run.job
    if job.queued:
        scheduler = default_scheduler()
        st.info(f"Waiting for a free slot: number {job.position()} in the queue ({scheduler.running} run(s) sampling "
                f"on this server, at most {scheduler.max_running} at once).")
        return
    snap: ExamplesSnapshot | None = job.snapshot
    if snap is None:
        st.progress(0.0, text=f"certifying 0 of {run.k} test images…")
        return
    left = snap.seconds_left
    eta = "estimating time…" if left is None else (f"≈ {left:,.0f} s left" if left < 120 else
                                                   f"≈ {left / 60:,.1f} min left")
    st.progress(min(1.0, snap.samples_drawn / max(snap.samples_total, 1)),
                text=f"certified {snap.images_done:,} of {run.k:,} test images · now {snap.label} · {eta} · "
                     f"{snap.inner.samples_per_s:,.0f} samples/s")


@st.fragment(run_every=0.5)
@errors.guarded("the Certified accuracy page's progress")  # a fragment's reruns are outside the page's guard
def _poll() -> None:
    """Progress and Stop, redrawn twice a second while the rest of the page stays usable; the whole page reruns
    once the job has ended (its curve then joins the plot)."""
    run: LiveLog | None = st.session_state.get(JOB_KEY)
    if run is None:
        return
    if st.button("Stop", key="acc_stop", type="primary", disabled=run.job.done,
                 help="Ends within one batch; the images certified so far are kept as a log"):
        run.job.stop()
    _progress(run)
    if run.job.done:
        st.rerun()


def _collect(run: LiveLog) -> CertifyLog | None:
    """The log of an ended run (the rows of the images it finished), and a message saying how it ended."""
    job, ss = run.job, st.session_state
    rows = job.stream.certificate()
    stopped = job.cancelled or (job.stream.stop_reason == "stopped" and len(rows) < run.k)
    if job.error is not None:
        message = ("error", f"Certification failed after {len(rows)} of {run.k} images: {job.error}")
    elif stopped:
        message = ("warning", f"Stopped after {len(rows)} of {run.k} test images"
                              + (f" ({job.cancelled})" if job.cancelled else "")
                              + (": their curve is below." if rows else ": no image was finished."))
    else:
        message = ("success", f"Certified {run.k} test images: the curve is below.")
    ss[JOB_KEY + ".message"] = message
    if not rows:
        return None
    label = f"{run.label}, k = {len(rows)}" + (f" of {run.k}" if len(rows) < run.k else "") + f", N = {run.n}"
    return CertifyLog.from_rows(label, rows, dataset=run.dataset, alpha=run.alpha)


def compute_here(settings: Settings) -> CertifyLog | None:
    """The "compute here" controls and the run's progress; returns the log of a run that has just ended."""
    ss = st.session_state
    run: LiveLog | None = ss.get(JOB_KEY)
    new = None
    if run is not None and run.job.done:
        new = _collect(run)
        if new is not None:
            ss.setdefault(LIVE_LOGS, []).append(new)
        ss.pop(JOB_KEY)
        run = None
    st.caption(f"CERTIFY with the sidebar's model ({settings.model_label}), σ, n0, α, batch size and seed; each "
               "test image i uses seed + i (so a row can be re-run alone, and equals the CLI's). It runs in the "
               "background, shared fairly with other users' runs; Stop keeps the images certified so far. "
               "Results join the plot and table below, and can be downloaded as a Cohen-format log.")
    c1, c2 = st.columns(2)
    k = c1.number_input("k test images (evenly spaced)", value=20, step=1, key="live_k")
    n = c2.number_input("N (estimation samples)", value=1000, step=100, key="live_n")
    problems = [p for p in (
        None if isinstance(k, int) and 1 <= k <= 10_000 else f"k must be a whole number from 1 to 10,000, got {k}",
        None if isinstance(n, int) and 1 <= n <= 1_000_000 else f"N must be a whole number from 1 to 1,000,000, got {n}",
    ) if p]
    for p in problems:
        st.error(p)
    gaussian = (getattr(settings, "noise", "gaussian"), getattr(settings, "norm", "l2")) == ("gaussian", "l2")
    blocked = settings.why_not_ready or ("; ".join(problems) if problems else None) or \
        ("a run is in progress: stop it first" if run is not None else None) or \
        (None if gaussian else "computing here certifies Gaussian ℓ2 radii; choose Gaussian noise and the ℓ2 norm "
                               "in the sidebar (python -m rs_core certify --noise … --norm … for the others)")
    if st.button("Certify", key="live_run", disabled=blocked is not None) and ss.get(JOB_KEY) is None:
        _start(settings, int(k), int(n))  # here, not in a callback: the page's error guard covers it
        st.rerun()  # draw the page again with the run in it (Certify disabled, progress, Stop)
    if blocked:
        st.caption(f"Certify is disabled: {blocked}")
    if ss.get(JOB_KEY) is not None:
        _poll()
    message = ss.get(JOB_KEY + ".message")
    if message:
        getattr(st, message[0])(message[1])
    for j, live in enumerate(ss.get(LIVE_LOGS, [])):
        st.download_button(f"Download log: {live.label}", format_certify_log(live), file_name=f"certify_log_{j}.tsv",
                           key=f"live_download_{j}")
    return new


# -- results -----------------------------------------------------------------------------------------------------

def options() -> tuple[np.ndarray | None, float | None, float | None]:
    """Radii for the tables, CERTIFY's α for uploads, ρ: each None while its box holds an invalid value."""
    col1, col2, col3 = st.columns(3)
    radii_text = col1.text_input("Radii for the table", "0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0", key="acc_radii")
    alpha = col2.number_input("CERTIFY's α (for uploaded logs)", value=0.001, format="%.4g", key="acc_alpha",
                              help="Shipped logs and logs computed here carry their own α; this one is used for "
                                   "uploads")
    rho = col3.number_input("ρ (lower bound fails with probability ≤ ρ)", value=0.001, format="%.4g", key="acc_rho")
    for where, name, value in ((col2, "α", alpha), (col3, "ρ", rho)):
        why = fields.problem("alpha", value)
        if why is not None:
            where.error(why.replace("α", name, 1))
            alpha = rho = None
    try:
        radii = parse_radii(radii_text)
    except ValueError as err:
        st.error(f"{err} — e.g. 0, 0.5, 1.0")
        radii = None
    return radii, alpha, rho


def shown_group(groups: list[str], sidebar_dataset: str | None, event: str | None) -> str:
    """Which data set's logs to show: one that just got a new log (``event``: a computed curve, an upload), else
    the sidebar's data set when it changed since the last run, else the user's choice, else the sidebar's, else
    the first. Draws the choice when there are several."""
    ss = st.session_state
    sidebar = sidebar_dataset or NOT_STATED
    moved = state.recall(GROUP_KEY + ".sidebar", sidebar) != sidebar
    mine = state.recall(GROUP_KEY)
    pick = (event if event in groups else sidebar if moved and sidebar in groups else mine if mine in groups
            else sidebar if sidebar in groups else groups[0])
    state.remember(GROUP_KEY, pick)
    state.remember(GROUP_KEY + ".sidebar", sidebar)
    if len(groups) < 2:
        return pick
    ss[GROUP_KEY] = pick
    return st.radio("Data set", groups, key=GROUP_KEY, horizontal=True,
                    on_change=lambda: state.remember(GROUP_KEY, ss[GROUP_KEY]))


def results(logs: list[CertifyLog], radii, alpha: float | None, rho: float | None, sidebar_dataset: str | None,
            event: str | None, attacks: list[Empirical] | None = None) -> None:
    """One data set's logs at a time (logs of different data sets number different images), as curves and two
    tables with one row per log; cut to the common images only when asked, and then said in the heading."""
    logs = distinct_labels(logs)  # rows and legends are keyed by label: same-named logs must stay apart
    if not logs:
        st.info("Choose shipped logs, upload one or compute one here to see curves.")
        return
    groups: dict[str, list[CertifyLog]] = {}
    for log in logs:
        groups.setdefault(log.dataset or NOT_STATED, []).append(log)
    if len(groups) > 1:
        st.warning("These logs index different data sets (" + ", ".join(f"{d}: {len(g)}" for d, g in groups.items())
                   + "); logs of different data sets are not compared. Showing one data set:")
    logs = groups[shown_group(list(groups), sidebar_dataset, event)]
    by_norm: dict[str, list[CertifyLog]] = {}
    for log in logs:
        by_norm.setdefault(log.norm, []).append(log)
    if len(by_norm) > 1:
        st.warning("These logs certify radii in different norms (" + ", ".join(
            f"{NORM_TITLES.get(n, n)}: {', '.join(log.label for log in g)}" for n, g in by_norm.items())
                   + "). An ℓ1 and an ℓ2 radius are different shapes, not numbers on one axis: showing one norm:")
        norm = st.radio("Norm", list(by_norm), key=NORM_KEY, horizontal=True,
                        format_func=lambda n: NORM_TITLES.get(n, n))
        logs = by_norm[norm]
    scope = f"each log on all of its {len(logs[0]):,} images" if len(logs) == 1 else "each log on all of its images"
    if len(logs) > 1 and not same_images(logs):
        common = st.checkbox("Compare on the same images only (rows present in every log)", value=False,
                             key=COMMON_KEY,
                             help="Logs certified on different images are not comparable; e.g. the dual-RS "
                                  "logs cover a subset of the single-σ logs' images")
        cut, kept = common_images(logs)
        if common and kept:
            logs, scope = cut, f"on the {len(kept):,} images common to all {len(logs)} logs"
        elif common:
            st.warning("No image is in every one of these logs: each log is shown on all of its own images.")
        else:
            common_text = "no image is in all of them" if not kept else \
                f"tick the box to compare them on the {len(kept):,} image{'s' * (len(kept) != 1)} common to all"
            st.caption(f"These logs cover different images ({', '.join(f'{len(log):,}' for log in logs)}); each "
                       f"curve uses all of its own ({common_text}).")
    elif len(logs) > 1:
        scope = f"all {len(logs)} logs on the same {len(logs[0]):,} images"
    if radii is None or alpha is None or rho is None:
        return
    st.markdown(f"#### Certified accuracy against radius — {scope}")
    fig = figure(logs, alpha, rho)
    curves = _shown_attacks(attacks or [], logs)
    add_empirical_curves(fig, [(c.log, next((log.label for log in logs if log.path == c.partner), None))
                               for c in curves])
    st.plotly_chart(fig, width="stretch")
    first, lower = accuracy_tables(logs, radii, alpha, rho)
    st.markdown(f"**Certified accuracy** (one row per log; {scope})")
    st.table(first)
    st.markdown(f"**Lower bound on the true certified accuracy** (probability ≥ {1 - rho:g}, App. D; each log's "
                "own CERTIFY α where it is known)")
    st.table(lower)
    table = empirical_table(curves, logs, radii)
    if table is not None:
        st.markdown("**Empirical robust accuracy** (dashed curves): correct, and no adversarial example found within "
                    "r by the attack — an upper bound on the true robust accuracy, as certified accuracy is a lower "
                    "one; the gap is what neither knows")
        st.table(table)


def _shown_attacks(curves: list[Empirical], shown: list[CertifyLog]) -> list[Empirical]:
    """The attack curves of the shown data set: a shipped one whose certify log is shown (and covers the same
    images: otherwise a message, not a curve), and every uploaded one."""
    by_path = {log.path: log for log in shown if log.path}
    out = []
    other = next((log for log in shown if (log.noise, log.norm) != ("gaussian", "l2")), None)
    for c in curves:
        if c.partner is None:
            if other is not None:  # an attack's ℓ2 distances on an ℓ1/ℓ∞ axis (or another noise) mean nothing
                st.warning(f"{c.log.label}: an attack log holds ℓ2 distances on the Gaussian-smoothed classifier; "
                           f"these curves are {other.noise} noise {NORM_TITLES.get(other.norm, other.norm)} radii: "
                           "its empirical curve is not drawn.")
                continue
            out.append(c)
            continue
        cert = by_path.get(c.partner)
        if cert is None:
            continue
        try:
            check_gaussian_l2(c.log, cert)
            check_same_images(c.log, cert)
        except ValueError as err:
            st.warning(f"{err}: its empirical curve is not drawn.")
            continue
        out.append(c)
    return out
