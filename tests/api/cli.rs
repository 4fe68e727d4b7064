//! The `find` command runs the same finder, without a server.

use crate::fake::{FakeInternet, Sites, png};
use std::process::Command;

#[tokio::test]
async fn find_prints_one_line_per_domain() {
    let mut sites = Sites::default();
    sites
        .page("cli.test", r#"<link rel=icon href=/f.png>"#)
        .file("cli.test", "/f.png", "image/png", &png(16, 16));
    sites.page("bare.test", "<html></html>");
    let internet = FakeInternet::start(sites).await;
    let resolve = internet.resolve(&[]);
    let run = |args: &[&str]| {
        let resolve = resolve.clone();
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        async move {
            tokio::task::spawn_blocking(move || {
                Command::new(env!("CARGO_BIN_EXE_favicon-finder"))
                    .arg("find")
                    .args(&args)
                    .env("FETCH_RESOLVE", resolve)
                    .env("FETCH_ALLOW_PRIVATE_NETWORKS", "true")
                    .env("FETCH_TIMEOUT_SECS", "5")
                    .env("RUST_LOG", "error")
                    .output()
                    .unwrap()
            })
            .await
            .unwrap()
        }
    };

    let output = run(&["CLI.test", "bare.test", "not a domain"]).await;
    let stdout = String::from_utf8(output.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert_eq!(lines[0], "cli.test\tsuccess\thttp://cli.test/f.png");
    assert!(
        lines[1].starts_with("bare.test\tfailed\tno_icon: "),
        "{stdout}"
    );
    assert!(lines[2].starts_with("not a domain\tinvalid\t"), "{stdout}");
    assert_eq!(
        output.status.code(),
        Some(2),
        "an invalid entry makes the exit code 2"
    );

    let output = run(&["--json", "cli.test"]).await;
    assert!(output.status.success());
    let line: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(line["status"], "success");
    assert_eq!(line["favicon_url"], "http://cli.test/f.png");
    assert_eq!(line["mime"], "image/png");
    assert_eq!(
        (line["width"].as_u64(), line["height"].as_u64()),
        (Some(16), Some(16))
    );
}

#[test]
fn logs_are_json_lines_with_log_format_json() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_favicon-finder"))
        .arg("migrate")
        .env(
            "DATABASE_URL",
            format!("sqlite://{}?mode=rwc", dir.path().join("m.db").display()),
        )
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .output()
        .unwrap();
    assert!(output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l:?}: {e}")))
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l["message"] == "migrations applied" && l["level"] == "INFO"),
        "{stderr}"
    );
}

#[test]
fn a_bad_setting_stops_start_up_naming_the_variable() {
    let output = Command::new(env!("CARGO_BIN_EXE_favicon-finder"))
        .arg("serve")
        .env("WORKER_CONCURRENCY", "lots")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains("WORKER_CONCURRENCY") && stderr.contains("lots"),
        "{stderr}"
    );
}

/// Logs written to a pipe (a file, a log collector) carry no ANSI colour codes: the run's
/// log holds its usual line, and no escape sequence.
#[test]
fn logs_to_a_pipe_have_no_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
    let output = Command::new(env!("CARGO_BIN_EXE_favicon-finder"))
        .arg("migrate")
        .env("DATABASE_URL", url)
        .env("RUST_LOG", "info")
        .env("LOG_FORMAT", "text")
        .env_remove("NO_COLOR")
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let log = String::from_utf8(output.stderr).unwrap();
    assert!(log.contains("migrations applied"), "{log}");
    assert!(
        !log.contains("\x1b["),
        "colour codes in a piped log: {log:?}"
    );
    assert!(!String::from_utf8(output.stdout).unwrap().contains("\x1b["));
}

/// `find --file` over many domains, piped: one line per domain on stdout and nothing else
/// anywhere (no progress bar, no summary), as a script expects.
#[tokio::test]
async fn find_over_a_file_prints_nothing_extra_when_piped() {
    let mut sites = Sites::default();
    let hosts: Vec<String> = (0..40).map(|n| format!("many{n}.test")).collect();
    for host in &hosts {
        sites.page(host, "<html></html>");
    }
    let internet = FakeInternet::start(sites).await;
    let resolve = internet.resolve(&[]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("domains.txt");
    std::fs::write(&file, hosts.join("\n")).unwrap();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_favicon-finder"))
            .arg("find")
            .arg("--file")
            .arg(&file)
            .env("FETCH_RESOLVE", resolve)
            .env("FETCH_ALLOW_PRIVATE_NETWORKS", "true")
            .env("FETCH_TIMEOUT_SECS", "5")
            // Logs are another matter (see `logs_to_a_pipe_have_no_colour_codes`).
            .env("RUST_LOG", "off")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8(output.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), hosts.len(), "{stdout}");
    for (line, host) in lines.iter().zip(&hosts) {
        assert!(
            line.starts_with(&format!("{host}\tfailed\tno_icon")),
            "{line}"
        );
    }
    assert_eq!(
        String::from_utf8(output.stderr).unwrap(),
        "",
        "stderr when piped"
    );
}

/// mimalloc reads its settings from the environment before `main` runs, so the binary starts
/// itself again with the one it needs (arena memory committed as it is used, and so given back
/// when freed) unless the operator chose a value.
#[test]
fn the_binary_runs_with_its_allocator_setting_unless_one_is_given() {
    const VAR: &str = "MIMALLOC_ARENA_EAGER_COMMIT";
    for (given, expected) in [(None, "0"), (Some("1"), "1")] {
        let dir = tempfile::tempdir().unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_favicon-finder"));
        command
            .arg("serve")
            .env_remove(VAR)
            .env(
                "DATABASE_URL",
                format!("sqlite://{}?mode=rwc", dir.path().join("a.db").display()),
            )
            .env("HOST", "127.0.0.1")
            .env("PORT", "0")
            .env("WORKER_CONCURRENCY", "0")
            // The app's start-up line says it is serving, after the restart.
            .env("RUST_LOG", "warn,favicon_finder::app=info")
            .stderr(std::process::Stdio::piped());
        if let Some(value) = given {
            command.env(VAR, value);
        }
        let mut child = command.spawn().unwrap();
        crate::helpers::listening_addr(child.stderr.take().unwrap());
        let child = crate::helpers::ChildGuard(child);
        let environ = std::fs::read(format!("/proc/{}/environ", child.0.id())).unwrap();
        let want = format!("{VAR}={expected}");
        assert!(
            environ.split(|b| *b == 0).any(|v| v == want.as_bytes()),
            "{want} not in the environment of the serving process (given {given:?})"
        );
    }
}
