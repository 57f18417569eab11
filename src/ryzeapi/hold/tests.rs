//! The hold's bounds under paused time: what reports alone can hold, and
//! what `connected` reports can make the daemon call.

mod report {
    use super::super::*;

    #[tokio::test(start_paused = true)]
    async fn an_event_hold_stops_even_probes_until_connected_or_until_its_trust_runs_out() {
        let holds = Holds::default();
        let (initial, max) = (Duration::from_secs(1), Duration::from_secs(60));

        holds.hold("sales", initial, max);
        tokio::time::advance(Duration::from_secs(120)).await;
        assert!(
            holds.is_held("sales"),
            "no probe while the event's word stands"
        );
        holds.release("sales");
        assert!(!holds.is_held("sales"), "connected releases at once");

        holds.hold("sales", initial, max);
        tokio::time::advance(REPORTED_TRUST + Duration::from_secs(1)).await;
        assert!(
            !holds.is_held("sales"),
            "a lost `connected` holds no longer than the trust"
        );
        assert!(!holds.is_held("other"), "holds are per instance");
    }
}

mod bound {
    use super::super::*;
    use crate::whatsapp::InviteCode;

    /// An instance that is connected: every call succeeds.
    #[derive(Default)]
    struct Connected {
        calls: Mutex<Vec<Instant>>,
    }

    impl RyzeApi for Connected {
        async fn reset_link(&self, _jid: &Jid) -> Call<ResetReply> {
            unreachable!("only group/info is called here")
        }

        async fn group_info(&self, _jid: &Jid) -> Call<GroupInfo> {
            self.calls.lock().unwrap().push(Instant::now());
            Call {
                result: Ok(GroupInfo {
                    code: Some(InviteCode::parse("LIVE").unwrap()),
                }),
                http_status: Some(200),
                elapsed: Duration::ZERO,
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn reports_every_nine_minutes_hold_a_connected_instance_for_ten_minutes_not_for_ever() {
        // Arrange: a connected instance, and a report that it is not every 9 minutes.
        let holds = Holds::default();
        let (initial, max) = (Duration::from_secs(2), Duration::from_secs(300));
        let api = Held::new(Connected::default(), "sales", initial, max, &holds);
        let jid = Jid::parse("120363000000000001@g.us").unwrap();
        let start = Instant::now();

        // Act: two hours; a call tried every minute, a report every 9.
        let mut went = Vec::new();
        for minute in 0..120u64 {
            tokio::time::sleep_until(start + Duration::from_secs(60 * minute)).await;
            if minute % 9 == 0 {
                holds.hold("sales", initial, max);
            }
            let call = api.group_info(&jid).await;
            if call.http_status.is_some() {
                assert!(call.result.is_ok(), "{:?}", call.result);
                went.push(minute);
            }
        }

        // Assert: the first report holds calls for its 10 minutes, no more;
        assert_eq!(went.first(), Some(&10), "{went:?}");
        // a report never holds calls longer than that between two answers;
        let longest = went.windows(2).map(|w| w[1] - w[0]).max().unwrap();
        assert!(longest <= 11, "calls held for {longest} minutes: {went:?}");
        // and the connected instance answered most of the two hours.
        assert!(
            went.len() >= 50,
            "{} calls in two hours: {went:?}",
            went.len()
        );
        assert_eq!(api.inner().calls.lock().unwrap().len(), went.len());
    }

    #[tokio::test(start_paused = true)]
    async fn a_report_after_the_bound_or_after_a_connected_report_holds_nothing_until_the_api_answers()
     {
        let holds = Holds::default();
        let (initial, max) = (Duration::from_secs(2), Duration::from_secs(300));
        let api = Held::new(Connected::default(), "sales", initial, max, &holds);
        let jid = Jid::parse("120363000000000001@g.us").unwrap();

        assert!(holds.hold("sales", initial, max), "the first report holds");
        tokio::time::advance(REPORTED_TRUST - Duration::from_secs(1)).await;
        assert!(
            holds.hold("sales", initial, max),
            "a report within the bound leaves the first report's hold as it is"
        );
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(
            !holds.is_held("sales"),
            "the bound counts from the first report"
        );
        assert!(
            !holds.hold("sales", initial, max),
            "a report after the bound, the API silent since, holds nothing"
        );
        assert!(!holds.is_held("sales"));

        // A forged `connected` then `disconnected` does not open a new window.
        holds.release("sales");
        assert!(!holds.hold("sales", initial, max));
        assert!(!holds.is_held("sales"));

        // Once the API has answered, a report may hold again, but not while
        // the hour's 10 minutes are spent;
        assert!(api.group_info(&jid).await.result.is_ok());
        assert!(!holds.hold("sales", initial, max));
        assert!(!holds.is_held("sales"));
        // an hour after the first window, it holds for 10 minutes anew.
        tokio::time::advance(REPORTED_PER).await;
        assert!(holds.hold("sales", initial, max));
        assert!(holds.is_held("sales"));
        tokio::time::advance(REPORTED_TRUST).await;
        assert!(!holds.is_held("sales"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_window_ended_early_leaves_the_rest_of_the_hours_ten_minutes() {
        let holds = Holds::default();
        let (initial, max) = (Duration::from_secs(2), Duration::from_secs(300));
        let api = Held::new(Connected::default(), "sales", initial, max, &holds);
        let jid = Jid::parse("120363000000000001@g.us").unwrap();

        // A genuine disconnect of 2 minutes, ended by `connected`.
        assert!(holds.hold("sales", initial, max));
        tokio::time::advance(Duration::from_secs(120)).await;
        assert!(holds.release("sales"), "a report's hold ends at once");
        assert!(api.group_info(&jid).await.result.is_ok());

        // The next report holds the 8 minutes left, without a call.
        tokio::time::advance(Duration::from_secs(60)).await;
        assert!(holds.hold("sales", initial, max));
        assert!(api.group_info(&jid).await.http_status.is_none());
        tokio::time::advance(Duration::from_secs(479)).await;
        assert!(holds.is_held("sales"));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(!holds.is_held("sales"));
        assert!(api.group_info(&jid).await.result.is_ok());
        assert_eq!(api.inner().calls.lock().unwrap().len(), 2);
    }

    /// An instance that is not connected: every call is answered 503.
    #[derive(Default)]
    struct Disconnected {
        calls: Mutex<Vec<Instant>>,
    }

    impl RyzeApi for Disconnected {
        async fn reset_link(&self, _jid: &Jid) -> Call<ResetReply> {
            unreachable!("only group/info is called here")
        }

        async fn group_info(&self, _jid: &Jid) -> Call<GroupInfo> {
            self.calls.lock().unwrap().push(Instant::now());
            Call {
                result: Err(CallError::Transient(
                    "HTTP 503: instance not connected".into(),
                )),
                http_status: Some(503),
                elapsed: Duration::ZERO,
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_report_after_every_answer_holds_a_connected_instance_ten_minutes_an_hour_at_most() {
        // Arrange: a connected instance; whoever holds the events secret
        // reports it disconnected again the moment any call of it succeeds.
        let holds = Holds::default();
        let (initial, max) = (Duration::from_secs(2), Duration::from_secs(300));
        let api = Held::new(Connected::default(), "sales", initial, max, &holds);
        let jid = Jid::parse("120363000000000001@g.us").unwrap();
        let (start, step) = (Instant::now(), Duration::from_secs(10));

        // Act: two hours; a call tried every 10 seconds.
        assert!(holds.hold("sales", initial, max), "a first report holds");
        let mut held = Vec::new();
        for i in 0..720u32 {
            tokio::time::sleep_until(start + step * i).await;
            let call = api.group_info(&jid).await;
            if call.http_status.is_some() {
                assert!(call.result.is_ok(), "{:?}", call.result);
                holds.hold("sales", initial, max);
            } else {
                held.push(i);
            }
        }

        // Assert: the first report held its 10 minutes in full;
        assert_eq!(held.first(), Some(&0));
        assert_eq!(held.iter().take_while(|&&i| i < 60).count(), 60, "{held:?}");
        // and in every hour, calls were held 10 minutes at most (60 tries).
        for first in 0..=360u32 {
            let in_hour = held
                .iter()
                .filter(|&&i| (first..first + 360).contains(&i))
                .count();
            assert!(
                in_hour <= 60,
                "{in_hour} tries of 10 s held in the hour from {first}: {held:?}"
            );
        }
        assert_eq!(api.inner().calls.lock().unwrap().len(), 720 - held.len());
    }

    #[tokio::test(start_paused = true)]
    async fn connected_reports_every_second_do_not_call_a_disconnected_instance_beyond_its_backoff()
    {
        // Arrange: an instance the API says is not connected.
        let holds = Holds::default();
        let (initial, max) = (Duration::from_secs(2), Duration::from_secs(300));
        let api = Held::new(Disconnected::default(), "sales", initial, max, &holds);
        let jid = Jid::parse("120363000000000001@g.us").unwrap();
        let (start, span) = (Instant::now(), Duration::from_secs(600));
        assert_eq!(api.group_info(&jid).await.http_status, Some(503));

        // Act: ten minutes of forged `connected` every second, a call tried after each.
        for second in 1..=span.as_secs() {
            tokio::time::sleep_until(start + Duration::from_secs(second)).await;
            holds.release("sales");
            let _ = api.group_info(&jid).await;
        }

        // Assert: the calls that went are those of the backoff schedule (the
        // first answer, then probes after `initial`, doubling up to `max`), plus one.
        let (mut at, mut wait, mut schedule) = (Duration::ZERO, initial, 1);
        while at + wait <= span {
            at += wait;
            wait = (wait * 2).min(max);
            schedule += 1;
        }
        let went = api.inner().calls.lock().unwrap().clone();
        let went: Vec<u64> = went.iter().map(|t| (*t - start).as_secs()).collect();
        assert!(
            went.len() <= schedule + 1,
            "{} calls in ten minutes, the schedule makes {schedule}: {went:?}",
            went.len()
        );
        // The first `connected` after the API's answer made a probe due at once.
        assert_eq!(went.get(1), Some(&1), "{went:?}");
    }
}
