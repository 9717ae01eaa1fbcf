//! The shape of one trace: its critical path (the chain of work the trace's end waited on),
//! and two traces aligned span by span by where each span sits in its tree.
//!
//! Spans come as [`TraceSpan`]s indexed by their place in a slice; a parent index that is
//! out of range or points at the span itself makes the span a root, as a span whose parent
//! was never stored is. Both functions take any input without panicking and in
//! `O(n log n)` time, however deep or wide the tree.

use std::collections::HashMap;

/// One span's place in its trace and its time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceSpan {
    pub parent: Option<usize>,
    pub start_unix_nanos: u64,
    pub end_unix_nanos: u64,
    /// What aligns it with a span of another trace: service and operation, say.
    pub label: String,
}

/// A stretch of time during which the trace's end waited on this span's own work (not on a
/// child's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub span: usize,
    pub start_unix_nanos: u64,
    pub end_unix_nanos: u64,
}

/// Children of each span, and the roots, with bad parent links made roots.
fn tree(spans: &[TraceSpan]) -> (Vec<Vec<usize>>, Vec<usize>) {
    let mut children = vec![Vec::new(); spans.len()];
    let mut roots = Vec::new();
    for (i, span) in spans.iter().enumerate() {
        match span.parent {
            Some(p) if p < spans.len() && p != i => children[p].push(i),
            _ => roots.push(i),
        }
    }
    // A cycle of parents (hostile input) leaves spans no root reaches: make the first of
    // each unreached group a root.
    let mut reached = vec![false; spans.len()];
    let mut stack = roots.clone();
    while let Some(i) = stack.pop() {
        if !std::mem::replace(&mut reached[i], true) {
            stack.extend(&children[i]);
        }
    }
    for i in 0..spans.len() {
        if !reached[i] {
            if let Some(p) = spans[i].parent {
                children[p].retain(|&c| c != i);
            }
            roots.push(i);
            let mut stack = vec![i];
            while let Some(j) = stack.pop() {
                if !std::mem::replace(&mut reached[j], true) {
                    stack.extend(&children[j]);
                }
            }
        }
    }
    (children, roots)
}

/// The critical path of each root's tree, latest first: walking back from a span's end, the
/// child that finished last before that moment is what the span waited on; the span's own
/// segments are the gaps no child covers. Children are clipped to their parent's time, so
/// clock skew between services cannot stretch the path beyond the root.
pub fn critical_path(spans: &[TraceSpan]) -> Vec<Segment> {
    let (children, roots) = tree(spans);
    // A span that ends before it starts (bad input) takes no time.
    let end = |i: usize| spans[i].end_unix_nanos.max(spans[i].start_unix_nanos);
    // Each span's children by end, latest first; `next[i]` is how far the walk got.
    let by_end: Vec<Vec<usize>> = children
        .into_iter()
        .map(|mut kids| {
            kids.sort_by_key(|&k| std::cmp::Reverse((end(k), k)));
            kids
        })
        .collect();
    let mut next = vec![0usize; spans.len()];
    let mut segments = Vec::new();
    // (span, its clipped start, the moment the walk is at within it)
    let mut stack: Vec<(usize, u64, u64)> =
        roots.iter().map(|&r| (r, spans[r].start_unix_nanos, end(r))).collect();
    while let Some((i, low, at)) = stack.pop() {
        if at <= low {
            continue;
        }
        // The child that ended last before `at` (and after `low`): children skipped for
        // starting at or after `at` stay skipped, since `at` only moves back.
        let kids = &by_end[i];
        let mut pick = None;
        while let Some(&k) = kids.get(next[i]) {
            next[i] += 1;
            let child = &spans[k];
            if child.start_unix_nanos < at && end(k) > low {
                pick = Some(k);
                break;
            }
        }
        match pick {
            None => segments.push(Segment { span: i, start_unix_nanos: low, end_unix_nanos: at }),
            Some(k) => {
                let child = &spans[k];
                let child_end = end(k).min(at);
                let child_start = child.start_unix_nanos.max(low);
                if child_end < at {
                    segments.push(Segment {
                        span: i,
                        start_unix_nanos: child_end,
                        end_unix_nanos: at,
                    });
                }
                stack.push((i, low, child_start));
                stack.push((k, child_start, child_end));
            }
        }
    }
    segments
}

/// A row of two traces side by side: the span of each that sits at the same place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Aligned {
    /// Depth in the tree (roots are 0).
    pub depth: usize,
    pub label: String,
    pub a: Option<usize>,
    pub b: Option<usize>,
}

/// Aligns two traces by operation path: spans match when their labels match and their
/// parents matched, the k-th sibling with a label matching the other side's k-th (siblings
/// in start order). Rows come in tree order (a parent before its children; siblings by
/// start, `a`'s first), with spans only one side has in their place.
pub fn align(a: &[TraceSpan], b: &[TraceSpan]) -> Vec<Aligned> {
    let (a_children, a_roots) = tree(a);
    let (b_children, b_roots) = tree(b);
    let mut rows = Vec::new();
    // (depth, a's siblings, b's siblings), expanded in reverse so the stack pops in order.
    let mut stack: Vec<(usize, Option<usize>, Option<usize>)> = Vec::new();
    let push_level = |stack: &mut Vec<(usize, Option<usize>, Option<usize>)>,
                      depth: usize,
                      a_kids: &[usize],
                      b_kids: &[usize]| {
        for (x, y) in pair_siblings(a, a_kids, b, b_kids).into_iter().rev() {
            stack.push((depth, x, y));
        }
    };
    push_level(&mut stack, 0, &a_roots, &b_roots);
    while let Some((depth, x, y)) = stack.pop() {
        let label = x.map(|i| &a[i]).or(y.map(|j| &b[j])).map(|s| s.label.clone());
        rows.push(Aligned { depth, label: label.unwrap_or_default(), a: x, b: y });
        let a_kids = x.map_or(&[][..], |i| &a_children[i]);
        let b_kids = y.map_or(&[][..], |j| &b_children[j]);
        push_level(&mut stack, depth + 1, a_kids, b_kids);
    }
    rows
}

/// Siblings of both sides paired by (label, occurrence), in start order.
fn pair_siblings(
    a: &[TraceSpan],
    a_kids: &[usize],
    b: &[TraceSpan],
    b_kids: &[usize],
) -> Vec<(Option<usize>, Option<usize>)> {
    let ordered = |spans: &[TraceSpan], kids: &[usize]| {
        let mut kids = kids.to_vec();
        kids.sort_by_key(|&k| (spans[k].start_unix_nanos, k));
        kids
    };
    let (a_kids, b_kids) = (ordered(a, a_kids), ordered(b, b_kids));
    let key = |spans: &[TraceSpan], kids: &[usize]| -> Vec<(String, usize)> {
        let mut seen: HashMap<&str, usize> = HashMap::new();
        kids.iter()
            .map(|&k| {
                let n = seen.entry(spans[k].label.as_str()).or_default();
                *n += 1;
                (spans[k].label.clone(), *n)
            })
            .collect()
    };
    let mut b_by_key: HashMap<(String, usize), usize> =
        key(b, &b_kids).into_iter().zip(b_kids.iter().copied()).collect();
    let (a_first, b_first) = (first_start(a, &a_kids), first_start(b, &b_kids));
    let mut pairs: Vec<(Option<usize>, Option<usize>, u64)> = Vec::new();
    for (k, i) in key(a, &a_kids).into_iter().zip(a_kids.iter().copied()) {
        let j = b_by_key.remove(&k);
        pairs.push((Some(i), j, a[i].start_unix_nanos - a_first));
    }
    // What only `b` has, placed by its offset from `b`'s first sibling.
    let unmatched: std::collections::HashSet<usize> = b_by_key.into_values().collect();
    for &j in b_kids.iter().filter(|j| unmatched.contains(j)) {
        pairs.push((None, Some(j), b[j].start_unix_nanos - b_first));
    }
    pairs.sort_by_key(|&(x, y, offset)| (offset, x.is_none(), x, y));
    pairs.into_iter().map(|(x, y, _)| (x, y)).collect()
}

/// The earliest start among `kids` (0 when there are none).
fn first_start(spans: &[TraceSpan], kids: &[usize]) -> u64 {
    kids.iter().map(|&k| spans[k].start_unix_nanos).min().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn span(parent: Option<usize>, start: u64, end: u64, label: &str) -> TraceSpan {
        TraceSpan { parent, start_unix_nanos: start, end_unix_nanos: end, label: label.into() }
    }

    /// Own time on the path per span, summed.
    fn on_path(spans: &[TraceSpan]) -> Vec<u64> {
        let mut own = vec![0; spans.len()];
        for s in critical_path(spans) {
            own[s.span] += s.end_unix_nanos - s.start_unix_nanos;
        }
        own
    }

    #[test]
    fn the_path_follows_what_the_end_waited_on() {
        // root 0–100 calls a (10–40) then, in parallel, b (45–90) and c (45–60); b ends
        // last, so c is off the path; b calls d (50–85).
        let spans = [
            span(None, 0, 100, "root"),
            span(Some(0), 10, 40, "a"),
            span(Some(0), 45, 90, "b"),
            span(Some(0), 45, 60, "c"),
            span(Some(2), 50, 85, "d"),
        ];
        assert_eq!(on_path(&spans), [10 + 5 + 10, 30, 5 + 5, 0, 35]);
        assert_eq!(on_path(&spans).iter().sum::<u64>(), 100);
    }

    #[test]
    fn children_are_clipped_to_their_parent() {
        // A child that (by clock skew) starts before and ends after its parent.
        let spans = [span(None, 100, 200, "root"), span(Some(0), 50, 250, "skewed")];
        assert_eq!(on_path(&spans), [0, 100]);
    }

    #[test]
    fn bad_parents_and_cycles_become_roots() {
        let spans =
            [span(Some(1), 0, 10, "x"), span(Some(0), 0, 10, "y"), span(Some(9), 5, 8, "z")];
        let own = on_path(&spans);
        assert_eq!(own[2], 3, "{own:?}");
        assert_eq!(own[0] + own[1], 10, "{own:?}");
    }

    #[test]
    fn a_deep_chain_does_not_overflow_the_stack() {
        let n = 200_000u64;
        let spans: Vec<TraceSpan> =
            (0..n).map(|i| span(i.checked_sub(1).map(|p| p as usize), i, 2 * n - i, "s")).collect();
        assert_eq!(on_path(&spans).iter().sum::<u64>(), 2 * n);
        assert_eq!(align(&spans, &spans).len(), n as usize);
    }

    #[test]
    fn traces_align_by_operation_path_and_occurrence() {
        let a = [
            span(None, 0, 100, "checkout"),
            span(Some(0), 10, 20, "db"),
            span(Some(0), 30, 40, "db"),
            span(Some(0), 50, 60, "cache"),
        ];
        // b calls db three times and no cache, and its root has another start.
        let b = [
            span(None, 1_000, 1_200, "checkout"),
            span(Some(0), 1_010, 1_020, "db"),
            span(Some(0), 1_030, 1_040, "db"),
            span(Some(0), 1_050, 1_060, "db"),
        ];
        let aligned = align(&a, &b);
        let rows: Vec<(usize, &str, Option<usize>, Option<usize>)> =
            aligned.iter().map(|r| (r.depth, r.label.as_str(), r.a, r.b)).collect();
        assert_eq!(
            rows,
            [
                (0, "checkout", Some(0), Some(0)),
                (1, "db", Some(1), Some(1)),
                (1, "db", Some(2), Some(2)),
                (1, "cache", Some(3), None),
                (1, "db", None, Some(3)),
            ]
        );
    }

    fn arbitrary_trace() -> impl Strategy<Value = Vec<TraceSpan>> {
        prop::collection::vec(
            (prop::option::of(0usize..40), 0u64..1_000, 0u64..1_000, 0u8..4),
            0..40,
        )
        .prop_map(|raw| {
            raw.into_iter()
                .map(|(parent, start, length, label)| {
                    span(parent, start, start + length, &format!("op{label}"))
                })
                .collect()
        })
    }

    proptest! {
        #[test]
        fn the_path_tiles_each_root_without_overlap(spans in arbitrary_trace()) {
            let segments = critical_path(&spans);
            for s in &segments {
                prop_assert!(s.start_unix_nanos < s.end_unix_nanos);
                let span = &spans[s.span];
                prop_assert!(span.start_unix_nanos <= s.start_unix_nanos);
                prop_assert!(s.end_unix_nanos <= span.end_unix_nanos);
            }
            // Within one root's tree, segments never overlap, and they cover the root.
            let (children, roots) = tree(&spans);
            let mut root_of = vec![usize::MAX; spans.len()];
            for &r in &roots {
                let mut stack = vec![r];
                while let Some(i) = stack.pop() {
                    root_of[i] = r;
                    stack.extend(&children[i]);
                }
            }
            for &r in &roots {
                let mut mine: Vec<&Segment> =
                    segments.iter().filter(|s| root_of[s.span] == r).collect();
                mine.sort_by_key(|s| s.start_unix_nanos);
                for pair in mine.windows(2) {
                    prop_assert!(pair[0].end_unix_nanos <= pair[1].start_unix_nanos, "{:?}", pair);
                }
                let total: u64 = mine.iter().map(|s| s.end_unix_nanos - s.start_unix_nanos).sum();
                prop_assert_eq!(total, spans[r].end_unix_nanos - spans[r].start_unix_nanos);
            }
        }

        #[test]
        fn alignment_shows_every_span_once(a in arbitrary_trace(), b in arbitrary_trace()) {
            let rows = align(&a, &b);
            let mut seen_a: Vec<usize> = rows.iter().filter_map(|r| r.a).collect();
            let mut seen_b: Vec<usize> = rows.iter().filter_map(|r| r.b).collect();
            seen_a.sort_unstable();
            seen_b.sort_unstable();
            prop_assert_eq!(seen_a, (0..a.len()).collect::<Vec<_>>());
            prop_assert_eq!(seen_b, (0..b.len()).collect::<Vec<_>>());
            for r in &rows {
                if let (Some(x), Some(y)) = (r.a, r.b) {
                    prop_assert_eq!(&a[x].label, &b[y].label);
                }
            }
        }
    }
}
