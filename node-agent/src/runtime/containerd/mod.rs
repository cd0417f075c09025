//! The containerd backend (issue 2/11): being written; nothing here yet.
