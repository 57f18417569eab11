//! The nodes part of `status`, with PostgreSQL: which node is active (host,
//! pid, since when) and which stand by, as the nodes last reported.

use super::table;
use crate::store::{LeaseState, NodeRow, Store};
use std::time::Duration;

/// What `status` shows of the nodes.
pub(super) struct Nodes {
    /// The lease.
    pub lease: LeaseState,
    /// The nodes seen lately, the active one first.
    pub nodes: Vec<NodeRow>,
}

impl Nodes {
    /// Reads them; nodes not seen within three leases are left out.
    pub(super) async fn read(store: &Store, lease: Duration) -> Option<Nodes> {
        let within = lease * crate::ha::SEEN_WITHIN_LEASES;
        Some(Nodes {
            lease: store.lease_state().await.ok()?,
            nodes: store.nodes_seen(within).await.ok()?,
        })
    }

    /// The active node, as `host pid`, if one holds the lease.
    pub(super) fn active(&self) -> Option<String> {
        let holder = self
            .lease
            .holder
            .as_deref()
            .filter(|_| !self.lease.expired)?;
        let node = self.nodes.iter().find(|n| n.node == holder);
        Some(node.map_or_else(|| holder.to_owned(), |n| format!("{} {}", n.host, n.pid)))
    }

    /// The table: HOST, PID, ROLE, ACTIVE SINCE, LAST SEEN.
    pub(super) fn table(&self) -> String {
        let holder = self.lease.holder.as_deref().filter(|_| !self.lease.expired);
        let rows: Vec<Vec<String>> = self
            .nodes
            .iter()
            .map(|n| {
                let active = holder == Some(n.node.as_str());
                vec![
                    n.host.clone(),
                    n.pid.to_string(),
                    if active {
                        "active".into()
                    } else {
                        n.role.clone()
                    },
                    n.active_since
                        .as_ref()
                        .filter(|_| active)
                        .map_or_else(|| "-".into(), ToString::to_string),
                    n.seen_at.to_string(),
                ]
            })
            .collect();
        let mut out = table::render(&["HOST", "PID", "ROLE", "ACTIVE SINCE", "LAST SEEN"], &rows);
        out.push_str(&format!(
            "lease term {}{}\n",
            self.lease.term,
            match (&self.lease.expires_at, holder) {
                (Some(t), Some(_)) => format!(", held until {t} unless renewed"),
                _ => ", held by no node".into(),
            }
        ));
        out
    }
}
