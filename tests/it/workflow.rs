//! The rotation workflow against a scripted API, under paused time: backoff,
//! what is retried and what is not, and what happens when the truth is out of reach.

use invite_rotator::backoff;
use invite_rotator::config::{Group, RetryPolicy};
use invite_rotator::rotation::{Report, rotate};
use invite_rotator::ryzeapi::{Call, CallError, GroupInfo, ResetReply, RyzeApi};
use invite_rotator::schedule::Schedule;
use invite_rotator::store::{Cause, Status, Store};
use invite_rotator::whatsapp::{InviteCode, Jid};
use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// An API that answers from a script and notes when each call came.
#[derive(Default)]
struct Scripted {
    resets: Mutex<VecDeque<Result<ResetReply, CallError>>>,
    infos: Mutex<VecDeque<Result<GroupInfo, CallError>>>,
    log: Mutex<Vec<(&'static str, Instant)>>,
}

fn call<T>(result: Result<T, CallError>) -> Call<T> {
    Call {
        result,
        http_status: None,
        elapsed: Duration::ZERO,
    }
}

impl RyzeApi for Scripted {
    async fn reset_link(&self, _jid: &Jid) -> Call<ResetReply> {
        self.log.lock().unwrap().push(("reset", Instant::now()));
        let next = self.resets.lock().unwrap().pop_front();
        call(next.unwrap_or_else(|| Err(CallError::Permanent("script ran out".into()))))
    }

    async fn group_info(&self, _jid: &Jid) -> Call<GroupInfo> {
        self.log.lock().unwrap().push(("info", Instant::now()));
        let next = self.infos.lock().unwrap().pop_front();
        call(next.unwrap_or_else(|| Err(CallError::Permanent("script ran out".into()))))
    }
}

impl Scripted {
    fn new(
        infos: Vec<Result<GroupInfo, CallError>>,
        resets: Vec<Result<ResetReply, CallError>>,
    ) -> Self {
        Scripted {
            resets: Mutex::new(resets.into()),
            infos: Mutex::new(infos.into()),
            log: Mutex::default(),
        }
    }

    fn kinds(&self) -> Vec<&'static str> {
        self.log.lock().unwrap().iter().map(|(k, _)| *k).collect()
    }

    fn times(&self, kind: &str) -> Vec<Instant> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|(k, _)| *k == kind)
            .map(|(_, t)| *t)
            .collect()
    }
}

fn code(c: &str) -> InviteCode {
    InviteCode::parse(c).unwrap()
}

fn live(c: &str) -> Result<GroupInfo, CallError> {
    Ok(GroupInfo {
        code: Some(code(c)),
    })
}

fn issued(c: &str) -> Result<ResetReply, CallError> {
    Ok(ResetReply { code: code(c) })
}

fn transient() -> CallError {
    CallError::Transient("HTTP 503: Instance is not connected to WhatsApp".into())
}

fn unknown() -> CallError {
    CallError::Unknown("timed out".into())
}

const POLICY: RetryPolicy = RetryPolicy {
    max_attempts: 4,
    backoff_initial: Duration::from_secs(2),
    backoff_max: Duration::from_secs(300),
    read_back_delay: Duration::from_secs(30),
};

fn group() -> Group {
    Group {
        name: "vip".into(),
        instance: "sales".into(),
        jid: Jid::parse("120363406289005073@g.us").unwrap(),
        schedule: Schedule::parse("0 3 * * *").unwrap(),
        timezone: chrono_tz::UTC,
        jitter: Duration::ZERO,
        catch_up: true,
        events: Default::default(),
    }
}

/// Opens a fresh store, then pauses the clock: from here on, time only moves
/// when every task waits on a timer, so backoffs take no real time and their
/// lengths can be read off `Instant::now()`. (The store is opened first: its
/// pool must connect on real time.)
async fn paused_store() -> (Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("h.db")).await.unwrap();
    tokio::time::pause();
    (store, dir)
}

async fn run(api: &Scripted) -> (Report, Store, tempfile::TempDir) {
    let (store, dir) = paused_store().await;
    let report = rotate(&store, api, &POLICY, &group(), Cause::manual())
        .await
        .unwrap();
    (report, store, dir)
}

#[tokio::test]
async fn transient_errors_are_retried_with_full_jitter_backoff_under_the_ceilings() {
    let api = Scripted::new(
        vec![live("OLD")],
        vec![Err(transient()), Err(transient()), issued("NEW")],
    );

    let (report, store, _dir) = run(&api).await;

    assert_eq!(report.status, Status::Succeeded);
    assert_eq!(report.attempts, 3);
    let t = api.times("reset");
    for (n, gap) in t.windows(2).map(|w| w[1] - w[0]).enumerate() {
        let ceiling = backoff::ceiling(&POLICY, n as u32 + 1);
        assert!(gap > Duration::ZERO, "wait {n}: no backoff at all");
        assert!(gap <= ceiling, "wait {n} was {gap:?}, above {ceiling:?}");
    }
    let row = store.rotation(report.id).await.unwrap().unwrap();
    assert_eq!(
        (
            row.old_invite_code.as_deref(),
            row.new_invite_code.as_deref()
        ),
        (Some("OLD"), Some("NEW"))
    );
    assert_eq!(row.attempts, 3);
}

#[tokio::test]
async fn a_permanent_error_fails_at_once_after_one_reset() {
    let refused = CallError::Permanent(
        "HTTP 403: Not authorized to reset group invite link (must be admin)".into(),
    );
    let api = Scripted::new(vec![live("OLD")], vec![Err(refused)]);

    let (report, _store, _dir) = run(&api).await;

    assert_eq!(report.status, Status::Failed);
    assert_eq!(report.attempts, 1);
    assert_eq!(api.kinds(), ["info", "reset"]);
    let t = api.times("reset");
    assert_eq!(
        t[0] - api.times("info")[0],
        Duration::ZERO,
        "no wait before the reset"
    );
    assert!(report.error.unwrap().contains("must be admin"));
}

#[tokio::test]
async fn after_an_unknown_outcome_the_link_is_read_and_an_unchanged_link_allows_a_retry() {
    let api = Scripted::new(
        vec![live("OLD"), live("OLD"), live("OLD")],
        vec![Err(unknown()), issued("NEW")],
    );

    let (report, _store, _dir) = run(&api).await;

    // Read back after the wait, and again right before the retry.
    assert_eq!(api.kinds(), ["info", "reset", "info", "info", "reset"]);
    assert_eq!(report.status, Status::Succeeded);
    assert_eq!(report.new_code.as_deref(), Some("NEW"));
}

#[tokio::test]
async fn a_reset_that_lands_during_the_backoff_is_recorded_and_not_revoked_by_a_retry() {
    // The read-back still sees the old link; the reset lands during the
    // backoff; the read right before the retry sees it.
    let api = Scripted::new(
        vec![live("OLD"), live("OLD"), live("LANDED")],
        vec![Err(unknown()), issued("NEVER")],
    );

    let (report, _store, _dir) = run(&api).await;

    assert_eq!(api.kinds(), ["info", "reset", "info", "info"]);
    assert_eq!(report.status, Status::Succeeded);
    assert_eq!(report.new_code.as_deref(), Some("LANDED"));
}

#[tokio::test]
async fn after_an_unknown_outcome_a_changed_link_is_recorded_as_the_new_code_without_another_reset()
{
    let api = Scripted::new(vec![live("OLD"), live("HAPPENED")], vec![Err(unknown())]);

    let (report, store, _dir) = run(&api).await;

    assert_eq!(api.kinds(), ["info", "reset", "info"]);
    assert_eq!(report.status, Status::Succeeded);
    let row = store.rotation(report.id).await.unwrap().unwrap();
    assert_eq!(row.new_invite_code.as_deref(), Some("HAPPENED"));
    assert_eq!(
        row.new_invite_link.as_deref(),
        Some("https://chat.whatsapp.com/HAPPENED")
    );
}

#[tokio::test]
async fn when_the_link_cannot_be_read_back_the_rotation_stays_unknown_and_is_not_retried() {
    let infos = vec![
        live("OLD"),
        Err(transient()),
        Err(transient()),
        Err(transient()),
        Err(transient()),
    ];
    let api = Scripted::new(infos, vec![Err(unknown()), issued("NEVER")]);

    let (report, store, _dir) = run(&api).await;

    assert_eq!(report.status, Status::Unknown);
    assert_eq!(api.times("reset").len(), 1, "no blind reset");
    assert_eq!(api.times("info").len(), 1 + POLICY.max_attempts as usize);
    let row = store.rotation(report.id).await.unwrap().unwrap();
    assert_eq!(row.status, Status::Unknown);
    assert!(row.error.unwrap().contains("timed out"));
}

#[tokio::test]
async fn when_the_old_link_was_not_visible_an_unknown_outcome_is_never_retried() {
    let api = Scripted::new(
        vec![Ok(GroupInfo { code: None })],
        vec![Err(unknown()), issued("NEVER")],
    );

    let (report, _store, _dir) = run(&api).await;

    assert_eq!(report.status, Status::Unknown);
    assert_eq!(api.kinds(), ["info", "reset"]);
}

#[tokio::test]
async fn transient_errors_until_the_last_attempt_fail_the_rotation_with_the_last_error() {
    let api = Scripted::new(
        vec![live("OLD")],
        (0..POLICY.max_attempts).map(|_| Err(transient())).collect(),
    );

    let (report, _store, _dir) = run(&api).await;

    assert_eq!(report.status, Status::Failed);
    assert_eq!(report.attempts, POLICY.max_attempts);
    assert!(report.error.unwrap().contains("503"));
}

#[tokio::test]
async fn a_rate_limited_reset_is_retried_without_backoff_on_top_of_the_pause() {
    let limited = CallError::RateLimited {
        wait: Duration::from_secs(10),
        message: "HTTP 429: Rate limit exceeded. Try again later.".into(),
    };
    let api = Scripted::new(vec![live("OLD")], vec![Err(limited), issued("NEW")]);

    let (report, _store, _dir) = run(&api).await;

    assert_eq!(report.status, Status::Succeeded);
    // The client's limiter does the waiting; the workflow adds none.
    let t = api.times("reset");
    assert_eq!(t[1] - t[0], Duration::ZERO);
}

#[tokio::test]
async fn a_history_that_cannot_be_written_stops_the_rotation_before_any_call() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("h.db");
    drop(Store::open(&path).await.unwrap());
    let read_only = Store::open_read_only(&path).await.unwrap();
    tokio::time::pause();
    let api = Scripted::new(vec![live("OLD")], vec![issued("NEW")]);

    let result = rotate(&read_only, &api, &POLICY, &group(), Cause::manual()).await;

    assert!(result.is_err());
    assert!(
        api.kinds().is_empty(),
        "the API was called without a record"
    );
}
