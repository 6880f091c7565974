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

/// `base^exponent` modulo 2^64, by squaring: `n` may be any `usize` (a loop of `n - 1`
/// multiplications hung on `ngram=2**64 - 1`; found by fuzz/ops.py).
fn wrapping_power(mut base: u64, mut exponent: u64) -> u64 {
    let mut power = 1u64;
    while exponent > 0 {
        if exponent & 1 == 1 {
            power = power.wrapping_mul(base);
        }
        base = base.wrapping_mul(base);
        exponent >>= 1;
    }
    power
}

/// Call `each` with the hash of every word `n`-gram of the prepared `text` (see the module
/// documentation), in order. `words` is scratch space, reused between calls: it holds the
/// hashes of the window's words only (a ring of `n`), not of every word, so a 1 GB text of
/// one-letter words needs `8 * n` bytes here rather than 4 GB.
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
    let finish =
        |hash: u64, window: usize| splitmix64(hash ^ seed ^ (window as u64).wrapping_mul(BASE));
    // BASE^(n - 1): the weight of the word leaving a full window.
    let leaving = wrapping_power(BASE, n as u64 - 1);
    let mut hash = 0u64;
    // Ring position of the oldest word once the window is full.
    let mut oldest = 0;
    let mut add = |word: &[u8]| {
        let new = XxHash3_64::oneshot(word);
        if words.len() < n {
            hash = hash.wrapping_mul(BASE).wrapping_add(new);
            words.push(new);
            if words.len() == n {
                each(finish(hash, n));
            }
            return;
        }
        let old = std::mem::replace(&mut words[oldest], new);
        oldest = if oldest + 1 == n { 0 } else { oldest + 1 };
        hash = hash
            .wrapping_sub(old.wrapping_mul(leaving))
            .wrapping_mul(BASE)
            .wrapping_add(new);
        each(finish(hash, n));
    };
    // A plain byte scan: words are short, so a memchr-based `split` costs more per word.
    let bytes = text.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if b == b' ' {
            add(&bytes[start..i]);
            start = i + 1;
        }
    }
    add(&bytes[start..]);
    // Fewer than `n` words: the whole text is the one shingle, hashed with its own length.
    if words.len() < n {
        each(finish(hash, words.len()));
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

    #[test]
    fn the_leaving_weight_is_a_power_for_any_window() {
        for n in 0..40u64 {
            let folded = (0..n).fold(1u64, |p, _| p.wrapping_mul(BASE));
            assert_eq!(wrapping_power(BASE, n), folded);
        }
        // A window as long as usize allows: the whole text is the one shingle, at once.
        assert_eq!(shingles("a b c", usize::MAX, 0), shingles("a b c", 4, 0));
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
