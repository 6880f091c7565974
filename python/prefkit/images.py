"""Image preference data: pairs from Pick-a-Pic-style and long tables, image hashes,
near-duplicate dedup and leak-free splits.

Images are bytes (PNG, JPEG, WebP in a binary, large_binary or binary_view column) or paths
(a text column), read only when they are hashed. Pairs never decode an image: their
``chosen``/``rejected`` columns share the input's buffers (binary_view with ``views=True``).
The rules and formulas are in ``docs/images.md``; the work is done by the Rust core.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from prefkit import _core
from prefkit._errors import PrefkitError
from prefkit._provenance import attach, report_of
from prefkit.dedup import _split_parameters, _take
from prefkit.io import as_table, plain_unless_views
from prefkit.pairs import _check_int, _names, mine_pairs

METHODS = ("exact", "dhash", "phash")

#: Hamming threshold (bits of 64) used when ``threshold=None``: ``exact`` compares byte
#: hashes only; the perceptual defaults were chosen on planted copies (docs/images.md).
DEFAULT_THRESHOLDS = {"exact": 0, "dhash": 6, "phash": 8}

LAYOUTS = ("pickapic", "long")


def _column(table: pa.Table, name: str) -> pa.ChunkedArray:
    if not isinstance(name, str):
        raise PrefkitError(f"column names must be strings, got {name!r}")
    if name not in table.column_names:
        raise PrefkitError(f"column '{name}' not found; the table has columns {table.column_names}")
    return table.column(name)


def _is_binary(dtype: pa.DataType) -> bool:
    return pa.types.is_binary(dtype) or pa.types.is_large_binary(dtype) or pa.types.is_binary_view(
        dtype
    )


def _hash_arguments(method, threshold, images_are_paths, bad) -> dict:
    if method not in METHODS:
        raise PrefkitError(f"method must be one of {list(METHODS)}, got {method!r}")
    if threshold is None:
        threshold = DEFAULT_THRESHOLDS[method]
    _check_int("threshold", threshold, 0, 32)
    if method == "exact" and threshold != 0:
        raise PrefkitError(
            f"threshold must be 0 with method='exact' (equal bytes), got {threshold!r}"
        )
    if images_are_paths not in (None, True, False):
        raise PrefkitError(f"images_are_paths must be True, False or None, got {images_are_paths!r}")
    if bad not in ("error", "drop"):
        raise PrefkitError(f"bad must be 'error' or 'drop', got {bad!r}")
    return {
        "method": method,
        "threshold": threshold,
        "images_are_paths": images_are_paths,
        "bad": bad,
    }


def _hashes(table: pa.Table, column: str, arguments: dict) -> tuple[np.ndarray, ...]:
    """``(hash, content, status)`` of every row: uint64 (0 where not hashed) and the status
    (0 hashed, 1 null image, 2 bad image)."""
    _column(table, column)
    hash_, content, status = _core.image_hashes(
        table,
        column=column,
        method=arguments["method"],
        paths=arguments["images_are_paths"],
        bad=arguments["bad"],
    )
    as_numpy = lambda a: pa.array(a).fill_null(0).to_numpy()
    return as_numpy(hash_), as_numpy(content), pa.array(status).to_numpy()


def _roots(hash_: np.ndarray, status: np.ndarray, threshold: int) -> np.ndarray:
    """For every row, the first row of its cluster (int64); unhashed rows are alone."""
    hashes = pa.array(hash_, pa.uint64(), mask=status != 0)
    return pa.array(_core.hamming_clusters(hashes, threshold)).to_numpy()


def _counts(status: np.ndarray) -> dict:
    return {"null_images": int((status == 1).sum()), "bad_images": int((status == 2).sum())}


def image_hashes(
    data: Any,
    *,
    column: str = "image",
    method: str = "phash",
    images_are_paths: bool | None = None,
    bad: str = "error",
) -> pa.Table:
    """The hash of every image of a column: pHash, dHash or the xxh3-64 of its bytes.

    pHash and dHash are those of the ``imagehash`` package (Pillow's grey conversion and
    Lanczos resize, then the DCT median or the horizontal gradient signs) as 64-bit integers,
    ``int(str(imagehash.phash(image)), 16)``; the formulas and the remaining differences are in
    ``docs/images.md``. Rows are hashed in parallel (``PREFKIT_NUM_THREADS``).

    Parameters
    ----------
    data
        A table: pyarrow, polars, pandas, ``datasets.Dataset`` or any Arrow stream.
    column
        The images: binary (PNG, JPEG or WebP bytes) or text (paths of image files).
    method
        ``"phash"``, ``"dhash"`` or ``"exact"`` (xxh3-64 of the bytes, never decoded).
    images_are_paths
        ``None``: a text column holds paths, a binary one bytes; ``True``/``False`` insists.
    bad
        ``"error"``: an image that cannot be read or decoded raises, naming the row;
        ``"drop"``: its hash is null and it is counted (``bad_images``).

    Returns
    -------
    pyarrow.Table
        One row per input row: ``hash`` (uint64, null for a null or bad image) and
        ``content_hash`` (uint64, xxh3-64 of the bytes).

    Examples
    --------
    >>> import io, prefkit as pk, pyarrow as pa
    >>> from PIL import Image
    >>> png = io.BytesIO()
    >>> Image.linear_gradient("L").resize((64, 64)).save(png, "PNG")
    >>> hashes = pk.image_hashes(pa.table({"image": [png.getvalue(), None]}), method="dhash")
    >>> hashes.column("hash").to_pylist()
    [0, None]
    """
    table = as_table(data)
    arguments = _hash_arguments(method, None, images_are_paths, bad)
    del arguments["threshold"]
    hash_, content, status = _hashes(table, column, arguments)
    hashed = status == 0
    result = pa.table(
        {
            "hash": pa.array(hash_, pa.uint64(), mask=~hashed),
            "content_hash": pa.array(content, pa.uint64(), mask=~hashed),
        }
    )
    accounting = {"rows_in": table.num_rows, "rows_used": int(hashed.sum()), **_counts(status)}
    return attach(result, "image_hashes", {"column": column, **arguments}, accounting, source=table)


def find_image_duplicates(
    data: Any,
    *,
    column: str = "image",
    method: str = "phash",
    threshold: int | None = None,
    images_are_paths: bool | None = None,
    bad: str = "error",
) -> pa.Table:
    """Rows whose images are duplicates, and the cluster each belongs to.

    Two images are near-duplicates when their hashes (``pk.image_hashes``) differ in at most
    ``threshold`` of their 64 bits; clusters join near-duplicates transitively (single
    linkage). Candidates are found by multi-index hashing (the hash cut into ``threshold + 1``
    bands, one of which two near hashes share) and verified by a popcount, so no pair within
    the threshold is missed.

    Parameters
    ----------
    data, column, method, images_are_paths, bad
        As in ``pk.image_hashes``. Null images (and bad ones with ``bad="drop"``) are in no
        cluster.
    threshold
        Bits in [0, 32]; ``None``: ``DEFAULT_THRESHOLDS[method]`` (8 for ``phash``, 6 for
        ``dhash``, 0 for ``exact``, the only value it takes).

    Returns
    -------
    pyarrow.Table
        ``row`` (int64, ascending) for every row of a cluster with more than one member, and
        ``cluster`` (int64): the row of the cluster's first member.

    Examples
    --------
    >>> import io, prefkit as pk, pyarrow as pa
    >>> from PIL import Image
    >>> def png(image):
    ...     out = io.BytesIO(); image.save(out, "PNG"); return out.getvalue()
    >>> gradient = Image.linear_gradient("L").resize((64, 64))
    >>> images = [png(gradient), png(gradient.rotate(90)), png(gradient.resize((48, 48)))]
    >>> pk.find_image_duplicates(pa.table({"image": images})).to_pylist()
    [{'row': 0, 'cluster': 0}, {'row': 2, 'cluster': 0}]
    """
    table = as_table(data)
    arguments = _hash_arguments(method, threshold, images_are_paths, bad)
    hash_, _, status = _hashes(table, column, arguments)
    roots = _roots(hash_, status, arguments["threshold"])
    in_cluster = np.bincount(roots, minlength=len(roots))[roots] > 1
    rows = np.flatnonzero(in_cluster)
    result = pa.table({"row": pa.array(rows, pa.int64()), "cluster": pa.array(roots[rows])})
    accounting = {
        "rows_in": table.num_rows,
        "rows_in_clusters": result.num_rows,
        **_counts(status),
    }
    return attach(
        result, "find_image_duplicates", {"column": column, **arguments}, accounting, source=table
    )


def dedup_images(
    data: Any,
    *,
    column: str = "image",
    method: str = "phash",
    threshold: int | None = None,
    images_are_paths: bool | None = None,
    bad: str = "error",
    views: bool = False,
) -> pa.Table:
    """Drop rows whose image duplicates an earlier row's, keeping the first of every cluster.

    Clusters are those of ``pk.find_image_duplicates`` (same arguments). Rows with a null image
    are kept; with ``bad="drop"``, rows whose image cannot be read or decoded are dropped.

    Parameters
    ----------
    data, column, method, threshold, images_are_paths, bad
        As in ``pk.find_image_duplicates``.
    views
        ``True``: text and binary columns come back as view arrays sharing the input's buffers;
        default: plain ``large_string``/``large_binary`` for view input (``docs/outputs.md``).

    Returns
    -------
    pyarrow.Table
        The kept rows, in input order, all columns. Its metadata (``pk.report_of``) counts the
        dropped rows by reason: ``duplicate`` (the same bytes as the kept row),
        ``near_duplicate`` and ``bad_image``; and ``null_images``, ``duplicate_clusters``.

    Examples
    --------
    >>> import io, prefkit as pk, pyarrow as pa
    >>> from PIL import Image
    >>> def png(image):
    ...     out = io.BytesIO(); image.save(out, "PNG"); return out.getvalue()
    >>> gradient = Image.linear_gradient("L").resize((64, 64))
    >>> data = pa.table({"image": [png(gradient), png(gradient), png(gradient.rotate(90))],
    ...                  "caption": ["a", "b", "c"]})
    >>> kept = pk.dedup_images(data)
    >>> kept.column("caption").to_pylist(), pk.report_of(kept)["dropped"]
    (['a', 'c'], {'duplicate': 1})
    """
    table = as_table(data)
    arguments = _hash_arguments(method, threshold, images_are_paths, bad)
    hash_, content, status = _hashes(table, column, arguments)
    roots = _roots(hash_, status, arguments["threshold"])
    rows = np.arange(len(roots))
    first = roots == rows
    keep = first & (status != 2)
    same_bytes = content == content[roots]
    dropped = {
        "duplicate": int((~first & same_bytes).sum()),
        "near_duplicate": int((~first & ~same_bytes).sum()),
        "bad_image": int((status == 2).sum()),
    }
    sizes = np.bincount(roots, minlength=len(roots))
    accounting = {
        "rows_in": table.num_rows,
        "rows_used": int(keep.sum()),
        "dropped": {reason: n for reason, n in dropped.items() if n},
        "null_images": int((status == 1).sum()),
        "duplicate_clusters": int((sizes > 1).sum()),
    }
    parameters = {"column": column, **arguments, "views": views}
    return attach(_take(table, keep, views), "dedup_images", parameters, accounting, source=table)


def split_images(
    data: Any,
    *,
    test_size: float,
    caption: str | None = "caption",
    image: str | Sequence[str] = "image",
    seed: int = 0,
    method: str = "phash",
    threshold: int | None = None,
    caption_method: str = "minhash",
    ngram: int = 5,
    num_perm: int = 128,
    caption_threshold: float = 0.8,
    images_are_paths: bool | None = None,
    bad: str = "error",
    views: bool = False,
) -> tuple[pa.Table, pa.Table]:
    """Split rows into train and test so that no caption and no near-duplicate image cluster
    lands on both sides.

    Rows are joined into clusters when their captions are equal after normalisation (or, with
    ``caption_method="minhash"``, near-duplicates as in ``pk.dedup``), or when any of their
    images are near-duplicates (``pk.find_image_duplicates``). Whole clusters are then shuffled
    with ``seed`` and moved to the test side while they fit in its budget of rows: the
    machinery of ``pk.split``.

    Parameters
    ----------
    data
        A table of images with captions: a long table, a Pick-a-Pic table, or pairs.
    test_size
        A fraction of the rows in (0, 1) (rounded up) or a number of rows.
    caption
        The caption (prompt) column; ``None``: images only.
    image
        The image column, or several (Pick-a-Pic: ``["jpg_0", "jpg_1"]``; pairs:
        ``["chosen", "rejected"]``): a row is near another when any of its images is near any
        of the other's.
    seed
        Seed of the shuffle (and of the caption sketches).
    method, threshold, images_are_paths, bad
        As in ``pk.find_image_duplicates``; with ``bad="drop"``, rows with a bad image go to
        neither side (counted as ``bad_image``).
    caption_method, ngram, num_perm, caption_threshold
        ``"exact"`` (normalised captions) or ``"minhash"``, and the MinHash parameters of
        ``pk.dedup``.
    views
        As in ``pk.dedup_images``.

    Returns
    -------
    (pyarrow.Table, pyarrow.Table)
        ``(train, test)``, each in input order, with the accounting (``train_rows``,
        ``test_rows``, ``clusters``, ``bad_image``) in their metadata.

    Examples
    --------
    >>> import io, prefkit as pk, pyarrow as pa
    >>> from PIL import Image
    >>> def png(image):
    ...     out = io.BytesIO(); image.save(out, "PNG"); return out.getvalue()
    >>> g = Image.linear_gradient("L").resize((64, 64))
    >>> data = pa.table({
    ...     "caption": ["a red fox", "a blue car", "a cat", "a dog"],
    ...     "image": [png(g), png(g.rotate(90)), png(g.resize((40, 40))), png(g.rotate(180))],
    ... })
    >>> train, test = pk.split_images(data, test_size=2, seed=3)
    >>> sorted(train.column("caption").to_pylist()), sorted(test.column("caption").to_pylist())
    (['a blue car', 'a dog'], ['a cat', 'a red fox'])
    """
    table = as_table(data)
    images = _names(image, "image")
    arguments = _hash_arguments(method, threshold, images_are_paths, bad)
    if caption_method not in ("exact", "minhash"):
        raise PrefkitError(f"caption_method must be 'exact' or 'minhash', got {caption_method!r}")
    split = _split_parameters(
        test_size, None, caption, seed, caption_method == "minhash", ngram, num_perm,
        caption_threshold,
    )
    # Bad images leave the table before anything is clustered or counted.
    statuses = [_hashes(table, column, arguments) for column in images]
    bad_rows = np.zeros(table.num_rows, dtype=bool)
    for _, _, status in statuses:
        bad_rows |= status == 2
    kept = _take(table, ~bad_rows, views=True) if bad_rows.any() else table
    statuses = [tuple(part[~bad_rows] for part in s) for s in statuses]
    n = kept.num_rows
    split = _split_parameters(
        test_size, n, caption, seed, caption_method == "minhash", ngram, num_perm,
        caption_threshold,
    )
    # Edges of one graph over rows: image clusters of every column (entries of the columns
    # stacked, so a row's images meet the other rows' images of any column), and captions.
    hash_ = np.concatenate([h for h, _, _ in statuses])
    status = np.concatenate([s for _, _, s in statuses])
    entry_roots = _roots(hash_, status, arguments["threshold"]) % max(n, 1)
    a, b = [np.arange(len(entry_roots)) % max(n, 1)], [entry_roots]
    if caption is not None:
        _column(kept, caption)
        rows, clusters = _core.find_duplicates(
            kept, columns=[caption], group=None, method=caption_method, normalize=True,
            ngram=ngram, num_perm=num_perm, threshold=float(caption_threshold), bands=None,
            seed=seed,
        )
        a.append(pa.array(rows).to_numpy())
        b.append(pa.array(clusters).to_numpy())
    edges_a = pa.array(np.concatenate(a).astype(np.int64))
    edges_b = pa.array(np.concatenate(b).astype(np.int64))
    roots = pa.array(_core.union_roots(n, edges_a, edges_b)).to_numpy()
    firsts, cluster_of = np.unique(roots, return_inverse=True)
    sizes = np.bincount(cluster_of, minlength=len(firsts)).astype(np.int64)
    chosen, test_rows = _core.choose_test_clusters(pa.array(sizes), split["test_rows"], seed)
    is_test = pa.array(chosen).to_numpy(zero_copy_only=False)[cluster_of]
    parameters = {
        "test_size": test_size,
        "caption": caption,
        "image": images,
        "seed": seed,
        **arguments,
        "caption_method": caption_method,
        "ngram": ngram,
        "num_perm": num_perm,
        "caption_threshold": float(caption_threshold),
        "views": views,
    }
    accounting = {
        "rows_in": table.num_rows,
        "rows_used": n,
        "dropped": {"bad_image": int(bad_rows.sum())} if bad_rows.any() else {},
        "train_rows": n - test_rows,
        "test_rows": test_rows,
        "clusters": len(firsts),
        "null_images": int((status == 1).sum()),
    }
    train, test = (
        attach(_take(kept, mask, views), "split_images", parameters, {**accounting, "part": part},
               source=table)
        for mask, part in ((~is_test, "train"), (is_test, "test"))
    )
    return train, test


def _labels(table: pa.Table, name: str) -> np.ndarray:
    column = _column(table, name)
    if not (pa.types.is_integer(column.type) or pa.types.is_floating(column.type)):
        raise PrefkitError(f"column '{name}' must be numeric (a label in [0, 1]), got {column.type}")
    return column.cast(pa.float64()).to_numpy(zero_copy_only=False)


def _pickapic(table, caption, images, labels, ties, carry, views):
    """Pick-a-Pic rows (two images and their labels) -> pairs; see ``image_pairs``."""
    if len(images) != 2 or len(labels) != 2:
        raise PrefkitError(f"layout='pickapic' needs two images and two labels, got {images}, {labels}")
    n = table.num_rows
    _column(table, caption)
    first, second = (_column(table, name) for name in images)
    if first.type != second.type or not (
        _is_binary(first.type) or pa.types.is_string(first.type)
        or pa.types.is_large_string(first.type) or pa.types.is_string_view(first.type)
    ):
        raise PrefkitError(
            f"columns '{images[0]}' and '{images[1]}' must both be binary (image bytes) or both "
            f"text (paths), got {first.type} and {second.type}"
        )
    l0, l1 = (_labels(table, name) for name in labels)
    preference = l0 - l1
    null_image = (first.is_null().to_numpy(zero_copy_only=False)
                  | second.is_null().to_numpy(zero_copy_only=False))
    null_label = ~null_image & np.isnan(preference)
    if _is_binary(first.type):
        # Equal bytes have equal xxh3-64; the images are hashed, never decoded.
        hashes = [
            _core.image_hashes(table, column=name, method="exact", paths=False, bad="error")[0]
            for name in images
        ]
        same = pa.array(hashes[0]).fill_null(0).to_numpy() == pa.array(hashes[1]).fill_null(1).to_numpy()
    else:
        same = pc.fill_null(pc.equal(first, second), False).to_numpy(zero_copy_only=False)
    identical = ~null_image & ~null_label & same
    tie = ~null_image & ~null_label & ~identical & (preference == 0)
    keep = ~(null_image | null_label | identical | (tie if ties == "drop" else False))
    rows = np.flatnonzero(keep).astype(np.int64)
    which = (preference[rows] < 0).astype(np.int64)  # 1: the second image is preferred
    if _is_binary(first.type):
        chosen = _core.gather_images(table, columns=list(images), which=pa.array(which),
                                     rows=pa.array(rows))
        rejected = _core.gather_images(table, columns=list(images), which=pa.array(1 - which),
                                       rows=pa.array(rows))
    else:
        taken = [column.take(pa.array(rows)) for column in (first, second)]
        chosen = pc.if_else(pa.array(which == 0), taken[0], taken[1])
        rejected = pc.if_else(pa.array(which == 0), taken[1], taken[0])
    both = np.stack([l0[rows], l1[rows]])
    columns = {
        caption: pa.table(_core.take(table.select([caption]), pa.array(rows), views=True)).column(0),
        "chosen": chosen,
        "rejected": rejected,
        "label": pa.array(np.where(tie[rows], 0.5, 1.0)),
        "score_chosen": pa.array(both[which, np.arange(len(rows))]),
        "score_rejected": pa.array(both[1 - which, np.arange(len(rows))]),
        "group_id": pa.array(pa.array(_core.key_ids(table, caption)).to_numpy()[rows]),
        "row": pa.array(rows),
        "chosen_index": pa.array(which.astype(np.int8)),
    }
    if carry:
        carried = pa.table(_core.take(table.select(carry), pa.array(rows), views=True))
        for name in carry:
            if name in columns:
                raise PrefkitError(
                    f"carry column '{name}' clashes with a result column of the same name"
                )
            columns[name] = carried.column(name)
    dropped = {
        "null_image": int(null_image.sum()),
        "null_label": int(null_label.sum()),
        "identical_images": int(identical.sum()),
        "tie": int(tie.sum()) if ties == "drop" else 0,
    }
    accounting = {
        "rows_in": n,
        "rows_used": len(rows),
        "dropped": {reason: count for reason, count in dropped.items() if count},
        "pairs_out": len(rows),
        "tied_pairs": int(tie[rows].sum()),
    }
    return plain_unless_views(pa.table(columns), views), accounting


def _long(table, caption, image, score, ties, carry, views, mining):
    """A long table (one generation per row) -> pairs through ``mine_pairs``."""
    pairs = mine_pairs(
        table, prompt=caption, response=image, score=score,
        ties="keep" if ties == "soft" else "drop", carry=carry, views=views, **mining,
    )
    record = report_of(pairs)
    margin = pairs.column("margin").to_numpy(zero_copy_only=False)
    label = pa.array(np.where(margin > 0, 1.0, 0.5))
    result = pairs.rename_columns([caption if c == "prompt" else c for c in pairs.column_names])
    result = result.add_column(3, "label", label)
    accounting = {
        key: value for key, value in record.items()
        if key not in ("op", "parameters", "prefkit_version", "source", "rows_out")
    }
    accounting["tied_pairs"] = int((margin <= 0).sum())
    return result, accounting


def image_pairs(
    data: Any,
    *,
    layout: str = "pickapic",
    caption: str = "caption",
    images: Sequence[str] = ("jpg_0", "jpg_1"),
    labels: Sequence[str] = ("label_0", "label_1"),
    image: str = "image",
    score: str | Sequence[str] = "score",
    ties: str = "drop",
    carry: Sequence[str] | None = None,
    strategy: str = "best_vs_worst",
    group: str | None = None,
    k: int = 1,
    min_margin: float = 0.0,
    nan: str = "drop",
    max_pairs_per_prompt: int | None = None,
    seed: int = 0,
    views: bool = False,
) -> pa.Table:
    """Preference pairs of images: ``caption, chosen, rejected, label`` and scores.

    Two layouts:

    - ``"pickapic"``: one comparison per row, as in Pick-a-Pic (``caption, jpg_0, jpg_1,
      label_0, label_1``, the labels 1/0, 0/1 or 0.5/0.5 for a tie): the image with the larger
      label is ``chosen``. Rows with a null image, a null label, or two identical images
      (equal bytes) are dropped and counted.
    - ``"long"``: one generation per row (``caption, image, score``): pairs are mined per
      caption by ``pk.mine_pairs`` and its strategies, over the image column as it is.

    Images are never decoded: ``chosen``/``rejected`` are the input's bytes (or paths).

    Parameters
    ----------
    data
        The table (pyarrow, polars, pandas, ``datasets.Dataset``, any Arrow stream).
    layout
        ``"pickapic"`` or ``"long"``.
    caption
        The caption (prompt) column, text; named so in the result.
    images, labels
        Pick-a-Pic: the two image columns (binary bytes or text paths, both alike) and their
        labels (numbers; the larger label wins).
    image, score
        Long layout: the image column and the score column(s) (several: their mean, plus
        ``agreement`` and ``margin_std`` as in ``pk.mine_pairs``).
    ties
        ``"drop"`` (Diffusion-DPO): tied comparisons are dropped (Pick-a-Pic: counted as
        ``tie``; long: equal scores never pair). ``"soft"``: they are kept with ``label`` 0.5
        (a soft target for ``soft_sigmoid``-style losses).
    carry
        Columns copied from the row (Pick-a-Pic) or the chosen row (long). ``None``: Pick-a-Pic
        carries every other column (user and model ids: ``model_0``/``model_1`` read with
        ``chosen_index``), long carries none.
    strategy, group, k, min_margin, nan, max_pairs_per_prompt, seed
        Long layout: as in ``pk.mine_pairs``.
    views
        ``True``: the images (and text) are view arrays sharing the input's buffers (no bytes
        copied); default: plain ``large_binary``/``large_string`` (``docs/outputs.md``).

    Returns
    -------
    pyarrow.Table
        ``caption, chosen, rejected, label`` (float64: 1.0, or 0.5 for a kept tie),
        ``score_chosen, score_rejected``, then Pick-a-Pic: ``group_id, row, chosen_index`` (0:
        the first image won); long: ``margin, group_id, chosen_row, rejected_row``; then
        ``carry``. The row accounting is in the metadata (``pk.report_of``).

    Examples
    --------
    >>> import prefkit as pk, pyarrow as pa
    >>> data = pa.table({
    ...     "caption": ["a cat", "a dog", "a fox"],
    ...     "jpg_0": [b"cat-0", b"dog-0", b"fox-0"], "jpg_1": [b"cat-1", b"dog-1", b"fox-1"],
    ...     "label_0": [1.0, 0.5, 0.0], "label_1": [0.0, 0.5, 1.0], "user_id": [7, 8, 9],
    ... })
    >>> pairs = pk.image_pairs(data)
    >>> pairs.select(["chosen", "rejected", "user_id"]).to_pylist()  # doctest: +NORMALIZE_WHITESPACE
    [{'chosen': b'cat-0', 'rejected': b'cat-1', 'user_id': 7},
     {'chosen': b'fox-1', 'rejected': b'fox-0', 'user_id': 9}]
    >>> pk.report_of(pairs)["dropped"]
    {'tie': 1}
    >>> pk.image_pairs(data, ties="soft").column("label").to_pylist()
    [1.0, 0.5, 1.0]
    """
    table = as_table(data)
    if layout not in LAYOUTS:
        raise PrefkitError(f"layout must be 'pickapic' or 'long', got {layout!r}")
    if ties not in ("drop", "soft"):
        raise PrefkitError(f"ties must be 'drop' or 'soft', got {ties!r}")
    parameters: dict[str, Any] = {"layout": layout, "caption": caption, "ties": ties}
    if layout == "pickapic":
        images, labels = list(images), list(labels)
        used = {caption, *images, *labels}
        carry = [c for c in table.column_names if c not in used] if carry is None else (
            _names(carry, "carry") if carry else []
        )
        parameters.update(images=images, labels=labels, carry=carry, views=views)
        result, accounting = _pickapic(table, caption, images, labels, ties, carry, views)
    else:
        mining = {
            "strategy": strategy, "group": group, "k": k, "min_margin": min_margin, "nan": nan,
            "max_pairs_per_prompt": max_pairs_per_prompt, "seed": seed,
        }
        carry = _names(carry, "carry") if carry else []
        parameters.update(image=image, score=score, carry=carry, views=views, **mining)
        result, accounting = _long(table, caption, image, score, ties, carry, views, mining)
    return attach(result, "image_pairs", parameters, accounting, source=table)
