//! Chat messages (`list<struct<role, content, ...>>`) rendered as text, for the operations
//! that compare words: near-duplicate detection and decontamination.
//!
//! A conversation becomes one line per message, `role: content`, joined by `\n` (a message
//! without a role is its content alone; a null message is skipped; a null conversation stays
//! null). Normalisation then drops the punctuation, so the words compared are the roles and
//! the contents, in order: the same text said by another role is another conversation.

use std::sync::Arc;

use arrow_array::builder::LargeStringBuilder;
use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef, GenericListArray, LargeStringArray, OffsetSizeTrait};
use arrow_cast::cast;
use arrow_schema::{DataType, Field};

use crate::error::Result;
use crate::table::Column;
use crate::text::is_text;

/// Whether `data_type` is a list of message structs with a text `content` field.
pub fn is_messages(data_type: &DataType) -> bool {
    let (DataType::List(item) | DataType::LargeList(item)) = data_type else {
        return false;
    };
    let DataType::Struct(fields) = item.data_type() else {
        return false;
    };
    fields
        .iter()
        .any(|f| f.name() == "content" && is_text(f.data_type()))
}

/// `column` (chat messages, [`is_messages`]) rendered as a `large_string` column of the same
/// name, as the module documentation says.
pub fn render(column: &Column) -> Result<Column> {
    let chunks = column
        .chunks
        .iter()
        .map(|chunk| match chunk.data_type() {
            DataType::List(_) => render_chunk(chunk.as_list::<i32>()),
            _ => render_chunk(chunk.as_list::<i64>()),
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Column {
        field: Arc::new(Field::new(column.name(), DataType::LargeUtf8, true)),
        chunks,
    })
}

/// A struct field of the messages as `large_string`, when the messages have it.
fn text_field(messages: &arrow_array::StructArray, name: &str) -> Result<Option<LargeStringArray>> {
    let Some(field) = messages.column_by_name(name) else {
        return Ok(None);
    };
    if !is_text(field.data_type()) {
        return Ok(None);
    }
    Ok(Some(
        cast(field, &DataType::LargeUtf8)?
            .as_string::<i64>()
            .clone(),
    ))
}

/// Message `j`'s value of `field`, when the messages have the field and it is not null.
fn value(field: &Option<LargeStringArray>, j: usize) -> Option<&str> {
    field.as_ref().filter(|f| f.is_valid(j)).map(|f| f.value(j))
}

fn render_chunk<O: OffsetSizeTrait>(list: &GenericListArray<O>) -> Result<ArrayRef> {
    let messages = list.values().as_struct();
    let role = text_field(messages, "role")?;
    let content = text_field(messages, "content")?;
    let mut out = LargeStringBuilder::with_capacity(list.len(), 0);
    let mut text = String::new();
    for row in 0..list.len() {
        if list.is_null(row) {
            out.append_null();
            continue;
        }
        text.clear();
        let offsets = list.value_offsets();
        for j in offsets[row].as_usize()..offsets[row + 1].as_usize() {
            if messages.is_null(j) {
                continue;
            }
            if !text.is_empty() {
                text.push('\n');
            }
            if let Some(role) = value(&role, j) {
                text.push_str(role);
                text.push_str(": ");
            }
            text.push_str(value(&content, j).unwrap_or(""));
        }
        out.append_value(&text);
    }
    Ok(Arc::new(out.finish()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::builder::{ListBuilder, StringBuilder, StructBuilder};
    use arrow_schema::Fields;

    /// A conversation of `(role, content)` messages, or None for a null row.
    type Conversation<'a> = Option<&'a [(Option<&'a str>, &'a str)]>;

    fn conversations(rows: &[Conversation<'_>]) -> ArrayRef {
        let fields = Fields::from(vec![
            Field::new("role", DataType::Utf8, true),
            Field::new("content", DataType::Utf8, true),
        ]);
        let mut list = ListBuilder::new(StructBuilder::from_fields(fields, 0));
        for row in rows {
            match row {
                None => list.append(false),
                Some(messages) => {
                    for (role, content) in *messages {
                        let item = list.values();
                        item.field_builder::<StringBuilder>(0)
                            .unwrap()
                            .append_option(*role);
                        item.field_builder::<StringBuilder>(1)
                            .unwrap()
                            .append_value(content);
                        item.append(true);
                    }
                    list.append(true);
                }
            }
        }
        Arc::new(list.finish())
    }

    #[test]
    fn conversations_become_role_content_lines() {
        let array = conversations(&[
            Some(&[(Some("user"), "Hi!"), (Some("assistant"), "Hello.")]),
            None,
            Some(&[(None, "no role")]),
            Some(&[]),
        ]);
        assert!(is_messages(array.data_type()));
        assert!(!is_messages(&DataType::Utf8));
        let column = Column {
            field: Arc::new(Field::new("prompt", array.data_type().clone(), true)),
            chunks: vec![array],
        };
        let rendered = render(&column).unwrap();
        let text = rendered.chunks[0].as_string::<i64>();
        assert_eq!(text.value(0), "user: Hi!\nassistant: Hello.");
        assert!(text.is_null(1));
        assert_eq!(text.value(2), "no role");
        assert_eq!(text.value(3), "");
        assert_eq!(rendered.name(), "prompt");
    }
}
