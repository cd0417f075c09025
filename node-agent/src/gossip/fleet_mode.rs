//! Following the controller's fleet-wide switch (`fleet_mode`, DESIGN.md §4): every interval the
//! newest switch any controller gossips is compared with the last one followed (kept in the
//! store); a newer one sets this agent's mode (audited like `lazaretctl mode`, with the
//! controller's operator as the actor). The switch outlives the controller: it is stored, and put
//! back in force at every start, until a newer one arrives (or an operator sets the mode here).

use std::sync::Arc;
use std::time::Duration;

use lazaret_core::gossip::FleetModeValue;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::Gossip;
use crate::enforce::engine::EnforcerHandle;
use crate::store::Store;

/// Follows the switch until `shutdown`.
pub async fn follow(
    gossip: Arc<Gossip>,
    enforcer: EnforcerHandle,
    store: Store,
    interval: Duration,
    shutdown: CancellationToken,
) {
    let mut followed = match read(&store).await {
        Some(stored) => {
            apply(&enforcer, &stored, "restored at start").await;
            Some(stored)
        }
        None => None,
    };
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = ticker.tick() => {}
        }
        let Some(newest) = gossip.fleet_mode().await else {
            continue;
        };
        if followed
            .as_ref()
            .is_some_and(|followed| followed.since_unix_ms >= newest.since_unix_ms)
        {
            continue;
        }
        if apply(&enforcer, &newest, "from the controller").await {
            let (store, value) = (store.clone(), newest.clone());
            match tokio::task::spawn_blocking(move || store.put_fleet_mode(&value)).await {
                Ok(Ok(())) => {}
                _ => warn!("cannot store the fleet-wide switch; it is in force until a restart"),
            }
            followed = Some(newest);
        }
    }
}

async fn read(store: &Store) -> Option<FleetModeValue> {
    let store = store.clone();
    match tokio::task::spawn_blocking(move || store.fleet_mode()).await {
        Ok(Ok(mode)) => mode,
        _ => {
            warn!("cannot read the stored fleet-wide switch");
            None
        }
    }
}

/// Sets the agent's mode to `mode`'s; whether it took.
async fn apply(enforcer: &EnforcerHandle, mode: &FleetModeValue, how: &str) -> bool {
    let reason = format!("fleet-wide switch {how}: {}", mode.reason);
    match enforcer
        .set_mode(mode.audit_only, &mode.actor, &reason)
        .await
    {
        Ok(()) => {
            info!(audit_only = mode.audit_only, actor = %mode.actor, how, "fleet-wide mode followed");
            true
        }
        Err(error) => {
            warn!(%error, "cannot follow the fleet-wide switch");
            false
        }
    }
}
