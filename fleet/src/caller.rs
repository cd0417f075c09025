//! Who is calling: the name (`CN`) and role (`OU`) in the client certificate the TLS handshake
//! verified against the fleet CA (DESIGN.md §5, made by `lazaretctl pki`). A call without a
//! verified certificate never reaches a handler (the handshake refuses it); a certificate without
//! a known role is refused here, naming what is wrong.
//!
//! A controller forwards the operator it authenticated ([`Caller::forward`]: two metadata
//! entries). A receiver believes them only from a certificate with role `controller`, then
//! checks the operator's role like any caller's and records both names ([`Caller::actor`]).

use lazaret_core::roles::{self, Operation, Role};
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::{Request, Status};
use x509_parser::prelude::{FromDer, X509Certificate};

/// The metadata key of a forwarded operator's name.
pub const ON_BEHALF_OF: &str = "x-lazaret-on-behalf-of";
/// The metadata key of a forwarded operator's role.
pub const ON_BEHALF_OF_ROLE: &str = "x-lazaret-on-behalf-of-role";

/// The authenticated caller of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The certificate's common name (a forwarded call: the operator's).
    pub name: String,
    /// Its role (a forwarded call: the operator's, which is what is checked).
    pub role: Role,
    /// The controller that forwarded the call, if one did.
    pub via: Option<String>,
}

impl Caller {
    /// The caller, or `UNAUTHENTICATED` with the reason; the forwarded operator when a
    /// controller forwards one (`PERMISSION_DENIED` when anyone else tries).
    pub fn of<T>(request: &Request<T>) -> Result<Caller, Status> {
        let direct = Caller::certified(request)?;
        // Refused before the entries are read: anyone else learns nothing from how they parse.
        let metadata = request.metadata();
        let claims =
            metadata.contains_key(ON_BEHALF_OF) || metadata.contains_key(ON_BEHALF_OF_ROLE);
        if claims && direct.role != Role::Controller {
            return Err(Status::permission_denied(format!(
                "{} ({}): only a controller may call on behalf of someone else",
                direct.name, direct.role
            )));
        }
        let Some((name, role)) = forwarded(metadata)? else {
            return Ok(direct);
        };
        if matches!(role, Role::Controller | Role::Node) {
            return Err(Status::permission_denied(format!(
                "{}: a controller forwards operators, not role {role}",
                direct.name
            )));
        }
        Ok(Caller {
            name,
            role,
            via: Some(direct.name),
        })
    }

    /// Who did it, for records: `alice`, or `alice via controller-1` when forwarded.
    pub fn actor(&self) -> String {
        match &self.via {
            Some(via) => format!("{} via {via}", self.name),
            None => self.name.clone(),
        }
    }

    /// Marks `request` as made on behalf of this caller (the controller's side). A controller
    /// acting as itself (its own checks) forwards nothing.
    pub fn forward<T>(&self, request: &mut Request<T>) -> Result<(), Status> {
        if self.role == Role::Controller {
            return Ok(());
        }
        let value = |text: &str| {
            MetadataValue::try_from(text).map_err(|_| {
                Status::invalid_argument(format!("{text:?} cannot be forwarded in metadata"))
            })
        };
        let metadata = request.metadata_mut();
        metadata.insert(ON_BEHALF_OF, value(&self.name)?);
        metadata.insert(ON_BEHALF_OF_ROLE, value(self.role.as_str())?);
        Ok(())
    }

    /// The caller its certificate names.
    fn certified<T>(request: &Request<T>) -> Result<Caller, Status> {
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
    Ok(Caller {
        name,
        role,
        via: None,
    })
}

/// The forwarded operator's name and role, when the request carries one.
fn forwarded(metadata: &MetadataMap) -> Result<Option<(String, Role)>, Status> {
    let read = |key: &str| {
        metadata
            .get(key)
            .map(|value| {
                value
                    .to_str()
                    .map(str::to_string)
                    .map_err(|_| Status::invalid_argument(format!("metadata {key} is not text")))
            })
            .transpose()
    };
    match (read(ON_BEHALF_OF)?, read(ON_BEHALF_OF_ROLE)?) {
        (None, None) => Ok(None),
        (Some(name), Some(role)) => {
            let role = role.parse::<Role>().map_err(|unknown| {
                Status::invalid_argument(format!("{ON_BEHALF_OF_ROLE}: {unknown}"))
            })?;
            Ok(Some((name, role)))
        }
        _ => Err(Status::invalid_argument(format!(
            "a forwarded call carries both {ON_BEHALF_OF} and {ON_BEHALF_OF_ROLE}"
        ))),
    }
}
