//! The free-extent index: a treap keyed by the first address of each free extent and
//! augmented with the longest extent of every subtree.
//!
//! Nodes live in an arena (`Vec<Node>`) and refer to each other by `u32` index, so the
//! structure needs no `unsafe` and no per-node heap allocation. Priorities come from a
//! xorshift generator; the expected depth is about `2 ln n` (25 levels for 300,000
//! extents), whatever the order of the operations.
//!
//! The augmentation (`max_span`, the largest `last - first` in the subtree) lets a
//! first-fit or top-down search skip every subtree that holds no extent long enough,
//! so when every extent can hold an aligned placement as soon as it is long enough
//! (alignment at most the granule, the common case) a search follows one root-to-leaf
//! path. Extents are disjoint and non-adjacent: the caller coalesces.

/// The "no node" index.
const NIL: u32 = u32::MAX;

#[derive(Clone, Copy, Debug)]
struct Node {
    first: u64,
    last: u64,
    /// The largest `last - first` in this subtree.
    max_span: u64,
    left: u32,
    right: u32,
    prio: u32,
}

/// A free extent, `first..=last`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Extent {
    pub(crate) first: u64,
    pub(crate) last: u64,
}

/// An arena treap of disjoint extents ordered by address.
#[derive(Clone, Debug)]
pub(crate) struct ExtentTree {
    nodes: Vec<Node>,
    free_slots: Vec<u32>,
    root: u32,
    len: usize,
    rng: u32,
}

/// The arena is full (more than `u32::MAX - 1` extents).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ArenaFull;

impl ExtentTree {
    pub(crate) fn new() -> Self {
        ExtentTree {
            nodes: Vec::new(),
            free_slots: Vec::new(),
            root: NIL,
            len: 0,
            rng: 0x9e37_79b9,
        }
    }

    /// Number of extents.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Bytes of memory the index holds (capacity of its vectors).
    pub(crate) fn heap_bytes(&self) -> usize {
        self.nodes.capacity() * std::mem::size_of::<Node>()
            + self.free_slots.capacity() * std::mem::size_of::<u32>()
    }

    fn node(&self, i: u32) -> &Node {
        &self.nodes[idx(i)]
    }

    fn node_mut(&mut self, i: u32) -> &mut Node {
        &mut self.nodes[idx(i)]
    }

    fn next_prio(&mut self) -> u32 {
        // xorshift32: never zero once seeded non-zero.
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.rng = x;
        x
    }

    /// Makes sure that one more node can be created, so that an operation can check for
    /// room before it changes anything.
    pub(crate) fn reserve_one(&mut self) -> Result<(), ArenaFull> {
        if !self.free_slots.is_empty() {
            return Ok(());
        }
        // Index NIL (u32::MAX) is never a real node.
        if u32::try_from(self.nodes.len()).map_or(true, |n| n == NIL) {
            return Err(ArenaFull);
        }
        self.nodes.reserve(1);
        Ok(())
    }

    fn new_node(&mut self, first: u64, last: u64) -> Result<u32, ArenaFull> {
        let prio = self.next_prio();
        let node = Node {
            first,
            last,
            max_span: last - first,
            left: NIL,
            right: NIL,
            prio,
        };
        if let Some(i) = self.free_slots.pop() {
            *self.node_mut(i) = node;
            return Ok(i);
        }
        let i = u32::try_from(self.nodes.len()).map_err(|_| ArenaFull)?;
        if i == NIL {
            return Err(ArenaFull);
        }
        self.nodes.push(node);
        Ok(i)
    }

    fn pull(&mut self, t: u32) {
        let n = *self.node(t);
        let mut m = n.last - n.first;
        if n.left != NIL {
            m = m.max(self.node(n.left).max_span);
        }
        if n.right != NIL {
            m = m.max(self.node(n.right).max_span);
        }
        self.node_mut(t).max_span = m;
    }

    /// Splits `t` into (extents with `first < key`, extents with `first >= key`).
    fn split(&mut self, t: u32, key: u64) -> (u32, u32) {
        if t == NIL {
            return (NIL, NIL);
        }
        if self.node(t).first < key {
            let r = self.node(t).right;
            let (a, b) = self.split(r, key);
            self.node_mut(t).right = a;
            self.pull(t);
            (t, b)
        } else {
            let l = self.node(t).left;
            let (a, b) = self.split(l, key);
            self.node_mut(t).left = b;
            self.pull(t);
            (a, t)
        }
    }

    /// Joins two treaps where every key of `a` is below every key of `b`.
    fn merge(&mut self, a: u32, b: u32) -> u32 {
        if a == NIL {
            return b;
        }
        if b == NIL {
            return a;
        }
        if self.node(a).prio > self.node(b).prio {
            let ar = self.node(a).right;
            let m = self.merge(ar, b);
            self.node_mut(a).right = m;
            self.pull(a);
            a
        } else {
            let bl = self.node(b).left;
            let m = self.merge(a, bl);
            self.node_mut(b).left = m;
            self.pull(b);
            b
        }
    }

    fn insert_at(&mut self, t: u32, n: u32) -> u32 {
        if t == NIL {
            return n;
        }
        let key = self.node(n).first;
        if self.node(n).prio > self.node(t).prio {
            let (a, b) = self.split(t, key);
            let nn = self.node_mut(n);
            nn.left = a;
            nn.right = b;
            self.pull(n);
            return n;
        }
        if key < self.node(t).first {
            let l = self.node(t).left;
            let x = self.insert_at(l, n);
            self.node_mut(t).left = x;
        } else {
            let r = self.node(t).right;
            let x = self.insert_at(r, n);
            self.node_mut(t).right = x;
        }
        self.pull(t);
        t
    }

    /// Inserts a new extent. The caller guarantees it is disjoint from (and not adjacent
    /// to) every extent present.
    pub(crate) fn insert(&mut self, first: u64, last: u64) -> Result<(), ArenaFull> {
        let n = self.new_node(first, last)?;
        let root = self.root;
        self.root = self.insert_at(root, n);
        self.len += 1;
        Ok(())
    }

    fn remove_at(&mut self, t: u32, key: u64) -> u32 {
        if t == NIL {
            return NIL;
        }
        let n = *self.node(t);
        if n.first == key {
            let m = self.merge(n.left, n.right);
            self.free_slots.push(t);
            self.len -= 1;
            return m;
        }
        if key < n.first {
            let x = self.remove_at(n.left, key);
            self.node_mut(t).left = x;
        } else {
            let x = self.remove_at(n.right, key);
            self.node_mut(t).right = x;
        }
        self.pull(t);
        t
    }

    /// Removes the extent that starts at `first` (no-op if there is none).
    pub(crate) fn remove(&mut self, first: u64) {
        let root = self.root;
        self.root = self.remove_at(root, first);
    }

    fn update_at(&mut self, t: u32, key: u64, new: Extent) -> bool {
        if t == NIL {
            return false;
        }
        let n = *self.node(t);
        let found = if n.first == key {
            let m = self.node_mut(t);
            m.first = new.first;
            m.last = new.last;
            true
        } else if key < n.first {
            self.update_at(n.left, key, new)
        } else {
            self.update_at(n.right, key, new)
        };
        if found {
            self.pull(t);
        }
        found
    }

    /// Replaces the extent starting at `key` by `new`. The caller guarantees that `new`
    /// keeps its place in the order (it stays between its neighbours).
    pub(crate) fn update(&mut self, key: u64, new: Extent) {
        let root = self.root;
        self.update_at(root, key, new);
    }

    /// The extent with the largest `first <= addr`.
    pub(crate) fn floor(&self, addr: u64) -> Option<Extent> {
        let mut t = self.root;
        let mut best = None;
        while t != NIL {
            let n = self.node(t);
            if n.first <= addr {
                best = Some(Extent {
                    first: n.first,
                    last: n.last,
                });
                t = n.right;
            } else {
                t = n.left;
            }
        }
        best
    }

    /// The extent with the smallest `first > addr`.
    #[cfg(test)]
    pub(crate) fn above(&self, addr: u64) -> Option<Extent> {
        let mut t = self.root;
        let mut best = None;
        while t != NIL {
            let n = self.node(t);
            if n.first > addr {
                best = Some(Extent {
                    first: n.first,
                    last: n.last,
                });
                t = n.left;
            } else {
                t = n.right;
            }
        }
        best
    }

    /// The lowest extent in which `place` finds room, visiting only subtrees whose
    /// longest extent spans at least `span` (= size - 1).
    pub(crate) fn search_low<F>(&self, span: u64, place: &F) -> Option<(Extent, u64)>
    where
        F: Fn(Extent) -> Option<u64>,
    {
        self.low_at(self.root, span, place)
    }

    fn low_at<F>(&self, t: u32, span: u64, place: &F) -> Option<(Extent, u64)>
    where
        F: Fn(Extent) -> Option<u64>,
    {
        if t == NIL {
            return None;
        }
        let n = *self.node(t);
        if n.max_span < span {
            return None;
        }
        if let Some(hit) = self.low_at(n.left, span, place) {
            return Some(hit);
        }
        if n.last - n.first >= span {
            let e = Extent {
                first: n.first,
                last: n.last,
            };
            if let Some(at) = place(e) {
                return Some((e, at));
            }
        }
        self.low_at(n.right, span, place)
    }

    /// The highest extent in which `place` finds room (mirror of [`Self::search_low`]).
    pub(crate) fn search_high<F>(&self, span: u64, place: &F) -> Option<(Extent, u64)>
    where
        F: Fn(Extent) -> Option<u64>,
    {
        self.high_at(self.root, span, place)
    }

    fn high_at<F>(&self, t: u32, span: u64, place: &F) -> Option<(Extent, u64)>
    where
        F: Fn(Extent) -> Option<u64>,
    {
        if t == NIL {
            return None;
        }
        let n = *self.node(t);
        if n.max_span < span {
            return None;
        }
        if let Some(hit) = self.high_at(n.right, span, place) {
            return Some(hit);
        }
        if n.last - n.first >= span {
            let e = Extent {
                first: n.first,
                last: n.last,
            };
            if let Some(at) = place(e) {
                return Some((e, at));
            }
        }
        self.high_at(n.left, span, place)
    }

    /// Every extent in ascending order.
    pub(crate) fn extents(&self) -> Vec<Extent> {
        let mut out = Vec::with_capacity(self.len);
        let mut stack = Vec::new();
        let mut t = self.root;
        while t != NIL || !stack.is_empty() {
            while t != NIL {
                stack.push(t);
                t = self.node(t).left;
            }
            if let Some(top) = stack.pop() {
                let n = self.node(top);
                out.push(Extent {
                    first: n.first,
                    last: n.last,
                });
                t = n.right;
            }
        }
        out
    }

    /// Checks the treap invariants (order, heap, augmentation); for tests.
    #[cfg(test)]
    pub(crate) fn check(&self) {
        fn walk(tree: &ExtentTree, t: u32, lo: Option<u64>, hi: Option<u64>) -> (u64, usize) {
            if t == NIL {
                return (0, 0);
            }
            let n = tree.node(t);
            assert!(n.first <= n.last);
            if let Some(lo) = lo {
                assert!(n.first > lo);
            }
            if let Some(hi) = hi {
                assert!(n.last < hi);
            }
            let mut m = n.last - n.first;
            let mut count = 1;
            for (c, lo2, hi2) in [(n.left, lo, Some(n.first)), (n.right, Some(n.last), hi)] {
                if c != NIL {
                    assert!(tree.node(c).prio <= n.prio);
                    let (cm, cc) = walk(tree, c, lo2, hi2);
                    m = m.max(cm);
                    count += cc;
                }
            }
            assert_eq!(m, n.max_span);
            (m, count)
        }
        let (_, count) = walk(self, self.root, None, None);
        assert_eq!(count, self.len);
    }
}

fn idx(i: u32) -> usize {
    // u32 always fits in usize on the 32- and 64-bit targets this crate supports.
    usize::try_from(i).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_remove_update_keep_the_invariants() {
        let mut t = ExtentTree::new();
        for i in 0..200u64 {
            let k = (i * 7919) % 200;
            t.insert(k * 10, k * 10 + (k % 5)).unwrap();
            t.check();
        }
        assert_eq!(t.len(), 200);
        assert_eq!(t.floor(15), Some(Extent { first: 10, last: 11 }));
        assert_eq!(t.above(15), Some(Extent { first: 20, last: 22 }));
        assert_eq!(t.floor(0), Some(Extent { first: 0, last: 0 }));
        assert_eq!(t.above(1990), None);
        // First extent spanning at least 4 (k % 5 == 4): k = 4 -> [40, 44].
        let hit = t.search_low(4, &|e: Extent| Some(e.first));
        assert_eq!(hit, Some((Extent { first: 40, last: 44 }, 40)));
        let hit = t.search_high(4, &|e: Extent| Some(e.first));
        assert_eq!(hit, Some((Extent { first: 1990, last: 1994 }, 1990)));
        assert_eq!(t.search_low(5, &|e: Extent| Some(e.first)), None);
        t.update(40, Extent { first: 41, last: 42 });
        t.check();
        assert_eq!(
            t.search_low(4, &|e: Extent| Some(e.first)).map(|x| x.0),
            Some(Extent { first: 90, last: 94 })
        );
        for k in 0..200u64 {
            let first = if k == 4 { 41 } else { k * 10 };
            t.remove(first);
            t.check();
        }
        assert_eq!(t.len(), 0);
        assert!(t.extents().is_empty());
    }
}
