//! Who may call what (DESIGN.md §3, §5): the roles a client certificate carries and the one
//! table that says which API operations each may perform. The gRPC servers check every call here
//! and nowhere else.
//!
//! | role | may |
//! |---|---|
//! | `viewer` | every read |
//! | `operator` | + quarantine, release (not `force`) |
//! | `admin` | + modes, bundles (apply, fetch), `force` on protected containers, and everything below |
//! | `controller` | what it forwards for an authenticated user (reads, quarantine, release), and bundles (apply, fetch) |
//! | `node` | fetch bundles from peers; nothing else |
//! | `detector` | report detections; nothing else |

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A caller's role, from its certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    Operator,
    Admin,
    Controller,
    Node,
    Detector,
}

impl Role {
    pub const ALL: [Role; 6] = [
        Role::Viewer,
        Role::Operator,
        Role::Admin,
        Role::Controller,
        Role::Node,
        Role::Detector,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
            Role::Controller => "controller",
            Role::Node => "node",
            Role::Detector => "detector",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// A role name Lazaret does not know; the message lists the valid ones.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown role {given:?}: expected one of viewer, operator, admin, controller, node, detector"
)]
pub struct UnknownRole {
    pub given: String,
}

impl FromStr for Role {
    type Err = UnknownRole;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|role| role.as_str().eq_ignore_ascii_case(text.trim()))
            .ok_or_else(|| UnknownRole {
                given: text.to_string(),
            })
    }
}

/// What a call asks to do, as the table sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// Any read: containers, quarantines, audit, events, policy tests.
    Read,
    Quarantine {
        /// Override the protection of a protected container.
        force: bool,
    },
    Release,
    /// Switch enforce / audit-only.
    SetMode,
    /// Fetch a signed bundle (peers).
    GetBundle,
    /// Hand in a signed bundle.
    ApplyBundle,
    /// Hand in a detection.
    ReportDetection,
}

impl Operation {
    fn describe(self) -> &'static str {
        match self {
            Operation::Read => "read",
            Operation::Quarantine { force: false } => "quarantine",
            Operation::Quarantine { force: true } => "quarantine with --force",
            Operation::Release => "release",
            Operation::SetMode => "change the mode",
            Operation::GetBundle => "fetch bundles",
            Operation::ApplyBundle => "apply bundles",
            Operation::ReportDetection => "report detections",
        }
    }
}

/// A refusal, worded for the caller: what the role may not do, and which roles may.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("role {role} may not {what}; this needs {needed} (ask for a certificate with that role)")]
pub struct Denied {
    pub role: Role,
    pub what: &'static str,
    pub needed: String,
}

/// Whether `role` may perform `operation`. The one table; see the module docs.
pub fn allows(role: Role, operation: Operation) -> bool {
    use Operation as Op;
    use Role as R;
    matches!(
        (role, operation),
        (R::Admin, _)
            | (R::Viewer | R::Operator | R::Controller, Op::Read)
            | (
                R::Operator | R::Controller,
                Op::Quarantine { force: false } | Op::Release
            )
            | (R::Controller | R::Node, Op::GetBundle)
            | (R::Controller, Op::ApplyBundle)
            | (R::Detector, Op::ReportDetection)
    )
}

/// [`allows`], as a result whose error names the roles that may.
pub fn authorize(role: Role, operation: Operation) -> Result<(), Denied> {
    if allows(role, operation) {
        return Ok(());
    }
    let needed: Vec<&str> = Role::ALL
        .into_iter()
        .filter(|candidate| allows(*candidate, operation))
        .map(Role::as_str)
        .collect();
    Err(Denied {
        role,
        what: operation.describe(),
        needed: needed.join(" or "),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table() {
        use Operation as Op;
        let all = [
            Op::Read,
            Op::Quarantine { force: false },
            Op::Quarantine { force: true },
            Op::Release,
            Op::SetMode,
            Op::GetBundle,
            Op::ApplyBundle,
            Op::ReportDetection,
        ];
        let may = |role: Role| -> Vec<Operation> {
            all.into_iter()
                .filter(|operation| allows(role, *operation))
                .collect()
        };
        assert_eq!(may(Role::Viewer), [Op::Read]);
        assert_eq!(
            may(Role::Operator),
            [Op::Read, Op::Quarantine { force: false }, Op::Release]
        );
        assert_eq!(may(Role::Admin), all);
        assert_eq!(
            may(Role::Controller),
            [
                Op::Read,
                Op::Quarantine { force: false },
                Op::Release,
                Op::GetBundle,
                Op::ApplyBundle
            ]
        );
        assert_eq!(may(Role::Node), [Op::GetBundle]);
        assert_eq!(may(Role::Detector), [Op::ReportDetection]);
    }

    #[test]
    fn a_refusal_names_what_and_who_may() {
        let denied = authorize(Role::Operator, Operation::Quarantine { force: true }).unwrap_err();
        assert_eq!(
            denied.to_string(),
            "role operator may not quarantine with --force; this needs admin (ask for a \
             certificate with that role)"
        );
        let denied = authorize(Role::Viewer, Operation::Quarantine { force: false }).unwrap_err();
        assert!(
            denied
                .to_string()
                .contains("operator or admin or controller")
        );
    }

    #[test]
    fn roles_parse_case_insensitively_and_unknown_ones_list_the_valid() {
        assert_eq!("Operator".parse::<Role>(), Ok(Role::Operator));
        let error = "root".parse::<Role>().unwrap_err();
        assert!(error.to_string().contains("viewer, operator, admin"));
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
        }
    }
}
