//! Offline bundle signing (`lazaretctl bundle keygen|sign|verify`): an ed25519 key pair on disk,
//! and signed bundles of policy or indicator files, validated whole before they are signed.
//! The format and the rules are `lazaret_core::bundle`'s.
//!
//! Keys: `NAME.key` (PKCS#8 PEM, mode 0600: keep it offline) and `NAME.pub` (SPKI PEM: give it to
//! every agent as `bundles.trusted_keys`). `openssl genpkey -algorithm ed25519` makes a key this
//! reads too.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use lazaret_core::bundle::{
    Bundle, BundleItem, BundleKind, BundlePublicKey, BundleSigningKey, SignedBundle, TrustedKeys,
};
use lazaret_core::policy::files;

use crate::pki::{write_public, write_secret};

/// The key files [`keygen`] writes for `base`: `base.key`, `base.pub`.
pub fn key_paths(base: &Path) -> (PathBuf, PathBuf) {
    let with = |extension: &str| {
        let mut path = base.as_os_str().to_owned();
        path.push(extension);
        PathBuf::from(path)
    };
    (with(".key"), with(".pub"))
}

/// Makes a new signing key: `base.key` (0600) and `base.pub`. Refuses to overwrite.
pub fn keygen(base: &Path) -> anyhow::Result<BundleSigningKey> {
    let (secret, public) = key_paths(base);
    if secret.exists() || public.exists() {
        bail!(
            "{} or {} exists: choose another name (keys are never overwritten)",
            secret.display(),
            public.display()
        );
    }
    if let Some(parent) = base
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
    {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    let mut seed = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut seed)
        .map_err(|_| anyhow::anyhow!("the system random source failed"))?;
    let key = BundleSigningKey::from_seed(seed);
    write_secret(&secret, &key.to_pem())?;
    write_public(&public, &key.public().to_pem())?;
    Ok(key)
}

/// Reads a private signing key (PEM).
pub fn read_signing_key(path: &Path) -> anyhow::Result<BundleSigningKey> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    BundleSigningKey::from_pem(&text).with_context(|| format!("{}", path.display()))
}

/// Reads public keys (PEM) into a trusted set.
pub fn read_trusted(paths: &[PathBuf]) -> anyhow::Result<TrustedKeys> {
    let mut keys = Vec::new();
    for path in paths {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        keys.push(BundlePublicKey::from_pem(&text).with_context(|| format!("{}", path.display()))?);
    }
    Ok(TrustedKeys::new(keys))
}

/// What to sign.
#[derive(Debug, Clone)]
pub struct SignRequest {
    pub kind: BundleKind,
    /// Files, or directories whose `*.yaml`/`*.yml` files are taken.
    pub paths: Vec<PathBuf>,
    pub version: u64,
    /// Unix seconds.
    pub created: u64,
    /// Unix seconds.
    pub expires: u64,
}

/// The bundle items of `paths` (files, or directories whose `*.yaml`/`*.yml` files are taken):
/// each file an item named by its file name, names unique.
pub fn bundle_items(paths: &[PathBuf]) -> anyhow::Result<Vec<BundleItem>> {
    let sources = files::read_sources(paths).map_err(|errors| anyhow::anyhow!("{errors}"))?;
    let mut items = BTreeMap::new();
    for source in sources {
        let name = Path::new(&source.name)
            .file_name()
            .map_or(source.name.clone(), |name| {
                name.to_string_lossy().into_owned()
            });
        if items.contains_key(&name) {
            bail!("two files are named {name:?}: bundle items are named by file name, rename one");
        }
        items.insert(name, source.text);
    }
    Ok(items
        .into_iter()
        .map(|(name, content)| BundleItem { name, content })
        .collect())
}

/// Reads, validates whole, and signs ([`bundle_items`]). A bad file refuses the whole bundle,
/// every problem listed.
pub fn sign(request: &SignRequest, key: &BundleSigningKey) -> anyhow::Result<SignedBundle> {
    let items = bundle_items(&request.paths)?;
    let bundle = Bundle::new(
        request.kind,
        request.version,
        request.created,
        request.expires,
        items,
        key.id(),
    )?;
    bundle.content().map_err(|errors| {
        anyhow::anyhow!("not signed, the {} do not load:\n{errors}", request.kind)
    })?;
    Ok(bundle.sign(key)?)
}

/// Reads a signed bundle file and verifies it against `trusted`; its content must load too.
pub fn verify(path: &Path, trusted: &TrustedKeys) -> anyhow::Result<(SignedBundle, Bundle)> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let signed = SignedBundle::parse(&bytes).with_context(|| format!("{}", path.display()))?;
    let bundle = trusted.verify(&signed)?.clone();
    bundle
        .content()
        .map_err(|errors| anyhow::anyhow!("signed, but its content does not load:\n{errors}"))?;
    Ok((signed, bundle))
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = "apiVersion: lazaret.dev/v1\nkind: Policy\nname: no-privileged\n\
                          rules: [{check: privileged}]\nactions: [pause]\n";

    fn request(kind: BundleKind, paths: Vec<PathBuf>) -> SignRequest {
        SignRequest {
            kind,
            paths,
            version: 7,
            created: 1_700_000_000,
            expires: 1_800_000_000,
        }
    }

    #[test]
    fn keygen_sign_and_verify_round_trip_with_a_private_key_kept_0600() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let key = keygen(&dir.path().join("keys/fleet")).unwrap();
        let (secret, public) = key_paths(&dir.path().join("keys/fleet"));
        let mode = std::fs::metadata(&secret).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(
            keygen(&dir.path().join("keys/fleet")).is_err(),
            "never overwritten"
        );
        let reread = read_signing_key(&secret).unwrap();
        assert_eq!(reread.id(), key.id());
        let policies = dir.path().join("policies");
        std::fs::create_dir(&policies).unwrap();
        std::fs::write(policies.join("a.yaml"), POLICY).unwrap();
        let signed = sign(&request(BundleKind::Policies, vec![policies]), &key).unwrap();
        let file = dir.path().join("bundle.json");
        std::fs::write(&file, signed.to_file_bytes()).unwrap();
        let (verified_signed, bundle) = verify(&file, &read_trusted(&[public]).unwrap()).unwrap();
        assert_eq!(verified_signed.digest(), signed.digest());
        assert_eq!(bundle.items[0].name, "a.yaml");
        assert_eq!(bundle.version, 7);
    }

    #[test]
    fn a_bad_file_is_never_signed() {
        let dir = tempfile::tempdir().unwrap();
        let key = BundleSigningKey::from_seed([1; 32]);
        let bad = dir.path().join("bad.yaml");
        std::fs::write(&bad, POLICY.replace("privileged", "no-such-check")).unwrap();
        let error = sign(&request(BundleKind::Policies, vec![bad.clone()]), &key).unwrap_err();
        assert!(error.to_string().contains("not signed"), "{error:#}");
        let error = sign(&request(BundleKind::Indicators, vec![bad]), &key).unwrap_err();
        assert!(error.to_string().contains("not signed"), "{error:#}");
    }

    #[test]
    fn two_files_with_one_name_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        for sub in ["a", "b"] {
            std::fs::create_dir(dir.path().join(sub)).unwrap();
            std::fs::write(dir.path().join(sub).join("same.yaml"), POLICY).unwrap();
        }
        let error = sign(
            &request(
                BundleKind::Policies,
                vec![dir.path().join("a"), dir.path().join("b")],
            ),
            &BundleSigningKey::from_seed([1; 32]),
        )
        .unwrap_err();
        assert!(error.to_string().contains("two files"), "{error:#}");
    }
}
