//! Who is calling: the name (`CN`) and role (`OU`) in the client certificate the TLS handshake
//! verified against the fleet CA (DESIGN.md §5, made by `lazaretctl pki`). A call without a
//! verified certificate never reaches a handler (the handshake refuses it); a certificate without
//! a known role is refused here, naming what is wrong.

use lazaret_core::roles::{self, Operation, Role};
use tonic::{Request, Status};
use x509_parser::prelude::{FromDer, X509Certificate};

/// The authenticated caller of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The certificate's common name; recorded as the actor of what the call does.
    pub name: String,
    pub role: Role,
}

impl Caller {
    /// The caller, or `UNAUTHENTICATED` with the reason.
    pub fn of<T>(request: &Request<T>) -> Result<Caller, Status> {
        let certificates = request.peer_certs().ok_or_else(|| {
            Status::unauthenticated(
                "no client certificate: connect with one issued by the fleet CA",
            )
        })?;
        let leaf = certificates.first().ok_or_else(|| {
            Status::unauthenticated(
                "no client certificate: connect with one issued by the fleet CA",
            )
        })?;
        caller_from_der(leaf.as_ref()).map_err(Status::unauthenticated)
    }

    /// `PERMISSION_DENIED` unless this caller's role may perform `operation`.
    pub fn authorize(&self, operation: Operation) -> Result<(), Status> {
        roles::authorize(self.role, operation).map_err(|denied| {
            Status::permission_denied(format!("{} ({}): {denied}", self.name, self.role))
        })
    }
}

/// Reads the name and role from a DER certificate.
pub fn caller_from_der(der: &[u8]) -> Result<Caller, String> {
    let (_, certificate) = X509Certificate::from_der(der)
        .map_err(|error| format!("the client certificate does not parse: {error}"))?;
    let subject = certificate.subject();
    let name = subject
        .iter_common_name()
        .next()
        .and_then(|attribute| attribute.as_str().ok())
        .ok_or("the client certificate has no common name (CN)")?
        .to_string();
    let role = subject
        .iter_organizational_unit()
        .next()
        .and_then(|attribute| attribute.as_str().ok())
        .ok_or_else(|| format!("the certificate of {name} carries no role (OU): reissue it with `lazaretctl pki issue --role`"))?;
    let role = role
        .parse::<Role>()
        .map_err(|unknown| format!("the certificate of {name}: {unknown}"))?;
    Ok(Caller { name, role })
}
