use super::*;
use hickory_resolver::proto::op::{Message, MessageType};
use hickory_resolver::proto::rr::{RData, Record, RecordType, rdata::A};
use std::time::Instant;
use tokio::net::UdpSocket;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn blocklist() {
    for bad in [
        "127.0.0.1",
        "127.8.9.10",
        "10.1.2.3",
        "172.16.0.1",
        "172.31.255.255",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "100.127.255.254",
        "0.0.0.0",
        "0.1.2.3",
        "255.255.255.255",
        "224.0.0.1",
        "240.0.0.1",
        "192.0.2.5",
        "198.51.100.7",
        "203.0.113.9",
        "198.18.0.1",
        "::",
        "::1",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "::127.0.0.1",
        "fc00::1",
        "fd12:3456::1",
        "fe80::1",
        "ff02::1",
        "2001:db8::1",
        "64:ff9b::7f00:1",
        "2002:7f00:1::1",
    ] {
        assert!(!is_public(ip(bad)), "{bad} must be blocked");
    }
    for good in [
        "93.184.216.34",
        "8.8.8.8",
        "1.1.1.1",
        "172.32.0.1",
        "100.128.0.1",
        "2606:4700::1111",
        "::ffff:8.8.8.8",
        "64:ff9b::808:808",
        "2002:808:808::1",
    ] {
        assert!(is_public(ip(good)), "{good} must be allowed");
    }
}

#[test]
fn local_nat64_is_refused_whatever_it_embeds() {
    // 8.8.8.8 at the /96 position and at the /48 position: the prefix itself is refused.
    for bad in [
        "64:ff9b:1::808:808",
        "64:ff9b:1:808:808::",
        "64:ff9b:1:ffff::1",
    ] {
        assert!(!is_public(ip(bad)), "{bad} must be blocked");
    }
    // Just outside the /48 (and outside the well-known /96) is ordinary address space.
    assert!(is_public(ip("64:ff9b:2::808:808")));
}

#[test]
fn teredo_is_refused_whatever_it_embeds() {
    // Server 65.54.227.120, client 8.8.8.8 obfuscated (XOR 0xffff..): both public.
    for bad in [
        "2001:0:4136:e378:8000:63bf:f7f7:f7f7",
        "2001::1",
        "2001:0:ffff::",
    ] {
        assert!(!is_public(ip(bad)), "{bad} must be blocked");
    }
    // 2001:4860::/32 (a real allocation) is next door and stays public.
    assert!(is_public(ip("2001:4860:4860::8888")));
}

pub(crate) fn cfg(allow: bool, rules: Vec<ResolveRule>, dns: &[SocketAddr]) -> FinderConfig {
    FinderConfig {
        timeout: Duration::from_secs(5),
        allow_private_networks: allow,
        resolve: rules,
        user_agent: "t".into(),
        dns_servers: dns.to_vec(),
        ..FinderConfig::default()
    }
}

#[tokio::test]
async fn rules_and_guard() {
    let rules = vec![
        ResolveRule {
            host: "a.test".into(),
            addr: "127.0.0.1:8080".parse().unwrap(),
        },
        ResolveRule {
            host: "*".into(),
            addr: "93.184.216.34:443".parse().unwrap(),
        },
    ];
    let r = GuardedResolver::new(&cfg(false, rules.clone(), &[])).unwrap();
    let blocked = r.lookup("a.test").await.unwrap_err();
    assert!(matches!(blocked, ResolveError::Blocked { .. }));
    assert!(!blocked.to_string().contains("127.0.0.1"), "{blocked}");
    assert_eq!(
        r.lookup("B.test").await.unwrap(),
        ["93.184.216.34:443".parse().unwrap()]
    );
    let open = GuardedResolver::new(&cfg(true, rules, &[])).unwrap();
    assert_eq!(
        open.lookup("a.test").await.unwrap(),
        ["127.0.0.1:8080".parse().unwrap()]
    );
    let none = GuardedResolver::new(&cfg(true, vec![], &[])).unwrap();
    assert!(matches!(
        none.lookup("nothing.invalid").await,
        Err(ResolveError::NotFound(_))
    ));
    let guarded = GuardedResolver::new(&cfg(false, vec![], &[])).unwrap();
    assert!(matches!(
        guarded.lookup("localhost").await,
        Err(ResolveError::Blocked { .. })
    ));
}

#[test]
fn dns_servers_parse_or_name_the_bad_entry() {
    assert_eq!(
        parse_dns_servers(" 127.0.0.1:53 , [::1]:5353,").unwrap(),
        [
            "127.0.0.1:53".parse::<SocketAddr>().unwrap(),
            "[::1]:5353".parse().unwrap()
        ]
    );
    let err = parse_dns_servers("127.0.0.1:53,ns1.example").unwrap_err();
    assert!(err.contains("ns1.example"), "{err}");
    assert!(parse_dns_servers("127.0.0.1").is_err());
}

/// A name server on loopback that reads queries and never answers.
async fn silent_dns() -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        while socket.recv_from(&mut buf).await.is_ok() {}
    });
    addr
}

/// A name server on loopback that answers every A query with 127.0.0.1, every other query
/// with an empty NOERROR, and counts the queries it saw.
async fn loopback_dns() -> (SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let seen = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = seen.clone();
    tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        while let Ok((n, from)) = socket.recv_from(&mut buf).await {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let Ok(query) = Message::from_vec(&buf[..n]) else {
                continue;
            };
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
                    answer.add_answer(Record::from_rdata(
                        q.name().clone(),
                        60,
                        RData::A(A(Ipv4Addr::LOCALHOST)),
                    ));
                }
            }
            let _ = socket.send_to(&answer.to_vec().unwrap(), from).await;
        }
    });
    (addr, seen)
}

#[tokio::test]
async fn dns_answers_are_guarded() {
    let (dns, seen) = loopback_dns().await;
    let open = GuardedResolver::new(&cfg(true, vec![], &[dns])).unwrap();
    assert_eq!(
        open.lookup("icons.example").await.unwrap(),
        ["127.0.0.1:0".parse().unwrap()],
        "hickory asked the fake name server"
    );
    assert!(seen.load(std::sync::atomic::Ordering::SeqCst) >= 1);
    let guarded = GuardedResolver::new(&cfg(false, vec![], &[dns])).unwrap();
    let err = guarded.lookup("icons.example").await.unwrap_err();
    assert_eq!(err.category(), ErrorCategory::Blocked, "{err}");
    assert_eq!(
        err.to_string(),
        "icons.example resolves to a non-public address"
    );
}

#[test]
fn silent_name_servers_hold_no_thread() {
    // One worker thread and one blocking thread: lookups that used the blocking pool
    // (getaddrinfo) would queue behind each other here, and the FETCH_RESOLVE name and the
    // answering name server below would wait for all of them.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(1)
        .build()
        .unwrap();
    rt.block_on(async {
        let silent = silent_dns().await;
        let (answering, _) = loopback_dns().await;
        let mut config = cfg(
            true,
            vec![ResolveRule {
                host: "pinned.example".into(),
                addr: "127.0.0.1:8080".parse().unwrap(),
            }],
            &[silent],
        );
        config.dns_timeout = Duration::from_millis(600);
        config.dns_max_inflight = 32;
        let r = GuardedResolver::new(&config).unwrap();
        let started = Instant::now();
        let stuck: Vec<_> = (0..200)
            .map(|i| {
                let r = r.clone();
                tokio::spawn(async move { r.lookup(&format!("silent{i}.example")).await })
            })
            .collect();
        tokio::task::yield_now().await;
        // Rules win before any DNS, whatever the name servers are doing.
        let pinned = Instant::now();
        assert_eq!(
            r.lookup("pinned.example").await.unwrap(),
            ["127.0.0.1:8080".parse().unwrap()]
        );
        assert!(pinned.elapsed() < Duration::from_millis(100));
        // Another resolver on the same runtime still gets answers meanwhile.
        let other = GuardedResolver::new(&cfg(true, vec![], &[answering])).unwrap();
        let asked = Instant::now();
        assert!(other.lookup("icons.example").await.is_ok());
        assert!(asked.elapsed() < Duration::from_millis(500), "{asked:?}");
        for task in stuck {
            let err = task.await.unwrap().unwrap_err();
            assert_eq!(err.category(), ErrorCategory::DnsTransient, "{err}");
        }
        // Every lookup, including those that waited for one of the 32 permits, ended
        // within its own timeout (plus scheduling slack), not 200 / 32 timeouts later.
        let took = started.elapsed();
        assert!(took < Duration::from_millis(600 + 400), "{took:?}");
    });
}
