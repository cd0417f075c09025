//! Looking indicators up fast (DESIGN.md §3): an [`IndicatorIndex`] is built once per indicator
//! bundle (and again when entries expire) and answers in O(1) for exact values (image id and
//! digest, process name, executable hash: one hash map keyed by type and normalised value), by
//! longest-prefix match for addresses and CIDRs (a tree bitmap, `ip_network_table`), and for image
//! reference globs by a [`GlobSet`] over at most [`MAX_IMAGE_REF_GLOBS`] patterns, tried only
//! when a reference starts with one of their literal prefixes.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;

use globset::{Glob, GlobSet, GlobSetBuilder};
use ip_network::IpNetwork;
use ip_network_table::IpNetworkTable;

use super::{Indicator, IndicatorSet};
use crate::container::ContainerInfo;
use crate::policy::{IndicatorHit, IndicatorKind, IndicatorLookup};

/// Image-reference globs per index: each reference is matched against all that share its
/// literal prefix, so the cap bounds the cost of one lookup.
pub const MAX_IMAGE_REF_GLOBS: usize = 1_000;

/// See the module docs.
pub struct IndicatorIndex {
    exact: HashMap<(IndicatorKind, String), Arc<Indicator>>,
    addresses: IpNetworkTable<Arc<Indicator>>,
    /// Literal prefixes (before the first glob character) of the image-ref patterns, and the set.
    ref_prefixes: Vec<String>,
    ref_globs: GlobSet,
    ref_indicators: Vec<Arc<Indicator>>,
    len: usize,
    /// The kinds of the entries indexed (the agent's scan reads only what some entry needs).
    kinds: HashSet<IndicatorKind>,
    /// The earliest `valid_until` (Unix seconds) of an entry indexed: from then on the index
    /// should be built again.
    next_expiry: Option<i64>,
    /// Entries left out because their `valid_until` had passed.
    pub expired: usize,
    /// Image-ref patterns left out past [`MAX_IMAGE_REF_GLOBS`] (or not valid globs), by id.
    pub refused: Vec<String>,
    /// Why these entries cannot vouch for what they do not match ([`IndicatorLookup::doubt`]):
    /// set by whoever knows where they came from (the agent, for a bundle past its expiry).
    pub doubt: Option<String>,
}

impl Default for IndicatorIndex {
    fn default() -> Self {
        IndicatorIndex {
            exact: HashMap::new(),
            addresses: IpNetworkTable::new(),
            ref_prefixes: Vec::new(),
            ref_globs: GlobSet::empty(),
            ref_indicators: Vec::new(),
            len: 0,
            kinds: HashSet::new(),
            next_expiry: None,
            expired: 0,
            refused: Vec::new(),
            doubt: None,
        }
    }
}

impl std::fmt::Debug for IndicatorIndex {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("IndicatorIndex")
            .field("len", &self.len)
            .field("expired", &self.expired)
            .finish_non_exhaustive()
    }
}

/// The form values are compared in: hashes lowercase without `sha256:`, the rest as written.
fn normalized(kind: IndicatorKind, value: &str) -> String {
    match kind {
        IndicatorKind::ImageId | IndicatorKind::ImageDigest | IndicatorKind::ExeSha256 => {
            let value = value.trim();
            let hex = value.rsplit_once("sha256:").map_or(value, |(_, hex)| hex);
            hex.to_ascii_lowercase()
        }
        _ => value.trim().to_string(),
    }
}

fn literal_prefix(pattern: &str) -> &str {
    let end = pattern.find(['*', '?', '[', '{']).unwrap_or(pattern.len());
    &pattern[..end]
}

impl IndicatorIndex {
    /// Indexes `set`, leaving out what expired before `now_unix` (seconds).
    pub fn build(set: &IndicatorSet, now_unix: i64) -> IndicatorIndex {
        let mut index = IndicatorIndex::default();
        let mut globs = GlobSetBuilder::new();
        for indicator in &set.indicators {
            let until = indicator
                .valid_until
                .as_deref()
                .and_then(|until| humantime::parse_rfc3339_weak(until).ok())
                .and_then(|until| until.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|until| until.as_secs() as i64);
            if until.is_some_and(|until| until < now_unix) {
                index.expired += 1;
                continue;
            }
            let shared = Arc::new(indicator.clone());
            match indicator.kind {
                IndicatorKind::Ip => {
                    let network = match indicator.value.split_once('/') {
                        Some((address, bits)) => address
                            .parse::<IpAddr>()
                            .ok()
                            .zip(bits.parse::<u8>().ok())
                            .and_then(|(address, bits)| {
                                IpNetwork::new_truncate(address, bits).ok()
                            }),
                        None => indicator.value.parse::<IpAddr>().ok().map(IpNetwork::from),
                    };
                    match network {
                        Some(network) => {
                            index.addresses.insert(network, shared);
                        }
                        None => {
                            index.refused.push(indicator.id.clone());
                            continue;
                        }
                    }
                }
                IndicatorKind::ImageRef => {
                    let glob = Glob::new(&indicator.value);
                    match glob {
                        Ok(glob) if index.ref_indicators.len() < MAX_IMAGE_REF_GLOBS => {
                            globs.add(glob);
                            index
                                .ref_prefixes
                                .push(literal_prefix(&indicator.value).to_string());
                            index.ref_indicators.push(shared);
                        }
                        _ => {
                            index.refused.push(indicator.id.clone());
                            continue;
                        }
                    }
                }
                kind => {
                    index
                        .exact
                        .insert((kind, normalized(kind, &indicator.value)), shared);
                }
            }
            index.len += 1;
            index.kinds.insert(indicator.kind);
            if let Some(until) = until {
                index.next_expiry = Some(index.next_expiry.map_or(until, |next| next.min(until)));
            }
        }
        index.ref_globs = globs.build().unwrap_or_else(|_| GlobSet::empty());
        index
    }

    /// Indicators in the index.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether an entry of `kind` is indexed.
    pub fn has(&self, kind: IndicatorKind) -> bool {
        self.kinds.contains(&kind)
    }

    /// Whether any entry is matched against what runs inside containers (process names,
    /// executables, addresses).
    pub fn watches_inside(&self) -> bool {
        [
            IndicatorKind::ProcessName,
            IndicatorKind::ExeSha256,
            IndicatorKind::Ip,
        ]
        .into_iter()
        .any(|kind| self.has(kind))
    }

    /// Whether an entry indexed has expired by `now_unix`: the index should be built again.
    /// Asks for a rebuild once `until` (Unix seconds) has passed, as if an entry expired then
    /// (the agent passes its bundle's own expiry, after which the entries are in doubt).
    pub fn rebuild_after(&mut self, until: i64) {
        self.next_expiry = Some(self.next_expiry.map_or(until, |next| next.min(until)));
    }

    pub fn has_expired_entries(&self, now_unix: i64) -> bool {
        self.next_expiry.is_some_and(|until| until < now_unix)
    }

    /// The indicator for an exact value of `kind` (image id or digest, process name, exe hash).
    pub fn lookup(&self, kind: IndicatorKind, value: &str) -> Option<&Indicator> {
        self.exact
            .get(&(kind, normalized(kind, value)))
            .map(Arc::as_ref)
    }

    /// The most specific indicator covering `address`.
    pub fn address(&self, address: IpAddr) -> Option<&Indicator> {
        self.addresses
            .longest_match(address)
            .map(|(_, indicator)| indicator.as_ref())
    }

    /// The first image-ref pattern `reference` matches.
    pub fn image_ref(&self, reference: &str) -> Option<&Indicator> {
        if !self
            .ref_prefixes
            .iter()
            .any(|prefix| reference.starts_with(prefix.as_str()))
        {
            return None;
        }
        self.ref_globs
            .matches(reference)
            .into_iter()
            .next()
            .map(|position| self.ref_indicators[position].as_ref())
    }
}

pub(super) fn hit(indicator: &Indicator) -> IndicatorHit {
    IndicatorHit {
        indicator_id: indicator.id.clone(),
        kind: indicator.kind,
        value: indicator.value.clone(),
        severity: indicator.severity,
    }
}

impl IndicatorLookup for IndicatorIndex {
    /// What the runtime's view of a container shows: its image id, digest and reference. Process
    /// names, executables and addresses are observed inside running containers (the agent's scan).
    fn find(&self, kind: IndicatorKind, container: &ContainerInfo) -> Option<IndicatorHit> {
        let found = match kind {
            IndicatorKind::ImageId => self.lookup(kind, &container.image_id),
            IndicatorKind::ImageDigest => container
                .image_digest
                .as_deref()
                .and_then(|digest| self.lookup(kind, digest)),
            IndicatorKind::ImageRef => self.image_ref(&container.image),
            IndicatorKind::ProcessName | IndicatorKind::ExeSha256 | IndicatorKind::Ip => None,
        };
        found.map(hit)
    }

    fn doubt(&self) -> Option<&str> {
        self.doubt.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::severity::Severity;
    use crate::{ContainerId, RuntimeKind};

    fn indicator(id: &str, kind: IndicatorKind, value: &str, until: Option<&str>) -> Indicator {
        Indicator {
            id: id.into(),
            kind,
            value: value.into(),
            severity: Severity::High,
            source: "test".into(),
            valid_until: until.map(Into::into),
        }
    }

    fn index() -> IndicatorIndex {
        let hash = "AB".repeat(32);
        let set = IndicatorSet {
            indicators: vec![
                indicator(
                    "id",
                    IndicatorKind::ImageId,
                    &format!("sha256:{hash}"),
                    None,
                ),
                indicator("miner", IndicatorKind::ProcessName, "xmrig", None),
                indicator("net", IndicatorKind::Ip, "203.0.113.0/24", None),
                indicator("host", IndicatorKind::Ip, "203.0.113.7", None),
                indicator("v6", IndicatorKind::Ip, "2001:db8::/32", None),
                indicator("ref", IndicatorKind::ImageRef, "evil.example/*", None),
                indicator(
                    "old",
                    IndicatorKind::ProcessName,
                    "gone",
                    Some("2020-01-01T00:00:00Z"),
                ),
            ],
        };
        IndicatorIndex::build(&set, 1_800_000_000)
    }

    #[test]
    fn exact_values_match_in_any_spelling_of_a_hash() {
        let index = index();
        assert_eq!(index.len(), 6);
        assert_eq!(index.expired, 1);
        let hex = "ab".repeat(32);
        assert_eq!(index.lookup(IndicatorKind::ImageId, &hex).unwrap().id, "id");
        assert_eq!(
            index
                .lookup(
                    IndicatorKind::ImageId,
                    &format!("sha256:{}", hex.to_uppercase())
                )
                .unwrap()
                .id,
            "id"
        );
        assert_eq!(
            index
                .lookup(IndicatorKind::ProcessName, "xmrig")
                .unwrap()
                .id,
            "miner"
        );
        assert!(
            index.lookup(IndicatorKind::ProcessName, "gone").is_none(),
            "expired"
        );
        assert!(index.lookup(IndicatorKind::ProcessName, "sh").is_none());
    }

    #[test]
    fn the_index_knows_when_an_entry_expires() {
        // 2027-01-01T00:00:00Z and 2028-01-01T00:00:00Z.
        let (first, second) = (1_798_761_600, 1_830_297_600);
        let set = IndicatorSet {
            indicators: vec![
                indicator("a", IndicatorKind::ImageId, "sha256:aa", None),
                indicator(
                    "b",
                    IndicatorKind::Ip,
                    "10.0.0.1",
                    Some("2028-01-01T00:00:00Z"),
                ),
                indicator(
                    "c",
                    IndicatorKind::Ip,
                    "10.0.0.2",
                    Some("2027-01-01T00:00:00Z"),
                ),
            ],
        };
        let index = IndicatorIndex::build(&set, first - 10);
        assert!(index.watches_inside());
        assert!(!index.has_expired_entries(first - 1));
        assert!(index.has_expired_entries(first + 1), "c expired");
        let rebuilt = IndicatorIndex::build(&set, first + 1);
        assert_eq!((rebuilt.len(), rebuilt.expired), (2, 1));
        assert!(!rebuilt.has_expired_entries(first + 1));
        assert!(rebuilt.has_expired_entries(second + 1));
        let images_only = IndicatorIndex::build(
            &IndicatorSet {
                indicators: vec![indicator("a", IndicatorKind::ImageId, "sha256:aa", None)],
            },
            0,
        );
        assert!(!images_only.watches_inside());
        assert!(!images_only.has_expired_entries(i64::MAX));
    }

    #[test]
    fn addresses_take_the_most_specific_network() {
        let index = index();
        let id = |text: &str| {
            index
                .address(text.parse().unwrap())
                .map(|hit| hit.id.clone())
        };
        assert_eq!(id("203.0.113.7").as_deref(), Some("host"));
        assert_eq!(id("203.0.113.9").as_deref(), Some("net"));
        assert_eq!(id("2001:db8::1").as_deref(), Some("v6"));
        assert_eq!(id("198.51.100.1"), None);
    }

    #[test]
    fn containers_match_by_image_id_and_reference() {
        let index = index();
        let mut container = ContainerInfo::unknown(ContainerId::new("c1"), RuntimeKind::Docker);
        container.image_id = format!("sha256:{}", "ab".repeat(32));
        container.image = "docker.io/library/busybox:latest".into();
        let hit = index.find(IndicatorKind::ImageId, &container).unwrap();
        assert_eq!(hit.indicator_id, "id");
        assert!(index.find(IndicatorKind::ImageRef, &container).is_none());
        container.image = "evil.example/miner:1".into();
        assert_eq!(
            index
                .find(IndicatorKind::ImageRef, &container)
                .unwrap()
                .indicator_id,
            "ref"
        );
        assert!(index.find(IndicatorKind::ProcessName, &container).is_none());
    }

    #[test]
    fn an_indicator_rule_can_ask_for_a_minimum_severity() {
        let index = index();
        let mut container = ContainerInfo::unknown(ContainerId::new("c1"), RuntimeKind::Docker);
        container.image_id = format!("sha256:{}", "ab".repeat(32));
        let verdict = |minimum: &str| {
            let text = format!(
                "apiVersion: lazaret.dev/v1\nkind: Policy\nname: iocs\nmode: enforce\n\
                 rules: [{{indicator: [image-id], min_severity: {minimum}}}]\nactions: [pause]\n"
            );
            let set =
                crate::policy::PolicySet::load(&[crate::policy::PolicySource::new("p.yaml", text)])
                    .unwrap();
            crate::policy::judge(
                &set,
                &crate::policy::JudgeInput {
                    container: &container,
                    posture: &[],
                    indicators: &index,
                    is_exempt: &|_| false,
                },
            )
            .enforcing_policy
        };
        assert_eq!(
            verdict("high").as_deref(),
            Some("iocs"),
            "a high indicator counts"
        );
        assert_eq!(verdict("critical"), None, "not critical enough");
        let misplaced = "apiVersion: lazaret.dev/v1\nkind: Policy\nname: p\n\
            rules: [{check: privileged, min_severity: high}]\n";
        assert!(
            crate::policy::PolicySet::load(&[crate::policy::PolicySource::new(
                "p.yaml", misplaced
            )])
            .is_err()
        );
    }
}
