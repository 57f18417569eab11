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
    let child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return failed(None, format!("cannot run {program:?}: {e}"), None),
    };
    match tokio::time::timeout(timeout, child.wait_with_output()).await {
        // Dropping the future kills the child (kill_on_drop).
        Err(_) => failed(None, format!("timed out after {timeout:?} (killed)"), None),
        Ok(Err(e)) => failed(None, format!("cannot wait for {program:?}: {e}"), None),
        Ok(Ok(out)) => {
            let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
            text.push_str(&String::from_utf8_lossy(&out.stderr));
            let output = Some(clip(&text));
            let result = out.status.code().map_or_else(
                || {
                    format!(
                        "signal {}",
                        std::os::unix::process::ExitStatusExt::signal(&out.status).unwrap_or(0)
                    )
                },
                |c| c.to_string(),
            );
            if out.status.success() {
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

fn failed(result: Option<String>, error: String, output: Option<String>) -> Outcome {
    Outcome {
        delivered: false,
        result,
        error: Some(error),
        output,
    }
}
