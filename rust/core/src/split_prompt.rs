//! Prompt splitting (`pk.split_prompt`): full conversations in, `prompt, chosen, rejected` out.
//!
//! HH-style datasets store each side of a pair as the whole conversation; trainers want the
//! shared prompt and the two completions apart. The exact rules are in docs/split_prompt.md
//! and mirrored in plain Python by tests/reference.py:
//!
//! - text: the prompt is the longest common prefix of the two conversations (on a char
//!   boundary), cut back to the end of the last `boundary` inside it when one is given (so
//!   the prompt ends with e.g. `"\n\nAssistant:"`); the completions are the remainders.
//! - chat messages (`list<struct<role, content, ...>>`): the prompt is the leading messages
//!   both conversations share (whole messages, every field equal), cut back to the last
//!   message whose role is `boundary` when one is given; the completions are the rest.
//!
//! Rows that cannot be split (a null side, identical conversations, nothing shared, an empty
//! completion) are dropped and counted, or are an error naming the row.
//!
//! Text results are string views into the input's buffers: the prompt and both completions
//! are sub-ranges of the input strings, so no text is copied. Message results are copied.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::{
    Array, ArrayRef, GenericListArray, LargeListArray, ListArray, OffsetSizeTrait, RecordBatch,
};
use arrow_buffer::OffsetBuffer;
use arrow_schema::{DataType, Field, FieldRef, Schema};
use rayon::prelude::*;

use crate::accounting::Accounting;
use crate::error::{Error, Result};
use crate::key::{encodable, encode_value};
use crate::parallel;
use crate::table::{type_name, Column, Table};
use crate::text::{is_text, TextColumn};

/// The columns of the result, before the input's other columns.
pub const RESULT_COLUMNS: [&str; 3] = ["prompt", "chosen", "rejected"];

/// What to do with a row that cannot be split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unsplittable {
    /// Drop the row and count it under its reason.
    Drop,
    /// Fail, naming the row and the reason.
    Error,
}

impl Unsplittable {
    /// `"drop"` or `"error"`.
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "drop" => Ok(Unsplittable::Drop),
            "error" => Ok(Unsplittable::Error),
            other => Err(Error::argument(
                "unsplittable",
                "'drop' or 'error'",
                format!("'{other}'"),
            )),
        }
    }
}

/// Why a row cannot be split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unsplit {
    /// The chosen or the rejected conversation is null.
    NullConversation,
    /// Both conversations are equal: there is nothing to prefer.
    Identical,
    /// The conversations share nothing (or no `boundary` inside what they share).
    NoSharedPrompt,
    /// One side would be empty after the split (it is a prefix of the other).
    EmptyCompletion,
}

impl Unsplit {
    /// The reason as counted in the row accounting.
    pub fn reason(self) -> &'static str {
        match self {
            Unsplit::NullConversation => "null_conversation",
            Unsplit::Identical => "identical",
            Unsplit::NoSharedPrompt => "no_shared_prompt",
            Unsplit::EmptyCompletion => "empty_completion",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Unsplit::NullConversation => "a conversation is null",
            Unsplit::Identical => "the two conversations are identical",
            Unsplit::NoSharedPrompt => "the two conversations share no prompt",
            Unsplit::EmptyCompletion => "one completion would be empty",
        }
    }
}

/// The arguments of [`split_prompt`]; see `pk.split_prompt` for their meaning.
#[derive(Debug, Clone)]
pub struct SplitOptions {
    pub chosen: String,
    pub rejected: String,
    pub boundary: Option<String>,
    pub unsplittable: Unsplittable,
}

/// The byte length of the longest common prefix of `a` and `b` that ends on a char boundary.
pub fn common_prefix_len(a: &str, b: &str) -> usize {
    let (x, y) = (a.as_bytes(), b.as_bytes());
    let limit = x.len().min(y.len());
    // Compare 16 bytes at a time, then finish byte by byte.
    let mut n = 0;
    while n + 16 <= limit && x[n..n + 16] == y[n..n + 16] {
        n += 16;
    }
    while n < limit && x[n] == y[n] {
        n += 1;
    }
    // Equal bytes up to n: a char boundary of `a` at n is one of `b` too.
    while !a.is_char_boundary(n) {
        n -= 1;
    }
    n
}

/// Split one text pair: the byte length of the prompt, or why the row cannot be split.
///
/// ```
/// use prefkit_core::split_prompt::split_text;
/// let chosen = "\n\nHuman: hi\n\nAssistant: Hello!";
/// let rejected = "\n\nHuman: hi\n\nAssistant: Go away.";
/// let cut = split_text(chosen, rejected, Some("\n\nAssistant:")).unwrap();
/// assert_eq!(&chosen[..cut], "\n\nHuman: hi\n\nAssistant:");
/// assert_eq!(&rejected[cut..], " Go away.");
/// ```
pub fn split_text(
    chosen: &str,
    rejected: &str,
    boundary: Option<&str>,
) -> std::result::Result<usize, Unsplit> {
    if chosen == rejected {
        return Err(Unsplit::Identical);
    }
    let shared = common_prefix_len(chosen, rejected);
    let cut = match boundary {
        None => shared,
        Some(boundary) => match chosen[..shared].rfind(boundary) {
            Some(at) => at + boundary.len(),
            None => return Err(Unsplit::NoSharedPrompt),
        },
    };
    if cut == 0 {
        return Err(Unsplit::NoSharedPrompt);
    }
    if cut == chosen.len() || cut == rejected.len() {
        return Err(Unsplit::EmptyCompletion);
    }
    Ok(cut)
}

/// Split full conversations into `prompt, chosen, rejected`; the input's other columns follow,
/// taken from the kept rows. Returns the result and the accounting of every input row.
pub fn split_prompt(table: &Table, options: &SplitOptions) -> Result<(RecordBatch, Accounting)> {
    if options.boundary.as_deref() == Some("") {
        return Err(Error::argument(
            "boundary",
            "a non-empty string or None",
            "''",
        ));
    }
    let chosen = table.column(&options.chosen)?;
    let rejected = table.column(&options.rejected)?;
    let others: Vec<Column> = table
        .column_names()
        .iter()
        .filter(|name| **name != options.chosen && **name != options.rejected)
        .map(|name| table.column(name))
        .collect::<Result<_>>()?;
    for column in &others {
        if RESULT_COLUMNS.contains(&column.name()) {
            return Err(Error::ExistingColumn(column.name().to_string()));
        }
    }

    let (splits, build): (Vec<_>, Builder) = if is_text(chosen.field.data_type()) {
        if !is_text(rejected.field.data_type()) {
            return Err(Error::ColumnType {
                column: rejected.name().to_string(),
                expected: "text (string, large_string or string_view), as the chosen column is",
                actual: type_name(rejected.field.data_type()),
            });
        }
        let (c, r) = (TextColumn::new(&chosen)?, TextColumn::new(&rejected)?);
        let boundary = options.boundary.as_deref();
        let (cs, rs) = (c.strs(), r.strs());
        let splits = parallel::install(|| {
            cs.par_iter()
                .zip(rs.par_iter())
                .map(|(c, r)| match (c, r) {
                    (Some(c), Some(r)) => split_text(c, r, boundary).map(|cut| (cut, 0, 0)),
                    _ => Err(Unsplit::NullConversation),
                })
                .collect()
        });
        let lengths = (
            cs.iter().map(|s| s.map_or(0, str::len)).collect(),
            rs.iter().map(|s| s.map_or(0, str::len)).collect(),
        );
        (splits, Builder::Text(c, r, lengths))
    } else {
        let c = Messages::new(&chosen)?;
        if rejected.field.data_type() != chosen.field.data_type() {
            return Err(Error::ColumnType {
                column: rejected.name().to_string(),
                expected: "the chat-message type of the chosen column",
                actual: type_name(rejected.field.data_type()),
            });
        }
        let r = Messages::new(&rejected)?;
        let role = match &options.boundary {
            Some(_) => Some(c.role_field(&chosen)?),
            None => None,
        };
        let splits = parallel::install(|| {
            (0..c.ranges.len())
                .into_par_iter()
                .map_init(
                    || (Vec::new(), Vec::new()),
                    |buffers, row| {
                        split_messages(&c, &r, row, role, options.boundary.as_deref(), buffers)
                    },
                )
                .collect()
        });
        (splits, Builder::Messages(c, r, chosen.field.clone()))
    };

    let mut accounting = Accounting {
        rows_in: table.num_rows(),
        ..Accounting::default()
    };
    let mut kept = Vec::new();
    for (row, split) in splits.iter().enumerate() {
        match split {
            Ok(split) => kept.push((row, *split)),
            Err(why) if options.unsplittable == Unsplittable::Error => {
                return Err(Error::Unsplittable {
                    chosen: options.chosen.clone(),
                    rejected: options.rejected.clone(),
                    row,
                    why: why.describe(),
                })
            }
            Err(why) => accounting.drop_rows(why.reason(), 1),
        }
    }
    accounting.rows_used = kept.len();

    let mut fields: Vec<Field> = Vec::new();
    let mut columns: Vec<ArrayRef> = build.build(&kept)?;
    for (name, array) in RESULT_COLUMNS.iter().zip(&columns) {
        fields.push(Field::new(*name, array.data_type().clone(), false));
    }
    let rows: Vec<usize> = kept.iter().map(|(row, _)| *row).collect();
    for column in &others {
        let array = column.take(&rows)?;
        fields.push(Field::new(column.name(), array.data_type().clone(), true));
        columns.push(array);
    }
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?;
    Ok((batch, accounting))
}

/// A kept row's split: for text the prompt's byte length; for messages the number of prompt
/// messages (the other two entries are unused).
type Split = (usize, usize, usize);

/// How the result columns are made from the kept rows.
enum Builder {
    /// Both columns' text, and every row's byte length of chosen and rejected.
    Text(TextColumn, TextColumn, (Vec<usize>, Vec<usize>)),
    /// Both columns' messages, and the chosen column's field (the result type).
    Messages(Messages, Messages, FieldRef),
}

impl Builder {
    fn build(&self, kept: &[(usize, Split)]) -> Result<Vec<ArrayRef>> {
        match self {
            Builder::Text(chosen, rejected, (chosen_len, rejected_len)) => {
                let (c, r) = (chosen.views(), rejected.views());
                let prompt: Vec<_> = kept.iter().map(|&(row, (cut, ..))| (row, 0, cut)).collect();
                let chosen: Vec<_> = kept
                    .iter()
                    .map(|&(row, (cut, ..))| (row, cut, chosen_len[row]))
                    .collect();
                let rejected: Vec<_> = kept
                    .iter()
                    .map(|&(row, (cut, ..))| (row, cut, rejected_len[row]))
                    .collect();
                Ok(vec![
                    Arc::new(c.gather_slices(&prompt)),
                    Arc::new(c.gather_slices(&chosen)),
                    Arc::new(r.gather_slices(&rejected)),
                ])
            }
            Builder::Messages(chosen, rejected, field) => {
                let prompt = chosen.gather(kept, field, |(start, _), k| (start, start + k))?;
                let chosen_rest = chosen.gather(kept, field, |(start, end), k| (start + k, end))?;
                let rejected_rest =
                    rejected.gather(kept, field, |(start, end), k| (start + k, end))?;
                Ok(vec![prompt, chosen_rest, rejected_rest])
            }
        }
    }
}

/// A chat-message column: per row, the range of its messages in its chunk's values.
struct Messages {
    /// The flattened messages (a struct array) of each chunk.
    values: Vec<ArrayRef>,
    /// Per row: (chunk, start, end) into that chunk's values, or None for a null list.
    ranges: Vec<Option<(usize, usize, usize)>>,
}

impl Messages {
    fn new(column: &Column) -> Result<Self> {
        let message_type = match column.field.data_type() {
            DataType::List(item) | DataType::LargeList(item) => Some(item.data_type()),
            _ => None,
        };
        let ok = matches!(message_type, Some(DataType::Struct(_)))
            && encodable(column.field.data_type());
        if !ok {
            return Err(Error::ColumnType {
                column: column.name().to_string(),
                expected: "text (string, large_string or string_view) or chat messages \
                           (list<struct<role, content>>)",
                actual: type_name(column.field.data_type()),
            });
        }
        let mut values = Vec::with_capacity(column.chunks.len());
        let mut ranges = Vec::new();
        for (index, chunk) in column.chunks.iter().enumerate() {
            match chunk.data_type() {
                DataType::List(_) => {
                    read_list(chunk.as_list::<i32>(), index, &mut values, &mut ranges)
                }
                _ => read_list(chunk.as_list::<i64>(), index, &mut values, &mut ranges),
            }
        }
        Ok(Self { values, ranges })
    }

    /// The index of the text field `role` in the message structs, for a `boundary`.
    fn role_field(&self, column: &Column) -> Result<usize> {
        let fields = match column.field.data_type() {
            DataType::List(item) | DataType::LargeList(item) => match item.data_type() {
                DataType::Struct(fields) => fields.clone(),
                _ => unreachable!("checked in Messages::new"),
            },
            _ => unreachable!("checked in Messages::new"),
        };
        fields
            .iter()
            .position(|f| f.name() == "role" && is_text(f.data_type()))
            .ok_or_else(|| Error::ColumnType {
                column: column.name().to_string(),
                expected: "chat messages with a text field 'role' (a boundary names a role)",
                actual: type_name(column.field.data_type()),
            })
    }

    /// The role of message `j` of chunk `chunk`.
    fn role(&self, chunk: usize, j: usize, field: usize) -> Option<&str> {
        let role = self.values[chunk].as_struct().column(field);
        if role.is_null(j) {
            return None;
        }
        Some(match role.data_type() {
            DataType::Utf8 => role.as_string::<i32>().value(j),
            DataType::LargeUtf8 => role.as_string::<i64>().value(j),
            _ => role.as_string_view().value(j),
        })
    }

    /// A list column of the messages `pick((start, end), split)` of every kept row.
    fn gather(
        &self,
        kept: &[(usize, Split)],
        field: &FieldRef,
        pick: impl Fn((usize, usize), usize) -> (usize, usize),
    ) -> Result<ArrayRef> {
        let mut indices = Vec::new();
        let mut lengths = Vec::with_capacity(kept.len());
        for &(row, (k, ..)) in kept {
            let (chunk, start, end) = self.ranges[row].expect("kept rows are not null");
            let (from, to) = pick((start, end), k);
            indices.extend((from..to).map(|j| (chunk, j)));
            lengths.push(to - from);
        }
        let item = match field.data_type() {
            DataType::List(item) | DataType::LargeList(item) => item.clone(),
            _ => unreachable!("checked in Messages::new"),
        };
        let values = if indices.is_empty() {
            arrow_array::new_empty_array(item.data_type())
        } else {
            let arrays: Vec<&dyn Array> = self.values.iter().map(|v| v.as_ref()).collect();
            arrow_select::interleave::interleave(&arrays, &indices)?
        };
        Ok(match field.data_type() {
            DataType::List(_) => Arc::new(ListArray::try_new(
                item,
                OffsetBuffer::from_lengths(lengths),
                values,
                None,
            )?),
            _ => Arc::new(LargeListArray::try_new(
                item,
                OffsetBuffer::from_lengths(lengths),
                values,
                None,
            )?),
        })
    }
}

fn read_list<O: OffsetSizeTrait>(
    list: &GenericListArray<O>,
    chunk: usize,
    values: &mut Vec<ArrayRef>,
    ranges: &mut Vec<Option<(usize, usize, usize)>>,
) {
    values.push(list.values().clone());
    let offsets = list.value_offsets();
    ranges.extend((0..list.len()).map(|i| {
        list.is_valid(i)
            .then(|| (chunk, offsets[i].as_usize(), offsets[i + 1].as_usize()))
    }));
}

/// Split one message pair: the number of prompt messages, or why the row cannot be split.
fn split_messages(
    chosen: &Messages,
    rejected: &Messages,
    row: usize,
    role: Option<usize>,
    boundary: Option<&str>,
    (a, b): &mut (Vec<u8>, Vec<u8>),
) -> std::result::Result<Split, Unsplit> {
    let (Some((cc, cs, ce)), Some((rc, rs, re))) = (chosen.ranges[row], rejected.ranges[row])
    else {
        return Err(Unsplit::NullConversation);
    };
    let (nc, nr) = (ce - cs, re - rs);
    let mut shared = 0;
    while shared < nc.min(nr) {
        a.clear();
        b.clear();
        encode_value(&chosen.values[cc], cs + shared, a);
        encode_value(&rejected.values[rc], rs + shared, b);
        if a != b {
            break;
        }
        shared += 1;
    }
    if shared == nc && nc == nr {
        return Err(Unsplit::Identical);
    }
    let cut = match (role, boundary) {
        (Some(field), Some(boundary)) => (0..shared)
            .rev()
            .find(|&j| chosen.role(cc, cs + j, field) == Some(boundary))
            .map_or(0, |j| j + 1),
        _ => shared,
    };
    if cut == 0 {
        return Err(Unsplit::NoSharedPrompt);
    }
    if cut == nc || cut == nr {
        return Err(Unsplit::EmptyCompletion);
    }
    Ok((cut, 0, 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    use arrow_array::builder::{ListBuilder, StringBuilder, StructBuilder};
    use arrow_array::{LargeStringArray, StringArray, StringViewArray};
    use arrow_schema::Fields;

    const HUMAN: &str = "\n\nHuman: ";
    const ASSISTANT: &str = "\n\nAssistant:";

    fn hh(turns: &[&str]) -> String {
        turns
            .iter()
            .enumerate()
            .map(|(i, t)| {
                if i % 2 == 0 {
                    format!("{HUMAN}{t}")
                } else {
                    format!("{ASSISTANT} {t}")
                }
            })
            .collect()
    }

    fn options(boundary: Option<&str>) -> SplitOptions {
        SplitOptions {
            chosen: "chosen".into(),
            rejected: "rejected".into(),
            boundary: boundary.map(str::to_string),
            unsplittable: Unsplittable::Drop,
        }
    }

    fn texts(batch: &RecordBatch, column: usize) -> Vec<String> {
        let array = batch.column(column).as_string_view();
        array.iter().map(|s| s.unwrap().to_string()).collect()
    }

    #[test]
    fn common_prefix_stops_on_char_boundaries() {
        assert_eq!(common_prefix_len("abc", "abd"), 2);
        assert_eq!(common_prefix_len("", "abd"), 0);
        assert_eq!(common_prefix_len("abc", "abc"), 3);
        // é (c3 a9) and è (c3 a8) share a first byte that is not a whole char.
        assert_eq!(common_prefix_len("aé", "aè"), 1);
        let long_a = "x".repeat(40) + "€1";
        let long_b = "x".repeat(40) + "€2";
        assert_eq!(common_prefix_len(&long_a, &long_b), 43);
    }

    #[test]
    fn text_split_rules() {
        let b = Some(ASSISTANT);
        let c = hh(&["hi", "Hello there!"]);
        let r = hh(&["hi", "Hello."]);
        // Without a boundary the cut is mid-answer; with one it is after "Assistant:".
        assert_eq!(
            &c[..split_text(&c, &r, None).unwrap()],
            hh(&["hi", "Hello"])
        );
        assert_eq!(
            &c[..split_text(&c, &r, b).unwrap()],
            format!("{HUMAN}hi{ASSISTANT}")
        );
        assert_eq!(split_text(&c, &c, b), Err(Unsplit::Identical));
        assert_eq!(split_text("abc", "xyz", None), Err(Unsplit::NoSharedPrompt));
        assert_eq!(split_text("ab", "abc", None), Err(Unsplit::EmptyCompletion));
        assert_eq!(
            split_text("no boundary a", "no boundary b", b),
            Err(Unsplit::NoSharedPrompt)
        );
        // Multi-turn: the last boundary inside the shared part.
        let c = hh(&["hi", "yo", "how are you?", "fine"]);
        let r = hh(&["hi", "yo", "how are you?", "bad"]);
        let cut = split_text(&c, &r, b).unwrap();
        assert!(c[..cut].ends_with(&format!("how are you?{ASSISTANT}")));
        assert_eq!(&r[cut..], " bad");
        // A boundary that is only partly shared does not count.
        assert_eq!(
            split_text(
                "Q\n\nAssistant: a\n\nAssistant: b",
                "Q\n\nAssistant: a\n\nAssist c",
                b
            ),
            Ok("Q\n\nAssistant:".len())
        );
    }

    #[test]
    fn text_table_keeps_other_columns_and_counts_drops() {
        let c = hh(&["hi", "Hello there, how can I help you today?"]);
        let r = hh(&["hi", "Go away, I am busy with something else."]);
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("chosen", DataType::Utf8, true),
            Field::new("rejected", DataType::LargeUtf8, true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(arrow_array::Int64Array::from(vec![10, 11, 12, 13])),
                Arc::new(StringArray::from(vec![
                    Some(c.as_str()),
                    None,
                    Some("a"),
                    Some("x"),
                ])),
                Arc::new(LargeStringArray::from(vec![
                    Some(r.as_str()),
                    Some("z"),
                    Some("a"),
                    Some("y"),
                ])),
            ],
        )
        .unwrap();
        let table = Table::new(schema, vec![batch]);
        let (out, accounting) = split_prompt(&table, &options(Some(ASSISTANT))).unwrap();
        assert_eq!(
            out.schema()
                .fields()
                .iter()
                .map(|f| f.name().as_str())
                .collect::<Vec<_>>(),
            ["prompt", "chosen", "rejected", "id"]
        );
        assert_eq!(texts(&out, 0), [format!("{HUMAN}hi{ASSISTANT}")]);
        assert_eq!(texts(&out, 1), [" Hello there, how can I help you today?"]);
        assert_eq!(texts(&out, 2), [" Go away, I am busy with something else."]);
        assert_eq!(accounting.rows_in, 4);
        assert_eq!(accounting.rows_used, 1);
        assert_eq!(accounting.dropped["null_conversation"], 1);
        assert_eq!(accounting.dropped["identical"], 1);
        assert_eq!(accounting.dropped["no_shared_prompt"], 1);

        let mut strict = options(Some(ASSISTANT));
        strict.unsplittable = Unsplittable::Error;
        let err = split_prompt(&table, &strict).unwrap_err().to_string();
        assert!(err.contains("row 1") && err.contains("null"), "{err}");
    }

    #[test]
    fn inline_and_long_views_slice_correctly() {
        // Short strings live inside the views; long ones in buffers, sliced mid-buffer.
        let pairs = [
            ("ab1", "ab2"),
            ("é€😀 long shared part xy", "é€😀 long shared part zz"),
        ];
        let schema = Arc::new(Schema::new(vec![
            Field::new("chosen", DataType::Utf8View, false),
            Field::new("rejected", DataType::Utf8View, false),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringViewArray::from_iter_values(pairs.iter().map(|p| p.0))),
                Arc::new(StringViewArray::from_iter_values(pairs.iter().map(|p| p.1))),
            ],
        )
        .unwrap();
        let (out, _) = split_prompt(&Table::new(schema, vec![batch]), &options(None)).unwrap();
        assert_eq!(texts(&out, 0), ["ab", "é€😀 long shared part "]);
        assert_eq!(texts(&out, 1), ["1", "xy"]);
        assert_eq!(texts(&out, 2), ["2", "zz"]);
    }

    fn chat(conversations: &[Option<&[(&str, &str)]>]) -> ArrayRef {
        let fields = Fields::from(vec![
            Field::new("role", DataType::Utf8, true),
            Field::new("content", DataType::Utf8, true),
        ]);
        let mut builder = ListBuilder::new(StructBuilder::from_fields(fields, 0));
        for conversation in conversations {
            match conversation {
                None => builder.append(false),
                Some(messages) => {
                    for (role, content) in *messages {
                        let s = builder.values();
                        s.field_builder::<StringBuilder>(0)
                            .unwrap()
                            .append_value(role);
                        s.field_builder::<StringBuilder>(1)
                            .unwrap()
                            .append_value(content);
                        s.append(true);
                    }
                    builder.append(true);
                }
            }
        }
        Arc::new(builder.finish())
    }

    #[test]
    fn messages_split_on_shared_messages_and_roles() {
        let u = ("user", "hi");
        let a = ("assistant", "hello");
        let u2 = ("user", "and now?");
        let good = ("assistant", "now this");
        let bad = ("assistant", "nope");
        let chosen = chat(&[
            Some(&[u, a, u2, good]),
            Some(&[u, good]),
            Some(&[u, a]),
            None,
            Some(&[u, a, u2, good]),
        ]);
        let rejected = chat(&[
            Some(&[u, a, u2, bad]),
            Some(&[u, good]),
            Some(&[u]),
            Some(&[u]),
            Some(&[u, a, ("user", "other"), bad]),
        ]);
        let schema = Arc::new(Schema::new(vec![
            Field::new("chosen", chosen.data_type().clone(), true),
            Field::new("rejected", rejected.data_type().clone(), true),
        ]));
        let batch = RecordBatch::try_new(schema.clone(), vec![chosen, rejected]).unwrap();
        let table = Table::new(schema, vec![batch]);
        let lengths = |out: &RecordBatch, column: usize| -> Vec<usize> {
            let list = out.column(column).as_list::<i32>();
            (0..list.len())
                .map(|i| list.value_length(i) as usize)
                .collect()
        };

        let (out, accounting) = split_prompt(&table, &options(None)).unwrap();
        assert_eq!(lengths(&out, 0), [3, 2]);
        assert_eq!(lengths(&out, 1), [1, 2]);
        assert_eq!(lengths(&out, 2), [1, 2]);
        assert_eq!(accounting.dropped["identical"], 1);
        assert_eq!(accounting.dropped["empty_completion"], 1);
        assert_eq!(accounting.dropped["null_conversation"], 1);

        // boundary="user": the prompt ends with the last shared user message.
        let (out, _) = split_prompt(&table, &options(Some("user"))).unwrap();
        assert_eq!(lengths(&out, 0), [3, 1]);
        assert_eq!(lengths(&out, 1), [1, 3]);
    }

    #[test]
    fn bad_types_name_the_column() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("chosen", DataType::Utf8, false),
            Field::new("rejected", DataType::Int64, false),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(vec!["a"])),
                Arc::new(arrow_array::Int64Array::from(vec![1])),
            ],
        )
        .unwrap();
        let err = split_prompt(&Table::new(schema, vec![batch]), &options(None))
            .unwrap_err()
            .to_string();
        assert!(err.contains("'rejected'") && err.contains("int64"), "{err}");
    }
}
