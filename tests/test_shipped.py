"""rs_core/models/shipped.py: what ships in checkpoints/, by stable id."""

import functools
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from rs_core.data import dataset_info
from rs_core.models.checkpoints import CHECKPOINTS_DIR
from rs_core.models.shipped import (
    SHIPPED_LOG_ALPHA,
    default_model,
    family_models,
    find_model,
    shipped_estimators,
    shipped_logs,
    shipped_models,
)
from rs_core.rounding import COHEN_CONVERSION_RULE, convert_cohen_log_text, floor_str, lower_str_from_cohen_format
from rs_core.smoothing.bounds import max_certifiable_radius
from rs_core.smoothing.noises import get_noise
from rs_core.smoothing.results import decide
from rs_core.smoothing.stats import clopper_pearson_lower_complement


def test_every_indexed_model_has_an_id_that_finds_it_and_a_file():
    index = json.loads((CHECKPOINTS_DIR / "index.json").read_text())["checkpoints"]
    models = shipped_models()
    classifiers = [e["path"] for e in index if e.get("kind") != "denoiser"]
    assert [m.path.relative_to(CHECKPOINTS_DIR).as_posix() for m in models] == classifiers
    for m in models:
        assert find_model(m.id) == m and m.path.is_file() and m.path.parent.as_posix().endswith(m.id)
        assert m.label.startswith(m.short_label)
        # The model menu says how each noise-trained model was trained (issue 28: models differ by recipe).
        assert m.sigma == 0 or (m.recipe and m.recipe in m.label)
    assert find_model("../mnist") is None and find_model("") is None


def test_the_default_model_is_mnists_cnn_at_half():
    m = default_model()
    assert (m.dataset, m.arch, m.sigma, m.noise) == ("mnist", "mnist_cnn", 0.5, "gaussian")
    assert m in family_models() and (m.default or not any(o.default for o in shipped_models()))


def test_a_default_mark_chooses_the_model_of_its_sigma_and_survives_a_rebuilt_index(tmp_path):
    from rs_core.models import shipped
    from rs_core.models.architectures import get_architecture
    from rs_core.models.checkpoints import read_index, save_checkpoint, write_index

    folders = {"consistency10_0.50": (0.5, 10.0, 60), "noise_0.50": (0.5, 5.0, 20), "noise_1.00": (1.0, 5.0, 20)}
    for folder, (sigma, lam, epochs) in folders.items():
        path = tmp_path / "mnist" / "mnist_cnn" / folder / "checkpoint.pth.tar"
        save_checkpoint(path, get_architecture("mnist_cnn"), "mnist_cnn", epoch=epochs, meta={
            "dataset": "mnist", "sigma": sigma,
            "recipe": {"sigma": sigma, "epochs": epochs, "objective": "consistency", "consistency": lam}})
        (path.parent / f"sigma_{sigma:.2f}").write_text("idx\tlabel\tpredict\tradius\tcorrect\ttime\n")
    write_index(tmp_path)
    # Unmarked: every model is in the σ family and the app opens with the first one at σ = 0.5.
    assert len(family_models(tmp_path)) == 3
    assert default_model(tmp_path).id == "mnist/mnist_cnn/consistency10_0.50"
    assert [m.id.split("/")[-1] for m in shipped.menu_models(tmp_path)] == ["consistency10_0.50", "noise_0.50",
                                                                             "noise_1.00"]
    index = tmp_path / "index.json"
    doc = json.loads(index.read_text())
    for e in doc["checkpoints"]:
        e["default"] = e["path"].startswith("mnist/mnist_cnn/noise_0.50/")
    index.write_text(json.dumps(doc))
    write_index(tmp_path)  # a rebuilt index keeps the hand-set mark
    assert [e["path"].split("/")[2] for e in read_index(tmp_path) if e.get("default")] == ["noise_0.50"]
    shipped._models.cache_clear()  # the index was rewritten under the cache's feet
    shipped._menu.cache_clear()
    assert default_model(tmp_path).id == "mnist/mnist_cnn/noise_0.50"
    # The menu lists by σ, and at σ = 0.5 the marked model first.
    assert [m.id.split("/")[-1] for m in shipped.menu_models(tmp_path)] == ["noise_0.50", "consistency10_0.50",
                                                                             "noise_1.00"]
    assert [m.id.split("/")[-1] for m in family_models(tmp_path)] == ["noise_0.50", "noise_1.00"]
    # Two models at σ = 0.5: the menu and their logs' labels tell them apart by recipe; σ = 1.0's log needs no recipe.
    labels = {m.id.split("/")[-1]: m.label for m in shipped_models(tmp_path)}
    assert "consistency λ = 10, 60 epochs" in labels["consistency10_0.50"]
    assert "consistency λ = 5, 20 epochs" in labels["noise_0.50"]
    logs = {log.model_id.split("/")[-1]: log.label for log in shipped_logs(tmp_path)}
    assert logs == {"consistency10_0.50": "mnist · mnist_cnn · σ = 0.50 · consistency λ = 10, 60 epochs",
                    "noise_0.50": "mnist · mnist_cnn · σ = 0.50 · consistency λ = 5, 20 epochs",
                    "noise_1.00": "mnist · mnist_cnn · σ = 1.00"}


def test_each_model_says_its_training_noise_as_its_file_does():
    from rs_core.models.checkpoints import load_checkpoint

    for m in shipped_models():
        assert m.noise == load_checkpoint(m.path).noise
        assert (m.noise in m.short_label) == (m.noise != "gaussian")  # Gaussian stays unnamed, as always


def test_a_file_without_a_noise_is_gaussian_where_it_names_a_sigma():
    from rs_core.models.checkpoints import LoadedModel

    def loaded(meta):
        return LoadedModel(model=None, arch="x", num_classes=2, input_shape=(1, 2, 2), meta=meta, path="f",
                           sha256="0", fmt="checkpoint")

    assert loaded({"sigma": 0.5}).noise == "gaussian" and loaded({}).noise is None
    assert loaded({"sigma": 0.5, "noise": "laplace"}).noise == "laplace"


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


# --- Every shipped certify log follows the README's rounding rule (issue 27) ---

_LOG_HEADER = ("idx", "label", "predict", "radius")  # certify logs, and their .radii.tsv / .dual.tsv companions
_FOUR_DECIMALS = re.compile(r"[0-9]+\.[0-9]{4}")
# The dual RS logs have no .meta.json; checkpoints/README.md: N = 10,000 per stage, α = 0.001 split evenly, σ_e = 1.0.
_DUAL_N, _DUAL_STAGE_ALPHA, _DUAL_SIGMA_E = 10_000, SHIPPED_LOG_ALPHA / 2, 1.0


def _shipped_certify_logs(root: Path = CHECKPOINTS_DIR) -> list[Path]:
    """Every text file under checkpoints/ whose header is a certify log's (whatever its folder or name)."""
    out = []
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.suffix not in (".tar", ".json", ".md", ".csv", ".py"):
            with p.open("rb") as f:
                if f.readline().decode("utf-8", "replace").rstrip("\n").split("\t")[:4] == list(_LOG_HEADER):
                    out.append(p)
    return out


def _rows(text: str) -> tuple[list[str], list[dict[str, str]]]:
    lines = text.splitlines()
    header = lines[0].split("\t")
    return header, [dict(zip(header, line.split("\t"), strict=True)) for line in lines[1:]]


@functools.cache
def _attainable(n: int, alpha: float, sigma: float, cohen_converted: bool, noise: str = "gaussian",
                norm: str = "l2", d: int = 1) -> frozenset[str]:
    """Every radius CERTIFY can write with n estimation samples at α and σ — σ·Φ⁻¹(pA_lower) for some count k
    (or the radius of the log's noise and norm, on inputs of dimension d), Clopper–Pearson, rounded down to 4
    decimals; or, for a converted log, the Cohen-format f"{r:.3}" of it lowered by the stated rule. The logs carry
    no counts, so this is the row-by-row check they allow."""
    k = np.arange(n // 2, n + 1)
    out = set()
    dist = get_noise(noise, sigma)
    for q in clopper_pearson_lower_complement(k, n, alpha):
        _, radius, ok = decide(float(q), sigma, dist, norm, d)
        if ok:
            out.add(lower_str_from_cohen_format(f"{radius:.3}") if cohen_converted else floor_str(radius))
    return frozenset(out)


def _meta(log: Path) -> dict | None:
    path = log.with_name(log.name + ".meta.json")
    return json.loads(path.read_text()) if path.exists() else None


def _check_log(log: Path, text: str, meta: dict | None) -> list[str]:
    """What is wrong with one shipped log (its text and its .meta.json), as messages; [] when it follows the rule."""
    name = log.relative_to(CHECKPOINTS_DIR).as_posix()
    header, rows = _rows(text)
    problems = [f"{name}: {col} {row[col]!r} (idx {row['idx']}) is not written with 4 decimals"
                for row in rows for col in header if col.startswith("radius") and row[col] != ""
                and not _FOUR_DECIMALS.fullmatch(row[col])]
    if problems or log.name.endswith((".radii.tsv", ".dual.tsv")):
        return problems[:5]  # the companions' radii are checked with their log
    abstain = [r["idx"] for r in rows if r["predict"] == "-1" and (r["radius"] != "0.0000" or r["correct"] != "0")]
    problems += [f"{name}: abstentions {abstain[:5]} must have radius 0.0000 and correct 0"] if abstain else []
    certified = [r for r in rows if r["predict"] != "-1"]
    if log.name == "certify_dual":  # no meta; each stage at α/2, the radius is min(R_σ, R_c) of .dual.tsv
        _, stages = _rows(log.with_name(log.name + ".dual.tsv").read_text())
        assert [s["idx"] for s in stages] == [r["idx"] for r in rows]
        for row, s in zip(rows, stages, strict=True):
            if row["radius"] != s["radius"] or (row["predict"] != "-1" and (
                    s["radius_class"] not in _attainable(_DUAL_N, _DUAL_STAGE_ALPHA, float(s["sigma"]), False)
                    or s["radius_sigma"] not in _attainable(_DUAL_N, _DUAL_STAGE_ALPHA, _DUAL_SIGMA_E, False)
                    or float(row["radius"]) != min(float(s["radius_sigma"]), float(s["radius_class"])))):
                problems.append(f"{name}: idx {row['idx']}: radius {row['radius']} is not what the stages certify")
        return problems[:5]
    if meta is None:
        return [*problems, f"{name}: has no .meta.json (N, α, σ and how it was made are unknown)"]
    conversion = meta.get("radius_conversion")
    if conversion is not None and conversion.get("rule") != COHEN_CONVERSION_RULE:
        problems.append(f"{name}: converted by another rule than COHEN_CONVERSION_RULE: {conversion.get('rule')!r}")
    if meta.get("N") is None:  # adaptive CERTIFY: the largest of the asked radii decided, or none
        allowed = {floor_str(r) for r in meta["radii"]} | {"0.0000"}
        wrong = [r["radius"] for r in certified if r["radius"] not in allowed]
    else:
        sigma, n, alpha = float(meta["sigma"]), int(meta["N"]), float(meta["alpha"])
        noise, norm = meta.get("noise", "gaussian"), meta.get("norm", "l2")
        d = math.prod(dataset_info(meta["dataset"]).input_shape) if norm == "linf" else 1  # ℓ∞ radii depend on d
        ceiling = get_noise(noise, sigma).radius(1 - clopper_pearson_lower_complement(n, n, alpha), norm, d)
        if (noise, norm) == ("gaussian", "l2"):
            assert ceiling == pytest.approx(max_certifiable_radius(n, alpha, sigma), rel=1e-9)
        wrong = [r["radius"] for r in certified if float(r["radius"]) > ceiling
                 or r["radius"] not in _attainable(n, alpha, sigma, conversion is not None, noise, norm, d)]
    if wrong:
        problems.append(f"{name}: {len(wrong)} radii no count at the log's N, α and σ gives when rounded down, "
                        f"e.g. {wrong[:5]}")
    return problems


def test_the_shipped_logs_are_found_wherever_they_are():
    logs = {p.relative_to(CHECKPOINTS_DIR).as_posix() for p in _shipped_certify_logs()}
    singles = {log.path.relative_to(CHECKPOINTS_DIR).as_posix() for log in shipped_logs()}
    assert singles <= logs and len(singles) >= 11
    assert {"mnist/dual/certify_dual.dual.tsv", "mnist/mnist_cnn/noise_0.50/adaptive/radii_0.50",
            "mnist/denoisers/dncnn_mnist/noise_0.50_mse/sigma_0.50"} <= logs


def test_every_shipped_log_writes_radii_rounded_down_to_4_decimals():
    """README: radii are written with 4 decimals, rounded down. Each log is re-certified by the CLI (its .meta.json
    says how) or, where re-certifying costs CPU hours (partial CIFAR-10), converted from Cohen et al.'s {:.3} by
    the stated rule and marked so; every radius must be one that a count at the log's N, α and σ gives."""
    problems = []
    for log in _shipped_certify_logs():
        problems += _check_log(log, log.read_text(), _meta(log))
    assert not problems, "\n".join(problems)
    converted = {p.relative_to(CHECKPOINTS_DIR).parts[0] for p in _shipped_certify_logs()
                 if (_meta(p) or {}).get("radius_conversion")}
    assert converted == {"cifar10-partial"}, "only the partial CIFAR-10 logs may be converted instead of re-certified"


def test_the_rule_check_refuses_cohen_format_and_rounded_up_radii():
    """The check above fails on the logs as first shipped ({:.3}, no metadata), on a radius rounded up to 4
    decimals, and on a Cohen-format log that says it was converted but was not."""
    log = CHECKPOINTS_DIR / "mnist/mnist_cnn/noise_0.50/sigma_0.50"
    meta = {"sigma": 0.5, "N": 10_000, "alpha": 0.001}
    first = "idx\tlabel\tpredict\tradius\tcorrect\ttime\n0\t7\t7\t1.6\t1\t0:00:00.9\n60\t7\t-1\t0.0\t0\t0:00:00.1\n"
    assert any("4 decimals" in p for p in _check_log(log, first, meta))
    assert any("no .meta.json" in p for p in _check_log(log, convert_cohen_log_text(first), None))
    top = floor_str(max_certifiable_radius(10_000, 0.001, 0.5))  # 1.5992
    ok = f"idx\tlabel\tpredict\tradius\tcorrect\ttime\n0\t7\t7\t{top}\t1\t0:00:00.9\n"
    assert _check_log(log, ok, meta) == []
    assert _check_log(log, ok.replace(top, "1.5993"), meta)  # rounded up: above the largest certifiable radius
    assert _check_log(log, ok.replace(top, "1.2458"), meta)  # 1.24579… rounded to nearest: no count gives it
    converted = {**meta, "radius_conversion": {"rule": COHEN_CONVERSION_RULE}}
    assert _check_log(log, convert_cohen_log_text(first), converted) == []
    assert _check_log(log, ok, converted)  # said converted, but 1.5992 is no converted Cohen-format radius
    # A Laplace ℓ1 log is checked with Laplace's radius: its top radius is no Gaussian one, and the reverse.
    lap = {**meta, "noise": "laplace", "norm": "l1"}
    top_l1 = floor_str(get_noise("laplace", 0.5).radius(1 - clopper_pearson_lower_complement(10_000, 10_000, 0.001),
                                                       "l1"))
    assert _check_log(log, ok.replace(top, top_l1), lap) == [] and _check_log(log, ok, lap)
    assert _check_log(log, ok.replace(top, top_l1), meta)
