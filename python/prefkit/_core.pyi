"""Type stubs of the native module ``prefkit._core`` (built from rust/py).

These functions are the raw Rust operations; use the documented wrappers in ``prefkit``.
Tables cross the boundary through the Arrow PyCapsule interface.
"""

from typing import Any, TypeAlias

def mine_pairs(
    table: Any,
    *,
    prompt: str,
    response: str,
    score: list[str],
    group: str | None,
    strategy: str,
    k: int,
    min_margin: float,
    ties: str,
    nan: str,
    max_pairs_per_prompt: int | None,
    length_penalty: float,
    seed: int,
    carry: list[str],
) -> tuple[Any, dict[str, Any]]:
    """Mine pairs; returns an Arrow table (PyCapsule) and the row accounting."""

def mine_joint_pairs(
    table: Any,
    *,
    prompt: str,
    response: str,
    score: list[str],
    group: str | None,
    strategy: str,
    pairs_per_prompt: int,
    min_margin: float,
    nan: str,
    seed: int,
    carry: list[str],
) -> tuple[Any, dict[str, Any]]:
    """Mine joint pairs across prompts; returns an Arrow table and the row accounting."""

def plan_batches(
    lengths: Any, *, max_tokens: int, packed: bool, shuffle: bool, seed: int
) -> tuple[Any, Any]:
    """Plan batches; returns Arrow uint64 arrays ``rows`` and ``offsets``."""

def rank_lists(
    table: Any,
    *,
    prompt: str,
    response: str,
    score: str,
    group: str | None,
    list_size: int | None,
    min_list_size: int,
    ties: str,
    nan: str,
    views: bool,
) -> tuple[Any, dict[str, Any]]:
    """Ranked lists; returns an Arrow table (PyCapsule) and the row accounting."""

def win_rates(
    table: Any,
    *,
    prompt: str,
    responses: str,
    win_prob: str,
    rows: str | None,
    group_id: str | None,
    scores: str | None,
    tolerance: float,
    views: bool,
) -> tuple[Any, dict[str, Any]]:
    """Long form of win-probability matrices; returns an Arrow table and the accounting."""

def intransitivity(
    table: Any,
    *,
    prompt: str,
    responses: str,
    win_prob: str,
    rows: str | None,
    group_id: str | None,
    scores: str | None,
    tolerance: float,
) -> tuple[Any, dict[str, Any]]:
    """3-cycles (and agreement) per win matrix; returns an Arrow table and the accounting."""

def order_curriculum(
    table: Any,
    *,
    by: str,
    order: str,
    stages: int | None,
    per_prompt: bool,
    group: str,
    shuffle_within_stage: bool,
    seed: int,
) -> tuple[Any, dict[str, Any]]:
    """Curriculum; returns the reordered table with ``stage`` and the accounting."""

def build_trees(
    table: Any, *, prompt: str, steps: str, reward: str, group: str | None
) -> tuple[Any, dict[str, Any]]:
    """Tries of steps; returns the node table and the row accounting."""

NodeColumns: TypeAlias = tuple[str, str, str, str, str, str | None, str | None]

def tree_pairs(
    table: Any,
    *,
    columns: NodeColumns,
    strategy: str,
    k: int,
    min_margin: float,
    ties: str,
    max_pairs_per_node: int | None,
    min_visits: float,
    seed: int,
) -> tuple[Any, dict[str, Any]]:
    """Sibling pairs of a node table (tree, node, parent, step, value, visits, prompt)."""

def tree_lists(
    table: Any,
    *,
    columns: NodeColumns,
    list_size: int | None,
    min_list_size: int,
    ties: str,
    min_visits: float,
) -> tuple[Any, dict[str, Any]]:
    """Sibling lists of a node table."""
def dedup_rows(
    table: Any,
    *,
    columns: list[str],
    group: str | None,
    method: str,
    normalize: bool,
    ngram: int,
    num_perm: int,
    threshold: float,
    bands: int | None,
    seed: int,
) -> tuple[Any, dict[str, Any]]:
    """Dedup; returns the kept rows (Arrow int64 array) and the row accounting."""

def find_duplicates(
    table: Any,
    *,
    columns: list[str],
    group: str | None,
    method: str,
    normalize: bool,
    ngram: int,
    num_perm: int,
    threshold: float,
    bands: int | None,
    seed: int,
) -> tuple[Any, Any]:
    """Rows in duplicate clusters and their clusters' first rows (Arrow int64 arrays)."""

def find_contamination(
    table: Any,
    reference: Any,
    *,
    column: str,
    reference_column: str,
    ngram: int,
    normalize: bool,
) -> tuple[Any, Any, dict[str, Any]]:
    """Contaminated rows (int64), their reference rows (list<int64>) and the accounting."""

def split_rows(
    table: Any,
    *,
    group: str,
    test_rows: int,
    seed: int,
    near_duplicates: bool,
    ngram: int,
    num_perm: int,
    threshold: float,
) -> tuple[Any, dict[str, Any]]:
    """A boolean Arrow array (True: test side) and the accounting."""

def normalize_text(text: str) -> str:
    """One text normalised as dedup does."""

def take(table: Any, rows: Any, *, views: bool = False) -> Any:
    """The rows ``rows`` (Arrow int64) of ``table``, in that order (any type, string_view too);
    with ``views``, text columns as string_view arrays sharing the input's buffers."""

def plain_text(table: Any) -> Any:
    """``table`` with every string_view/binary_view array, at any depth, copied into
    large_string/large_binary; other columns shared, metadata kept."""

def split_prompt(
    table: Any,
    *,
    chosen: str,
    rejected: str,
    boundary: str | None,
    unsplittable: str,
) -> tuple[Any, dict[str, Any]]:
    """Split full conversations; returns an Arrow table (PyCapsule) and the row accounting."""

def text_lengths(table: Any, column: str) -> Any:
    """Length in characters of every row of a text column (int64 array, null for null)."""

def key_ids(table: Any, column: str) -> Any:
    """Every row's group key id (uint64 xxh3 of the key, the group_id; null for a null key)."""

def split_pieces(
    table: Any,
    column: str,
    *,
    pattern: str,
    added: list[str],
    added_normalized: list[str],
    avoided: list[str],
    nfc: bool,
) -> tuple[Any, Any, Any, Any]:
    """Cut a text column as a tokenizer's pre-tokenisation does, distinct pieces numbered.

    Added tokens (``added`` on raw text, then ``added_normalized``) are pieces of their own; the
    text between them is cut with ``pattern``. Returns ``(distinct, ids, offsets, unsplit)``:
    distinct pieces (string), every text's piece numbers (uint32) starting at ``offsets``
    (int64, texts + 1), texts left to the tokenizer (bool: one of ``avoided`` in it, a regex
    failure, text NFC would change when ``nfc``, a piece the regex does not match whole).
    """

def take_ragged(values: Any, offsets: Any, indices: Any) -> tuple[Any, Any]:
    """Rows ``indices`` (int64) of a ragged array: ``values`` (int32) and ``offsets`` (int64,
    rows + 1). Returns the gathered ``(values, offsets)``, copied in parallel."""

def cluster_keys(
    table: Any,
    *,
    columns: list[str],
    method: str,
    normalize: bool,
    ngram: int,
    num_perm: int,
    threshold: float,
    bands: int | None,
    seed: int,
) -> tuple[Any, Any, Any, Any, int]:
    """Per row of a chunk: xxh3-128 of its prepared values (high and low uint64 halves),
    whether it was sketched, its LSH band keys (uint64, row-major) and the number of bands."""

def signatures(
    table: Any, *, columns: list[str], normalize: bool, ngram: int, num_perm: int, seed: int
) -> Any:
    """MinHash sketches of every row (uint32, num_perm per row, row-major)."""

def lsh_candidates(band: Any, key: Any, row: Any) -> tuple[Any, Any]:
    """Candidate pairs (int64 rows a < b, sorted, distinct) among one partition's band keys."""

def verify_pairs(path: str, num_perm: int, a: Any, b: Any, threshold: float) -> Any:
    """Whether each pair of sketches (int64 indices into the sketch file) reaches threshold."""

def union_roots(n: int, a: Any, b: Any) -> Any:
    """The smallest item of every item's set after joining the pairs (int64)."""

def choose_test_clusters(sizes: Any, test_rows: int, seed: int) -> tuple[Any, int]:
    """Which clusters (row counts in order of first row) go to the test side; its rows."""

def first_null_line(data: Any) -> int | None:
    """Byte offset of the first line of JSON-lines bytes that starts with a top-level null."""

def num_threads() -> int:
    """Threads of prefkit's pool: PREFKIT_NUM_THREADS, else cores capped by the cgroup quota."""

def image_hashes(
    table: Any, *, column: str, method: str, paths: bool | None, bad: str
) -> tuple[Any, Any, Any]:
    """Per row of an image column (bytes or paths): the method's hash and the xxh3-64 of the
    bytes (uint64, null where not hashed) and a status (uint8: 0 hashed, 1 null, 2 bad)."""

def hamming_clusters(hashes: Any, threshold: int) -> Any:
    """For every row, the first row of its cluster of uint64 hashes within ``threshold`` bits
    (int64); a null hash is alone."""

def gather_images(table: Any, *, columns: list[str], which: Any, rows: Any) -> Any:
    """Entry ``i``: row ``rows[i]`` of binary column ``columns[which[i]]`` (int64 arrays), as a
    binary_view array sharing the input's buffers."""
