//! Links changed outside invite-rotator, as RyzeAPI's events report them:
//! recorded as rotations with trigger `outside`, placed where they happened
//! in the group's chain of codes. SQL only; where a change belongs is
//! [`crate::events::act`]'s to say.

use super::{
    Begun, NewRotation, Rotation, Store, StoreError, append_ledger, lock_ledger, rotation_columns,
    run, select_rotation, timestamp,
};
use chrono::{DateTime, Utc};
use sqlx::Connection;

/// How an outside link change is recorded.
#[derive(Debug, Clone)]
pub struct OutsideChange<'a> {
    /// The group's name, JID and instance (and the event, as the cause).
    pub group: NewRotation<'a>,
    /// The code the change replaced, as far as the history knows.
    pub old_code: Option<&'a str>,
    /// The code a read of the live link confirmed.
    pub new_code: &'a str,
    /// Its link.
    pub new_link: &'a str,
    /// When it happened (its `started_at` and `finished_at`).
    pub at: DateTime<Utc>,
    /// Whether the hooks hear of it: not when a later code is already live
    /// (a hook that publishes the link must not publish a dead one).
    pub notify: bool,
}

impl Store {
    /// Records a link changed outside invite-rotator: a rotation with
    /// trigger `outside`, `succeeded`, no reset call, refused (`Busy`) while
    /// the group has a rotation in flight. With `notify`, written `pending`
    /// and settled in the same transaction, so the hooks hear of it like of
    /// any rotation; without, written settled (the hooks' trigger fires on a
    /// change of status only).
    pub async fn record_outside(&self, change: &OutsideChange<'_>) -> Result<Begun, StoreError> {
        let at = timestamp(change.at);
        let jid = change.group.group_jid;
        let keeps = self.keeps_ledger();
        run!(self, |c, pg| {
            let mut tx = c.begin().await?;
            lock_ledger!(tx, pg, keeps).await?;
            let ids: Vec<i64> = sqlx::query_scalar(
                "INSERT INTO rotations (group_name, group_jid, instance, trigger, started_at, finished_at,
                     status, owner, old_invite_code, new_invite_code, new_invite_link, event_id)
                 SELECT $1, $2, $3, 'outside', $4, $4, $5, $6, $7, $8, $9, $10
                 WHERE NOT EXISTS (SELECT 1 FROM rotations WHERE group_jid = $2 AND status = 'pending')
                 RETURNING id",
            )
            .bind(change.group.group_name)
            .bind(jid)
            .bind(change.group.instance)
            .bind(at)
            .bind(if change.notify { "pending" } else { "succeeded" })
            .bind(crate::owner::current())
            .bind(change.old_code)
            .bind(change.new_code)
            .bind(change.new_link)
            .bind(change.group.cause.event_id)
            .fetch_all(&mut *tx)
            .await?;
            let Some(&id) = ids.first() else {
                return Ok(Begun::Busy {
                    since: String::new(),
                    owner: None,
                });
            };
            if change.notify {
                sqlx::query("UPDATE rotations SET status = 'succeeded' WHERE id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            }
            append_ledger!(tx, pg, keeps, &[id]).await?;
            tx.commit().await?;
            Ok(Begun::Started(id))
        })
    }

    /// Whether the history holds `code` as issued to the group `jid` (a
    /// `new_invite_code`: by a reset of ours, or recorded from outside).
    pub async fn code_issued(&self, jid: &str, code: &str) -> Result<bool, StoreError> {
        run!(self, |c, _pg| sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM rotations WHERE group_jid = $1 AND new_invite_code = $2)",
        )
        .bind(jid.to_owned())
        .bind(code.to_owned())
        .fetch_one(c)
        .await)
    }

    /// The first rotation of ours that read `code` as the group's live one
    /// (its `old_invite_code`).
    pub async fn rotation_that_read(
        &self,
        jid: &str,
        code: &str,
    ) -> Result<Option<Rotation>, StoreError> {
        run!(self, |c, _pg| {
            sqlx::query_as(concat!(
            select_rotation!(),
            " WHERE group_jid = $1 AND old_invite_code = $2 AND trigger != 'outside' ORDER BY id LIMIT 1"
        ))
        .bind(jid.to_owned())
        .bind(code.to_owned())
        .fetch_optional(c)
            .await
        })
    }

    /// The rotation of ours that issued `code` to `jid`.
    pub async fn rotation_that_issued(
        &self,
        jid: &str,
        code: &str,
    ) -> Result<Option<Rotation>, StoreError> {
        run!(self, |c, _pg| {
            sqlx::query_as(concat!(
            select_rotation!(),
            " WHERE group_jid = $1 AND new_invite_code = $2 AND trigger != 'outside' ORDER BY id LIMIT 1"
        ))
        .bind(jid.to_owned())
        .bind(code.to_owned())
        .fetch_optional(c)
            .await
        })
    }

    /// The code issued to `jid` last before `before` (by `finished_at`).
    pub async fn issued_before(
        &self,
        jid: &str,
        before: DateTime<Utc>,
    ) -> Result<Option<String>, StoreError> {
        run!(self, |c, _pg| sqlx::query_scalar(
            "SELECT new_invite_code FROM rotations
             WHERE group_jid = $1 AND new_invite_code IS NOT NULL AND finished_at < $2
             ORDER BY finished_at DESC, id DESC LIMIT 1",
        )
        .bind(jid.to_owned())
        .bind(timestamp(before))
        .fetch_optional(c)
        .await)
    }
}
