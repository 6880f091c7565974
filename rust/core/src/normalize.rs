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

/// What the ASCII path does with a byte: [`DROP`] it, treat it as whitespace ([`SPACE`]), or
/// write the table's byte. Markers are above 0x7f, so no ASCII output byte collides with them.
const DROP: u8 = 0xff;
const SPACE: u8 = 0xfe;

/// The ASCII byte table of [`clean_into`]: with `fold`, uppercase becomes lowercase and
/// punctuation and symbols are dropped. Whitespace is what Unicode `White_Space` says.
const fn ascii_table(fold: bool) -> [u8; 128] {
    let mut table = [0u8; 128];
    let mut b = 0;
    while b < 128 {
        let byte = b as u8;
        table[b] = if byte == b' ' || (byte >= 0x09 && byte <= 0x0d) {
            SPACE
        } else if fold && byte.is_ascii_punctuation() {
            DROP
        } else if fold {
            byte.to_ascii_lowercase()
        } else {
            byte
        };
        b += 1;
    }
    table
}

const FOLDED: [u8; 128] = ascii_table(true);
const UNFOLDED: [u8; 128] = ascii_table(false);

/// Append character `c` to `out`, or remember a pending space when it is whitespace and
/// something was written since `start`.
#[inline]
fn put(c: char, space: &mut bool, out: &mut Vec<u8>, start: usize) {
    if c.is_whitespace() {
        *space = out.len() > start;
    } else {
        if *space {
            out.push(b' ');
            *space = false;
        }
        out.extend_from_slice(c.encode_utf8(&mut [0u8; 4]).as_bytes());
    }
}

/// Eight ASCII bytes at a time: the byte-parallel ("SWAR") test and transform of the common
/// case, a block of letters and digits with single spaces between words.
mod block {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;

    /// High bit of every byte `>= lo`; the bytes must be ASCII (no carry crosses a byte).
    #[inline]
    fn at_least(x: u64, lo: u8) -> u64 {
        x.wrapping_add((128 - lo as u64) * ONES) & HIGH
    }

    /// High bit of every byte in `lo..=hi`.
    #[inline]
    fn within(x: u64, lo: u8, hi: u8) -> u64 {
        at_least(x, lo) & !at_least(x, hi + 1)
    }

    /// A block that needs no per-byte work: its bytes after folding, and which are spaces.
    pub struct Clean {
        pub bytes: u64,
        pub spaces: u64,
    }

    /// `x` (8 text bytes, little-endian) cleaned, when every byte is a space or kept as it is
    /// (with `fold`: a letter, lowercased, or a digit; without: any printable character) and
    /// no two spaces are adjacent. None sends the block to the byte-by-byte path.
    #[inline]
    pub fn clean(x: u64, fold: bool) -> Option<Clean> {
        if x & HIGH != 0 {
            return None;
        }
        let spaces = within(x, b' ', b' ');
        let (kept, upper) = if fold {
            let upper = within(x, b'A', b'Z');
            let kept = within(x, b'a', b'z') | upper | within(x, b'0', b'9');
            (kept, upper)
        } else {
            (within(x, b'!', b'~'), 0)
        };
        if (kept | spaces) != HIGH || spaces & (spaces << 8) != 0 {
            return None;
        }
        // Upper-case ASCII letters differ from lower-case ones in bit 5 only.
        Some(Clean {
            bytes: x | (upper >> 2),
            spaces,
        })
    }
}

/// Append `text` to `out` with whitespace runs collapsed into one space (none at the ends
/// of what this call appends, which must start on an empty `out` or after a text boundary);
/// with `fold`, also lowercase it and drop punctuation and symbols. Blocks of plain words go
/// eight bytes at a time ([`block`]), other ASCII bytes through a lookup table; only other
/// characters are decoded.
fn clean_into(text: &str, fold: bool, out: &mut String) {
    let table = if fold { &FOLDED } else { &UNFOLDED };
    let start = out.len();
    // SAFETY: only ASCII bytes and whole UTF-8 encodings of chars are appended below, so
    // `out` stays valid UTF-8 at every point, even if a panic interrupts the loop.
    let out = unsafe { out.as_mut_vec() };
    out.reserve(text.len());
    let mut space = false;
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if let Some(chunk) = bytes.get(i..i + 8) {
            let x = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
            // A leading space may only follow written text with no space pending.
            let fits = |b: &block::Clean| b.spaces & 0x80 == 0 || (!space && out.len() > start);
            if let Some(b) = block::clean(x, fold).filter(fits) {
                if space {
                    out.push(b' ');
                }
                // A trailing space stays pending: the text may end or more whitespace follow.
                space = b.spaces >> 63 == 1;
                out.extend_from_slice(&b.bytes.to_le_bytes()[..8 - space as usize]);
                i += 8;
                continue;
            }
        }
        let b = bytes[i];
        if b < 0x80 {
            i += 1;
            match table[b as usize] {
                DROP => {}
                SPACE => space = out.len() > start,
                byte => {
                    if space {
                        out.push(b' ');
                        space = false;
                    }
                    out.push(byte);
                }
            }
            continue;
        }
        let c = text[i..].chars().next().expect("a character starts here");
        i += c.len_utf8();
        if !fold {
            put(c, &mut space, out, start);
            continue;
        }
        for lower in c.to_lowercase() {
            if !is_punctuation_or_symbol(lower) {
                put(lower, &mut space, out, start);
            }
        }
    }
}

/// Append `text` prepared as `form` to `out`.
fn append_prepared(text: &str, form: Form, out: &mut String) {
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

/// Write `text` prepared as `form` into `out` (cleared first).
pub fn prepare_into(text: &str, form: Form, out: &mut String) {
    out.clear();
    append_prepared(text, form, out);
}

/// `text` normalised as described in the module documentation.
pub fn normalize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    prepare_into(text, Form::Normalized, &mut out);
    out
}

/// Texts per part of a [`FlatText`]: the unit of parallel work.
const PART_TEXTS: usize = 512;

/// Prepared texts of one part, back to back: text `i` is `data[offsets[i]..offsets[i + 1]]`.
#[derive(Debug, Clone, Default)]
struct Part {
    data: String,
    offsets: Vec<usize>,
    valid: Vec<bool>,
}

/// Texts prepared into flat buffers, [`PART_TEXTS`] texts per buffer: each part is written
/// by one worker straight into its own buffer, and kept as it is (no second copy into one
/// buffer, whose fresh pages would all have to be zeroed and touched again).
#[derive(Debug, Clone, Default)]
pub struct FlatText {
    parts: Vec<Part>,
    len: usize,
}

impl FlatText {
    /// Prepare `texts` (None for null) as `form`, in parallel on the pool.
    pub fn prepare(texts: &[Option<&str>], form: Form) -> Self {
        let parts = parallel::install(|| {
            texts
                .par_chunks(PART_TEXTS)
                .map(|chunk| {
                    let bytes = chunk.iter().flatten().map(|t| t.len()).sum();
                    let mut part = Part {
                        data: String::with_capacity(bytes),
                        offsets: Vec::with_capacity(chunk.len() + 1),
                        valid: Vec::with_capacity(chunk.len()),
                    };
                    part.offsets.push(0);
                    for text in chunk {
                        if let Some(text) = text {
                            append_prepared(text, form, &mut part.data);
                        }
                        part.valid.push(text.is_some());
                        part.offsets.push(part.data.len());
                    }
                    part
                })
                .collect()
        });
        Self {
            parts,
            len: texts.len(),
        }
    }

    /// Number of texts.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no texts.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Text `i`, None when it was null.
    #[inline]
    pub fn get(&self, i: usize) -> Option<&str> {
        let part = &self.parts[i / PART_TEXTS];
        let i = i % PART_TEXTS;
        part.valid[i].then(|| &part.data[part.offsets[i]..part.offsets[i + 1]])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    /// `clean_into` written plainly, one character at a time.
    fn clean_reference(text: &str, fold: bool) -> String {
        let (mut out, mut space) = (String::new(), false);
        for c in text.chars() {
            let chars: Vec<char> = if fold {
                c.to_lowercase()
                    .filter(|&l| !is_punctuation_or_symbol(l))
                    .collect()
            } else {
                vec![c]
            };
            for c in chars {
                if c.is_whitespace() {
                    space = !out.is_empty();
                } else {
                    if space {
                        out.push(' ');
                        space = false;
                    }
                    out.push(c);
                }
            }
        }
        out
    }

    #[test]
    fn the_block_path_equals_the_character_by_character_rules() {
        let alphabet: Vec<char> = "aaaaabcxyzAZQ09 ,.!~\t\n\u{7f}\u{1}é Σ—  "
            .chars()
            .collect();
        let mut state = 11u64;
        for case in 0..20_000 {
            let len = case % 48;
            let text: String = (0..len)
                .map(|_| {
                    state = crate::pairs::splitmix64(state);
                    alphabet[(state % alphabet.len() as u64) as usize]
                })
                .collect();
            for fold in [false, true] {
                let mut out = String::from("prev");
                clean_into(&text, fold, &mut out);
                assert_eq!(
                    out,
                    format!("prev{}", clean_reference(&text, fold)),
                    "{text:?}"
                );
            }
        }
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
    fn flat_text_keeps_nulls_and_order() {
        let texts = [Some("A!"), None, Some("b  c")];
        let flat = FlatText::prepare(&texts, Form::Normalized);
        assert_eq!(flat.len(), 3);
        assert_eq!(flat.get(0), Some("a"));
        assert_eq!(flat.get(1), None);
        assert_eq!(flat.get(2), Some("b c"));
    }
}
