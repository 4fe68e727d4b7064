use super::*;

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
