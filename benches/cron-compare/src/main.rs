//! invite-rotator's scheduler beside tokio-cron-scheduler 0.15.1 (`tcs`), on
//! the same machine in the same run.
//!
//! ```text
//! cargo run --release --manifest-path benches/cron-compare/Cargo.toml -- burst
//! cargo run --release --manifest-path benches/cron-compare/Cargo.toml -- dst
//! cargo run --release --manifest-path benches/cron-compare/Cargo.toml -- idle
//! ```
//!
//! - `burst`: 10,000 jobs due at the same second, a few seconds ahead in real
//!   time. tcs: `JobScheduler::new()` (default channels of 200), 10,000
//!   `Job::new_async` whose closure counts; its `Lagged` errors are counted from
//!   its own `error!` events. Ours: `daemon::run` with `SystemClock` over a
//!   config of 10,000 groups and a rotator that counts. Fires delivered within
//!   5 s of the due second, three runs (`BURST_RUNS` overrides), each
//!   implementation in its own process.
//! - `dst`: whether a zoned job keeps a fixed UTC offset after a DST change.
//!   (1) Ours, computed: `Schedule::next_after` across the autumn changes.
//!   (2) tcs, replica: the same croner 3 calls and `FixedOffset` that
//!   tcs's `scheduler.rs` makes, over the same dates. (3) tcs, executed: a live
//!   `JobScheduler` whose job fires now and whose next fire lies after a change;
//!   the next tick tcs stores is read back with `next_tick_for_job`.
//! - `idle`: 100,000 jobs that do not fire during the measurement, over 8 zones;
//!   each implementation in its own process: start-up (process start until all
//!   jobs are scheduled and the scheduler runs), then 1 s to settle and 30 s idle
//!   (`IDLE_SECS` overrides): CPU from /proc/self/stat, VmRSS/VmHWM from
//!   /proc/self/status.

use chrono::{DateTime, Datelike, Duration as ChronoDuration, FixedOffset, Offset, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use invite_rotator::clock::SystemClock;
use invite_rotator::config::{Config, Group, Purpose};
use invite_rotator::daemon::{self, Lifecycle, Rotator};
use invite_rotator::schedule::Schedule;
use invite_rotator::store::{Cause, Store};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tokio_cron_scheduler::{Job, JobScheduler};

const BURST_JOBS: usize = 10_000;
/// Seconds from a burst child's start to the due second.
const BURST_LEAD: i64 = 4;
const IDLE_JOBS: usize = 100_000;
const ZONES: [&str; 8] = [
    "UTC", "Europe/Berlin", "America/New_York", "Asia/Tokyo", "Australia/Sydney",
    "America/Sao_Paulo", "Asia/Kolkata", "Africa/Lagos",
];

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| args.get(i).map(String::as_str).unwrap_or("");
    match arg(0) {
        "burst" => burst(),
        "dst" => dst(),
        "idle" => idle(),
        "burst-child" => println!("{}", runtime().block_on(burst_child(arg(1)))),
        "idle-child" => println!("{}", runtime().block_on(idle_child(arg(1), Instant::now()))),
        _ => eprintln!("usage: cron-compare burst|dst|idle"),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap()
}

/// Runs this binary again with `args`; returns its stdout line.
fn child(args: &[&str]) -> String {
    let out = Command::new(std::env::current_exe().unwrap()).args(args).output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim_end().to_owned()
}

// ---------------------------------------------------------------- burst

fn burst() {
    println!("burst: {BURST_JOBS} jobs due at one second; counted until 5 s after it; one process per run");
    println!("{:<6} {:<4} {:>8} {:>10} {:>14} {:>14} {:>10} {:>10}",
        "impl", "run", "setup s", "delivered", "Lagged events", "fires skipped", "first ms", "last ms");
    let runs = std::env::var("BURST_RUNS").ok().and_then(|s| s.parse().ok()).unwrap_or(3);
    for run in 1..=runs {
        for imp in ["tcs", "ours"] {
            println!("{:<6} {:<4} {}", imp, run, child(&["burst-child", imp]));
        }
    }
    println!("setup: child start until the scheduler runs; first/last ms: delivery after the due second;");
    println!("Lagged events: all tcs actors; fires skipped: sum of n in tcs's `Error receiving Lagged(n)` from its job runner (job/runner.rs:31)");
}

/// Fires counted, with the first and last delivery in ms after the due second.
#[derive(Clone)]
struct Tally {
    due: DateTime<Utc>,
    count: Arc<AtomicUsize>,
    first: Arc<AtomicI64>,
    last: Arc<AtomicI64>,
}

impl Tally {
    fn new(due: DateTime<Utc>) -> Self {
        Tally { due, count: Arc::default(), first: Arc::new(AtomicI64::new(i64::MAX)), last: Arc::new(AtomicI64::new(i64::MIN)) }
    }
    fn record(&self) {
        let ms = (Utc::now() - self.due).num_milliseconds();
        self.count.fetch_add(1, Relaxed);
        self.first.fetch_min(ms, Relaxed);
        self.last.fetch_max(ms, Relaxed);
    }
    fn ms(v: &AtomicI64) -> String {
        match v.load(Relaxed) { i64::MAX | i64::MIN => "-".into(), v => v.to_string() }
    }
}

impl Rotator for Tally {
    async fn rotate(&self, _: Group, _: Cause) {
        self.record();
    }
}

/// A rotator that does nothing (the idle scenario).
struct Nothing;
impl Rotator for Nothing {
    async fn rotate(&self, _: Group, _: Cause) {}
}

/// Counts tcs's `Lagged(n)` errors: events, and the sum of n from its job runner.
#[derive(Default)]
struct Lags { events: AtomicU64, skipped: AtomicU64 }
static LAGS: OnceLock<Lags> = OnceLock::new();

struct LagLayer;
impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for LagLayer {
    fn enabled(&self, meta: &tracing::Metadata<'_>, _: tracing_subscriber::layer::Context<'_, S>) -> bool {
        *meta.level() == tracing::Level::ERROR
    }
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        struct Msg(String);
        impl tracing::field::Visit for Msg {
            fn record_debug(&mut self, _: &tracing::field::Field, v: &dyn std::fmt::Debug) {
                self.0 += &format!("{v:?}");
            }
        }
        let mut msg = Msg(String::new());
        event.record(&mut msg);
        let Some(at) = msg.0.find("Lagged(") else { return };
        let lags = LAGS.get_or_init(Lags::default);
        lags.events.fetch_add(1, Relaxed);
        if event.metadata().module_path() == Some("tokio_cron_scheduler::job::runner") {
            let n: String = msg.0[at + 7..].chars().take_while(char::is_ascii_digit).collect();
            lags.skipped.fetch_add(n.parse().unwrap_or(0), Relaxed);
        }
    }
}

async fn burst_child(imp: &str) -> String {
    use tracing_subscriber::layer::SubscriberExt;
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(LagLayer)).unwrap();
    let start = Instant::now();
    let due = Utc::now().with_nanosecond(0).unwrap() + ChronoDuration::seconds(BURST_LEAD);
    let pattern = format!("{} {} {} * * *", due.second(), due.minute(), due.hour());
    let tally = Tally::new(due);
    let until = sleep_until(due + ChronoDuration::seconds(5));
    let setup = match imp {
        "tcs" => {
            let sched = JobScheduler::new().await.unwrap();
            for _ in 0..BURST_JOBS {
                let t = tally.clone();
                let job = Job::new_async(pattern.as_str(), move |_, _| {
                    let t = t.clone();
                    Box::pin(async move { t.record() })
                });
                sched.add(job.unwrap()).await.unwrap();
            }
            sched.start().await.unwrap();
            let setup = start.elapsed();
            until.await;
            setup
        }
        _ => {
            let config = config(BURST_JOBS, |_| (pattern.clone(), "UTC"));
            let ready = Ready::default();
            let (store, dir) = temp_store().await;
            let (_tx, reloads) = tokio::sync::mpsc::channel(1);
            let clock = Arc::new(SystemClock);
            daemon::run(config, tally.clone(), store, clock, &ready, until, daemon::Inputs::reloads(reloads)).await.unwrap();
            std::fs::remove_dir_all(dir).unwrap();
            *ready.at.get().unwrap() - start
        }
    };
    assert!(setup < Duration::from_secs(BURST_LEAD as u64 - 1), "setup took {setup:?}: raise BURST_LEAD");
    let lags = LAGS.get_or_init(Lags::default);
    format!("{:>8.2} {:>10} {:>14} {:>14} {:>10} {:>10}",
        setup.as_secs_f64(), tally.count.load(Relaxed), lags.events.load(Relaxed),
        lags.skipped.load(Relaxed), Tally::ms(&tally.first), Tally::ms(&tally.last))
}

fn sleep_until(t: DateTime<Utc>) -> tokio::time::Sleep {
    tokio::time::sleep((t - Utc::now()).to_std().unwrap_or_default())
}

/// Config text for `n` groups, as `daemon::run` gets it from a file.
fn config(n: usize, schedule: impl Fn(usize) -> (String, &'static str)) -> Config {
    let mut text = String::from("[[instance]]\nname = \"i\"\ntoken = \"t\"\n");
    for i in 0..n {
        let (s, tz) = schedule(i);
        text += &format!("[[group]]\nname = \"g{i}\"\ninstance = \"i\"\njid = \"{}@g.us\"\nschedule = \"{s}\"\ntimezone = \"{tz}\"\n", 100_000 + i);
    }
    Config::parse(&text, Path::new("bench.toml"), Purpose::Read).unwrap()
}

async fn temp_store() -> (Store, PathBuf) {
    let dir = std::env::temp_dir().join(format!("cron-compare-{}", std::process::id()));
    (Store::open(&dir.join("history.db")).await.unwrap(), dir)
}

/// Records when the daemon is ready (start-up over, timers set).
#[derive(Default)]
struct Ready { at: OnceLock<Instant>, notify: tokio::sync::Notify }
impl Lifecycle for Ready {
    fn ready(&self) {
        let _ = self.at.set(Instant::now());
        self.notify.notify_one();
    }
}

// ---------------------------------------------------------------- idle

fn idle() {
    let secs = idle_secs();
    println!("idle: {IDLE_JOBS} jobs (\"0 M H 1 1 *\", 1,440 distinct times, {} zones), {secs} s idle; one process each", ZONES.len());
    println!("{:<6} {:>11} {:>11} {:>10} {:>8} {:>8}", "impl", "start-up s", "idle ticks", "idle CPU", "RSS MB", "HWM MB");
    for imp in ["tcs", "ours"] {
        println!("{:<6} {}", imp, child(&["idle-child", imp]));
    }
    println!("idle ticks: utime+stime over the idle period, 1 tick = 1/{} s; CPU as % of one core", clk_tck());
}

fn idle_secs() -> u64 {
    std::env::var("IDLE_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(30)
}

fn idle_schedule(i: usize) -> (String, &'static str) {
    (format!("0 {} {} 1 1 *", i % 60, (i / 60) % 24), ZONES[i % ZONES.len()])
}

async fn idle_child(imp: &str, start: Instant) -> String {
    let measure = async |startup: Duration| {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let cpu0 = cpu_ticks();
        tokio::time::sleep(Duration::from_secs(idle_secs())).await;
        let ticks = cpu_ticks() - cpu0;
        let pct = ticks as f64 / clk_tck() as f64 / idle_secs() as f64 * 100.0;
        format!("{:>11.2} {:>11} {:>9.3}% {:>8.1} {:>8.1}",
            startup.as_secs_f64(), ticks, pct, status_mb("VmRSS:"), status_mb("VmHWM:"))
    };
    if imp == "tcs" {
        let sched = JobScheduler::new().await.unwrap();
        for i in 0..IDLE_JOBS {
            let (pattern, zone) = idle_schedule(i);
            let tz: Tz = zone.parse().unwrap();
            let job = Job::new_async_tz(pattern, tz, |_, _| Box::pin(async {}));
            sched.add(job.unwrap()).await.unwrap();
        }
        sched.start().await.unwrap();
        return measure(start.elapsed()).await;
    }
    let config = config(IDLE_JOBS, idle_schedule);
    let ready = Ready::default();
    let (store, dir) = temp_store().await;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (_tx, reloads) = tokio::sync::mpsc::channel(1);
    let shutdown = async { stop_rx.await.unwrap_or(()) };
    let daemon = daemon::run(config, Nothing, store, Arc::new(SystemClock), &ready, shutdown, daemon::Inputs::reloads(reloads));
    let probe = async {
        ready.notify.notified().await;
        let line = measure(*ready.at.get().unwrap() - start).await;
        stop_tx.send(()).unwrap();
        line
    };
    let (done, line) = tokio::join!(daemon, probe);
    done.unwrap();
    std::fs::remove_dir_all(dir).unwrap();
    line
}

/// utime + stime of this process, in clock ticks.
fn cpu_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

fn status_mb(key: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with(key)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<f64>().unwrap() / 1024.0
}

fn clk_tck() -> u64 {
    let out = Command::new("getconf").arg("CLK_TCK").output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().parse().unwrap()
}

// ---------------------------------------------------------------- dst

fn dst() {
    let daily = "0 0 3 * * *";
    for (zone, from) in [("Europe/Berlin", "2026-10-22T12:00:00Z"), ("America/New_York", "2026-10-29T12:00:00Z")] {
        let tz: Tz = zone.parse().unwrap();
        let from: DateTime<Utc> = from.parse().unwrap();
        println!("dst (1)+(2): \"{daily}\" in {zone}; tcs job created at {from} (offset {})", offset(tz, from));
        println!("  {:<22} {:<22} {:<22} {:<22}", "ours UTC", "ours local", "tcs replica UTC", "tcs replica local");
        let ours = Schedule::parse(daily).unwrap().upcoming(from, tz, 6);
        for (o, t) in ours.iter().zip(tcs_replica(daily, tz, from, 6)) {
            let local = |t: DateTime<Utc>| t.with_timezone(&tz).format("%m-%d %H:%M %Z").to_string();
            println!("  {:<22} {:<22} {:<22} {:<22}", fmt_utc(o.with_timezone(&Utc)), local(o.with_timezone(&Utc)), fmt_utc(t), local(t));
        }
    }
    runtime().block_on(dst_live());
}

/// tcs's arithmetic, outside tcs: the first tick as `Job::new_async_tz` computes
/// it (job/mod.rs:222-242, the real zone), every later one as the ticker does
/// (scheduler.rs:183-192: `FixedOffset` from the offset at creation, then
/// `iter_after(now)`); `now` is the tick plus 0.5 s, the ticker's period.
fn tcs_replica(pattern: &str, tz: Tz, created: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
    use croner3::parser::{CronParser, Seconds};
    let cron = CronParser::builder().seconds(Seconds::Required).dom_and_dow(true).build().parse(pattern).unwrap();
    let fixed = FixedOffset::east_opt(offset(tz, created)).unwrap();
    let mut tick = cron.find_next_occurrence(&created.with_timezone(&tz), false).unwrap().with_timezone(&Utc);
    let mut out = vec![tick];
    while out.len() < n {
        let now = tick + ChronoDuration::milliseconds(500);
        tick = cron.iter_after(now.with_timezone(&fixed)).next().unwrap().with_timezone(&Utc);
        out.push(tick);
    }
    out
}

/// tcs, executed: a job in each zone that fires a few seconds from now and next
/// on the 1st of the first month with another UTC offset. After it fires, tcs's
/// ticker stores the next tick; `next_tick_for_job` reads it back.
async fn dst_live() {
    let mut sched = JobScheduler::new().await.unwrap();
    let fire_utc = Utc::now().with_nanosecond(0).unwrap() + ChronoDuration::seconds(3);
    let (mut jobs, fired) = (Vec::new(), Arc::new(AtomicUsize::new(0)));
    for zone in ["Europe/Berlin", "Australia/Sydney"] {
        let tz: Tz = zone.parse().unwrap();
        let fire = fire_utc.with_timezone(&tz);
        let other = (1..=12).find_map(|k| {
            let m0 = fire.month0() + k;
            let first = tz.with_ymd_and_hms(fire.year() + (m0 / 12) as i32, m0 % 12 + 1, 1, fire.hour(), fire.minute(), fire.second()).single()?;
            (offset(tz, first.with_timezone(&Utc)) != offset(tz, fire_utc)).then_some(m0 % 12 + 1)
        }).unwrap();
        let days = if fire.day() == 1 { "1".to_owned() } else { format!("1,{}", fire.day()) };
        let pattern = format!("{} {} {} {days} {},{other} *", fire.second(), fire.minute(), fire.hour(), fire.month());
        let f = fired.clone();
        let job = Job::new_async_tz(pattern.as_str(), tz, move |_, _| {
            f.fetch_add(1, Relaxed);
            Box::pin(async {})
        });
        let id = sched.add(job.unwrap()).await.unwrap();
        let first = sched.next_tick_for_job(id).await.unwrap().unwrap();
        jobs.push((zone, tz, pattern, id, first));
    }
    sched.start().await.unwrap();
    sleep_until(fire_utc + ChronoDuration::milliseconds(2500)).await;
    println!("dst (3): tcs executed: jobs due {}, fired {} of 2, next tick read back", fmt_utc(fire_utc), fired.load(Relaxed));
    for (zone, tz, pattern, id, first) in jobs {
        let next = sched.next_tick_for_job(id).await.unwrap().unwrap();
        let ours = Schedule::parse(&pattern).unwrap().next_after(fire_utc, tz).unwrap().with_timezone(&Utc);
        println!("  {zone}, \"{pattern}\", created with offset {}s", offset(tz, fire_utc));
        for (what, t) in [("tcs first tick", first), ("tcs next tick after firing", next), ("ours next after that fire", ours)] {
            println!("    {what:<27} {}  = {}", fmt_utc(t), t.with_timezone(&tz).format("%Y-%m-%d %H:%M:%S %Z"));
        }
    }
    sched.shutdown().await.unwrap();
}

fn offset(tz: Tz, at: DateTime<Utc>) -> i32 {
    tz.offset_from_utc_datetime(&at.naive_utc()).fix().local_minus_utc()
}

fn fmt_utc(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%SZ").to_string()
}
