//! The generated nft transactions, the tamper check on listings recorded from nft 1.0.6, and
//! the refusals of `NetnsHandle::open`. Nothing here changes any namespace or runs nft.

use std::path::PathBuf;

use serde_json::{Value, json};

use super::*;

/// `nft -j list table inet lazaret_quarantine` right after `cut`, recorded from nftables 1.0.6.
const RECORDED_INTACT: &str = include_str!("fixtures/listing-intact.json");

/// The recorded listing with one change applied to its `nftables` array.
fn recorded_with(change: impl FnOnce(&mut Vec<Value>)) -> String {
    let mut document: Value = serde_json::from_str(RECORDED_INTACT).unwrap();
    change(document["nftables"].as_array_mut().unwrap());
    document.to_string()
}

fn altered_reason(listing: &str) -> String {
    match status_from_listing(listing).unwrap() {
        CutStatus::Altered { reason } => reason,
        other => panic!("expected an altered table, got {other:?}"),
    }
}

const TABLE_DEFINITION: &str = "\
table inet lazaret_quarantine {
\tchain input {
\t\ttype filter hook input priority -300; policy drop;
\t\tiif \"lo\" accept
\t}
\tchain forward {
\t\ttype filter hook forward priority -300; policy drop;
\t}
\tchain output {
\t\ttype filter hook output priority -300; policy drop;
\t\toif \"lo\" accept
\t}
}
";

#[test]
fn the_first_try_creates_or_changes_nothing() {
    assert_eq!(
        create_cut_script(),
        format!("create table inet lazaret_quarantine\n{TABLE_DEFINITION}")
    );
}

#[test]
fn the_fallback_replaces_in_one_transaction() {
    assert_eq!(
        replace_cut_script(),
        format!(
            "table inet lazaret_quarantine\n\
             delete table inet lazaret_quarantine\n\
             {TABLE_DEFINITION}"
        )
    );
}

#[test]
fn restore_script_tolerates_an_absent_table() {
    assert_eq!(
        restore_script(),
        "table inet lazaret_quarantine\ndelete table inet lazaret_quarantine\n"
    );
}

#[test]
fn the_recorded_cut_is_intact() {
    assert_eq!(
        status_from_listing(RECORDED_INTACT).unwrap(),
        CutStatus::Intact
    );
}

#[test]
fn chain_order_and_handles_do_not_matter() {
    let reordered = recorded_with(|objects| {
        objects.swap(2, 4);
        for object in objects.iter_mut() {
            if let Some(body) = object
                .as_object_mut()
                .and_then(|map| map.values_mut().next())
                .and_then(Value::as_object_mut)
            {
                body.insert("handle".to_string(), json!(99));
            }
        }
    });
    assert_eq!(status_from_listing(&reordered).unwrap(), CutStatus::Intact);
}

#[test]
fn a_policy_turned_to_accept_is_tampering() {
    let listing = recorded_with(|objects| objects[2]["chain"]["policy"] = json!("accept"));
    let reason = altered_reason(&listing);
    assert!(reason.contains("chain input"), "{reason}");
    assert!(reason.contains("policy accept"), "{reason}");
}

#[test]
fn a_moved_priority_is_tampering() {
    let listing = recorded_with(|objects| objects[4]["chain"]["prio"] = json!(0));
    assert!(altered_reason(&listing).contains("chain output"));
}

#[test]
fn an_added_accept_rule_is_tampering() {
    let listing = recorded_with(|objects| {
        objects.push(
            json!({"rule": {"family": "inet", "table": "lazaret_quarantine",
            "chain": "output", "handle": 6, "expr": [{"accept": null}]}}),
        );
    });
    assert!(altered_reason(&listing).contains("chain output has rules"));
}

#[test]
fn a_flushed_chain_is_tampering() {
    let listing = recorded_with(|objects| {
        objects.remove(5);
    });
    assert!(altered_reason(&listing).contains("chain input has rules []"));
}

#[test]
fn a_deleted_chain_is_tampering() {
    let listing = recorded_with(|objects| {
        objects.remove(3);
    });
    assert!(altered_reason(&listing).contains("chain forward is missing"));
}

#[test]
fn an_extra_chain_or_set_is_tampering() {
    let with_chain = recorded_with(|objects| {
        objects.push(
            json!({"chain": {"family": "inet", "table": "lazaret_quarantine",
            "name": "sneaky", "handle": 7}}),
        );
    });
    assert!(altered_reason(&with_chain).contains("unexpected chain sneaky"));
    let with_set = recorded_with(|objects| {
        objects.push(
            json!({"set": {"family": "inet", "table": "lazaret_quarantine",
            "name": "allowed", "type": "ipv4_addr", "handle": 7}}),
        );
    });
    assert!(altered_reason(&with_set).contains("unexpected set"));
}

#[test]
fn a_dormant_table_is_tampering() {
    // nft 1.0.6 prints the dormant flag wrongly (as the table's name); any flag is suspect.
    let listing = recorded_with(|objects| {
        objects[1]["table"]["flags"] = json!("lazaret_quarantine");
    });
    assert!(altered_reason(&listing).contains("table flags"));
}

#[test]
fn an_unreadable_listing_is_an_error() {
    assert!(status_from_listing("Error: something").is_err());
    assert!(status_from_listing(r#"{"other": []}"#).is_err());
    let without_table = r#"{"nftables": [{"metainfo": {"version": "1.0.6"}}]}"#;
    assert!(status_from_listing(without_table).is_err());
}

#[test]
fn only_nfts_own_enoent_means_absent() {
    let absent = "Error: No such file or directory\n\
                  list table inet lazaret_quarantine\n                ^^^^^^^^^^^^^^^^^^\n";
    assert!(is_absent_table_error(absent));
    let nsenter_refusal = "nsenter: reassociate to namespace 'ns/net' failed: Invalid argument\n";
    assert!(!is_absent_table_error(nsenter_refusal));
    let missing_binary = "nsenter: failed to execute nft: No such file or directory\n";
    assert!(!is_absent_table_error(missing_binary));
}

#[test]
fn the_agents_own_namespace_is_refused_as_host_networking() {
    let error = NetnsHandle::open("/proc/self/ns/net").unwrap_err();
    assert!(matches!(error, NetnsError::HostNetwork { .. }), "{error}");
    assert!(error.to_string().contains("/proc/self/ns/net"), "{error}");
    // The same namespace through another path (as Docker's `netns/default` bind mount is) too.
    let through_pid = format!(
        "/proc/{}/task/{}/ns/net",
        std::process::id(),
        std::process::id()
    );
    assert!(matches!(
        NetnsHandle::open(&through_pid).unwrap_err(),
        NetnsError::HostNetwork { .. }
    ));
}

#[test]
fn a_regular_file_is_not_a_namespace() {
    let file = tempfile::NamedTempFile::new().unwrap();
    let error = NetnsHandle::open(file.path()).unwrap_err();
    assert!(matches!(error, NetnsError::NotANamespace { .. }), "{error}");
}

#[test]
fn a_missing_path_names_itself() {
    let error = NetnsHandle::open("/var/run/docker/netns/lazaret-no-such-sandbox").unwrap_err();
    assert!(matches!(error, NetnsError::Open { .. }), "{error}");
    assert!(
        error.to_string().contains("lazaret-no-such-sandbox"),
        "{error}"
    );
}

#[test]
fn another_namespace_is_accepted_and_pinned() {
    // The UTS namespace stands in for a container's: an nsfs file that is not the host's
    // network namespace. (Its type is only checked by `setns`, at the first action.)
    let own = identity_of(Path::new(OWN_NETNS)).unwrap();
    let handle = NetnsHandle::open_refusing(
        PathBuf::from("/proc/self/ns/uts"),
        own.device,
        &[(own, "the agent's own")],
    )
    .unwrap();
    assert_eq!(handle.path(), Path::new("/proc/self/ns/uts"));
    let uts = identity_of(Path::new("/proc/self/ns/uts")).unwrap();
    assert_eq!(handle.inode(), uts.inode);
    let clone = handle.clone();
    drop(handle);
    assert_eq!(clone.inode(), uts.inode);
}
