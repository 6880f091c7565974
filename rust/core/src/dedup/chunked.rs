//! MinHash-LSH clustering in pieces, for inputs larger than memory (`prefkit.stream`).
//!
//! [`cluster`](super::cluster) does every step on one table. Out of core, Python drives the
//! same steps over chunks of rows and hash-partitioned spill files, with these pieces:
//!
//! 1. [`chunk_keys`]: for every row of a chunk, the identity of its compared values
//!    ([`unit_hashes`]) and, for the rows that have shingles and are the first of their value
//!    in the chunk, the LSH key of every band ([`lsh::band_key`]);
//! 2. [`lsh::candidate_pairs`] over one partition of band keys, for the rows that are the
//!    first of their value in the whole input;
//! 3. [`chunk_signatures`] of the candidate rows, written to a spill file in row order, and
//!    [`verify_spilled`] of the candidate pairs against the threshold;
//! 4. [`UnionFind`](super::clusters::UnionFind) over the verified pairs.
//!
//! Rows are units (no `group`), and the result is the in-memory one: the same sketches, the
//! same candidates (documents in a band bucket are ordered by row, as in memory), the same
//! similarity test.

use std::fs::File;
use std::os::unix::fs::FileExt;

use rayon::prelude::*;

use super::exact::{exact_roots, unit_hashes, UnitValues};
use super::lsh;
use super::minhash::Signatures;
use super::{form, sources, DedupOptions, Method};
use crate::error::Result;
use crate::parallel;
use crate::table::Table;

/// What one chunk contributes to clustering.
#[derive(Debug, Clone)]
pub struct ChunkKeys {
    /// xxh3-128 of every row's prepared values: rows with equal values have equal hashes.
    pub exact: Vec<u128>,
    /// Whether the row was sketched: it has shingles and is the first of its value in the
    /// chunk (a later equal row is never the first of its value in the input).
    pub sketched: Vec<bool>,
    /// `bands` keys per row, row-major; zeros for rows not sketched; empty for exact dedup.
    pub band_keys: Vec<u64>,
    /// Bands per sketch (0 for exact dedup).
    pub bands: usize,
}

/// The exact identity and the LSH band keys of every row of `table` (rows are units).
pub fn chunk_keys(table: &Table, options: &DedupOptions) -> Result<ChunkKeys> {
    options.validate()?;
    let sources = sources(table, options)?;
    let n = table.num_rows();
    let rows: Vec<usize> = (0..n).collect();
    let values: Vec<UnitValues<'_>> = sources
        .iter()
        .map(|source| UnitValues::new(source, &rows, form(options)))
        .collect();
    let exact = unit_hashes(&values, n);
    if options.method == Method::Exact {
        return Ok(ChunkKeys {
            exact,
            sketched: vec![false; n],
            band_keys: Vec::new(),
            bands: 0,
        });
    }
    let (bands, band_rows) = lsh::layout(options.num_perm, options.threshold, options.bands)?;
    let roots = exact_roots(&values, n);
    let distinct: Vec<u32> = (0..n as u32).filter(|&u| roots[u as usize] == u).collect();
    let sigs = Signatures::build(
        &values,
        &distinct,
        options.ngram,
        options.num_perm,
        options.seed,
    );
    let mut sketched = vec![false; n];
    let mut band_keys = vec![0u64; n * bands];
    for (d, &row) in distinct.iter().enumerate() {
        let row = row as usize;
        if sigs.present[d] {
            sketched[row] = true;
            for (band, key) in band_keys[row * bands..(row + 1) * bands]
                .iter_mut()
                .enumerate()
            {
                *key = lsh::band_key(sigs.of(d), band, band_rows);
            }
        }
    }
    Ok(ChunkKeys {
        exact,
        sketched,
        band_keys,
        bands,
    })
}

/// The sketches of every row of `table` (the candidate rows of a chunk), as [`chunk_keys`]
/// computed them.
pub fn chunk_signatures(table: &Table, options: &DedupOptions) -> Result<Signatures> {
    options.validate()?;
    let sources = sources(table, options)?;
    let n = table.num_rows();
    let rows: Vec<usize> = (0..n).collect();
    let values: Vec<UnitValues<'_>> = sources
        .iter()
        .map(|source| UnitValues::new(source, &rows, form(options)))
        .collect();
    let all: Vec<u32> = (0..n as u32).collect();
    Ok(Signatures::build(
        &values,
        &all,
        options.ngram,
        options.num_perm,
        options.seed,
    ))
}

/// Whether each pair `(a, b)` of sketches stored in `file` (sketch `i` is the `num_perm`
/// little-endian u32 values at byte `i * num_perm * 4`) has a similarity of at least
/// `threshold`. Sketches are read with positioned reads, not mapped, so that only the pairs
/// at hand occupy memory; consecutive pairs sharing `a` read it once.
pub fn verify_spilled(
    file: &File,
    num_perm: usize,
    pairs: &[(u64, u64)],
    threshold: f64,
) -> Result<Vec<bool>> {
    const PAIRS_PER_TASK: usize = 4096;
    let width = (num_perm * 4) as u64;
    let read = |index: u64, bytes: &mut [u8], values: &mut [u32]| -> std::io::Result<()> {
        file.read_exact_at(bytes, index * width)?;
        for (value, chunk) in values.iter_mut().zip(bytes.chunks_exact(4)) {
            *value = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        }
        Ok(())
    };
    let parts: Vec<std::io::Result<Vec<bool>>> = parallel::install(|| {
        pairs
            .par_chunks(PAIRS_PER_TASK)
            .map(|task| {
                let mut bytes = vec![0u8; num_perm * 4];
                let (mut a, mut b) = (vec![0u32; num_perm], vec![0u32; num_perm]);
                let mut loaded = None;
                let mut similar = Vec::with_capacity(task.len());
                for &(first, second) in task {
                    if loaded != Some(first) {
                        read(first, &mut bytes, &mut a)?;
                        loaded = Some(first);
                    }
                    read(second, &mut bytes, &mut b)?;
                    similar.push(lsh::similarity(&a, &b) >= threshold);
                }
                Ok(similar)
            })
            .collect()
    });
    let mut similar = Vec::with_capacity(pairs.len());
    for part in parts {
        similar.extend(part?);
    }
    Ok(similar)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::Arc;

    use arrow_array::{ArrayRef, RecordBatch, StringArray};

    use crate::dedup::clusters::UnionFind;
    use crate::dedup::find_duplicates;

    fn table(texts: &[Option<&str>]) -> Table {
        let batch = RecordBatch::try_from_iter([(
            "text",
            Arc::new(StringArray::from(texts.to_vec())) as ArrayRef,
        )])
        .unwrap();
        Table::new(batch.schema(), vec![batch])
    }

    /// The pieces, chained over one chunk, give the clusters of the in-memory path.
    #[test]
    fn pieces_reproduce_the_in_memory_clusters() {
        let a = "the quick brown fox jumps over the lazy dog near the river bank today";
        let b = "the quick brown fox jumps over the lazy dog near the river bank tonight";
        let c = "something else entirely with other words in it and more of them here";
        let texts = [Some(a), Some(c), Some(b), Some(a), None, Some(c), Some("")];
        let t = table(&texts);
        let options = DedupOptions {
            columns: vec!["text".into()],
            group: None,
            method: Method::MinHash,
            normalize: true,
            ngram: 2,
            num_perm: 64,
            threshold: 0.7,
            bands: None,
            seed: 3,
        };
        let keys = chunk_keys(&t, &options).unwrap();
        assert_eq!(keys.exact[0], keys.exact[3]);
        assert_eq!(
            keys.sketched,
            [true, true, true, false, false, false, false]
        );
        let mut records = Vec::new();
        for row in 0..texts.len() {
            for band in 0..keys.bands {
                if keys.sketched[row] {
                    let key = keys.band_keys[row * keys.bands + band];
                    records.push(((band as u32, key), row as u64));
                }
            }
        }
        let candidates = lsh::candidate_pairs(records);
        let sigs = chunk_signatures(&t, &options).unwrap();
        let path = std::env::temp_dir().join(format!("prefkit-sigs-{}", std::process::id()));
        let mut file = File::create(&path).unwrap();
        for value in &sigs.values {
            file.write_all(&value.to_le_bytes()).unwrap();
        }
        let similar = verify_spilled(&File::open(&path).unwrap(), 64, &candidates, 0.7).unwrap();
        std::fs::remove_file(&path).unwrap();
        let mut sets = UnionFind::new(texts.len());
        for (&(x, y), ok) in candidates.iter().zip(similar) {
            if ok {
                sets.union(x as u32, y as u32);
            }
        }
        let exact = exact_roots(
            &[UnitValues::Prepared(crate::normalize::FlatText::prepare(
                &texts,
                crate::normalize::Form::Normalized,
            ))],
            texts.len(),
        );
        let roots = sets.roots();
        let root: Vec<u32> = exact.iter().map(|&e| roots[e as usize]).collect();
        let (rows, clusters) = find_duplicates(&t, &options).unwrap();
        for (row, cluster) in rows.iter().zip(clusters) {
            assert_eq!(root[*row as usize] as u64, cluster);
        }
        assert_eq!(rows, vec![0, 1, 2, 3, 5]);
    }
}
