//! Command hooks: a program run with the rotation in environment variables
//! (`INVITE_ROTATOR_GROUP`, `INVITE_ROTATOR_NEW_LINK`, ...). Its environment
//! is cleared first, so the daemon's own (API tokens among it) never reaches
//! it; `PATH` is set to the system default.

use super::{Notification, Outcome, clip};
use std::process::Stdio;
use std::time::Duration;

pub(super) async fn run(
    argv: &[String],
    timeout: Duration,
    idempotency_key: &str,
    note: &Notification,
) -> Outcome {
    let Some((program, args)) = argv.split_first() else {
        return failed(None, "empty command".into(), None);
    };
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
        .kill_on_drop(true);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return failed(None, format!("cannot run {program:?}: {e}"), None),
    };
    let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
    let finished = async {
        let (out, err, status) = tokio::join!(head(stdout), head(stderr), child.wait());
        (out + &err, status)
    };
    match tokio::time::timeout(timeout, finished).await {
        // Dropping the child kills it (kill_on_drop).
        Err(_) => failed(None, format!("timed out after {timeout:?} (killed)"), None),
        Ok((_, Err(e))) => failed(None, format!("cannot wait for {program:?}: {e}"), None),
        Ok((text, Ok(status))) => {
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

/// The first 4 KiB of a pipe; the rest is read and dropped, so that a chatty
/// command never blocks on a full pipe nor fills our memory.
async fn head(pipe: Option<impl tokio::io::AsyncRead + Unpin>) -> String {
    use tokio::io::AsyncReadExt;
    let Some(mut pipe) = pipe else {
        return String::new();
    };
    let mut kept = Vec::with_capacity(1024);
    let _ = (&mut pipe).take(4096).read_to_end(&mut kept).await;
    let _ = tokio::io::copy(&mut pipe, &mut tokio::io::sink()).await;
    String::from_utf8_lossy(&kept).into_owned()
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
