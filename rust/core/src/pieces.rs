//! Texts cut into the pieces a tokenizer's pre-tokenizer makes, the distinct pieces numbered.
//!
//! A byte-level BPE tokenizer (GPT-2, Llama 3, Qwen 2, ...) cuts a text with a regex and then
//! tokenises every piece on its own, so a text's tokens are its pieces' tokens end to end.
//! A corpus has few distinct pieces (15 MB of text, ~20k), so tokenising each distinct piece
//! once and gathering is far cheaper than the whole pipeline per text: the `tokenizers` library
//! spends most of its time on per-byte alignment bookkeeping that token ids never need.
//!
//! Exactness rests on the tokenizer's own rules, followed step by step:
//! - Added tokens are split off first, as the tokenizer does (leftmost-longest matches; those
//!   matched on raw text, then those matched on normalised text inside the rest); each match
//!   is a piece, which the tokenizer maps to its one id whether alone or inside a text. Added
//!   tokens with `lstrip`, `rstrip` or `single_word` are not reproduced: a text holding one is
//!   left to the tokenizer.
//! - The text between added tokens is cut with the tokenizer's own regex: through the regex
//!   crate with the trailing look-ahead of GPT-2-style patterns applied by hand (`Engine`),
//!   else through fancy-regex; text between two matches is a piece of its own, as the
//!   `Isolated` split behaviour makes it.
//! - A text is left to the tokenizer when the regex engine gives up on it or matches the empty
//!   string, when NFC is asked for and a stretch of it is not NFC already, or when one of its
//!   pieces is not cut whole by the regex on its own: tokenising such a piece alone would not
//!   be what the tokenizer does inside the text.

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use arrow_array::StringArray;
use hashbrown::HashMap;
use rayon::prelude::*;
use unicode_normalization::is_nfc;

use crate::error::{Error, Result};
use crate::parallel;
use crate::text::TextColumn;

/// Texts per parallel task, at least: each task numbers its own distinct pieces first, and
/// the tasks' lists are merged one after another, so tasks must not be tiny.
const MIN_TEXTS_PER_TASK: usize = 256;

/// The added tokens of a tokenizer, as its pre-tokenisation sees them.
#[derive(Debug, Default, Clone)]
pub struct AddedTokens {
    /// Matched in the raw text (`normalized=False`).
    pub raw: Vec<String>,
    /// Matched in the normalised text (`normalized=True`), given normalised.
    pub normalized: Vec<String>,
    /// Tokens whose matching is not reproduced (`lstrip`, `rstrip`, `single_word`): a text
    /// that holds one is left to the tokenizer.
    pub avoided: Vec<String>,
}

/// The last two alternatives of GPT-2's, Llama 3's and Qwen 2's pre-tokenisation regexes: a
/// whitespace run not followed by a non-space (so a word keeps the space before it), else any
/// whitespace run.
const TRAILING_WHITESPACE: &str = r"|\s+(?!\S)|\s+";

/// What runs a tokenizer's regex.
#[derive(Debug)]
enum Engine {
    /// A pattern ending in [`TRAILING_WHITESPACE`] whose other alternatives need no
    /// look-around: the regex crate's automata run it with a plain `\s+` at the end, and the
    /// look-ahead is applied to the whitespace runs that alternative matches. fancy-regex runs
    /// every pattern with a look-around in its backtracking VM, 3x slower on the whole text.
    Lookahead {
        /// The pattern with `|\s+` at the end.
        regex: regex::Regex,
        /// The other alternatives alone: a match of them takes precedence.
        earlier: regex::Regex,
    },
    /// Any other pattern.
    Fancy(fancy_regex::Regex),
}

impl Engine {
    fn new(pattern: &str) -> Result<Self> {
        if let Some(earlier) = pattern.strip_suffix(TRAILING_WHITESPACE) {
            if let (Ok(regex), Ok(earlier)) = (
                regex::Regex::new(&format!(r"{earlier}|\s+")),
                regex::Regex::new(earlier),
            ) {
                return Ok(Self::Lookahead { regex, earlier });
            }
        }
        fancy_regex::Regex::new(pattern)
            .map(Self::Fancy)
            .map_err(|err| Error::Argument {
                argument: "pattern",
                expected: "a regular expression",
                actual: format!("{pattern:?} ({err})"),
            })
    }

    /// Start and end of the first match in `text` at or after `at`; None when there is none,
    /// Err when the engine gives up (fancy-regex's backtracking limit).
    fn find_at(&self, text: &str, at: usize) -> std::result::Result<Option<(usize, usize)>, ()> {
        match self {
            Self::Fancy(regex) => regex
                .find_from_pos(text, at)
                .map(|m| m.map(|m| (m.start(), m.end())))
                .map_err(|_| ()),
            Self::Lookahead { regex, earlier } => {
                let Some(found) = regex.find_at(text, at) else {
                    return Ok(None);
                };
                let (start, end) = (found.start(), found.end());
                let whitespace = found.as_str().chars().all(char::is_whitespace);
                // Only `\s+` (greedy: the whole run) is to be corrected, and only when no
                // earlier alternative matches here (leftmost-first: they take precedence).
                if !whitespace
                    || end == text.len()
                    || earlier
                        .find_at(text, start)
                        .is_some_and(|e| e.start() == start)
                {
                    return Ok(Some((start, end)));
                }
                // Before a non-space, `\s+(?!\S)` backtracks to all but the run's last
                // character; a run of one fails it and stays whole through `\s+`.
                let last = found.as_str().chars().next_back().map_or(0, char::len_utf8);
                if end - start > last {
                    Ok(Some((start, end - last)))
                } else {
                    Ok(Some((start, end)))
                }
            }
        }
    }
}

/// A tokenizer's pre-tokenisation: its added tokens, its regex, and whether texts are NFC.
#[derive(Debug)]
pub struct Splitter {
    regex: Engine,
    raw: Option<AhoCorasick>,
    normalized: Option<AhoCorasick>,
    avoided: Option<AhoCorasick>,
    nfc: bool,
}

/// A leftmost-longest automaton over the non-empty `strings` (the tokenizer's match kind),
/// None when there are none.
fn automaton(strings: &[String]) -> Result<Option<AhoCorasick>> {
    let strings: Vec<&String> = strings.iter().filter(|s| !s.is_empty()).collect();
    if strings.is_empty() {
        return Ok(None);
    }
    AhoCorasickBuilder::new()
        .match_kind(MatchKind::LeftmostLongest)
        .build(strings)
        .map(Some)
        .map_err(|err| Error::Argument {
            argument: "added tokens",
            expected: "strings to search for",
            actual: err.to_string(),
        })
}

impl Splitter {
    /// A splitter for `pattern` (the tokenizer's regex, Oniguruma/Perl syntax) and `added`
    /// tokens, for a tokenizer that normalises to NFC (`nfc`) or not at all.
    pub fn new(pattern: &str, added: &AddedTokens, nfc: bool) -> Result<Self> {
        Ok(Self {
            regex: Engine::new(pattern)?,
            raw: automaton(&added.raw)?,
            normalized: automaton(&added.normalized)?,
            avoided: automaton(&added.avoided)?,
            nfc,
        })
    }

    /// Push the pieces of `text` onto `out`; false (and `out` as it was) when the text must be
    /// left to the tokenizer.
    fn cut<'t>(&self, text: &'t str, out: &mut Vec<&'t str>) -> bool {
        if self.avoided.as_ref().is_some_and(|a| a.is_match(text)) {
            return false;
        }
        let start_len = out.len();
        let ok = split_around(self.raw.as_ref(), text, out, |between, out| {
            // The tokenizer normalises what the raw added tokens leave, then looks for the
            // normalised ones in it; text that NFC would change is left to it.
            (!self.nfc || is_nfc(between))
                && split_around(self.normalized.as_ref(), between, out, |rest, out| {
                    self.cut_with_regex(rest, out)
                })
        });
        if !ok {
            out.truncate(start_len);
        }
        ok
    }

    /// The regex's pieces of `text` (matches and the text between them); false when the
    /// engine gives up or matches the empty string.
    fn cut_with_regex<'t>(&self, text: &'t str, out: &mut Vec<&'t str>) -> bool {
        let mut last = 0;
        loop {
            let (start, end) = match self.regex.find_at(text, last) {
                Ok(Some(found)) => found,
                Ok(None) => break,
                Err(()) => return false,
            };
            if start == end {
                return false;
            }
            if start > last {
                out.push(&text[last..start]);
            }
            out.push(&text[start..end]);
            last = end;
        }
        if last < text.len() {
            out.push(&text[last..]);
        }
        true
    }

    /// Whether the tokenizer, given `piece` alone, would keep it as one piece: it is an added
    /// token, or the regex matches all of it in one go.
    fn is_whole(&self, piece: &str) -> bool {
        let added = |a: &Option<AhoCorasick>| {
            a.as_ref()
                .and_then(|a| a.find(piece))
                .is_some_and(|m| m.start() == 0 && m.end() == piece.len())
        };
        added(&self.raw)
            || added(&self.normalized)
            || self.regex.find_at(piece, 0) == Ok(Some((0, piece.len())))
    }
}

/// Push each match of `tokens` in `text` onto `out` as a piece of its own, and hand the text
/// between matches to `between`; false as soon as `between` is.
fn split_around<'t>(
    tokens: Option<&AhoCorasick>,
    text: &'t str,
    out: &mut Vec<&'t str>,
    mut between: impl FnMut(&'t str, &mut Vec<&'t str>) -> bool,
) -> bool {
    let Some(tokens) = tokens else {
        return between(text, out);
    };
    let mut last = 0;
    for found in tokens.find_iter(text) {
        if found.start() > last && !between(&text[last..found.start()], out) {
            return false;
        }
        out.push(&text[found.start()..found.end()]);
        last = found.end();
    }
    last == text.len() || between(&text[last..], out)
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

    /// Llama 3's pre-tokenisation regex.
    const LLAMA3: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    /// Every match of `engine` in `text`, one after another.
    fn matches(engine: &Engine, text: &str) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        let mut at = 0;
        while let Ok(Some((start, end))) = engine.find_at(text, at) {
            out.push((start, end));
            at = end.max(start + 1);
            if at > text.len() {
                break;
            }
        }
        out
    }

    #[test]
    fn the_lookahead_shim_matches_fancy_regex() {
        // Random texts over the characters where these patterns differ: whitespace of every
        // kind in runs, letters (with case-folding ones), digits, punctuation, apostrophes.
        let alphabet = [
            " ",
            " ",
            "  ",
            "\n",
            "\r\n",
            "\t",
            "\u{a0}",
            "\u{3000}",
            "a",
            "Z",
            "\u{17f}",
            "\u{212a}",
            "\u{e9}",
            "\u{4e2d}",
            "1",
            "234",
            "'",
            "'s",
            "'LL",
            "!",
            "?!",
            ".",
            "\u{1f600}",
        ];
        let mut state = 11u64;
        for pattern in [GPT2, LLAMA3] {
            let shim = Engine::new(pattern).unwrap();
            assert!(matches!(shim, Engine::Lookahead { .. }));
            let fancy = Engine::Fancy(fancy_regex::Regex::new(pattern).unwrap());
            for _ in 0..20_000 {
                state = crate::pairs::splitmix64(state);
                let len = (state % 12) as usize;
                let text: String = (0..len)
                    .map(|_| {
                        state = crate::pairs::splitmix64(state);
                        alphabet[(state % alphabet.len() as u64) as usize]
                    })
                    .collect();
                assert_eq!(matches(&shim, &text), matches(&fancy, &text), "{text:?}");
            }
        }
        assert!(matches!(Engine::new(r"\p{N}+").unwrap(), Engine::Fancy(_)));
    }

    fn strings(strs: &[&str]) -> Vec<String> {
        strs.iter().map(|s| s.to_string()).collect()
    }

    fn split_with(texts: Vec<Option<&str>>, splitter: &Splitter) -> Pieces {
        let array: ArrayRef = Arc::new(StringArray::from(texts));
        let batch = RecordBatch::try_from_iter([("text", array)]).unwrap();
        let table = Table::new(batch.schema(), vec![batch]);
        let column = TextColumn::new(&table.column("text").unwrap()).unwrap();
        split_pieces(&column, splitter).unwrap()
    }

    fn split(texts: Vec<Option<&str>>, pattern: &str, avoided: &[&str]) -> Pieces {
        let added = AddedTokens {
            avoided: strings(avoided),
            ..Default::default()
        };
        split_with(texts, &Splitter::new(pattern, &added, false).unwrap())
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
        let splitter = Splitter::new(r"\p{N}+", &AddedTokens::default(), false).unwrap();
        assert!(splitter.cut("ab12cd3", &mut pieces));
        assert_eq!(pieces, vec!["ab", "12", "cd", "3"]);
    }

    #[test]
    fn added_tokens_are_pieces_of_their_own() {
        // Raw tokens first (leftmost-longest: "<|end|>" over "<|e"), then normalised ones in
        // the rest, then the regex.
        let added = AddedTokens {
            raw: strings(&["<|end|>", "<|e"]),
            normalized: strings(&["[x]"]),
            avoided: vec![],
        };
        let splitter = Splitter::new(GPT2, &added, false).unwrap();
        let out = split_with(vec![Some("hi<|end|>[x] a<|e")], &splitter);
        assert_eq!(
            texts_of(&out),
            vec![vec!["hi", "<|end|>", "[x]", " a", "<|e"]]
        );
        assert_eq!(out.unsplit, vec![false]);
    }

    #[test]
    fn text_that_nfc_would_change_is_left_to_the_tokenizer() {
        let splitter = Splitter::new(GPT2, &AddedTokens::default(), true).unwrap();
        let out = split_with(vec![Some("caf\u{e9}"), Some("cafe\u{301}")], &splitter);
        assert_eq!(out.unsplit, vec![false, true]);
    }

    #[test]
    fn leaves_avoided_tokens_empty_matches_and_nulls_to_the_tokenizer() {
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
