//! Join links: stable URLs that lead to a group's live invite (see
//! [`crate::join`]). SQL only; what a link answers is the redirector's to
//! say.

use super::{Stamp, Store, StoreError, exec, run, timestamp};
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::Connection;

/// A join link as stored.
#[derive(Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct JoinLink {
    /// Its row id.
    #[serde(skip)]
    pub id: i64,
    /// The operator's name for it (a channel: "poster-2026", "newsletter").
    pub name: String,
    /// The random part of its URL (`/j/{slug}`): whoever has it can join.
    #[serde(skip)]
    pub slug: String,
    /// The group it leads to.
    #[serde(rename = "group")]
    pub group_name: String,
    /// That group's JID.
    #[serde(skip)]
    pub group_jid: String,
    /// When it was made.
    pub created_at: Stamp,
    /// When it stops working, if ever.
    pub expires_at: Option<Stamp>,
    /// How many times it works, if limited.
    pub max_uses: Option<i64>,
    /// How many times it was used (counted once across nodes).
    pub uses: i64,
    /// When it was last used.
    pub last_used_at: Option<Stamp>,
    /// When `join revoke` withdrew it.
    pub revoked_at: Option<Stamp>,
    /// The operator's note (who was given it).
    pub note: Option<String>,
}

impl std::fmt::Debug for JoinLink {
    // The slug is a credential: whoever has it joins the group.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinLink")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("group_name", &self.group_name)
            .field("expires_at", &self.expires_at)
            .field("max_uses", &self.max_uses)
            .field("uses", &self.uses)
            .field("revoked_at", &self.revoked_at)
            .finish_non_exhaustive()
    }
}

/// A join link about to be made.
#[derive(Clone)]
pub struct NewJoinLink<'a> {
    /// Its name (unique).
    pub name: &'a str,
    /// Its slug (unique, random).
    pub slug: &'a str,
    /// The group's name and JID.
    pub group_name: &'a str,
    /// The group's JID.
    pub group_jid: &'a str,
    /// When it stops working.
    pub expires_at: Option<DateTime<Utc>>,
    /// How many times it works.
    pub max_uses: Option<i64>,
    /// The operator's note.
    pub note: Option<&'a str>,
}

impl std::fmt::Debug for NewJoinLink<'_> {
    // The slug is a credential.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewJoinLink")
            .field("name", &self.name)
            .field("group_name", &self.group_name)
            .field("expires_at", &self.expires_at)
            .field("max_uses", &self.max_uses)
            .finish_non_exhaustive()
    }
}

/// What spending one use of a limited link came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Spent {
    /// Spent: the link leads to this group (JID).
    To(String),
    /// Not spent: expired, revoked or used up.
    Gone,
}

impl Store {
    /// Makes a join link; `false` if its name is taken.
    pub async fn create_join_link(&self, new: &NewJoinLink<'_>) -> Result<bool, StoreError> {
        let written = exec!(
            self,
            sqlx::query(
                "INSERT INTO join_links (name, slug, group_name, group_jid, created_at, expires_at, max_uses, note)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (name) DO NOTHING",
            )
            .bind(new.name)
            .bind(new.slug)
            .bind(new.group_name)
            .bind(new.group_jid)
            .bind(timestamp(Utc::now()))
            .bind(new.expires_at.map(timestamp))
            .bind(new.max_uses)
            .bind(new.note)
        )?;
        Ok(written == 1)
    }

    /// Every join link, oldest first.
    pub async fn join_links(&self) -> Result<Vec<JoinLink>, StoreError> {
        run!(self, |c, _pg| sqlx::query_as(
            "SELECT id, name, slug, group_name, group_jid, created_at, expires_at, max_uses,
                    uses, last_used_at, revoked_at, note
             FROM join_links ORDER BY id"
        )
        .fetch_all(c)
        .await)
    }

    /// Withdraws the link `name` from now on; `false` if there is none
    /// (or it was withdrawn already).
    pub async fn revoke_join_link(&self, name: &str) -> Result<bool, StoreError> {
        let changed = exec!(
            self,
            sqlx::query(
                "UPDATE join_links SET revoked_at = $2 WHERE name = $1 AND revoked_at IS NULL"
            )
            .bind(name)
            .bind(timestamp(Utc::now()))
        )?;
        Ok(changed == 1)
    }

    /// Spends one use of the link `id`, atomically: only if it is neither
    /// revoked nor expired at `now` nor used up. Concurrent spends on one
    /// link, from any number of nodes, never pass `max_uses`.
    pub async fn spend_join_link(&self, id: i64, now: DateTime<Utc>) -> Result<Spent, StoreError> {
        let jid: Option<String> = run!(self, |c, _pg| {
            let mut tx = c.begin().await?;
            let jid: Option<String> = sqlx::query_scalar(
                "UPDATE join_links SET uses = uses + 1, last_used_at = $2
                 WHERE id = $1 AND revoked_at IS NULL
                   AND (expires_at IS NULL OR expires_at > $2)
                   AND (max_uses IS NULL OR uses < max_uses)
                 RETURNING group_jid",
            )
            .bind(id)
            .bind(timestamp(now))
            .fetch_all(&mut *tx)
            .await?
            .into_iter()
            .next();
            if jid.is_some() {
                sqlx::query("INSERT INTO join_uses (link_id, used_at, uses) VALUES ($1, $2, 1)")
                    .bind(id)
                    .bind(timestamp(now))
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(jid)
        })?;
        Ok(jid.map_or(Spent::Gone, Spent::To))
    }

    /// Adds uses counted in memory (unlimited links): `(id, uses, last)`
    /// each, in one transaction, in id order (two nodes flushing the same
    /// links take their row locks in the same order), each batch recorded
    /// in `join_uses`.
    pub async fn add_join_uses(
        &self,
        counted: &[(i64, i64, DateTime<Utc>)],
    ) -> Result<(), StoreError> {
        if counted.is_empty() {
            return Ok(());
        }
        let mut counted = counted.to_vec();
        counted.sort_by_key(|(id, _, _)| *id);
        run!(self, |c, _pg| {
            let mut tx = c.begin().await?;
            for (id, uses, last) in &counted {
                sqlx::query(
                    "UPDATE join_links SET uses = uses + $2,
                         last_used_at = CASE WHEN last_used_at IS NULL OR last_used_at < $3
                                             THEN $3 ELSE last_used_at END
                     WHERE id = $1",
                )
                .bind(id)
                .bind(uses)
                .bind(timestamp(*last))
                .execute(&mut *tx)
                .await?;
                sqlx::query("INSERT INTO join_uses (link_id, used_at, uses) VALUES ($1, $2, $3)")
                    .bind(id)
                    .bind(timestamp(*last))
                    .bind(uses)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await
        })
    }

    /// When link `id` was used, oldest first: `(used_at, uses)`.
    pub async fn join_uses(&self, id: i64) -> Result<Vec<(Stamp, i64)>, StoreError> {
        run!(self, |c, _pg| sqlx::query_as(
            "SELECT used_at, uses FROM join_uses WHERE link_id = $1 ORDER BY used_at, id"
        )
        .bind(id)
        .fetch_all(c)
        .await)
    }

    /// The live code of every group that has a join link: the latest the
    /// history knows (issued by us, or recorded as changed elsewhere), by
    /// group JID. Read four times a second, so each group's is found by
    /// index: among its last few successes by id, the one issued last (an
    /// outside change can be recorded after a rotation that came later).
    pub async fn join_codes(&self) -> Result<Vec<(String, String)>, StoreError> {
        let rows: Vec<(String, Option<String>)> = run!(self, |c, _pg| sqlx::query_as(
            "SELECT l.group_jid,
                    (SELECT recent.new_invite_code FROM
                        (SELECT r.new_invite_code, r.finished_at, r.id FROM rotations r
                         WHERE r.group_jid = l.group_jid AND r.status = 'succeeded'
                           AND r.new_invite_code IS NOT NULL
                         ORDER BY r.id DESC LIMIT 8) AS recent
                     ORDER BY recent.finished_at DESC, recent.id DESC LIMIT 1)
             FROM (SELECT DISTINCT group_jid FROM join_links) AS l"
        )
        .fetch_all(c)
        .await)?;
        Ok(rows
            .into_iter()
            .filter_map(|(jid, code)| Some((jid, code?)))
            .collect())
    }
}
