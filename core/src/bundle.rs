//! Signed, versioned bundles of policies or indicators (DESIGN.md §3, "Bundles").
//!
//! A [`Bundle`] is `{kind, version, created, expires, items, signer}`. It is signed offline with
//! an ed25519 key (`lazaretctl bundle sign`), travels as a [`SignedBundle`] file or over gRPC
//! `GetBundle`, and an agent acts on it only after [`TrustedKeys::verify`] accepted it.
//!
//! **Canonical encoding.** The signature and the digest are computed over the bundle's canonical
//! JSON: the fields in the order of [`Bundle`], no whitespace, items sorted by name and unique, as
//! `serde_json` writes them. A signed file may be pretty-printed or re-ordered by a person; the
//! verifier re-encodes what it parsed, so equal bundles always have the same digest, and unknown
//! fields are refused rather than dropped (nothing signed can be silently lost). The signed message
//! is [`SIGNING_CONTEXT`] followed by the canonical bytes, so a bundle signature can never be
//! replayed as any other kind of signature. A test pins the digest of a fixed bundle: the
//! encoding must never change without a new context tag.
//!
//! **Order.** Bundles of one kind are ordered by ([`Bundle::version`], digest): a lower version is
//! refused (anti-rollback, against the highest ever accepted, which the agent persists); for the
//! same version the higher digest wins everywhere, so two signers who disagree still converge.
//!
//! **Expiry.** A bundle past `expires` stays in force (an agent keeps enforcing its last bundle
//! through partitions and outages) but is [`Bundle::is_stale`], which the agent raises as an alarm.
//!
//! No I/O and no clock here: callers pass the time in, and key generation (which needs
//! randomness) lives in the CLI.

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::indicator::IndicatorSet;
use crate::policy::{PolicySet, PolicySource};

/// Prepended to the canonical bytes before signing: the signature covers this exact tag.
pub const SIGNING_CONTEXT: &[u8] = b"lazaret-bundle-v1\0";

/// What a bundle carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BundleKind {
    Policies,
    Indicators,
}

impl BundleKind {
    pub const ALL: [BundleKind; 2] = [BundleKind::Policies, BundleKind::Indicators];

    pub fn as_str(self) -> &'static str {
        match self {
            BundleKind::Policies => "policies",
            BundleKind::Indicators => "indicators",
        }
    }
}

impl fmt::Display for BundleKind {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

impl FromStr for BundleKind {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "policies" => Ok(BundleKind::Policies),
            "indicators" => Ok(BundleKind::Indicators),
            other => Err(format!(
                "unknown bundle kind {other:?}: expected policies or indicators"
            )),
        }
    }
}

/// One file of a bundle: its name (for error messages and listings) and its text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleItem {
    pub name: String,
    pub content: String,
}

/// The signed content. Field order is the canonical encoding's order: never reorder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bundle {
    pub kind: BundleKind,
    /// Chosen by the signer; must grow from one bundle of a kind to the next.
    pub version: u64,
    /// Unix seconds.
    pub created: u64,
    /// Unix seconds; past this the bundle is stale (still enforced, alarmed).
    pub expires: u64,
    /// Sorted by name, names unique.
    pub items: Vec<BundleItem>,
    /// The [`KeyId`] of the key that signed it.
    pub signer: KeyId,
    /// A canary bundle names the only nodes that may take it (sorted, unique); empty (and then
    /// absent from the encoding, so older digests stand): every node.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<String>,
}

impl Bundle {
    /// The canonical bytes (see the module docs). Items must already be sorted and unique;
    /// [`Bundle::new`] and parsing guarantee it.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a bundle always serialises")
    }

    /// A bundle with its items sorted; refuses duplicate names and an expiry before creation.
    pub fn new(
        kind: BundleKind,
        version: u64,
        created: u64,
        expires: u64,
        mut items: Vec<BundleItem>,
        signer: KeyId,
    ) -> Result<Bundle, BundleError> {
        items.sort_by(|left, right| left.name.cmp(&right.name));
        let bundle = Bundle {
            kind,
            version,
            created,
            expires,
            items,
            signer,
            nodes: Vec::new(),
        };
        bundle.check_shape()?;
        Ok(bundle)
    }

    /// This bundle for `nodes` only (a canary); an empty list means every node.
    pub fn for_nodes(mut self, mut nodes: Vec<String>) -> Bundle {
        nodes.sort();
        nodes.dedup();
        self.nodes = nodes;
        self
    }

    /// Whether `node` may take this bundle.
    pub fn is_for(&self, node: &str) -> bool {
        self.nodes.is_empty() || self.nodes.iter().any(|name| name == node)
    }

    fn check_shape(&self) -> Result<(), BundleError> {
        if let Some(pair) = self
            .items
            .windows(2)
            .find(|pair| pair[0].name >= pair[1].name)
        {
            return Err(BundleError::Malformed(if pair[0].name == pair[1].name {
                format!("item {:?} appears twice", pair[0].name)
            } else {
                format!(
                    "items are not sorted by name ({:?} before {:?})",
                    pair[0].name, pair[1].name
                )
            }));
        }
        if self.nodes.windows(2).any(|pair| pair[0] >= pair[1]) {
            return Err(BundleError::Malformed(
                "nodes must be sorted and unique".into(),
            ));
        }
        if self.expires <= self.created {
            return Err(BundleError::Malformed(format!(
                "expires ({}) must be after created ({})",
                self.expires, self.created
            )));
        }
        Ok(())
    }

    /// The content, loaded whole: policies as one [`PolicySet`], indicators as one
    /// [`IndicatorSet`]. Any bad item refuses the whole bundle, every problem listed (file:line
    /// for policies).
    pub fn content(&self) -> Result<BundleContent, String> {
        match self.kind {
            BundleKind::Policies => {
                let sources: Vec<PolicySource> = self
                    .items
                    .iter()
                    .map(|item| PolicySource::new(item.name.as_str(), item.content.as_str()))
                    .collect();
                PolicySet::load(&sources)
                    .map(BundleContent::Policies)
                    .map_err(|errors| errors.to_string())
            }
            BundleKind::Indicators => IndicatorSet::load(
                self.items
                    .iter()
                    .map(|item| (item.name.as_str(), item.content.as_str())),
            )
            .map(BundleContent::Indicators)
            .map_err(|errors| errors.join("\n")),
        }
    }

    /// Past its expiry at `now` (unix seconds).
    pub fn is_stale(&self, now: u64) -> bool {
        now >= self.expires
    }

    /// Signs the bundle. `key` must be the key named by `signer`.
    pub fn sign(self, key: &BundleSigningKey) -> Result<SignedBundle, BundleError> {
        if key.id() != self.signer {
            return Err(BundleError::Malformed(format!(
                "the bundle names signer {} but the key is {}",
                self.signer,
                key.id()
            )));
        }
        let canonical = self.canonical_bytes();
        let signature = key.key.sign(&signed_message(&canonical));
        Ok(SignedBundle::from_parts(self, canonical, signature))
    }
}

fn signed_message(canonical: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(SIGNING_CONTEXT.len() + canonical.len());
    message.extend_from_slice(SIGNING_CONTEXT);
    message.extend_from_slice(canonical);
    message
}

/// What a bundle holds, loaded.
#[derive(Debug, Clone)]
pub enum BundleContent {
    Policies(PolicySet),
    Indicators(IndicatorSet),
}

/// SHA-256 of a bundle's canonical bytes; shown as 64 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BundleDigest(pub [u8; 32]);

impl BundleDigest {
    pub fn of(canonical: &[u8]) -> BundleDigest {
        BundleDigest(Sha256::digest(canonical).into())
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The first 12 hex digits, for tables and messages.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..6])
    }
}

impl fmt::Display for BundleDigest {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.to_hex())
    }
}

impl fmt::Debug for BundleDigest {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "BundleDigest({})", self.short())
    }
}

impl FromStr for BundleDigest {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut bytes = [0; 32];
        hex::decode_to_slice(text, &mut bytes)
            .map_err(|error| format!("bad bundle digest {text:?}: {error}"))?;
        Ok(BundleDigest(bytes))
    }
}

impl Serialize for BundleDigest {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for BundleDigest {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Where a bundle stands in the order of its kind: (version, digest).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct BundleStamp {
    pub version: u64,
    pub digest: BundleDigest,
}

impl fmt::Display for BundleStamp {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "v{} ({})", self.version, self.digest.short())
    }
}

/// What to do with a candidate bundle, given the highest one of its kind ever accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Newer: accept it. `conflict` is set when it has the same version as the current one but a
    /// different (higher) digest: two signers disagree, and this one wins everywhere.
    Accept { conflict: bool },
    /// The very bundle already in force.
    AlreadyHave,
    /// Lower than what was accepted before: a rollback or a replay. Refuse.
    Older { current: BundleStamp },
}

/// The anti-rollback rule: only a strictly higher (version, digest) is accepted.
pub fn admit(current: Option<BundleStamp>, candidate: BundleStamp) -> Admission {
    match current {
        None => Admission::Accept { conflict: false },
        Some(current) if candidate == current => Admission::AlreadyHave,
        Some(current) if candidate > current => Admission::Accept {
            conflict: candidate.version == current.version,
        },
        Some(current) => Admission::Older { current },
    }
}

/// A bundle with its signature, as written to a file and sent over gRPC. The parsed
/// [`Bundle`] inside is trusted only once [`TrustedKeys::verify`] returned it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedBundle {
    bundle: Bundle,
    /// The canonical bytes, computed once at parse (a 10k-indicator bundle is ~500 KiB).
    canonical: Vec<u8>,
    signature: Signature,
    digest: BundleDigest,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SignedBundleFile {
    bundle: Bundle,
    /// 128 hex digits: the ed25519 signature of [`SIGNING_CONTEXT`] + canonical bytes.
    signature: String,
}

impl SignedBundle {
    fn from_parts(bundle: Bundle, canonical: Vec<u8>, signature: Signature) -> SignedBundle {
        SignedBundle {
            digest: BundleDigest::of(&canonical),
            canonical,
            bundle,
            signature,
        }
    }

    /// Parses a signed bundle file (JSON). The result is not yet trusted.
    pub fn parse(bytes: &[u8]) -> Result<SignedBundle, BundleError> {
        let file: SignedBundleFile = serde_json::from_slice(bytes)
            .map_err(|error| BundleError::Malformed(format!("not a signed bundle: {error}")))?;
        file.bundle.check_shape()?;
        let mut signature = [0; 64];
        hex::decode_to_slice(&file.signature, &mut signature).map_err(|error| {
            BundleError::Malformed(format!("signature is not 128 hex digits: {error}"))
        })?;
        let canonical = file.bundle.canonical_bytes();
        Ok(SignedBundle::from_parts(
            file.bundle,
            canonical,
            Signature::from_bytes(&signature),
        ))
    }

    /// The file form: pretty JSON, readable by a person reviewing what was signed.
    pub fn to_file_bytes(&self) -> Vec<u8> {
        let file = SignedBundleFile {
            bundle: self.bundle.clone(),
            signature: hex::encode(self.signature.to_bytes()),
        };
        let mut bytes = serde_json::to_vec_pretty(&file).expect("a bundle always serialises");
        bytes.push(b'\n');
        bytes
    }

    /// The bundle as it claims to be: not verified.
    pub fn unverified(&self) -> &Bundle {
        &self.bundle
    }

    pub fn digest(&self) -> BundleDigest {
        self.digest
    }

    pub fn stamp(&self) -> BundleStamp {
        BundleStamp {
            version: self.bundle.version,
            digest: self.digest,
        }
    }
}

/// A short, stable name for a public key: the first 16 hex digits of SHA-256 over its 32 bytes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct KeyId(pub String);

impl KeyId {
    pub fn of(key: &VerifyingKey) -> KeyId {
        KeyId(hex::encode(&Sha256::digest(key.as_bytes())[..8]))
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.0)
    }
}

/// The private half of a bundle-signing key (PKCS#8 PEM on disk, as `openssl genpkey -algorithm
/// ed25519` writes it).
pub struct BundleSigningKey {
    key: SigningKey,
}

impl BundleSigningKey {
    /// From 32 random bytes (the caller owns the randomness).
    pub fn from_seed(seed: [u8; 32]) -> BundleSigningKey {
        BundleSigningKey {
            key: SigningKey::from_bytes(&seed),
        }
    }

    pub fn from_pem(text: &str) -> Result<BundleSigningKey, BundleError> {
        SigningKey::from_pkcs8_pem(text)
            .map(|key| BundleSigningKey { key })
            .map_err(|error| {
                BundleError::Key(format!("not an ed25519 private key (PKCS#8 PEM): {error}"))
            })
    }

    pub fn to_pem(&self) -> String {
        self.key
            .to_pkcs8_pem(Default::default())
            .expect("an ed25519 key always encodes")
            .to_string()
    }

    pub fn public(&self) -> BundlePublicKey {
        BundlePublicKey(self.key.verifying_key())
    }

    pub fn id(&self) -> KeyId {
        self.public().id()
    }
}

impl fmt::Debug for BundleSigningKey {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "BundleSigningKey({})", self.id())
    }
}

/// The public half: what agents trust (SPKI PEM on disk).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BundlePublicKey(VerifyingKey);

impl BundlePublicKey {
    pub fn from_pem(text: &str) -> Result<BundlePublicKey, BundleError> {
        VerifyingKey::from_public_key_pem(text)
            .map(BundlePublicKey)
            .map_err(|error| {
                BundleError::Key(format!("not an ed25519 public key (SPKI PEM): {error}"))
            })
    }

    pub fn to_pem(&self) -> String {
        self.0
            .to_public_key_pem(Default::default())
            .expect("an ed25519 key always encodes")
    }

    pub fn id(&self) -> KeyId {
        KeyId::of(&self.0)
    }
}

/// The keys an agent accepts bundles from. A set, so a new key can be trusted before the old one
/// is retired: rotation without a gap.
#[derive(Debug, Clone, Default)]
pub struct TrustedKeys {
    keys: BTreeMap<KeyId, BundlePublicKey>,
}

impl TrustedKeys {
    pub fn new(keys: impl IntoIterator<Item = BundlePublicKey>) -> TrustedKeys {
        TrustedKeys {
            keys: keys.into_iter().map(|key| (key.id(), key)).collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn ids(&self) -> impl Iterator<Item = &KeyId> {
        self.keys.keys()
    }

    /// The bundle, once its signer is trusted and its signature holds over its canonical bytes.
    pub fn verify<'a>(&self, signed: &'a SignedBundle) -> Result<&'a Bundle, BundleError> {
        let bundle = &signed.bundle;
        let key = self
            .keys
            .get(&bundle.signer)
            .ok_or_else(|| BundleError::Untrusted {
                signer: bundle.signer.clone(),
            })?;
        key.0
            .verify(&signed_message(&signed.canonical), &signed.signature)
            .map_err(|_| BundleError::BadSignature {
                signer: bundle.signer.clone(),
            })?;
        Ok(bundle)
    }
}

/// Why a bundle or key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BundleError {
    #[error("malformed bundle: {0}")]
    Malformed(String),
    #[error(
        "bundle signed by key {signer}, which is not trusted (add its public key to bundles.trusted_keys)"
    )]
    Untrusted { signer: KeyId },
    #[error("bundle signature by key {signer} does not match its content: altered after signing")]
    BadSignature { signer: KeyId },
    #[error("{0}")]
    Key(String),
}

impl BundleError {
    /// A short label for metrics (`reason`).
    pub fn reason(&self) -> &'static str {
        match self {
            BundleError::Malformed(_) => "malformed",
            BundleError::Untrusted { .. } => "untrusted",
            BundleError::BadSignature { .. } => "bad-signature",
            BundleError::Key(_) => "key",
        }
    }
}
