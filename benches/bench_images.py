"""Side-by-side benchmark of image dedup: prefkit (pHash and dHash, parallel, in Rust) vs the
``imagehash`` package (Python, one image at a time: Pillow decode + ``imagehash.phash``).

Corpus (cached as Parquet in ``bench-data/``): ``--images`` generated pictures (``--size``
pixels a side, PNG; ``tests/images_data.py``: a colour gradient, a wave texture, discs and
boxes, noise), of which ``--copies`` are planted near-duplicates (resized, re-encoded as JPEG,
brighter or darker). Column ``image`` holds the bytes, ``origin`` the picture shown.

Tools, each from the Arrow column of image bytes to the kept rows:

- ``prefkit-phash`` / ``prefkit-dhash``: ``pk.dedup_images(t, method=...)`` (decode, hash and
  cluster within the default Hamming threshold, on every core or ``PREFKIT_NUM_THREADS``);
- ``imagehash-phash``: for every image, ``imagehash.phash(PIL.Image.open(BytesIO(b)))``, then
  the same clustering of the hashes (prefkit's, which takes milliseconds) and the kept rows
  taken, as ``dedup_images`` returns them: the hashing is what is compared. On ``--peer-subset`` images (default: all), its time scaled to the whole
  corpus (hashing is per image, so linear), and marked as scaled in the table.

Each tool runs ``--repeats`` times (default 3); the table shows the median.

Example (docs/images.md's table)::

    python benches/bench_images.py --images 100000 --peer-subset 10000 --repeats 5
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))


def make(path: Path, images: int, copies: int, size: int, seed: int) -> None:
    """Write the corpus of the module docstring to ``path``, generated in slices of 10k."""
    from images_data import planted

    parts = []
    step = 10_000
    for start in range(0, images, step):
        n = min(step, images - start)
        k = round(n * copies / images)
        blobs, origin = planted(n - k, k, size=size, seed=seed + start)
        parts.append(pa.table({"image": pa.array(blobs, pa.binary()), "origin": origin + start}))
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.concat_tables(parts), path)


def median_time(run, repeats: int) -> tuple[float, int]:
    """The median seconds of ``repeats`` calls of ``run`` (a shared machine's noise is
    tenths of a run), and the rows it kept."""
    times, kept = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        kept = run().num_rows
        times.append(time.perf_counter() - start)
    return statistics.median(times), kept


def run_prefkit(table: pa.Table, method: str) -> pa.Table:
    import prefkit as pk

    return pk.dedup_images(table, method=method)


def run_imagehash(table: pa.Table) -> pa.Table:
    import imagehash
    import prefkit as pk
    from PIL import Image

    hashes = [
        int(str(imagehash.phash(Image.open(io.BytesIO(blob)))), 16)
        for blob in table.column("image").to_pylist()
    ]
    roots = pa.array(
        pk._core.hamming_clusters(pa.array(hashes, pa.uint64()), pk.images.DEFAULT_THRESHOLDS["phash"])
    ).to_numpy()
    return table.filter(pa.array(roots == np.arange(len(roots))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--copies", type=float, default=0.2, help="fraction planted copies")
    parser.add_argument("--size", type=int, default=64, help="pixels a side")
    parser.add_argument("--peer-subset", type=int, default=None, help="imagehash on N images")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per tool (median)")
    args = parser.parse_args()
    path = HERE.parent / "bench-data" / f"images_{args.images}_{args.size}_{args.seed}.parquet"
    if not path.exists():
        make(path, args.images, int(args.images * args.copies), args.size, args.seed)
    table = pq.read_table(path)
    mb = sum(len(b) for b in table.column("image").to_pylist()) / 1e6
    print(
        f"{table.num_rows} images of {args.size}x{args.size} ({mb:.0f} MB), "
        f"threads={os.environ.get('PREFKIT_NUM_THREADS', os.cpu_count())}"
    )
    rows = []
    for method in ("phash", "dhash"):
        seconds, kept = median_time(lambda m=method: run_prefkit(table, m), args.repeats)
        rows.append((f"prefkit-{method}", seconds, kept, ""))
    subset = args.peer_subset or table.num_rows
    seconds, kept = median_time(lambda: run_imagehash(table.slice(0, subset)), args.repeats)
    scale = table.num_rows / subset
    note = f"scaled from {subset} images" if subset < table.num_rows else ""
    rows.append(("imagehash-phash", seconds * scale, kept if not note else None, note))
    peer = rows[-1][1]
    print(f"{'tool':<18}{'seconds':>10}{'images/s':>12}{'kept':>9}{'vs imagehash':>14}  note")
    for tool, seconds, kept, note in rows:
        print(
            f"{tool:<18}{seconds:>10.2f}{table.num_rows / seconds:>12.0f}"
            f"{'' if kept is None else kept:>9}{peer / seconds:>13.1f}x  {note}"
        )


if __name__ == "__main__":
    main()
