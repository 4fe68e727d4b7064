//! The connection pool: a site's page and its icon share one connection, and that connection
//! does not outlive the site by much (issue 29: idle connections were most of the memory
//! per domain in flight, BENCHMARKS.md).

use super::*;
use crate::finder::clock::Deadline;
use crate::finder::fetch::Fetcher;

/// When the client closed each connection the server accepted (`None`: still open).
type Closings = Arc<Mutex<Vec<Option<Instant>>>>;

/// A keep-alive server answering every request with a small 200.
async fn keep_alive_server() -> (u16, Closings) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let closings = Closings::default();
    let seen = closings.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let at = {
                let mut v = seen.lock().unwrap();
                v.push(None);
                v.len() - 1
            };
            let seen = seen.clone();
            tokio::spawn(async move {
                let (mut buf, mut tmp) = (Vec::new(), [0u8; 4096]);
                while let Ok(n @ 1..) = sock.read(&mut tmp).await {
                    buf.extend_from_slice(&tmp[..n]);
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..end + 4);
                        let answer = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
                        let _ = sock.write_all(answer.as_bytes()).await;
                    }
                }
                seen.lock().unwrap()[at] = Some(Instant::now());
            });
        }
    });
    (port, closings)
}

#[tokio::test]
async fn a_sites_connection_serves_its_icon_then_closes_soon() {
    let (port, closings) = keep_alive_server().await;
    let f = Fetcher::new(&config(port, true, 5000)).unwrap();
    let deadline = Deadline::start(Duration::from_secs(5), Duration::from_secs(5));
    for path in ["/", "/favicon.png"] {
        let url = Url::parse(&format!("http://site.test{path}")).unwrap();
        let mut opened = f
            .open(url, 0, false, Duration::from_secs(5), &deadline)
            .await
            .unwrap();
        Fetcher::read_capped(&mut opened, 1024, |_| true)
            .await
            .unwrap();
    }
    let done = Instant::now();
    assert_eq!(
        closings.lock().unwrap().len(),
        1,
        "the page's connection serves its icon"
    );
    // Idle connections are reaped every max(idle timeout, 90 ms): this one closed after about
    // 0.1 s at 100 ms, and after 0.5 s at the former 500 ms.
    let limit = Duration::from_millis(350);
    loop {
        if let Some(at) = closings.lock().unwrap()[0] {
            assert!(at - done < limit, "closed {:?} after", at - done);
            break;
        }
        assert!(
            done.elapsed() < limit,
            "the idle connection is still open {limit:?} after the site's last answer"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The fetcher (and its pool) lives until here: dropping it would close the connection.
    drop(f);
}
