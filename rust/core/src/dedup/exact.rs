//! Exact duplicates: the compared value of every unit, and units grouped by equal value.

use rayon::prelude::*;
use twox_hash::XxHash3_128;

use crate::error::Result;
use crate::grouping::first_equal_rows;
use crate::key::{KeyBytes, KeyColumn};
use crate::normalize::{FlatText, Form};
use crate::parallel;
use crate::table::Table;
use crate::text::{is_text, TextColumn};

/// A compared column, read once from the input.
pub enum Source {
    /// A text column.
    Text(TextColumn),
    /// Any other key type (integers, chat messages): compared by its canonical bytes.
    Key(KeyColumn),
}

impl Source {
    /// Read column `name` of `table`; with `text_only` (near-duplicates), chat messages are
    /// read as rendered text and any other non-text column is an error.
    pub fn read(table: &Table, name: &str, text_only: bool) -> Result<Self> {
        let column = table.column(name)?;
        if text_only {
            return Ok(Source::Text(TextColumn::with_messages(&column)?));
        }
        if is_text(column.field.data_type()) {
            return Ok(Source::Text(TextColumn::new(&column)?));
        }
        Ok(Source::Key(KeyColumn::new(&column)?))
    }
}

/// The compared value of every unit in one column.
pub enum UnitValues<'a> {
    /// Text as it is, borrowed from the input.
    Borrowed(Vec<Option<&'a str>>),
    /// Text prepared (normalised) into a flat buffer.
    Prepared(FlatText),
    /// Canonical key bytes of every row, and the row that stands for each unit.
    Key(KeyBytes<'a>, Vec<usize>),
}

impl<'a> UnitValues<'a> {
    /// The values of `source` at rows `reps` (one per unit), text prepared as `form`.
    pub fn new(source: &'a Source, reps: &[usize], form: Form) -> Self {
        match source {
            Source::Text(text) => {
                let strs = text.strs();
                let picked: Vec<Option<&'a str>> = reps.iter().map(|&r| strs[r]).collect();
                if form == Form::Raw {
                    UnitValues::Borrowed(picked)
                } else {
                    UnitValues::Prepared(FlatText::prepare(&picked, form))
                }
            }
            Source::Key(key) => UnitValues::Key(key.bytes(), reps.to_vec()),
        }
    }

    /// The text of unit `u` (None for null or a non-text column).
    #[inline]
    pub fn text(&self, u: usize) -> Option<&str> {
        match self {
            UnitValues::Borrowed(strs) => strs[u],
            UnitValues::Prepared(flat) => flat.get(u),
            UnitValues::Key(..) => None,
        }
    }

    /// The compared bytes of unit `u`, None for null.
    #[inline]
    fn bytes(&self, u: usize) -> Option<&[u8]> {
        match self {
            UnitValues::Key(bytes, reps) => bytes.get(reps[u]),
            _ => self.text(u).map(str::as_bytes),
        }
    }
}

/// For every unit, the first unit (in order) whose values equal its own in all columns; a
/// null equals a null.
pub fn exact_roots(columns: &[UnitValues<'_>], units: usize) -> Vec<u32> {
    let keys = match columns {
        // One text column: its text is the key, borrowed, not copied.
        [only @ (UnitValues::Borrowed(_) | UnitValues::Prepared(_))] => {
            KeyBytes::Text((0..units).map(|u| only.text(u)).collect())
        }
        _ => tagged(columns, units),
    };
    let mut roots = first_equal_rows(&keys);
    // Null keys: all equal to the first null.
    let mut first_null = None;
    for (u, root) in roots.iter_mut().enumerate() {
        if *root == u32::MAX {
            *root = *first_null.get_or_insert(u as u32);
        }
    }
    roots
}

/// Append unit `u`'s values to `data` as one tagged byte string (per column: 0 for null, or
/// 1, the length as u64 and the bytes), so that no two different tuples share bytes.
fn encode_unit(columns: &[UnitValues<'_>], u: usize, data: &mut Vec<u8>) {
    for column in columns {
        match column.bytes(u) {
            None => data.push(0u8),
            Some(bytes) => {
                data.push(1u8);
                data.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
                data.extend_from_slice(bytes);
            }
        }
    }
}

/// Every unit's values as one tagged byte string ([`encode_unit`]).
fn tagged<'a>(columns: &[UnitValues<'_>], units: usize) -> KeyBytes<'a> {
    let mut data = Vec::new();
    let mut offsets = Vec::with_capacity(units + 1);
    offsets.push(0);
    for u in 0..units {
        encode_unit(columns, u, &mut data);
        offsets.push(data.len());
    }
    KeyBytes::Encoded {
        data,
        offsets,
        valid: vec![true; units],
    }
}

/// xxh3-128 of every unit's tagged values ([`encode_unit`]): the identity of a unit's values
/// when units are compared across chunks of an input too large for [`exact_roots`] (two
/// different values share a hash with probability 2^-128 per pair).
pub fn unit_hashes(columns: &[UnitValues<'_>], units: usize) -> Vec<u128> {
    parallel::install(|| {
        (0..units)
            .into_par_iter()
            .map_init(Vec::new, |data, u| {
                data.clear();
                encode_unit(columns, u, data);
                XxHash3_128::oneshot(data)
            })
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_values_share_the_first_unit_and_nulls_are_equal() {
        let flat = FlatText::prepare(
            &[Some("A b"), Some("a, B"), None, Some("c"), None],
            Form::Normalized,
        );
        let roots = exact_roots(&[UnitValues::Prepared(flat)], 5);
        assert_eq!(roots, vec![0, 0, 2, 3, 2]);
    }

    #[test]
    fn several_columns_compare_as_tuples() {
        let a = UnitValues::Borrowed(vec![Some("ab"), Some("a"), Some("ab"), None]);
        let b = UnitValues::Borrowed(vec![Some("c"), Some("bc"), Some("c"), Some("c")]);
        assert_eq!(exact_roots(&[a, b], 4), vec![0, 1, 0, 3]);
    }

    #[test]
    fn hashes_are_equal_exactly_when_the_tuples_are() {
        let a = UnitValues::Borrowed(vec![Some("ab"), Some("a"), Some("ab"), None, None]);
        let b = UnitValues::Borrowed(vec![Some("c"), Some("bc"), Some("c"), Some("c"), Some("c")]);
        let h = unit_hashes(&[a, b], 5);
        assert_eq!(h[0], h[2]);
        assert_eq!(h[3], h[4]);
        assert_ne!(h[0], h[1]);
        assert_ne!(h[0], h[3]);
    }
}
