"""Reads an Ember block with pyarrow alone and prints its samples as JSON.

Usage: python3 read_block.py BLOCK_DIR

Output: {"series": [{"labels": {...}, "samples": [[t_ms, "value bits as hex"], ...]}, ...]}
sorted by the labels' sorted items, so it compares directly with what Ember returns.
Values are printed as IEEE-754 bit patterns so NaN and stale markers compare exactly.
"""

import json
import struct
import sys

import pyarrow.parquet as pq


def bits(value: float) -> str:
    return struct.pack(">d", value).hex()


def main(block_dir: str) -> None:
    series = pq.read_table(f"{block_dir}/series.parquet").to_pylist()
    samples = pq.read_table(f"{block_dir}/samples.parquet")
    ids = samples.column("series_id").to_pylist()
    times = samples.column("timestamp").cast("int64").to_pylist()
    values = samples.column("value").to_pylist()

    by_id = {}
    for sid, t, v in zip(ids, times, values):
        by_id.setdefault(sid, []).append([t, bits(v)])

    out = []
    for row in series:
        labels = dict(row["labels"])
        out.append({"labels": labels, "samples": by_id.get(row["series_id"], [])})
    out.sort(key=lambda s: sorted(s["labels"].items()))
    json.dump({"series": out}, sys.stdout)


if __name__ == "__main__":
    main(sys.argv[1])
