import numpy as np

from widgets.figures import vote_figure


def test_many_classes_show_the_top_ten_and_all_others_with_names():
    rng = np.random.default_rng(0)
    counts = rng.integers(0, 50, 1000)
    counts[417] = 0  # c_A with few votes is still shown
    names = [f"class {i}" for i in range(1000)]
    bars = vote_figure(counts, names, top_class=417, title="t")["data"][0]
    assert len(bars["x"]) == 11 and bars["x"][-1] == "all others (990 classes)"
    assert "class 417" in bars["x"] and sum(bars["y"]) == int(counts.sum())
    top = np.argsort(-counts, kind="stable")[:9]
    assert [f"class {i}" for i in top] == bars["x"][:9]
    assert bars["marker"]["color"][bars["x"].index("class 417")] == "#d62728"


def test_ten_classes_show_every_class_and_no_others_bar():
    bars = vote_figure(np.arange(10), [str(i) for i in range(10)], top_class=9, title="t")["data"][0]
    assert bars["x"] == [str(i) for i in range(10)]
