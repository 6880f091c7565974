//! Checks of JSON-lines bytes before pyarrow parses them.
//!
//! pyarrow's JSON parser dereferences a null pointer when a parse block starts with a
//! top-level `null` (apache/arrow#47409; a segfault found by fuzz/readers.py). Where blocks
//! start depends on the block size, and a null line is no record anyway, so prefkit refuses
//! every file with such a line before pyarrow sees it.

/// Byte offset of the start of the first line whose first value is a top-level `null`
/// (after spaces, tabs and carriage returns), or None. One SIMD scan for newlines.
pub fn first_null_line(bytes: &[u8]) -> Option<usize> {
    let line_starts = std::iter::once(0).chain(memchr::memchr_iter(b'\n', bytes).map(|i| i + 1));
    line_starts.into_iter().find(|&start| {
        let line = &bytes[start..];
        let indent = line
            .iter()
            .position(|b| !matches!(b, b' ' | b'\t' | b'\r'))
            .unwrap_or(line.len());
        line[indent..].starts_with(b"null")
    })
}

#[cfg(test)]
mod tests {
    use super::first_null_line;

    #[test]
    fn finds_a_null_at_the_start_of_any_line_only() {
        assert_eq!(first_null_line(b"null"), Some(0));
        assert_eq!(first_null_line(b" \t null}, {"), Some(0));
        assert_eq!(first_null_line(b"{\"a\": null}\n\n\r null\n"), Some(13));
        assert_eq!(first_null_line(b"{\"a\": null}\n{} null\n\"null\"\n"), None);
        assert_eq!(first_null_line(b""), None);
        assert_eq!(first_null_line(b"\n\n"), None);
    }
}
