//! Tests for quarantines: every transition (allowed and refused), TTL and exemption boundaries,
//! the textual forms, and property tests over arbitrary event sequences.

use std::time::Duration;

use proptest::prelude::*;

use super::*;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

const START: i64 = 1_700_000_000_000;

fn request(ttl: Option<Duration>) -> QuarantineRequest {
    QuarantineRequest {
        container: ContainerId::new("4f3c2a1b0e9d8c7b"),
        node: "node-a".to_string(),
        actions: DEFAULT_QUARANTINE_ACTIONS.to_vec(),
        ttl,
        reason: "privileged container".to_string(),
        actor: "agent".to_string(),
        source: QuarantineSource::Policy("no-privileged".to_string()),
        scope: Default::default(),
    }
}

fn record_in(state: QuarantineState) -> QuarantineRecord {
    QuarantineRecord {
        state,
        ..QuarantineRecord::requested(request(Some(Duration::from_secs(60))), START)
    }
}

// ---------------------------------------------------------------------------------------------
// Actions, states, sources: textual forms
// ---------------------------------------------------------------------------------------------

#[test]
fn a_cut_of_a_container_that_can_undo_it_is_backed_by_pause() {
    use crate::{ContainerInfo, RuntimeKind};
    let with = |cap_add: Option<&[&str]>, privileged: Option<bool>| {
        let mut info = ContainerInfo::unknown(ContainerId::new("c"), RuntimeKind::Docker);
        info.cap_add = cap_add.map(|caps| caps.iter().map(|cap| cap.to_string()).collect());
        info.privileged = privileged;
        info
    };
    let net_admin = with(Some(&["NET_ADMIN"]), Some(false));
    let (actions, why) = harden_network_cut(&[Action::NetworkCut], &net_admin);
    assert_eq!(actions, [Action::NetworkCut, Action::Pause]);
    assert!(why.unwrap().contains("NET_ADMIN"));
    for admin in [with(Some(&["ALL"]), None), with(None, Some(true))] {
        let (actions, _) = harden_network_cut(&[Action::Alert, Action::NetworkCut], &admin);
        assert_eq!(actions, [Action::Alert, Action::NetworkCut, Action::Pause]);
    }
    // Already frozen or ended, no cut, or no NET_ADMIN (or not known): unchanged.
    let unchanged: [(&[Action], ContainerInfo); 5] = [
        (&[Action::NetworkCut, Action::Pause], net_admin.clone()),
        (&[Action::NetworkCut, Action::Kill], net_admin.clone()),
        (&[Action::Alert], net_admin.clone()),
        (
            &[Action::NetworkCut],
            with(Some(&["SYS_ADMIN"]), Some(false)),
        ),
        (&[Action::NetworkCut], with(None, None)),
    ];
    for (asked, info) in unchanged {
        assert_eq!(harden_network_cut(asked, &info), (asked.to_vec(), None));
    }
}

#[test]
fn actions_are_ordered_by_strength() {
    let names: Vec<&str> = Action::ALL.iter().map(|action| action.as_str()).collect();
    assert_eq!(names, ["alert", "network-cut", "pause", "stop", "kill"]);
    for pair in Action::ALL.windows(2) {
        assert!(pair[0] < pair[1]);
        assert!(pair[0].strength() < pair[1].strength());
    }
    assert_eq!(
        Action::strongest(&[Action::Pause, Action::Alert, Action::NetworkCut]),
        Some(Action::Pause)
    );
    assert_eq!(Action::strongest(&[]), None);
    assert_eq!(
        DEFAULT_QUARANTINE_ACTIONS,
        [Action::NetworkCut, Action::Pause]
    );
    assert!(
        DEFAULT_QUARANTINE_ACTIONS
            .iter()
            .all(|action| action.is_reversible())
    );
    assert!(!Action::Kill.is_reversible() && !Action::Stop.is_reversible());
    assert!(!Action::Alert.affects_container() && Action::Kill.affects_container());
}

#[test]
fn action_names_are_the_same_in_serde_display_and_parse() {
    for action in Action::ALL {
        let json = serde_json::to_string(&action).unwrap();
        assert_eq!(json, format!("\"{action}\""));
        assert_eq!(serde_json::from_str::<Action>(&json).unwrap(), action);
        assert_eq!(action.as_str().parse::<Action>(), Ok(action));
    }
    assert_eq!(" Network-Cut ".parse::<Action>(), Ok(Action::NetworkCut));
    let error = "network_cut".parse::<Action>().unwrap_err();
    assert_eq!(
        error.to_string(),
        "unknown action \"network_cut\": expected one of alert, network-cut, pause, stop, kill"
    );
    let list: Vec<Action> = serde_json::from_str(r#"["network-cut","pause"]"#).unwrap();
    assert_eq!(list, DEFAULT_QUARANTINE_ACTIONS);
}

#[test]
fn states_and_events_have_stable_names() {
    for state in QuarantineState::ALL {
        assert_eq!(
            serde_json::to_string(&state).unwrap(),
            format!("\"{state}\"")
        );
        assert_eq!(state.as_str().parse::<QuarantineState>(), Ok(state));
    }
    assert!("paused".parse::<QuarantineState>().is_err());
    for event in QuarantineEvent::ALL {
        assert_eq!(
            serde_json::to_string(&event).unwrap(),
            format!("\"{event}\"")
        );
    }
    let terminal: Vec<_> = QuarantineState::ALL
        .into_iter()
        .filter(|state| state.is_terminal())
        .collect();
    assert_eq!(terminal, [QuarantineState::Released, QuarantineState::Gone]);
}

#[test]
fn sources_round_trip_through_text_and_serde() {
    let cases = [
        (
            "policy:no-privileged",
            QuarantineSource::Policy("no-privileged".into()),
        ),
        (
            "indicator:ioc-42",
            QuarantineSource::Indicator("ioc-42".into()),
        ),
        (
            "detection:Terminal shell in container",
            QuarantineSource::Detection("Terminal shell in container".into()),
        ),
        ("detection:a:b", QuarantineSource::Detection("a:b".into())),
        ("operator", QuarantineSource::Operator),
    ];
    for (text, source) in cases {
        assert_eq!(
            text.parse::<QuarantineSource>().as_ref(),
            Ok(&source),
            "{text}"
        );
        assert_eq!(source.to_string(), text);
        let json = serde_json::to_string(&source).unwrap();
        assert_eq!(json, format!("\"{text}\""));
        assert_eq!(
            serde_json::from_str::<QuarantineSource>(&json).unwrap(),
            source
        );
    }
}

#[test]
fn bad_sources_say_what_is_wrong() {
    let cases = [
        ("", "no kind before `:`"),
        ("policy", "no kind before `:`"),
        ("policy:", "the value after `:` is empty"),
        ("Policy:x", "unknown kind"),
        ("rule:x", "unknown kind"),
        ("operator:alice", "`operator` takes no value"),
    ];
    for (text, problem) in cases {
        let error = text.parse::<QuarantineSource>().unwrap_err();
        assert_eq!(error.problem, problem, "{text}");
        assert!(
            error
                .to_string()
                .ends_with("expected policy:<name>, indicator:<id>, detection:<rule> or operator"),
            "{error}"
        );
    }
    assert!(serde_json::from_str::<QuarantineSource>("\"policy:\"").is_err());
}

#[test]
fn record_serialises_with_the_shared_field_names() {
    let record = QuarantineRecord::requested(request(Some(Duration::from_secs(90))), START);
    let json = serde_json::to_value(&record).unwrap();
    assert_eq!(json["container"], "4f3c2a1b0e9d8c7b");
    assert_eq!(json["state"], "requested");
    assert_eq!(json["actions"], serde_json::json!(["network-cut", "pause"]));
    assert_eq!(json["since_unix_ms"], START);
    assert_eq!(json["expires_unix_ms"], START + 90_000);
    assert_eq!(json["source"], "policy:no-privileged");
    let back: QuarantineRecord = serde_json::from_value(json).unwrap();
    assert_eq!(back, record);
}

// ---------------------------------------------------------------------------------------------
// Transitions
// ---------------------------------------------------------------------------------------------

/// Every allowed transition; every other (state, event) pair must be refused.
const ALLOWED: &[(QuarantineState, QuarantineEvent, QuarantineState)] = {
    use QuarantineEvent as E;
    use QuarantineState as S;
    &[
        (S::Requested, E::Applied, S::Applied),
        (S::Requested, E::ActionFailed, S::Failed),
        (S::Requested, E::Released, S::Released),
        (S::Requested, E::Expired, S::Released),
        (S::Requested, E::ContainerGone, S::Gone),
        (S::Applied, E::Tampered, S::Tampered),
        (S::Applied, E::Released, S::Released),
        (S::Applied, E::Expired, S::Released),
        (S::Applied, E::ContainerGone, S::Gone),
        (S::Tampered, E::Applied, S::Applied),
        (S::Tampered, E::ActionFailed, S::Failed),
        (S::Tampered, E::Released, S::Released),
        (S::Tampered, E::Expired, S::Released),
        (S::Tampered, E::ContainerGone, S::Gone),
        (S::Failed, E::Retry, S::Requested),
        (S::Failed, E::Released, S::Released),
        (S::Failed, E::Expired, S::Released),
        (S::Failed, E::ContainerGone, S::Gone),
    ]
};

fn allowed_target(from: QuarantineState, event: QuarantineEvent) -> Option<QuarantineState> {
    ALLOWED
        .iter()
        .find(|(allowed_from, allowed_event, _)| *allowed_from == from && *allowed_event == event)
        .map(|(_, _, to)| *to)
}

#[test]
fn every_state_and_event_pair_is_allowed_or_refused_as_documented() {
    let mut allowed_count = 0;
    for from in QuarantineState::ALL {
        for event in QuarantineEvent::ALL {
            let record = record_in(from);
            let due = START + 60_000;
            let result = apply(&record, event, due);
            match allowed_target(from, event) {
                Some(to) => {
                    allowed_count += 1;
                    let next = result.unwrap_or_else(|error| panic!("{from} + {event}: {error}"));
                    assert_eq!(next.state, to, "{from} + {event}");
                    assert_eq!(next.since_unix_ms, due);
                    assert_eq!(next_state(from, event), Ok(to));
                }
                None => {
                    let error = result.expect_err("must be refused");
                    assert_eq!((error.from, error.event), (from, event));
                    assert!(!error.why.is_empty());
                    assert_eq!(next_state(from, event), Err(error));
                }
            }
        }
    }
    assert_eq!(
        allowed_count, 18,
        "six states times seven events, 18 allowed"
    );
}

#[test]
fn refusals_read_well() {
    let error = apply(
        &record_in(QuarantineState::Released),
        QuarantineEvent::Applied,
        START,
    )
    .unwrap_err();
    assert_eq!(
        error.to_string(),
        "cannot apply `applied` to a quarantine that is released: released is final: quarantine \
         the container anew"
    );
    let error = apply(
        &record_in(QuarantineState::Applied),
        QuarantineEvent::Retry,
        START,
    )
    .unwrap_err();
    assert_eq!(
        error.to_string(),
        "cannot apply `retry` to a quarantine that is applied: only a failed quarantine can be \
         retried"
    );
}

#[test]
fn a_typical_life_cycle() {
    let requested = QuarantineRecord::requested(request(None), START);
    let applied = apply(&requested, QuarantineEvent::Applied, START + 5).unwrap();
    let tampered = apply(&applied, QuarantineEvent::Tampered, START + 100).unwrap();
    let reapplied = apply(&tampered, QuarantineEvent::Applied, START + 101).unwrap();
    let released = apply(&reapplied, QuarantineEvent::Released, START + 500).unwrap();
    assert_eq!(released.state, QuarantineState::Released);
    assert_eq!(released.since_unix_ms, START + 500);
    assert_eq!(
        QuarantineRecord {
            state: requested.state,
            since_unix_ms: requested.since_unix_ms,
            ..released
        },
        requested,
        "only state and since change"
    );
}

#[test]
fn a_failed_quarantine_can_be_retried() {
    let failed = apply(
        &record_in(QuarantineState::Requested),
        QuarantineEvent::ActionFailed,
        START,
    )
    .unwrap();
    let retried = apply(&failed, QuarantineEvent::Retry, START + 1).unwrap();
    assert_eq!(retried.state, QuarantineState::Requested);
    let applied = apply(&retried, QuarantineEvent::Applied, START + 2).unwrap();
    assert_eq!(applied.state, QuarantineState::Applied);
}

#[test]
fn since_does_not_move_back_with_the_clock() {
    let record = record_in(QuarantineState::Requested);
    let applied = apply(&record, QuarantineEvent::Applied, START - 10_000).unwrap();
    assert_eq!(applied.since_unix_ms, START);
}

// ---------------------------------------------------------------------------------------------
// TTL
// ---------------------------------------------------------------------------------------------

#[test]
fn ttl_expires_exactly_at_its_end() {
    let record = QuarantineRecord::requested(request(Some(Duration::from_millis(1500))), START);
    assert_eq!(record.expires_unix_ms, Some(START + 1500));
    assert!(!record.is_expired(START + 1499));
    assert!(record.is_expired(START + 1500));
    assert!(record.is_expired(START + 1501));

    let applied = apply(&record, QuarantineEvent::Applied, START + 1).unwrap();
    assert_eq!(expire_if_due(&applied, START + 1499), None);
    let error = apply(&applied, QuarantineEvent::Expired, START + 1499).unwrap_err();
    assert_eq!(error.why, "its ttl has not run out yet");
    let released = expire_if_due(&applied, START + 1500).unwrap();
    assert_eq!(released.state, QuarantineState::Released);
    assert_eq!(released.since_unix_ms, START + 1500);
    assert_eq!(
        expire_if_due(&released, START + 9999),
        None,
        "already released"
    );
}

#[test]
fn without_ttl_nothing_expires() {
    let record = QuarantineRecord::requested(request(None), START);
    assert_eq!(record.expires_unix_ms, None);
    assert!(!record.is_expired(i64::MAX));
    assert_eq!(expire_if_due(&record, i64::MAX), None);
    let error = apply(&record, QuarantineEvent::Expired, i64::MAX).unwrap_err();
    assert_eq!(error.why, "it has no ttl");
}

#[test]
fn ttl_edge_values_saturate() {
    let zero = QuarantineRecord::requested(request(Some(Duration::ZERO)), START);
    assert!(zero.is_expired(START));
    let huge = QuarantineRecord::requested(request(Some(Duration::MAX)), START);
    assert_eq!(huge.expires_unix_ms, Some(i64::MAX));
    assert!(!huge.is_expired(i64::MAX - 1));
    let failed = apply(&zero, QuarantineEvent::ActionFailed, START).unwrap();
    assert_eq!(
        expire_if_due(&failed, START).map(|record| record.state),
        Some(QuarantineState::Released),
        "partial actions of a failed quarantine expire too"
    );
}

// ---------------------------------------------------------------------------------------------
// Exemptions
// ---------------------------------------------------------------------------------------------

fn exemption(container: &str, policy: &str, until_unix_ms: i64) -> Exemption {
    Exemption {
        container: ContainerId::new(container),
        policy: policy.to_string(),
        until_unix_ms,
        actor: "CN=alice".to_string(),
        reason: "false positive".to_string(),
    }
}

#[test]
fn exemption_ends_exactly_at_until() {
    let exemption = exemption("c1", "no-privileged", START + 1000);
    assert!(exemption.is_active(START + 999));
    assert!(!exemption.is_active(START + 1000));
    assert!(!exemption.is_active(START + 1001));
}

#[test]
fn release_leaves_an_exemption_under_the_source() {
    let record = record_in(QuarantineState::Applied);
    let released = apply(&record, QuarantineEvent::Released, START + 10).unwrap();
    let left = Exemption::after_release(&released, START + 3_600_000, "CN=alice", "known tool");
    assert_eq!(left.container, record.container);
    assert_eq!(left.policy, "no-privileged");
    assert_eq!(left.actor, "CN=alice");

    let mut indicator = record.clone();
    indicator.source = QuarantineSource::Indicator("ioc-42".into());
    assert_eq!(
        Exemption::after_release(&indicator, 0, "a", "b").policy,
        "indicator:ioc-42"
    );

    let mut set = ExemptionSet::new();
    set.insert(left);
    assert!(set.is_exempt(&record.container, "no-privileged", START + 3_599_999));
    assert!(!set.is_exempt(&record.container, "no-privileged", START + 3_600_000));
    assert!(!set.is_exempt(&record.container, "other-policy", START));
    assert!(!set.is_exempt(&ContainerId::new("other"), "no-privileged", START));
}

#[test]
fn exemption_set_replaces_prunes_and_removes() {
    let mut set: ExemptionSet = [
        exemption("c1", "p1", START + 10),
        exemption("c1", "p2", START + 20),
        exemption("c2", "p1", START + 30),
    ]
    .into_iter()
    .collect();
    assert_eq!(set.len(), 3);

    let replaced = set.insert(exemption("c1", "p1", START + 5)).unwrap();
    assert_eq!(replaced.until_unix_ms, START + 10);
    assert_eq!(
        set.len(),
        3,
        "the newer exemption wins, even when it ends sooner"
    );
    assert!(!set.is_exempt(&ContainerId::new("c1"), "p1", START + 5));

    let pruned = set.prune(START + 20);
    let pruned: Vec<_> = pruned.iter().map(|gone| gone.policy.as_str()).collect();
    assert_eq!(pruned, ["p1", "p2"]);
    assert_eq!(set.len(), 1);
    assert!(set.get(&ContainerId::new("c1"), "p2").is_none());
    assert!(set.is_exempt(&ContainerId::new("c2"), "p1", START + 29));

    assert!(set.remove(&ContainerId::new("c2"), "p1").is_some());
    assert!(set.remove(&ContainerId::new("c2"), "p1").is_none());
    assert!(set.is_empty());
    assert_eq!(set.iter().count(), 0);
}

// ---------------------------------------------------------------------------------------------
// Property tests
// ---------------------------------------------------------------------------------------------

fn arbitrary_event() -> impl Strategy<Value = QuarantineEvent> {
    proptest::sample::select(QuarantineEvent::ALL.to_vec())
}

fn arbitrary_state() -> impl Strategy<Value = QuarantineState> {
    proptest::sample::select(QuarantineState::ALL.to_vec())
}

fn arbitrary_time() -> impl Strategy<Value = i64> {
    prop_oneof![
        START - 1000..START + 1000,
        any::<i64>(),
        Just(i64::MIN),
        Just(i64::MAX)
    ]
}

fn arbitrary_ttl() -> impl Strategy<Value = Option<Duration>> {
    proptest::option::of(prop_oneof![
        (0u64..2000).prop_map(Duration::from_millis),
        any::<u64>().prop_map(Duration::from_secs),
        Just(Duration::MAX),
    ])
}

fn arbitrary_record() -> impl Strategy<Value = QuarantineRecord> {
    (
        arbitrary_state(),
        arbitrary_time(),
        proptest::option::of(arbitrary_time()),
        proptest::collection::vec(proptest::sample::select(Action::ALL.to_vec()), 0..5),
    )
        .prop_map(
            |(state, since_unix_ms, expires_unix_ms, actions)| QuarantineRecord {
                state,
                since_unix_ms,
                expires_unix_ms,
                actions,
                releasing: (since_unix_ms % 2 == 0).then(|| {
                    Box::new(PendingRelease::release(
                        "alice",
                        "r",
                        Duration::from_millis(1),
                    ))
                }),
                ..record_in(QuarantineState::Requested)
            },
        )
}

proptest! {
    #[test]
    fn apply_never_panics_and_changes_only_state_since_and_a_finished_release(
        record in arbitrary_record(),
        event in arbitrary_event(),
        now in arbitrary_time(),
    ) {
        prop_assert_eq!(
            expire_if_due(&record, now).is_some(),
            !record.state.is_terminal() && record.is_expired(now)
        );
        match apply(&record, event, now) {
            Ok(next) => {
                prop_assert_eq!(Ok(next.state), next_state(record.state, event));
                prop_assert!(next.since_unix_ms >= record.since_unix_ms);
                prop_assert!(next.releasing.is_none() || !next.state.is_terminal());
                prop_assert_eq!(
                    QuarantineRecord {
                        state: record.state,
                        since_unix_ms: record.since_unix_ms,
                        releasing: record.releasing.clone(),
                        ..next
                    },
                    record
                );
            }
            Err(error) => {
                prop_assert_eq!((error.from, error.event), (record.state, event));
                prop_assert!(!error.to_string().is_empty());
            }
        }
    }

    #[test]
    fn event_sequences_keep_the_invariants(
        ttl in arbitrary_ttl(),
        steps in proptest::collection::vec((arbitrary_event(), arbitrary_time()), 0..60),
    ) {
        let mut record = QuarantineRecord::requested(request(ttl), START);
        let mut requested_since_last_failure = true;
        for (event, now) in steps {
            let before = record.clone();
            let Ok(next) = apply(&before, event, now) else {
                continue;
            };
            prop_assert!(
                !before.state.is_terminal(),
                "{} left the final state {}", event, before.state
            );
            prop_assert!(next.since_unix_ms >= before.since_unix_ms);
            if before.state == QuarantineState::Failed {
                prop_assert!(matches!(
                    next.state,
                    QuarantineState::Requested | QuarantineState::Released | QuarantineState::Gone
                ));
                requested_since_last_failure = false;
            }
            if next.state == QuarantineState::Requested {
                requested_since_last_failure = true;
            }
            if next.state == QuarantineState::Applied {
                prop_assert!(requested_since_last_failure, "applied without being requested");
                prop_assert!(matches!(
                    before.state,
                    QuarantineState::Requested | QuarantineState::Tampered
                ));
            }
            if next.state == QuarantineState::Tampered {
                prop_assert_eq!(before.state, QuarantineState::Applied);
            }
            if event == QuarantineEvent::Expired {
                prop_assert!(before.is_expired(now));
            }
            record = next;
        }
    }

    #[test]
    fn exemptions_hold_strictly_before_until(
        until in any::<i64>(),
        now in any::<i64>(),
    ) {
        let exemption = exemption("c1", "p1", until);
        prop_assert_eq!(exemption.is_active(now), now < until);
        let mut set: ExemptionSet = std::iter::once(exemption).collect();
        prop_assert_eq!(set.is_exempt(&ContainerId::new("c1"), "p1", now), now < until);
        let pruned = set.prune(now);
        prop_assert_eq!(pruned.len(), usize::from(now >= until));
        prop_assert_eq!(set.len(), usize::from(now < until));
    }

    #[test]
    fn source_text_round_trips(kind in 0u8..4, value in ".{1,20}") {
        let source = match kind {
            0 => QuarantineSource::Policy(value),
            1 => QuarantineSource::Indicator(value),
            2 => QuarantineSource::Detection(value),
            _ => QuarantineSource::Operator,
        };
        prop_assert_eq!(source.to_string().parse::<QuarantineSource>(), Ok(source));
    }
}

#[test]
fn a_record_without_a_release_under_way_is_written_as_schema_1_wrote_it() {
    let record = record_in(QuarantineState::Applied);
    let json = serde_json::to_value(&record).unwrap();
    assert!(json.get("releasing").is_none(), "{json}");
    let back: QuarantineRecord = serde_json::from_value(json).unwrap();
    assert_eq!(back, record);
    for pending in [
        PendingRelease::release("alice", "false positive", Duration::from_secs(60)),
        PendingRelease::expiry("agent"),
    ] {
        let releasing = record.undoing(pending);
        let json = serde_json::to_string(&releasing).unwrap();
        assert_eq!(
            serde_json::from_str::<QuarantineRecord>(&json).unwrap(),
            releasing
        );
        assert_eq!(releasing.kept(), record);
    }
    // A pending release stored before the kind was written reads back as a release.
    let mut json = serde_json::to_value(record.undoing(PendingRelease::release(
        "alice",
        "r",
        Duration::from_secs(1),
    )))
    .unwrap();
    json["releasing"].as_object_mut().unwrap().remove("kind");
    let back: QuarantineRecord = serde_json::from_value(json).unwrap();
    let pending = back.releasing.unwrap();
    assert_eq!(pending.kind, UndoKind::Release);
    assert_eq!(pending.exempt_for(), Duration::from_secs(1));
    assert_eq!(UndoKind::Expiry.event(), QuarantineEvent::Expired);
    assert_eq!(UndoKind::Expiry.audit_action(), "expire");
    for kind in [UndoKind::Release, UndoKind::Expiry] {
        assert_eq!(serde_json::to_value(kind).unwrap(), kind.as_str());
    }
}

#[test]
fn an_expiry_stored_as_under_way_ends_whatever_the_clock_reads_now() {
    let record = QuarantineRecord::requested(request(Some(Duration::from_secs(600))), START);
    let applied = apply(&record, QuarantineEvent::Applied, START).unwrap();
    let early = START + 1_000;
    // Not due: refused, for the record as it is and for a release under way.
    assert!(apply(&applied, QuarantineEvent::Expired, early).is_err());
    let releasing = applied.undoing(PendingRelease::release("alice", "r", Duration::ZERO));
    assert!(apply(&releasing, QuarantineEvent::Expired, early).is_err());
    // Stored as expiring (decided when it was due), read back with an earlier clock: it ends.
    let expiring = applied.undoing(PendingRelease::expiry("agent"));
    let ended = apply(&expiring, QuarantineEvent::Expired, early).unwrap();
    assert_eq!(ended.state, QuarantineState::Released);
    assert!(ended.releasing.is_none());
}
