"""Image preference tables, image hashes, near-duplicate clusters and leak-free splits.

Pairs and clusters are compared with tests/reference.py on random tables (hypothesis); hashes
with the reference formulas on Pillow's thumbnails and with the ``imagehash`` package; planted
near-duplicates of generated pictures must be found with recall and precision >= 0.99.
"""

from __future__ import annotations

import io
import math

import numpy as np
import prefkit as pk
import pyarrow as pa
import pytest
import reference as ref
from hypothesis import given, settings
from hypothesis import strategies as st

imagehash = pytest.importorskip("imagehash")
Image = pytest.importorskip("PIL.Image")

from images_data import encode, pictures, planted


def as_int(image_hash) -> int:
    return int(str(image_hash), 16)


def bits(a: int, b: int) -> int:
    return (a ^ b).bit_count()


# --- hashes ------------------------------------------------------------------------------------


def mixed_images(n: int, seed: int) -> list:
    """Pillow images of several sizes and modes (RGB, L, RGBA, P)."""
    arrays = pictures(n, 64, seed)
    out = []
    for i, array in enumerate(arrays):
        image = Image.fromarray(array)
        if i % 4 == 1:
            image = image.resize((50 + i % 40, 37 + i % 60))
        if i % 5 == 2:
            image = image.convert("L")
        elif i % 5 == 3:
            image = image.convert("RGBA")
        elif i % 5 == 4:
            image = image.convert("P")
        out.append(image)
    return out


def png(image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def test_png_hashes_equal_imagehash_and_the_reference_formulas():
    images = mixed_images(120, seed=1)
    table = pa.table({"image": [png(image) for image in images]})
    phash = pk.image_hashes(table, method="phash").column("hash").to_pylist()
    dhash = pk.image_hashes(table, method="dhash").column("hash").to_pylist()
    for image, p, d in zip(images, phash, dhash, strict=True):
        grey = image.convert("L")
        # Pillow's thumbnail through the reference formulas: the same floating-point sums.
        thumb32 = np.asarray(grey.resize((32, 32), Image.LANCZOS)).tolist()
        thumb9 = np.asarray(grey.resize((9, 8), Image.LANCZOS)).tolist()
        assert p == ref.phash(thumb32)
        assert d == ref.dhash(thumb9)
        assert d == as_int(imagehash.dhash(image))
        # scipy's FFT-based DCT rounds differently: a coefficient within rounding of the
        # median may flip (docs/images.md); on these pictures none does.
        assert bits(p, as_int(imagehash.phash(image))) <= 1


def test_jpeg_and_webp_hashes_are_close_to_imagehash():
    arrays = pictures(60, 96, seed=2)
    jpegs = [encode(a, "JPEG", quality=90) for a in arrays]
    webps = [encode(a, "WEBP", lossless=True) for a in arrays]
    for images in (jpegs, webps):
        ours = pk.image_hashes(pa.table({"image": images})).column("hash").to_pylist()
        theirs = [as_int(imagehash.phash(Image.open(io.BytesIO(b)))) for b in images]
        distances = [bits(a, b) for a, b in zip(ours, theirs, strict=True)]
        # JPEG: another decoder (zune-jpeg vs libjpeg) rounds some pixels differently.
        assert np.mean(distances) <= 1.0 and max(distances) <= 4, distances


def test_exact_hash_is_xxh3_of_the_bytes_and_never_decodes():
    xxhash = pytest.importorskip("xxhash")
    blobs = [b"not an image", b"", png(mixed_images(1, 3)[0]), None]
    hashes = pk.image_hashes(pa.table({"image": blobs}), method="exact")
    expected = [None if b is None else xxhash.xxh3_64_intdigest(b) for b in blobs]
    assert hashes.column("hash").to_pylist() == expected
    assert hashes.column("content_hash").to_pylist() == expected


# --- clusters ----------------------------------------------------------------------------------

BASES = st.lists(st.integers(0, 2**64 - 1), min_size=1, max_size=4)


@settings(max_examples=60, deadline=None)
@given(
    bases=BASES,
    picks=st.lists(
        st.tuples(st.integers(0, 3), st.lists(st.integers(0, 63), max_size=6)), max_size=40
    ),
    nulls=st.sets(st.integers(0, 39)),
    threshold=st.integers(0, 12),
)
def test_hamming_clusters_equal_the_reference(bases, picks, nulls, threshold):
    hashes = []
    for i, (base, flips) in enumerate(picks):
        value = bases[base % len(bases)]
        for bit in flips:
            value ^= 1 << bit
        hashes.append(None if i in nulls else value)
    array = pa.array(hashes, pa.uint64())
    roots = pa.array(pk._core.hamming_clusters(array, threshold)).to_pylist()
    assert roots == ref.hamming_clusters(hashes, threshold)


def test_planted_near_duplicates_are_found_with_high_recall_and_precision():
    images, origin = planted(originals=7000, copies=3000, seed=4)
    table = pa.table({"image": pa.array(images, pa.binary())})
    for method in ("phash", "dhash"):
        found = pk.find_image_duplicates(table, method=method)
        cluster = np.arange(len(images))
        cluster[found.column("row").to_numpy()] = found.column("cluster").to_numpy()
        true_pairs = predicted = correct = 0
        for source in np.unique(origin):
            members = np.flatnonzero(origin == source)
            true_pairs += math.comb(len(members), 2)
            _, counts = np.unique(cluster[members], return_counts=True)
            correct += sum(math.comb(int(c), 2) for c in counts)
        _, sizes = np.unique(cluster, return_counts=True)
        predicted = sum(math.comb(int(s), 2) for s in sizes)
        recall, precision = correct / true_pairs, correct / predicted
        assert recall >= 0.99 and precision >= 0.99, (method, recall, precision)


def test_dedup_images_keeps_the_first_of_each_cluster_and_counts_the_rest():
    arrays = pictures(6, 64, seed=5)
    brighter = np.clip(arrays[0].astype(int) + 8, 0, 255).astype(np.uint8)
    images = [encode(arrays[0]), encode(arrays[1]), encode(arrays[0]), encode(brighter), None]
    images += [encode(a) for a in arrays[2:]]
    data = pa.table({"image": images, "n": list(range(len(images)))})
    found = pk.find_image_duplicates(data)
    assert found.to_pylist() == [
        {"row": 0, "cluster": 0},
        {"row": 2, "cluster": 0},
        {"row": 3, "cluster": 0},
    ]
    kept = pk.dedup_images(data)
    assert kept.column("n").to_pylist() == [0, 1, 4, 5, 6, 7, 8]
    report = pk.report_of(kept)
    assert report["dropped"] == {"duplicate": 1, "near_duplicate": 1}
    assert report["null_images"] == 1 and report["duplicate_clusters"] == 1
    exact = pk.dedup_images(data, method="exact")
    assert exact.column("n").to_pylist() == [0, 1, 3, 4, 5, 6, 7, 8]
    # The same through every binary type, chunked.
    for dtype in (pa.large_binary(), pa.binary_view()):
        chunked = pa.table({"image": pa.chunked_array([images[:3], images[3:]], dtype)})
        assert pk.find_image_duplicates(chunked).equals(found.replace_schema_metadata(None)) or (
            pk.find_image_duplicates(chunked).to_pylist() == found.to_pylist()
        )


def test_images_as_paths_are_read_when_hashed(tmp_path):
    arrays = pictures(3, 64, seed=6)
    paths = []
    for i, array in enumerate([arrays[0], arrays[1], arrays[0]]):
        path = tmp_path / f"{i}.png"
        path.write_bytes(encode(array))
        paths.append(str(path))
    data = pa.table({"image": paths + [None]})
    assert pk.dedup_images(data).num_rows == 3
    with pytest.raises(pk.PrefkitError, match="binary"):
        pk.image_hashes(data, images_are_paths=False)
    data = pa.table({"image": [paths[0], str(tmp_path / "missing.png")]})
    with pytest.raises(pk.PrefkitError, match=r"column 'image' row 1: cannot read .*missing"):
        pk.image_hashes(data)


def test_undecodable_images_are_errors_naming_the_row_or_dropped_and_counted():
    good = encode(pictures(1, 64, seed=7)[0])
    data = pa.table({"image": [good, b"\x89PNG\r\n\x1a\nbroken", b"garbage", good]})
    with pytest.raises(pk.PrefkitError, match=r"column 'image' row 1: cannot decode"):
        pk.dedup_images(data)
    with pytest.raises(pk.PrefkitError, match="must be binary"):
        pk.image_hashes(pa.table({"image": [1, 2]}))
    kept = pk.dedup_images(data, bad="drop")
    assert kept.num_rows == 1
    assert pk.report_of(kept)["dropped"] == {"bad_image": 2, "duplicate": 1}
    with pytest.raises(pk.PrefkitError, match="threshold"):
        pk.dedup_images(data, method="exact", threshold=3)
    with pytest.raises(pk.PrefkitError, match="method"):
        pk.dedup_images(data, method="ahash")


# --- pairs -------------------------------------------------------------------------------------

BLOBS = st.sampled_from([b"img-a", b"img-b", b"\x00\xff" * 20, b"c" * 30, b""]) | st.none()
LABELS = st.sampled_from([0.0, 0.5, 1.0, 0.25]) | st.none() | st.just(math.nan)
CAPTIONS = st.sampled_from(["a cat", "a dog", "é 中", ""])


@settings(max_examples=80, deadline=None)
@given(
    rows=st.lists(
        st.tuples(CAPTIONS, BLOBS, BLOBS, LABELS, LABELS, st.integers(0, 9)), max_size=25
    ),
    ties=st.sampled_from(["drop", "soft"]),
    dtype=st.sampled_from([pa.binary(), pa.large_binary(), pa.binary_view()]),
    views=st.booleans(),
)
def test_pickapic_pairs_equal_the_reference(rows, ties, dtype, views):
    columns = list(zip(*rows, strict=True)) if rows else [[]] * 6
    table = pa.table(
        {
            "caption": pa.array(columns[0], pa.string()),
            "jpg_0": pa.array(columns[1], dtype),
            "jpg_1": pa.array(columns[2], dtype),
            "label_0": pa.array(columns[3], pa.float64()),
            "label_1": pa.array(columns[4], pa.float64()),
            "user_id": pa.array(columns[5], pa.int64()),
        }
    )
    pairs = pk.image_pairs(table, ties=ties, views=views)
    expected, dropped = ref.image_pairs_pickapic(
        table.to_pylist(), ties=ties, carry=["user_id"]
    )
    assert pairs.to_pylist() == expected
    report = pk.report_of(pairs)
    assert report["dropped"] == dropped
    assert report["rows_used"] + sum(dropped.values()) == table.num_rows
    assert pairs.schema.field("chosen").type == (pa.binary_view() if views else pa.large_binary())


@settings(max_examples=80, deadline=None)
@given(
    rows=st.lists(
        st.tuples(CAPTIONS, BLOBS, st.sampled_from([0.0, 1.0, 2.0, math.nan]) | st.none()),
        max_size=25,
    ),
    ties=st.sampled_from(["drop", "soft"]),
    strategy=st.sampled_from(ref.STRATEGIES),
    dtype=st.sampled_from([pa.binary(), pa.large_binary(), pa.binary_view()]),
)
def test_long_layout_pairs_equal_the_reference(rows, ties, strategy, dtype):
    columns = list(zip(*rows, strict=True)) if rows else [[]] * 3
    table = pa.table(
        {
            "caption": pa.array(columns[0], pa.string()),
            "image": pa.array(columns[1], dtype),
            "score": pa.array(columns[2], pa.float64()),
        }
    )
    pairs = pk.image_pairs(table, layout="long", ties=ties, strategy=strategy)
    expected, accounting = ref.image_pairs_long(table.to_pylist(), ties=ties, strategy=strategy)
    ref.assert_rows_equal(pairs.to_pylist(), expected)
    report = pk.report_of(pairs)
    assert report["dropped"] == accounting["dropped"]
    assert report["rows_in"] == table.num_rows


def test_pairs_share_the_input_bytes_with_views():
    blobs = [bytes([i]) * 1000 for i in range(4)]
    table = pa.table(
        {
            "caption": ["x", "x", "y", "y"],
            "image": pa.array(blobs, pa.large_binary()),
            "score": [1.0, 0.0, 0.0, 2.0],
        }
    )
    pairs = pk.image_pairs(table, layout="long", views=True)
    chosen = pairs.column("chosen").combine_chunks()
    assert chosen.type == pa.binary_view()
    data = table.column("image").chunk(0).buffers()[2]
    start, end = data.address, data.address + data.size
    assert all(start <= b.address < end for b in chosen.buffers()[2:])
    assert chosen.to_pylist() == [blobs[0], blobs[3]]
    with pytest.raises(pk.PrefkitError, match="length_penalty"):
        pk.mine_pairs(table, prompt="caption", response="image", length_penalty=0.1)


def test_pickapic_paths_and_bad_arguments():
    table = pa.table(
        {
            "caption": ["c", "d"],
            "jpg_0": ["a.png", "b.png"],
            "jpg_1": ["x.png", "b.png"],
            "label_0": [0, 1],
            "label_1": [1, 0],
        }
    )
    pairs = pk.image_pairs(table)
    assert pairs.select(["chosen", "rejected", "chosen_index"]).to_pylist() == [
        {"chosen": "x.png", "rejected": "a.png", "chosen_index": 1}
    ]
    assert pk.report_of(pairs)["dropped"] == {"identical_images": 1}
    with pytest.raises(pk.PrefkitError, match="layout"):
        pk.image_pairs(table, layout="wide")
    with pytest.raises(pk.PrefkitError, match="ties"):
        pk.image_pairs(table, ties="keep")
    with pytest.raises(pk.PrefkitError, match="label_9"):
        pk.image_pairs(table, labels=("label_0", "label_9"))


# --- splits ------------------------------------------------------------------------------------


def test_split_images_keeps_captions_and_image_clusters_on_one_side():
    images, origin = planted(originals=300, copies=200, seed=8)
    rng = np.random.default_rng(8)
    captions = [f"A picture number {int(c)}!" for c in rng.integers(0, 2000, len(images))]
    data = pa.table({"caption": captions, "image": images, "origin": origin})
    train, test = pk.split_images(data, test_size=0.2, seed=1)
    assert train.num_rows + test.num_rows == data.num_rows
    assert abs(test.num_rows - 100) <= 10
    normalized = lambda t: {pk.normalize_text(c) for c in t.column("caption").to_pylist()}
    assert not normalized(train) & normalized(test)
    assert not set(train.column("origin").to_pylist()) & set(test.column("origin").to_pylist())
    report = pk.report_of(test)
    assert report["part"] == "test" and report["test_rows"] == test.num_rows
    again = pk.split_images(data, test_size=0.2, seed=1)[1]
    assert again.column("origin").to_pylist() == test.column("origin").to_pylist()
    # Pick-a-Pic rows: either image ties a row to another.
    pairs = pa.table({"caption": captions[:250], "jpg_0": images[:250], "jpg_1": images[250:]})
    train, test = pk.split_images(pairs, test_size=50, image=["jpg_0", "jpg_1"], caption=None)
    origins = lambda t: set(origin[[images.index(b) for b in t.column("jpg_0").to_pylist()]]) | set(
        origin[[images.index(b) for b in t.column("jpg_1").to_pylist()]]
    )
    assert not origins(train) & origins(test)


# --- CLI ---------------------------------------------------------------------------------------


def test_cli_image_pairs_and_dedup_images(tmp_path, capsys):
    import pyarrow.parquet as pq
    from prefkit.cli import main

    pickapic = pa.table(
        {
            "caption": ["a", "b", "c"],
            "jpg_0": [b"x", b"y", b"u"],
            "jpg_1": [b"z", b"y", b"v"],
            "label_0": [1.0, 0.5, 0.5],
            "label_1": [0.0, 0.5, 0.5],
        }
    )
    pq.write_table(pickapic, tmp_path / "pp.parquet")
    out = tmp_path / "pairs.parquet"
    assert main(["image-pairs", str(tmp_path / "pp.parquet"), "-o", str(out), "--ties", "soft"]) == 0
    assert pq.read_table(out).column("label").to_pylist() == [1.0, 0.5]
    assert "identical_images" in capsys.readouterr().out
    images, _ = planted(originals=20, copies=10, seed=9)
    pq.write_table(pa.table({"image": images}), tmp_path / "im.parquet")
    out = tmp_path / "unique.parquet"
    argv = ["dedup", str(tmp_path / "im.parquet"), "-o", str(out), "--images", "image"]
    assert main([*argv, "--threshold", "8"]) == 0
    assert pq.read_table(out).num_rows == 20
    capsys.readouterr()
    assert main(["dedup", str(tmp_path / "im.parquet"), "-o", str(out), "--method", "phash"]) != 0
    assert "pass --images COLUMN" in capsys.readouterr().err
