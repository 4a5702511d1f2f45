"""rs_core/logs/attack_logs.py: attack logs written and read back, bad files refused by name and line, pairing
with certify logs, empirical robust accuracy, the gap and soundness alarms."""

import json
import math

import numpy as np
import pytest

from rs_core.logs.attack_logs import (
    ATTACK_LOG_HEADER,
    NO_CLASS,
    ceil_str,
    empirical_accuracy,
    format_row,
    gap_rows,
    pair_logs,
    read_attack_log,
    soundness_alarms,
)
from rs_core.logs.certify_logs import read_certify_log

ROWS = [(0, 7, 7, 0.812345, 3, 1.5, "pgd", 20, 4.0, 32), (20, 9, 9, math.inf, None, 1.25, "pgd", 20, 4.0, 32),
        (40, 1, 2, 0.1, 1, 0.5, "ddn", 7, 4.0, 32), (60, 4, -1, 2.0, 4, 0.5, "boundary", 100, 4.0, 32)]


def write_log(path, rows=ROWS, header=ATTACK_LOG_HEADER):
    lines = ["\t".join(header)] + ["\t".join(format_row(*r)) for r in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_round_trip_keeps_every_field_and_rounds_distances_up(tmp_path):
    log = read_attack_log(write_log(tmp_path / "attack_0.50"))
    assert log.idx.tolist() == [0, 20, 40, 60] and log.true_label.tolist() == [7, 9, 1, 4]
    assert log.predict.tolist() == [7, 9, 2, -1]
    # 0.812345 is written 0.8124 (up: an adversarial example exists at the distance found, so never below it)
    assert log.distance[0] == 0.8124 and math.isinf(log.distance[1])
    assert log.distance[2] == 0.1001  # the float 0.1 is 0.1000000000000000055…: up is 0.1001
    assert log.adv_predict.tolist() == [3, NO_CLASS, 1, 4]
    assert log.method == ["pgd", "pgd", "ddn", "boundary"] and log.steps.tolist() == [20, 20, 7, 100]
    assert log.m.tolist() == [32] * 4 and log.seconds.tolist() == [1.5, 1.25, 0.5, 0.5]
    assert log.label == "attack σ = 0.50"
    assert ceil_str(0.81230000001) == "0.8124" and ceil_str(0.3, 2) == "0.30" and ceil_str(math.inf) == "inf"


def test_empirical_accuracy_counts_correct_rows_with_no_attack_within_r(tmp_path):
    log = read_attack_log(write_log(tmp_path / "a"))
    # row 0: correct, broken at 0.8124; row 1: correct, never broken; row 2: wrong; row 3: abstained
    assert empirical_accuracy(log, [0.0, 0.8, 0.8124, 1.0, 100]).tolist() == [0.5, 0.5, 0.25, 0.25, 0.25]


def test_the_six_column_form_reads_too(tmp_path):
    path = tmp_path / "short"
    path.write_text("idx\tlabel\tpredict\tadv_distance\tadv_predict\ttime\n3\t1\t1\tinf\tnone\t0:00:01.5\n")
    log = read_attack_log(path)
    assert log.method is None and log.seconds.tolist() == [1.5] and math.isinf(log.distance[0])


@pytest.mark.parametrize(("line", "why"), [
    ("0\t7\t7\t-0.5\t3\t1.0", "adv_distance: expected a number >= 0 or inf"),
    ("0\t7\t7\tnan\t3\t1.0", "adv_distance: expected a number >= 0 or inf"),
    ("0\t7\t7\t0.5\tnone\t1.0", "adv_predict: is none but adv_distance is 0.5"),
    ("0\t7\t7\tinf\t3\t1.0", "adv_predict: is 3 but adv_distance is inf"),
    ("0\t7\t7\t0.5\t7\t1.0", "adv_predict: 7 is the clean prediction"),
    ("0\t7\t7\t0.5\t-1\t1.0", "adv_predict: -1 is outside"),
    ("0\t7\t7\t0.5\t3", "expected 6 tab-separated fields, got 5"),
    ("0\t7\tx\t0.5\t3\t1.0", "predict: expected an integer"),
    ("0\t7\t7\t0.5\t3\t-2", "time: expected seconds"),
], ids=["negative", "nan", "none but found", "class but inf", "same class", "abstain", "short", "predict", "time"])
def test_bad_rows_are_refused_naming_the_file_and_line(tmp_path, line, why):
    path = tmp_path / "bad_log"
    path.write_text("idx\tlabel\tpredict\tadv_distance\tadv_predict\ttime\n1\t2\t2\tinf\tnone\t1.0\n" + line + "\n")
    with pytest.raises(ValueError, match=r"^log: bad_log line 3: " + why.replace("(", r"\(")):
        read_attack_log(path)


def test_bad_files_are_refused_by_name(tmp_path):
    certify = tmp_path / "sigma_0.50"
    certify.write_text("idx\tlabel\tpredict\tradius\tcorrect\ttime\n0\t7\t7\t1.0\t1\t1.0\n")
    with pytest.raises(ValueError, match=r"^log: sigma_0.50 is not an attack log"):
        read_attack_log(certify)
    (tmp_path / "empty").write_text("")
    with pytest.raises(ValueError, match=r"^log: empty is empty"):
        read_attack_log(tmp_path / "empty")
    (tmp_path / "binary").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ValueError, match=r"^log: binary is not UTF-8"):
        read_attack_log(tmp_path / "binary")
    twice = write_log(tmp_path / "twice", ROWS + ROWS[:1])
    with pytest.raises(ValueError, match=r"^log: twice line 6: idx 0 appears twice"):
        read_attack_log(twice)
    with pytest.raises(ValueError, match=r"^log: no such file"):
        read_attack_log(tmp_path / "missing")
    bad_method = write_log(tmp_path / "method", [(0, 7, 7, 0.5, 3, 1.0, "pgd", 20, 4.0, 32)])
    bad_method.write_text(bad_method.read_text().replace("pgd", "fgsm"))
    with pytest.raises(ValueError, match=r"^log: method line 2: method: expected one of pgd, ddn, boundary"):
        read_attack_log(bad_method)


def certify_log(path, rows):
    path.write_text("idx\tlabel\tpredict\tradius\tcorrect\ttime\n" + "".join(
        f"{i}\t{y}\t{p}\t{r:.4f}\t{int(p == y)}\t1.0\n" for i, y, p, r in rows))
    return read_certify_log(path)


def test_pairing_by_folder_and_by_meta_and_refusing_other_images(tmp_path):
    cert = certify_log(tmp_path / "sigma_0.50", [(0, 7, 7, 0.5), (20, 9, 9, 1.2), (40, 1, 2, 0.3), (60, 4, -1, 0.0)])
    other = certify_log(tmp_path / "sigma_0.25", [(0, 7, 7, 0.2), (20, 9, 9, 0.6), (40, 1, 2, 0.3), (60, 4, -1, 0.0)])
    attack = read_attack_log(write_log(tmp_path / "attack_0.50"))
    [(_, c)] = pair_logs([attack], [other, cert])
    assert c.path == cert.path
    # By .meta.json (model sha256 and σ) when the names say nothing.
    for name, log in (("sigma_0.25", other), ("sigma_0.50", cert)):
        (tmp_path / f"{name}.meta.json").write_text(json.dumps({"sigma": float(name[-4:]), "dataset": "mnist",
                                                                "base_classifier": {"sha256": name}}))
    renamed = write_log(tmp_path / "my_attack")
    (tmp_path / "my_attack.meta.json").write_text(json.dumps({"sigma": 0.25, "dataset": "mnist",
                                                              "base_classifier": {"sha256": "sigma_0.25"}}))
    [(_, c)] = pair_logs([read_attack_log(renamed)], [cert, other])
    assert c.path == other.path
    with pytest.raises(ValueError, match=r"^attack: x pairs with no of the certify logs"):
        pair_logs([read_attack_log(write_log(tmp_path / "x"))], [cert, other])
    fewer = read_attack_log(write_log(tmp_path / "attack_0.50", ROWS[:3]))
    with pytest.raises(ValueError, match=r"^attack: attack_0.50 and sigma_0.50 cover different images \(0 only in "
                                         r"the attack log, 1 only in the certify log, e.g. idx 60\)"):
        pair_logs([fewer], [cert])


def test_gap_and_soundness_alarm(tmp_path):
    cert = certify_log(tmp_path / "sigma_0.50", [(0, 7, 7, 0.5), (20, 9, 9, 1.2), (40, 1, 2, 0.1), (60, 4, -1, 0.0)])
    attack = read_attack_log(write_log(tmp_path / "attack_0.50"))
    g = gap_rows(attack, cert, [0.0, 0.5, 1.0])
    assert g["certified"].tolist() == [0.5, 0.5, 0.25] and g["empirical"].tolist() == [0.5, 0.5, 0.25]
    assert np.allclose(g["gap"], 0) and soundness_alarms(attack, cert) == []
    # Certificates of radius 1.0 for idx 0 and 0.3 for idx 40 (class 2), broken by the attack at 0.8124 and 0.1001
    # (another class each time): both are alarms; idx 20 (never broken) and 60 (abstained) are not.
    inflated = certify_log(tmp_path / "sigma_0.50", [(0, 7, 7, 1.0), (20, 9, 9, 1.2), (40, 1, 2, 0.3),
                                                     (60, 4, -1, 0.0)])
    alarms = soundness_alarms(attack, inflated)
    assert [(a.idx, a.certified_class, a.adv_class) for a in alarms] == [(0, 7, 3), (40, 2, 1)]


def test_the_attack_log_beside_a_certify_log_is_found_by_name(tmp_path):
    from rs_core.logs.attack_logs import attack_log_beside

    cert = tmp_path / "sigma_0.50"
    cert.write_text("")
    assert attack_log_beside(cert) is None  # none shipped yet
    write_log(tmp_path / "attack_0.50")
    assert attack_log_beside(cert) == tmp_path / "attack_0.50"
    assert attack_log_beside(tmp_path / "certify_dual") is None


def test_the_log_accepts_every_method_the_attack_can_record():
    from rs_core.attacks import METHODS as ATTACK_METHODS
    from rs_core.logs.attack_logs import METHODS

    assert set(METHODS) == set(ATTACK_METHODS) - {"auto"}
