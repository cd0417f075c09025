//! Mutual-TLS gRPC channels to fleet members (agents, the controller), cached per (member,
//! address). The member's certificate must name it: a member is reached as itself or not at all.

use std::collections::HashMap;
use std::time::Duration;

use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

/// See the module docs.
pub struct Channels {
    ca: Certificate,
    identity: Identity,
    connect_timeout: Duration,
    cache: tokio::sync::Mutex<HashMap<(String, String), Channel>>,
}

impl Channels {
    /// As the holder of `cert_pem` / `key_pem`, trusting members the fleet CA `ca_pem` issued.
    pub fn new(
        ca_pem: &[u8],
        cert_pem: &[u8],
        key_pem: &[u8],
        connect_timeout: Duration,
    ) -> Channels {
        Channels {
            ca: Certificate::from_pem(ca_pem),
            identity: Identity::from_pem(cert_pem, key_pem),
            connect_timeout,
            cache: Default::default(),
        }
    }

    /// A channel to `member` at `address` (`host:port`), connected on first use.
    pub async fn get(&self, member: &str, address: &str) -> Result<Channel, String> {
        let key = (member.to_string(), address.to_string());
        if let Some(channel) = self.cache.lock().await.get(&key) {
            return Ok(channel.clone());
        }
        let tls = ClientTlsConfig::new()
            .ca_certificate(self.ca.clone())
            .identity(self.identity.clone())
            .domain_name(member);
        let channel = Endpoint::from_shared(format!("https://{address}"))
            .map_err(|error| error.to_string())?
            .connect_timeout(self.connect_timeout)
            .tcp_nodelay(true)
            .tls_config(tls)
            .map_err(|error| error.to_string())?
            .connect()
            .await
            .map_err(|error| format!("cannot connect to {member} at {address}: {error}"))?;
        self.cache.lock().await.insert(key, channel.clone());
        Ok(channel)
    }

    /// Drops the cached channel to `member` at `address` (after a failed call), so the next
    /// call connects again.
    pub async fn forget(&self, member: &str, address: &str) {
        self.cache
            .lock()
            .await
            .remove(&(member.to_string(), address.to_string()));
    }
}
