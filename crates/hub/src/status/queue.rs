//! The writer's queue: one slot per object and kind of write, so a burst coalesces, and
//! lanes that keep two writes of one object from running at once.

use std::collections::{HashMap, VecDeque};

use super::ops::{Report, WriteOp};
use crate::index::Intent;
use crate::objects::ObjectKey;

/// Slot of the coalescing queue: a newer op for the same slot replaces an older one.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) enum Slot {
    WorkStatus(ObjectKey),
    WorkFinalizer(ObjectKey),
    WorkReject(ObjectKey),
    /// Check a work's skipped report again (see `StatusWriter`'s `skipped`).
    WorkRecheck(ObjectKey),
    ViewStatus(ObjectKey),
    ViewRecheck(ObjectKey),
    Cluster(String),
    Unreachable(String),
    Unacknowledged(String),
}

pub(super) fn slot_of(op: &WriteOp) -> Slot {
    match op {
        WriteOp::Report(Report::Work { cluster, status }, _) => {
            Slot::WorkStatus(ObjectKey::new(cluster, &status.name))
        }
        WriteOp::Report(Report::View { cluster, status }, _) => {
            Slot::ViewStatus(ObjectKey::new(cluster, &status.name))
        }
        WriteOp::Intent(Intent::AddFinalizer(k) | Intent::ReleaseFinalizer(k)) => {
            Slot::WorkFinalizer(k.clone())
        }
        WriteOp::Intent(Intent::Reject(k)) => Slot::WorkReject(k.clone()),
        WriteOp::Intent(Intent::WorkStatusChanged(k)) => Slot::WorkRecheck(k.clone()),
        WriteOp::Intent(Intent::ViewStatusChanged(k)) => Slot::ViewRecheck(k.clone()),
        WriteOp::Cluster(c) => Slot::Cluster(c.name.clone()),
        WriteOp::Unreachable { cluster, .. } => Slot::Unreachable(cluster.clone()),
        WriteOp::Unacknowledged { cluster, .. } => Slot::Unacknowledged(cluster.clone()),
    }
}

/// What must not be written concurrently: one object.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) enum Lane {
    Work(ObjectKey),
    View(ObjectKey),
    Cluster(String),
    Unreachable(String),
}

impl Slot {
    pub(super) fn lane(&self) -> Lane {
        match self {
            Slot::WorkStatus(k)
            | Slot::WorkFinalizer(k)
            | Slot::WorkReject(k)
            | Slot::WorkRecheck(k) => Lane::Work(k.clone()),
            Slot::ViewStatus(k) | Slot::ViewRecheck(k) => Lane::View(k.clone()),
            Slot::Cluster(c) | Slot::Unacknowledged(c) => Lane::Cluster(c.clone()),
            Slot::Unreachable(c) => Lane::Unreachable(c.clone()),
        }
    }
}

/// A keyed FIFO that keeps only the latest op per slot, so its size is bounded by the
/// number of objects, and a burst of reports for one work costs one write.
#[derive(Debug, Default)]
pub struct Pending {
    order: VecDeque<Slot>,
    ops: HashMap<Slot, WriteOp>,
}

impl Pending {
    pub fn push(&mut self, op: WriteOp) {
        let slot = slot_of(&op);
        if self.ops.insert(slot.clone(), op).is_none() {
            self.order.push_back(slot);
        }
    }

    /// Pushes `op`, but only index intents while `leading` is false: reports and presence
    /// of a replica that does not lead are never written (intents are re-checked against
    /// the index when written, so they keep for the next term).
    pub fn push_if(&mut self, op: WriteOp, leading: bool) {
        if leading || matches!(op, WriteOp::Intent(_)) {
            self.push(op);
        }
    }

    pub fn pop(&mut self) -> Option<WriteOp> {
        let slot = self.order.pop_front()?;
        self.ops.remove(&slot)
    }

    /// The oldest op whose slot `ready` accepts.
    pub(super) fn pop_where(&mut self, ready: impl Fn(&Slot) -> bool) -> Option<WriteOp> {
        let i = self.order.iter().position(ready)?;
        let slot = self.order.remove(i)?;
        self.ops.remove(&slot)
    }

    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// The queued ops, in no particular order.
    pub fn ops(&self) -> impl Iterator<Item = &WriteOp> {
        self.ops.values()
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}
