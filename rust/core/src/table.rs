//! The input of an operation: record batches as given, and typed views of their columns.

use std::sync::Arc;

use arrow_array::{Array, ArrayRef, Float64Array, RecordBatch};
use arrow_buffer::ScalarBuffer;
use arrow_cast::cast;
use arrow_schema::{DataType, Field, Schema, SchemaRef};

use crate::error::{Error, Result};
use crate::text::{is_text, TextColumn};

/// An input table: its schema and its record batches (chunks), as the caller passed them.
///
/// Nothing is concatenated or copied on the way in; row numbers are global positions across
/// the chunks, starting at 0.
#[derive(Debug, Clone)]
pub struct Table {
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
}

/// One column of a [`Table`]: its field and one array per chunk.
#[derive(Debug, Clone)]
pub struct Column {
    /// The column's name and type.
    pub field: Arc<Field>,
    /// One array per record batch, in order.
    pub chunks: Vec<ArrayRef>,
}

impl Table {
    /// A table from a schema and batches of that schema.
    pub fn new(schema: SchemaRef, batches: Vec<RecordBatch>) -> Self {
        Self { schema, batches }
    }

    /// The schema of the table.
    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// Number of rows over all chunks.
    pub fn num_rows(&self) -> usize {
        self.batches.iter().map(|b| b.num_rows()).sum()
    }

    /// The column names, in schema order.
    pub fn column_names(&self) -> Vec<String> {
        self.schema
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect()
    }

    /// The column called `name`, or [`Error::MissingColumn`].
    pub fn column(&self, name: &str) -> Result<Column> {
        let index = self
            .schema
            .index_of(name)
            .map_err(|_| Error::MissingColumn {
                column: name.to_string(),
                available: self
                    .schema
                    .fields()
                    .iter()
                    .map(|f| f.name().clone())
                    .collect(),
            })?;
        let column = Column {
            field: self.schema.fields()[index].clone(),
            chunks: self
                .batches
                .iter()
                .map(|b| b.column(index).clone())
                .collect(),
        };
        column.check_utf8()?;
        Ok(column)
    }
}

/// An Arrow type as pyarrow names it (`string`, `large_string`, `double`...), since that is the
/// name Python users see; other types fall back to arrow-rs's name.
pub fn type_name(data_type: &DataType) -> String {
    match data_type {
        DataType::Utf8 => "string".into(),
        DataType::LargeUtf8 => "large_string".into(),
        DataType::Utf8View => "string_view".into(),
        DataType::Binary => "binary".into(),
        DataType::LargeBinary => "large_binary".into(),
        DataType::BinaryView => "binary_view".into(),
        DataType::Boolean => "bool".into(),
        DataType::Float16 => "halffloat".into(),
        DataType::Float32 => "float".into(),
        DataType::Float64 => "double".into(),
        DataType::Null => "null".into(),
        DataType::List(f) => format!("list<{}>", type_name(f.data_type())),
        DataType::LargeList(f) => format!("large_list<{}>", type_name(f.data_type())),
        DataType::Struct(fields) => format!(
            "struct<{}>",
            fields
                .iter()
                .map(|f| format!("{}: {}", f.name(), type_name(f.data_type())))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        DataType::Dictionary(k, v) => {
            format!(
                "dictionary<values={}, indices={}>",
                type_name(v),
                type_name(k)
            )
        }
        t if t.is_integer() => t.to_string().to_lowercase(),
        other => other.to_string(),
    }
}

impl Table {
    /// The rows at global `rows`, in that order, as one record batch. With `views`, text
    /// columns come back as string_view arrays whose views point into the input's buffers (no
    /// text is copied); otherwise, and for other columns, every column keeps its type.
    pub fn take(&self, rows: &[usize], views: bool) -> Result<RecordBatch> {
        let mut fields = Vec::with_capacity(self.schema.fields().len());
        let mut columns = Vec::with_capacity(fields.capacity());
        for (index, field) in self.schema.fields().iter().enumerate() {
            let column = Column {
                field: field.clone(),
                chunks: self
                    .batches
                    .iter()
                    .map(|b| b.column(index).clone())
                    .collect(),
            };
            if views && is_text(field.data_type()) {
                let views = TextColumn::new(&column)?
                    .views()
                    .gather(rows.iter().copied());
                columns.push(Arc::new(views) as ArrayRef);
                fields.push(Arc::new(
                    field.as_ref().clone().with_data_type(DataType::Utf8View),
                ));
            } else {
                columns.push(column.take(rows)?);
                fields.push(field.clone());
            }
        }
        let schema = Arc::new(Schema::new_with_metadata(
            fields,
            self.schema.metadata().clone(),
        ));
        let options = arrow_array::RecordBatchOptions::new().with_row_count(Some(rows.len()));
        Ok(RecordBatch::try_new_with_options(
            schema, columns, &options,
        )?)
    }
}

impl Column {
    /// This column with dictionary-encoded chunks (pandas categoricals, polars Categorical)
    /// decoded to their value type; other columns are returned as they are.
    pub fn decoded(&self) -> Result<Column> {
        let DataType::Dictionary(_, values) = self.field.data_type() else {
            return Ok(self.clone());
        };
        let chunks = self
            .chunks
            .iter()
            .map(|chunk| cast(chunk, values))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        Ok(Column {
            field: Arc::new(
                self.field
                    .as_ref()
                    .clone()
                    .with_data_type(values.as_ref().clone()),
            ),
            chunks,
        })
    }

    /// Text read by the operations must be valid UTF-8: imported arrays are not validated
    /// (see [`crate::utf8`]). One linear pass over the bytes the values cover.
    fn check_utf8(&self) -> Result<()> {
        if !crate::utf8::holds_text(self.field.data_type()) {
            return Ok(());
        }
        for (chunk, start) in self.chunks.iter().zip(self.chunk_starts()) {
            if let Some(row) = crate::utf8::first_invalid_row(chunk.as_ref()) {
                return Err(Error::ColumnType {
                    column: self.field.name().clone(),
                    expected: "valid UTF-8 text",
                    actual: format!("invalid UTF-8 at row {}", start + row),
                });
            }
        }
        Ok(())
    }

    /// The column's name.
    pub fn name(&self) -> &str {
        self.field.name()
    }

    /// Where each chunk starts, as a global row number; one entry per chunk.
    pub fn chunk_starts(&self) -> Vec<usize> {
        let mut start = 0;
        self.chunks
            .iter()
            .map(|c| {
                let s = start;
                start += c.len();
                s
            })
            .collect()
    }

    /// The value at global `row` as text for a message: quoted when it is text.
    pub fn display(&self, row: usize) -> String {
        let starts = self.chunk_starts();
        let chunk = starts.partition_point(|&s| s <= row) - 1;
        let array = &self.chunks[chunk];
        let index = row - starts[chunk];
        if array.is_null(index) {
            return "null".to_string();
        }
        let text = arrow_cast::display::array_value_to_string(array, index)
            .unwrap_or_else(|_| "?".to_string());
        if crate::text::is_text(self.field.data_type()) {
            format!("'{text}'")
        } else {
            text
        }
    }

    /// The values at global `rows`, in that order, gathered across the chunks (any type).
    pub fn take(&self, rows: &[usize]) -> Result<ArrayRef> {
        let starts = self.chunk_starts();
        let indices: Vec<(usize, usize)> = rows
            .iter()
            .map(|&r| {
                let chunk = starts.partition_point(|&s| s <= r) - 1;
                (chunk, r - starts[chunk])
            })
            .collect();
        let arrays: Vec<&dyn Array> = self.chunks.iter().map(|c| c.as_ref()).collect();
        if arrays.is_empty() || rows.is_empty() {
            return Ok(arrow_array::new_empty_array(self.field.data_type()));
        }
        Ok(arrow_select::interleave::interleave(&arrays, &indices)?)
    }

    /// The values as `f64` with NaN for nulls: any integer or float type is accepted. A
    /// float64 column in one chunk without nulls is shared, not copied.
    pub fn to_f64(&self) -> Result<ScalarBuffer<f64>> {
        let numeric = matches!(
            self.field.data_type(),
            DataType::Int8
                | DataType::Int16
                | DataType::Int32
                | DataType::Int64
                | DataType::UInt8
                | DataType::UInt16
                | DataType::UInt32
                | DataType::UInt64
                | DataType::Float16
                | DataType::Float32
                | DataType::Float64
        );
        if !numeric {
            return Err(Error::ColumnType {
                column: self.name().to_string(),
                expected: "numeric (an integer or float type)",
                actual: type_name(self.field.data_type()),
            });
        }
        if let [chunk] = self.chunks.as_slice() {
            if let Some(floats) = chunk.as_any().downcast_ref::<Float64Array>() {
                if floats.null_count() == 0 {
                    return Ok(floats.values().clone());
                }
            }
        }
        let mut values = Vec::with_capacity(self.chunks.iter().map(|c| c.len()).sum());
        for chunk in &self.chunks {
            let floats = cast(chunk, &DataType::Float64)?;
            let floats = floats
                .as_any()
                .downcast_ref::<Float64Array>()
                .expect("cast to Float64 yields a Float64Array");
            match floats.nulls() {
                None => values.extend_from_slice(floats.values()),
                Some(nulls) => {
                    values.extend(floats.values().iter().zip(nulls.iter()).map(|(&v, valid)| {
                        if valid {
                            v
                        } else {
                            f64::NAN
                        }
                    }))
                }
            }
        }
        Ok(values.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::cast::AsArray;
    use arrow_array::{Int64Array, StringViewArray};

    #[test]
    fn take_gathers_rows_across_chunks_in_the_given_order() {
        let batch = |texts: Vec<&str>, ids: Vec<i64>| {
            RecordBatch::try_from_iter([
                ("t", Arc::new(StringViewArray::from(texts)) as ArrayRef),
                ("id", Arc::new(Int64Array::from(ids)) as ArrayRef),
            ])
            .unwrap()
        };
        let first = batch(vec!["a", "b"], vec![0, 1]);
        let table = Table::new(first.schema(), vec![first, batch(vec!["c"], vec![2])]);
        let taken = table.take(&[2, 0], true).unwrap();
        let texts: Vec<_> = taken.column(0).as_string_view().iter().flatten().collect();
        assert_eq!(texts, vec!["c", "a"]);
        assert_eq!(table.take(&[], false).unwrap().num_rows(), 0);
        let empty = Table::new(table.schema.clone(), vec![]);
        assert_eq!(empty.take(&[], false).unwrap().num_columns(), 2);
    }
}
