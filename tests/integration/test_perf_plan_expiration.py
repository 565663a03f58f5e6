"""The benchmark's post-expiration figure (perf/plan_expiration.py) on a small run: its accounting holds (the due
learners sent once, the renewed ones skipped, the second run silent), so the printed ratio means what it says."""

from __future__ import annotations

from perf.plan_expiration import measure


def test_the_figure_counts_braze_requests_of_full_batches_and_a_silent_second_run():
    r = measure(enterprises=2, due=100, renewed=7)
    first, second = r["runs"]
    assert (first["sent"], first["renewed"], first["failed"]) == (200, 14, 0)
    assert first["braze_requests"] == 8  # 2 enterprises x 2 batches x (alias + trigger)
    assert r["braze_per_50"] == 2.0
    assert (second["sent"], second["braze_requests"]) == (0, 0)
    assert r["sent_once"] is True
    assert r["pass"] is True


def test_a_partial_batch_shows_in_the_figure():
    r = measure(enterprises=1, due=60, renewed=0)
    assert r["runs"][0]["braze_requests"] == 4  # 50 + 10
    assert r["braze_per_50"] > 2.0
    assert r["pass"] is False
