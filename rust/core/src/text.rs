//! Text columns of any Arrow string type, and string views that point into them.
//!
//! Results hold text as `string_view` arrays whose views point into the input's own buffers:
//! mining a million responses into several million pairs copies 16 bytes per cell, never the
//! text itself.

use arrow_array::builder::make_view;
use arrow_array::types::ByteArrayType;
use arrow_array::{
    Array, ArrayAccessor, GenericByteArray, LargeStringArray, StringArray, StringViewArray,
};
use arrow_buffer::{ArrowNativeType, Buffer, NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow_schema::DataType;
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::output_bytes::OutputBytes;
use crate::prefetch::{prefetch_element, prefetch_read};
use crate::table::{type_name, Column};

mod binary;
pub use binary::{is_binary, BinaryColumn};

/// The widest window of a large buffer that one view can address (its offset is a u32).
const WINDOW_STEP: usize = 1 << 31;

/// A text column: one typed array per chunk.
#[derive(Debug, Clone)]
pub struct TextColumn {
    chunks: Vec<TextChunk>,
}

#[derive(Debug, Clone)]
enum TextChunk {
    Utf8(StringArray),
    LargeUtf8(LargeStringArray),
    Utf8View(StringViewArray),
}

/// Whether a type is one of the text types [`TextColumn`] reads.
pub fn is_text(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    )
}

impl TextColumn {
    /// Read `column` as text, or fail with a message naming it and its type.
    pub fn new(column: &Column) -> Result<Self> {
        let column = &column.decoded()?;
        let wrong_type = || Error::ColumnType {
            column: column.name().to_string(),
            expected: "text (string, large_string or string_view)",
            actual: type_name(column.field.data_type()),
        };
        if !is_text(column.field.data_type()) {
            return Err(wrong_type());
        }
        let chunks = column
            .chunks
            .iter()
            .map(|chunk| {
                let any = chunk.as_any();
                if let Some(a) = any.downcast_ref::<StringArray>() {
                    Ok(TextChunk::Utf8(a.clone()))
                } else if let Some(a) = any.downcast_ref::<LargeStringArray>() {
                    Ok(TextChunk::LargeUtf8(a.clone()))
                } else if let Some(a) = any.downcast_ref::<StringViewArray>() {
                    Ok(TextChunk::Utf8View(a.clone()))
                } else {
                    Err(wrong_type())
                }
            })
            .collect::<Result<_>>()?;
        Ok(Self { chunks })
    }

    /// Read `column` as text whose words are compared: text as it is, chat messages rendered
    /// as `role: content` lines ([`crate::messages`]); anything else fails, naming the column.
    pub fn with_messages(column: &Column) -> Result<Self> {
        let column = column.decoded()?;
        if crate::messages::is_messages(column.field.data_type()) {
            return Self::new(&crate::messages::render(&column)?);
        }
        Self::new(&column).map_err(|_| Error::ColumnType {
            column: column.name().to_string(),
            expected: "text (string, large_string or string_view) or chat messages \
                       (list<struct<role, content>>)",
            actual: type_name(column.field.data_type()),
        })
    }

    /// Every row's text (None for null), borrowed from the input, in row order. Read in
    /// parallel: a million rows take milliseconds, which every group-wise operation waits for.
    pub fn strs(&self) -> Vec<Option<&str>> {
        fn rows<'a, A>(array: A) -> impl IndexedParallelIterator<Item = Option<&'a str>> + 'a
        where
            A: ArrayAccessor<Item = &'a str> + Copy + Sync + Send + 'a,
        {
            (0..array.len())
                .into_par_iter()
                .with_min_len(1 << 14)
                .map(move |i| array.is_valid(i).then(|| array.value(i)))
        }
        let mut out = Vec::with_capacity(self.chunks.iter().map(TextChunk::len).sum());
        crate::parallel::install(|| {
            for chunk in &self.chunks {
                match chunk {
                    TextChunk::Utf8(a) => out.par_extend(rows(a)),
                    TextChunk::LargeUtf8(a) => out.par_extend(rows(a)),
                    TextChunk::Utf8View(a) => out.par_extend(rows(a)),
                }
            }
        });
        out
    }

    /// Whether each row is not null, in row order (cheaper than [`TextColumn::strs`]).
    pub fn valid(&self) -> Vec<bool> {
        let mut out = Vec::with_capacity(self.chunks.iter().map(TextChunk::len).sum());
        for chunk in &self.chunks {
            let array: &dyn Array = match chunk {
                TextChunk::Utf8(a) => a,
                TextChunk::LargeUtf8(a) => a,
                TextChunk::Utf8View(a) => a,
            };
            match array.nulls() {
                Some(nulls) => out.extend(nulls.iter()),
                None => out.extend(std::iter::repeat_n(true, array.len())),
            }
        }
        out
    }

    /// Every row's length in characters (Unicode scalar values), None for null.
    pub fn char_lengths(&self) -> Vec<Option<usize>> {
        use rayon::prelude::*;
        let strs = self.strs();
        crate::parallel::install(|| {
            strs.par_iter()
                .map(|s| s.map(|s| s.chars().count()))
                .collect()
        })
    }

    /// Whether every chunk is a string_view array (polars' text), whose [`Views`] are had
    /// without a pass over the text.
    pub fn is_views(&self) -> bool {
        self.chunks
            .iter()
            .all(|chunk| matches!(chunk, TextChunk::Utf8View(_)))
    }

    /// A view of every row into the input's buffers, ready to be gathered into results.
    pub fn views(&self) -> Views {
        if let [TextChunk::Utf8View(a)] = self.chunks.as_slice() {
            // One string_view chunk (polars' layout): its views and buffers are used as they
            // are, without a pass over the rows.
            return Views {
                views: a.views().clone(),
                buffers: a.data_buffers().to_vec(),
                nulls: a.nulls().cloned(),
            };
        }
        let len = self.chunks.iter().map(TextChunk::len).sum();
        let mut parts = ViewParts::with_capacity(len);
        for chunk in &self.chunks {
            match chunk {
                TextChunk::Utf8(a) => parts.push_offsets(a),
                TextChunk::LargeUtf8(a) => parts.push_offsets(a),
                TextChunk::Utf8View(a) => parts.push_views(a.views(), a.data_buffers(), a.nulls()),
            }
        }
        parts.finish()
    }
}

/// The views, buffers and validity of a column being gathered chunk by chunk into one
/// [`Views`] (text or binary chunks alike: their layouts are the same).
struct ViewParts {
    views: Vec<u128>,
    buffers: Vec<Buffer>,
    validity: Vec<bool>,
}

impl ViewParts {
    fn with_capacity(len: usize) -> Self {
        Self {
            views: Vec::with_capacity(len),
            buffers: Vec::new(),
            validity: Vec::with_capacity(len),
        }
    }

    /// A chunk with offsets (32- or 64-bit): its values buffer is registered (in windows when
    /// over 4 GiB, [`push_windows`]) and a view made for every row.
    fn push_offsets<T: ByteArrayType>(&mut self, a: &GenericByteArray<T>) {
        let base = self.buffers.len();
        let windowed = a.values().len() > u32::MAX as usize;
        push_windows(a.values(), &mut self.buffers);
        offset_views(a, &mut self.views, |start| {
            // One buffer up to 4 GiB: a view's u32 offset reaches all of it.
            let window = if windowed { start / WINDOW_STEP } else { 0 };
            (
                (base + window) as u32,
                (start - window * WINDOW_STEP) as u32,
            )
        });
        self.validity.extend((0..a.len()).map(|i| a.is_valid(i)));
    }

    /// A view chunk: its views are kept, their buffer indices moved past the buffers taken
    /// so far.
    fn push_views(&mut self, views: &[u128], buffers: &[Buffer], nulls: Option<&NullBuffer>) {
        let base = self.buffers.len() as u32;
        self.buffers.extend(buffers.iter().cloned());
        for (i, &view) in views.iter().enumerate() {
            let valid = nulls.is_none_or(|n| n.is_valid(i));
            self.validity.push(valid);
            self.views.push(if !valid {
                0
            } else if (view as u32) <= 12 {
                view // inline: no buffer index to move
            } else {
                view + ((base as u128) << 64)
            });
        }
    }

    fn finish(self) -> Views {
        let nulls = NullBuffer::from(self.validity);
        Views {
            views: self.views.into(),
            buffers: self.buffers,
            nulls: (nulls.null_count() > 0).then_some(nulls),
        }
    }
}

/// Append the views of every row of `array` to `views`, in parallel: making a view reads the
/// first bytes of each string, a cache miss per row. `locate(start)` gives the buffer index
/// and offset in it of a string starting at byte `start` of the values.
fn offset_views<T: ByteArrayType>(
    array: &GenericByteArray<T>,
    views: &mut Vec<u128>,
    locate: impl Fn(usize) -> (u32, u32) + Sync,
) {
    let offsets = array.value_offsets();
    let values = array.value_data();
    crate::parallel::install(|| {
        views.par_extend(
            (0..array.len())
                .into_par_iter()
                .with_min_len(1 << 13)
                .map(|i| {
                    if array.is_null(i) {
                        return 0;
                    }
                    let (start, end) = (offsets[i].as_usize(), offsets[i + 1].as_usize());
                    let (buffer, offset) = locate(start);
                    make_view(&values[start..end], buffer, offset)
                }),
        )
    });
}

/// Register `values` as buffers a view can address: one buffer when it is small enough,
/// else overlapping windows of 4 GiB starting every 2 GiB, so that every string shorter than
/// 2 GiB lies inside the window of its start.
fn push_windows(values: &Buffer, buffers: &mut Vec<Buffer>) {
    if values.len() <= u32::MAX as usize {
        buffers.push(values.clone());
        return;
    }
    let mut start = 0;
    while start < values.len() {
        let len = (values.len() - start).min(u32::MAX as usize);
        buffers.push(values.slice_with_length(start, len));
        start += WINDOW_STEP;
    }
}

impl TextChunk {
    fn len(&self) -> usize {
        match self {
            TextChunk::Utf8(a) => a.len(),
            TextChunk::LargeUtf8(a) => a.len(),
            TextChunk::Utf8View(a) => a.len(),
        }
    }
}

/// Views of every row of a text column plus the buffers they point into.
#[derive(Debug, Clone)]
pub struct Views {
    views: ScalarBuffer<u128>,
    buffers: Vec<Buffer>,
    nulls: Option<NullBuffer>,
}

impl Views {
    /// The view of `row`; the zero (empty) view for a null, whose input view may be garbage.
    #[inline]
    pub fn view(&self, row: usize) -> u128 {
        match &self.nulls {
            Some(nulls) if nulls.is_null(row) => 0,
            _ => self.views[row],
        }
    }

    /// Like [`Views::gather`], with a null wherever `rows` holds `None`.
    pub fn gather_optional(&self, rows: &[Option<usize>]) -> StringViewArray {
        let mut renumbering = ViewRenumbering::new(self);
        let views: Vec<u128> = rows
            .iter()
            .map(|row| row.map_or(0, |row| renumbering.view(row)))
            .collect();
        let valid = |r: &Option<usize>| r.is_some_and(|r| self.is_valid(r));
        renumbering.array(
            views.into(),
            Some(NullBuffer::from_iter(rows.iter().map(valid))),
        )
    }

    /// Whether `row` is not null.
    #[inline(always)]
    pub fn is_valid(&self, row: usize) -> bool {
        self.nulls.as_ref().is_none_or(|n| n.is_valid(row))
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.views.len()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.views.is_empty()
    }

    /// The bytes of `row`, None when it is null: borrowed from the view itself when the text
    /// is short enough to be stored inline, else from the buffer it points into.
    #[inline]
    pub fn bytes(&self, row: usize) -> Option<&[u8]> {
        if !self.is_valid(row) {
            return None;
        }
        let view = self.views[row];
        let len = view as u32 as usize;
        Some(if len <= 12 {
            // The Arrow layout of a view: 4 bytes of length, then the inline text.
            let start = row * 16 + 4;
            &self.views.inner().as_slice()[start..start + len]
        } else {
            self.buffered(view)
        })
    }

    /// The text of a view longer than 12 bytes, in the buffer it points into.
    #[inline(always)]
    fn buffered(&self, view: u128) -> &[u8] {
        let len = view as u32 as usize;
        let buffer = (view >> 64) as u32 as usize;
        let offset = (view >> 96) as u32 as usize;
        &self.buffers[buffer][offset..offset + len]
    }

    /// Whether the valid rows `a` and `b` hold the same text. Identical views are equal
    /// without reading the text: repeated values that share their bytes (as polars stores a
    /// prompt repeated on every response row) cost one 16-byte comparison.
    #[inline(always)]
    pub fn same_text(&self, a: usize, b: usize) -> bool {
        self.same_view_text(self.views[a], self.views[b])
    }

    /// Whether two views of valid rows of this column hold the same text ([`Views::same_text`]
    /// for views already at hand).
    #[inline(always)]
    pub fn same_view_text(&self, a: u128, b: u128) -> bool {
        if a == b {
            return true;
        }
        // Lengths, then the inline text or (for text not inline) the first four bytes, settle
        // most differences. Bytes of a view past a short text are not compared: producers
        // need not zero them.
        let len = a as u32;
        if len != b as u32 {
            return false;
        }
        if len <= 12 {
            return (a ^ b) & (u128::MAX >> (96 - 8 * len)) == 0;
        }
        (a >> 32) as u32 == (b >> 32) as u32 && self.buffered(a) == self.buffered(b)
    }

    /// The end of the run of equal texts that starts at `start` (a valid row): the first row of
    /// `start + 1..end` that is null or whose text differs from the previous row's, else `end`.
    ///
    /// Without nulls, rows whose view is identical to the previous one (a value repeated
    /// row after row and stored once, as polars stores a prompt on each of its responses) are
    /// skipped by a plain 16-byte comparison, the rest of the rows' reading left out.
    pub fn run_end(&self, start: usize, end: usize) -> usize {
        let views = &self.views[..end];
        let mut row = start + 1;
        loop {
            if self.nulls.is_none() {
                while row < end && views[row] == views[row - 1] {
                    row += 1;
                }
            }
            if row == end || !self.is_valid(row) || !self.same_view_text(views[row - 1], views[row])
            {
                return row;
            }
            row += 1;
        }
    }

    /// Asks the processor to start loading the text of `view` (of a valid row) into the cache,
    /// ahead of a comparison that would otherwise wait for it.
    #[inline(always)]
    pub fn prefetch(&self, view: u128) {
        if view as u32 > 12 {
            prefetch_read(self.buffered(view).as_ptr());
        }
    }

    /// Asks the processor to start loading the view of `row`.
    #[inline(always)]
    pub fn prefetch_row(&self, row: usize) {
        prefetch_element(&self.views, row);
    }

    /// Asks the processor to start loading the validity bit of `row`.
    #[inline(always)]
    pub fn prefetch_validity(&self, row: usize) {
        if let Some(nulls) = &self.nulls {
            prefetch_element(nulls.validity(), (nulls.offset() + row) / 8);
        }
    }

    /// Whether any row is null.
    pub fn has_nulls(&self) -> bool {
        self.nulls.is_some()
    }

    /// A string_view array of `views` taken from [`Views::view`] (with `nulls` when some are
    /// null), sharing all of this column's buffers.
    pub fn array(&self, views: Vec<u128>, nulls: Option<NullBuffer>) -> StringViewArray {
        let nulls = nulls.filter(|nulls| nulls.null_count() > 0);
        // SAFETY: every view comes from `Views::view`: made from valid UTF-8 of the input by
        // `make_view`, or copied from a valid string_view array, pointing into the buffer (or
        // window) registered for it at the same index in `buffers`; nulls have the zero view.
        unsafe { StringViewArray::new_unchecked(views.into(), self.buffers.clone(), nulls) }
    }

    /// A string_view array holding the rows `rows` (global row numbers), in that order,
    /// without copying any text; it holds only the buffers its views point into.
    pub fn gather(&self, rows: impl ExactSizeIterator<Item = usize> + Clone) -> StringViewArray {
        let mut renumbering = ViewRenumbering::new(self);
        let mut views = Vec::with_capacity(rows.len());
        // The rows are read in the given order, often scattered (a list's best rows, every
        // few rows): loads started a few rows ahead overlap instead of waiting one by one.
        let mut ahead = rows.clone().skip(GATHER_PREFETCH_ROWS);
        for row in rows.clone() {
            if let Some(row) = ahead.next() {
                self.prefetch_row(row);
            }
            views.push(renumbering.view(row));
        }
        let nulls = self
            .has_nulls()
            .then(|| NullBuffer::from_iter(rows.map(|r| self.is_valid(r))));
        renumbering.array(views.into(), nulls)
    }

    /// Like [`Views::gather`], but copying the text into a plain `large_string` array, for
    /// consumers that cannot read string_view (pandas and pyarrow's kernels, inside lists).
    /// The offsets come from the views' lengths, so the text is read once, by the copy into a
    /// buffer allocated up front.
    pub fn gather_copy(
        &self,
        rows: impl ExactSizeIterator<Item = usize> + Clone,
    ) -> LargeStringArray {
        let mut offsets = Vec::with_capacity(rows.len() + 1);
        let mut total: usize = 0;
        offsets.push(0i64);
        for row in rows.clone() {
            if self.is_valid(row) {
                total += self.view(row) as u32 as usize;
            }
            offsets.push(total as i64);
        }
        let mut values = OutputBytes::new(total);
        let mut slots = values.slots();
        for row in rows.clone() {
            if let Some(bytes) = self.bytes(row) {
                let (head, rest) = std::mem::take(&mut slots).split_at_mut(bytes.len());
                // SAFETY: `MaybeUninit<u8>` has the layout of `u8`; `head` has the row's length.
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        bytes.as_ptr(),
                        head.as_mut_ptr().cast(),
                        head.len(),
                    )
                };
                slots = rest;
            }
        }
        let nulls = self
            .has_nulls()
            .then(|| NullBuffer::from_iter(rows.map(|r| self.is_valid(r))))
            .filter(|nulls| nulls.null_count() > 0);
        // SAFETY: the rows' lengths add up to `total`, so every byte was written; the offsets
        // are their running sums (monotonic), and each copied string is valid UTF-8 of the
        // input.
        unsafe {
            LargeStringArray::new_unchecked(
                OffsetBuffer::new_unchecked(offsets.into()),
                values.into_buffer(),
                nulls,
            )
        }
    }

    /// A string_view array of substrings, without copying text: entry `(row, start, end)` is
    /// bytes `start..end` of row `row`'s string. Rows must be valid (not null) and `start`,
    /// `end` must be char boundaries of that string.
    pub fn gather_slices(&self, slices: &[(usize, usize, usize)]) -> StringViewArray {
        let views: ScalarBuffer<u128> = slices
            .iter()
            .map(|&(row, start, end)| {
                let view = self.views[row];
                let len = view as u32 as usize;
                assert!(
                    start <= end && end <= len,
                    "slice {start}..{end} of a {len}-byte string"
                );
                if len <= 12 {
                    // Inline: the bytes live in the view itself, after the length.
                    let bytes = view.to_le_bytes();
                    make_view(&bytes[4 + start..4 + end], 0, 0)
                } else {
                    let buffer = (view >> 64) as u32;
                    let offset = (view >> 96) as u32;
                    let data = &self.buffers[buffer as usize]
                        [offset as usize + start..offset as usize + end];
                    make_view(data, buffer, offset + start as u32)
                }
            })
            .collect();
        // SAFETY: each view addresses a sub-range of a valid string of the input that starts
        // and ends on char boundaries (the caller's contract), so it is valid UTF-8, in a
        // buffer registered at the same index in `buffers`; there are no nulls.
        unsafe { StringViewArray::new_unchecked(views, self.buffers.clone(), None) }
    }
}

/// How many rows ahead [`Views::gather`] prefetches the views of.
pub const GATHER_PREFETCH_ROWS: usize = 16;

/// Views of a text column's rows for a new string_view array that shares the column's text
/// and holds only the buffers its views point into: each view's buffer index is renumbered
/// to the buffer's place in the new array.
///
/// A result cut into batches would otherwise hand every batch every buffer of the input (a
/// column read by polars has one per megabyte of text): each is exported to Python on its
/// own, at about the cost of a row, and Arrow IPC writes every buffer an array holds.
pub struct ViewRenumbering<'a> {
    source: &'a Views,
    /// The new index of each source buffer taken so far (`u32::MAX`: not taken).
    renumbered: Vec<u32>,
    buffers: Vec<Buffer>,
}

impl<'a> ViewRenumbering<'a> {
    /// No buffer taken yet from `source`.
    pub fn new(source: &'a Views) -> Self {
        ViewRenumbering {
            source,
            renumbered: vec![u32::MAX; source.buffers.len()],
            buffers: Vec::new(),
        }
    }

    /// The view of `row` of the source for the new array (the empty string if it is null:
    /// pass the nulls to [`ViewRenumbering::array`]), taking its buffer if it has one.
    #[inline(always)]
    pub fn view(&mut self, row: usize) -> u128 {
        let view = self.source.view(row);
        if view as u32 <= 12 {
            // Inline text: no buffer.
            return view;
        }
        let old = (view >> 64) as u32 as usize;
        let mut new = self.renumbered[old];
        if new == u32::MAX {
            new = self.buffers.len() as u32;
            self.renumbered[old] = new;
            self.buffers.push(self.source.buffers[old].clone());
        }
        let index_bits = (u32::MAX as u128) << 64;
        (view & !index_bits) | (u128::from(new) << 64)
    }

    /// The array of `views`, each from [`ViewRenumbering::view`] or the zero view, with
    /// `nulls` when some are null.
    pub fn array(self, views: ScalarBuffer<u128>, nulls: Option<NullBuffer>) -> StringViewArray {
        let nulls = nulls.filter(|nulls| nulls.null_count() > 0);
        // SAFETY: every view comes from `Views::view` (the caller's contract): made from valid
        // UTF-8 of the input by `make_view`, or copied from a valid string_view array,
        // pointing into the buffer (or window) registered for it in the source, which
        // `ViewRenumbering::view` put at its new index in `buffers`; nulls and the zero view
        // are the empty string.
        unsafe { StringViewArray::new_unchecked(views, self.buffers, nulls) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::builder::StringViewBuilder;
    use arrow_schema::Field;

    /// A string_view column with text in many small buffers (as polars reads it), some rows
    /// inline, some null.
    fn column(values: &[Option<String>]) -> TextColumn {
        let mut builder = StringViewBuilder::new().with_fixed_block_size(64);
        builder.extend(values.iter().map(Option::as_deref));
        let array: arrow_array::ArrayRef = std::sync::Arc::new(builder.finish());
        let column = Column {
            field: std::sync::Arc::new(Field::new("text", DataType::Utf8View, true)),
            chunks: vec![array],
        };
        TextColumn::new(&column).unwrap()
    }

    /// Views of `values` where each row listed in `shared` gets the previous row's view (the
    /// same bytes, as polars stores a repeated prompt; for a null row, a leftover view).
    fn with_shared_views(values: &[Option<&str>], shared: &[usize]) -> Views {
        let mut builder = StringViewBuilder::new().with_fixed_block_size(64);
        builder.extend(values.iter().copied());
        let array = builder.finish();
        let mut views = array.views().to_vec();
        for &row in shared {
            views[row] = views[row - 1];
        }
        let array = StringViewArray::try_new(
            views.into(),
            array.data_buffers().to_vec(),
            array.nulls().cloned(),
        )
        .unwrap();
        let column = Column {
            field: std::sync::Arc::new(Field::new("text", DataType::Utf8View, true)),
            chunks: vec![std::sync::Arc::new(array)],
        };
        TextColumn::new(&column).unwrap().views()
    }

    #[test]
    fn runs_end_at_a_null_or_a_different_text() {
        let long = Some("a prompt long enough to be stored out of line");
        let other = Some("a prompt long enough to be stored out of line!");
        // Equal texts with the same view (rows 1, 5) or stored apart (row 2), inline texts, and
        // a null row holding its neighbour's view (row 3).
        let values = [
            long,
            long,
            long,
            None,
            Some("short"),
            Some("short"),
            other,
            long,
        ];
        let shared = [1, 3, 5];
        let no_nulls = values.map(|v| v.or(long));
        for (values, runs) in [
            (values, vec![(0, 3), (2, 3), (4, 6), (6, 7), (7, 8)]),
            (no_nulls, vec![(0, 4), (2, 4), (4, 6), (6, 7), (7, 8)]),
        ] {
            let views = with_shared_views(&values, &shared);
            for (start, end) in runs {
                assert_eq!(views.run_end(start, 8), end, "from {start}");
            }
            assert_eq!(views.run_end(0, 2), 2);
        }
    }

    #[test]
    fn a_gather_holds_only_the_buffers_it_points_into() {
        let values: Vec<Option<String>> = (0..200)
            .map(|i| (i % 7 != 3).then(|| format!("{i}") + &"long text ".repeat(i % 3 * 2)))
            .collect();
        let text = column(&values);
        let views = text.views();
        assert!(views.buffers.len() > 20);
        let rows = [150, 2, 151, 3, 149, 1, 150, 0];
        let gathered = views.gather(rows.iter().copied());
        let got: Vec<Option<&str>> = gathered.iter().collect();
        let expected: Vec<Option<&str>> = rows.iter().map(|&r| values[r].as_deref()).collect();
        assert_eq!(got, expected);
        assert!(gathered.data_buffers().len() <= 6);
        let optional = views.gather_optional(&[Some(150), None, Some(2)]);
        let got: Vec<Option<&str>> = optional.iter().collect();
        assert_eq!(got, [values[150].as_deref(), None, values[2].as_deref()]);
        assert!(optional.data_buffers().len() <= 2);
    }

    #[test]
    fn same_text_and_bytes_read_inline_and_buffered_views() {
        let values: Vec<Option<String>> = ["short", "short", "a long text, same length 1"]
            .iter()
            .chain(&[
                "a long text, same length 2",
                "a long text, same length 1",
                "short",
            ])
            .map(|s| Some(s.to_string()))
            .chain([None])
            .collect();
        let views = column(&values).views();
        for a in 0..6 {
            assert_eq!(views.bytes(a), values[a].as_deref().map(str::as_bytes));
            for b in 0..6 {
                assert_eq!(views.same_text(a, b), values[a] == values[b], "{a} {b}");
            }
        }
        assert_eq!(views.bytes(6), None);
    }

    #[test]
    fn views_compare_only_the_bytes_of_their_text() {
        // Short texts are inline, and the bytes of a view past them are not the text: two views
        // of "ab" that differ there are equal, "ab" and "ac" are not, whatever the padding.
        let values: Vec<Option<String>> = ["ab", "ac", "twelve bytes", "twelve bytez"]
            .iter()
            .map(|s| Some(s.to_string()))
            .collect();
        let views = column(&values).views();
        let (ab, ac) = (views.view(0), views.view(1));
        let dirty = ab | (0xff << 120);
        assert!(views.same_view_text(ab, dirty));
        assert!(!views.same_view_text(dirty, ac | (0x0f << 112)));
        assert!(!views.same_view_text(views.view(2), views.view(3)));
        assert!(views.same_view_text(views.view(2), views.view(2)));
        for a in 0..4 {
            views.prefetch(views.view(a));
            for b in 0..4 {
                let same = views.same_view_text(views.view(a), views.view(b));
                assert_eq!(same, views.same_text(a, b), "{a} {b}");
            }
        }
    }
}
