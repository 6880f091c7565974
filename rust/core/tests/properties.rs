//! Property fuzzing of the core operations over arbitrary Arrow arrays (proptest), the Rust
//! half of the fuzzing in docs/reliability.md (the Python half is `fuzz/`).
//!
//! Tables are drawn with arbitrary chunking, slicing, nulls, NaN and infinities, and string
//! types (`Utf8`, `LargeUtf8`, `Utf8View`), including text that is not UTF-8 (built unchecked,
//! as a PyCapsule producer may hand it over). Each property compares an operation with the
//! plain definition written here, or checks that it returns an error, never a panic.

use std::collections::{BTreeMap, HashSet};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use arrow_array::{
    Array, ArrayRef, BinaryArray, Float64Array, Int64Array, LargeStringArray, RecordBatch,
    StringArray, StringViewArray,
};
use arrow_schema::{DataType, Field, Schema};
use prefkit_core::dedup::{self, DedupOptions, Method};
use prefkit_core::pairs::{self, PairOptions, Strategy as PairStrategy};
use prefkit_core::{utf8, Error, Table};
use proptest::prelude::*;

/// A text column of `kind` (0: Utf8, 1: LargeUtf8, 2: Utf8View) holding `values` unchecked.
fn text_array(values: &[Option<Vec<u8>>], kind: u8) -> ArrayRef {
    let binary = BinaryArray::from_iter(values.iter().map(|v| v.as_deref()));
    let (offsets, bytes, nulls) = binary.into_parts();
    match kind {
        0 => Arc::new(unsafe { StringArray::new_unchecked(offsets, bytes, nulls) }),
        1 => {
            let large = BinaryArray::from_iter(values.iter().map(|v| v.as_deref()));
            let data = arrow_cast::cast(&large, &DataType::LargeBinary).unwrap();
            let data = data.to_data().into_builder().data_type(DataType::LargeUtf8);
            Arc::new(LargeStringArray::from(unsafe { data.build_unchecked() }))
        }
        _ => {
            let plain = arrow_cast::cast(
                &BinaryArray::from_iter(values.iter().map(|v| v.as_deref())),
                &DataType::BinaryView,
            )
            .unwrap();
            let data = plain.to_data().into_builder().data_type(DataType::Utf8View);
            Arc::new(StringViewArray::from(unsafe { data.build_unchecked() }))
        }
    }
}

/// `columns` cut into record batches at `cuts` (row positions, any order, repeats allowed).
fn chunked(columns: Vec<(&str, ArrayRef)>, cuts: &[usize]) -> Table {
    let rows = columns[0].1.len();
    let schema = Arc::new(Schema::new(
        columns
            .iter()
            .map(|(name, a)| Field::new(*name, a.data_type().clone(), true))
            .collect::<Vec<_>>(),
    ));
    let mut bounds: Vec<usize> = cuts.iter().map(|c| c % (rows + 1)).collect();
    bounds.extend([0, rows]);
    bounds.sort_unstable();
    let batches = bounds
        .windows(2)
        .map(|w| {
            let arrays = columns
                .iter()
                .map(|(_, a)| a.slice(w[0], w[1] - w[0]))
                .collect();
            RecordBatch::try_new(schema.clone(), arrays).unwrap()
        })
        .collect();
    Table::new(schema, batches)
}

/// Short byte strings: ASCII, multi-byte UTF-8, and (one in eight) invalid sequences.
fn text_value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        7 => prop::sample::select(vec!["a", "b", "é", "中", "", "\0", "ab c"])
            .prop_map(|s| s.as_bytes().to_vec()),
        1 => prop::collection::vec(any::<u8>(), 0..6),
    ]
}

fn score() -> impl Strategy<Value = Option<f64>> {
    prop_oneof![
        8 => (-3i32..4).prop_map(|v| Some(f64::from(v) / 2.0)),
        1 => prop::sample::select(vec![f64::NAN, f64::INFINITY, f64::NEG_INFINITY]).prop_map(Some),
        1 => Just(None),
    ]
}

fn column<'a, T: 'static>(batch: &'a RecordBatch, name: &str) -> &'a T {
    batch
        .column_by_name(name)
        .unwrap()
        .as_any()
        .downcast_ref::<T>()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// The UTF-8 check names the first row whose (valid) value is not UTF-8, whatever the
    /// string type and slice; null values' bytes are not looked at.
    #[test]
    fn utf8_check_finds_the_first_invalid_value(
        values in prop::collection::vec(prop::option::weighted(0.9, text_value()), 0..40),
        kind in 0u8..3,
        front in 0usize..4,
    ) {
        let array = text_array(&values, kind);
        let front = front.min(values.len());
        let sliced = array.slice(front, values.len() - front);
        let expected = values[front..]
            .iter()
            .position(|v| v.as_deref().is_some_and(|b| std::str::from_utf8(b).is_err()));
        prop_assert_eq!(utf8::first_invalid_row(sliced.as_ref()), expected);
    }

    /// all_pairs pairs every two responses of a prompt whose scores differ (higher one
    /// chosen); rows with a null or NaN score are dropped and counted; invalid text is an
    /// error naming the column, never a panic.
    #[test]
    fn all_pairs_equals_the_definition(
        rows in prop::collection::vec((0u8..4, text_value(), score()), 0..40),
        kind in 0u8..3,
        cuts in prop::collection::vec(any::<usize>(), 0..4),
    ) {
        let prompts: Vec<Option<Vec<u8>>> =
            rows.iter().map(|r| Some(format!("p{}", r.0).into_bytes())).collect();
        let responses: Vec<Option<Vec<u8>>> = rows.iter().map(|r| Some(r.1.clone())).collect();
        let scores: ArrayRef = Arc::new(Float64Array::from_iter(rows.iter().map(|r| r.2)));
        let table = chunked(
            vec![
                ("prompt", text_array(&prompts, kind)),
                ("response", text_array(&responses, kind)),
                ("score", scores),
            ],
            &cuts,
        );
        let mined = catch_unwind(AssertUnwindSafe(|| {
            pairs::mine_pairs(&table, &PairOptions::new(PairStrategy::AllPairs))
        }));
        let mined = mined.map_err(|_| TestCaseError::fail("mine_pairs panicked"))?;
        let bad_text = responses.iter().flatten().any(|b| std::str::from_utf8(b).is_err());
        let (batch, accounting) = match mined {
            Err(Error::ColumnType { .. }) if bad_text => return Ok(()),
            Err(error) => return Err(TestCaseError::fail(format!("{error}"))),
            Ok(result) => result,
        };
        prop_assert!(!bad_text, "invalid UTF-8 was accepted");

        let rated: Vec<(usize, f64)> = rows
            .iter()
            .enumerate()
            .filter_map(|(i, r)| r.2.filter(|s| !s.is_nan()).map(|s| (i, s)))
            .collect();
        let mut expected = Vec::new();
        for &(a, sa) in &rated {
            for &(b, sb) in &rated {
                if rows[a].0 == rows[b].0 && sa > sb {
                    expected.push((a as i64, b as i64));
                }
            }
        }
        expected.sort_unstable();
        let chosen = column::<Int64Array>(&batch, "chosen_row");
        let rejected = column::<Int64Array>(&batch, "rejected_row");
        let mut got: Vec<(i64, i64)> =
            chosen.values().iter().copied().zip(rejected.values().iter().copied()).collect();
        got.sort_unstable();
        prop_assert_eq!(got, expected);
        prop_assert_eq!(accounting.rows_accounted(), rows.len());
        prop_assert_eq!(accounting.rows_in, rows.len());
    }

    /// Exact dedup keeps the first row of every distinct value of the compared column and
    /// counts the rest as dropped, over any chunking and string type.
    #[test]
    fn exact_dedup_keeps_first_occurrences(
        values in prop::collection::vec(
            prop::sample::select(vec!["a", "b", "é", "中", "", "a b"]), 0..60),
        kind in 0u8..3,
        cuts in prop::collection::vec(any::<usize>(), 0..4),
    ) {
        let texts: Vec<Option<Vec<u8>>> =
            values.iter().map(|v| Some(v.as_bytes().to_vec())).collect();
        let table = chunked(vec![("text", text_array(&texts, kind))], &cuts);
        let options = DedupOptions {
            columns: vec!["text".into()],
            group: None,
            method: Method::Exact,
            normalize: false,
            ngram: 5,
            num_perm: 128,
            threshold: 1.0,
            bands: None,
            seed: 0,
        };
        let (kept, accounting) = dedup::dedup(&table, &options).unwrap();
        let mut seen = HashSet::new();
        let expected: Vec<u64> = (0..values.len() as u64)
            .filter(|&i| seen.insert(values[i as usize]))
            .collect();
        prop_assert_eq!(&kept, &expected);
        let dropped: BTreeMap<&str, usize> = accounting.dropped.clone();
        prop_assert_eq!(dropped.values().sum::<usize>(), values.len() - expected.len());
    }
}
