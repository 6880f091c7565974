//! prefkit-core: preference-data operations over Apache Arrow.
//!
//! Pure Rust, no Python: the `prefkit-py` crate is a thin binding over this one. Every
//! operation takes a [`Table`] (the record batches of one input, as given) and returns plain
//! Arrow data plus an [`Accounting`] of what happened to every input row.
//!
//! Modules, one concern each:
//! - [`table`]: column lookup over chunked input, numeric columns as `f64`.
//! - [`text`]: text columns of any Arrow string type, and zero-copy string views into them.
//! - [`utf8`]: the UTF-8 check of imported text (capsule producers do not validate).
//! - [`key`]: canonical bytes of a grouping key (text, integers, chat messages) and its xxh3 id.
//! - [`grouping`]: rows grouped by key, with a fast path for contiguous groups.
//! - [`pairs`]: chosen/rejected pair mining, and the pair selection shared with trees.
//! - [`joint_pairs`]: pairs across prompts (JPO): a response of one prompt over one of another.
//! - [`curriculum`]: curriculum stages and order of pairs.
//! - [`lists`]: ranked lists of responses per prompt.
//! - [`trees`]: preference trees (tries of steps), node-table validation, sibling pairs/lists.
//! - [`split_prompt`]: full conversations into prompt, chosen and rejected.
//! - [`batching`]: token-budget batch plans.
//! - [`pieces`]: texts cut with a tokenizer's pre-tokenisation regex, distinct pieces numbered.
//! - [`plain`]: view arrays copied into plain `large_string`, for consumers without view kernels.
//! - [`ragged`]: gathering rows of ragged arrays (token ids per text).
//! - [`normalize`]: the one text normalisation of dedup, decontamination and splits.
//! - [`output_bytes`]: byte buffers of large results, on transparent huge pages.
//! - [`dedup`]: exact and MinHash-LSH deduplication, decontamination.
//! - [`split`]: leak-free train/test splits.
//! - [`accounting`]: rows in, rows used, rows dropped by reason.
//! - [`parallel`]: the rayon pool, sized by `PREFKIT_NUM_THREADS` and safe after `fork`.
//! - [`prefetch`]: software prefetch for loops over many short groups.
//! - [`winrates`]: pairwise win-probability matrices: win rates, rankings, cycles, pairs.
//! - [`images`]: image bytes: content hashes and perceptual hashes for dedup.
//! - [`jsonl`]: checks of JSON-lines bytes that pyarrow's parser would crash on.

pub mod accounting;
pub mod batching;
pub mod curriculum;
pub mod dedup;
pub mod error;
pub mod grouping;
pub mod images;
pub mod joint_pairs;
pub mod jsonl;
pub mod key;
pub mod lists;
pub mod messages;
pub mod normalize;
pub mod output_bytes;
pub mod pairs;
pub mod parallel;
pub mod pieces;
pub mod plain;
pub mod prefetch;
pub mod ragged;
pub mod split;
pub mod split_prompt;
pub mod table;
pub mod text;
pub mod trees;
pub mod utf8;
pub mod winrates;

pub use accounting::Accounting;
pub use error::{Error, Result};
pub use table::Table;
