//! The free-extent index: a B+tree keyed by the first address of each free extent and
//! augmented with the longest extent of every subtree.
//!
//! Leaves hold up to [`B`] extents in two sorted arrays; inner nodes hold, for each
//! child, its smallest first address (the routing key) and its longest extent span
//! (`last - first`). Nodes live in two arenas and refer to each other by `u32` index,
//! so the structure needs no `unsafe`. A node is about a dozen cache lines, of which a
//! binary search reads a few, so a lookup among 300,000 extents touches four nodes
//! rather than the twenty-odd scattered nodes of a binary tree: on a fragmented space
//! the cache misses are the cost.
//!
//! The augmentation lets a first-fit or top-down search skip every subtree that holds
//! no extent long enough. When every extent long enough has an aligned placement
//! (alignment at most the granule, the common case) a search follows a single
//! root-to-leaf path. Extents are disjoint and non-adjacent: the caller coalesces.
//!
//! Deletion is relaxed: a node is freed when it becomes empty and a root with one
//! child is collapsed, but half-empty siblings are not merged. Height only grows when
//! a full root splits, so it stays logarithmic in the largest number of extents the
//! tree has held.

/// Entries per node. Nodes split in halves, so a tree built in address order (the
/// usual way a space fragments) has half-full nodes: 24 entries each with 48 rather
/// than 16 with 32, a level less for most sizes (150,000 extents: three levels of
/// inner nodes instead of four), at the price of longer shifts inside a leaf.
const B: usize = 48;
/// Largest arena index in use (`u32::MAX` is reserved).
const LIMIT: usize = (u32::MAX - 1) as usize;

#[derive(Clone, Debug)]
struct Leaf {
    n: usize,
    first: [u64; B],
    last: [u64; B],
}

impl Leaf {
    /// The first extent of this leaf (the last when `high`) with `last - first` at least
    /// `span` where `place` finds room: its index, the extent and the start `place`
    /// gave.
    #[inline]
    fn first_fit<F>(&self, span: u64, place: &F, high: bool) -> Option<(usize, Extent, u64)>
    where
        F: Fn(Extent) -> Option<u64>,
    {
        let n = self.n.min(B);
        let try_one = |i: usize| {
            let e = Extent {
                first: self.first[i],
                last: self.last[i],
            };
            if e.last - e.first < span {
                return None;
            }
            place(e).map(|start| (i, e, start))
        };
        if high {
            (0..n).rev().find_map(try_one)
        } else {
            (0..n).find_map(try_one)
        }
    }
}

#[derive(Clone, Debug)]
struct Inner {
    n: usize,
    /// Smallest first address in each child.
    key: [u64; B],
    /// Longest span (`last - first`) in each child.
    max: [u64; B],
    child: [u32; B],
}

impl Leaf {
    const EMPTY: Leaf = Leaf {
        n: 0,
        first: [0; B],
        last: [0; B],
    };

    fn summary(&self) -> (u64, u64) {
        let n = self.n;
        let mut m = 0;
        for (f, l) in self.first[..n].iter().zip(&self.last[..n]) {
            m = m.max(l - f);
        }
        (m, self.first[0])
    }

    /// The longest span, known to be at most `cap`: the scan stops at the first entry
    /// that reaches it (after a removal, often the next entry).
    fn max_capped(&self, cap: u64) -> u64 {
        let n = self.n.min(B);
        let mut m = 0;
        for (f, l) in self.first[..n].iter().zip(&self.last[..n]) {
            m = m.max(l - f);
            if m >= cap {
                break;
            }
        }
        m
    }

    /// Index of the last entry with `first <= x`.
    fn floor(&self, x: u64) -> Option<usize> {
        self.first[..self.n]
            .partition_point(|&f| f <= x)
            .checked_sub(1)
    }
}

impl Inner {
    const EMPTY: Inner = Inner {
        n: 0,
        key: [0; B],
        max: [0; B],
        child: [0; B],
    };

    fn summary(&self) -> (u64, u64) {
        (
            self.max[..self.n].iter().copied().max().unwrap_or(0),
            self.key[0],
        )
    }

    /// The longest span of the children, known to be at most `cap`: the scan stops at
    /// the first child that reaches it.
    fn max_capped(&self, cap: u64) -> u64 {
        let n = self.n.min(B);
        let mut m = 0;
        for &x in &self.max[..n] {
            m = m.max(x);
            if m >= cap {
                break;
            }
        }
        m
    }

    /// The child to descend into for address `x`: the last whose key is `<= x`, or
    /// the first.
    fn route(&self, x: u64) -> usize {
        self.key[..self.n]
            .partition_point(|&k| k <= x)
            .saturating_sub(1)
    }

    fn insert_at(&mut self, i: usize, key: u64, max: u64, child: u32) {
        let n = self.n;
        self.key.copy_within(i..n, i + 1);
        self.max.copy_within(i..n, i + 1);
        self.child.copy_within(i..n, i + 1);
        self.key[i] = key;
        self.max[i] = max;
        self.child[i] = child;
        self.n = n + 1;
    }

    fn remove_at(&mut self, i: usize) {
        let n = self.n;
        self.key.copy_within(i + 1..n, i);
        self.max.copy_within(i + 1..n, i);
        self.child.copy_within(i + 1..n, i);
        self.n = n - 1;
    }
}

/// A free extent, `first..=last`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Extent {
    pub(crate) first: u64,
    pub(crate) last: u64,
}

/// An arena B+tree of disjoint extents ordered by address.
#[derive(Clone, Debug)]
pub(crate) struct ExtentTree {
    leaves: Vec<Leaf>,
    inners: Vec<Inner>,
    free_leaves: Vec<u32>,
    free_inners: Vec<u32>,
    root: u32,
    /// 0: the root is a leaf.
    height: usize,
    len: usize,
    /// Scratch: (inner node, child index) from the root down to the last leaf found.
    path: Vec<(u32, usize)>,
}

/// The arena is full.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ArenaFull;

fn at(i: u32) -> usize {
    usize::try_from(i).unwrap_or(usize::MAX)
}

fn id(i: usize) -> u32 {
    u32::try_from(i).unwrap_or(u32::MAX)
}

impl ExtentTree {
    pub(crate) fn new() -> Self {
        ExtentTree {
            leaves: vec![Leaf::EMPTY],
            inners: Vec::new(),
            free_leaves: Vec::new(),
            free_inners: Vec::new(),
            root: 0,
            height: 0,
            len: 0,
            path: Vec::new(),
        }
    }

    /// Number of extents.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Levels of inner nodes above the leaves (0: the root is a leaf); for tests.
    #[cfg(test)]
    pub(crate) fn height(&self) -> usize {
        self.height
    }

    /// Bytes of memory the index holds (capacity of its vectors).
    pub(crate) fn heap_bytes(&self) -> usize {
        self.leaves.capacity() * std::mem::size_of::<Leaf>()
            + self.inners.capacity() * std::mem::size_of::<Inner>()
            + (self.free_leaves.capacity() + self.free_inners.capacity()) * 4
    }

    /// Makes sure that an insertion can get every node it may need (a leaf and one
    /// inner node per level plus a new root), so that a caller can check for room
    /// before it changes anything.
    pub(crate) fn reserve_one(&self) -> Result<(), ArenaFull> {
        let inners_free = self.free_inners.len() + LIMIT.saturating_sub(self.inners.len());
        let leaves_free = self.free_leaves.len() + LIMIT.saturating_sub(self.leaves.len());
        if leaves_free >= 1 && inners_free > self.height {
            Ok(())
        } else {
            Err(ArenaFull)
        }
    }

    fn new_leaf(&mut self) -> u32 {
        match self.free_leaves.pop() {
            Some(i) => {
                self.leaves[at(i)].n = 0;
                i
            }
            None => {
                self.leaves.push(Leaf::EMPTY);
                id(self.leaves.len() - 1)
            }
        }
    }

    fn new_inner(&mut self) -> u32 {
        match self.free_inners.pop() {
            Some(i) => {
                self.inners[at(i)].n = 0;
                i
            }
            None => {
                self.inners.push(Inner::EMPTY);
                id(self.inners.len() - 1)
            }
        }
    }

    /// The leaf where `x` belongs, without recording the path.
    fn find_leaf(&self, x: u64) -> u32 {
        let mut node = self.root;
        for _ in 0..self.height {
            let inner = &self.inners[at(node)];
            node = inner.child[inner.route(x)];
        }
        node
    }

    /// The leaf where `x` belongs, recording the path in `self.path`.
    fn descend(&mut self, x: u64) -> u32 {
        self.path.clear();
        let mut node = self.root;
        for _ in 0..self.height {
            let inner = &self.inners[at(node)];
            let ci = inner.route(x);
            self.path.push((node, ci));
            node = inner.child[ci];
        }
        node
    }

    /// Writes a child's (max, min) into `path[depth - 1]` and on up to the root.
    ///
    /// A node's new longest span comes without a scan of its entries when it can: the
    /// parent records the node's longest span before this change (every node off the
    /// path is summarised exactly, and a node on it changed only in the entry being
    /// written), so a new value at least that long is the new longest, and an old
    /// value shorter than it leaves the longest where it was. Only a shrinking longest
    /// entry needs the scan. The root's own summary is recorded nowhere.
    ///
    /// Once a node's longest span is unchanged, only its smallest first address can
    /// still move, and only up through first children (`ci == 0`): the walk then
    /// writes routing keys alone, without the parent's record.
    fn propagate(&mut self, depth: usize, mut max: u64, mut min: u64) {
        let mut same_max = false;
        for k in (0..depth).rev() {
            let (node, ci) = self.path[k];
            let inner = &mut self.inners[at(node)];
            if same_max || inner.max[ci] == max {
                if inner.key[ci] == min {
                    return;
                }
                inner.key[ci] = min;
                if ci != 0 {
                    // The node's smallest first address is its key[0]: unchanged.
                    return;
                }
                // The node's longest span is unchanged and its smallest first
                // address is now `min`.
                same_max = true;
                continue;
            }
            let recorded = match k.checked_sub(1) {
                Some(up) => {
                    let (parent, pci) = self.path[up];
                    Some(self.inners[at(parent)].max[pci])
                }
                None => None,
            };
            let inner = &mut self.inners[at(node)];
            let old = inner.max[ci];
            if old == max && inner.key[ci] == min {
                return;
            }
            inner.max[ci] = max;
            inner.key[ci] = min;
            let Some(recorded) = recorded else {
                return;
            };
            max = if max >= recorded {
                max
            } else if old < recorded {
                recorded
            } else {
                // Every entry is at most `recorded` now (the changed one is below it).
                inner.max_capped(recorded)
            };
            min = inner.key[0];
        }
    }

    fn fix_leaf(&mut self, leaf: u32) {
        let (max, min) = self.leaves[at(leaf)].summary();
        let depth = self.path.len();
        self.propagate(depth, max, min);
    }

    /// [`Self::fix_leaf`] after a change of one entry of a non-empty `leaf`: an entry
    /// of span `old` (`None`: a new entry) became one of span `new` (`None`: the entry
    /// was removed). The leaf's new longest span follows from the one its parent
    /// records, as in [`Self::propagate`]; only a shrinking longest entry rescans.
    fn fix_leaf_one(&mut self, leaf: u32, old: Option<u64>, new: Option<u64>) {
        let depth = self.path.len();
        let Some(&(parent, ci)) = depth.checked_sub(1).and_then(|d| self.path.get(d)) else {
            return; // the leaf is the root: nothing records it
        };
        let recorded = self.inners[at(parent)].max[ci];
        let l = &self.leaves[at(leaf)];
        let max = match (old, new) {
            (_, Some(new)) if new >= recorded => new,
            // Every entry is at most `recorded` now (a new one is below it).
            (Some(old), _) if old >= recorded => l.max_capped(recorded),
            _ => recorded,
        };
        let min = l.first[0];
        self.propagate(depth, max, min);
    }

    /// Inserts a new extent. The caller guarantees it is disjoint from (and not adjacent
    /// to) every extent present.
    pub(crate) fn insert(&mut self, first: u64, last: u64) -> Result<(), ArenaFull> {
        self.reserve_one()?;
        let leaf = self.descend(first);
        let l = &self.leaves[at(leaf)];
        let pos = l.first[..l.n].partition_point(|&f| f < first);
        self.insert_at_pos(leaf, pos, first, last);
        Ok(())
    }

    /// Inserts at position `pos` of `leaf`, reached by the path in `self.path`. The
    /// caller has checked [`Self::reserve_one`] and that the order is kept.
    pub(crate) fn insert_at_pos(&mut self, leaf: u32, pos: usize, first: u64, last: u64) {
        let l = &mut self.leaves[at(leaf)];
        self.len += 1;
        if l.n < B {
            insert_leaf(l, pos, first, last);
            self.fix_leaf_one(leaf, None, Some(last - first));
            return;
        }
        // Split the full leaf: the upper half moves to a new right sibling.
        let right = self.new_leaf();
        let (lo, hi) = pair_mut(&mut self.leaves, at(leaf), at(right));
        let half = B / 2;
        hi.first[..B - half].copy_from_slice(&lo.first[half..]);
        hi.last[..B - half].copy_from_slice(&lo.last[half..]);
        hi.n = B - half;
        lo.n = half;
        if pos <= half {
            insert_leaf(lo, pos, first, last);
        } else {
            insert_leaf(hi, pos - half, first, last);
        }
        let (rmax, rmin) = hi.summary();
        self.fix_leaf(leaf);
        let depth = self.path.len();
        self.insert_sibling(depth, right, rmin, rmax);
    }

    /// Puts `new` right after the node at `depth` of the path (the node below
    /// `path[depth - 1]`, or the root when `depth` is 0), splitting upwards as needed.
    fn insert_sibling(&mut self, depth: usize, new: u32, key: u64, max: u64) {
        if depth == 0 {
            let old = self.root;
            let (omax, omin) = if self.height == 0 {
                self.leaves[at(old)].summary()
            } else {
                self.inners[at(old)].summary()
            };
            let r = self.new_inner();
            let root = &mut self.inners[at(r)];
            root.n = 2;
            root.key[..2].copy_from_slice(&[omin, key]);
            root.max[..2].copy_from_slice(&[omax, max]);
            root.child[..2].copy_from_slice(&[old, new]);
            self.root = r;
            self.height += 1;
            return;
        }
        let (p, ci) = self.path[depth - 1];
        if self.inners[at(p)].n < B {
            let parent = &mut self.inners[at(p)];
            parent.insert_at(ci + 1, key, max, new);
            let (pmax, pmin) = parent.summary();
            self.propagate(depth - 1, pmax, pmin);
            return;
        }
        let q = self.new_inner();
        let (lo, hi) = pair_mut(&mut self.inners, at(p), at(q));
        let half = B / 2;
        hi.key[..B - half].copy_from_slice(&lo.key[half..]);
        hi.max[..B - half].copy_from_slice(&lo.max[half..]);
        hi.child[..B - half].copy_from_slice(&lo.child[half..]);
        hi.n = B - half;
        lo.n = half;
        if ci < half {
            lo.insert_at(ci + 1, key, max, new);
        } else {
            hi.insert_at(ci + 1 - half, key, max, new);
        }
        let (qmax, qmin) = hi.summary();
        let (pmax, pmin) = lo.summary();
        self.propagate(depth - 1, pmax, pmin);
        self.insert_sibling(depth - 1, q, qmin, qmax);
    }

    /// Removes the extent that starts at `first` (no-op if there is none).
    pub(crate) fn remove(&mut self, first: u64) {
        let leaf = self.descend(first);
        let l = &self.leaves[at(leaf)];
        if let Some(i) = l.floor(first).filter(|&i| l.first[i] == first) {
            self.remove_at(leaf, i);
        }
    }

    /// Removes entry `i` of `leaf`, reached by the path in `self.path`.
    pub(crate) fn remove_at(&mut self, leaf: u32, i: usize) {
        let l = &mut self.leaves[at(leaf)];
        if i >= l.n {
            return;
        }
        let n = l.n;
        let span = l.last[i] - l.first[i];
        l.first.copy_within(i + 1..n, i);
        l.last.copy_within(i + 1..n, i);
        l.n = n - 1;
        self.len -= 1;
        if l.n > 0 || self.height == 0 {
            if l.n > 0 {
                self.fix_leaf_one(leaf, Some(span), None);
            }
            return;
        }
        // The leaf is empty: unlink it, and every ancestor that empties with it.
        self.free_leaves.push(leaf);
        let mut depth = self.path.len();
        loop {
            let (p, ci) = self.path[depth - 1];
            let parent = &mut self.inners[at(p)];
            parent.remove_at(ci);
            if parent.n > 0 {
                let (pmax, pmin) = parent.summary();
                self.propagate(depth - 1, pmax, pmin);
                break;
            }
            self.free_inners.push(p);
            depth -= 1;
            if depth == 0 {
                // Everything is gone: the root becomes an empty leaf.
                self.height = 0;
                self.root = self.new_leaf();
                return;
            }
        }
        while self.height > 0 && self.inners[at(self.root)].n == 1 {
            let old = self.root;
            self.root = self.inners[at(old)].child[0];
            self.free_inners.push(old);
            self.height -= 1;
        }
    }

    /// Replaces the extent starting at `key` by `new`. The caller guarantees that `new`
    /// keeps its place in the order (it stays between its neighbours).
    pub(crate) fn update(&mut self, key: u64, new: Extent) {
        let leaf = self.descend(key);
        let l = &mut self.leaves[at(leaf)];
        if let Some(i) = l.floor(key).filter(|&i| l.first[i] == key) {
            let old = l.last[i] - l.first[i];
            l.first[i] = new.first;
            l.last[i] = new.last;
            self.fix_leaf_one(leaf, Some(old), Some(new.last - new.first));
        }
    }

    /// Descends to the leaf where `x` belongs (recording the path) and returns it with
    /// the index of its last extent starting at or below `x`.
    pub(crate) fn locate(&mut self, x: u64) -> (u32, Option<usize>) {
        let leaf = self.descend(x);
        (leaf, self.leaves[at(leaf)].floor(x))
    }

    /// Entry `i` of `leaf`.
    pub(crate) fn get(&self, leaf: u32, i: usize) -> Option<Extent> {
        let l = &self.leaves[at(leaf)];
        (i < l.n).then(|| Extent {
            first: l.first[i],
            last: l.last[i],
        })
    }

    /// Replaces entry `i` of `leaf` (reached by `self.path`); the caller keeps the order.
    pub(crate) fn set_at(&mut self, leaf: u32, i: usize, e: Extent) {
        let l = &mut self.leaves[at(leaf)];
        if i < l.n {
            let old = l.last[i] - l.first[i];
            l.first[i] = e.first;
            l.last[i] = e.last;
            self.fix_leaf_one(leaf, Some(old), Some(e.last - e.first));
        }
    }

    /// Like [`Self::search_low`] / [`Self::search_high`], but leaves the path to the
    /// extent found in `self.path` and returns its leaf and index, for an in-place
    /// change.
    pub(crate) fn search_mut<F>(
        &mut self,
        span: u64,
        place: &F,
        high: bool,
    ) -> Option<(u32, usize, Extent, u64)>
    where
        F: Fn(Extent) -> Option<u64>,
    {
        if let Some(answer) = self.search_mut_greedy(span, place, high) {
            return answer;
        }
        self.path.clear();
        let (root, height) = (self.root, self.height);
        self.search_mut_at(root, height, span, place, high)
    }

    /// The common case of [`Self::search_mut`], without recursion: at each level the
    /// first child (the last when `high`) whose longest extent spans at least `span`,
    /// then the first such extent of that leaf where `place` finds room. Every extent
    /// before it (after it when `high`) spans less than `span` (the augmentation is
    /// exact), so it is the answer of the full search. `Some(None)` when no extent
    /// spans `span` (the root has no such child); `None` when the path found has no
    /// room (large alignments): the caller then runs the full search.
    #[allow(clippy::type_complexity)]
    fn search_mut_greedy<F>(
        &mut self,
        span: u64,
        place: &F,
        high: bool,
    ) -> Option<Option<(u32, usize, Extent, u64)>>
    where
        F: Fn(Extent) -> Option<u64>,
    {
        self.path.clear();
        let mut node = self.root;
        for level in 0..self.height {
            let inner = &self.inners[at(node)];
            let n = inner.n.min(B);
            let fits = |&i: &usize| inner.max[i] >= span;
            let found = if high {
                (0..n).rev().find(fits)
            } else {
                (0..n).find(fits)
            };
            let Some(i) = found else {
                // Below the root this cannot happen while the augmentation is exact;
                // the full search decides then.
                return (level == 0).then_some(None);
            };
            self.path.push((node, i));
            node = inner.child[i];
        }
        let hit = self.leaves[at(node)]
            .first_fit(span, place, high)
            .map(|(i, e, start)| (node, i, e, start));
        hit.map(Some)
    }

    fn search_mut_at<F>(
        &mut self,
        node: u32,
        h: usize,
        span: u64,
        place: &F,
        high: bool,
    ) -> Option<(u32, usize, Extent, u64)>
    where
        F: Fn(Extent) -> Option<u64>,
    {
        if h == 0 {
            let l = &self.leaves[at(node)];
            let n = l.n;
            for k in 0..n {
                let i = if high { n - 1 - k } else { k };
                let e = Extent {
                    first: l.first[i],
                    last: l.last[i],
                };
                if e.last - e.first >= span {
                    if let Some(start) = place(e) {
                        return Some((node, i, e, start));
                    }
                }
            }
            return None;
        }
        let n = self.inners[at(node)].n;
        for k in 0..n {
            let i = if high { n - 1 - k } else { k };
            let inner = &self.inners[at(node)];
            if inner.max[i] < span {
                continue;
            }
            let child = inner.child[i];
            self.path.push((node, i));
            if let Some(hit) = self.search_mut_at(child, h - 1, span, place, high) {
                return Some(hit);
            }
            self.path.pop();
        }
        None
    }

    /// The extent with the largest `first <= addr`.
    pub(crate) fn floor(&self, addr: u64) -> Option<Extent> {
        let l = &self.leaves[at(self.find_leaf(addr))];
        l.floor(addr).map(|i| Extent {
            first: l.first[i],
            last: l.last[i],
        })
    }

    /// The lowest extent in which `place` finds room, visiting only subtrees whose
    #[cfg(test)]
    /// longest extent spans at least `span` (= size - 1).
    pub(crate) fn search_low<F>(&self, span: u64, place: &F) -> Option<(Extent, u64)>
    where
        F: Fn(Extent) -> Option<u64>,
    {
        self.search(self.root, self.height, span, place, false)
    }

    /// The highest extent in which `place` finds room (mirror of [`Self::search_low`]).
    #[cfg(test)]
    pub(crate) fn search_high<F>(&self, span: u64, place: &F) -> Option<(Extent, u64)>
    where
        F: Fn(Extent) -> Option<u64>,
    {
        self.search(self.root, self.height, span, place, true)
    }

    #[cfg(test)]
    fn search<F>(
        &self,
        node: u32,
        h: usize,
        span: u64,
        place: &F,
        high: bool,
    ) -> Option<(Extent, u64)>
    where
        F: Fn(Extent) -> Option<u64>,
    {
        if h == 0 {
            return self.leaves[at(node)]
                .first_fit(span, place, high)
                .map(|(_, e, start)| (e, start));
        }
        let inner = &self.inners[at(node)];
        let try_child = |i: usize| {
            if inner.max[i] < span {
                return None;
            }
            self.search(inner.child[i], h - 1, span, place, high)
        };
        if high {
            (0..inner.n).rev().find_map(try_child)
        } else {
            (0..inner.n).find_map(try_child)
        }
    }

    /// Every extent in ascending order.
    pub(crate) fn extents(&self) -> Vec<Extent> {
        let mut out = Vec::with_capacity(self.len);
        self.collect(self.root, self.height, &mut out);
        out
    }

    fn collect(&self, node: u32, h: usize, out: &mut Vec<Extent>) {
        if h == 0 {
            let l = &self.leaves[at(node)];
            for i in 0..l.n {
                out.push(Extent {
                    first: l.first[i],
                    last: l.last[i],
                });
            }
            return;
        }
        let inner = &self.inners[at(node)];
        for i in 0..inner.n {
            self.collect(inner.child[i], h - 1, out);
        }
    }

    /// Checks the tree invariants (order, keys, augmentation, no empty nodes); for
    /// tests.
    #[cfg(test)]
    pub(crate) fn check(&self) {
        fn walk(t: &ExtentTree, node: u32, h: usize, count: &mut usize) -> (u64, u64) {
            if h == 0 {
                let l = &t.leaves[at(node)];
                assert!(l.n > 0 || t.height == 0);
                *count += l.n;
                if l.n == 0 {
                    return (0, 0);
                }
                return l.summary();
            }
            let inner = &t.inners[at(node)];
            assert!(inner.n > 0);
            for i in 0..inner.n {
                let (m, k) = walk(t, inner.child[i], h - 1, count);
                assert_eq!(inner.max[i], m, "max of child {i}");
                assert_eq!(inner.key[i], k, "key of child {i}");
            }
            inner.summary()
        }
        let mut count = 0;
        walk(self, self.root, self.height, &mut count);
        assert_eq!(count, self.len);
        let e = self.extents();
        for w in e.windows(2) {
            assert!(w[0].first <= w[0].last);
            assert!(w[0].last < w[1].first);
        }
        if self.height > 0 {
            assert!(self.inners[at(self.root)].n >= 2);
        }
    }
}

fn insert_leaf(l: &mut Leaf, pos: usize, first: u64, last: u64) {
    let n = l.n;
    l.first.copy_within(pos..n, pos + 1);
    l.last.copy_within(pos..n, pos + 1);
    l.first[pos] = first;
    l.last[pos] = last;
    l.n = n + 1;
}

/// Two distinct elements of a vector, mutably.
fn pair_mut<T>(v: &mut [T], a: usize, b: usize) -> (&mut T, &mut T) {
    if a < b {
        let (x, y) = v.split_at_mut(b);
        (&mut x[a], &mut y[0])
    } else {
        let (x, y) = v.split_at_mut(a);
        (&mut y[0], &mut x[b])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn any(e: Extent) -> Option<u64> {
        Some(e.first)
    }

    #[test]
    fn insert_remove_update_keep_the_invariants() {
        let mut t = ExtentTree::new();
        let n = 5000u64;
        for i in 0..n {
            let k = (i * 7919) % n;
            t.insert(k * 10, k * 10 + (k % 5)).unwrap();
            if i % 97 == 0 {
                t.check();
            }
        }
        t.check();
        assert!(t.height >= 2);
        assert_eq!(t.len(), 5000);
        assert_eq!(
            t.floor(15),
            Some(Extent {
                first: 10,
                last: 11
            })
        );
        assert_eq!(t.floor(0), Some(Extent { first: 0, last: 0 }));
        // k = 4999: 4999 % 5 == 4.
        assert_eq!(
            t.floor(u64::MAX),
            Some(Extent {
                first: 49990,
                last: 49994
            })
        );
        // First extent spanning at least 4 (k % 5 == 4): k = 4 -> [40, 44].
        assert_eq!(
            t.search_low(4, &any),
            Some((
                Extent {
                    first: 40,
                    last: 44
                },
                40
            ))
        );
        assert_eq!(
            t.search_high(4, &any),
            Some((
                Extent {
                    first: 49990,
                    last: 49994
                },
                49990
            ))
        );
        assert_eq!(t.search_low(5, &any), None);
        t.update(
            40,
            Extent {
                first: 41,
                last: 42,
            },
        );
        t.check();
        assert_eq!(
            t.search_low(4, &any).map(|x| x.0),
            Some(Extent {
                first: 90,
                last: 94
            })
        );
        for i in 0..n {
            let k = (i * 4201) % n;
            let first = if k == 4 { 41 } else { k * 10 };
            t.remove(first);
            if i % 89 == 0 {
                t.check();
            }
        }
        t.check();
        assert_eq!(t.len(), 0);
        assert_eq!(t.height, 0);
        assert!(t.extents().is_empty());
        assert_eq!(t.floor(100), None);
        // Reuse after emptying.
        t.insert(5, 9).unwrap();
        t.check();
        assert_eq!(t.floor(7), Some(Extent { first: 5, last: 9 }));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 48, ..Default::default() })]

        /// Random inserts, removes and updates that grow and shrink spans (what moves
        /// the longest span of a node up and down), with every invariant, the
        /// augmentation included, checked after every operation against a model.
        #[test]
        fn augmentation_stays_exact(
            ops in proptest::collection::vec((0u8..4, 0u64..4000, 0u64..90), 1..1500),
        ) {
            let mut t = ExtentTree::new();
            // slot -> (first, last): extents stay inside [slot * 100, slot * 100 + 89].
            // Every other slot starts filled: 2,000 extents make three levels.
            let mut m = std::collections::BTreeMap::new();
            for slot in (0..4000u64).step_by(2) {
                let (f, l) = (slot * 100, slot * 100 + (slot * 37) % 90);
                t.insert(f, l).unwrap();
                m.insert(slot, (f, l));
            }
            t.check();
            proptest::prop_assert!(t.height >= 2);
            for (op, slot, len) in ops {
                let base = slot * 100;
                match (op, m.get(&slot).copied()) {
                    (0 | 1, None) => {
                        t.insert(base, base + len).unwrap();
                        m.insert(slot, (base, base + len));
                    }
                    (2, Some((f, _))) => {
                        t.remove(f);
                        m.remove(&slot);
                    }
                    (_, Some((f, _))) => {
                        // Keep the first address half the time, move it up otherwise.
                        let nf = base + (len % 2) * (len / 2);
                        t.update(f, Extent { first: nf, last: base + len });
                        m.insert(slot, (nf, base + len));
                    }
                    _ => {}
                }
                t.check();
                let want: Vec<Extent> = m.values().map(|&(first, last)| Extent { first, last }).collect();
                proptest::prop_assert_eq!(t.extents(), want);
            }
        }
    }

    #[test]
    fn ascending_and_descending_fills() {
        for desc in [false, true] {
            let mut t = ExtentTree::new();
            for i in 0..3000u64 {
                let k = if desc { 3000 - i } else { i };
                t.insert(k * 4, k * 4 + 1).unwrap();
            }
            t.check();
            for i in 0..3000u64 {
                if i % 3 != 0 {
                    let k = if desc { 3000 - i } else { i };
                    t.remove(k * 4);
                }
            }
            t.check();
            assert_eq!(t.len(), 1000);
        }
    }
}
