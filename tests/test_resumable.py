"""rs_core/logs/resumable.py: a killed run's rows are kept whole, merged once, sorted; other settings are refused."""

from __future__ import annotations

import json

import pytest

from rs_core.logs.certify_logs import CERTIFY_HEADER
from rs_core.logs.resumable import ResumableLogs, merge

HEADER = "\t".join(CERTIFY_HEADER)
RECORD = {"command": "certify", "sigma": 0.5, "N": 100, "base_classifier": {"file": "m.pth", "sha256": "a" * 64}}
IDENTITY = ("command", "sigma", "N", "base_classifier.sha256")


def _row(i: int) -> str:
    return f"{i}\t7\t7\t0.5\t1\t0:00:01"


def test_merge_keeps_complete_rows_once_sorted_and_removes_the_parts(tmp_path):
    log = tmp_path / "log"
    log.write_text(f"{HEADER}\n{_row(0)}\n{_row(20)}\n")
    (tmp_path / "log.part0").write_text(f"{_row(40)}\n{_row(80)}\n8")  # killed mid-row: "8" is dropped
    (tmp_path / "log.part1").write_text(f"{_row(60)}\n90\t7\n{_row(20)}\n")  # 20 twice: kept once; 90 mangled
    (tmp_path / "log.part2").write_text("")
    rows = merge(log, CERTIFY_HEADER)
    assert sorted(rows) == [0, 20, 40, 60, 80]
    assert log.read_text() == HEADER + "\n" + "".join(_row(i) + "\n" for i in (0, 20, 40, 60, 80))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["log"]


def test_a_fresh_run_writes_the_record_and_a_rerun_skips_what_is_done(tmp_path):
    out = tmp_path / "sub" / "log"
    logs = ResumableLogs({out: CERTIFY_HEADER}, RECORD, IDENTITY)
    assert logs.prepare() == set()
    assert json.loads((tmp_path / "sub" / "log.meta.json").read_text()) == RECORD
    logs.open()
    logs.write(out, _row(0).split("\t"))
    logs.close()  # killed before finish(): the row is on disk
    out.write_text(out.read_text() + "20\t7")  # and half of the next one
    again = ResumableLogs({out: CERTIFY_HEADER}, RECORD, IDENTITY)
    assert again.prepare() == {0}
    assert out.read_text() == f"{HEADER}\n{_row(0)}\n"  # the half row is gone before anything is appended


@pytest.mark.parametrize(("change", "named"), [
    ({"sigma": 0.25}, "sigma was 0.5, now 0.25"),
    ({"base_classifier": {"file": "m.pth", "sha256": "b" * 64}}, "base_classifier.sha256 was"),
])
def test_a_log_made_with_other_settings_is_refused_and_left_alone(tmp_path, change, named):
    out = tmp_path / "log"
    ResumableLogs({out: CERTIFY_HEADER}, RECORD, IDENTITY).prepare()
    out.write_text(f"{HEADER}\n{_row(0)}\n")
    before = out.read_text()
    with pytest.raises(ValueError, match=f"^resume: log was made with other settings \\({named}"):
        ResumableLogs({out: CERTIFY_HEADER}, RECORD | change, IDENTITY).prepare()
    assert out.read_text() == before
    # --overwrite starts over.
    assert ResumableLogs({out: CERTIFY_HEADER}, RECORD | change, IDENTITY, overwrite=True).prepare() == set()
    assert not out.exists() or out.read_text() == HEADER + "\n"


def test_a_log_without_its_record_or_of_another_kind_is_refused(tmp_path):
    out = tmp_path / "log"
    out.write_text(f"{HEADER}\n{_row(0)}\n")
    with pytest.raises(ValueError, match=r"^resume: log exists without log.meta.json"):
        ResumableLogs({out: CERTIFY_HEADER}, RECORD, IDENTITY).prepare()
    (tmp_path / "log.meta.json").write_text(json.dumps(RECORD))
    out.write_text("idx\tlabel\tpredict\tcorrect\ttime\n")
    with pytest.raises(ValueError, match=r"^resume: log is not a log of this command"):
        ResumableLogs({out: CERTIFY_HEADER}, RECORD, IDENTITY).prepare()


def test_an_example_is_done_only_when_every_file_has_its_row(tmp_path):
    out, side = tmp_path / "log", tmp_path / "log.dual.tsv"
    files = {out: CERTIFY_HEADER, side: ["idx", "x"]}
    ResumableLogs(files, RECORD, IDENTITY).prepare()
    out.write_text(f"{HEADER}\n{_row(0)}\n{_row(1)}\n")
    side.write_text("idx\tx\n0\ta\n")  # killed between the two files' rows of example 1
    assert ResumableLogs(files, RECORD, IDENTITY).prepare() == {0}


def test_records_older_than_an_identity_key_count_as_its_default(tmp_path):
    out = tmp_path / "log"
    ResumableLogs({out: CERTIFY_HEADER}, RECORD, IDENTITY).prepare()  # written before "fast" existed
    out.write_text(f"{HEADER}\n{_row(0)}\n")
    plain = {"autocast": None}
    logs = ResumableLogs({out: CERTIFY_HEADER}, RECORD | {"fast": plain}, (*IDENTITY, "fast"),
                         defaults={"fast": plain})
    assert logs.prepare() == {0}
    (tmp_path / "log.meta.json").write_text(json.dumps(RECORD))  # the old record again
    with pytest.raises(ValueError, match=r"fast was \{\"autocast\": null\}, now \{\"autocast\": \"bf16\"\}"):
        ResumableLogs({out: CERTIFY_HEADER}, RECORD | {"fast": {"autocast": "bf16"}}, (*IDENTITY, "fast"),
                      defaults={"fast": plain}).prepare()


@pytest.mark.parametrize(("change", "named"), [
    ({"noise": "laplace", "norm": "l1"}, "noise was \"gaussian\", now \"laplace\""),
    ({"norm": "l1"}, "norm was \"l2\", now \"l1\""),
])
def test_a_certify_log_resumes_only_with_its_noise_and_norm(tmp_path, change, named):
    """Issue 30: the noise and the norm are part of a certify log's settings. A record from before noises existed
    (none in it) was Gaussian ℓ2 and resumes as such; another noise or norm is refused by name."""
    from rs_core.cli.main import FAST_DEFAULT, SAMPLING_IDENTITY

    out = tmp_path / "log"
    old = RECORD | {"fast": FAST_DEFAULT["fast"]}
    ResumableLogs({out: CERTIFY_HEADER}, old, SAMPLING_IDENTITY).prepare()
    out.write_text(f"{HEADER}\n{_row(0)}\n")
    now = old | {"noise": "gaussian", "norm": "l2"}
    assert ResumableLogs({out: CERTIFY_HEADER}, now, SAMPLING_IDENTITY, defaults=FAST_DEFAULT).prepare() == {0}
    with pytest.raises(ValueError, match=f"^resume: log was made with other settings \\({named}"):
        ResumableLogs({out: CERTIFY_HEADER}, now | change, SAMPLING_IDENTITY, defaults=FAST_DEFAULT).prepare()
    assert out.read_text() == f"{HEADER}\n{_row(0)}\n"
