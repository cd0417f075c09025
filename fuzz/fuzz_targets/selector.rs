//! Feeds selectors to the parsers behind policy scoping: the container `Selector` of a policy's
//! `match:`/`exclude:` and a response's `containers:` (YAML: runtimes, namespaces, image and name
//! globs, labels), the `DetectionMatch` of a response's `match:` (rule globs, tags, minimum
//! severity, sources), and the container image reference normalisation
//! `normalized_image_location` (`image-not-from`) and `ContainerId::short`. The input's first
//! line is also used as a container's name, image and label value, so that matching runs on
//! text the fuzzer chooses; the rest is the selector YAML.
//!
//! The whole input also goes to the `--selector key=value,…` parser behind `lazaretctl
//! quarantine` and the controller's filters (`lazaret_core::label_selector`).
//!
//! Must hold: nothing panics; bad selectors are errors; an empty selector is empty; a label
//! criterion never matches a container without that label; a normalised image location ends
//! with the reference it was made from and names a registry host; a parsed label selector has
//! trimmed, non-empty keys without `=` and parses again to itself once written back.
#![no_main]

use std::collections::BTreeMap;

use lazaret_core::label_selector::parse_label_selector;
use lazaret_core::policy::{DetectionMatch, Selector, normalized_image_location};
use lazaret_core::{ContainerId, ContainerInfo, RuntimeKind, Severity};
use libfuzzer_sys::fuzz_target;

fn container(line: &str) -> ContainerInfo {
    let mut container = ContainerInfo::unknown(ContainerId::new(line), RuntimeKind::Containerd);
    container.name = line.to_string();
    container.image = line.to_string();
    container.namespace = line.to_string();
    container.labels = BTreeMap::from([
        ("app".to_string(), line.to_string()),
        (line.to_string(), "*".to_string()),
    ]);
    container
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (line, yaml) = text.split_once('\n').unwrap_or((text, text));

    if let Ok(pairs) = parse_label_selector(text) {
        for (key, value) in &pairs {
            assert!(
                !key.is_empty() && !key.contains('=') && key.trim() == key,
                "{key:?}"
            );
            assert!(!value.contains(',') && value.trim() == value, "{value:?}");
        }
        let written: Vec<String> = pairs
            .iter()
            .map(|(key, value)| format!("{key}={value}"))
            .collect();
        assert_eq!(
            parse_label_selector(&written.join(",")).as_ref(),
            Ok(&pairs)
        );
    }

    let id = ContainerId::new(line);
    assert!(line.starts_with(id.short()));
    if let Some(location) = normalized_image_location(line) {
        assert!(location.ends_with(line), "{location:?} from {line:?}");
        assert!(location.contains('/'), "{location:?} names no registry");
    }

    let subjects = [
        container(line),
        ContainerInfo::unknown(ContainerId::new("0123456789ab"), RuntimeKind::Docker),
    ];
    if let Ok(selector) = serde_yaml_ng::from_str::<Selector>(yaml) {
        for subject in &subjects {
            let matched = selector.matches(subject);
            if selector.is_empty() {
                assert!(matched, "an empty selector selects every container");
            }
        }
        let mut bare = subjects[0].clone();
        bare.labels.clear();
        let _ = selector.matches(&bare);
    }
    if let Ok(detections) = serde_yaml_ng::from_str::<DetectionMatch>(yaml) {
        let tags = [line.to_string(), "shell".to_string()];
        for severity in [Severity::Info, Severity::Critical] {
            let _ = detections.matches(line, &tags, severity, "falco");
            let _ = detections.matches("Terminal shell in container", &[], severity, line);
        }
    }
});
