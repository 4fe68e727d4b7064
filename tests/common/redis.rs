//! A Redis server of a test's own (`redis-server` from `PATH`), so stopping or restarting it
//! disturbs nothing else; shared by the test binaries that stop Redis.

#![allow(
    dead_code,
    reason = "each test binary uses a different part of this module"
)]

use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A `redis-server` child on a port of its own, killed when dropped.
pub struct OwnRedis {
    port: u16,
    child: Option<Server>,
}

/// The server process; killed and reaped when dropped.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl OwnRedis {
    fn start(port: u16) -> Option<Self> {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .spawn()
            .ok()?;
        Some(Self {
            port,
            child: Some(Server(child)),
        })
    }

    /// Starts a server on a port no one holds. Ports are tried at random until this server is
    /// the one answering on it: a port found by binding and dropping a socket could be taken
    /// by another test before redis-server binds it.
    pub fn start_on_free_port() -> Option<Self> {
        for _ in 0..20 {
            let port = rand::random_range(20_000..60_000);
            let mut redis = Self::start(port)?;
            if redis.answers() {
                return Some(redis);
            }
        }
        None
    }

    /// Waits (5 s at most) until this very process answers on the port: `INFO server` names
    /// its process id. False once it has exited (the port was taken).
    fn answers(&mut self) -> bool {
        use std::io::{Read, Write};
        let pid = format!("process_id:{}", self.pid());
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while std::time::Instant::now() < deadline {
            if let Some(child) = self.child.as_mut()
                && child.0.try_wait().ok().flatten().is_some()
            {
                return false;
            }
            if let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", self.port)) {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
                let mut info = [0u8; 4096];
                if stream.write_all(b"INFO server\r\n").is_ok()
                    && let Ok(n) = stream.read(&mut info)
                    && String::from_utf8_lossy(&info[..n]).contains(&pid)
                {
                    return true;
                }
            }
            // Wall-clock: a redis-server process coming up.
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// The server's answer to `INFO section` (e.g. `commandstats`), as text.
    pub fn info(&self, section: &str) -> String {
        self.inline(&format!("INFO {section}"))
    }

    /// The values of the answer to an inline `command` whose answer is a flat array of
    /// strings (`TIME`, `ZRANGE … WITHSCORES`), in order.
    pub fn strings(&self, command: &str) -> Vec<String> {
        self.inline(command)
            .split("\r\n")
            .filter(|l| !l.is_empty() && !l.starts_with(['*', '$']))
            .map(str::to_owned)
            .collect()
    }

    /// The server's whole answer to one inline command (one read: small answers only).
    fn inline(&self, command: &str) -> String {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        stream
            .write_all(format!("{command}\r\n").as_bytes())
            .unwrap();
        let mut out = vec![0u8; 64 * 1024];
        let n = stream.read(&mut out).unwrap();
        String::from_utf8_lossy(&out[..n]).into_owned()
    }

    /// The server's clock (`TIME`), in milliseconds.
    pub fn now_ms(&self) -> u64 {
        let time = self.strings("TIME");
        time[0].parse::<u64>().unwrap() * 1000 + time[1].parse::<u64>().unwrap() / 1000
    }

    /// The server's process id (while it runs).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the server runs").0.id()
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server; the port stays this test's for [`OwnRedis::restart`].
    pub fn stop(&mut self) {
        self.child = None;
    }

    pub fn restart(&mut self) {
        *self = Self::start(self.port).expect("redis-server restarts");
    }
}
