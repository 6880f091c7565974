//! Ragged arrays (one variable-length run of values per row, as in a list column): gathering
//! rows in parallel.

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::parallel;

/// Output values per parallel copy task, at least.
const MIN_VALUES_PER_TASK: usize = 1 << 16;

/// Rows `indices` of the ragged array `values`/`offsets` (row `r` is
/// `values[offsets[r]..offsets[r + 1]]`): the gathered values and their offsets.
///
/// One pass computes the offsets; the values are copied in parallel, each task filling its
/// own stretch of the output. Fails, naming the index, when one is not a row.
pub fn take<T: Copy + Default + Send + Sync>(
    values: &[T],
    offsets: &[i64],
    indices: &[i64],
) -> Result<(Vec<T>, Vec<i64>)> {
    let rows = offsets.len().saturating_sub(1);
    let mut out_offsets = Vec::with_capacity(indices.len() + 1);
    out_offsets.push(0i64);
    for &index in indices {
        let row = usize::try_from(index)
            .ok()
            .filter(|&row| row < rows)
            .ok_or_else(|| Error::argument("indices", "row numbers of the ragged array", index))?;
        let length = offsets[row + 1] - offsets[row];
        out_offsets.push(out_offsets[out_offsets.len() - 1] + length);
    }
    let mut out = vec![T::default(); out_offsets[indices.len()] as usize];
    parallel::install(|| {
        // Tasks of consecutive rows, cut where the output passes each multiple of the task size.
        let mut tasks: Vec<(&[i64], &mut [T])> = Vec::new();
        let mut rest = out.as_mut_slice();
        let mut first = 0;
        while first < indices.len() {
            let start = out_offsets[first];
            let mut last = first + 1;
            while last < indices.len() && out_offsets[last] - start < MIN_VALUES_PER_TASK as i64 {
                last += 1;
            }
            let (mine, others) = rest.split_at_mut((out_offsets[last] - start) as usize);
            tasks.push((&indices[first..last], mine));
            rest = others;
            first = last;
        }
        tasks.into_par_iter().for_each(|(rows, mut out)| {
            for &row in rows {
                let row = row as usize;
                let run = &values[offsets[row] as usize..offsets[row + 1] as usize];
                let (head, tail) = out.split_at_mut(run.len());
                head.copy_from_slice(run);
                out = tail;
            }
        });
    });
    Ok((out, out_offsets))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gathers_rows_in_order_with_repeats_and_empty_rows() {
        let values = [1, 2, 3, 4, 5, 6];
        let offsets = [0, 2, 2, 5, 6];
        let (out, out_offsets) = take(&values, &offsets, &[2, 0, 1, 2, 3]).unwrap();
        assert_eq!(out, vec![3, 4, 5, 1, 2, 3, 4, 5, 6]);
        assert_eq!(out_offsets, vec![0, 3, 5, 5, 8, 9]);
        assert!(take(&values, &offsets, &[4]).is_err());
        assert!(take(&values, &offsets, &[-1]).is_err());
    }

    #[test]
    fn many_tasks_agree_with_a_plain_gather() {
        let offsets: Vec<i64> = std::iter::once(0)
            .chain((1..=5000i64).scan(0, |acc, r| {
                *acc += r % 97;
                Some(*acc)
            }))
            .collect();
        let values: Vec<i32> = (0..offsets[5000] as i32).collect();
        let indices: Vec<i64> = (0..20_000i64).map(|i| (i * 7919) % 5000).collect();
        let (out, out_offsets) = take(&values, &offsets, &indices).unwrap();
        let mut expected = Vec::new();
        for &r in &indices {
            expected.extend_from_slice(
                &values[offsets[r as usize] as usize..offsets[r as usize + 1] as usize],
            );
        }
        assert_eq!(out, expected);
        assert_eq!(*out_offsets.last().unwrap() as usize, expected.len());
    }
}
