//! type1's mapping tree before 6.18, reproduced node for node.
//!
//! Until "vfio/type1: handle DMA map/unmap up to the addressable limit" (6.18),
//! `vfio_iommu_type1.c` keeps its `vfio_dma` entries in a Linux red-black tree
//! (`lib/rbtree.c`) ordered by a comparison of `iova + size`, computed in 64 bits. For a
//! range ending at 2^64-1 that sum is 0, so the ordering breaks:
//! - `vfio_link_dma` sends a new node left while `new.iova + new.size <= dma.iova`,
//!   right otherwise; `vfio_dma_do_map` links the node with size 0 ("insert
//!   zero-sized and grow as we map chunks of it"), so the tree is ordered by first
//!   IOVA (an equal one goes left), even for a node ending at 2^64-1 (seen on 6.12:
//!   an unmap walk reaches such a node after a lower one);
//! - `vfio_find_dma(start, size)` goes left when `start + size <= dma.iova`, right when
//!   `start >= dma.iova + dma.size`, else answers `dma`: a node ending at 2^64-1 is
//!   never answered (always right), and a search ending there always goes left;
//! - `vfio_find_dma_first_node(start, size)` remembers a node when
//!   `start < dma.iova + dma.size` and goes left (stops when `start >= dma.iova`),
//!   goes right otherwise, and drops the answer when it starts at or past
//!   `start + size`;
//! - the unmap walk follows `rb_next` from that node while `dma.iova < iova + size`.
//!
//! So which mappings a map or unmap sees near the top depends on the tree's shape,
//! which depends on the order of the inserts and erases and on the red-black
//! rebalancing. This module keeps the same tree: the same links, the same colours, the
//! same rotations as `__rb_insert` and `__rb_erase_augmented` / `____rb_erase_color`
//! (the kernel's code was read, this is an independent implementation). The IOMMU
//! drivers that reach 2^64-1 (virtio-iommu, AMD) accept a map over IOVAs already
//! mapped, so a map the search misses is kept as a second, overlapping node (seen on
//! 6.12 with virtio-iommu, docs/kernel-facts.md).
//!
//! Nodes live in a vector (freed slots are reused); links are indices. No operation
//! panics: a link to a missing slot reads as no node.

/// A node index; [`NIL`] is no node.
type Idx = usize;
/// No node.
const NIL: Idx = usize::MAX;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Node {
    iova: u64,
    size: u64,
    parent: Idx,
    left: Idx,
    right: Idx,
    red: bool,
}

/// The kernel's tree of `vfio_dma` ranges (`iova`, `size`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Tree {
    nodes: Vec<Node>,
    free: Vec<Idx>,
    root: Idx,
    len: usize,
}

impl Tree {
    /// An empty tree.
    pub(super) fn new() -> Tree {
        Tree {
            nodes: Vec::new(),
            free: Vec::new(),
            root: NIL,
            len: 0,
        }
    }

    /// Number of nodes.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Removes every node.
    pub(super) fn clear(&mut self) {
        *self = Tree::new();
    }

    /// The range `(iova, size)` of node `i`.
    pub(super) fn range(&self, i: Idx) -> Option<(u64, u64)> {
        self.nodes.get(i).map(|n| (n.iova, n.size))
    }

    fn left(&self, i: Idx) -> Idx {
        self.nodes.get(i).map_or(NIL, |n| n.left)
    }
    fn right(&self, i: Idx) -> Idx {
        self.nodes.get(i).map_or(NIL, |n| n.right)
    }
    fn parent(&self, i: Idx) -> Idx {
        self.nodes.get(i).map_or(NIL, |n| n.parent)
    }
    /// A missing node is black.
    fn is_red(&self, i: Idx) -> bool {
        self.nodes.get(i).is_some_and(|n| n.red)
    }
    fn set_left(&mut self, i: Idx, v: Idx) {
        if let Some(n) = self.nodes.get_mut(i) {
            n.left = v;
        }
    }
    fn set_right(&mut self, i: Idx, v: Idx) {
        if let Some(n) = self.nodes.get_mut(i) {
            n.right = v;
        }
    }
    fn set_parent(&mut self, i: Idx, v: Idx) {
        if let Some(n) = self.nodes.get_mut(i) {
            n.parent = v;
        }
    }
    fn set_red(&mut self, i: Idx, red: bool) {
        if let Some(n) = self.nodes.get_mut(i) {
            n.red = red;
        }
    }
    fn set_parent_color(&mut self, i: Idx, parent: Idx, red: bool) {
        self.set_parent(i, parent);
        self.set_red(i, red);
    }

    /// `__rb_change_child`: `parent`'s link to `old` (or the root) becomes `new`.
    fn change_child(&mut self, old: Idx, new: Idx, parent: Idx) {
        if parent == NIL {
            self.root = new;
        } else if self.left(parent) == old {
            self.set_left(parent, new);
        } else {
            self.set_right(parent, new);
        }
    }

    /// `__rb_rotate_set_parents`: `new` takes `old`'s parent and colour, `old` goes
    /// under `new` with colour `red`.
    fn rotate_set_parents(&mut self, old: Idx, new: Idx, red: bool) {
        let parent = self.parent(old);
        let old_red = self.is_red(old);
        self.set_parent_color(new, parent, old_red);
        self.set_parent_color(old, new, red);
        self.change_child(old, new, parent);
    }

    /// `vfio_find_dma`: the node the kernel's search answers for `[start, start+size)`
    /// (sums wrap as in the kernel).
    pub(super) fn find_dma(&self, start: u64, size: u64) -> Option<Idx> {
        let mut node = self.root;
        while let Some(n) = self.nodes.get(node) {
            if start.wrapping_add(size) <= n.iova {
                node = n.left;
            } else if start >= n.iova.wrapping_add(n.size) {
                node = n.right;
            } else {
                return Some(node);
            }
        }
        None
    }

    /// `vfio_find_dma_first_node`.
    pub(super) fn first_node(&self, start: u64, size: u64) -> Option<Idx> {
        let mut res = NIL;
        let mut node = self.root;
        while let Some(n) = self.nodes.get(node) {
            if start < n.iova.wrapping_add(n.size) {
                res = node;
                if start >= n.iova {
                    break;
                }
                node = n.left;
            } else {
                node = n.right;
            }
        }
        let r = self.nodes.get(res)?;
        if size != 0 && r.iova >= start.wrapping_add(size) {
            return None;
        }
        Some(res)
    }

    /// `rb_next`: the in-order successor of `i`.
    pub(super) fn next(&self, i: Idx) -> Option<Idx> {
        self.nodes.get(i)?;
        let mut n = self.right(i);
        if n != NIL {
            while self.left(n) != NIL {
                n = self.left(n);
            }
            return Some(n);
        }
        let mut child = i;
        let mut p = self.parent(child);
        while p != NIL && self.right(p) == child {
            child = p;
            p = self.parent(p);
        }
        (p != NIL).then_some(p)
    }

    /// `vfio_link_dma` of a node of size 0 (which then grows to `size`), then
    /// `rb_insert_color`.
    pub(super) fn insert(&mut self, iova: u64, size: u64) {
        let mut parent = NIL;
        let mut go_left = false;
        let mut link = self.root;
        while let Some(n) = self.nodes.get(link) {
            parent = link;
            go_left = iova <= n.iova;
            link = if go_left { n.left } else { n.right };
        }
        let node = Node {
            iova,
            size,
            parent,
            left: NIL,
            right: NIL,
            red: true,
        };
        let i = match self.free.pop() {
            Some(i) if i < self.nodes.len() => {
                if let Some(slot) = self.nodes.get_mut(i) {
                    *slot = node;
                }
                i
            }
            _ => {
                self.nodes.push(node);
                self.nodes.len() - 1
            }
        };
        if parent == NIL {
            self.root = i;
        } else if go_left {
            self.set_left(parent, i);
        } else {
            self.set_right(parent, i);
        }
        self.len += 1;
        self.insert_color(i);
    }

    /// `__rb_insert`.
    fn insert_color(&mut self, mut node: Idx) {
        let mut parent = self.parent(node);
        loop {
            if parent == NIL {
                self.set_parent_color(node, NIL, false);
                break;
            }
            if !self.is_red(parent) {
                break;
            }
            let gparent = self.parent(parent);
            let mut tmp = self.right(gparent);
            if parent != tmp {
                // parent is gparent's left child
                if tmp != NIL && self.is_red(tmp) {
                    // Case 1: colour flips.
                    self.set_parent_color(tmp, gparent, false);
                    self.set_parent_color(parent, gparent, false);
                    node = gparent;
                    parent = self.parent(node);
                    self.set_parent_color(node, parent, true);
                    continue;
                }
                tmp = self.right(parent);
                if node == tmp {
                    // Case 2: left rotate at parent.
                    tmp = self.left(node);
                    self.set_right(parent, tmp);
                    self.set_left(node, parent);
                    if tmp != NIL {
                        self.set_parent_color(tmp, parent, false);
                    }
                    self.set_parent_color(parent, node, true);
                    parent = node;
                    tmp = self.right(node);
                }
                // Case 3: right rotate at gparent.
                self.set_left(gparent, tmp);
                self.set_right(parent, gparent);
                if tmp != NIL {
                    self.set_parent_color(tmp, gparent, false);
                }
                self.rotate_set_parents(gparent, parent, true);
                break;
            } else {
                tmp = self.left(gparent);
                if tmp != NIL && self.is_red(tmp) {
                    self.set_parent_color(tmp, gparent, false);
                    self.set_parent_color(parent, gparent, false);
                    node = gparent;
                    parent = self.parent(node);
                    self.set_parent_color(node, parent, true);
                    continue;
                }
                tmp = self.left(parent);
                if node == tmp {
                    tmp = self.right(node);
                    self.set_left(parent, tmp);
                    self.set_right(node, parent);
                    if tmp != NIL {
                        self.set_parent_color(tmp, parent, false);
                    }
                    self.set_parent_color(parent, node, true);
                    parent = node;
                    tmp = self.left(node);
                }
                self.set_right(gparent, tmp);
                self.set_left(parent, gparent);
                if tmp != NIL {
                    self.set_parent_color(tmp, gparent, false);
                }
                self.rotate_set_parents(gparent, parent, true);
                break;
            }
        }
    }

    /// `rb_erase` of node `i` (`vfio_remove_dma`).
    pub(super) fn erase(&mut self, node: Idx) {
        if self.nodes.get(node).is_none() {
            return;
        }
        let child = self.right(node);
        let left = self.left(node);
        let rebalance;
        if left == NIL {
            // At most one child, on the right: it takes node's place and colour.
            let parent = self.parent(node);
            let red = self.is_red(node);
            self.change_child(node, child, parent);
            if child != NIL {
                self.set_parent_color(child, parent, red);
                rebalance = NIL;
            } else {
                rebalance = if red { NIL } else { parent };
            }
        } else if child == NIL {
            let parent = self.parent(node);
            let red = self.is_red(node);
            self.set_parent_color(left, parent, red);
            self.change_child(node, left, parent);
            rebalance = NIL;
        } else {
            let mut successor = child;
            let parent;
            let child2;
            let mut tmp = self.left(child);
            if tmp == NIL {
                // The successor is node's right child.
                parent = successor;
                child2 = self.right(successor);
            } else {
                // The leftmost node under node's right child.
                let mut p;
                loop {
                    p = successor;
                    successor = tmp;
                    tmp = self.left(tmp);
                    if tmp == NIL {
                        break;
                    }
                }
                parent = p;
                child2 = self.right(successor);
                self.set_left(parent, child2);
                self.set_right(successor, child);
                self.set_parent(child, successor);
            }
            self.set_left(successor, left);
            self.set_parent(left, successor);
            let node_parent = self.parent(node);
            let node_red = self.is_red(node);
            self.change_child(node, successor, node_parent);
            if child2 != NIL {
                self.set_parent_color(child2, parent, false);
                rebalance = NIL;
            } else {
                rebalance = if self.is_red(successor) { NIL } else { parent };
            }
            self.set_parent_color(successor, node_parent, node_red);
        }
        if rebalance != NIL {
            self.erase_color(rebalance);
        }
        if let Some(n) = self.nodes.get_mut(node) {
            *n = Node {
                iova: 0,
                size: 0,
                parent: NIL,
                left: NIL,
                right: NIL,
                red: false,
            };
        }
        self.free.push(node);
        self.len = self.len.saturating_sub(1);
    }

    /// `____rb_erase_color`.
    fn erase_color(&mut self, mut parent: Idx) {
        let mut node = NIL;
        // Each pass moves up one level or ends; the bound guards a corrupted tree.
        for _ in 0..=self.nodes.len().saturating_mul(2) {
            let mut sibling = self.right(parent);
            if node != sibling {
                // node is parent's left child
                if self.is_red(sibling) {
                    // Case 1: left rotate at parent.
                    let tmp1 = self.left(sibling);
                    self.set_right(parent, tmp1);
                    self.set_left(sibling, parent);
                    self.set_parent_color(tmp1, parent, false);
                    self.rotate_set_parents(parent, sibling, true);
                    sibling = tmp1;
                }
                let mut tmp1 = self.right(sibling);
                if tmp1 == NIL || !self.is_red(tmp1) {
                    let tmp2 = self.left(sibling);
                    if tmp2 == NIL || !self.is_red(tmp2) {
                        // Case 2: sibling colour flip.
                        self.set_parent_color(sibling, parent, true);
                        if self.is_red(parent) {
                            self.set_red(parent, false);
                        } else {
                            node = parent;
                            parent = self.parent(node);
                            if parent != NIL {
                                continue;
                            }
                        }
                        break;
                    }
                    // Case 3: right rotate at sibling.
                    tmp1 = self.right(tmp2);
                    self.set_left(sibling, tmp1);
                    self.set_right(tmp2, sibling);
                    self.set_right(parent, tmp2);
                    if tmp1 != NIL {
                        self.set_parent_color(tmp1, sibling, false);
                    }
                    tmp1 = sibling;
                    sibling = tmp2;
                }
                // Case 4: left rotate at parent and colour flips.
                let tmp2 = self.left(sibling);
                self.set_right(parent, tmp2);
                self.set_left(sibling, parent);
                self.set_parent_color(tmp1, sibling, false);
                if tmp2 != NIL {
                    self.set_parent(tmp2, parent);
                }
                self.rotate_set_parents(parent, sibling, false);
                break;
            } else {
                sibling = self.left(parent);
                if self.is_red(sibling) {
                    let tmp1 = self.right(sibling);
                    self.set_left(parent, tmp1);
                    self.set_right(sibling, parent);
                    self.set_parent_color(tmp1, parent, false);
                    self.rotate_set_parents(parent, sibling, true);
                    sibling = tmp1;
                }
                let mut tmp1 = self.left(sibling);
                if tmp1 == NIL || !self.is_red(tmp1) {
                    let tmp2 = self.right(sibling);
                    if tmp2 == NIL || !self.is_red(tmp2) {
                        self.set_parent_color(sibling, parent, true);
                        if self.is_red(parent) {
                            self.set_red(parent, false);
                        } else {
                            node = parent;
                            parent = self.parent(node);
                            if parent != NIL {
                                continue;
                            }
                        }
                        break;
                    }
                    tmp1 = self.left(tmp2);
                    self.set_right(sibling, tmp1);
                    self.set_left(tmp2, sibling);
                    self.set_left(parent, tmp2);
                    if tmp1 != NIL {
                        self.set_parent_color(tmp1, sibling, false);
                    }
                    tmp1 = sibling;
                    sibling = tmp2;
                }
                let tmp2 = self.right(sibling);
                self.set_left(parent, tmp2);
                self.set_right(sibling, parent);
                self.set_parent_color(tmp1, sibling, false);
                if tmp2 != NIL {
                    self.set_parent(tmp2, parent);
                }
                self.rotate_set_parents(parent, sibling, false);
                break;
            }
        }
    }

    /// The ranges in the tree's in-order sequence (for tests).
    #[cfg(test)]
    fn in_order(&self) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        let mut n = self.root;
        while self.left(n) != NIL {
            n = self.left(n);
        }
        let mut cur = (n != NIL).then_some(n);
        while let Some(i) = cur {
            out.extend(self.range(i));
            cur = self.next(i);
        }
        out
    }

    /// Checks the red-black invariants; the black height (for tests).
    #[cfg(test)]
    fn check(&self, i: Idx) -> usize {
        if i == NIL {
            return 1;
        }
        if self.is_red(i) {
            assert!(!self.is_red(self.left(i)) && !self.is_red(self.right(i)));
        }
        for c in [self.left(i), self.right(i)] {
            if c != NIL {
                assert_eq!(self.parent(c), i);
            }
        }
        let l = self.check(self.left(i));
        assert_eq!(l, self.check(self.right(i)));
        l + usize::from(!self.is_red(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::SplitMix;

    const TOP: u64 = 0xffff_ffff_ffff_f000;

    #[test]
    fn ordinary_ranges_stay_sorted_and_balanced() {
        let mut t = Tree::new();
        let mut rng = SplitMix(3);
        let mut live: Vec<u64> = Vec::new();
        for _ in 0..2000 {
            if rng.below(3) == 0 && !live.is_empty() {
                let k = usize::try_from(rng.below(live.len() as u64)).unwrap();
                let iova = live.swap_remove(k);
                let i = t.find_dma(iova, 1).unwrap();
                t.erase(i);
            } else {
                let iova = rng.below(1 << 20) << 12;
                if t.find_dma(iova, 0x1000).is_none() {
                    t.insert(iova, 0x1000);
                    live.push(iova);
                }
            }
            assert!(!t.is_red(t.root));
            t.check(t.root);
        }
        live.sort_unstable();
        let got: Vec<u64> = t.in_order().into_iter().map(|r| r.0).collect();
        assert_eq!(got, live);
        assert_eq!(t.len(), live.len());
    }

    /// The shape worked out by hand from the kernel's code for the sequence the 6.12
    /// guest ran (`overlap-inside-mapping-ending-at-top`, docs/kernel-facts.md): A
    /// ends at the top, D inside it, B ends at the top, C straddles A's start; the
    /// kernel's unmap-all then answered 0x3000.
    #[test]
    fn searches_miss_top_nodes_as_in_the_kernel() {
        let mut t = Tree::new();
        let a = (0xffff_ffff_ffff_0000, 0x10000);
        let d = (0xffff_ffff_ffff_8000, 0x1000);
        let b = (0xffff_ffff_ffff_e000, 0x2000);
        t.insert(a.0, a.1);
        assert_eq!(t.find_dma(d.0, d.1), None);
        t.insert(d.0, d.1); // right of A
        t.insert(b.0, b.1); // right of D, then D rotates up
        t.insert(0xffff_ffff_fffe_f000, 0x2000); // C: left of A
        assert_eq!(t.range(t.root), Some(d));
        // UNMAP_ALL's walk starts at D (A is invisible) and removes D and B.
        let first = t.first_node(0, u64::MAX).unwrap();
        assert_eq!(t.range(first), Some(d));
        let second = t.next(first).unwrap();
        assert_eq!(t.range(second), Some(b));
        assert_eq!(t.next(second), None);
        // Seed 1000's first ops on 6.12: X, then Y ending at the top, linked after X;
        // an unmap of [0x600000, 2^64-0x1000) walks from X to Y (0xc000 bytes).
        let mut t = Tree::new();
        t.insert(0xffff_ffff_ffff_3000, 0x8000);
        t.insert(0xffff_ffff_ffff_c000, 0x4000);
        let x = t.first_node(0x60_0000, 0xffff_ffff_ff9f_f000).unwrap();
        let y = t.next(x).unwrap();
        assert_eq!(t.range(y), Some((0xffff_ffff_ffff_c000, 0x4000)));
        // A lone last page is the root: the walk never finds it.
        let mut lone = Tree::new();
        lone.insert(TOP, 0x1000);
        assert_eq!(lone.first_node(0, u64::MAX), None);
        assert_eq!(lone.find_dma(TOP, 0x1000), None);
    }
}
