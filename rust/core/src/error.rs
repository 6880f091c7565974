//! The one error type of prefkit-core; the binding maps every variant to `PrefkitError`.

use arrow_schema::ArrowError;

/// Everything that can go wrong in an operation, worded for the person who passed the input.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A named column is not in the table.
    #[error(
        "column '{column}' not found; the table has columns [{}]",
        quoted(available)
    )]
    MissingColumn {
        column: String,
        available: Vec<String>,
    },
    /// A column has a type the operation cannot use.
    #[error("column '{column}' must be {expected}, got {actual}")]
    ColumnType {
        column: String,
        expected: &'static str,
        actual: String,
    },
    /// A score is null or NaN and the caller asked for an error instead of dropping the row.
    #[error("column '{column}' has a null or NaN score at row {row}; pass nan=\"drop\" to drop such rows")]
    NanScore { column: String, row: usize },
    /// An argument outside its domain.
    #[error("{argument} must be {expected}, got {actual}")]
    Argument {
        argument: &'static str,
        expected: &'static str,
        actual: String,
    },
    /// A column name that is ambiguous: two input columns, or a result and a carry column.
    #[error("column name '{0}' is used twice (two input columns, or a result column and a carry column); rename one first")]
    DuplicateColumn(String),
    /// A node table is not a forest (duplicate ids, orphans, several roots, cycles); the
    /// message names the node and its row.
    #[error("{0}")]
    InvalidTree(String),
    /// A row cannot be split into prompt and completions and the caller asked for an error.
    #[error("row {row} of columns '{chosen}'/'{rejected}' cannot be split: {why}; pass unsplittable=\"drop\" to drop such rows")]
    Unsplittable {
        chosen: String,
        rejected: String,
        row: usize,
        why: &'static str,
    },
    /// An image that cannot be read or decoded, and the caller asked for an error.
    #[error("column '{column}' row {row}: {why}; pass bad=\"drop\" to drop such rows")]
    BadImage {
        column: String,
        row: usize,
        why: String,
    },
    /// The input has a column that the result writes itself.
    #[error(
        "the input already has a column '{0}', which the result writes; rename or drop it first"
    )]
    ExistingColumn(String),
    /// A result that could not fit in memory, refused before any of it is made; the message
    /// says how large it would be and what to change.
    #[error("{0}")]
    ResultTooLarge(String),
    /// Reading or writing a spill file of an out-of-core run.
    #[error("spill file: {0}")]
    Io(#[from] std::io::Error),
    /// An error raised by arrow-rs itself.
    #[error("arrow: {0}")]
    Arrow(#[from] ArrowError),
}

/// Names as a Python list prints them: `'a', 'b'`.
fn quoted(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("'{n}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `Result` with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// Shorthand for [`Error::Argument`].
    pub fn argument(argument: &'static str, expected: &'static str, actual: impl ToString) -> Self {
        Error::Argument {
            argument,
            expected,
            actual: actual.to_string(),
        }
    }
}
