//! Texts cut into the pieces a tokenizer's pre-tokenizer makes, the distinct pieces numbered.
//!
//! A byte-level BPE tokenizer (GPT-2, Llama 3, Qwen 2, ...) cuts a text with a regex and then
//! tokenises every piece on its own, so a text's tokens are its pieces' tokens end to end.
//! A corpus has few distinct pieces (15 MB of text, ~20k), so tokenising each distinct piece
//! once and gathering is far cheaper than the whole pipeline per text: the `tokenizers` library
//! spends most of its time on per-byte alignment bookkeeping that token ids never need.
//!
//! Exactness rests on three rules. The regex is the tokenizer's own (fancy-regex runs the
//! look-arounds these patterns use), and text between two matches is a piece of its own, as
//! the tokenizer's `Isolated` split behaviour makes it. A text is left to the tokenizer itself
//! when it holds a reserved string (an added token, which the tokenizer matches before it
//! splits), when the regex engine gives up on it or matches the empty string, or when one of
//! its pieces is not cut whole by the regex on its own: tokenising such a piece alone would not
//! be what the tokenizer does inside the text.

use aho_corasick::AhoCorasick;
use arrow_array::StringArray;
use fancy_regex::Regex;
use hashbrown::HashMap;
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::parallel;
use crate::text::TextColumn;

/// Texts per parallel task, at least: each task numbers its own distinct pieces first, and
/// the tasks' lists are merged one after another, so tasks must not be tiny.
const MIN_TEXTS_PER_TASK: usize = 256;

/// A tokenizer's pre-tokenisation regex and the strings it matches before splitting.
#[derive(Debug)]
pub struct Splitter {
    regex: Regex,
    reserved: Option<AhoCorasick>,
}

impl Splitter {
    /// A splitter for `pattern` (the tokenizer's regex, Oniguruma/Perl syntax) that leaves any
    /// text holding one of `reserved` to the tokenizer.
    pub fn new(pattern: &str, reserved: &[String]) -> Result<Self> {
        let regex = Regex::new(pattern).map_err(|err| Error::Argument {
            argument: "pattern",
            expected: "a regular expression",
            actual: format!("{pattern:?} ({err})"),
        })?;
        let reserved = reserved
            .iter()
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>();
        let reserved = if reserved.is_empty() {
            None
        } else {
            Some(AhoCorasick::new(reserved).map_err(|err| Error::Argument {
                argument: "reserved",
                expected: "strings to search for",
                actual: err.to_string(),
            })?)
        };
        Ok(Self { regex, reserved })
    }

    /// Push the pieces of `text` onto `out`; false (and `out` as it was) when the text must be
    /// left to the tokenizer.
    fn cut<'t>(&self, text: &'t str, out: &mut Vec<&'t str>) -> bool {
        if self.reserved.as_ref().is_some_and(|r| r.is_match(text)) {
            return false;
        }
        let start_len = out.len();
        let mut last = 0;
        for found in self.regex.find_iter(text) {
            let Ok(found) = found else {
                out.truncate(start_len);
                return false;
            };
            if found.start() == found.end() {
                out.truncate(start_len);
                return false;
            }
            if found.start() > last {
                out.push(&text[last..found.start()]);
            }
            out.push(found.as_str());
            last = found.end();
        }
        if last < text.len() {
            out.push(&text[last..]);
        }
        true
    }

    /// Whether the regex, run on `piece` alone, matches all of it in one go.
    fn is_whole(&self, piece: &str) -> bool {
        matches!(self.regex.find(piece), Ok(Some(m)) if m.start() == 0 && m.end() == piece.len())
    }
}

/// The pieces of a text column, each distinct piece numbered once.
#[derive(Debug)]
pub struct Pieces {
    /// The distinct pieces, in order of first appearance.
    pub distinct: StringArray,
    /// The number (index into `distinct`) of every piece of every text, text after text.
    pub ids: Vec<u32>,
    /// Where each text's pieces start in `ids`: one entry per text, plus the end.
    pub offsets: Vec<i64>,
    /// Per text: left to the tokenizer (it has no pieces here). Null texts are left too.
    pub unsplit: Vec<bool>,
}

/// One task's texts: pieces numbered among the task's own distinct pieces.
struct TaskPieces<'t> {
    distinct: Vec<&'t str>,
    ids: Vec<u32>,
    counts: Vec<u32>,
    unsplit: Vec<bool>,
}

fn cut_task<'t>(splitter: &Splitter, texts: &[Option<&'t str>]) -> TaskPieces<'t> {
    let mut numbers: HashMap<&'t str, u32> = HashMap::new();
    let mut task = TaskPieces {
        distinct: Vec::new(),
        ids: Vec::new(),
        counts: Vec::with_capacity(texts.len()),
        unsplit: Vec::with_capacity(texts.len()),
    };
    let mut pieces = Vec::new();
    for text in texts {
        pieces.clear();
        let ok = text.is_some_and(|text| splitter.cut(text, &mut pieces));
        for &piece in &pieces {
            let next = task.distinct.len() as u32;
            let id = *numbers.entry(piece).or_insert_with(|| {
                task.distinct.push(piece);
                next
            });
            task.ids.push(id);
        }
        task.counts.push(pieces.len() as u32);
        task.unsplit.push(!ok);
    }
    task
}

/// Cut every text of `texts` into pieces with `splitter` and number the distinct ones.
///
/// Pieces borrow from the input until the distinct ones are copied into the result; texts are
/// cut in parallel, a task's distinct pieces merged into the global numbering in task order
/// (so numbers follow first appearance), then renumbered in parallel.
pub fn split_pieces(texts: &TextColumn, splitter: &Splitter) -> Result<Pieces> {
    let strs = texts.strs();
    parallel::install(|| {
        let per_task = strs
            .len()
            .div_ceil(4 * rayon::current_num_threads())
            .max(MIN_TEXTS_PER_TASK);
        let tasks: Vec<TaskPieces> = strs
            .par_chunks(per_task)
            .map(|chunk| cut_task(splitter, chunk))
            .collect();

        let mut numbers: HashMap<&str, u32> = HashMap::new();
        let mut distinct: Vec<&str> = Vec::new();
        let renumbering: Vec<Vec<u32>> = tasks
            .iter()
            .map(|task| {
                task.distinct
                    .iter()
                    .map(|&piece| {
                        let next = distinct.len() as u32;
                        *numbers.entry(piece).or_insert_with(|| {
                            distinct.push(piece);
                            next
                        })
                    })
                    .collect()
            })
            .collect();
        let whole: Vec<bool> = distinct.par_iter().map(|p| splitter.is_whole(p)).collect();

        // Each task's texts in global numbers; a text with a piece that is not whole is left
        // to the tokenizer.
        let renumbered: Vec<TaskPieces> = tasks
            .into_par_iter()
            .zip(renumbering)
            .map(|(task, global)| renumber(task, &global, &whole))
            .collect();

        let mut offsets = Vec::with_capacity(strs.len() + 1);
        offsets.push(0i64);
        let mut ids = Vec::with_capacity(renumbered.iter().map(|t| t.ids.len()).sum());
        let mut unsplit = Vec::with_capacity(strs.len());
        for task in renumbered {
            for &count in &task.counts {
                offsets.push(offsets[offsets.len() - 1] + i64::from(count));
            }
            ids.extend_from_slice(&task.ids);
            unsplit.extend_from_slice(&task.unsplit);
        }
        Ok(Pieces {
            distinct: StringArray::from_iter_values(distinct),
            ids,
            offsets,
            unsplit,
        })
    })
}

/// `task` with its piece numbers mapped through `global`, and every text that has a piece
/// that is not `whole` emptied and marked unsplit.
fn renumber<'t>(task: TaskPieces<'t>, global: &[u32], whole: &[bool]) -> TaskPieces<'t> {
    let mut out = TaskPieces {
        distinct: Vec::new(),
        ids: Vec::with_capacity(task.ids.len()),
        counts: Vec::with_capacity(task.counts.len()),
        unsplit: task.unsplit,
    };
    let mut start = 0;
    for (row, &count) in task.counts.iter().enumerate() {
        let end = start + count as usize;
        let text = task.ids[start..end].iter().map(|&id| global[id as usize]);
        if text.clone().all(|id| whole[id as usize]) {
            out.ids.extend(text);
            out.counts.push(count);
        } else {
            out.counts.push(0);
            out.unsplit[row] = true;
        }
        start = end;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::Table;
    use arrow_array::{Array, ArrayRef, RecordBatch};
    use std::sync::Arc;

    /// GPT-2's pre-tokenisation regex, as the `tokenizers` ByteLevel pre-tokenizer uses it.
    const GPT2: &str =
        r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

    fn split(texts: Vec<Option<&str>>, pattern: &str, reserved: &[&str]) -> Pieces {
        let array: ArrayRef = Arc::new(StringArray::from(texts));
        let batch = RecordBatch::try_from_iter([("text", array)]).unwrap();
        let table = Table::new(batch.schema(), vec![batch]);
        let column = TextColumn::new(&table.column("text").unwrap()).unwrap();
        let reserved: Vec<String> = reserved.iter().map(|s| s.to_string()).collect();
        split_pieces(&column, &Splitter::new(pattern, &reserved).unwrap()).unwrap()
    }

    /// Each text's pieces as strings (empty for an unsplit text).
    fn texts_of(pieces: &Pieces) -> Vec<Vec<&str>> {
        pieces
            .offsets
            .windows(2)
            .map(|w| {
                pieces.ids[w[0] as usize..w[1] as usize]
                    .iter()
                    .map(|&id| pieces.distinct.value(id as usize))
                    .collect()
            })
            .collect()
    }

    #[test]
    fn cuts_like_gpt2_and_numbers_distinct_pieces_once() {
        let out = split(
            vec![Some("Hello world!  It's 42"), Some("hello world"), Some("")],
            GPT2,
            &[],
        );
        assert_eq!(
            texts_of(&out),
            vec![
                vec!["Hello", " world", "!", " ", " It", "'s", " 42"],
                vec!["hello", " world"],
                vec![],
            ]
        );
        assert_eq!(out.distinct.len(), 8);
        assert_eq!(out.unsplit, vec![false, false, false]);
    }

    #[test]
    fn text_between_matches_is_a_piece() {
        let mut pieces = Vec::new();
        assert!(Splitter::new(r"\p{N}+", &[])
            .unwrap()
            .cut("ab12cd3", &mut pieces));
        assert_eq!(pieces, vec!["ab", "12", "cd", "3"]);
    }

    #[test]
    fn leaves_reserved_strings_empty_matches_and_nulls_to_the_tokenizer() {
        let out = split(
            vec![Some("a <|end|> b"), None, Some("plain")],
            GPT2,
            &["<|end|>"],
        );
        assert_eq!(out.unsplit, vec![true, true, false]);
        assert_eq!(texts_of(&out), vec![vec![], vec![], vec!["plain"]]);
        let empty = split(vec![Some("ab")], r"x*", &[]);
        assert_eq!(empty.unsplit, vec![true]);
    }

    #[test]
    fn leaves_texts_whose_pieces_are_not_whole_alone() {
        // "aab" is cut into the gap "a" and the match "ab"; the regex does not match "a" on
        // its own, so tokenising "a" alone could differ from what the tokenizer does.
        let out = split(vec![Some("aab"), Some("ab")], r"ab|b", &[]);
        assert_eq!(out.unsplit, vec![true, false]);
        assert_eq!(texts_of(&out), vec![vec![], vec!["ab"]]);
    }

    #[test]
    fn numbering_is_global_across_parallel_tasks() {
        let words = ["alpha", "beta", "gamma", "delta"];
        let texts: Vec<String> = (0..3000)
            .map(|i| format!("{} {}", words[i % 4], words[(i / 4) % 4]))
            .collect();
        let out = split(texts.iter().map(|s| Some(s.as_str())).collect(), GPT2, &[]);
        assert!(out.unsplit.iter().all(|u| !u));
        for (text, pieces) in texts.iter().zip(texts_of(&out)) {
            assert_eq!(pieces.concat(), *text);
        }
        // 4 words at the start of a text, 4 after a space.
        assert_eq!(out.distinct.len(), 8);
    }
}
