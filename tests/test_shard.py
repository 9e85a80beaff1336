"""Shards: every series on exactly one replica, decided by its labels alone."""

from __future__ import annotations

import pytest

from forecaster.shard import WHOLE, Shard, label_hash


def _fleet(count: int) -> list[dict[str, str]]:
    return [{"instance": f"node-{i}:9100", "job": "node", "mountpoint": "/"} for i in range(count)]


def test_replicas_of_one_config_serve_every_series_exactly_once():
    fleet = _fleet(1000)
    shards = [Shard(i, 3) for i in range(3)]
    owners = [[s for s in shards if s.owns(labels)] for labels in fleet]
    assert all(len(found) == 1 for found in owners)
    sizes = [sum(found[0] == s for found in owners) for s in shards]
    assert min(sizes) > 280  # about a third each


def test_a_series_keeps_its_shard_whatever_else_comes_and_goes():
    labels = {"instance": "db-7:9100", "job": "node", "mountpoint": "/var"}
    reordered = dict(reversed(list(labels.items())))
    assert label_hash(labels) == label_hash(reordered)
    # Pinned: a replica restarted on another machine or Python version must own what it owned before.
    assert label_hash(labels) == 0x23C15DA6A0F1D364
    assert WHOLE.owns(labels)


@pytest.mark.parametrize(
    ("text", "problem"),
    [("2/2", "index must be 0 to count-1"), ("0/0", "count at least 1"), ("1", "not INDEX/COUNT"), ("a/2", "not")],
)
def test_a_shard_that_cannot_exist_is_refused_with_the_form_it_takes(text, problem):
    with pytest.raises(ValueError, match=problem):
        Shard.parse(text)


def test_a_shard_is_written_as_it_is_given():
    assert str(Shard.parse(" 1/ 4")) == "1/4"
