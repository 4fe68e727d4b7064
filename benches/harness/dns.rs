//! A DNS server on loopback for the `features` scenario: every name's A record is 127.0.0.1,
//! and no name has an AAAA record, so the service's own resolver (hickory, through
//! `FETCH_DNS_SERVERS`) does a real lookup per site instead of a `FETCH_RESOLVE` rule.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Result;
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

/// The server: its address for `FETCH_DNS_SERVERS`, and the queries it answered.
pub(crate) struct FakeDns {
    pub(crate) addr: std::net::SocketAddr,
    pub(crate) queries: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl Drop for FakeDns {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeDns {
    pub(crate) async fn start() -> Result<Self> {
        let socket = UdpSocket::bind("127.0.0.1:0").await?;
        let addr = socket.local_addr()?;
        let queries = Arc::new(AtomicU64::new(0));
        let counted = queries.clone();
        let task = tokio::spawn(async move {
            let mut buf = [0u8; 1500];
            while let Ok((len, from)) = socket.recv_from(&mut buf).await {
                if let Some(answer) = answer(&buf[..len]) {
                    counted.fetch_add(1, Ordering::Relaxed);
                    let _ = socket.send_to(&answer, from).await;
                }
            }
        });
        Ok(Self {
            addr,
            queries,
            task,
        })
    }
}

/// The answer to one query of one question: A 127.0.0.1 for an A question, no record for
/// any other type; `None` for what is not a query.
fn answer(query: &[u8]) -> Option<Vec<u8>> {
    if query.len() < 12 || query[2] & 0x80 != 0 || u16::from_be_bytes([query[4], query[5]]) != 1 {
        return None;
    }
    // The question: labels up to the root, then type and class.
    let mut i = 12;
    while *query.get(i)? != 0 {
        i += 1 + usize::from(query[i]);
    }
    let end = i + 5;
    let question = query.get(12..end)?;
    let qtype = u16::from_be_bytes([query[i + 1], query[i + 2]]);
    let a = qtype == 1;
    let mut out = Vec::with_capacity(end + 16);
    out.extend_from_slice(&query[..2]);
    // QR, the query's opcode and RD, then RA; NOERROR.
    out.push(0x80 | (query[2] & 0x79));
    out.push(0x80);
    // One answer for A; for any other type none, and an SOA in the authority section, as a
    // real server sends with "no such record", so that resolvers may cache the absence.
    out.extend_from_slice(&[0, 1, 0, u8::from(a), 0, u8::from(!a), 0, 0]);
    out.extend_from_slice(question);
    if a {
        // A pointer to the question's name, A, IN, TTL 300, 4 bytes of address.
        out.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 1, 44, 0, 4, 127, 0, 0, 1]);
    } else {
        // The root's SOA: names `.` and `.`, then serial, refresh, retry, expire, minimum 300.
        out.extend_from_slice(&[0, 0, 6, 0, 1, 0, 0, 1, 44, 0, 22, 0, 0]);
        out.extend_from_slice(&[
            0, 0, 0, 1, 0, 0, 14, 16, 0, 0, 7, 8, 0, 9, 58, 128, 0, 0, 1, 44,
        ]);
    }
    Some(out)
}
