//! SHA-256 of executables, each file hashed once: the cache key is what identifies one version
//! of a file (device, inode, size, modification time), read through `/proc/PID/exe`, which
//! reaches the file inside the container's mount namespace (even one deleted since it started).

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Files remembered before the cache starts over (a bound on memory, not a working-set guess:
/// a host rarely runs this many distinct executables).
const MAX_ENTRIES: usize = 16_384;

/// One version of one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct FileKey {
    dev: u64,
    inode: u64,
    size: u64,
    mtime: i64,
    mtime_nsec: i64,
}

/// See the module docs.
#[derive(Debug, Default)]
pub struct ExeHashes {
    /// `None`: too large to hash, or unreadable.
    known: HashMap<FileKey, Option<String>>,
    /// Files read and hashed (cache misses), for the scan's metrics and tests.
    pub hashed: u64,
}

impl ExeHashes {
    /// The SHA-256 (lowercase hex) of the file `path` leads to, hashed only when this version of
    /// it has not been; `None` when it cannot be read or is larger than `max_bytes`.
    pub fn sha256(&mut self, path: &Path, max_bytes: u64) -> Option<String> {
        let metadata = std::fs::metadata(path).ok()?;
        let key = FileKey {
            dev: metadata.dev(),
            inode: metadata.ino(),
            size: metadata.size(),
            mtime: metadata.mtime(),
            mtime_nsec: metadata.mtime_nsec(),
        };
        if let Some(known) = self.known.get(&key) {
            return known.clone();
        }
        let hash = (key.size <= max_bytes).then(|| hash_file(path)).flatten();
        self.hashed += 1;
        if self.known.len() >= MAX_ENTRIES {
            self.known.clear();
        }
        self.known.insert(key, hash.clone());
        hash
    }
}

fn hash_file(path: &Path) -> Option<String> {
    let mut file = File::open(path).ok()?;
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        match file.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => context.update(&buffer[..read]),
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return None,
        }
    }
    Some(hex::encode(context.finish()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_hashed_once_per_version() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tool");
        std::fs::write(&path, b"abc").unwrap();
        let mut hashes = ExeHashes::default();
        let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(hashes.sha256(&path, 1024).as_deref(), Some(abc));
        assert_eq!(hashes.sha256(&path, 1024).as_deref(), Some(abc));
        assert_eq!(hashes.hashed, 1, "the second look is the cache's");

        // A new version (another size and modification time) is hashed again.
        std::fs::write(&path, b"abcd").unwrap();
        let file = std::fs::File::options().write(true).open(&path).unwrap();
        file.set_modified(std::time::SystemTime::UNIX_EPOCH)
            .unwrap();
        let changed = hashes.sha256(&path, 1024).unwrap();
        assert_ne!(changed, abc);
        assert_eq!(hashes.hashed, 2);

        assert_eq!(hashes.sha256(&dir.path().join("missing"), 1024), None);
        let large = dir.path().join("large");
        std::fs::write(&large, vec![0u8; 2048]).unwrap();
        assert_eq!(hashes.sha256(&large, 1024), None, "over the size bound");
    }
}
