"""Shards: which series of each forecast this replica fits and serves.

N replicas started with the same config and ``shard: {index: 0..N-1, count: N}``
(or ``--shard I/N``) split every forecast's series among themselves with no
coordinator: a series belongs to the replica whose index is the hash of its
label set modulo N. The hash is of the labels alone, so a series keeps its
replica when other series come and go, and it is the same on every machine
and Python version (not Python's salted ``hash``). Changing N moves about
``1 - 1/N`` of the series, which then start from a fresh fit on their new
replica.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Shard:
    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ValueError(f"shard {self.index}/{self.count}: the index must be 0 to count-1, count at least 1")

    @classmethod
    def parse(cls, text: str) -> Shard:
        """``I/N`` as given to ``--shard``."""
        index, sep, count = text.partition("/")
        if not sep or not index.strip().isdigit() or not count.strip().isdigit():
            raise ValueError(f"{text!r} is not INDEX/COUNT (for example 0/3 for the first of three replicas)")
        return cls(int(index), int(count))

    def owns(self, labels: Mapping[str, str]) -> bool:
        return self.count == 1 or label_hash(labels) % self.count == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def label_hash(labels: Mapping[str, str]) -> int:
    """A stable 64-bit hash of a label set, independent of label order.

    Imports no numeric code, so the config layer can validate ``shard`` cheaply.
    """
    canonical = json.dumps(sorted(labels.items()), ensure_ascii=False, separators=(",", ":"))
    return int.from_bytes(hashlib.blake2b(canonical.encode(), digest_size=8).digest(), "big")


# One replica serving every series: the default.
WHOLE = Shard(0, 1)
