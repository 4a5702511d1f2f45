"""rs_core/models/shipped.py: what ships in checkpoints/, by stable id."""

import json

from rs_core.models.checkpoints import CHECKPOINTS_DIR
from rs_core.models.shipped import (
    SHIPPED_LOG_ALPHA,
    default_model,
    find_model,
    shipped_estimators,
    shipped_logs,
    shipped_models,
)


def test_every_indexed_model_has_an_id_that_finds_it_and_a_file():
    index = json.loads((CHECKPOINTS_DIR / "index.json").read_text())["checkpoints"]
    models = shipped_models()
    classifiers = [e["path"] for e in index if e.get("kind") != "denoiser"]
    assert [m.path.relative_to(CHECKPOINTS_DIR).as_posix() for m in models] == classifiers
    for m in models:
        assert find_model(m.id) == m and m.path.is_file() and m.path.parent.as_posix().endswith(m.id)
        assert m.label.startswith(m.short_label)
    assert find_model("../mnist") is None and find_model("") is None


def test_the_default_model_is_mnists_cnn_at_half():
    m = default_model()
    assert (m.dataset, m.arch, m.sigma) == ("mnist", "mnist_cnn", 0.5)


def test_logs_sit_next_to_their_models_and_name_their_data_set():
    logs = shipped_logs()
    singles = [log for log in logs if log.kind == "single"]
    # A noise-trained model's log is at its own σ; a clean model's at the σ it was smoothed with.
    assert singles and all(log.path.is_file() and find_model(log.model_id).sigma in (log.sigma, 0.0)
                           for log in singles)
    assert all(log.path.parent == find_model(log.model_id).path.parent for log in singles)
    duals = [log for log in logs if log.kind == "dual"]
    assert {log.dataset for log in duals} == {e.dataset for e in shipped_estimators()}
    assert all(log.alpha == SHIPPED_LOG_ALPHA for log in logs)
    assert len({log.id for log in logs}) == len(logs)


def test_estimators_are_found_by_data_set():
    ests = shipped_estimators()
    assert ests and all(e.path.is_file() and e.id == f"{e.dataset}/dual" for e in ests)


def test_denoisers_are_listed_apart_from_the_classifiers_and_load_as_denoisers():
    from rs_core.models.denoisers import load_denoiser
    from rs_core.models.shipped import find_denoiser, shipped_denoisers

    dens = shipped_denoisers()
    assert dens, "the shipped denoisers (checkpoints/*/denoisers/) are indexed"
    model_paths = {m.path for m in shipped_models()}
    for d in dens:
        assert d.path not in model_paths and find_denoiser(d.id) == d
        loaded = load_denoiser(d.path)
        assert loaded.sigma == d.sigma and loaded.meta["objective"] == d.objective
        assert tuple(loaded.input_shape) == d.input_shape


def test_clean_classifiers_are_labelled_as_such():
    clean = [m for m in shipped_models() if m.sigma == 0]
    assert clean and all("clean" in m.label and "σ =" not in m.label for m in clean)
