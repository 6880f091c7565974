//! Preference trees: a trie over step-split sampled solutions (`pk.build_trees`), and step-level
//! pairs (`pk.tree_pairs`) and ranked lists (`pk.tree_lists`) of sibling nodes, from that trie
//! or from a node table made elsewhere (MCTS output), which is validated first.
//!
//! The exact rules are in docs/trees.md and mirrored by tests/reference.py. Sibling nodes are
//! ranked and paired by the same code as the responses of a prompt ([`mine_ranked`]) and cut
//! into lists by the same rules as `rank_lists` ([`ListRules`]).

use std::cmp::Ordering;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::{
    Array, ArrayRef, BooleanArray, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray,
    UInt64Array,
};
use arrow_buffer::ScalarBuffer;
use arrow_schema::{DataType, Field, Schema};
use hashbrown::hash_table::Entry;
use hashbrown::HashTable;
use rayon::prelude::*;
use twox_hash::XxHash3_64;

use crate::accounting::Accounting;
use crate::error::{Error, Result};
use crate::grouping::{group_rows, GroupRows};
use crate::key::{key_id, KeyColumn};
use crate::lists::{list_of, string_lists, ListRules};
use crate::pairs::{mine_ranked, rank, Selected, Selection};
use crate::parallel;
use crate::table::{Column, Table};
use crate::text::{is_text, TextColumn, Views};

const NONE: usize = usize::MAX;

/// The id of a child node: xxh3-64 of its step's UTF-8 bytes, seeded with its parent's id.
pub fn child_id(parent_id: u64, step: &str) -> u64 {
    XxHash3_64::oneshot_with_seed(parent_id, step.as_bytes())
}

/// The id of a tree's root node: `child_id(tree_id, "")`.
pub fn root_id(tree_id: u64) -> u64 {
    XxHash3_64::oneshot_with_seed(tree_id, b"")
}

/// The arguments of [`build_trees`]; see `pk.build_trees`.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    pub prompt: String,
    pub steps: String,
    pub reward: String,
    pub group: Option<String>,
}

/// The steps of every path: a `list<text>` column read without copying.
struct Steps {
    /// Global element range of each row; None for a null list.
    ranges: Vec<Option<(usize, usize)>>,
    /// The elements of every list, across chunks.
    elements: TextColumn,
}

impl Steps {
    fn new(column: &Column) -> Result<Self> {
        let wrong_type = || Error::ColumnType {
            column: column.name().to_string(),
            expected: "a list of text (list<string>, large_list<string>, list<string_view>)",
            actual: column.field.data_type().to_string(),
        };
        let item = match column.field.data_type() {
            DataType::List(item) | DataType::LargeList(item) if is_text(item.data_type()) => {
                item.clone()
            }
            _ => return Err(wrong_type()),
        };
        let mut ranges = Vec::new();
        let mut values = Vec::new();
        let mut base = 0;
        for chunk in &column.chunks {
            let (offsets, child): (Vec<usize>, ArrayRef) = match chunk.data_type() {
                DataType::List(_) => {
                    let list = chunk.as_list::<i32>();
                    let o = list.value_offsets().iter().map(|&o| o as usize).collect();
                    (o, list.values().clone())
                }
                DataType::LargeList(_) => {
                    let list = chunk.as_list::<i64>();
                    let o = list.value_offsets().iter().map(|&o| o as usize).collect();
                    (o, list.values().clone())
                }
                _ => return Err(wrong_type()),
            };
            for i in 0..chunk.len() {
                ranges.push(
                    chunk
                        .is_valid(i)
                        .then(|| (base + offsets[i], base + offsets[i + 1])),
                );
            }
            base += child.len();
            values.push(child);
        }
        let elements = TextColumn::new(&Column {
            field: Arc::new(Field::new(column.name(), item.data_type().clone(), true)),
            chunks: values,
        })?;
        Ok(Self { ranges, elements })
    }
}

/// A built trie: `(group, row of its first valid path, nodes in creation order)`.
type Trie = (usize, usize, Vec<Node>);

/// A node of a trie under construction.
#[derive(Debug, Clone)]
struct Node {
    id: u64,
    parent: usize,
    depth: u32,
    /// Global element index of its step; NONE at the root.
    step: usize,
    sum: f64,
    visits: u64,
    children: u32,
}

/// Build one trie per prompt (or `group`) from paths of steps with a final reward.
///
/// Returns the node table (columns as in docs/trees.md) as batches of whole trees, and the
/// accounting of every path.
pub fn build_trees(
    table: &Table,
    options: &BuildOptions,
) -> Result<(Vec<RecordBatch>, Accounting)> {
    let prompt = table.column(&options.prompt)?;
    let steps = Steps::new(&table.column(&options.steps)?)?;
    let reward = table.column(&options.reward)?.to_f64()?;
    let key_column = match &options.group {
        Some(name) => KeyColumn::new(&table.column(name)?)?,
        None => KeyColumn::new(&prompt)?,
    };
    let texts = steps.elements.strs();
    let keys = key_column.bytes();
    let groups = group_rows(&keys);
    let output = NodeOutput {
        prompt: &prompt,
        prompt_views: is_text(prompt.field.data_type())
            .then(|| TextColumn::new(&prompt).map(|t| t.views()))
            .transpose()?,
        step_views: steps.elements.views(),
        tree_ids: &groups.ids,
    };

    // Each task builds the tries of a range of groups (each keeps the row of its first path,
    // for the prompt) and their batch of nodes straight away, so the output is assembled on
    // every core.
    let starts: Vec<usize> = (0..groups.len()).step_by(GROUPS_PER_BATCH).collect();
    let parts = parallel::install(|| {
        starts
            .par_iter()
            .map(|&start| {
                let mut accounting = Accounting::default();
                let mut index = HashTable::new();
                let trees: Vec<Trie> = (start..(start + GROUPS_PER_BATCH).min(groups.len()))
                    .filter_map(|g| {
                        build_trie(
                            groups.rows_of(g),
                            groups.ids[g],
                            &steps.ranges,
                            &texts,
                            &reward,
                            &mut index,
                            &mut accounting,
                        )
                        .map(|(first, nodes)| (g, first, nodes))
                    })
                    .collect();
                accounting.counts.insert("trees_out", trees.len());
                let nodes: usize = trees.iter().map(|t| t.2.len()).sum();
                accounting.counts.insert("nodes_out", nodes);
                Ok((output.batch(&trees)?, accounting))
            })
            .collect::<Result<Vec<_>>>()
    })?;
    let mut batches = Vec::with_capacity(parts.len().max(1));
    let mut accounting = Accounting::default();
    for (batch, part) in parts {
        accounting.merge(&part);
        batches.push(batch);
    }
    if batches.is_empty() {
        // No groups: one empty batch carries the schema.
        batches.push(output.batch(&[])?);
    }
    accounting.rows_in = table.num_rows();
    accounting.drop_rows("null_key", groups.null_keys);
    accounting.counts.insert("groups_in", groups.len());
    for count in ["trees_out", "nodes_out"] {
        accounting.counts.entry(count).or_insert(0);
    }
    debug_assert_eq!(accounting.rows_accounted(), accounting.rows_in);
    Ok((batches, accounting))
}

/// Groups whose tries one task builds into one output batch of `build_trees`.
const GROUPS_PER_BATCH: usize = 1 << 11;

/// What the node batches of `build_trees` are made from, besides the tries.
struct NodeOutput<'a> {
    prompt: &'a Column,
    /// Views of the prompt column when it is text (a view per node, no text copied).
    prompt_views: Option<Views>,
    step_views: Views,
    /// Key id of every group: its tree's id.
    tree_ids: &'a [u64],
}

impl NodeOutput<'_> {
    /// The node table of `trees`, one row per node, trees in order.
    fn batch(&self, trees: &[Trie]) -> Result<RecordBatch> {
        let nodes_out: usize = trees.iter().map(|t| t.2.len()).sum();
        let mut tree_id = Vec::with_capacity(nodes_out);
        let mut node_id = Vec::with_capacity(nodes_out);
        let mut parent_id = Vec::with_capacity(nodes_out);
        let mut depth = Vec::with_capacity(nodes_out);
        let mut step = Vec::with_capacity(nodes_out);
        let mut value = Vec::with_capacity(nodes_out);
        let mut visits = Vec::with_capacity(nodes_out);
        let mut is_leaf = Vec::with_capacity(nodes_out);
        let mut prompt_rows = Vec::with_capacity(nodes_out);
        for (g, first, nodes) in trees {
            for node in nodes {
                tree_id.push(self.tree_ids[*g]);
                node_id.push(node.id);
                parent_id.push((node.parent != NONE).then(|| nodes[node.parent].id));
                depth.push(node.depth as i32);
                step.push((node.step != NONE).then_some(node.step));
                value.push(node.sum / node.visits as f64);
                visits.push(node.visits as i64);
                is_leaf.push(node.children == 0);
                prompt_rows.push(*first);
            }
        }
        let prompt_values: ArrayRef = match &self.prompt_views {
            Some(views) => Arc::new(views.gather(prompt_rows.iter().copied())),
            None => self.prompt.take(&prompt_rows)?,
        };
        let columns: Vec<(&str, ArrayRef, bool)> = vec![
            ("tree_id", Arc::new(UInt64Array::from(tree_id)), false),
            ("node_id", Arc::new(UInt64Array::from(node_id)), false),
            ("parent_id", Arc::new(UInt64Array::from(parent_id)), true),
            ("depth", Arc::new(Int32Array::from(depth)), false),
            (
                "step",
                Arc::new(self.step_views.gather_optional(&step)),
                true,
            ),
            ("value", Arc::new(Float64Array::from(value)), false),
            ("visits", Arc::new(Int64Array::from(visits)), false),
            ("is_leaf", Arc::new(BooleanArray::from(is_leaf)), false),
            ("prompt", prompt_values, true),
        ];
        batch_of(columns)
    }
}

/// The trie of one group: `(row of its first valid path, nodes in creation order)`, or None
/// when no path of the group is valid. `index` is scratch space, reused between groups.
fn build_trie(
    rows: GroupRows<'_>,
    tree_id: u64,
    ranges: &[Option<(usize, usize)>],
    texts: &[Option<&str>],
    reward: &[f64],
    index: &mut HashTable<u32>,
    accounting: &mut Accounting,
) -> Option<(usize, Vec<Node>)> {
    // At most one node per step plus the root: sized once, so neither grows while paths are
    // added.
    let steps: usize = rows
        .clone()
        .filter_map(|row| ranges[row].map(|(start, end)| end - start))
        .sum();
    let mut nodes: Vec<Node> = Vec::with_capacity(steps + 1);
    index.clear();
    index.reserve(steps, |&j| nodes[j as usize].id);
    let mut first = NONE;
    for row in rows {
        let Some((start, end)) = ranges[row] else {
            accounting.drop_rows("null_steps", 1);
            continue;
        };
        if texts[start..end].iter().any(Option::is_none) {
            accounting.drop_rows("null_step", 1);
            continue;
        }
        let r = reward[row];
        if r.is_nan() {
            accounting.drop_rows("nan_reward", 1);
            continue;
        }
        accounting.rows_used += 1;
        if nodes.is_empty() {
            first = row;
            nodes.push(Node {
                id: root_id(tree_id),
                parent: NONE,
                depth: 0,
                step: NONE,
                sum: 0.0,
                visits: 0,
                children: 0,
            });
        }
        nodes[0].sum += r;
        nodes[0].visits += 1;
        let mut current = 0;
        for (element, text) in texts[start..end].iter().enumerate() {
            let element = start + element;
            let text = text.expect("null steps were rejected");
            let id = child_id(nodes[current].id, text);
            let found = index
                .find(id, |&i| {
                    let node = &nodes[i as usize];
                    node.parent == current && texts[node.step] == Some(text)
                })
                .copied();
            let child = match found {
                Some(i) => i as usize,
                None => {
                    let i = nodes.len();
                    nodes.push(Node {
                        id,
                        parent: current,
                        depth: nodes[current].depth + 1,
                        step: element,
                        sum: 0.0,
                        visits: 0,
                        children: 0,
                    });
                    nodes[current].children += 1;
                    index.insert_unique(id, i as u32, |&j| nodes[j as usize].id);
                    i
                }
            };
            nodes[child].sum += r;
            nodes[child].visits += 1;
            current = child;
        }
    }
    (!nodes.is_empty()).then_some((first, nodes))
}

/// Column names of a node table; see `pk.tree_pairs`.
#[derive(Debug, Clone)]
pub struct NodeColumns {
    pub tree: String,
    pub node: String,
    pub parent: String,
    pub step: String,
    pub value: String,
    /// Visit counts; without them every node counts as visited once.
    pub visits: Option<String>,
    /// Prompt of each tree, read at its root; without it the result's prompt is null.
    pub prompt: Option<String>,
}

/// A validated node table: every row's parent row, depth and tree root, and the children of
/// every row in row order.
struct Forest {
    parent: Vec<usize>,
    depth: Vec<u32>,
    root: Vec<usize>,
    /// Children of row `r`: `children[child_offsets[r]..child_offsets[r + 1]]`.
    child_offsets: Vec<usize>,
    children: Vec<usize>,
    /// Draw key of each row (xxh3-64 of its node id's canonical bytes).
    draw_keys: Vec<u64>,
    trees: usize,
}

/// Everything read from a node table.
struct NodeTable {
    forest: Forest,
    tree: Column,
    node: Column,
    prompt: Option<Column>,
    steps: TextColumn,
    value: ScalarBuffer<f64>,
    visits: Option<ScalarBuffer<f64>>,
}

impl NodeTable {
    fn read(table: &Table, columns: &NodeColumns) -> Result<Self> {
        let tree = table.column(&columns.tree)?;
        let node = table.column(&columns.node)?;
        let parent = table.column(&columns.parent)?;
        let steps = TextColumn::new(&table.column(&columns.step)?)?;
        let value = table.column(&columns.value)?.to_f64()?;
        let visits = columns
            .visits
            .as_ref()
            .map(|name| table.column(name)?.to_f64())
            .transpose()?;
        let prompt = columns
            .prompt
            .as_ref()
            .map(|name| table.column(name))
            .transpose()?;
        let forest = validate(&tree, &node, &parent)?;
        Ok(Self {
            forest,
            tree,
            node,
            prompt,
            steps,
            value,
            visits,
        })
    }

    /// The children of `parent` that can be ranked, best first; the others are counted.
    fn ranked_children(
        &self,
        parent: usize,
        steps: &[Option<&str>],
        min_visits: f64,
        accounting: &mut Accounting,
    ) -> Vec<(f64, usize)> {
        let f = &self.forest;
        let mut ranked = Vec::new();
        for &child in &f.children[f.child_offsets[parent]..f.child_offsets[parent + 1]] {
            if steps[child].is_none() {
                accounting.drop_rows("null_step", 1);
            } else if self.value[child].is_nan() {
                accounting.drop_rows("nan_value", 1);
            } else if self.visits.as_ref().is_some_and(|v| {
                // Below `min_visits`, or NaN (an unknown count is not enough).
                v[child]
                    .partial_cmp(&min_visits)
                    .is_none_or(|o| o == Ordering::Less)
            }) {
                accounting.drop_rows("below_min_visits", 1);
            } else {
                ranked.push((self.value[child], child));
            }
        }
        rank(&mut ranked);
        ranked
    }

    /// Parents with children, in row order.
    fn parents(&self) -> Vec<usize> {
        let f = &self.forest;
        (0..f.parent.len())
            .filter(|&r| f.child_offsets[r + 1] > f.child_offsets[r])
            .collect()
    }

    /// Steps from the root's child down to `row` (the root's own step is not part of it).
    fn prefix<'a>(&self, row: usize, steps: &[Option<&'a str>], out: &mut Vec<Option<&'a str>>) {
        let start = out.len();
        let mut current = row;
        while self.forest.parent[current] != NONE {
            out.push(steps[current]);
            current = self.forest.parent[current];
        }
        out[start..].reverse();
    }

    /// Prompt of the tree of each of `rows` (read at its root), or nulls.
    fn prompts(&self, rows: &[usize]) -> Result<ArrayRef> {
        let roots: Vec<usize> = rows.iter().map(|&r| self.forest.root[r]).collect();
        match &self.prompt {
            Some(prompt) if is_text(prompt.field.data_type()) => Ok(Arc::new(
                TextColumn::new(prompt)?
                    .views()
                    .gather(roots.iter().copied()),
            )),
            Some(prompt) => prompt.take(&roots),
            None => Ok(Arc::new(StringArray::new_null(rows.len()))),
        }
    }

    /// Prefix lists of the parents `rows` as a `list<string>` column.
    fn prefixes(&self, rows: &[usize], steps: &[Option<&str>]) -> Result<ArrayRef> {
        let mut offsets = vec![0];
        let mut texts = Vec::new();
        for &row in rows {
            self.prefix(row, steps, &mut texts);
            offsets.push(texts.len());
        }
        Ok(Arc::new(string_lists(
            &offsets,
            texts.iter().copied(),
            texts.len(),
        )?))
    }
}

/// Trees whose node tables one task checks in `validate`.
const TREES_PER_TASK: usize = 256;

/// A problem with a node table row, found by `validate`.
#[derive(Debug, Clone, Copy)]
enum Problem {
    /// The row repeats the node id of this earlier row of its tree.
    Duplicate(usize),
    /// The row's parent is no node of its tree.
    Orphan,
    /// The row is a root, and so is this earlier row of its tree.
    SecondRoot(usize),
}

/// What one `validate` task found in its trees: every row's parent row, every tree's root,
/// and its first problem.
#[derive(Default)]
struct Links {
    parents: Vec<(usize, usize)>,
    roots: Vec<(usize, usize)>,
    /// The problem a scan in row order meets first: any duplicate before other problems.
    first: Option<(usize, Problem)>,
}

impl Links {
    /// Note a problem at `row`, keeping the first one.
    fn note(&mut self, row: usize, problem: Problem) {
        let rank = |(row, p): (usize, Problem)| (!matches!(p, Problem::Duplicate(_)), row);
        if self
            .first
            .is_none_or(|first| rank((row, problem)) < rank(first))
        {
            self.first = Some((row, problem));
        }
    }
}

/// Check that a node table is a forest, and index it.
fn validate(tree: &Column, node: &Column, parent: &Column) -> Result<Forest> {
    let tree_keys = KeyColumn::new(tree)?;
    let node_keys = KeyColumn::new(node)?;
    let parent_keys = KeyColumn::new(parent)?;
    let (tree_bytes, node_bytes, parent_bytes) =
        (tree_keys.bytes(), node_keys.bytes(), parent_keys.bytes());
    let n = node_bytes.len();
    let name = |row: usize| format!("node {} (row {row})", node.display(row));
    let in_tree = |row: usize| format!("{} {}", tree.name(), tree.display(row));
    for row in 0..n {
        if tree_bytes.get(row).is_none() {
            return Err(Error::InvalidTree(format!(
                "column '{}' is null at row {row}; every node needs a tree",
                tree.name()
            )));
        }
        if node_bytes.get(row).is_none() {
            return Err(Error::InvalidTree(format!(
                "column '{}' is null at row {row}; every node needs an id",
                node.name()
            )));
        }
    }
    let groups = group_rows(&tree_bytes);
    let mut tree_of = vec![0u32; n];
    for g in 0..groups.len() {
        for row in groups.rows_of(g) {
            tree_of[row] = g as u32;
        }
    }
    // The node key ids are computed in parallel and kept as draw keys.
    let draw_keys: Vec<u64> = parallel::install(|| {
        (0..n)
            .into_par_iter()
            .map(|r| key_id(node_bytes.get(r).expect("checked above")))
            .collect()
    });
    let parent_key_ids: Vec<Option<u64>> = parallel::install(|| {
        (0..n)
            .into_par_iter()
            .map(|r| parent_bytes.get(r).map(key_id))
            .collect()
    });
    // Each tree's nodes are indexed in a table of their own (by key id, verified on the
    // bytes), built and probed in parallel over trees: small tables stay in cache, where one
    // table of every node missed it on nearly every probe. Problems are collected per tree and
    // the one a scan in row order would meet first is reported, duplicates before the rest.
    let starts: Vec<usize> = (0..groups.len()).step_by(TREES_PER_TASK).collect();
    let links: Vec<Links> = parallel::install(|| {
        starts
            .par_iter()
            .map(|&start| {
                let mut links = Links::default();
                let mut index: HashTable<usize> = HashTable::new();
                for g in start..(start + TREES_PER_TASK).min(groups.len()) {
                    let rows = groups.rows_of(g);
                    index.clear();
                    for row in rows.clone() {
                        let id = node_bytes.get(row);
                        let entry = index.entry(
                            draw_keys[row],
                            |&r| node_bytes.get(r) == id,
                            |&r| draw_keys[r],
                        );
                        match entry {
                            Entry::Occupied(first) => {
                                links.note(row, Problem::Duplicate(*first.get()))
                            }
                            Entry::Vacant(vacant) => {
                                vacant.insert(row);
                            }
                        }
                    }
                    let mut root = NONE;
                    for row in rows {
                        match (parent_bytes.get(row), parent_key_ids[row]) {
                            (Some(p), Some(p_id)) => {
                                match index.find(p_id, |&r| node_bytes.get(r) == Some(p)) {
                                    Some(&p) => links.parents.push((row, p)),
                                    None => links.note(row, Problem::Orphan),
                                }
                            }
                            _ if root != NONE => links.note(row, Problem::SecondRoot(root)),
                            _ => {
                                root = row;
                                links.roots.push((g, row));
                            }
                        }
                    }
                }
                links
            })
            .collect()
    });
    let first_problem = links
        .iter()
        .filter_map(|l| l.first)
        .min_by_key(|&(row, problem)| (!matches!(problem, Problem::Duplicate(_)), row));
    if let Some((row, problem)) = first_problem {
        return Err(Error::InvalidTree(match problem {
            Problem::Duplicate(first) => format!(
                "duplicate node id: {} repeats the id of row {first} in {}",
                name(row),
                in_tree(row)
            ),
            Problem::Orphan => format!(
                "orphan: {} has {} {}, which is no node of {}",
                name(row),
                parent.name(),
                parent.display(row),
                in_tree(row)
            ),
            Problem::SecondRoot(first) => format!(
                "several roots in {}: {} and {} both have a null '{}'",
                in_tree(row),
                name(first),
                name(row),
                parent.name()
            ),
        }));
    }
    let mut parent_row = vec![NONE; n];
    let mut roots = vec![NONE; groups.len()];
    for links in &links {
        for &(row, p) in &links.parents {
            parent_row[row] = p;
        }
        for &(g, row) in &links.roots {
            roots[g] = row;
        }
    }
    // Depths by walking up; a walk that meets itself is a cycle.
    let mut depth = vec![u32::MAX; n];
    let mut on_path = vec![false; n];
    let mut path = Vec::new();
    for row in 0..n {
        let mut current = row;
        path.clear();
        while depth[current] == u32::MAX {
            if on_path[current] {
                return Err(Error::InvalidTree(format!(
                    "cycle: {} is its own ancestor in {}",
                    name(current),
                    in_tree(current)
                )));
            }
            on_path[current] = true;
            path.push(current);
            if parent_row[current] == NONE {
                break;
            }
            current = parent_row[current];
        }
        for &r in path.iter().rev() {
            depth[r] = if parent_row[r] == NONE {
                0
            } else {
                depth[parent_row[r]] + 1
            };
            on_path[r] = false;
        }
    }
    let root: Vec<usize> = (0..n).map(|r| roots[tree_of[r] as usize]).collect();
    let mut counts = vec![0usize; n + 1];
    for &p in &parent_row {
        if p != NONE {
            counts[p + 1] += 1;
        }
    }
    for r in 0..n {
        counts[r + 1] += counts[r];
    }
    let child_offsets = counts;
    let mut fill = child_offsets.clone();
    let mut children = vec![0; child_offsets[n]];
    for (row, &p) in parent_row.iter().enumerate() {
        if p != NONE {
            children[fill[p]] = row;
            fill[p] += 1;
        }
    }
    Ok(Forest {
        parent: parent_row,
        depth,
        root,
        child_offsets,
        children,
        draw_keys,
        trees: groups.len(),
    })
}

/// The arguments of [`tree_pairs`].
#[derive(Debug, Clone)]
pub struct TreePairOptions {
    pub columns: NodeColumns,
    pub selection: Selection,
    pub min_visits: f64,
}

/// Step-level pairs between sibling nodes of every tree of a node table.
pub fn tree_pairs(table: &Table, options: &TreePairOptions) -> Result<(RecordBatch, Accounting)> {
    check_pair_selection(&options.selection)?;
    check_min_visits(&options.columns, options.min_visits)?;
    let nodes = NodeTable::read(table, &options.columns)?;
    let steps = nodes.steps.strs();
    let parents = nodes.parents();
    let (pairs, mut accounting) = parallel::install(|| {
        let parts: Vec<(Vec<(usize, Selected)>, Accounting)> = parents
            .par_chunks(256)
            .map(|chunk| {
                let mut accounting = Accounting::default();
                let mut out = Vec::new();
                let mut selected = Vec::new();
                for &p in chunk {
                    let ranked =
                        nodes.ranked_children(p, &steps, options.min_visits, &mut accounting);
                    selected.clear();
                    mine_ranked(
                        &ranked,
                        &options.selection,
                        nodes.forest.draw_keys[p],
                        &mut selected,
                        &mut accounting,
                    );
                    out.extend(selected.iter().map(|&s| (p, s)));
                }
                (out, accounting)
            })
            .collect();
        let mut pairs = Vec::new();
        let mut accounting = Accounting::default();
        for (part, part_accounting) in parts {
            pairs.extend(part);
            accounting.merge(&part_accounting);
        }
        (pairs, accounting)
    });
    let n = table.num_rows();
    accounting.rows_in = n;
    accounting.drop_rows("root", nodes.forest.trees);
    accounting.counts.insert("trees_in", nodes.forest.trees);
    accounting.counts.insert("pairs_out", pairs.len());
    accounting.counts.entry("groups_with_pairs").or_insert(0);
    debug_assert_eq!(accounting.rows_accounted(), accounting.rows_in);

    let parent_rows: Vec<usize> = pairs.iter().map(|p| p.0).collect();
    let chosen: Vec<usize> = pairs.iter().map(|p| p.1.chosen).collect();
    let rejected: Vec<usize> = pairs.iter().map(|p| p.1.rejected).collect();
    let step_views = nodes.steps.views();
    let columns: Vec<(&str, ArrayRef, bool)> = vec![
        ("prompt", nodes.prompts(&parent_rows)?, true),
        ("prefix", nodes.prefixes(&parent_rows, &steps)?, false),
        (
            "chosen",
            Arc::new(step_views.gather(chosen.iter().copied())),
            false,
        ),
        (
            "rejected",
            Arc::new(step_views.gather(rejected.iter().copied())),
            false,
        ),
        (
            "score_chosen",
            Arc::new(Float64Array::from_iter_values(
                chosen.iter().map(|&r| nodes.value[r]),
            )),
            false,
        ),
        (
            "score_rejected",
            Arc::new(Float64Array::from_iter_values(
                rejected.iter().map(|&r| nodes.value[r]),
            )),
            false,
        ),
        (
            "margin",
            Arc::new(Float64Array::from_iter_values(
                pairs.iter().map(|p| p.1.margin),
            )),
            false,
        ),
        (
            "depth",
            Arc::new(Int32Array::from_iter_values(
                chosen.iter().map(|&r| nodes.forest.depth[r] as i32),
            )),
            false,
        ),
        ("tree_id", nodes.tree.take(&chosen)?, false),
        ("chosen_node", nodes.node.take(&chosen)?, false),
        ("rejected_node", nodes.node.take(&rejected)?, false),
    ];
    Ok((batch_of(columns)?, accounting))
}

/// The arguments of [`tree_lists`].
#[derive(Debug, Clone)]
pub struct TreeListOptions {
    pub columns: NodeColumns,
    pub rules: ListRules,
    pub min_visits: f64,
}

/// Ranked lists of the children of every branching node of a node table.
pub fn tree_lists(table: &Table, options: &TreeListOptions) -> Result<(RecordBatch, Accounting)> {
    options.rules.validate()?;
    check_min_visits(&options.columns, options.min_visits)?;
    let nodes = NodeTable::read(table, &options.columns)?;
    let steps = nodes.steps.strs();
    let parents = nodes.parents();
    let mut accounting = Accounting::default();
    let mut list_parents = Vec::new();
    let mut offsets = vec![0];
    let mut items: Vec<(f64, usize)> = Vec::new();
    for &p in &parents {
        let mut ranked = nodes.ranked_children(p, &steps, options.min_visits, &mut accounting);
        if options.rules.cut(&mut ranked, &mut accounting) {
            items.extend_from_slice(&ranked);
            list_parents.push(p);
            offsets.push(items.len());
        }
    }
    accounting.rows_in = table.num_rows();
    accounting.drop_rows("root", nodes.forest.trees);
    accounting.counts.insert("trees_in", nodes.forest.trees);
    accounting.counts.insert("lists_out", list_parents.len());
    debug_assert_eq!(accounting.rows_accounted(), accounting.rows_in);

    let first_children: Vec<usize> = (0..list_parents.len())
        .map(|l| items[offsets[l]].1)
        .collect();
    let columns: Vec<(&str, ArrayRef, bool)> = vec![
        ("prompt", nodes.prompts(&list_parents)?, true),
        ("prefix", nodes.prefixes(&list_parents, &steps)?, false),
        (
            "responses",
            Arc::new(string_lists(
                &offsets,
                items.iter().map(|&(_, r)| steps[r]),
                items.len(),
            )?),
            false,
        ),
        (
            "scores",
            Arc::new(list_of(
                &offsets,
                Arc::new(Float64Array::from_iter_values(items.iter().map(|i| i.0))),
            )?),
            false,
        ),
        (
            "rows",
            Arc::new(list_of(
                &offsets,
                Arc::new(Int64Array::from_iter_values(
                    items.iter().map(|i| i.1 as i64),
                )),
            )?),
            false,
        ),
        (
            "depth",
            Arc::new(Int32Array::from_iter_values(
                first_children.iter().map(|&r| nodes.forest.depth[r] as i32),
            )),
            false,
        ),
        ("tree_id", nodes.tree.take(&first_children)?, false),
    ];
    Ok((batch_of(columns)?, accounting))
}

fn check_pair_selection(selection: &Selection) -> Result<()> {
    if !(selection.min_margin >= 0.0 && selection.min_margin.is_finite()) {
        return Err(Error::argument(
            "min_margin",
            "a finite number >= 0",
            selection.min_margin,
        ));
    }
    if selection.k < 1 {
        return Err(Error::argument("k", "an integer >= 1", selection.k));
    }
    if selection.max_pairs == Some(0) {
        return Err(Error::argument("max_pairs_per_node", "an integer >= 1", 0));
    }
    Ok(())
}

fn check_min_visits(columns: &NodeColumns, min_visits: f64) -> Result<()> {
    if min_visits.is_nan() {
        return Err(Error::argument("min_visits", "a number", min_visits));
    }
    if columns.visits.is_none() && min_visits > 1.0 {
        return Err(Error::argument(
            "min_visits",
            "at most 1 when the node table has no visits column",
            min_visits,
        ));
    }
    Ok(())
}

/// One record batch from named columns.
fn batch_of(columns: Vec<(&str, ArrayRef, bool)>) -> Result<RecordBatch> {
    let fields: Vec<Field> = columns
        .iter()
        .map(|(name, array, nullable)| Field::new(*name, array.data_type().clone(), *nullable))
        .collect();
    let arrays = columns.into_iter().map(|(_, array, _)| array).collect();
    Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pairs::{Strategy, Ties};
    use arrow_array::builder::{ListBuilder, StringBuilder};
    use arrow_array::types::UInt64Type;

    fn paths(prompts: &[&str], steps: &[&[&str]], rewards: &[f64]) -> Table {
        let mut lists = ListBuilder::new(StringBuilder::new());
        for path in steps {
            for step in *path {
                lists.values().append_value(step);
            }
            lists.append(true);
        }
        let batch = RecordBatch::try_from_iter(vec![
            (
                "prompt",
                Arc::new(StringArray::from(prompts.to_vec())) as ArrayRef,
            ),
            ("steps", Arc::new(lists.finish()) as ArrayRef),
            (
                "reward",
                Arc::new(Float64Array::from(rewards.to_vec())) as ArrayRef,
            ),
        ])
        .unwrap();
        Table::new(batch.schema(), vec![batch])
    }

    fn build(table: &Table) -> (RecordBatch, Accounting) {
        let (batches, accounting) = build_trees(
            table,
            &BuildOptions {
                prompt: "prompt".into(),
                steps: "steps".into(),
                reward: "reward".into(),
                group: None,
            },
        )
        .unwrap();
        let batch = arrow_select::concat::concat_batches(&batches[0].schema(), &batches).unwrap();
        (batch, accounting)
    }

    fn columns() -> NodeColumns {
        NodeColumns {
            tree: "tree_id".into(),
            node: "node_id".into(),
            parent: "parent_id".into(),
            step: "step".into(),
            value: "value".into(),
            visits: Some("visits".into()),
            prompt: Some("prompt".into()),
        }
    }

    fn as_table(batch: RecordBatch) -> Table {
        Table::new(batch.schema(), vec![batch])
    }

    #[test]
    fn shared_prefixes_merge_and_values_are_means() {
        let input = paths(
            &["p", "p", "p", "q"],
            &[&["a", "x"], &["a", "y"], &["b"], &[]],
            &[1.0, 0.0, 0.5, 2.0],
        );
        let (nodes, accounting) = build(&input);
        // p: root, a, x, y, b; q: root only.
        assert_eq!(nodes.num_rows(), 6);
        let value = nodes
            .column(5)
            .as_primitive::<arrow_array::types::Float64Type>();
        assert_eq!(value.values().to_vec(), vec![0.5, 0.5, 1.0, 0.0, 0.5, 2.0]);
        let ids = nodes.column(1).as_primitive::<UInt64Type>();
        let tree = key_id(b"p");
        assert_eq!(ids.value(0), root_id(tree));
        assert_eq!(ids.value(1), child_id(root_id(tree), "a"));
        assert_eq!(ids.value(2), child_id(child_id(root_id(tree), "a"), "x"));
        assert_eq!(accounting.rows_used, 4);
        assert_eq!(accounting.counts["trees_out"], 2);
    }

    #[test]
    fn sibling_pairs_and_lists_use_the_shared_ranking() {
        let input = paths(
            &["p", "p", "p"],
            &[&["a", "x"], &["a", "y"], &["b"]],
            &[1.0, 0.0, 0.25],
        );
        let nodes = as_table(build(&input).0);
        let selection = Selection {
            strategy: Strategy::BestVsWorst,
            k: 1,
            min_margin: 0.0,
            ties: Ties::Drop,
            max_pairs: None,
            seed: 0,
        };
        let (pairs, accounting) = tree_pairs(
            &nodes,
            &TreePairOptions {
                columns: columns(),
                selection,
                min_visits: 1.0,
            },
        )
        .unwrap();
        let chosen = pairs.column(2).as_string_view();
        assert_eq!(chosen.iter().flatten().collect::<Vec<_>>(), vec!["a", "x"]);
        assert_eq!(accounting.rows_used, 4);
        assert_eq!(accounting.dropped["root"], 1);
        let (lists, _) = tree_lists(
            &nodes,
            &TreeListOptions {
                columns: columns(),
                rules: ListRules {
                    list_size: None,
                    min_list_size: 2,
                    ties: Ties::Keep,
                },
                min_visits: 2.0,
            },
        )
        .unwrap();
        // With min_visits 2 only "a" (2 visits) remains at the root: no list of 2.
        assert_eq!(lists.num_rows(), 0);
    }

    fn node_table(rows: &[(i64, i64, Option<i64>)]) -> Table {
        let batch = RecordBatch::try_from_iter(vec![
            (
                "tree_id",
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))) as ArrayRef,
            ),
            (
                "node_id",
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1))) as ArrayRef,
            ),
            (
                "parent_id",
                Arc::new(Int64Array::from_iter(rows.iter().map(|r| r.2))) as ArrayRef,
            ),
            (
                "step",
                Arc::new(StringArray::from_iter_values(rows.iter().map(|_| "s"))) as ArrayRef,
            ),
            (
                "value",
                Arc::new(Float64Array::from_iter_values(rows.iter().map(|_| 1.0))) as ArrayRef,
            ),
        ])
        .unwrap();
        Table::new(batch.schema(), vec![batch])
    }

    fn error_of(rows: &[(i64, i64, Option<i64>)]) -> String {
        let mut columns = columns();
        columns.visits = None;
        columns.prompt = None;
        let options = TreeListOptions {
            columns,
            rules: ListRules {
                list_size: None,
                min_list_size: 2,
                ties: Ties::Keep,
            },
            min_visits: 1.0,
        };
        tree_lists(&node_table(rows), &options)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn bad_node_tables_name_the_node() {
        let duplicate = error_of(&[(0, 1, None), (0, 2, Some(1)), (0, 2, Some(1))]);
        assert!(duplicate.contains("node 2 (row 2)"), "{duplicate}");
        let orphan = error_of(&[(0, 1, None), (0, 2, Some(9))]);
        assert!(orphan.starts_with("orphan: node 2 (row 1)"), "{orphan}");
        let roots = error_of(&[(0, 1, None), (0, 2, None)]);
        assert!(roots.starts_with("several roots in tree_id 0"), "{roots}");
        let cycle = error_of(&[(0, 1, None), (0, 2, Some(3)), (0, 3, Some(2))]);
        assert!(cycle.starts_with("cycle: node 2 (row 1)"), "{cycle}");
        let own_parent = error_of(&[(0, 5, Some(5))]);
        assert!(own_parent.starts_with("cycle: node 5"), "{own_parent}");
        // Trees are checked in parallel; the problem reported is the one a scan in row order
        // meets first, any duplicate id before the other problems.
        let first = error_of(&[(1, 1, None), (1, 2, Some(9)), (0, 1, None), (0, 1, None)]);
        assert!(
            first.starts_with("duplicate node id: node 1 (row 3)"),
            "{first}"
        );
        let first = error_of(&[(1, 1, None), (0, 1, None), (0, 2, Some(9)), (1, 2, Some(8))]);
        assert!(first.starts_with("orphan: node 2 (row 2)"), "{first}");
        // Across tasks: 600 trees, children in reverse tree order; the orphans of tree 0 (row
        // 1199) and tree 300 (row 899, a later task) are reported at the lower row.
        let mut rows: Vec<(i64, i64, Option<i64>)> = (0..600).map(|t| (t, 1, None)).collect();
        rows.extend(
            (0..600)
                .rev()
                .map(|t| (t, 2, Some(if t % 300 == 0 { 9 } else { 1 }))),
        );
        let first = error_of(&rows);
        assert!(first.starts_with("orphan: node 2 (row 899)"), "{first}");
        // The same node id in two trees is fine.
        let mut columns = columns();
        columns.visits = None;
        columns.prompt = None;
        let fine = node_table(&[(0, 1, None), (1, 1, None), (1, 2, Some(1))]);
        let options = TreeListOptions {
            columns,
            rules: ListRules {
                list_size: None,
                min_list_size: 1,
                ties: Ties::Keep,
            },
            min_visits: 1.0,
        };
        assert_eq!(tree_lists(&fine, &options).unwrap().0.num_rows(), 1);
    }
}
