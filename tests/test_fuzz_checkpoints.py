"""Property-based tests of the checkpoint and σ-estimator readers: any file loads or is a ValueError.

Strategies: random bytes, truncations and byte flips of valid files (zip and legacy format),
valid containers with hostile fields (huge declared shapes, NaN/inf, wrong dtypes, nested
pickles, odd metadata), zip archives with odd or compressed members, and files whose declared
sizes are far larger than the file (checked in a subprocess for peak memory).
"""

from __future__ import annotations

import io
import math
import pickle
import struct
import subprocess
import sys
import zipfile
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from contract import loads_or_refuses, refuses
from hypothesis import example, given
from hypothesis import strategies as st

from rs_core.dual.estimator import load_dual
from rs_core.models.architectures import cifar_resnet20
from rs_core.models.checkpoints import CHECKPOINTS_DIR, load_checkpoint
from rs_core.untrusted import MAX_CLASSES

_DIR = None


def _workdir() -> Path:
    """One folder for the whole module (hypothesis examples cannot take function-scoped tmp_path)."""
    global _DIR
    if _DIR is None:
        import tempfile

        _DIR = Path(tempfile.mkdtemp(prefix="rs-fuzz-ckpt-"))
    return _DIR


def _valid_bytes(legacy: bool) -> bytes:
    path = _workdir() / f"valid_{legacy}.pth"
    if not path.exists():
        torch.manual_seed(0)
        obj = {"arch": "cifar_resnet20", "state_dict": cifar_resnet20().state_dict(), "epoch": 1,
               "meta": {"dataset": "cifar10", "sigma": 0.25}}
        torch.save(obj, path, _use_new_zipfile_serialization=not legacy)
    return path.read_bytes()


def _load_bytes(data: bytes, **kw):
    path = _workdir() / "candidate.pth"
    path.write_bytes(data)
    return loads_or_refuses(lambda: load_checkpoint(path, **kw), ("checkpoint:", "arch:"))


def _assert_usable(loaded) -> None:
    """What the rest of the tool relies on for an accepted file."""
    assert loaded.arch and 1 <= loaded.num_classes <= MAX_CLASSES
    assert all(torch.isfinite(p).all() for p in loaded.model.state_dict().values() if p.is_floating_point())
    assert not loaded.model.training
    assert loaded.sigma is None or (math.isfinite(loaded.sigma) and loaded.sigma >= 0)
    assert len(loaded.class_names) >= 1


# The 64-byte-class of file from the issue: a pickle memo lookup (BINGET) that the weights-only
# unpickler answers with KeyError, which escaped load_checkpoint before.
MEMO_LOOKUP = b"\x80\x02h\x05."


@given(st.binary(max_size=4096))
@example(MEMO_LOOKUP)
@example(b"\x80\x02}q\x00h\xff.")
@example(b"PK\x03\x04" + bytes(60))
def test_random_bytes_load_or_refuse(data):
    got = _load_bytes(data)
    assert got is None or _assert_usable(got) is None


@given(legacy=st.booleans(), cut=st.integers(0, 10**9))
def test_truncations_load_or_refuse(legacy, cut):
    data = _valid_bytes(legacy)
    got = _load_bytes(data[: cut % len(data)])
    assert got is None or _assert_usable(got) is None


@given(legacy=st.booleans(), flips=st.lists(st.tuples(st.integers(0, 10**9), st.integers(0, 255)), min_size=1,
                                            max_size=12))
def test_byte_flips_load_or_refuse(legacy, flips):
    data = bytearray(_valid_bytes(legacy))
    # Flips in the first and last 4 KB hit the pickles and the zip directory, not just tensor bytes.
    for pos, value in flips:
        region = pos % 3
        span = min(4096, len(data))
        i = (pos // 3) % span if region == 0 else len(data) - 1 - (pos // 3) % span if region == 1 else pos % len(data)
        data[i] = value
    got = _load_bytes(bytes(data))
    assert got is None or _assert_usable(got) is None


plain = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30) | st.binary(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12)

META_FIELDS = st.fixed_dictionaries({}, optional={
    "sigma": plain, "input_shape": plain | st.lists(st.integers(-5, 10**9), max_size=4), "num_classes": plain,
    "class_names": plain | st.lists(st.text(max_size=300), max_size=12), "dataset": plain, "kind": plain,
    "nested_pickle": st.just(pickle.dumps({"a": 1})), "extra": plain})


KINDS = ["nan", "inf", "int", "bool", "complex", "half", "shape", "huge", "sparse", "same"]


def _hostile_tensor(kind: str, like: torch.Tensor, where: int, shape: tuple[int, ...]) -> torch.Tensor:
    if kind == "nan":
        t = like.clone().float()
        t.view(-1)[where % like.numel()] = math.nan
        return t
    if kind == "inf":
        return torch.full_like(like.float(), -math.inf)
    if kind == "int":
        return like.to(torch.int32)
    if kind == "bool":
        return like != 0
    if kind == "complex":
        return like.to(torch.complex64)
    if kind == "half":
        return like.half()
    if kind == "shape":
        return torch.zeros(shape)
    if kind == "huge":  # a stride-0 view: a few bytes in the file, 10**8 × 64 declared
        return torch.zeros(1, 64).expand(10**8, 64)
    if kind == "sparse":
        return torch.zeros(3, 3).to_sparse()
    return like


KEYS = list(cifar_resnet20().state_dict())

# A recipe (small, so a failing example reads well); the file is built from it in the test.
recipes = st.fixed_dictionaries({
    "tensors": st.lists(st.tuples(st.sampled_from(KEYS), st.sampled_from(KINDS), st.integers(0, 10**6),
                                  st.lists(st.integers(1, 5), max_size=4).map(tuple)), max_size=3,
                       unique_by=lambda t: t[0]),  # one change per tensor: the file, not the test, is hostile
    "extra_key": st.none() | st.text(max_size=20),
    "arch": st.sampled_from(["cifar_resnet20", "mnist_cnn", "resnet50", None, 7, ""]),
    "meta": st.none() | META_FIELDS | plain,
    "state_dict": st.sampled_from(["real", None, [], {}, "x", {"a": 1}]),
})


def _build(recipe: dict) -> dict:
    torch.manual_seed(0)
    state = cifar_resnet20().state_dict()
    for key, kind, where, shape in recipe["tensors"]:
        state[key] = _hostile_tensor(kind, state[key], where, shape)
    if recipe["extra_key"] is not None:
        state[recipe["extra_key"]] = torch.zeros(2)
    obj: dict = {"arch": recipe["arch"], "state_dict": state if recipe["state_dict"] == "real"
                 else recipe["state_dict"]}
    if recipe["meta"] is not None:
        obj["meta"] = recipe["meta"]
    return obj


@given(recipe=recipes, legacy=st.booleans())
def test_hostile_fields_load_or_refuse(recipe, legacy):
    buf = io.BytesIO()
    torch.save(_build(recipe), buf, _use_new_zipfile_serialization=not legacy)
    got = _load_bytes(buf.getvalue())
    assert got is None or _assert_usable(got) is None


@pytest.mark.parametrize("weight, bias, message", [
    (torch.zeros(1, 64).expand(10**8, 64), torch.zeros(1).expand(10**8), r"declares \(100000000, 64\) but stores"),
    (torch.zeros(MAX_CLASSES + 1, 1), torch.zeros(MAX_CLASSES + 1), "scores 100,001 classes"),
], ids=["stride-0 view", "dense"])
def test_a_huge_final_layer_is_refused_before_the_model_is_built(weight, bias, message):
    """Before: get_architecture(arch, 10**8) tried to allocate 25.6 GB (RuntimeError escaped, or an OOM kill)."""
    state = cifar_resnet20().state_dict()
    state["1.fc.weight"], state["1.fc.bias"] = weight, bias
    buf = io.BytesIO()
    torch.save({"arch": "cifar_resnet20", "state_dict": state}, buf)
    path = _workdir() / "huge_fc.pth"
    path.write_bytes(buf.getvalue())
    refuses(lambda: load_checkpoint(path), "checkpoint:", message)


def _rezip(data: bytes, rename=None, compress: int = zipfile.ZIP_STORED, extra: dict | None = None) -> bytes:
    src = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=compress) as z:
        for info in src.infolist():
            name = rename(info.filename) if rename else info.filename
            z.writestr(name, src.read(info.filename))
        for name, payload in (extra or {}).items():
            z.writestr(name, payload)
    return out.getvalue()


@given(prefix=st.text(min_size=0, max_size=20), suffix=st.text(max_size=8), extra_name=st.text(max_size=40),
       compress=st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED]))
@example(prefix="../../", suffix="", extra_name="/etc/passwd", compress=zipfile.ZIP_STORED)
def test_zip_members_with_odd_names_load_or_refuse(prefix, suffix, extra_name, compress):
    data = _valid_bytes(legacy=False)
    try:
        odd = _rezip(data, rename=lambda n: prefix + n + suffix, compress=compress,
                     extra={extra_name or "x": b"payload"})
    except Exception:  # noqa: BLE001 — a name zipfile itself cannot write (e.g. "\x00"): no one can send that file
        return
    got = _load_bytes(odd)
    assert got is None or _assert_usable(got) is None


def _peak_rss_mb_loading(path: Path) -> tuple[float, float, str]:
    """(peak RSS before, peak RSS after, message) of load_checkpoint in a fresh process."""
    code = (
        "import resource, sys\n"
        "from rs_core.models.checkpoints import load_checkpoint\n"
        "import torch\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024\n"
        "try:\n    load_checkpoint(sys.argv[1]); msg = 'loaded'\n"
        "except ValueError as err:\n    msg = 'ValueError: ' + str(err)\n"
        "after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024\n"
        "print(before, after, msg, sep='\\t')\n")
    proc = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=300, check=False,
                          cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 0, proc.stderr[-2000:]
    before, after, msg = proc.stdout.strip().split("\t", 2)
    return float(before), float(after), msg


def test_a_zip_bomb_member_is_refused_before_it_is_inflated():
    """torch.load inflates a deflated member fully before checking it (before this check: +400 MB peak)."""
    data = _valid_bytes(legacy=False)
    src = zipfile.ZipFile(io.BytesIO(data))
    path = _workdir() / "bomb.pth"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for info in src.infolist():
            payload = src.read(info.filename)
            if info.filename.endswith("/data/0"):
                with z.open(info.filename, "w", force_zip64=True) as f:
                    for _ in range(400):
                        f.write(bytes(2**20))
            else:
                z.writestr(info.filename, payload)
    assert path.stat().st_size < 5 * 2**20
    before, after, msg = _peak_rss_mb_loading(path)
    assert msg.startswith("ValueError: checkpoint:") and "compressed members" in msg, msg
    assert after - before < 100, f"peak RSS grew by {after - before:.0f} MB"


def _legacy_file_declaring(numel: int) -> bytes:
    """Legacy-format file whose pickle declares a float storage of ``numel`` elements but holds 16 bytes."""
    buf = io.BytesIO()
    for obj in (0x1950A86A20F9469CFC6C, 1001,
                {"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}}):
        pickle.dump(obj, buf, protocol=2)

    class Tensor:
        def __reduce__(self):
            return (torch._utils._rebuild_tensor_v2, ("STORAGE", 0, (numel,), (1,), False, OrderedDict()))

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            return ("storage", torch.FloatStorage, "0", "cpu", numel, None) if obj == "STORAGE" else None

    Pickler(buf, protocol=2).dump({"1.fc.weight": Tensor()})
    pickle.dump(["0"], buf, protocol=2)
    buf.write(struct.pack("<q", 4) + bytes(16))
    return buf.getvalue()


@pytest.mark.parametrize("numel", [2 * 10**9, 10**12])
def test_a_legacy_file_declaring_gigabytes_is_refused_without_using_them(numel):
    path = _workdir() / f"legacy_{numel}.pth"
    path.write_bytes(_legacy_file_declaring(numel))
    before, after, msg = _peak_rss_mb_loading(path)
    assert msg.startswith("ValueError: checkpoint:"), msg
    assert after - before < 100, f"peak RSS grew by {after - before:.0f} MB"


# σ-estimators: the shipped MNIST estimator with hostile metadata.
SHIPPED_ESTIMATOR = CHECKPOINTS_DIR / "mnist/dual/sigma_estimator.pth.tar"


def _shipped_meta_with_absolute_paths() -> dict:
    """The shipped estimator's metadata, its experts' paths made absolute (the copy lives elsewhere)."""
    meta = dict(torch.load(SHIPPED_ESTIMATOR, weights_only=True)["meta"])
    meta["experts"] = [dict(e, path=str((SHIPPED_ESTIMATOR.parent / e["path"]).resolve())) for e in meta["experts"]]
    return meta


@st.composite
def estimator_meta(draw):
    meta = _shipped_meta_with_absolute_paths()
    for key in draw(st.lists(st.sampled_from(["sigmas", "experts", "sigma_e", "kind", "num_classes"]), max_size=3,
                             unique=True)):
        meta[key] = draw(plain)
    experts = meta.get("experts")
    if draw(st.booleans()) and isinstance(experts, list) and experts and isinstance(experts[0], dict):
        entry = dict(experts[0])
        entry[draw(st.sampled_from(["sigma", "path", "sha256"]))] = draw(
            plain | st.sampled_from(["../../../../etc/passwd", "/dev/zero", "", ".", "noise_0.25"]))
        meta["experts"] = [entry, *experts[1:]]
    return meta


def test_the_shipped_estimator_loads_from_a_copy_with_absolute_expert_paths():
    """The baseline the property varies is itself accepted (so the property also exercises success)."""
    obj = torch.load(SHIPPED_ESTIMATOR, weights_only=True)
    obj["meta"] = _shipped_meta_with_absolute_paths()
    path = _workdir() / "estimator_ok.pth.tar"
    torch.save(obj, path)
    _, experts = load_dual(path)
    assert sorted(experts) == [0.25, 0.5, 1.0]


@given(meta=estimator_meta())
def test_sigma_estimators_with_hostile_metadata_load_or_refuse(meta):
    obj = torch.load(SHIPPED_ESTIMATOR, weights_only=True)
    obj["meta"] = meta
    path = _workdir() / "estimator.pth.tar"
    torch.save(obj, path)
    got = loads_or_refuses(lambda: load_dual(path), ("estimator:", "experts:", "checkpoint:", "arch:"))
    if got is not None:
        est, experts = got
        assert sorted(experts) == sorted(float(s) for s in est.meta["sigmas"])
