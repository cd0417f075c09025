//! The policy directories the agent enforces, re-read on change (`lazaret-agent run
//! --policy-dir DIR`, until signed bundles arrive in [6/11]).
//!
//! Every `policies.reload_interval` the files are read again ([`files::read_sources`]: every
//! `*.yaml`/`*.yml` directly in each directory) and compared with the last set read. Reading a
//! few kilobytes is cheaper than it sounds, and unlike file notifications it sees every way a file
//! changes: an editor's rename, a Kubernetes ConfigMap's symlink swap, a bind mount replaced.
//!
//! A changed set is loaded whole ([`PolicySet::load`]): if any file is bad, or the directory
//! cannot be read, the change is [`Reload::Rejected`] with every error and the policies in force
//! stay; the same error is reported once, not at every check. Blocking: run it on the blocking
//! pool.

use std::path::PathBuf;

use lazaret_core::policy::{PolicySet, PolicySource, files};

/// What a check found.
#[derive(Debug)]
pub enum Reload {
    /// The files are as they were (or as they were at the last rejection).
    Unchanged,
    /// The files changed and load: enforce these from now on.
    Applied(PolicySet),
    /// The files changed and do not load; the previous policies stay in force.
    Rejected(String),
}

/// The policy files being followed. See the module docs.
#[derive(Debug)]
pub struct PolicyFiles {
    dirs: Vec<PathBuf>,
    /// The sources of the last check (applied or rejected), or the read error's text.
    last: Result<Vec<PolicySource>, String>,
}

impl PolicyFiles {
    /// Follows `dirs`, whose current files are taken as the ones in force.
    pub fn new(dirs: Vec<PathBuf>) -> Self {
        let last = read(&dirs);
        PolicyFiles { dirs, last }
    }

    /// Reads the files again; see [`Reload`].
    pub fn check(&mut self) -> Reload {
        let current = read(&self.dirs);
        if current == self.last {
            return Reload::Unchanged;
        }
        self.last = current.clone();
        match current.and_then(|sources| PolicySet::load(&sources).map_err(|e| e.to_string())) {
            Ok(set) => Reload::Applied(set),
            Err(errors) => Reload::Rejected(errors),
        }
    }
}

fn read(dirs: &[PathBuf]) -> Result<Vec<PolicySource>, String> {
    files::read_sources(dirs).map_err(|errors| errors.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "apiVersion: lazaret.dev/v1\nkind: Policy\nname: no-sys-admin\n\
                        rules: [{check: privileged}]\nactions: [pause]\n";

    fn names(set: &PolicySet) -> Vec<String> {
        set.policies
            .iter()
            .map(|policy| policy.name.clone())
            .collect()
    }

    #[test]
    fn a_change_is_applied_a_bad_one_rejected_once_and_a_fix_applied_again() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.yaml"), GOOD).unwrap();
        let mut files = PolicyFiles::new(vec![dir.path().to_path_buf()]);
        assert!(matches!(files.check(), Reload::Unchanged));

        let second = GOOD.replace("no-sys-admin", "second");
        std::fs::write(dir.path().join("b.yml"), &second).unwrap();
        match files.check() {
            Reload::Applied(set) => assert_eq!(names(&set), ["no-sys-admin", "second"]),
            other => panic!("expected the new set, got {other:?}"),
        }
        assert!(matches!(files.check(), Reload::Unchanged));

        // A bad edit: rejected with the file and line, then not reported again.
        std::fs::write(dir.path().join("b.yml"), second.replace("pause", "freeze")).unwrap();
        match files.check() {
            Reload::Rejected(errors) => {
                assert!(errors.contains("b.yml:"), "{errors}");
                assert!(errors.contains("freeze"), "{errors}");
            }
            other => panic!("expected a rejection, got {other:?}"),
        }
        assert!(matches!(files.check(), Reload::Unchanged));

        // Fixed by removing the file: applied.
        std::fs::remove_file(dir.path().join("b.yml")).unwrap();
        match files.check() {
            Reload::Applied(set) => assert_eq!(names(&set), ["no-sys-admin"]),
            other => panic!("expected the fixed set, got {other:?}"),
        }
    }

    #[test]
    fn a_vanished_directory_is_rejected_not_an_empty_set() {
        let dir = tempfile::tempdir().unwrap();
        let policies = dir.path().join("policies");
        std::fs::create_dir(&policies).unwrap();
        std::fs::write(policies.join("a.yaml"), GOOD).unwrap();
        let mut files = PolicyFiles::new(vec![policies.clone()]);
        std::fs::remove_dir_all(&policies).unwrap();
        assert!(matches!(files.check(), Reload::Rejected(_)));
    }
}
