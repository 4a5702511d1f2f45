"""rs_core.smoothing.log_stream.ExamplesStream: the Certified accuracy page's "compute here" as a scheduler job."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from rs_core.smoothing.certify import certify_examples
from rs_core.smoothing.jobs import LiveStream, Scheduler
from rs_core.smoothing.log_stream import ExamplesStream


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(4, 3)).eval()


def _examples(k: int = 8) -> list[tuple[int, torch.Tensor, int]]:
    g = torch.Generator().manual_seed(1)
    return [(5 * i + 2, torch.rand(1, 2, 2, generator=g), i % 3) for i in range(k)]


@pytest.mark.parametrize("n0, n, batch", [(10, 100, 1000), (50, 700, 300), (100, 1000, 1000), (7, 333, 64)])
def test_rows_are_the_clis_rows(n0, n, batch):
    """Packed several images to a batch (n0 + n small) or one image in several batches: each row is the one
    certify_examples (and so the CLI) writes, whatever the batch sizes."""
    model, examples = _model(), _examples()
    stream = ExamplesStream(model, examples, 0.5, n0, n, 0.01, batch, seed=3)
    snaps = list(stream)
    expected = list(certify_examples(model, examples, 0.5, n0, n, 0.01, batch, seed=3))
    assert [r[:5] for r in stream.certificate()] == [r[:5] for r in expected]
    last = snaps[-1]
    assert (last.images_done, last.stages, last.inner.stop_reason) == (8, 8, "n_max")
    assert last.samples_drawn == last.samples_total == 8 * (n0 + n) and last.seconds_left == 0


def test_stop_ends_within_a_batch_and_keeps_the_finished_images():
    model, examples = _model(), _examples()
    stream = ExamplesStream(model, examples, 0.5, 100, 1000, 0.01, 250, seed=3)  # 5 batches per image
    after = None
    for j, snap in enumerate(stream):
        if after is not None:
            after += 1
        elif snap.images_done == 3 and snap.inner.phase == "estimation" and snap.inner.n == 500:
            stream.stop()  # in the middle of the fourth image
            after = 0
    assert after == 1  # one last snapshot, no further batch
    assert snap.inner.stop_reason == "stopped"
    rows = stream.certificate()
    expected = list(certify_examples(model, examples[:3], 0.5, 100, 1000, 0.01, 250, seed=3))
    assert [r[:5] for r in rows] == [r[:5] for r in expected]  # the image in flight is dropped, not half-bounded


def test_it_runs_as_a_scheduler_job():
    model, examples = _model(), _examples(3)
    stream = ExamplesStream(model, examples, 0.5, 10, 200, 0.01, 100, seed=0)
    assert isinstance(stream, LiveStream)
    job = Scheduler(max_running=1).submit(stream)
    assert job.wait(timeout=30) and job.error is None
    assert [r[0] for r in job.certificate] == [2, 7, 12]


def test_invalid_arguments_are_named():
    model = _model()
    with pytest.raises(ValueError, match="^seed:"):
        ExamplesStream(model, _examples(), 0.5, seed=None)
    with pytest.raises(ValueError, match="^examples:"):
        ExamplesStream(model, [], 0.5, seed=0)
    with pytest.raises(ValueError, match="^n:"):
        ExamplesStream(model, _examples(), 0.5, n=0, seed=0)
    with pytest.raises(ValueError, match=r"^examples\[0\]"):
        list(ExamplesStream(model, [(0, torch.rand(2, 2), 0)], 0.5, seed=0))
