//! The image column of a table, bytes or paths, hashed row by row in parallel.

use std::borrow::Cow;

use rayon::prelude::*;

use super::grey::decode;
use super::hash::{content_hash, dhash, phash};
use crate::error::{Error, Result};
use crate::parallel;
use crate::table::{type_name, Table};
use crate::text::{is_binary, is_text, BinaryColumn, TextColumn, Views};

/// Which hash compares images.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// xxh3-64 of the bytes: equal files (the image is never decoded).
    Exact,
    /// Difference hash of the decoded image.
    DHash,
    /// Perceptual (DCT) hash of the decoded image.
    PHash,
}

impl Method {
    /// `"exact"`, `"dhash"` or `"phash"`.
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "exact" => Ok(Method::Exact),
            "dhash" => Ok(Method::DHash),
            "phash" => Ok(Method::PHash),
            other => Err(Error::argument(
                "method",
                "'exact', 'dhash' or 'phash'",
                format!("'{other}'"),
            )),
        }
    }
}

/// What happens to an image that cannot be read or decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bad {
    /// Fail, naming the column and the row.
    Error,
    /// Leave the row unhashed and count it.
    Drop,
}

impl Bad {
    /// `"error"` or `"drop"`.
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "error" => Ok(Bad::Error),
            "drop" => Ok(Bad::Drop),
            other => Err(Error::argument(
                "bad",
                "'error' or 'drop'",
                format!("'{other}'"),
            )),
        }
    }
}

/// The arguments of [`hash_images`].
#[derive(Debug, Clone)]
pub struct HashOptions {
    /// The image column: binary (the bytes) or text (paths).
    pub column: String,
    /// The hash.
    pub method: Method,
    /// Whether the column holds paths: `None` decides by its type (text: paths).
    pub paths: Option<bool>,
    /// Undecodable or unreadable images.
    pub bad: Bad,
}

/// What became of one row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Hashed.
    Hashed,
    /// The image is null.
    Null,
    /// The image could not be read or decoded (with [`Bad::Drop`]).
    Bad,
}

/// The hashes of every row of an image column.
#[derive(Debug, Clone)]
pub struct ImageHashes {
    /// The method's hash of every hashed row (0 elsewhere).
    pub hash: Vec<u64>,
    /// xxh3-64 of the bytes of every hashed row (0 elsewhere).
    pub content: Vec<u64>,
    /// What became of each row.
    pub status: Vec<Status>,
}

/// Where a row's bytes come from.
enum Images {
    Bytes(Views),
    Paths(TextColumn),
}

impl Images {
    fn read(table: &Table, options: &HashOptions) -> Result<Self> {
        let column = table.column(&options.column)?.decoded()?;
        let data_type = column.field.data_type();
        let wrong = |expected| Error::ColumnType {
            column: options.column.clone(),
            expected,
            actual: type_name(data_type),
        };
        match (is_binary(data_type), is_text(data_type), options.paths) {
            (true, _, None | Some(false)) => Ok(Images::Bytes(BinaryColumn::new(&column)?.views())),
            (_, true, None | Some(true)) => Ok(Images::Paths(TextColumn::new(&column)?)),
            (_, _, Some(true)) => Err(wrong("text (paths of image files)")),
            (_, _, Some(false)) => Err(wrong("binary (image bytes)")),
            _ => Err(wrong(
                "binary (image bytes: binary, large_binary or binary_view) or text (paths)",
            )),
        }
    }
}

/// One row's hashes, `None` for a null image, or why it cannot be hashed.
fn hash_one(bytes: &[u8], method: Method) -> std::result::Result<(u64, u64), String> {
    let content = content_hash(bytes);
    let hash = match method {
        Method::Exact => content,
        Method::DHash => dhash(&decode(bytes)?),
        Method::PHash => phash(&decode(bytes)?),
    };
    Ok((hash, content))
}

type RowHash = std::result::Result<Option<(u64, u64)>, String>;

/// Hash every row of the image column, in parallel on prefkit's pool. Paths are read when
/// their row is hashed (never all at once). With [`Bad::Error`], the first bad row (in row
/// order) is the error, naming the column, the row and why.
pub fn hash_images(table: &Table, options: &HashOptions) -> Result<ImageHashes> {
    let images = Images::read(table, options)?;
    let method = options.method;
    let rows: Vec<RowHash> = parallel::install(|| match &images {
        Images::Bytes(views) => (0..views.len())
            .into_par_iter()
            .with_min_len(8)
            .map(|row| views.bytes(row).map(|b| hash_one(b, method)).transpose())
            .collect(),
        Images::Paths(paths) => paths
            .strs()
            .into_par_iter()
            .with_min_len(8)
            .map(|path| {
                path.map(|path| {
                    let bytes: Cow<[u8]> = std::fs::read(path)
                        .map_err(|e| format!("cannot read the image file '{path}': {e}"))?
                        .into();
                    hash_one(&bytes, method).map_err(|why| format!("{why} (file '{path}')"))
                })
                .transpose()
            })
            .collect(),
    });
    let mut out = ImageHashes {
        hash: vec![0; rows.len()],
        content: vec![0; rows.len()],
        status: vec![Status::Hashed; rows.len()],
    };
    for (row, result) in rows.into_iter().enumerate() {
        match result {
            Ok(Some((hash, content))) => {
                out.hash[row] = hash;
                out.content[row] = content;
            }
            Ok(None) => out.status[row] = Status::Null,
            Err(why) if options.bad == Bad::Error => {
                return Err(Error::BadImage {
                    column: options.column.clone(),
                    row,
                    why,
                })
            }
            Err(_) => out.status[row] = Status::Bad,
        }
    }
    Ok(out)
}
