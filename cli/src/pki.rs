//! The fleet's PKI (DESIGN.md §5): one CA, and a certificate per party whose subject carries its
//! name (`CN`) and its role (`OU`, one of [`Role`]). Made with `rcgen`; every key is ECDSA P-256
//! and written `0600`.
//!
//! Files in the PKI directory: `ca.pem` / `ca-key.pem`, and `NAME.pem` / `NAME-key.pem` for each
//! certificate. [`init`] makes the CA, a `controller`, `node-1`…`node-N` and an `admin`; [`issue`]
//! adds one (an operator, a viewer, a detector…) signed by the CA already there. Nodes and the
//! controller serve as well as connect: their certificates name `localhost`, `127.0.0.1`, `::1`
//! and their own name.

use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use lazaret_core::roles::Role;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};

/// The CA's certificate and key, in the PKI directory.
pub const CA_CERT: &str = "ca.pem";
pub const CA_KEY: &str = "ca-key.pem";
/// How long the CA is valid.
const CA_VALIDITY: Duration = Duration::days(3650);
/// How long an issued certificate is valid.
pub const CERT_VALIDITY: Duration = Duration::days(365);

/// Where `name`'s certificate and key are.
pub fn cert_paths(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}-key.pem")),
    )
}

/// What [`init`] made, by name, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Made {
    pub name: String,
    pub role: Role,
}

/// Makes a CA in `dir` and certificates for a `controller`, `nodes` nodes (`node-1`…) and an
/// `admin`. Refuses a directory that already holds a CA (nothing is overwritten).
pub fn init(dir: &Path, nodes: usize) -> anyhow::Result<Vec<Made>> {
    if dir.join(CA_CERT).exists() {
        bail!(
            "{} already holds a CA ({CA_CERT}); use `lazaretctl pki issue` to add certificates, or \
             choose an empty directory",
            dir.display()
        );
    }
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, "Lazaret fleet CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::minutes(5);
    params.not_after = now + CA_VALIDITY;
    let key = KeyPair::generate().context("cannot generate the CA key")?;
    let cert = params
        .self_signed(&key)
        .context("cannot sign the CA certificate")?;
    write_public(&dir.join(CA_CERT), &cert.pem())?;
    write_secret(&dir.join(CA_KEY), &key.serialize_pem())?;

    let mut made = vec![Made {
        name: "controller".into(),
        role: Role::Controller,
    }];
    made.extend((1..=nodes).map(|index| Made {
        name: format!("node-{index}"),
        role: Role::Node,
    }));
    made.push(Made {
        name: "admin".into(),
        role: Role::Admin,
    });
    for party in &made {
        issue(dir, party.role, &party.name, &[])?;
    }
    Ok(made)
}

/// Issues `NAME.pem` / `NAME-key.pem` with `role`, signed by the CA in `dir`. Nodes and the
/// controller (which serve) get `localhost`, the loopback addresses, their name and `extra_sans`
/// as subject alternative names. Refuses to overwrite an existing certificate.
pub fn issue(dir: &Path, role: Role, name: &str, extra_sans: &[String]) -> anyhow::Result<PathBuf> {
    validate_name(name)?;
    let (cert_path, key_path) = cert_paths(dir, name);
    if cert_path.exists() {
        bail!(
            "{} exists: a certificate named {name:?} was issued already",
            cert_path.display()
        );
    }
    let issuer = load_issuer(dir)?;
    let serves = matches!(role, Role::Node | Role::Controller);
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, name);
    params
        .distinguished_name
        .push(DnType::OrganizationalUnitName, role.as_str());
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    if serves {
        params
            .extended_key_usages
            .push(ExtendedKeyUsagePurpose::ServerAuth);
        let mut names = vec![name.to_string(), "localhost".to_string()];
        names.extend(extra_sans.iter().cloned());
        for san in names {
            params.subject_alt_names.push(match san.parse::<IpAddr>() {
                Ok(address) => SanType::IpAddress(address),
                Err(_) => SanType::DnsName(
                    san.as_str()
                        .try_into()
                        .with_context(|| format!("{san:?} is not a valid DNS name"))?,
                ),
            });
        }
        for loopback in ["127.0.0.1", "::1"] {
            params.subject_alt_names.push(SanType::IpAddress(
                loopback.parse().expect("a literal address"),
            ));
        }
    }
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::minutes(5);
    params.not_after = now + CERT_VALIDITY;
    let key = KeyPair::generate().context("cannot generate a key")?;
    let cert = params
        .signed_by(&key, &issuer)
        .with_context(|| format!("cannot sign the certificate of {name}"))?;
    write_public(&cert_path, &cert.pem())?;
    write_secret(&key_path, &key.serialize_pem())?;
    Ok(cert_path)
}

fn load_issuer(dir: &Path) -> anyhow::Result<Issuer<'static, KeyPair>> {
    let read = |file: &str| {
        let path = dir.join(file);
        fs::read_to_string(&path).with_context(|| {
            format!(
                "cannot read {}: run `lazaretctl pki init --dir {}` first",
                path.display(),
                dir.display()
            )
        })
    };
    let key = KeyPair::from_pem(&read(CA_KEY)?).context("the CA key does not parse")?;
    Issuer::from_ca_cert_pem(&read(CA_CERT)?, key).context("the CA certificate does not parse")
}

/// Names become file names and certificate subjects: letters, digits, `-`, `_`, `.`.
fn validate_name(name: &str) -> anyhow::Result<()> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !valid {
        bail!("{name:?} is not a valid name: use 1 to 64 letters, digits, '-', '_' or '.'");
    }
    if name == "ca" || name == "ca-key" {
        bail!("{name:?} is the CA's own file name: choose another name");
    }
    Ok(())
}

/// Writes a file anyone may read.
pub fn write_public(path: &Path, text: &str) -> anyhow::Result<()> {
    fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// Written with mode `0600` from the start: the key is never readable by others, even briefly.
pub fn write_secret(path: &Path, text: &str) -> anyhow::Result<()> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    // `mode` is filtered by the umask; 0600 only ever loses bits, but say it explicitly.
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot restrict {}", path.display()))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use x509_parser::prelude::{FromDer, X509Certificate};

    use super::*;

    fn subject_of(path: &Path) -> (String, String) {
        let pem = fs::read(path).unwrap();
        let (_, pem) = x509_parser::pem::parse_x509_pem(&pem).unwrap();
        let (_, cert) = X509Certificate::from_der(&pem.contents).unwrap();
        let first = |attributes: Vec<&x509_parser::x509::AttributeTypeAndValue<'_>>| {
            attributes[0].as_str().unwrap().to_string()
        };
        (
            first(cert.subject().iter_common_name().collect()),
            first(cert.subject().iter_organizational_unit().collect()),
        )
    }

    #[test]
    fn init_makes_a_ca_and_one_certificate_per_party_with_private_keys() {
        let dir = tempfile::tempdir().unwrap();
        let made = init(dir.path(), 2).unwrap();
        let names: Vec<&str> = made.iter().map(|party| party.name.as_str()).collect();
        assert_eq!(names, ["controller", "node-1", "node-2", "admin"]);
        for party in &made {
            let (cert, key) = cert_paths(dir.path(), &party.name);
            assert_eq!(
                subject_of(&cert),
                (party.name.clone(), party.role.as_str().to_string())
            );
            let mode = fs::metadata(&key).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", key.display());
        }
        let ca_key_mode = fs::metadata(dir.path().join(CA_KEY))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(ca_key_mode & 0o777, 0o600);

        // A second init refuses; issue adds; a name is never issued twice.
        assert!(
            init(dir.path(), 1)
                .unwrap_err()
                .to_string()
                .contains("already holds a CA")
        );
        let viewer = issue(dir.path(), Role::Viewer, "alice", &[]).unwrap();
        assert_eq!(subject_of(&viewer), ("alice".into(), "viewer".into()));
        assert!(issue(dir.path(), Role::Admin, "alice", &[]).is_err());
        assert!(issue(dir.path(), Role::Admin, "../evil", &[]).is_err());
    }

    #[test]
    fn issue_without_a_ca_says_how_to_make_one() {
        let dir = tempfile::tempdir().unwrap();
        let error = issue(dir.path(), Role::Viewer, "bob", &[]).unwrap_err();
        assert!(
            format!("{error:#}").contains("lazaretctl pki init"),
            "{error:#}"
        );
    }
}
