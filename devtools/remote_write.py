"""Loading history into Prometheus through its remote-write receiver.

Used by ``make demo``, the benchmarks and the integration tests to put weeks
of history into a real Prometheus (started with
``--web.enable-remote-write-receiver`` and an out-of-order window). The
service itself never writes to Prometheus: it is scraped.

The protobuf and snappy encodings are written out here because they are tiny:
a WriteRequest is three nested messages, and a snappy stream made only of
literal blocks is valid snappy that every decoder accepts.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import httpx

_SNAPPY_LITERAL_MAX = 65536


@dataclass(frozen=True)
class TimeSeries:
    labels: dict[str, str]  # including __name__
    timestamps_ms: Sequence[int]
    values: Sequence[float]


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    return _varint((number << 3) | 2) + _varint(len(payload)) + payload


def _encode_series(series: TimeSeries) -> bytes:
    parts = []
    for name in sorted(series.labels):
        parts.append(_field(1, _field(1, name.encode()) + _field(2, series.labels[name].encode())))
    for ts, value in zip(series.timestamps_ms, series.values, strict=True):
        parts.append(_field(2, b"\x09" + struct.pack("<d", value) + b"\x10" + _varint(int(ts))))
    return b"".join(parts)


def encode_write_request(series: Iterable[TimeSeries]) -> bytes:
    return b"".join(_field(1, _encode_series(s)) for s in series)


def snappy_literal(data: bytes) -> bytes:
    """Snappy block format holding ``data`` as literals only (valid, uncompressed)."""
    out = bytearray(_varint(len(data)))
    for offset in range(0, len(data), _SNAPPY_LITERAL_MAX):
        chunk = data[offset : offset + _SNAPPY_LITERAL_MAX]
        size = len(chunk) - 1
        if size < 60:
            out.append(size << 2)
        elif size < 256:
            out.append(60 << 2)
            out.append(size)
        else:
            out.append(61 << 2)
            out += size.to_bytes(2, "little")
        out += chunk
    return bytes(out)


def _batches(series: Sequence[TimeSeries], samples_per_request: int) -> Iterator[list[TimeSeries]]:
    batch: list[TimeSeries] = []
    count = 0
    for item in series:
        for start in range(0, len(item.timestamps_ms), samples_per_request):
            part = TimeSeries(
                item.labels,
                item.timestamps_ms[start : start + samples_per_request],
                item.values[start : start + samples_per_request],
            )
            batch.append(part)
            count += len(part.timestamps_ms)
            if count >= samples_per_request:
                yield batch
                batch, count = [], 0
    if batch:
        yield batch


def push(url: str, series: Sequence[TimeSeries], *, samples_per_request: int = 20_000, timeout: float = 30.0) -> int:
    """Send ``series`` to ``url`` (…/api/v1/write); refuses future timestamps. Returns samples sent."""
    now_ms = time.time() * 1000
    for item in series:
        if len(item.timestamps_ms) and max(item.timestamps_ms) > now_ms:
            raise ValueError(f"series {item.labels} has samples in the future; Prometheus would reject or misfile them")
    sent = 0
    headers = {
        "Content-Encoding": "snappy",
        "Content-Type": "application/x-protobuf",
        "X-Prometheus-Remote-Write-Version": "0.1.0",
    }
    with httpx.Client(timeout=timeout) as client:
        for batch in _batches(series, samples_per_request):
            body = snappy_literal(encode_write_request(batch))
            response = client.post(url, content=body, headers=headers)
            if response.status_code >= 300:
                raise RuntimeError(f"remote write to {url} failed: HTTP {response.status_code}: {response.text[:300]}")
            sent += sum(len(s.timestamps_ms) for s in batch)
    return sent
