//! Notices that a store shared by many control-plane replicas sends each of
//! them, so that what one replica stores reaches connectors attached to
//! another (see [`crate::Store::termination_feed`]).

use gatehouse_core::OrgId;

use crate::model::TerminationRecord;

/// One notice on a [`TerminationFeed`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TerminationNotice {
    /// A termination was stored, through this replica or another one.
    Requested { org: OrgId, termination: TerminationRecord },
    /// The feed (re)connected: notices sent while it was away are lost, so
    /// whoever relays them re-reads the pending terminations it cares about.
    /// Sent after every connection, the first one included.
    Resync,
}

/// Notices in the order the database committed them. The task behind it
/// stops when the receiver is dropped.
pub type TerminationFeed = tokio::sync::mpsc::Receiver<TerminationNotice>;
