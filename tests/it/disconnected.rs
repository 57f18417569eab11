//! An instance that stays disconnected from WhatsApp (503 to every call) must
//! not burn the token's budget: calls are held back and probed with backoff,
//! and every scheduled rotation still leaves a readable row saying why.

use invite_rotator::config::{Group, RetryPolicy};
use invite_rotator::rotation::rotate;
use invite_rotator::ryzeapi::{Call, CallError, GroupInfo, Held, Holds, ResetReply, RyzeApi};
use invite_rotator::schedule::Schedule;
use invite_rotator::store::{Cause, HistoryQuery, Status, Store, Trigger};
use invite_rotator::whatsapp::{InviteCode, Jid};
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// An instance that answers 503 until `connects_at`, then works.
struct Disconnected {
    connects_at: Instant,
    calls: Mutex<Vec<Instant>>,
}

impl Disconnected {
    fn reply<T>(&self, ok: T) -> Call<T> {
        let now = Instant::now();
        self.calls.lock().unwrap().push(now);
        if now < self.connects_at {
            return Call {
                result: Err(CallError::Transient(
                    "HTTP 503: Instance is not connected to WhatsApp".into(),
                )),
                http_status: Some(503),
                elapsed: Duration::ZERO,
            };
        }
        Call {
            result: Ok(ok),
            http_status: Some(200),
            elapsed: Duration::ZERO,
        }
    }
}

fn code(c: &str) -> InviteCode {
    InviteCode::parse(c).unwrap()
}

impl RyzeApi for Disconnected {
    async fn reset_link(&self, _jid: &Jid) -> Call<ResetReply> {
        self.reply(ResetReply { code: code("NEW") })
    }

    async fn group_info(&self, _jid: &Jid) -> Call<GroupInfo> {
        self.reply(GroupInfo {
            code: Some(code("OLD")),
        })
    }
}

const POLICY: RetryPolicy = RetryPolicy {
    max_attempts: 3,
    backoff_initial: Duration::from_secs(2),
    backoff_max: Duration::from_secs(300),
    read_back_delay: Duration::from_secs(30),
};

fn group(i: usize) -> Group {
    Group {
        name: format!("g{i}"),
        instance: "sales".into(),
        jid: Jid::parse(&format!("1203634{i:011}@g.us")).unwrap(),
        schedule: Schedule::parse("* * * * *").unwrap(),
        timezone: chrono_tz::UTC,
        jitter: Duration::ZERO,
        catch_up: true,
        events: Default::default(),
    }
}

#[tokio::test]
async fn an_instance_disconnected_for_an_hour_gets_a_probe_per_backoff_not_a_call_per_rotation() {
    // Arrange: 10 groups due every minute; the instance comes back after an hour.
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("h.db")).await.unwrap();
    tokio::time::pause();
    let start = Instant::now();
    let api = Held::new(
        Disconnected {
            connects_at: start + Duration::from_secs(3600),
            calls: Mutex::default(),
        },
        "sales",
        POLICY.backoff_initial,
        POLICY.backoff_max,
        &Holds::default(),
    );
    let groups: Vec<Group> = (0..10).map(group).collect();

    // Act: an hour of fires, then ten minutes connected. (Under the paused
    // clock a fire takes a few virtual minutes: time leaps to the next backoff
    // whenever every task waits on the database's thread.)
    let mut succeeded_at = None;
    let mut fires = 0;
    while Instant::now() - start < Duration::from_secs(70 * 60) {
        let rotations = groups.iter().map(|g| {
            rotate(
                &store,
                &api,
                &POLICY,
                g,
                Cause {
                    trigger: Trigger::Schedule,
                    ..Cause::manual()
                },
            )
        });
        let reports = futures_util::future::join_all(rotations).await;
        fires += 1;
        if succeeded_at.is_none()
            && reports
                .iter()
                .all(|r| r.as_ref().is_ok_and(|r| r.status == Status::Succeeded))
        {
            succeeded_at = Some(Instant::now() - start);
        }
        let minutes = (Instant::now() - start).as_secs() / 60 + 1;
        tokio::time::sleep_until(start + Duration::from_secs(60 * minutes)).await;
    }

    // Assert: a few probes in the hour, not one call per read of each rotation;
    let calls = api.inner().calls.lock().unwrap().clone();
    let in_the_hour = calls
        .iter()
        .filter(|t| **t < start + Duration::from_secs(3600))
        .count();
    assert!(
        in_the_hour <= 25,
        "{in_the_hour} calls reached a disconnected instance in an hour"
    );
    // the probes back off, doubling up to backoff_max;
    let gaps: Vec<Duration> = calls.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        gaps.iter()
            .take(in_the_hour - 1)
            .all(|g| *g <= POLICY.backoff_max + Duration::from_secs(60)),
        "{gaps:?}"
    );
    // rotations resume within backoff_max of the reconnection;
    let back = succeeded_at.expect("rotations resumed").as_secs();
    assert!(
        (3600..=3600 + 2 * 300).contains(&back),
        "resumed {back} s after the start"
    );
    // and every fire left a readable row: failed, saying why, nothing pending.
    let rows = store.history(&HistoryQuery::default()).await.unwrap();
    assert_eq!(rows.len(), fires * 10);
    let held: Vec<_> = rows
        .iter()
        .filter(|r| r.status != Status::Succeeded)
        .collect();
    assert!(
        held.len() >= 200,
        "only {} rotations met the disconnected instance",
        held.len()
    );
    assert!(
        held.iter()
            .all(|r| r.status == Status::Failed && r.attempts == 0)
    );
    assert!(
        held.iter().all(|r| r
            .error
            .as_deref()
            .unwrap_or("")
            .contains("not connected to WhatsApp")),
        "{:?}",
        held.iter()
            .find(|r| !r.error.as_deref().unwrap_or("").contains("not connected"))
    );
    assert!(rows.iter().all(|r| r.status != Status::Pending));
}
