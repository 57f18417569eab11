//! Command hooks: a program run with the rotation in environment variables
//! (`INVITE_ROTATOR_GROUP`, `INVITE_ROTATOR_NEW_LINK`, ...). Its environment
//! is cleared first, so the daemon's own (API tokens among it) never reaches
//! it; `PATH` is set to the system default. It runs in a process group of
//! its own: a timeout kills the group, everything it started included, and a
//! background process it leaves on its output does not hold the delivery up.

use super::{Notification, Outcome, clip};
use std::process::Stdio;
use std::time::Duration;

pub(super) async fn run(
    argv: &[String],
    timeout: Duration,
    idempotency_key: &str,
    note: &Notification,
) -> Outcome {
    let opt = |v: &Option<String>| v.clone().unwrap_or_default();
    let vars = [
        ("EVENT", note.event.clone()),
        ("ROTATION_ID", note.rotation_id.to_string()),
        ("GROUP", note.group.clone()),
        ("JID", note.jid.clone()),
        ("INSTANCE", note.instance.clone()),
        ("TRIGGER", note.trigger.clone()),
        ("STATUS", note.status.clone()),
        ("OLD_CODE", opt(&note.old_code)),
        ("OLD_LINK", opt(&note.old_link)),
        ("NEW_CODE", opt(&note.new_code)),
        ("NEW_LINK", opt(&note.new_link)),
        ("SCHEDULED_FOR", opt(&note.scheduled_for)),
        ("STARTED_AT", note.started_at.clone()),
        ("FINISHED_AT", opt(&note.finished_at)),
        ("ATTEMPTS", note.attempts.to_string()),
        ("ERROR", opt(&note.error)),
        ("IDEMPOTENCY_KEY", idempotency_key.to_owned()),
    ];
    run_with(argv, timeout, &vars).await
}

/// Runs `argv` with the variables `vars` (each as `INVITE_ROTATOR_{name}`)
/// and nothing else of the daemon's environment.
pub(super) async fn run_with(
    argv: &[String],
    timeout: Duration,
    vars: &[(&str, String)],
) -> Outcome {
    let Some((program, args)) = argv.split_first() else {
        return failed(None, "empty command".into(), None);
    };
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .envs(vars.iter().map(|(k, v)| (format!("INVITE_ROTATOR_{k}"), v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so that a timeout kills what it started too.
        .process_group(0)
        .kill_on_drop(true);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return failed(None, format!("cannot run {program:?}: {e}"), None),
    };
    // Until the command has exited, dropping this (the daemon stopping
    // mid-delivery) kills its whole group too, not just the command.
    let mut group = GroupGuard(child.id());
    let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
    // Output is read while the command runs, and for a moment after it
    // exits; a background process it left holding the pipes (`sleep 300 &`)
    // does not hold the delivery up.
    let (out, err) = (Captured::default(), Captured::default());
    let mut reading = tokio::spawn({
        let (out, err) = (out.clone(), err.clone());
        async move {
            tokio::join!(capture(stdout, out), capture(stderr, err));
        }
    });
    let status = tokio::time::timeout(timeout, child.wait()).await;
    match &status {
        // The whole group: the command and everything it started.
        Err(_) => group.kill(),
        // Exited: what it left running in the background is its own affair.
        Ok(_) => group.0 = None,
    }
    if tokio::time::timeout(OUTPUT_GRACE, &mut reading)
        .await
        .is_err()
    {
        // Still held open by something the command left running: what was
        // read so far is the output.
        reading.abort();
    }
    let text = out.text() + &err.text();
    match status {
        Err(_) => failed(
            None,
            format!("timed out after {timeout:?} (killed with its process group)"),
            None,
        ),
        Ok(Err(e)) => failed(None, format!("cannot wait for {program:?}: {e}"), None),
        Ok(Ok(status)) => {
            use std::os::unix::process::ExitStatusExt;
            let output = Some(clip(&text));
            let result = status.code().map_or_else(
                || format!("signal {}", status.signal().unwrap_or(0)),
                |c| c.to_string(),
            );
            if status.success() {
                Outcome {
                    delivered: true,
                    result: Some(result),
                    error: None,
                    output,
                }
            } else {
                failed(
                    Some(result.clone()),
                    format!("exited with {result}"),
                    output,
                )
            }
        }
    }
}

/// How long output is still read after the command exited.
const OUTPUT_GRACE: Duration = Duration::from_millis(500);

/// The hook's process group (its leader's pid), killed when dropped unless
/// cleared: a delivery cut short kills what the hook started.
struct GroupGuard(Option<u32>);

impl GroupGuard {
    /// SIGKILL to the whole group, once.
    fn kill(&mut self) {
        let Some(pgid) = self
            .0
            .take()
            .and_then(|pid| libc::pid_t::try_from(pid).ok())
        else {
            return;
        };
        // SAFETY: kill(2) takes plain integers; a negative pid names the
        // process group, which is the hook's own (process_group(0) made it
        // its leader).
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The first 4 KiB a pipe gave, shared with the task that reads it.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl Captured {
    fn text(&self) -> String {
        let kept = self.0.lock().unwrap_or_else(|p| p.into_inner());
        String::from_utf8_lossy(&kept).into_owned()
    }
}

/// Reads a pipe to its end, keeping the first 4 KiB in `into` as it comes
/// and dropping the rest, so that a chatty command never blocks on a full
/// pipe nor fills our memory.
async fn capture(pipe: Option<impl tokio::io::AsyncRead + Unpin>, into: Captured) {
    use tokio::io::AsyncReadExt;
    let Some(mut pipe) = pipe else { return };
    let mut chunk = [0u8; 1024];
    while let Ok(n) = pipe.read(&mut chunk).await {
        if n == 0 {
            return;
        }
        let mut kept = into.0.lock().unwrap_or_else(|p| p.into_inner());
        let room = 4096usize.saturating_sub(kept.len());
        kept.extend_from_slice(&chunk[..n.min(room)]);
    }
}

fn failed(result: Option<String>, error: String, output: Option<String>) -> Outcome {
    Outcome {
        delivered: false,
        result,
        error: Some(error),
        output,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note() -> Notification {
        Notification {
            event: "rotation.succeeded".into(),
            rotation_id: 7,
            group: "vip".into(),
            jid: "1@g.us".into(),
            instance: "sales".into(),
            trigger: "manual".into(),
            status: "succeeded".into(),
            old_code: None,
            old_link: None,
            new_code: Some("NEW".into()),
            new_link: Some("https://chat.whatsapp.com/NEW".into()),
            scheduled_for: None,
            started_at: "2026-11-27T03:00:00.000Z".into(),
            finished_at: None,
            attempts: 1,
            error: None,
        }
    }

    fn sh(script: &str) -> Vec<String> {
        vec!["sh".into(), "-c".into(), script.into()]
    }

    #[tokio::test]
    async fn a_failing_chatty_command_keeps_4_kib_of_output_and_its_exit_status() {
        let out = run(
            &sh("yes | head -c 1000000; exit 3"),
            Duration::from_secs(10),
            "k",
            &note(),
        )
        .await;

        assert!(!out.delivered);
        assert_eq!(out.result.as_deref(), Some("3"));
        assert_eq!(out.output.map(|o| o.len()), Some(4096));
    }

    #[tokio::test]
    async fn a_command_past_its_timeout_is_killed_and_not_delivered() {
        let started = std::time::Instant::now();
        let out = run(&sh("sleep 30"), Duration::from_millis(200), "k", &note()).await;

        assert!(!out.delivered);
        assert!(out.error.unwrap().contains("timed out"));
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    /// Whether any process of the group `pgid` is left.
    fn group_alive(pgid: u32) -> bool {
        // SAFETY: signal 0 only checks that the group exists.
        unsafe { libc::kill(-(pgid as libc::pid_t), 0) == 0 }
    }

    #[tokio::test]
    async fn a_timeout_kills_the_whole_process_group_not_just_the_command() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("pgid");
        let script = format!("echo $$ > {}; sleep 300 & sleep 300", pid_file.display());

        let out = run(&sh(&script), Duration::from_millis(300), "k", &note()).await;

        assert!(!out.delivered);
        let pgid: u32 = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let gone = std::time::Instant::now() + Duration::from_secs(5);
        while group_alive(pgid) && std::time::Instant::now() < gone {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(!group_alive(pgid), "a sleep outlived the hook's timeout");
    }

    #[tokio::test]
    async fn a_command_that_exits_leaving_a_child_on_its_output_is_delivered_at_once() {
        let started = std::time::Instant::now();

        let out = run(
            &sh("echo done; sleep 300 & exit 0"),
            Duration::from_secs(20),
            "k",
            &note(),
        )
        .await;

        assert!(out.delivered, "{:?}", out.error);
        assert!(out.output.unwrap().contains("done"));
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "waited for the background sleep"
        );
    }

    #[tokio::test]
    async fn the_command_sees_the_facts_and_succeeds_with_exit_0() {
        let out = run(
            &sh("test \"$INVITE_ROTATOR_NEW_CODE\" = NEW && test \"$INVITE_ROTATOR_IDEMPOTENCY_KEY\" = k"),
            Duration::from_secs(10),
            "k",
            &note(),
        )
        .await;

        assert!(out.delivered, "{:?}", out.error);
    }
}
