//! The open WebSocket connections of the process against `WS_MAX_CONNECTIONS` and
//! `WS_MAX_CONNECTIONS_PER_IP`, and the tasks serving them, which shutdown waits for.

use crate::error::AppError;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::{TaskTracker, task_tracker::TaskTrackerToken};

/// Open WebSocket connections, in all and per client address, and the tasks serving them.
///
/// IPv6 clients are counted per /64, the block one host is usually given, so a client
/// cannot dodge its cap by rotating addresses within it.
pub struct WsConnections {
    max: usize,
    max_per_client: usize,
    open: Mutex<(usize, HashMap<IpAddr, usize>)>,
    /// Every connection from its upgrade to its end, so shutdown can wait for them.
    tasks: TaskTracker,
    /// Cancelled when shutdown's grace period is over: connections still open are dropped.
    abort: CancellationToken,
}

impl WsConnections {
    /// Empty counts with the two caps.
    pub fn new(max: usize, max_per_client: usize) -> Self {
        Self {
            max,
            max_per_client,
            open: Mutex::new((0, HashMap::new())),
            tasks: TaskTracker::new(),
            abort: CancellationToken::new(),
        }
    }

    /// How many connections are open (from their upgrade until their task ends).
    pub fn open(&self) -> usize {
        self.open.lock().unwrap_or_else(|e| e.into_inner()).0
    }

    /// Waits until every connection has ended (they end themselves once
    /// [`AppState::shutdown`] is cancelled); at `deadline` drops those still open and returns
    /// how many that was.
    pub async fn drain(&self, deadline: Instant) -> usize {
        self.tasks.close();
        if tokio::time::timeout_at(deadline, self.tasks.wait())
            .await
            .is_ok()
        {
            return 0;
        }
        let cut = self.tasks.len();
        self.abort.cancel();
        // A connection still between its 101 answer and its task cannot see the abort; it
        // sees the shutdown as soon as it starts, so this wait is short.
        let _ = tokio::time::timeout(Duration::from_secs(1), self.tasks.wait()).await;
        cut
    }

    /// Takes a place for a new connection from `ip`, or says which cap is full.
    pub(super) fn acquire(self: &Arc<Self>, ip: IpAddr) -> Result<WsPermit, AppError> {
        let client = client_key(ip);
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let from_client = open.1.get(&client).copied().unwrap_or(0);
        if from_client >= self.max_per_client {
            return Err(AppError::TooManyConnections {
                message: format!(
                    "this address already has {from_client} open WebSocket connections, the most allowed (WS_MAX_CONNECTIONS_PER_IP); close one first"
                ),
                per_client: true,
            });
        }
        if open.0 >= self.max {
            return Err(AppError::TooManyConnections {
                message: format!(
                    "the server already has {} open WebSocket connections, the most it accepts (WS_MAX_CONNECTIONS); try again later",
                    open.0
                ),
                per_client: false,
            });
        }
        open.0 += 1;
        *open.1.entry(client).or_default() += 1;
        Ok(WsPermit {
            owner: self.clone(),
            client,
            _task: self.tasks.token(),
        })
    }
}

/// The address a client is counted under (connections, subscriptions): IPv4 as is, IPv6 by
/// its /64.
pub(crate) fn client_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(bits.into())
        }
        v4 => v4,
    }
}

/// One open WebSocket's place in the counts and in the tasks shutdown waits for, given back
/// when the connection ends.
pub struct WsPermit {
    owner: Arc<WsConnections>,
    client: IpAddr,
    /// Counts as a running task until dropped.
    _task: TaskTrackerToken,
}

impl WsPermit {
    /// Cancelled when shutdown's grace period is over: the connection must be dropped.
    pub(super) fn abort(&self) -> CancellationToken {
        self.owner.abort.clone()
    }
}

impl Drop for WsPermit {
    fn drop(&mut self) {
        let mut open = self.owner.open.lock().unwrap_or_else(|e| e.into_inner());
        open.0 = open.0.saturating_sub(1);
        if let Some(n) = open.1.get_mut(&self.client) {
            *n -= 1;
            if *n == 0 {
                open.1.remove(&self.client);
            }
        }
    }
}
