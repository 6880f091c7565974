//! Grouping keys: the canonical bytes of a key value, and the stable id hashed from them.
//!
//! Text keys are their UTF-8 bytes, borrowed from the input. Any other key (integers, chat
//! messages as `list<struct<role, content>>`, ...) is encoded once into a tagged, unambiguous
//! byte string (documented in docs/pairs.md) so that ids are stable across runs, versions and
//! machines, and equal keys have equal bytes.

use arrow_array::cast::AsArray;
use arrow_array::types::*;
use arrow_array::{Array, ArrayRef};
use arrow_schema::DataType;
use twox_hash::XxHash3_64;

use crate::error::{Error, Result};
use crate::table::{type_name, Column};
use crate::text::{is_text, TextColumn, Views};

const NULL: u8 = 0x00;
const TEXT: u8 = 0x01;
const INT: u8 = 0x02;
const FLOAT: u8 = 0x03;
const BOOL: u8 = 0x04;
const LIST: u8 = 0x05;
const STRUCT: u8 = 0x06;

/// The stable id of a key: xxh3-64 (seed 0) of its canonical bytes.
pub fn key_id(bytes: &[u8]) -> u64 {
    XxHash3_64::oneshot(bytes)
}

/// Every row's key id ([`key_id`] of its canonical bytes; None for a null key), in row order:
/// the `group_id` that the group-wise operations give the row's group, so that a caller can
/// partition or check contiguity of groups without grouping.
pub fn key_ids(column: &Column) -> Result<Vec<Option<u64>>> {
    let key = KeyColumn::new(column)?;
    let bytes = key.bytes();
    Ok((0..bytes.len()).map(|i| bytes.get(i).map(key_id)).collect())
}

/// Every row's key as canonical bytes (None for a null key), in row order.
pub enum KeyBytes<'a> {
    /// Text keys, borrowed from the input.
    Text(Vec<Option<&'a str>>),
    /// Text keys of string_view columns, read through their views (no per-row vector, and
    /// rows whose views are identical are equal without reading the text).
    Views(Views),
    /// Encoded keys: row `i` is `data[offsets[i]..offsets[i + 1]]` when `valid[i]`.
    Encoded {
        data: Vec<u8>,
        offsets: Vec<usize>,
        valid: Vec<bool>,
    },
}

/// Owner of whatever the key bytes borrow from.
pub enum KeyColumn {
    Text(TextColumn),
    Other(Column),
}

impl KeyColumn {
    /// Read `column` as a key, checking that its type can be one.
    pub fn new(column: &Column) -> Result<Self> {
        let column = &column.decoded()?;
        if is_text(column.field.data_type()) {
            return Ok(KeyColumn::Text(TextColumn::new(column)?));
        }
        if !encodable(column.field.data_type()) {
            return Err(Error::ColumnType {
                column: column.name().to_string(),
                expected: "a key: text, integer, or nested lists/structs of those (chat messages)",
                actual: type_name(column.field.data_type()),
            });
        }
        Ok(KeyColumn::Other(column.clone()))
    }

    /// Canonical bytes of every row's key.
    pub fn bytes(&self) -> KeyBytes<'_> {
        match self {
            KeyColumn::Text(text) if text.is_views() => KeyBytes::Views(text.views()),
            KeyColumn::Text(text) => KeyBytes::Text(text.strs()),
            KeyColumn::Other(column) => {
                let rows: usize = column.chunks.iter().map(|c| c.len()).sum();
                let mut data = Vec::new();
                let mut offsets = Vec::with_capacity(rows + 1);
                let mut valid = Vec::with_capacity(rows);
                offsets.push(0);
                for chunk in &column.chunks {
                    // Logical nulls: a column of Arrow type null has no validity buffer, yet
                    // every value is null.
                    let nulls = chunk.logical_nulls();
                    for i in 0..chunk.len() {
                        let is_valid = nulls.as_ref().is_none_or(|n| n.is_valid(i));
                        valid.push(is_valid);
                        if is_valid {
                            encode(chunk, i, &mut data);
                        }
                        offsets.push(data.len());
                    }
                }
                KeyBytes::Encoded {
                    data,
                    offsets,
                    valid,
                }
            }
        }
    }
}

impl KeyBytes<'_> {
    /// The key of `row`, None when it is null.
    #[inline]
    pub fn get(&self, row: usize) -> Option<&[u8]> {
        match self {
            KeyBytes::Text(strs) => strs[row].map(str::as_bytes),
            KeyBytes::Views(views) => views.bytes(row),
            KeyBytes::Encoded {
                data,
                offsets,
                valid,
            } => valid[row].then(|| &data[offsets[row]..offsets[row + 1]]),
        }
    }

    /// Whether `row`'s key is not null.
    #[inline(always)]
    pub fn is_valid(&self, row: usize) -> bool {
        match self {
            KeyBytes::Text(strs) => strs[row].is_some(),
            KeyBytes::Views(views) => views.is_valid(row),
            KeyBytes::Encoded { valid, .. } => valid[row],
        }
    }

    /// Where the key of `row` (with a key) is stored, as 16 bytes: rows with the same location
    /// hold equal keys without their bytes being read (the converse does not hold). For
    /// string_view keys it is the view itself (short texts are inline in it), for other text
    /// the address and length of the bytes; encoded keys have one location per row.
    #[inline(always)]
    pub fn location(&self, row: usize) -> u128 {
        let at = |bytes: &[u8]| (bytes.as_ptr() as u128) << 64 | bytes.len() as u128;
        match self {
            KeyBytes::Views(views) => views.view(row),
            _ => self.get(row).map_or(0, at),
        }
    }

    /// Whether two keys, each given by its row and [`KeyBytes::location`], are equal; for
    /// string_view keys the rows' views are not read again.
    #[inline(always)]
    pub fn same_located_key(&self, a: (usize, u128), b: (usize, u128)) -> bool {
        a.1 == b.1
            || match self {
                KeyBytes::Views(views) => views.same_view_text(a.1, b.1),
                _ => self.same_key(a.0, b.0),
            }
    }

    /// Asks the processor to start loading the bytes of the key at `location`, when they can
    /// be found from it alone (string_view keys).
    #[inline(always)]
    pub fn prefetch(&self, location: u128) {
        if let KeyBytes::Views(views) = self {
            views.prefetch(location);
        }
    }

    /// Whether rows `a` and `b`, both with a key, hold equal keys.
    #[inline(always)]
    pub fn same_key(&self, a: usize, b: usize) -> bool {
        match self {
            KeyBytes::Views(views) => views.same_text(a, b),
            _ => match (self.get(a), self.get(b)) {
                // Repeated prompts of a plain string column may share one allocation too.
                (Some(x), Some(y)) => {
                    x.len() == y.len() && (std::ptr::eq(x.as_ptr(), y.as_ptr()) || x == y)
                }
                _ => false,
            },
        }
    }

    /// The end of the run of equal keys that starts at `start` (a row with a key): the first
    /// row of `start + 1..end` whose key is null or differs from the previous row's, else `end`.
    #[inline]
    pub fn run_end(&self, start: usize, end: usize) -> usize {
        if let KeyBytes::Views(views) = self {
            return views.run_end(start, end);
        }
        let mut row = start + 1;
        while row < end && self.is_valid(row) && self.same_key(row - 1, row) {
            row += 1;
        }
        row
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        match self {
            KeyBytes::Text(strs) => strs.len(),
            KeyBytes::Views(views) => views.len(),
            KeyBytes::Encoded { valid, .. } => valid.len(),
        }
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Whether values of `data_type` have a canonical encoding ([`encode_value`]).
pub fn encodable(data_type: &DataType) -> bool {
    match data_type {
        DataType::Null | DataType::Boolean | DataType::Float32 | DataType::Float64 => true,
        t if t.is_integer() || is_text(t) => true,
        DataType::List(f) | DataType::LargeList(f) => encodable(f.data_type()),
        DataType::Struct(fields) => fields.iter().all(|f| encodable(f.data_type())),
        _ => false,
    }
}

fn push_len(out: &mut Vec<u8>, n: usize) {
    out.extend_from_slice(&(n as u64).to_le_bytes());
}

fn push_text(out: &mut Vec<u8>, s: &str) {
    out.push(TEXT);
    push_len(out, s.len());
    out.extend_from_slice(s.as_bytes());
}

/// Append the tagged canonical encoding of `array[i]` to `out` (docs/pairs.md): equal values
/// have equal bytes. `array`'s type must be [`encodable`].
pub fn encode_value(array: &ArrayRef, i: usize, out: &mut Vec<u8>) {
    encode(array, i, out)
}

/// Append the tagged encoding of `array[i]` to `out`.
fn encode(array: &ArrayRef, i: usize, out: &mut Vec<u8>) {
    if array.is_null(i) {
        out.push(NULL);
        return;
    }
    macro_rules! int {
        ($t:ty) => {{
            out.push(INT);
            out.extend_from_slice(&(array.as_primitive::<$t>().value(i) as i64).to_le_bytes());
        }};
    }
    match array.data_type() {
        DataType::Null => out.push(NULL),
        DataType::Boolean => {
            out.push(BOOL);
            out.push(array.as_boolean().value(i) as u8);
        }
        DataType::Int8 => int!(Int8Type),
        DataType::Int16 => int!(Int16Type),
        DataType::Int32 => int!(Int32Type),
        DataType::Int64 => int!(Int64Type),
        DataType::UInt8 => int!(UInt8Type),
        DataType::UInt16 => int!(UInt16Type),
        DataType::UInt32 => int!(UInt32Type),
        DataType::UInt64 => int!(UInt64Type),
        DataType::Float32 => {
            out.push(FLOAT);
            let v = array.as_primitive::<Float32Type>().value(i) as f64;
            out.extend_from_slice(&v.to_bits().to_le_bytes());
        }
        DataType::Float64 => {
            out.push(FLOAT);
            let v = array.as_primitive::<Float64Type>().value(i);
            out.extend_from_slice(&v.to_bits().to_le_bytes());
        }
        DataType::Utf8 => push_text(out, array.as_string::<i32>().value(i)),
        DataType::LargeUtf8 => push_text(out, array.as_string::<i64>().value(i)),
        DataType::Utf8View => push_text(out, array.as_string_view().value(i)),
        DataType::List(_) => encode_list(&array.as_list::<i32>().value(i), out),
        DataType::LargeList(_) => encode_list(&array.as_list::<i64>().value(i), out),
        DataType::Struct(fields) => {
            let array = array.as_struct();
            out.push(STRUCT);
            for (field, child) in fields.iter().zip(array.columns()) {
                push_len(out, field.name().len());
                out.extend_from_slice(field.name().as_bytes());
                encode(child, i, out);
            }
        }
        other => unreachable!("`encodable` rejects {other} before encoding"),
    }
}

fn encode_list(values: &ArrayRef, out: &mut Vec<u8>) {
    out.push(LIST);
    push_len(out, values.len());
    for j in 0..values.len() {
        encode(values, j, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use arrow_array::{Int64Array, StringArray};
    use arrow_schema::Field;

    fn column(array: ArrayRef) -> Column {
        Column {
            field: Arc::new(Field::new("k", array.data_type().clone(), true)),
            chunks: vec![array],
        }
    }

    #[test]
    fn text_keys_are_their_utf8_bytes() {
        let key =
            KeyColumn::new(&column(Arc::new(StringArray::from(vec![Some("é"), None])))).unwrap();
        let bytes = key.bytes();
        assert_eq!(bytes.get(0), Some("é".as_bytes()));
        assert_eq!(bytes.get(1), None);
        assert_eq!(key_id(b"abc"), XxHash3_64::oneshot(b"abc"));
        let ids = key_ids(&column(Arc::new(StringArray::from(vec![
            Some("abc"),
            None,
        ]))))
        .unwrap();
        assert_eq!(ids, vec![Some(XxHash3_64::oneshot(b"abc")), None]);
    }

    #[test]
    fn integer_keys_are_tagged_little_endian() {
        let key = KeyColumn::new(&column(Arc::new(Int64Array::from(vec![258])))).unwrap();
        let mut expected = vec![INT];
        expected.extend_from_slice(&258i64.to_le_bytes());
        assert_eq!(key.bytes().get(0), Some(&expected[..]));
    }

    #[test]
    fn maps_are_not_keys() {
        let array: ArrayRef = Arc::new(arrow_array::BinaryArray::from(vec![&b"x"[..]]));
        assert!(matches!(
            KeyColumn::new(&column(array)),
            Err(Error::ColumnType { .. })
        ));
    }
}
