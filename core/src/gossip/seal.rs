//! The envelope that binds a gossip value to its node (see the parent module): what is signed
//! ([`signing_message`]), the sealed form ([`seal`], [`open`]) and the check of a peer's seal
//! ([`verify_seal`]). Pure functions of their inputs: the peer's key comes from its certificate,
//! checked by `lazaret-fleet` (chain, validity, name, role); the fuzz target `gossip_value`
//! drives them with values sealed by a real key and altered.

use ring::signature::{ECDSA_P256_SHA256_FIXED, UnparsedPublicKey};

use super::{GossipKey, SIGNING_CONTEXT};

/// Where a value sits in its node's gossip state: the node's generation and the value's version
/// (chitchat gives a node's every write the next version). Signed with the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Slot {
    pub generation: u64,
    pub version: u64,
}

/// The bytes a node signs for one value.
pub fn signing_message(
    cluster: &str,
    node: &str,
    slot: Slot,
    key: &GossipKey,
    payload: &str,
) -> Vec<u8> {
    let Slot {
        generation,
        version,
    } = slot;
    format!("{SIGNING_CONTEXT}\0{cluster}\0{node}\0{generation}\0{version}\0{key}\0{payload}")
        .into_bytes()
}

/// A sealed value: the signature and the payload it covers.
pub fn seal(signature: &[u8], payload: &str) -> String {
    format!("{}.{payload}", hex::encode(signature))
}

/// The signature and payload of a sealed value; `None` when it is not one.
pub fn open(value: &str) -> Option<(Vec<u8>, &str)> {
    let (signature, payload) = value.split_once('.')?;
    Some((hex::decode(signature).ok()?, payload))
}

/// Why a peer's sealed value is not believed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("value is not sealed")]
    Unsealed,
    #[error("seal does not verify under the node's certificate")]
    BadSeal,
}

/// The payload of `node`'s sealed `value` for `key` at `slot`, once its seal verifies under
/// `public_key`: the node's ECDSA P-256 public key as its certificate carries it (an
/// uncompressed point), the signature in the fixed 64-byte form.
pub fn verify_seal<'a>(
    public_key: &[u8],
    cluster: &str,
    node: &str,
    slot: Slot,
    key: &GossipKey,
    value: &'a str,
) -> Result<&'a str, SealError> {
    let (signature, payload) = open(value).ok_or(SealError::Unsealed)?;
    let message = signing_message(cluster, node, slot, key, payload);
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, public_key)
        .verify(&message, &signature)
        .map_err(|_| SealError::BadSeal)?;
    Ok(payload)
}

#[cfg(test)]
mod tests {
    use ring::rand::SystemRandom;
    use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};

    use super::*;

    #[test]
    fn the_signed_message_binds_cluster_node_slot_and_key() {
        let key = GossipKey::Mode;
        let slot = Slot {
            generation: 2,
            version: 7,
        };
        let message = signing_message("fleet", "node-1", slot, &key, "{}");
        assert_ne!(
            message,
            signing_message("fleet", "node-2", slot, &key, "{}")
        );
        assert_ne!(
            message,
            signing_message("other", "node-1", slot, &key, "{}")
        );
        assert_ne!(
            message,
            signing_message("fleet", "node-1", slot, &GossipKey::Stats, "{}")
        );
        for other in [
            Slot {
                generation: 2,
                version: 8,
            },
            Slot {
                generation: 3,
                version: 7,
            },
        ] {
            assert_ne!(
                message,
                signing_message("fleet", "node-1", other, &key, "{}")
            );
        }
    }

    #[test]
    fn sealed_values_open_to_their_parts() {
        let sealed = seal(&[1, 2, 255], r#"{"a":"b.c"}"#);
        assert_eq!(sealed, r#"0102ff.{"a":"b.c"}"#);
        let (signature, payload) = open(&sealed).unwrap();
        assert_eq!(signature, vec![1, 2, 255]);
        assert_eq!(payload, r#"{"a":"b.c"}"#);
        assert_eq!(open("no-dot"), None);
        assert_eq!(open("zz.payload"), None);
    }

    #[test]
    fn a_seal_verifies_only_under_its_key_node_cluster_slot_and_payload() {
        let random = SystemRandom::new();
        let pair = |_| {
            let pkcs8 =
                EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &random).unwrap();
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &random)
                .unwrap()
        };
        let (signer, stranger) = (pair(1), pair(2));
        let public = signer.public_key().as_ref();
        let slot = Slot {
            generation: 1,
            version: 3,
        };
        let key = GossipKey::Mode;
        let payload = r#"{"audit_only":false}"#;
        let message = signing_message("fleet", "node-1", slot, &key, payload);
        let sealed = seal(signer.sign(&random, &message).unwrap().as_ref(), payload);
        assert_eq!(
            verify_seal(public, "fleet", "node-1", slot, &key, &sealed),
            Ok(payload)
        );
        let edited = sealed.replace("false", "true");
        let refused = [
            verify_seal(
                stranger.public_key().as_ref(),
                "fleet",
                "node-1",
                slot,
                &key,
                &sealed,
            ),
            verify_seal(public, "other", "node-1", slot, &key, &sealed),
            verify_seal(public, "fleet", "node-2", slot, &key, &sealed),
            verify_seal(
                public,
                "fleet",
                "node-1",
                Slot { version: 4, ..slot },
                &key,
                &sealed,
            ),
            verify_seal(public, "fleet", "node-1", slot, &GossipKey::Stats, &sealed),
            verify_seal(public, "fleet", "node-1", slot, &key, &edited),
            verify_seal(b"not a key", "fleet", "node-1", slot, &key, &sealed),
        ];
        for result in refused {
            assert_eq!(result, Err(SealError::BadSeal));
        }
        assert_eq!(
            verify_seal(public, "fleet", "node-1", slot, &key, payload),
            Err(SealError::Unsealed)
        );
    }
}
