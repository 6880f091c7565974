//! The UTF-8 check of text that arrives through the Arrow C data interface.
//!
//! Arrays imported from a PyCapsule producer are not validated (pyarrow's
//! `Array.from_buffers` does not validate either), and arrow-rs reads text as `&str` without
//! checks, so invalid UTF-8 is undefined behaviour: a fuzzer found a segfault in Unicode
//! normalisation. This check rules it out once per column, on the way in.
//!
//! It reads only the bytes a valid value covers: a sliced array, a chunk that shares its
//! buffers with others, or a null slot may point at any bytes, and arrow's `validate_full`
//! rejected such legal arrays. Offsets and views are bounds-checked before they are used.
//! The bytes are checked with `simdutf8` (SIMD, as polars does): at 1M responses the check
//! was the largest part of `win_rates`.

use arrow_array::cast::AsArray;
use arrow_array::{Array, OffsetSizeTrait};
use arrow_schema::DataType;

/// The first row (index into `array`) that holds invalid text, at the top or in a nested list,
/// struct, map or dictionary value; `None` when all text is valid UTF-8.
pub fn first_invalid_row(array: &dyn Array) -> Option<usize> {
    match array.data_type() {
        DataType::Utf8 => invalid_in_offsets(array.as_string::<i32>()),
        DataType::LargeUtf8 => invalid_in_offsets(array.as_string::<i64>()),
        DataType::Utf8View => invalid_in_views(array),
        DataType::List(_) => invalid_in_list(array.as_list::<i32>().offsets(), array),
        DataType::LargeList(_) => invalid_in_list(array.as_list::<i64>().offsets(), array),
        DataType::Map(_, _) => invalid_in_list(array.as_map().offsets(), array),
        DataType::FixedSizeList(_, size) => {
            let size = (*size).max(1) as usize;
            let values = array.as_fixed_size_list().values();
            let start = array.offset() * size;
            let covered = (array.len() * size).min(values.len().saturating_sub(start));
            first_invalid_row(values.slice(start, covered).as_ref()).map(|child| child / size)
        }
        DataType::Struct(_) => array
            .as_struct()
            .columns()
            .iter()
            .filter_map(|column| first_invalid_row(column.as_ref()))
            .min(),
        DataType::Dictionary(_, values) if holds_text(values) => {
            let dictionary = array.as_any_dictionary();
            let bad = first_invalid_row(dictionary.values().as_ref())?;
            let keys = dictionary.normalized_keys();
            (0..array.len()).find(|&row| array.is_valid(row) && keys.get(row) == Some(&bad))
        }
        _ => None,
    }
}

/// Whether values of this type hold text, at the top or nested (chat messages).
pub fn holds_text(data_type: &DataType) -> bool {
    match data_type {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => true,
        DataType::List(f)
        | DataType::LargeList(f)
        | DataType::FixedSizeList(f, _)
        | DataType::Map(f, _) => holds_text(f.data_type()),
        DataType::Struct(fields) => fields.iter().any(|f| holds_text(f.data_type())),
        DataType::Dictionary(_, values) => holds_text(values),
        _ => false,
    }
}

fn invalid_in_offsets<O: OffsetSizeTrait>(
    array: &arrow_array::GenericStringArray<O>,
) -> Option<usize> {
    let offsets = array.value_offsets();
    let values = array.values().as_slice();
    let covered = CheckedSpan::new(
        values,
        offsets[0].as_usize(),
        offsets[array.len()].as_usize(),
    );
    (0..array.len()).find(|&row| {
        if array.is_null(row) {
            return false;
        }
        let (start, end) = (offsets[row].as_usize(), offsets[row + 1].as_usize());
        start > end || end > values.len() || !covered.holds_valid(values, start, end)
    })
}

fn invalid_in_views(array: &dyn Array) -> Option<usize> {
    let array = array.as_string_view();
    let buffers = array.data_buffers();
    // Where a buffer's value bytes are: one scan of each buffer's covered span, then two byte
    // reads per value, instead of a scan per value (a quarter of `win_rates` was spent here).
    let mut spans = vec![(usize::MAX, 0); buffers.len()];
    for (row, &view) in array.views().iter().enumerate() {
        let length = view as u32 as usize;
        if length > 12 && array.is_valid(row) {
            let (buffer, offset) = (
                ((view >> 64) as u32) as usize,
                ((view >> 96) as u32) as usize,
            );
            if let Some(span) = spans.get_mut(buffer) {
                *span = (
                    span.0.min(offset),
                    span.1.max(offset.saturating_add(length)),
                );
            }
        }
    }
    let covered: Vec<CheckedSpan> = buffers
        .iter()
        .zip(&spans)
        .map(|(data, &(start, end))| CheckedSpan::new(data, start, end))
        .collect();
    (0..array.len()).find(|&row| {
        if array.is_null(row) {
            return false;
        }
        let view = array.views()[row];
        let length = view as u32 as usize;
        if length <= 12 {
            // Inline: the bytes sit in the view itself, after the 4-byte length.
            let inline = view.to_le_bytes();
            return simdutf8::basic::from_utf8(&inline[4..4 + length]).is_err();
        }
        let buffer = ((view >> 64) as u32) as usize;
        let offset = ((view >> 96) as u32) as usize;
        match buffers.get(buffer) {
            Some(data) if offset + length <= data.len() => {
                !covered[buffer].holds_valid(data, offset, offset + length)
            }
            _ => true,
        }
    })
}

/// The bytes of a buffer that a column's values cover, checked once: when they are valid
/// UTF-8, a value inside them is valid exactly when it starts and ends on character
/// boundaries. A span that is not valid (legal: unreferenced garbage between values) leaves
/// each value to be checked on its own.
struct CheckedSpan<'a> {
    start: usize,
    text: Option<&'a str>,
}

impl<'a> CheckedSpan<'a> {
    fn new(bytes: &'a [u8], start: usize, end: usize) -> Self {
        let text = (start <= end && end <= bytes.len())
            .then(|| simdutf8::basic::from_utf8(&bytes[start..end]).ok())
            .flatten();
        CheckedSpan { start, text }
    }

    /// Whether `bytes[start..end]` (in bounds, `start <= end`) is valid UTF-8.
    fn holds_valid(&self, bytes: &[u8], start: usize, end: usize) -> bool {
        match self.text {
            Some(text) if start >= self.start && end - self.start <= text.len() => {
                text.is_char_boundary(start - self.start) && text.is_char_boundary(end - self.start)
            }
            _ => simdutf8::basic::from_utf8(&bytes[start..end]).is_ok(),
        }
    }
}

/// A list-like array: only the child values its (valid) rows cover are checked, and a bad
/// child value is reported as the row whose list holds it.
fn invalid_in_list<O: OffsetSizeTrait>(
    offsets: &arrow_buffer::OffsetBuffer<O>,
    array: &dyn Array,
) -> Option<usize> {
    let values = match array.data_type() {
        DataType::Map(_, _) => std::sync::Arc::new(array.as_map().entries().clone()),
        DataType::List(_) => array.as_list::<i32>().values().clone(),
        _ => array.as_list::<i64>().values().clone(),
    };
    let offsets: &[O] = offsets;
    let (first, last) = (offsets[0].as_usize(), offsets[offsets.len() - 1].as_usize());
    if first > last || last > values.len() {
        return Some(0);
    }
    let child = first_invalid_row(values.slice(first, last - first).as_ref())? + first;
    // The row whose range [offsets[row], offsets[row + 1]) holds the child value.
    Some(
        offsets
            .partition_point(|o| o.as_usize() <= child)
            .saturating_sub(1),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{ArrayRef, LargeStringArray, ListArray, StringArray, StringViewArray};
    use arrow_buffer::{Buffer, OffsetBuffer, ScalarBuffer};
    use std::sync::Arc;

    /// A string array over raw bytes, built without validation as a capsule producer may.
    fn unchecked(values: &[u8], offsets: &[i32]) -> StringArray {
        let offsets = OffsetBuffer::new(ScalarBuffer::from(offsets.to_vec()));
        // SAFETY: the test builds invalid text on purpose; only the check reads it.
        unsafe { StringArray::new_unchecked(offsets, Buffer::from(values.to_vec()), None) }
    }

    #[test]
    fn valid_text_of_every_type_passes() {
        let texts = ["", "héllo", "日本語", "a\0b"];
        assert_eq!(first_invalid_row(&StringArray::from(texts.to_vec())), None);
        assert_eq!(
            first_invalid_row(&LargeStringArray::from(texts.to_vec())),
            None
        );
        let long = "a long text of more than twelve bytes";
        assert_eq!(
            first_invalid_row(&StringViewArray::from(vec![texts[1], long])),
            None
        );
    }

    #[test]
    fn the_first_bad_row_is_named() {
        let array = unchecked(b"okbad\xff\xfeend", &[0, 2, 7, 10]);
        assert_eq!(first_invalid_row(&array), Some(1));
        assert_eq!(first_invalid_row(&array.slice(1, 2)), Some(0));
        assert_eq!(first_invalid_row(&array.slice(2, 1)), None);
    }

    #[test]
    fn bytes_no_valid_value_covers_are_not_read() {
        // The bad bytes sit between two values, and in a null slot.
        let array = unchecked(b"ok\xffend", &[0, 2, 3, 6]);
        let sliced = array.slice(2, 1);
        assert_eq!(first_invalid_row(&sliced), None);
        let nulls = arrow_buffer::NullBuffer::from(vec![true, false, true]);
        // SAFETY: as in `unchecked`.
        let with_null = unsafe {
            StringArray::new_unchecked(array.offsets().clone(), array.values().clone(), Some(nulls))
        };
        assert_eq!(first_invalid_row(&with_null), None);
    }

    #[test]
    fn values_inside_a_valid_span_are_checked_at_their_ends() {
        // The whole span is valid, yet the middle value starts inside "é" and the last ends
        // inside "日".
        let text = "aé日b".as_bytes();
        assert_eq!(first_invalid_row(&unchecked(text, &[0, 1, 3, 7])), None);
        assert_eq!(first_invalid_row(&unchecked(text, &[0, 2, 3, 7])), Some(0));
        assert_eq!(first_invalid_row(&unchecked(text, &[0, 1, 4, 7])), Some(1));
        let long = "a long text, more than twelve bytes: é";
        let views = StringViewArray::from(vec![long, long]);
        assert_eq!(first_invalid_row(&views), None);
        // A second view into the same buffer that ends inside the final "é".
        let whole = views.views()[0];
        let cut = (whole & !0xffff_ffff) | (whole as u32 as u128 - 1);
        let buffers = views.data_buffers().to_vec();
        // SAFETY: as in `unchecked`; the views are in bounds.
        let cut = unsafe {
            StringViewArray::new_unchecked(ScalarBuffer::from(vec![whole, cut]), buffers, None)
        };
        assert_eq!(first_invalid_row(&cut), Some(1));
    }

    #[test]
    fn a_value_cut_inside_a_character_is_invalid() {
        let bytes = "é".as_bytes();
        assert_eq!(first_invalid_row(&unchecked(bytes, &[0, 1, 2])), Some(0));
    }

    #[test]
    fn nested_text_is_reported_as_the_row_holding_it() {
        let texts: ArrayRef = Arc::new(unchecked(b"abc\xff", &[0, 1, 2, 3, 4]));
        let field = Arc::new(arrow_schema::Field::new("item", DataType::Utf8, true));
        let offsets = OffsetBuffer::new(ScalarBuffer::from(vec![0, 1, 3, 4]));
        let lists = ListArray::new(field, offsets, texts, None);
        assert_eq!(first_invalid_row(&lists), Some(2));
        assert_eq!(first_invalid_row(&lists.slice(0, 2)), None);
        assert!(holds_text(lists.data_type()));
    }
}
