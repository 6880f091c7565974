//! Binary columns (images stored as bytes) read like text columns: zero-copy views into the
//! input's buffers, gathered into `binary_view` results.
//!
//! Arrow lays out `binary`/`large_binary`/`binary_view` exactly as it lays out the string
//! types, so [`Views`] serve both; only the array type of a result differs (and bytes are
//! never read as `str`).

use arrow_array::{Array, BinaryArray, BinaryViewArray, LargeBinaryArray};
use arrow_buffer::{NullBuffer, ScalarBuffer};
use arrow_schema::DataType;

use super::{ViewParts, ViewRenumbering, Views};
use crate::error::{Error, Result};
use crate::table::{type_name, Column};

/// Whether a type is one of the binary types [`BinaryColumn`] reads.
pub fn is_binary(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView
    )
}

/// A binary column: one typed array per chunk.
#[derive(Debug, Clone)]
pub struct BinaryColumn {
    chunks: Vec<BinaryChunk>,
}

#[derive(Debug, Clone)]
enum BinaryChunk {
    Binary(BinaryArray),
    LargeBinary(LargeBinaryArray),
    BinaryView(BinaryViewArray),
}

impl BinaryColumn {
    /// Read `column` as bytes, or fail with a message naming it and its type.
    pub fn new(column: &Column) -> Result<Self> {
        let column = &column.decoded()?;
        let wrong_type = || Error::ColumnType {
            column: column.name().to_string(),
            expected: "binary (binary, large_binary or binary_view)",
            actual: type_name(column.field.data_type()),
        };
        if !is_binary(column.field.data_type()) {
            return Err(wrong_type());
        }
        let chunks = column
            .chunks
            .iter()
            .map(|chunk| {
                let any = chunk.as_any();
                if let Some(a) = any.downcast_ref::<BinaryArray>() {
                    Ok(BinaryChunk::Binary(a.clone()))
                } else if let Some(a) = any.downcast_ref::<LargeBinaryArray>() {
                    Ok(BinaryChunk::LargeBinary(a.clone()))
                } else if let Some(a) = any.downcast_ref::<BinaryViewArray>() {
                    Ok(BinaryChunk::BinaryView(a.clone()))
                } else {
                    Err(wrong_type())
                }
            })
            .collect::<Result<_>>()?;
        Ok(Self { chunks })
    }

    /// Whether each row is not null, in row order.
    pub fn valid(&self) -> Vec<bool> {
        let mut out = Vec::new();
        for chunk in &self.chunks {
            let array: &dyn Array = match chunk {
                BinaryChunk::Binary(a) => a,
                BinaryChunk::LargeBinary(a) => a,
                BinaryChunk::BinaryView(a) => a,
            };
            out.extend((0..array.len()).map(|i| array.is_valid(i)));
        }
        out
    }

    /// A view of every row into the input's buffers ([`Views::bytes`] reads a row back).
    pub fn views(&self) -> Views {
        let len = self
            .chunks
            .iter()
            .map(|c| match c {
                BinaryChunk::Binary(a) => a.len(),
                BinaryChunk::LargeBinary(a) => a.len(),
                BinaryChunk::BinaryView(a) => a.len(),
            })
            .sum();
        let mut parts = ViewParts::with_capacity(len);
        for chunk in &self.chunks {
            match chunk {
                BinaryChunk::Binary(a) => parts.push_offsets(a),
                BinaryChunk::LargeBinary(a) => parts.push_offsets(a),
                BinaryChunk::BinaryView(a) => {
                    parts.push_views(a.views(), a.data_buffers(), a.nulls())
                }
            }
        }
        parts.finish()
    }
}

impl Views {
    /// A binary_view array of `views` taken from [`Views::view`] (with `nulls` when some are
    /// null), sharing all of this column's buffers.
    pub fn binary_array(&self, views: Vec<u128>, nulls: Option<NullBuffer>) -> BinaryViewArray {
        let nulls = nulls.filter(|nulls| nulls.null_count() > 0);
        // SAFETY: every view comes from `Views::view`: made by `make_view` from the input's
        // bytes, or copied from a valid view array, pointing into the buffer (or window)
        // registered for it at the same index in `buffers`; nulls have the zero view. Binary
        // views carry no UTF-8 requirement.
        unsafe { BinaryViewArray::new_unchecked(views.into(), self.buffers.clone(), nulls) }
    }

    /// A binary_view array holding the rows `rows` (global row numbers), in that order,
    /// without copying any bytes; it holds only the buffers its views point into.
    pub fn gather_binary(&self, rows: &[usize]) -> BinaryViewArray {
        let mut renumbering = ViewRenumbering::new(self);
        let views: Vec<u128> = rows.iter().map(|&row| renumbering.view(row)).collect();
        let nulls = self
            .has_nulls()
            .then(|| NullBuffer::from_iter(rows.iter().map(|&r| self.is_valid(r))))
            .filter(|nulls| nulls.null_count() > 0);
        // SAFETY: as in `binary_array`; `ViewRenumbering::view` moved each view's buffer to
        // its index in the renumbered buffers.
        unsafe {
            BinaryViewArray::new_unchecked(ScalarBuffer::from(views), renumbering.buffers, nulls)
        }
    }

    /// The rows of several columns one after the other (all of `parts[0]`'s, then all of
    /// `parts[1]`'s...), sharing their buffers: a gather from it picks each row from any of
    /// them (Pick-a-Pic's `jpg_0` or `jpg_1`).
    pub fn concat(parts: &[Views]) -> Views {
        let len = parts.iter().map(Views::len).sum();
        let mut all = ViewParts::with_capacity(len);
        for part in parts {
            all.push_views(&part.views, &part.buffers, part.nulls.as_ref());
        }
        all.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use arrow_array::builder::BinaryViewBuilder;
    use arrow_schema::Field;

    fn column(chunks: Vec<Arc<dyn Array>>) -> BinaryColumn {
        let field = Arc::new(Field::new("image", chunks[0].data_type().clone(), true));
        BinaryColumn::new(&Column { field, chunks }).unwrap()
    }

    #[test]
    fn views_of_every_binary_type_read_back_and_gather_without_copies() {
        let long = vec![7u8; 40];
        let values: Vec<Option<&[u8]>> = vec![Some(b"\xff\x00png"), None, Some(&long)];
        let mut builder = BinaryViewBuilder::new();
        builder.extend(values.iter().copied());
        for chunk in [
            Arc::new(BinaryArray::from(values.clone())) as Arc<dyn Array>,
            Arc::new(LargeBinaryArray::from(values.clone())),
            Arc::new(builder.finish()),
        ] {
            let views = column(vec![chunk.clone(), chunk]).views();
            assert_eq!(views.len(), 6);
            for row in 0..6 {
                assert_eq!(views.bytes(row), values[row % 3]);
            }
            let gathered = views.gather_binary(&[5, 1, 3]);
            assert_eq!(gathered.value(0), long.as_slice());
            assert!(gathered.is_null(1));
            assert_eq!(gathered.value(2), b"\xff\x00png");
            let both = Views::concat(&[views.clone(), views]);
            assert_eq!(both.bytes(11), Some(long.as_slice()));
        }
    }

    #[test]
    fn text_is_not_binary() {
        let field = Arc::new(Field::new("image", DataType::Utf8, true));
        let chunks = vec![Arc::new(arrow_array::StringArray::from(vec!["a"])) as Arc<dyn Array>];
        let error = BinaryColumn::new(&Column { field, chunks }).unwrap_err();
        assert!(error.to_string().contains("column 'image' must be binary"));
    }
}
