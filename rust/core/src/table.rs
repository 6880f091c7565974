//! The input of an operation: record batches as given, and typed views of their columns.

use std::sync::Arc;

use arrow_array::{Array, ArrayRef, Float64Array, RecordBatch};
use arrow_cast::cast;
use arrow_schema::{DataType, Field, SchemaRef};

use crate::error::{Error, Result};

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

    /// Number of rows over all chunks.
    pub fn num_rows(&self) -> usize {
        self.batches.iter().map(|b| b.num_rows()).sum()
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
        Ok(Column {
            field: self.schema.fields()[index].clone(),
            chunks: self
                .batches
                .iter()
                .map(|b| b.column(index).clone())
                .collect(),
        })
    }
}

impl Column {
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

    /// The values as `f64` with NaN for nulls: any integer or float type is accepted.
    pub fn to_f64(&self) -> Result<Vec<f64>> {
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
                actual: self.field.data_type().to_string(),
            });
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
        Ok(values)
    }
}
