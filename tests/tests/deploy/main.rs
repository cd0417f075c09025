//! The deployment files in `deploy/` checked against the project itself: every metric the
//! Prometheus alerts use exists, and (see [`kubernetes`]) the manifests deserialize into the
//! Kubernetes API types and name only images, ports, paths and flags the project has.

mod alerts;
mod kubernetes;
