//! Text normalisation for deduplication and decontamination: one function, used everywhere.
//!
//! `normalize` (docs/dedup.md) is, in this order: Unicode NFKC; lowercase (each character's
//! full lowercase mapping, without context such as the Greek final sigma); punctuation and
//! symbols removed (every character of Unicode general category `P*` or `S*`); whitespace
//! (Unicode `White_Space`) runs collapsed into one ASCII space, none at either end. Words are
//! then the space-separated pieces, so a run of `n` words is a contiguous slice of the text.

use rayon::prelude::*;
use unicode_general_category::{get_general_category, GeneralCategory as C};
use unicode_normalization::{is_nfkc_quick, IsNormalized, UnicodeNormalization};

use crate::parallel;

/// How a text is prepared before it is compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// The text as it is (exact dedup with `normalize=False`).
    Raw,
    /// Whitespace runs collapsed, nothing else changed (word n-grams with `normalize=False`).
    Words,
    /// Fully normalised: NFKC, lowercase, punctuation and symbols removed, whitespace collapsed.
    Normalized,
}

fn is_punctuation_or_symbol(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_punctuation();
    }
    matches!(
        get_general_category(c),
        C::ConnectorPunctuation
            | C::DashPunctuation
            | C::OpenPunctuation
            | C::ClosePunctuation
            | C::InitialPunctuation
            | C::FinalPunctuation
            | C::OtherPunctuation
            | C::MathSymbol
            | C::CurrencySymbol
            | C::ModifierSymbol
            | C::OtherSymbol
    )
}

/// Whether an ASCII byte is Unicode `White_Space` (what `char::is_whitespace` says).
#[inline]
fn is_ascii_space(b: u8) -> bool {
    b == b' ' || (0x09..=0x0d).contains(&b)
}

/// Append `c` to `out`, or remember a pending space when it is whitespace.
#[inline]
fn put(c: char, space: &mut bool, out: &mut String) {
    if c.is_whitespace() {
        *space = !out.is_empty();
    } else {
        if *space {
            out.push(' ');
            *space = false;
        }
        out.push(c);
    }
}

/// Append `text` to `out` with whitespace runs collapsed into one space (none at the ends);
/// with `fold`, also lowercase it and drop punctuation and symbols. ASCII bytes take a
/// byte-level path; only other characters are decoded.
fn clean_into(text: &str, fold: bool, out: &mut String) {
    let mut space = false;
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b < 0x80 {
            i += 1;
            if fold && b.is_ascii_punctuation() {
                continue;
            }
            if is_ascii_space(b) {
                space = !out.is_empty();
                continue;
            }
            if space {
                out.push(' ');
                space = false;
            }
            out.push(if fold { b.to_ascii_lowercase() } else { b } as char);
            continue;
        }
        let c = text[i..].chars().next().expect("a character starts here");
        i += c.len_utf8();
        if fold {
            for lower in c.to_lowercase() {
                if !is_punctuation_or_symbol(lower) {
                    put(lower, &mut space, out);
                }
            }
        } else {
            put(c, &mut space, out);
        }
    }
}

/// Write `text` prepared as `form` into `out` (cleared first).
pub fn prepare_into(text: &str, form: Form, out: &mut String) {
    out.clear();
    match form {
        Form::Raw => out.push_str(text),
        Form::Words => clean_into(text, false, out),
        // ASCII and most other text is NFKC already; the quick check saves the composition.
        Form::Normalized if text.is_ascii() || is_nfkc_quick(text.chars()) == IsNormalized::Yes => {
            clean_into(text, true, out)
        }
        Form::Normalized => clean_into(&text.nfkc().collect::<String>(), true, out),
    }
}

/// `text` normalised as described in the module documentation.
pub fn normalize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    prepare_into(text, Form::Normalized, &mut out);
    out
}

/// Texts prepared into one flat buffer: text `i` is `data[offsets[i]..offsets[i + 1]]`.
#[derive(Debug, Clone, Default)]
pub struct FlatText {
    data: String,
    offsets: Vec<usize>,
    valid: Vec<bool>,
}

impl FlatText {
    /// Prepare `texts` (None for null) as `form`, in parallel on the pool.
    pub fn prepare(texts: &[Option<&str>], form: Form) -> Self {
        const CHUNK: usize = 512;
        let parts: Vec<FlatText> = parallel::install(|| {
            texts
                .par_chunks(CHUNK)
                .map(|chunk| {
                    let mut part = FlatText {
                        data: String::new(),
                        offsets: vec![0],
                        valid: Vec::with_capacity(chunk.len()),
                    };
                    let mut scratch = String::new();
                    for text in chunk {
                        if let Some(text) = text {
                            prepare_into(text, form, &mut scratch);
                            part.data.push_str(&scratch);
                        }
                        part.valid.push(text.is_some());
                        part.offsets.push(part.data.len());
                    }
                    part
                })
                .collect()
        });
        let mut flat = FlatText {
            data: String::with_capacity(parts.iter().map(|p| p.data.len()).sum()),
            offsets: Vec::with_capacity(texts.len() + 1),
            valid: Vec::with_capacity(texts.len()),
        };
        flat.offsets.push(0);
        for part in parts {
            let base = flat.data.len();
            flat.data.push_str(&part.data);
            flat.offsets
                .extend(part.offsets[1..].iter().map(|&o| o + base));
            flat.valid.extend(part.valid);
        }
        flat
    }

    /// Number of texts.
    pub fn len(&self) -> usize {
        self.valid.len()
    }

    /// Whether there are no texts.
    pub fn is_empty(&self) -> bool {
        self.valid.is_empty()
    }

    /// Text `i`, None when it was null.
    #[inline]
    pub fn get(&self, i: usize) -> Option<&str> {
        self.valid[i].then(|| &self.data[self.offsets[i]..self.offsets[i + 1]])
    }
}

/// Call `each` with every word n-gram of a prepared text (words separated by single spaces):
/// the `n` words from every position, or the whole text once when it has fewer than `n`
/// words. An empty text has no n-grams. `starts` is scratch space, reused between calls.
pub fn for_each_ngram(text: &str, n: usize, starts: &mut Vec<usize>, mut each: impl FnMut(&str)) {
    if text.is_empty() {
        return;
    }
    starts.clear();
    starts.push(0);
    starts.extend(space_positions(text.as_bytes()).map(|i| i + 1));
    let words = starts.len();
    if words < n {
        each(text);
        return;
    }
    let end_of = |w: usize| {
        if w + 1 < words {
            starts[w + 1] - 1
        } else {
            text.len()
        }
    };
    for first in 0..=words - n {
        each(&text[starts[first]..end_of(first + n - 1)]);
    }
}

fn space_positions(bytes: &[u8]) -> impl Iterator<Item = usize> + '_ {
    bytes
        .iter()
        .enumerate()
        .filter_map(|(i, &b)| (b == b' ').then_some(i))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ngrams(text: &str, n: usize) -> Vec<String> {
        let mut out = Vec::new();
        for_each_ngram(text, n, &mut Vec::new(), |g| out.push(g.to_string()));
        out
    }

    #[test]
    fn normalisation_follows_the_documented_steps() {
        assert_eq!(normalize("  Hello,\tWORLD!!  "), "hello world");
        assert_eq!(normalize("ﬁne Ｆｕｌｌ"), "fine full"); // NFKC ligature and fullwidth
        assert_eq!(normalize("Ça va? — «oui»"), "ça va oui");
        assert_eq!(normalize("a+b = $5 😀"), "ab 5");
        assert_eq!(normalize("don't"), "dont");
        assert_eq!(normalize("ΣΑΣ"), "σασ"); // no final-sigma context
        assert_eq!(normalize("a\u{3000}b\u{00a0}c"), "a b c");
        assert_eq!(normalize(" !! "), "");
    }

    #[test]
    fn words_form_only_collapses_whitespace() {
        let mut out = String::new();
        prepare_into(" A,\n\n b ", Form::Words, &mut out);
        assert_eq!(out, "A, b");
        prepare_into(" A ", Form::Raw, &mut out);
        assert_eq!(out, " A ");
    }

    #[test]
    fn ngrams_slide_over_words_or_take_the_whole_short_text() {
        assert_eq!(ngrams("a b c d", 2), vec!["a b", "b c", "c d"]);
        assert_eq!(ngrams("a b c", 3), vec!["a b c"]);
        assert_eq!(ngrams("a b", 5), vec!["a b"]);
        assert!(ngrams("", 5).is_empty());
        assert_eq!(ngrams("ab", 1), vec!["ab"]);
    }

    #[test]
    fn flat_text_keeps_nulls_and_order() {
        let texts = [Some("A!"), None, Some("b  c")];
        let flat = FlatText::prepare(&texts, Form::Normalized);
        assert_eq!(flat.len(), 3);
        assert_eq!(flat.get(0), Some("a"));
        assert_eq!(flat.get(1), None);
        assert_eq!(flat.get(2), Some("b c"));
    }
}
