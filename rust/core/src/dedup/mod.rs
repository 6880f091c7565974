//! Deduplication (`pk.dedup`, `pk.find_duplicates`) and decontamination.
//!
//! Rows are compared as *units*: each row on its own, or, with a `group` column, all rows that
//! share a group key together (a prompt with all its responses), judged by the values of the
//! group's first row. Units with equal compared values ([`exact`]) or, with MinHash, with an
//! estimated Jaccard similarity of their word n-grams at or above the threshold ([`minhash`],
//! [`lsh`]) are joined into clusters ([`clusters`]); the first unit of each cluster, in input
//! order, is kept. The exact rules are in docs/dedup.md.

pub mod chunked;
pub mod clusters;
pub mod decontaminate;
pub mod exact;
pub mod lsh;
pub mod minhash;
pub mod shingles;

use crate::accounting::Accounting;
use crate::error::{Error, Result};
use crate::grouping::group_rows;
use crate::key::KeyColumn;
use crate::normalize::Form;
use crate::table::Table;

use self::clusters::UnionFind;
use self::exact::{exact_roots, Source, UnitValues};
use self::minhash::Signatures;

/// How duplicates are found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Equal values (after normalisation when asked).
    Exact,
    /// MinHash-LSH over word n-grams, verified against the threshold.
    MinHash,
}

impl Method {
    /// `"exact"` or `"minhash"`.
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "exact" => Ok(Method::Exact),
            "minhash" => Ok(Method::MinHash),
            other => Err(Error::argument(
                "method",
                "'exact' or 'minhash'",
                format!("'{other}'"),
            )),
        }
    }
}

/// The arguments of [`dedup`] and [`find_duplicates`]; see `pk.dedup` for their meaning.
#[derive(Debug, Clone)]
pub struct DedupOptions {
    /// Compared columns.
    pub columns: Vec<String>,
    /// Rows sharing this column's value are one unit, kept or dropped together.
    pub group: Option<String>,
    /// Exact or MinHash.
    pub method: Method,
    /// Normalise text before comparing.
    pub normalize: bool,
    /// Words per shingle.
    pub ngram: usize,
    /// Sketch size.
    pub num_perm: usize,
    /// Jaccard similarity at or above which two units are near-duplicates.
    pub threshold: f64,
    /// LSH bands; None chooses them for the threshold.
    pub bands: Option<usize>,
    /// Seed of the shingle hashes and of densification.
    pub seed: u64,
}

impl DedupOptions {
    /// Check the arguments (columns named, sizes in range, threshold in (0, 1]).
    pub fn validate(&self) -> Result<()> {
        if self.columns.is_empty() {
            return Err(Error::argument(
                "columns",
                "a column name or a non-empty list of them",
                "[]",
            ));
        }
        if self.ngram == 0 {
            return Err(Error::argument("ngram", "an integer >= 1", 0));
        }
        if !(1..=1 << 16).contains(&self.num_perm) {
            return Err(Error::argument(
                "num_perm",
                "an integer in [1, 65536]",
                self.num_perm,
            ));
        }
        if !(self.threshold > 0.0 && self.threshold <= 1.0) {
            return Err(Error::argument(
                "threshold",
                "a number in (0, 1]",
                self.threshold,
            ));
        }
        if let Some(bands) = self.bands {
            lsh::bands_given(self.num_perm, bands)?;
        }
        Ok(())
    }
}

/// Units of rows: unit `u` holds `rows[offsets[u]..offsets[u + 1]]` (ascending), and units
/// are numbered in order of their first row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Units {
    offsets: Vec<usize>,
    rows: Vec<usize>,
}

impl Units {
    /// Every row a unit of its own.
    pub fn rows(n: usize) -> Self {
        Self {
            offsets: (0..=n).collect(),
            rows: (0..n).collect(),
        }
    }

    /// Rows grouped by the value of column `name`; a row whose value is null is a unit alone.
    pub fn grouped(table: &Table, name: &str) -> Result<Self> {
        let key = KeyColumn::new(&table.column(name)?)?;
        let groups = group_rows(&key.bytes());
        let n = table.num_rows();
        let mut group_of = vec![u32::MAX; n];
        for g in 0..groups.len() {
            for r in groups.rows_of(g) {
                group_of[r] = g as u32;
            }
        }
        let mut units = Self {
            offsets: vec![0],
            rows: Vec::with_capacity(n),
        };
        for (row, &group) in group_of.iter().enumerate() {
            match group {
                u32::MAX => units.rows.push(row),
                g if groups.rows_of(g as usize).next() == Some(row) => {
                    units.rows.extend(groups.rows_of(g as usize))
                }
                _ => continue,
            }
            units.offsets.push(units.rows.len());
        }
        Ok(units)
    }

    /// Number of units.
    pub fn len(&self) -> usize {
        self.offsets.len() - 1
    }

    /// Whether there are no units.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The rows of unit `u`.
    pub fn rows_of(&self, u: usize) -> &[usize] {
        &self.rows[self.offsets[u]..self.offsets[u + 1]]
    }

    /// The first row of every unit.
    pub fn firsts(&self) -> Vec<usize> {
        (0..self.len()).map(|u| self.rows_of(u)[0]).collect()
    }
}

/// Units and the clusters they fall into.
#[derive(Debug, Clone)]
pub struct Clustering {
    /// The compared units.
    pub units: Units,
    /// For every unit, the first unit of its cluster.
    pub root: Vec<u32>,
    /// For every unit, the first unit whose compared values equal its own exactly.
    pub exact_root: Vec<u32>,
}

/// The compared columns of `table`, read once (text only for MinHash).
fn sources(table: &Table, options: &DedupOptions) -> Result<Vec<Source>> {
    options
        .columns
        .iter()
        .map(|name| Source::read(table, name, options.method == Method::MinHash))
        .collect()
}

/// How text is prepared before it is compared.
fn form(options: &DedupOptions) -> Form {
    match (options.normalize, options.method) {
        (true, _) => Form::Normalized,
        (false, Method::MinHash) => Form::Words,
        (false, Method::Exact) => Form::Raw,
    }
}

/// Cluster the units of `table` as `options` say.
pub fn cluster(table: &Table, options: &DedupOptions) -> Result<Clustering> {
    options.validate()?;
    let sources = sources(table, options)?;
    let units = match &options.group {
        Some(group) => Units::grouped(table, group)?,
        None => Units::rows(table.num_rows()),
    };
    let reps = units.firsts();
    let values: Vec<UnitValues<'_>> = sources
        .iter()
        .map(|source| UnitValues::new(source, &reps, form(options)))
        .collect();
    let exact_root = exact_roots(&values, units.len());
    let root = if options.method == Method::MinHash {
        near_roots(&values, &exact_root, options)?
    } else {
        exact_root.clone()
    };
    Ok(Clustering {
        units,
        root,
        exact_root,
    })
}

/// Join exact clusters whose sketches are similar: sketch one unit per distinct value, find
/// similar pairs by LSH, and union them.
fn near_roots(
    values: &[UnitValues<'_>],
    exact_root: &[u32],
    options: &DedupOptions,
) -> Result<Vec<u32>> {
    let distinct: Vec<u32> = (0..exact_root.len() as u32)
        .filter(|&u| exact_root[u as usize] == u)
        .collect();
    let sigs = Signatures::build(
        values,
        &distinct,
        options.ngram,
        options.num_perm,
        options.seed,
    );
    let (bands, rows) = lsh::layout(options.num_perm, options.threshold, options.bands)?;
    let mut sets = UnionFind::new(distinct.len());
    for (a, b) in lsh::similar_pairs(&sigs, bands, rows, options.threshold) {
        sets.union(a, b);
    }
    let distinct_root = sets.roots();
    let mut index_of = vec![0u32; exact_root.len()];
    for (i, &u) in distinct.iter().enumerate() {
        index_of[u as usize] = i as u32;
    }
    Ok(exact_root
        .iter()
        .map(|&e| distinct[distinct_root[index_of[e as usize] as usize] as usize])
        .collect())
}

/// Rows kept by dedup (ascending) and the accounting: the first unit of every cluster stays;
/// every row of any other unit is dropped as a `duplicate` (its values equal the kept unit's)
/// or a `near_duplicate`.
pub fn dedup(table: &Table, options: &DedupOptions) -> Result<(Vec<u64>, Accounting)> {
    let clustering = cluster(table, options)?;
    let Clustering {
        units,
        root,
        exact_root,
    } = &clustering;
    let mut accounting = Accounting {
        rows_in: table.num_rows(),
        ..Default::default()
    };
    let mut kept = Vec::with_capacity(table.num_rows());
    let mut cluster_sizes = vec![0usize; units.len()];
    for u in 0..units.len() {
        let rows = units.rows_of(u);
        cluster_sizes[root[u] as usize] += 1;
        if root[u] as usize == u {
            kept.extend(rows.iter().map(|&r| r as u64));
            accounting.rows_used += rows.len();
        } else if exact_root[u] == root[u] {
            accounting.drop_rows("duplicate", rows.len());
        } else {
            accounting.drop_rows("near_duplicate", rows.len());
        }
    }
    if options.group.is_some() {
        kept.sort_unstable();
        accounting.counts.insert("groups_in", units.len());
    }
    let clusters = cluster_sizes.iter().filter(|&&s| s > 1).count();
    accounting.counts.insert("duplicate_clusters", clusters);
    Ok((kept, accounting))
}

/// Every row of every cluster with more than one unit, ascending, and the first row of its
/// cluster's first unit.
pub fn find_duplicates(table: &Table, options: &DedupOptions) -> Result<(Vec<u64>, Vec<u64>)> {
    let Clustering { units, root, .. } = cluster(table, options)?;
    let mut size = vec![0usize; units.len()];
    for &r in &root {
        size[r as usize] += 1;
    }
    let mut pairs: Vec<(u64, u64)> = Vec::new();
    for (u, &r) in root.iter().enumerate() {
        let r = r as usize;
        if size[r] > 1 {
            let first = units.rows_of(r)[0] as u64;
            pairs.extend(units.rows_of(u).iter().map(|&row| (row as u64, first)));
        }
    }
    pairs.sort_unstable();
    Ok(pairs.into_iter().unzip())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use arrow_array::{ArrayRef, RecordBatch, StringArray};

    fn table(columns: Vec<(&str, Vec<Option<&str>>)>) -> Table {
        let batch = RecordBatch::try_from_iter(
            columns
                .into_iter()
                .map(|(n, v)| (n, Arc::new(StringArray::from(v)) as ArrayRef)),
        )
        .unwrap();
        Table::new(batch.schema(), vec![batch])
    }

    fn options(columns: &[&str], method: Method) -> DedupOptions {
        DedupOptions {
            columns: columns.iter().map(|c| c.to_string()).collect(),
            group: None,
            method,
            normalize: true,
            ngram: 2,
            num_perm: 64,
            threshold: 0.8,
            bands: None,
            seed: 0,
        }
    }

    #[test]
    fn exact_dedup_keeps_the_first_and_counts_the_rest() {
        let t = table(vec![(
            "prompt",
            vec![Some("Hi!"), Some("hi"), None, Some("yo"), None],
        )]);
        let (kept, acc) = dedup(&t, &options(&["prompt"], Method::Exact)).unwrap();
        assert_eq!(kept, vec![0, 2, 3]);
        assert_eq!(acc.dropped["duplicate"], 2);
        assert_eq!(acc.rows_accounted(), 5);
    }

    #[test]
    fn grouped_dedup_keeps_or_drops_whole_groups() {
        let p = vec![
            Some("Q one"),
            Some("Q one"),
            Some("q, one"),
            Some("q, one"),
            Some("r"),
        ];
        let t = table(vec![("prompt", p)]);
        let mut o = options(&["prompt"], Method::Exact);
        o.group = Some("prompt".into());
        let (kept, acc) = dedup(&t, &o).unwrap();
        assert_eq!(kept, vec![0, 1, 4]);
        assert_eq!(acc.dropped["duplicate"], 2);
        assert_eq!(acc.counts["groups_in"], 3);
    }

    #[test]
    fn minhash_finds_near_duplicates_and_reports_clusters() {
        let a = "the quick brown fox jumps over the lazy dog near the river bank today";
        let b = "the quick brown fox jumps over the lazy dog near the river bank today!";
        let c = "something else entirely with other words in it and more of them here";
        let t = table(vec![("text", vec![Some(a), Some(c), Some(b), Some("")])]);
        let o = options(&["text"], Method::MinHash);
        let (rows, clusters) = find_duplicates(&t, &o).unwrap();
        assert_eq!(rows, vec![0, 2]);
        assert_eq!(clusters, vec![0, 0]);
        let (kept, acc) = dedup(&t, &o).unwrap();
        assert_eq!(kept, vec![0, 1, 3]);
        assert_eq!(acc.dropped["duplicate"], 1); // equal after normalisation
    }

    #[test]
    fn bad_arguments_are_errors() {
        let t = table(vec![("text", vec![Some("a")])]);
        let mut o = options(&["text"], Method::MinHash);
        o.threshold = 0.0;
        assert!(dedup(&t, &o).is_err());
        assert!(dedup(&t, &options(&["nope"], Method::Exact)).is_err());
    }
}
