//! Images stored as bytes (PNG, JPEG, WebP) or as paths: content hashes, perceptual hashes
//! and near-duplicate clusters (`pk.dedup_images`, `pk.find_image_duplicates`,
//! `pk.split_images`).
//!
//! - [`source`]: the image column (binary or paths) hashed in parallel; bad images.
//! - [`grey`]: bytes decoded into grey pixels as Pillow's `convert("L")` makes them.
//! - [`resample`]: Pillow's Lanczos resize, so thumbnails match the `imagehash` package's.
//! - [`hash`]: xxh3-64 of the bytes, dHash and pHash.
//! - [`cluster`]: clusters of hashes within a Hamming distance (multi-index hashing).
//!
//! The definitions, and where they differ from `imagehash`, are in docs/images.md.

pub mod cluster;
pub mod grey;
pub mod hash;
pub mod resample;
pub mod source;

pub use cluster::hamming_roots;
pub use source::{hash_images, Bad, HashOptions, ImageHashes, Method, Status};
