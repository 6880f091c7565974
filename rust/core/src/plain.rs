//! Plain text for the consumers that cannot read views: every `string_view` (`binary_view`)
//! array, at any depth of lists and structs, copied into a `large_string` (`large_binary`).
//!
//! prefkit's operations build their text columns as views into the input's buffers (no text
//! copied while mining). pyarrow's compute functions have no string_view kernels for `take`,
//! `filter`, `sort_by`, joins or `utf8_length` (pyarrow 26), so a result is converted here by
//! default, once, at the end of the operation; `views=True` skips it. `large_string` and not
//! `string`: a result's text often passes 2 GiB (all pairs of a million responses hold 7 GB),
//! and pyarrow's `take` on a chunked `string` column concatenates its chunks and overflows
//! the 32-bit offsets there.
//!
//! The copy is one allocation per array (huge pages when large, [`crate::output_bytes`]),
//! sized from the views' lengths, filled in parallel over byte-balanced ranges of rows;
//! batches and columns are converted in parallel too.

use std::mem::MaybeUninit;
use std::sync::Arc;

use arrow_array::types::ByteViewType;
use arrow_array::{
    Array, ArrayRef, BinaryViewArray, FixedSizeListArray, GenericByteViewArray, GenericListArray,
    LargeBinaryArray, LargeStringArray, OffsetSizeTrait, RecordBatch, RecordBatchOptions,
    StringViewArray, StructArray,
};
use arrow_buffer::{Buffer, OffsetBuffer, ScalarBuffer};
use arrow_schema::{DataType, Field, FieldRef, Fields, Schema};
use rayon::prelude::*;

use crate::error::Result;
use crate::output_bytes::OutputBytes;

/// Bytes of text below which an array is copied by one thread: splitting costs more.
const PARALLEL_BYTES: usize = 1 << 22;

/// The type `data_type` has once its views are plain: `string_view` becomes `large_string`,
/// `binary_view` becomes `large_binary`, inside lists and structs too; others are unchanged.
pub fn plain_type(data_type: &DataType) -> DataType {
    match data_type {
        DataType::Utf8View => DataType::LargeUtf8,
        DataType::BinaryView => DataType::LargeBinary,
        DataType::List(field) => DataType::List(plain_field(field)),
        DataType::LargeList(field) => DataType::LargeList(plain_field(field)),
        DataType::FixedSizeList(field, size) => DataType::FixedSizeList(plain_field(field), *size),
        DataType::Struct(fields) => DataType::Struct(plain_fields(fields)),
        other => other.clone(),
    }
}

/// Whether `data_type` holds views anywhere (so that [`plain_array`] would change it).
pub fn has_views(data_type: &DataType) -> bool {
    plain_type(data_type) != *data_type
}

fn plain_field(field: &FieldRef) -> FieldRef {
    Arc::new(
        field
            .as_ref()
            .clone()
            .with_data_type(plain_type(field.data_type())),
    )
}

fn plain_fields(fields: &Fields) -> Fields {
    fields.iter().map(plain_field).collect()
}

/// `array` with every view array inside it copied into plain offsets and bytes (the types of
/// [`plain_type`]); arrays without views are returned as they are, sharing their buffers.
pub fn plain_array(array: &ArrayRef) -> Result<ArrayRef> {
    if !has_views(array.data_type()) {
        return Ok(array.clone());
    }
    Ok(match array.data_type() {
        DataType::Utf8View => {
            let views = array
                .as_any()
                .downcast_ref::<StringViewArray>()
                .expect("string_view");
            let (offsets, values) = copy_views(views);
            // SAFETY: the offsets are running sums of the copied values' lengths, and each
            // value is a copy of a valid UTF-8 string of a string_view array.
            Arc::new(unsafe {
                LargeStringArray::new_unchecked(offsets, values, views.nulls().cloned())
            })
        }
        DataType::BinaryView => {
            let views = array
                .as_any()
                .downcast_ref::<BinaryViewArray>()
                .expect("binary_view");
            let (offsets, values) = copy_views(views);
            Arc::new(LargeBinaryArray::new(
                offsets,
                values,
                views.nulls().cloned(),
            ))
        }
        DataType::List(_) => plain_list::<i32>(array)?,
        DataType::LargeList(_) => plain_list::<i64>(array)?,
        DataType::FixedSizeList(field, size) => {
            let list = array
                .as_any()
                .downcast_ref::<FixedSizeListArray>()
                .expect("list");
            Arc::new(FixedSizeListArray::try_new(
                plain_field(field),
                *size,
                plain_array(list.values())?,
                list.nulls().cloned(),
            )?)
        }
        DataType::Struct(fields) => {
            let structs = array
                .as_any()
                .downcast_ref::<StructArray>()
                .expect("struct");
            let children = structs
                .columns()
                .iter()
                .map(plain_array)
                .collect::<Result<Vec<_>>>()?;
            Arc::new(StructArray::try_new(
                plain_fields(fields),
                children,
                structs.nulls().cloned(),
            )?)
        }
        other => unreachable!("plain_type changes no other type, got {other}"),
    })
}

fn plain_list<O: OffsetSizeTrait>(array: &ArrayRef) -> Result<ArrayRef> {
    let list = array
        .as_any()
        .downcast_ref::<GenericListArray<O>>()
        .expect("list type matches its array");
    let (DataType::List(field) | DataType::LargeList(field)) = list.data_type() else {
        unreachable!("a list array has a list type")
    };
    Ok(Arc::new(GenericListArray::<O>::try_new(
        plain_field(field),
        list.offsets().clone(),
        plain_array(list.values())?,
        list.nulls().cloned(),
    )?))
}

/// The bytes of every row of a view array, copied back to back, and their int64 offsets.
/// Null rows are empty, whatever their view says.
fn copy_views<T: ByteViewType + ?Sized>(
    array: &GenericByteViewArray<T>,
) -> (OffsetBuffer<i64>, Buffer) {
    let views = array.views();
    let mut offsets = Vec::with_capacity(views.len() + 1);
    let mut total = 0usize;
    offsets.push(0i64);
    for (row, &view) in views.iter().enumerate() {
        if array.is_valid(row) {
            total += view as u32 as usize;
        }
        offsets.push(total as i64);
    }
    let mut values = OutputBytes::new(total);
    let ranges = byte_balanced_ranges(&offsets, total);
    // Each range of rows owns the bytes between its first and last offsets: disjoint slices.
    let mut slices = Vec::with_capacity(ranges.len());
    let mut rest = values.slots();
    for &(start, end) in &ranges {
        let (slice, tail) = rest.split_at_mut((offsets[end] - offsets[start]) as usize);
        slices.push((start, end, slice));
        rest = tail;
    }
    let fill = |(start, end, slice): (usize, usize, &mut [MaybeUninit<u8>])| {
        let mut at = 0;
        for row in start..end {
            let bytes: &[u8] = if array.is_valid(row) {
                // SAFETY: `row` is below the array's length.
                AsRef::<[u8]>::as_ref(unsafe { array.value_unchecked(row) })
            } else {
                &[]
            };
            let destination = &mut slice[at..at + bytes.len()];
            // SAFETY: the destination is the row's own stretch of the slice, sized from the
            // same views; `MaybeUninit<u8>` has the layout of `u8`.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    bytes.as_ptr(),
                    destination.as_mut_ptr().cast::<u8>(),
                    bytes.len(),
                )
            };
            at += bytes.len();
        }
    };
    if ranges.len() > 1 {
        slices.into_par_iter().for_each(fill);
    } else {
        slices.into_iter().for_each(fill);
    }
    // SAFETY: the ranges cover every row, so all `total` bytes were written above.
    let values = unsafe { values.into_buffer() };
    // SAFETY: the offsets start at 0 and never decrease.
    let offsets = unsafe { OffsetBuffer::new_unchecked(ScalarBuffer::from(offsets)) };
    (offsets, values)
}

/// Rows `0..offsets.len() - 1` cut into consecutive ranges of about equal bytes, one per
/// task of the pool (four per thread, so that uneven rows even out), or one range for small
/// arrays.
fn byte_balanced_ranges(offsets: &[i64], total: usize) -> Vec<(usize, usize)> {
    let rows = offsets.len() - 1;
    let parts = if total < PARALLEL_BYTES {
        1
    } else {
        (rayon::current_num_threads() * 4).min(rows).max(1)
    };
    let mut ranges = Vec::with_capacity(parts);
    let mut start = 0;
    for part in 1..=parts {
        let end = if part == parts {
            rows
        } else {
            let target = (total * part / parts) as i64;
            offsets.partition_point(|&o| o < target).clamp(start, rows)
        };
        if end > start {
            ranges.push((start, end));
        }
        start = end;
    }
    ranges
}

/// `batches` with every column made plain ([`plain_array`]), converted in parallel on
/// prefkit's pool; the
/// schema of the result is [`plain_type`] of each field, metadata kept.
pub fn plain_batches(
    schema: &Schema,
    batches: &[RecordBatch],
) -> Result<(Schema, Vec<RecordBatch>)> {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| f.as_ref().clone().with_data_type(plain_type(f.data_type())))
        .collect();
    let plain_schema = Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()));
    let cells: Vec<(usize, usize)> = (0..batches.len())
        .flat_map(|b| (0..schema.fields().len()).map(move |c| (b, c)))
        .collect();
    let arrays = crate::parallel::install(|| {
        cells
            .par_iter()
            .map(|&(b, c)| plain_array(batches[b].column(c)))
            .collect::<Result<Vec<_>>>()
    })?;
    let width = schema.fields().len();
    let batches = batches
        .iter()
        .enumerate()
        .map(|(b, batch)| {
            let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
            let columns = arrays[b * width..(b + 1) * width].to_vec();
            Ok(RecordBatch::try_new_with_options(
                plain_schema.clone(),
                columns,
                &options,
            )?)
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((plain_schema.as_ref().clone(), batches))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::cast::AsArray;
    use arrow_array::{Int64Array, ListArray};
    use arrow_buffer::NullBuffer;

    fn texts(n: usize) -> Vec<Option<String>> {
        (0..n)
            .map(|i| (i % 7 != 3).then(|| "é".repeat(i % 29) + &i.to_string()))
            .collect()
    }

    #[test]
    fn string_views_become_large_strings_with_the_same_values_and_nulls() {
        let values = texts(200_000);
        let views: ArrayRef = Arc::new(StringViewArray::from_iter(values.iter().cloned()));
        for array in [views.clone(), views.slice(7, 150_000)] {
            let plain = plain_array(&array).unwrap();
            assert_eq!(plain.data_type(), &DataType::LargeUtf8);
            let expected: Vec<_> = array.as_string_view().iter().collect();
            let got: Vec<_> = plain.as_string::<i64>().iter().collect();
            assert_eq!(got, expected);
        }
    }

    #[test]
    fn a_null_row_is_empty_whatever_its_view_holds() {
        let source = StringViewArray::from(vec!["a string longer than twelve bytes", "b"]);
        let masked = StringViewArray::new(
            source.views().clone(),
            source.data_buffers().to_vec(),
            Some(NullBuffer::from(vec![false, true])),
        );
        let plain = plain_array(&(Arc::new(masked) as ArrayRef)).unwrap();
        let plain = plain.as_string::<i64>();
        assert_eq!(plain.value_offsets(), &[0, 0, 1]);
        assert!(plain.is_null(0));
        assert_eq!(plain.value(1), "b");
    }

    #[test]
    fn views_inside_lists_and_structs_are_copied_and_other_arrays_shared() {
        let inner: ArrayRef = Arc::new(StringViewArray::from(vec!["x", "yy", "zzz"]));
        let field = Arc::new(Field::new("item", DataType::Utf8View, true));
        let list: ArrayRef = Arc::new(ListArray::new(
            field,
            OffsetBuffer::new(vec![0, 2, 3].into()),
            inner.clone(),
            None,
        ));
        let ids: ArrayRef = Arc::new(Int64Array::from(vec![1, 2]));
        let structs: ArrayRef = Arc::new(StructArray::from(vec![
            (
                Arc::new(Field::new("text", DataType::Utf8View, true)),
                inner.slice(0, 2),
            ),
            (
                Arc::new(Field::new("id", DataType::Int64, true)),
                ids.clone(),
            ),
        ]));
        let plain = plain_array(&list).unwrap();
        assert_eq!(plain.data_type(), &plain_type(list.data_type()));
        let first = plain.as_list::<i32>().value(0);
        let first: Vec<_> = first.as_string::<i64>().iter().flatten().collect();
        assert_eq!(first, vec!["x", "yy"]);
        let plain = plain_array(&structs).unwrap();
        let plain = plain.as_struct();
        assert_eq!(plain.column(0).as_string::<i64>().value(1), "yy");
        assert!(Arc::ptr_eq(&plain_array(&ids).unwrap(), &ids));
    }

    #[test]
    fn ranges_cover_every_row_once_in_order() {
        let offsets: Vec<i64> = (0..=1000i64).map(|i| i * i * 10).collect();
        let total = *offsets.last().unwrap() as usize;
        let ranges = byte_balanced_ranges(&offsets, total);
        assert!(ranges.len() > 1);
        assert_eq!(ranges.first().unwrap().0, 0);
        assert_eq!(ranges.last().unwrap().1, 1000);
        assert!(ranges.windows(2).all(|w| w[0].1 == w[1].0));
    }
}
