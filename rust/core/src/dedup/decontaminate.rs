//! Decontamination: rows that share a word n-gram with any reference row (benchmark prompts).
//!
//! Reference texts are normalised and cut into word `ngram`-grams; a reference shorter than
//! `ngram` words contributes its whole word sequence. A data row is contaminated when any of
//! its contiguous word sequences of those lengths equals (by its hash, [`super::shingles`]) one
//! of the reference's, and the result names every reference row it matched.

use hashbrown::HashMap;
use rayon::prelude::*;

use super::shingles::for_each_shingle;
use crate::accounting::Accounting;
use crate::error::{Error, Result};
use crate::normalize::{FlatText, Form};
use crate::parallel;
use crate::table::Table;
use crate::text::TextColumn;

/// Contaminated rows (ascending) and, for each, the reference rows it matched (ascending).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Contamination {
    /// Contaminated data rows.
    pub rows: Vec<u64>,
    /// For each contaminated row, the reference rows sharing an n-gram with it.
    pub references: Vec<Vec<u64>>,
}

fn prepared(table: &Table, name: &str, normalize: bool) -> Result<FlatText> {
    let text = TextColumn::with_messages(&table.column(name)?)?;
    let form = if normalize {
        Form::Normalized
    } else {
        Form::Words
    };
    Ok(FlatText::prepare(&text.strs(), form))
}

/// Find the rows of `data[column]` that share a word n-gram with `reference[reference_column]`,
/// and the accounting of `decontaminate` (every such row dropped as `contaminated`).
pub fn find_contamination(
    data: &Table,
    column: &str,
    reference: &Table,
    reference_column: &str,
    ngram: usize,
    normalize: bool,
) -> Result<(Contamination, Accounting)> {
    if ngram == 0 {
        return Err(Error::argument("ngram", "an integer >= 1", 0));
    }
    let texts = prepared(data, column, normalize)?;
    let refs = prepared(reference, reference_column, normalize)?;
    let (index, lengths) = parallel::install(|| index_reference(&refs, ngram));
    let references: Vec<Vec<u64>> = parallel::install(|| {
        (0..texts.len())
            .into_par_iter()
            .map_init(Vec::new, |words, row| {
                let mut hits: Vec<u64> = Vec::new();
                if let Some(text) = texts.get(row) {
                    for &n in &lengths {
                        for_each_shingle(text, n, 0, words, |hash| {
                            if let Some(rows) = index.get(&hash) {
                                hits.extend(rows.iter().map(|&r| r as u64));
                            }
                        });
                    }
                }
                hits.sort_unstable();
                hits.dedup();
                hits
            })
            .collect()
    });
    let mut found = Contamination::default();
    let mut matched = vec![false; refs.len()];
    for (row, hits) in references.into_iter().enumerate() {
        if !hits.is_empty() {
            hits.iter().for_each(|&r| matched[r as usize] = true);
            found.rows.push(row as u64);
            found.references.push(hits);
        }
    }
    let mut accounting = Accounting {
        rows_in: texts.len(),
        rows_used: texts.len() - found.rows.len(),
        ..Default::default()
    };
    accounting.drop_rows("contaminated", found.rows.len());
    accounting.counts.insert("reference_rows", refs.len());
    accounting.counts.insert(
        "reference_rows_matched",
        matched.iter().filter(|&&m| m).count(),
    );
    Ok((found, accounting))
}

/// The reference's n-gram hashes with the rows holding each, and the n-gram lengths to look
/// for in data rows (`ngram`, and the length of every shorter reference).
fn index_reference(refs: &FlatText, ngram: usize) -> (HashMap<u64, Vec<u32>>, Vec<usize>) {
    let hashes: Vec<(u64, u32)> = (0..refs.len())
        .into_par_iter()
        .map_init(Vec::new, |words, row| {
            let mut out = Vec::new();
            if let Some(text) = refs.get(row) {
                for_each_shingle(text, ngram, 0, words, |hash| out.push((hash, row as u32)));
            }
            out
        })
        .flatten_iter()
        .collect();
    let mut index: HashMap<u64, Vec<u32>> = HashMap::new();
    for (hash, row) in hashes {
        let rows = index.entry(hash).or_default();
        if rows.last() != Some(&row) {
            rows.push(row);
        }
    }
    let mut lengths = vec![ngram];
    for row in 0..refs.len() {
        if let Some(text) = refs.get(row).filter(|t| !t.is_empty()) {
            let words = text.bytes().filter(|&b| b == b' ').count() + 1;
            if words < ngram {
                lengths.push(words);
            }
        }
    }
    lengths.sort_unstable();
    lengths.dedup();
    (index, lengths)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use arrow_array::{ArrayRef, RecordBatch, StringArray};

    fn table(name: &str, values: Vec<Option<&str>>) -> Table {
        let batch =
            RecordBatch::try_from_iter([(name, Arc::new(StringArray::from(values)) as ArrayRef)])
                .unwrap();
        Table::new(batch.schema(), vec![batch])
    }

    #[test]
    fn rows_sharing_an_ngram_are_found_with_their_references() {
        let data = table(
            "prompt",
            vec![
                Some("Please solve: what is two plus two, exactly?"),
                Some("unrelated words here"),
                None,
                Some("say hello world now"),
            ],
        );
        let reference = table(
            "q",
            vec![Some("What is two plus TWO"), Some("hello world"), None],
        );
        let (found, acc) = find_contamination(&data, "prompt", &reference, "q", 3, true).unwrap();
        assert_eq!(found.rows, vec![0, 3]);
        assert_eq!(found.references, vec![vec![0], vec![1]]);
        assert_eq!(acc.dropped["contaminated"], 2);
        assert_eq!(acc.counts["reference_rows_matched"], 2);
    }
}
