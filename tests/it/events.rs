//! RyzeAPI's events, end to end: a whole node, in the test's process,
//! receives the emulator's deliveries and rotates when a member is removed,
//! records links changed elsewhere, and leaves an instance alone while it
//! is reported offline. (`rotate`s beside it are the real binary.)

use crate::common::events::{
    SECRET, SECRET_VAR, events, mark, node_events_app, node_events_app_with, quiet, settled,
    start_node, stop_node, with_trigger,
};
use crate::common::{INSTANCE, Setup, fast_api, wait_until};
use invite_rotator::emulator::{EmulatorOptions, EventShape};
use invite_rotator::store::{Status, Store, Trigger};
use std::time::Duration;

/// How many removals are stored.
async fn removals(app: &crate::common::TestApp) -> usize {
    events(app)
        .await
        .iter()
        .filter(|e| e.kind == "member_removed")
        .count()
}

fn at(t: &str) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(t)
        .expect("an RFC 3339 time")
        .with_timezone(&chrono::Utc)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_member_rotates_the_group_after_its_quiet_period_and_our_own_reset_is_not_outside()
 {
    // Arrange: event_delay 1 s; whatsmeow's GroupInfo shape.
    let (app, listeners, _) = node_events_app(
        &[Setup::Admin, Setup::Admin],
        "",
        "event_delay = \"1s\"",
        &[],
    )
    .await;
    app.emulator.set_event_shape(EventShape::GroupInfo);
    let node = start_node(&app, listeners).await;
    let group = &app.groups[0];

    // Act
    app.emulator
        .remove_member(&group.jid, "5511999990001@s.whatsapp.net");
    app.wait_for("the event's rotation", Duration::from_secs(20), |rows| {
        rows.iter()
            .any(|r| r.trigger == Trigger::MemberRemoved && r.status == Status::Succeeded)
    })
    .await;
    settled(&app).await;

    // Assert: one rotation of that group, started within delay + 1 s of the
    // event's arrival (both times as the database holds them), naming it.
    let rows = app.history().await;
    let rotation = &with_trigger(&rows, Trigger::MemberRemoved)[0];
    assert_eq!(rows.len(), 1, "only the removal rotated: {rows:?}");
    assert_eq!(rotation.group_name, group.name);
    let all = events(&app).await;
    let removal = all
        .iter()
        .find(|e| e.kind == "member_removed")
        .expect("stored");
    assert_eq!(rotation.event_id, Some(removal.id));
    let waited = at(&rotation.started_at) - at(&removal.received_at);
    assert!(
        waited >= chrono::Duration::milliseconds(1000)
            && waited <= chrono::Duration::milliseconds(2000),
        "rotation started {waited} after the event"
    );
    // The reset's own link change came back as an event and is known.
    let own = all
        .iter()
        .find(|e| e.kind == "link_changed")
        .expect("the reset's event");
    assert!(
        own.outcome
            .as_deref()
            .unwrap_or("")
            .contains("already holds"),
        "{own:?}"
    );
    assert!(with_trigger(&rows, Trigger::Outside).is_empty());
    let store = app.store().await;
    app.assert_chain_complete(&store, group).await;
    stop_node(&app, node).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_removals_in_one_second_make_one_rotation() {
    let (app, listeners, _) =
        node_events_app(&[Setup::Admin], "", "event_delay = \"1s\"", &[]).await;
    app.emulator.set_event_shape(EventShape::Flat);
    let node = start_node(&app, listeners).await;
    let group = &app.groups[0];

    for i in 0..5 {
        app.emulator
            .remove_member(&group.jid, &format!("551199999000{i}@s.whatsapp.net"));
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    app.wait_for("the burst's rotation", Duration::from_secs(20), |rows| {
        rows.iter().any(|r| r.status == Status::Succeeded)
    })
    .await;
    // Every removal stored, then nothing more can come of them: each acted
    // on, and the call they made answered (a second rotation would be
    // called for, and its call answered only once it succeeded).
    wait_until("every removal stored", Duration::from_secs(20), || async {
        removals(&app).await == 5
    })
    .await;
    quiet(&app).await;

    let rows = app.history().await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].trigger, Trigger::MemberRemoved);
    assert_eq!(removals(&app).await, 5, "every removal stored");
    assert_eq!(app.emulator.reset_calls(&group.jid), 1);
    stop_node(&app, node).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_who_left_rotates_only_where_rotate_on_says_so_and_an_empty_rotate_on_ignores_removals()
 {
    // group-0 rotates on both; group-1 on removals only (the default);
    // group-2 on nothing.
    let (app, listeners, _) = node_events_app(
        &[Setup::Admin, Setup::Admin, Setup::Admin],
        "",
        "event_delay = \"500ms\"",
        &[
            "rotate_on = [\"member_removed\", \"member_left\"]",
            "",
            "rotate_on = []",
        ],
    )
    .await;
    let node = start_node(&app, listeners).await;
    let [g0, g1, g2] = [&app.groups[0], &app.groups[1], &app.groups[2]];

    app.emulator
        .member_leaves(&g0.jid, "5511999990001@s.whatsapp.net");
    app.emulator
        .member_leaves(&g1.jid, "5511999990002@s.whatsapp.net");
    app.emulator
        .remove_member(&g2.jid, "5511999990003@s.whatsapp.net");
    app.wait_for("group-0's rotation", Duration::from_secs(20), |rows| {
        rows.iter()
            .any(|r| r.group_name == g0.name && r.status == Status::Succeeded)
    })
    .await;
    // The three reports stored, then nothing more can come of them.
    wait_until(
        "the three reports stored",
        Duration::from_secs(20),
        || async {
            events(&app)
                .await
                .iter()
                .filter(|e| e.kind != "link_changed")
                .count()
                == 3
        },
    )
    .await;
    quiet(&app).await;

    let rows = app.history().await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].trigger, Trigger::MemberLeft);
    let outcomes: Vec<String> = events(&app)
        .await
        .iter()
        .filter(|e| e.kind != "link_changed")
        .map(|e| e.outcome.clone().unwrap_or_default())
        .collect();
    assert_eq!(
        outcomes.iter().filter(|o| o.contains("rotate_on")).count(),
        2,
        "{outcomes:?}"
    );
    assert_eq!(
        app.emulator.reset_calls(&g1.jid) + app.emulator.reset_calls(&g2.jid),
        0
    );
    stop_node(&app, node).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outside_resets_are_recorded_at_once_and_the_chain_holds_with_them_mixed_in() {
    let (app, listeners, _) =
        node_events_app(&[Setup::Admin], "", "event_delay = \"300ms\"", &[]).await;
    let node = start_node(&app, listeners).await;
    let group = app.groups[0].clone();

    // Ours by `rotate` (so that the history knows a code the first outside
    // change replaced), outside, ours by a removal, and again, each seen
    // through before the next.
    let mut expected_outside = 0;
    for step in 0..6 {
        let rows_before = app.history().await.len();
        match step % 3 {
            1 => {
                app.emulator.reset_outside(&group.jid);
                expected_outside += 1;
            }
            2 => app
                .emulator
                .remove_member(&group.jid, &format!("55119999900{step}@s.whatsapp.net")),
            _ => {
                let out = app
                    .run_with(&["rotate", "group-0"], &[(SECRET_VAR, SECRET)])
                    .await;
                assert!(out.status.success(), "{out:?}");
            }
        }
        app.wait_for("the step's row", Duration::from_secs(20), |rows| {
            rows.len() > rows_before && rows.iter().all(|r| r.status != Status::Pending)
        })
        .await;
        settled(&app).await;
    }

    let rows = app.history().await;
    let outside = with_trigger(&rows, Trigger::Outside);
    assert_eq!(outside.len(), expected_outside, "{rows:?}");
    let all = events(&app).await;
    for row in &outside {
        assert_eq!(row.status, Status::Succeeded);
        assert_eq!(row.attempts, 0);
        let event = all
            .iter()
            .find(|e| Some(e.id) == row.event_id)
            .expect("its event");
        let recorded = at(row.finished_at.as_deref().expect("finished")) - at(&event.received_at);
        assert!(
            recorded <= chrono::Duration::seconds(1),
            "recorded {recorded} after the event"
        );
    }
    let store = app.store().await;
    app.assert_chain_complete(&store, &group).await;
    stop_node(&app, node).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_the_instance_is_reported_disconnected_no_group_call_is_made_and_the_removal_rotates_once_connected()
 {
    let (app, listeners, port) =
        node_events_app(&[Setup::Admin], "", "event_delay = \"200ms\"", &[]).await;
    let node = start_node(&app, listeners).await;
    let group = app.groups[0].clone();

    app.emulator.set_connected(INSTANCE, false);
    wait_until("the hold", Duration::from_secs(10), || async {
        events(&app).await.iter().any(|e| {
            e.outcome
                .as_deref()
                .is_some_and(|o| o.starts_with("instance held"))
        })
    })
    .await;
    let calls_before = app.emulator.calls().len();
    app.emulator
        .remove_member(&group.jid, "5511999990001@s.whatsapp.net");
    // The removal calls for a rotation; once its quiet period is over, the
    // actor looks at the call and, the instance held, asks for nothing. A
    // mark delivered after the quiet period, and a second one after the
    // first was acted on, prove that a look at the due call went by.
    wait_until("the removal's call", Duration::from_secs(20), || async {
        let Ok(store) = Store::connect_read_only(&app.database).await else {
            return false;
        };
        let calls = store.event_rotations().await.unwrap_or_default();
        calls.iter().any(|c| c.due_at < chrono::Utc::now())
    })
    .await;
    mark(&app, port, &group.jid, 1).await;
    mark(&app, port, &group.jid, 2).await;
    let group_calls: Vec<_> = app.emulator.calls()[calls_before..]
        .iter()
        .filter(|c| c.jid.is_some())
        .cloned()
        .collect();
    assert!(group_calls.is_empty(), "calls while held: {group_calls:?}");
    assert!(app.history().await.is_empty());

    app.emulator.set_connected(INSTANCE, true);
    let connected = tokio::time::Instant::now();
    app.wait_for(
        "the rotation after connected",
        Duration::from_secs(20),
        |rows| rows.iter().any(|r| r.status == Status::Succeeded),
    )
    .await;
    assert!(
        connected.elapsed() < Duration::from_secs(10),
        "{:?}",
        connected.elapsed()
    );
    let rows = app.history().await;
    assert_eq!(rows[0].trigger, Trigger::MemberRemoved);
    stop_node(&app, node).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_changed_outside_and_revoked_by_our_rotation_in_flight_is_kept_unconfirmed() {
    // Every reply takes 1 s: between our read of the link and our reset
    // there is a second in which the link changes elsewhere.
    let slow = EmulatorOptions {
        latency: Duration::from_secs(1),
        ..fast_api()
    };
    let (app, listeners, _) = node_events_app_with(slow, &[Setup::Admin], "", "", &[]).await;
    let node = start_node(&app, listeners).await;
    let group = app.groups[0].clone();
    let secret = [(SECRET_VAR, SECRET)];
    let first = app.run_with(&["rotate", "group-0"], &secret).await;
    assert!(first.status.success(), "{first:?}");
    settled(&app).await;

    // Act: our rotation reads the link; the link changes elsewhere; our
    // reset follows and revokes it before any read could see it.
    let reads = || {
        app.emulator
            .calls()
            .iter()
            .filter(|c| c.route == invite_rotator::emulator::Route::Info)
            .count()
    };
    let reads_before = reads();
    let ours = app.run_with(&["rotate", "group-0"], &secret);
    let outside = async {
        wait_until("our read of the link", Duration::from_secs(10), || async {
            reads() > reads_before
        })
        .await;
        app.emulator.reset_outside(&group.jid)
    };
    let (ours, _) = tokio::join!(ours, outside);
    assert!(ours.status.success(), "{ours:?}");
    wait_until("the report judged", Duration::from_secs(20), || async {
        events(&app).await.iter().any(|e| {
            e.outcome.as_deref()
                == Some(
                    "not confirmed: the live link is invite-rotator's own code; nothing recorded",
                )
        })
    })
    .await;

    // Assert: a report no read confirmed records nothing; the history goes
    // from the code our rotation read to the one it issued, without the
    // code that lived between them.
    let rows = app.history().await;
    assert!(
        with_trigger(&rows, Trigger::Outside).is_empty(),
        "{rows:#?}"
    );
    assert_eq!(rows[1].old_invite_code, rows[0].new_invite_code);
    let chain = app.emulator.code_chain(&group.jid);
    let issued: Vec<_> = rows
        .iter()
        .filter_map(|r| r.new_invite_code.clone())
        .collect();
    assert_eq!(issued, [chain[1].clone(), chain[3].clone()], "{chain:?}");
    let store = app.store().await;
    let live = app.emulator.current_code(&group.jid);
    assert_eq!(store.last_issued_code(&group.jid).await.unwrap(), live);
    stop_node(&app, node).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_change_reported_after_our_rotation_read_it_is_placed_before_that_rotation() {
    let (app, listeners, _) = node_events_app(&[Setup::Admin], "", "", &[]).await;
    let node = start_node(&app, listeners).await;
    let group = app.groups[0].clone();
    let secret = [(SECRET_VAR, SECRET)];
    let first = app.run_with(&["rotate", "group-0"], &secret).await;
    assert!(first.status.success(), "{first:?}");
    settled(&app).await;

    // Act: RyzeAPI's queue runs 2 s late; the link changes elsewhere, and
    // our next rotation reads the new code before its event arrives.
    app.emulator.set_delivery_delay(Duration::from_secs(2));
    let outside_code = app.emulator.reset_outside(&group.jid);
    let ours = app.run_with(&["rotate", "group-0"], &secret).await;
    assert!(ours.status.success(), "{ours:?}");
    app.wait_for("the outside row", Duration::from_secs(20), |rows| {
        rows.iter().any(|r| r.trigger == Trigger::Outside)
    })
    .await;
    settled(&app).await;

    let rows = app.history().await;
    let outside = &with_trigger(&rows, Trigger::Outside)[0];
    assert_eq!(
        outside.new_invite_code.as_deref(),
        Some(outside_code.as_str())
    );
    assert_eq!(
        outside.old_invite_code, rows[0].new_invite_code,
        "{rows:#?}"
    );
    assert_eq!(
        rows[1].old_invite_code.as_deref(),
        Some(outside_code.as_str())
    );
    let store = app.store().await;
    app.assert_chain_complete(&store, &group).await;
    assert_eq!(
        store.last_issued_code(&group.jid).await.unwrap(),
        app.emulator.current_code(&group.jid)
    );
    stop_node(&app, node).await;
}
