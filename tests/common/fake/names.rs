//! The fake internet's name servers: one that never answers, and one that answers every A
//! query with an address a test chooses (and may change while it runs).

use hickory_resolver::proto::op::{Message, MessageType};
use hickory_resolver::proto::rr::rdata::{A, SOA};
use hickory_resolver::proto::rr::{Name, RData, Record, RecordType};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

/// A name server of the fake internet, on loopback, counting the queries it reads.
pub struct NameServer {
    pub addr: SocketAddr,
    queries: Arc<AtomicUsize>,
    /// The A answer, as bits, for [`NameServer::set_answer`]; unused by a silent server.
    answer: Arc<AtomicU32>,
}

impl NameServer {
    /// Reads every query and never answers, over UDP or TCP (its TCP connections are held
    /// open and silent), so neither of a resolver's transports gets a reply.
    pub async fn silent() -> Self {
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        let udp = tokio::net::UdpSocket::bind(addr).await.unwrap();
        let queries = Arc::new(AtomicUsize::new(0));
        let seen = queries.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 1500];
            while udp.recv_from(&mut buf).await.is_ok() {
                seen.fetch_add(1, Ordering::SeqCst);
            }
        });
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((sock, _)) = tcp.accept().await {
                held.push(sock);
            }
        });
        Self {
            addr,
            queries,
            answer: Arc::default(),
        }
    }

    /// Answers every A query with 127.0.0.1 (and any other with an empty NOERROR and the
    /// root's SOA, which says how long the absence may be cached), as a hostile or
    /// misconfigured zone would. Answers may be cached for 60 s.
    pub async fn loopback() -> Self {
        Self::serve(Ipv4Addr::LOCALHOST, 60).await
    }

    /// Answers every A query with `ip` until [`NameServer::set_answer`] changes it, other
    /// queries as [`NameServer::loopback`] does. Every record has TTL 0, so a resolver's cache
    /// keeps nothing and its next lookup sees a change at once (a name re-pointed inside
    /// between two lookups).
    pub async fn answering(ip: Ipv4Addr) -> Self {
        Self::serve(ip, 0).await
    }

    /// From now on, A queries are answered with `ip`.
    pub fn set_answer(&self, ip: Ipv4Addr) {
        self.answer.store(ip.to_bits(), Ordering::SeqCst);
    }

    /// Queries read so far.
    pub fn queries(&self) -> usize {
        self.queries.load(Ordering::SeqCst)
    }

    /// A UDP name server answering with `ip` (until changed) and `ttl`.
    async fn serve(ip: Ipv4Addr, ttl: u32) -> Self {
        let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = udp.local_addr().unwrap();
        let queries = Arc::new(AtomicUsize::new(0));
        let answer = Arc::new(AtomicU32::new(ip.to_bits()));
        let (seen, current) = (queries.clone(), answer.clone());
        tokio::spawn(async move {
            let mut buf = [0u8; 1500];
            while let Ok((n, from)) = udp.recv_from(&mut buf).await {
                seen.fetch_add(1, Ordering::SeqCst);
                let Ok(query) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                let ip = Ipv4Addr::from_bits(current.load(Ordering::SeqCst));
                let _ = udp.send_to(&reply(&query, ip, ttl), from).await;
            }
        });
        Self {
            addr,
            queries,
            answer,
        }
    }
}

/// The answer to `query`: `ip` for each A question, the root's SOA (negative caching for
/// `ttl`) for any other; every record lives `ttl` seconds.
fn reply(query: &Message, ip: Ipv4Addr, ttl: u32) -> Vec<u8> {
    let mut answer = Message::new();
    answer
        .set_id(query.id())
        .set_message_type(MessageType::Response)
        .set_op_code(query.op_code())
        .set_recursion_desired(query.recursion_desired())
        .set_recursion_available(true);
    for q in query.queries() {
        answer.add_query(q.clone());
        if q.query_type() == RecordType::A {
            answer.add_answer(Record::from_rdata(q.name().clone(), ttl, RData::A(A(ip))));
        } else {
            let soa = SOA::new(Name::root(), Name::root(), 1, 3600, 600, 86400, ttl);
            answer.add_name_server(Record::from_rdata(Name::root(), ttl, RData::SOA(soa)));
        }
    }
    answer.to_vec().unwrap()
}
