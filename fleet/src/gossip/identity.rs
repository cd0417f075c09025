//! Who says what over gossip: this node seals its values with its own TLS key
//! ([`NodeSigner`]), and a peer's values are believed only once its certificate chains to the
//! fleet CA with the peer's name and a gossiping role, and each value's seal verifies under that
//! certificate's key ([`PeerTrust`]). DESIGN.md §3, "Trust".
//!
//! Keys are ECDSA P-256 (what `lazaretctl pki` issues); signatures are the fixed 64-byte form.

use lazaret_core::gossip::{self, GossipKey, SealError, Slot};
use lazaret_core::roles::Role;
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use x509_parser::pem::parse_x509_pem;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::caller::caller_from_der;

/// Why a peer's value is not believed. [`Refusal::reason`] labels the metric.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("no certificate published")]
    NoCertificate,
    #[error("certificate refused: {0}")]
    Certificate(String),
    #[error("value is not sealed")]
    Unsealed,
    #[error("seal does not verify under the node's certificate")]
    BadSeal,
}

impl Refusal {
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::NoCertificate => "no-certificate",
            Refusal::Certificate(_) => "bad-certificate",
            Refusal::Unsealed => "unsealed",
            Refusal::BadSeal => "bad-seal",
        }
    }
}

/// Seals this node's values.
pub struct NodeSigner {
    key: EcdsaKeyPair,
    random: SystemRandom,
    cluster: String,
    node: String,
    certificate_pem: String,
}

impl NodeSigner {
    /// From the node's certificate and key (PEM, as `lazaretctl pki` writes them).
    pub fn new(
        cluster: &str,
        node: &str,
        certificate_pem: String,
        key_pem: &[u8],
    ) -> anyhow::Result<NodeSigner> {
        let random = SystemRandom::new();
        let (_, pem) = parse_x509_pem(key_pem)
            .map_err(|error| anyhow::anyhow!("the node key is not PEM: {error}"))?;
        let key =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pem.contents, &random)
                .map_err(|error| {
                    anyhow::anyhow!("the node key is not an ECDSA P-256 PKCS#8 key: {error}")
                })?;
        Ok(NodeSigner {
            key,
            random,
            cluster: cluster.to_string(),
            node: node.to_string(),
            certificate_pem,
        })
    }

    /// `payload` sealed for `key` at `slot` (see [`gossip::seal`]).
    pub fn seal(&self, key: &GossipKey, slot: Slot, payload: &str) -> String {
        let message = gossip::signing_message(&self.cluster, &self.node, slot, key, payload);
        let signature = self
            .key
            .sign(&self.random, &message)
            .expect("ECDSA signing with the system RNG does not fail");
        gossip::seal(signature.as_ref(), payload)
    }

    /// The certificate published as `cert`.
    pub fn certificate_pem(&self) -> &str {
        &self.certificate_pem
    }
}

/// A peer whose certificate was verified: its role and public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerKey {
    pub role: Role,
    public_key: Vec<u8>,
}

/// Checks peers' certificates and seals.
pub struct PeerTrust {
    cluster: String,
    ca_der: Vec<u8>,
}

impl PeerTrust {
    /// From the fleet CA certificate (PEM).
    pub fn new(cluster: &str, ca_pem: &[u8]) -> anyhow::Result<PeerTrust> {
        let (_, pem) = parse_x509_pem(ca_pem)
            .map_err(|error| anyhow::anyhow!("the CA certificate is not PEM: {error}"))?;
        X509Certificate::from_der(&pem.contents)
            .map_err(|error| anyhow::anyhow!("the CA certificate does not parse: {error}"))?;
        Ok(PeerTrust {
            cluster: cluster.to_string(),
            ca_der: pem.contents,
        })
    }

    /// The key of `node`, from the certificate it published: it must be signed by the fleet CA,
    /// be valid now, name `node`, and carry the `node` or `controller` role.
    pub fn certificate(&self, node: &str, pem: &str) -> Result<PeerKey, Refusal> {
        let refused = |why: String| Refusal::Certificate(why);
        let (_, pem) =
            parse_x509_pem(pem.as_bytes()).map_err(|error| refused(error.to_string()))?;
        let (_, certificate) =
            X509Certificate::from_der(&pem.contents).map_err(|error| refused(error.to_string()))?;
        let (_, ca) = X509Certificate::from_der(&self.ca_der).expect("checked at construction");
        certificate
            .verify_signature(Some(ca.public_key()))
            .map_err(|_| refused("not signed by the fleet CA".into()))?;
        if !certificate.validity().is_valid() {
            return Err(refused("expired or not yet valid".into()));
        }
        let caller = caller_from_der(&pem.contents).map_err(refused)?;
        if caller.name != node {
            return Err(refused(format!(
                "issued to {:?}, published under {node:?}",
                caller.name
            )));
        }
        if !matches!(caller.role, Role::Node | Role::Controller) {
            return Err(refused(format!("role {} may not gossip", caller.role)));
        }
        Ok(PeerKey {
            role: caller.role,
            public_key: certificate.public_key().subject_public_key.data.to_vec(),
        })
    }

    /// The payload of `node`'s sealed `value` for `key` at `slot`, once its seal verifies.
    pub fn open<'a>(
        &self,
        peer: &PeerKey,
        node: &str,
        slot: Slot,
        key: &GossipKey,
        value: &'a str,
    ) -> Result<&'a str, Refusal> {
        gossip::verify_seal(&peer.public_key, &self.cluster, node, slot, key, value).map_err(
            |error| match error {
                SealError::Unsealed => Refusal::Unsealed,
                SealError::BadSeal => Refusal::BadSeal,
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fleet {
        dir: tempfile::TempDir,
    }

    impl Fleet {
        fn new() -> Fleet {
            let dir = tempfile::tempdir().unwrap();
            lazaretctl::pki::init(dir.path(), 2).unwrap();
            Fleet { dir }
        }

        fn read(&self, file: &str) -> String {
            std::fs::read_to_string(self.dir.path().join(file)).unwrap()
        }

        fn signer(&self, cluster: &str, name: &str) -> NodeSigner {
            let certificate = self.read(&format!("{name}.pem"));
            NodeSigner::new(
                cluster,
                name,
                certificate,
                self.read(&format!("{name}-key.pem")).as_bytes(),
            )
            .unwrap()
        }

        fn trust(&self, cluster: &str) -> PeerTrust {
            PeerTrust::new(cluster, self.read("ca.pem").as_bytes()).unwrap()
        }
    }

    const SLOT: Slot = Slot {
        generation: 1,
        version: 3,
    };

    #[test]
    fn a_sealed_value_opens_only_for_its_node_key_and_cluster() {
        let fleet = Fleet::new();
        let signer = fleet.signer("fleet", "node-1");
        let trust = fleet.trust("fleet");
        let peer = trust
            .certificate("node-1", signer.certificate_pem())
            .unwrap();
        assert_eq!(peer.role, Role::Node);
        let sealed = signer.seal(&GossipKey::Mode, SLOT, r#"{"audit_only":false}"#);
        assert_eq!(
            trust.open(&peer, "node-1", SLOT, &GossipKey::Mode, &sealed),
            Ok(r#"{"audit_only":false}"#)
        );
        // Moved to another key, another node's name, another cluster, or edited: refused.
        assert_eq!(
            trust.open(&peer, "node-1", SLOT, &GossipKey::Stats, &sealed),
            Err(Refusal::BadSeal)
        );
        assert_eq!(
            trust.open(&peer, "node-2", SLOT, &GossipKey::Mode, &sealed),
            Err(Refusal::BadSeal)
        );
        assert_eq!(
            fleet
                .trust("other")
                .open(&peer, "node-1", SLOT, &GossipKey::Mode, &sealed),
            Err(Refusal::BadSeal)
        );
        let edited = sealed.replace("false", "true");
        assert_eq!(
            trust.open(&peer, "node-1", SLOT, &GossipKey::Mode, &edited),
            Err(Refusal::BadSeal)
        );
        assert_eq!(
            trust.open(&peer, "node-1", SLOT, &GossipKey::Mode, "plain"),
            Err(Refusal::Unsealed)
        );
        // Replayed later, under a newer version or after a restart: refused.
        for replayed in [
            Slot { version: 9, ..SLOT },
            Slot {
                generation: 2,
                ..SLOT
            },
        ] {
            assert_eq!(
                trust.open(&peer, "node-1", replayed, &GossipKey::Mode, &sealed),
                Err(Refusal::BadSeal)
            );
        }
    }

    #[test]
    fn a_value_forged_under_another_nodes_name_does_not_open() {
        let fleet = Fleet::new();
        let trust = fleet.trust("fleet");
        let node_2 = trust
            .certificate("node-2", &fleet.read("node-2.pem"))
            .unwrap();
        // node-1 holds a valid certificate, but seals as node-2 with its own key.
        let forger = NodeSigner::new(
            "fleet",
            "node-2",
            fleet.read("node-1.pem"),
            fleet.read("node-1-key.pem").as_bytes(),
        )
        .unwrap();
        let forged = forger.seal(&GossipKey::Mode, SLOT, "{}");
        assert_eq!(
            trust.open(&node_2, "node-2", SLOT, &GossipKey::Mode, &forged),
            Err(Refusal::BadSeal)
        );
    }

    #[test]
    fn certificates_must_chain_to_the_ca_name_the_node_and_carry_a_gossiping_role() {
        let fleet = Fleet::new();
        let trust = fleet.trust("fleet");
        let refused = |result: Result<PeerKey, Refusal>| match result {
            Err(Refusal::Certificate(why)) => why,
            other => panic!("expected a refusal, got {other:?}"),
        };
        let why = refused(trust.certificate("node-2", &fleet.read("node-1.pem")));
        assert!(why.contains("issued to \"node-1\""), "{why}");
        let why = refused(trust.certificate("admin", &fleet.read("admin.pem")));
        assert!(why.contains("may not gossip"), "{why}");
        assert_eq!(
            trust
                .certificate("controller", &fleet.read("controller.pem"))
                .unwrap()
                .role,
            Role::Controller
        );
        let stranger = Fleet::new();
        let why = refused(trust.certificate("node-1", &stranger.read("node-1.pem")));
        assert!(why.contains("not signed by the fleet CA"), "{why}");
        assert!(matches!(
            trust.certificate("node-1", "garbage"),
            Err(Refusal::Certificate(_))
        ));
    }
}
