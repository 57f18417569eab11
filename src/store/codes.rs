//! Which of some words are invite codes the history knows (issued or
//! revoked by a rotation, or placed as an outside change): what
//! [`crate::mask`] masks in outside text. Both columns are indexed
//! (migration 0013), so a lookup is a few seeks however long the history.

use super::{Store, StoreError, run};
use std::collections::HashSet;

/// Both lookups, with `$1` the words as one JSON array.
macro_rules! known_codes_sql {
    ($words:literal) => {
        concat!(
            "SELECT new_invite_code FROM rotations WHERE new_invite_code IN (",
            $words,
            ") UNION SELECT old_invite_code FROM rotations WHERE old_invite_code IN (",
            $words,
            ")"
        )
    };
}

macro_rules! sqlite {
    () => {
        known_codes_sql!("SELECT value FROM json_each($1)")
    };
}
macro_rules! postgres {
    () => {
        known_codes_sql!("SELECT value FROM json_array_elements_text($1::json)")
    };
}
const SQLITE: &str = sqlite!();
const POSTGRES: &str = postgres!();

impl Store {
    /// The words among `words` that are codes the history knows.
    pub async fn known_codes(&self, words: &[&str]) -> Result<HashSet<String>, StoreError> {
        if words.is_empty() {
            return Ok(HashSet::new());
        }
        let words = self.json(words)?;
        let found: Vec<String> = run!(self, |c, pg| {
            sqlx::query_scalar(if pg { POSTGRES } else { SQLITE })
                .bind(&words)
                .fetch_all(c)
                .await
        })?;
        Ok(found.into_iter().collect())
    }

    /// The plan of [`Store::known_codes`] (SQLite's `EXPLAIN QUERY PLAN`,
    /// PostgreSQL's `EXPLAIN`), for the test that it seeks.
    pub async fn explain_known_codes(&self) -> Result<Vec<String>, StoreError> {
        let words = self.json(&["AbCdEfGhIjKlMnOpQrStUv"])?;
        run!(self, |c, pg| {
            if pg {
                sqlx::query_scalar(concat!("EXPLAIN ", postgres!()))
                    .bind(&words)
                    .fetch_all(c)
                    .await
            } else {
                let rows: Vec<(i64, i64, i64, String)> =
                    sqlx::query_as(concat!("EXPLAIN QUERY PLAN ", sqlite!()))
                        .bind(&words)
                        .fetch_all(c)
                        .await?;
                Ok(rows.into_iter().map(|(.., detail)| detail).collect())
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::store::{Begun, Cause, NewRotation, Settlement, Status, Store};

    #[tokio::test]
    async fn the_codes_a_rotation_revoked_and_issued_are_known_and_no_other_word() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("h.db")).await.unwrap();
        let new = NewRotation {
            group_name: "vip",
            group_jid: "1@g.us",
            instance: "sales",
            cause: Cause::manual(),
        };
        let Begun::Started(id) = store.begin(&new).await.unwrap() else {
            panic!("not started")
        };
        store
            .record_old_code(id, Some("OldOldOldOldOldOldOld1"))
            .await
            .unwrap();
        store
            .settle(
                id,
                &Settlement {
                    status: Status::Succeeded,
                    attempts: 1,
                    new_code: Some("NewNewNewNewNewNewNew2".into()),
                    new_link: Some("https://chat.whatsapp.com/NewNewNewNewNewNewNew2".into()),
                    error: None,
                },
            )
            .await
            .unwrap();

        let known = store
            .known_codes(&[
                "OldOldOldOldOldOldOld1",
                "NewNewNewNewNewNewNew2",
                "Unknown0Unknown0Unknown",
            ])
            .await
            .unwrap();

        let mut known: Vec<_> = known.into_iter().collect();
        known.sort();
        assert_eq!(known, ["NewNewNewNewNewNewNew2", "OldOldOldOldOldOldOld1"]);
        assert!(store.known_codes(&[]).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn looking_codes_up_seeks_the_code_indexes_and_never_scans_the_history() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("h.db")).await.unwrap();
        let plan = store.explain_known_codes().await.unwrap();
        let scans: Vec<_> = plan
            .iter()
            .filter(|l| l.starts_with("SCAN") && !l.contains("json_each"))
            .collect();
        assert!(scans.is_empty(), "{plan:#?}");
        assert!(
            plan.iter().any(|l| l.contains("rotations_by_new_code")),
            "{plan:#?}"
        );
        assert!(
            plan.iter().any(|l| l.contains("rotations_by_old_code")),
            "{plan:#?}"
        );
    }
}
