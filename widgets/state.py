"""Typed state shared by the pages: the sidebar's :class:`Settings`, and page choices kept across pages.

The entrypoint (``app.py``) draws the sidebar once per run and stores its :class:`Settings` here;
pages read them with :func:`widgets.entry.settings` and never re-read widget keys.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import streamlit as st
import torch
from streamlit.runtime import Runtime
from streamlit.runtime.scriptrunner import get_script_run_ctx

from rs_core.data import dataset_info
from rs_core.models.checkpoints import LoadedModel

_SETTINGS = "settings"
_KEPT = "kept."


@dataclass
class Settings:
    """What the sidebar chose. ``loaded`` is None when no model could be loaded (``error`` says why);
    ``problems`` maps each invalid field to why (the sidebar shows it; nothing runs until it is fixed)."""

    model_id: str | None  # a shipped model's registry id; None for the user's own file
    model_label: str
    model_file: str | None  # the file's own name (an upload's name, or the shipped file's)
    loaded: LoadedModel | None
    dataset: str | None
    train_sigma: float | None
    sigma: float | None
    alpha: float | None
    n0: int | None
    n_max: int | None
    batch_size: int | None
    seed: int | None
    device: str
    error: str | None = None
    problems: dict[str, str] = field(default_factory=dict)
    noise: str = "gaussian"  # the smoothing noise (rs_core.smoothing.noises), σ its standard deviation
    norm: str = "l2"  # the norm the certified radius is in (one the noise certifies)
    denoiser: LoadedModel | None = None  # denoised smoothing: the base classifier is f∘D
    denoiser_label: str | None = None
    denoiser_file: str | None = None

    @property
    def base_model(self) -> torch.nn.Module | None:
        """What is smoothed: the classifier, or the classifier after the denoiser (f∘D)."""
        if self.loaded is None:
            return None
        if self.denoiser is None:
            return self.loaded.model
        from rs_core.models.denoisers import denoised

        return denoised(self.loaded.model, self.denoiser.model)

    @property
    def model_sha256(self) -> str | None:
        """Identifies the base classifier: the classifier's sha256, or with a denoiser one sha256 of both files'
        (rs_core.logs.verify.combined_sha256; each file's own is in the record too)."""
        if self.loaded is None:
            return None
        if self.denoiser is None:
            return self.loaded.sha256
        from rs_core.logs.verify import combined_sha256

        return combined_sha256(self.loaded.sha256, self.denoiser.sha256)

    def model_record(self) -> dict[str, Any]:
        """How a certificate names its base classifier."""
        record = {"label": self.model_label, "file": self.model_file, "id": self.model_id,
                  "arch": None if self.loaded is None else self.loaded.arch, "sha256": self.model_sha256,
                  "classifier_sha256": None if self.loaded is None else self.loaded.sha256}
        if self.loaded is not None:  # format, declared preprocessing (σ's units), classes
            own = self.loaded.record()
            record.update({k: own[k] for k in ("format", "num_classes", "preprocess", "normalization", "class_names")})
        if self.denoiser is not None:
            record["denoiser"] = {"label": self.denoiser_label, "file": self.denoiser_file,
                                  "arch": self.denoiser.arch, "sha256": self.denoiser.sha256,
                                  "sigma_trained": self.denoiser.sigma,
                                  "objective": self.denoiser.meta.get("objective")}
        return record

    @property
    def ready(self) -> bool:
        """A model is loaded and every setting is valid: sampling may start."""
        return self.loaded is not None and not self.problems

    @property
    def why_not_ready(self) -> str | None:
        if self.loaded is None:
            return self.error or "Choose a model in the sidebar."
        if self.problems:
            return "Fix the sidebar first: " + "; ".join(self.problems.values()) + "."
        return None

    @property
    def class_names(self) -> list[str]:
        if self.loaded is None:
            return []
        names = self.loaded.meta.get("class_names")
        if self.loaded.meta.get("class_names_source") == "indices":
            names = None  # numbers only: a chosen data set's names are better
        if not names and self.dataset:
            names = dataset_info(self.dataset).class_names
        return list(names) if names and len(names) == self.loaded.num_classes else self.loaded.class_names


def current() -> Settings:
    """The settings the sidebar stored in this run (pages get them with :func:`widgets.entry.settings`)."""
    return st.session_state[_SETTINGS]


def store(s: Settings) -> None:
    st.session_state[_SETTINGS] = s


def _save(name: str) -> None:
    st.session_state[_KEPT + name] = st.session_state[name]


def kept(name: str, default: Any, options: list | None = None) -> dict[str, Any]:
    """Keyword arguments for a page's widget whose value should survive a visit to another page (Streamlit
    forgets the state of widgets a run does not draw). Use as ``st.radio(…, **kept("source", "Upload"))``."""
    ss = st.session_state
    if _KEPT + name not in ss:
        ss[_KEPT + name] = default
    # A kept value this widget does not offer now (e.g. "Draw" while a colour model is chosen) shows the default
    # but stays kept, so the choice comes back with a model that offers it; choosing anything replaces it.
    ss[name] = ss[_KEPT + name] if options is None or ss[_KEPT + name] in options else default
    return {"key": name, "on_change": _save, "args": (name,)}


def remember(name: str, value: Any) -> None:
    """Set a kept widget's value before it is drawn (a link's choice), or keep any value that is no widget's (an
    upload's bytes, a drawing) across pages: Streamlit forgets only widget state."""
    st.session_state[_KEPT + name] = value


def recall(name: str, default: Any = None) -> Any:
    """What :func:`remember` or a kept widget stored under ``name``, else ``default``."""
    return st.session_state.get(_KEPT + name, default)


def forget(name: str) -> None:
    """Drop what is kept under ``name`` (the user cleared it)."""
    st.session_state.pop(_KEPT + name, None)


def browser_session() -> tuple[str | None, Callable[[], bool] | None]:
    """This browser session's id, and a callback saying whether it is still connected (None where there is no
    connection to watch, e.g. under AppTest): background runs are cancelled a few seconds after the tab is closed."""
    ctx = get_script_run_ctx()
    if ctx is None:
        return None, None
    sid = ctx.session_id
    if not Runtime.exists():
        return sid, None
    runtime = Runtime.instance()
    if not runtime.is_active_session(sid):  # no websocket behind this session (a test harness)
        return sid, None
    return sid, lambda: runtime.is_active_session(sid)
