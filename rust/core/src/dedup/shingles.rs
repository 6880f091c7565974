//! Word n-gram shingles of prepared text, as 64-bit hashes.
//!
//! A prepared text (`crate::normalize`) has its words separated by single spaces. Its shingles
//! are the runs of `n` consecutive words, or the whole text once when it has fewer than `n`
//! words; an empty text has none. MinHash sketches and decontamination both use this one
//! definition.
//!
//! Hashing every n-gram's bytes would hash each word `n` times. Instead every word is hashed
//! once with xxh3, and a window's hash is a polynomial in its word hashes (mod 2^64, odd
//! base), updated in O(1) as the window slides, then finished with the splitmix64 mixer,
//! which spreads it over all 64 bits (MinHash takes a bin from the high bits and a value from
//! the low ones). The seed and the window's length enter the finisher, so a short text's
//! single window never equals an `n`-word window, and each seed gives another hash function.

use twox_hash::XxHash3_64;

use crate::pairs::splitmix64;

/// Odd multiplier of the polynomial window hash (a 64-bit prime).
const BASE: u64 = 0x9FB2_1C65_1E98_DF25;

/// Call `each` with the hash of every word `n`-gram of the prepared `text` (see the module
/// documentation), in order. `words` is scratch space, reused between calls.
pub fn for_each_shingle(
    text: &str,
    n: usize,
    seed: u64,
    words: &mut Vec<u64>,
    mut each: impl FnMut(u64),
) {
    if text.is_empty() || n == 0 {
        return;
    }
    words.clear();
    // A plain byte scan: words are short, so a memchr-based `split` costs more per word.
    let bytes = text.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if b == b' ' {
            words.push(XxHash3_64::oneshot(&bytes[start..i]));
            start = i + 1;
        }
    }
    words.push(XxHash3_64::oneshot(&bytes[start..]));
    let window = n.min(words.len());
    let finish = |hash: u64| splitmix64(hash ^ seed ^ (window as u64).wrapping_mul(BASE));
    // BASE^(window - 1): the weight of the word leaving the window.
    let leaving = (1..window).fold(1u64, |power, _| power.wrapping_mul(BASE));
    let mut hash = words[..window]
        .iter()
        .fold(0u64, |h, &w| h.wrapping_mul(BASE).wrapping_add(w));
    each(finish(hash));
    for (&old, &new) in words.iter().zip(&words[window..]) {
        hash = hash
            .wrapping_sub(old.wrapping_mul(leaving))
            .wrapping_mul(BASE)
            .wrapping_add(new);
        each(finish(hash));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shingles(text: &str, n: usize, seed: u64) -> Vec<u64> {
        let mut out = Vec::new();
        for_each_shingle(text, n, seed, &mut Vec::new(), |h| out.push(h));
        out
    }

    /// The window hash computed from scratch for the words `text`.
    fn direct(text: &str, seed: u64) -> u64 {
        let words: Vec<&str> = text.split(' ').collect();
        let hash = words.iter().fold(0u64, |h, w| {
            h.wrapping_mul(BASE)
                .wrapping_add(XxHash3_64::oneshot(w.as_bytes()))
        });
        splitmix64(hash ^ seed ^ (words.len() as u64).wrapping_mul(BASE))
    }

    #[test]
    fn windows_slide_over_words_or_take_the_whole_short_text() {
        let seed = 7;
        assert_eq!(
            shingles("a b c d", 2, seed),
            vec![
                direct("a b", seed),
                direct("b c", seed),
                direct("c d", seed)
            ]
        );
        assert_eq!(shingles("a b c", 3, seed), vec![direct("a b c", seed)]);
        assert_eq!(shingles("a b", 5, seed), vec![direct("a b", seed)]);
        assert_eq!(shingles("ab", 1, seed), vec![direct("ab", seed)]);
        assert!(shingles("", 5, seed).is_empty());
    }

    #[test]
    fn the_rolling_hash_equals_the_window_hash_on_long_texts() {
        let text: Vec<String> = (0..40).map(|i| format!("w{}", i % 7)).collect();
        let text = text.join(" ");
        let words: Vec<&str> = text.split(' ').collect();
        let expected: Vec<u64> = words.windows(5).map(|w| direct(&w.join(" "), 3)).collect();
        assert_eq!(shingles(&text, 5, 3), expected);
    }

    #[test]
    fn word_order_seed_and_length_change_the_hash() {
        assert_ne!(shingles("a b", 2, 0), shingles("b a", 2, 0));
        assert_ne!(shingles("a b", 2, 0), shingles("a b", 2, 1));
        // "a b" alone (short text, window 2) vs the 2-gram "a b" of a 3-word text with n=2
        // are equal: the same words in the same window length.
        assert_eq!(shingles("a b", 3, 0), shingles("a b c", 2, 0)[..1]);
        assert_ne!(shingles("a b", 3, 0), shingles("a b c", 3, 0));
    }
}
