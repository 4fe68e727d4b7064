//! The report: the figures appended to `BENCHMARKS.md`.

use super::*;

pub(crate) fn append_report(ctx: &Ctx, started: &str, load0: &str, secs: f64) -> Result<()> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("BENCHMARKS.md");
    let mut s = String::new();
    if !path.exists() {
        s.push_str("# Benchmarks\n\nFigures appended by `benches/harness.rs`.\n");
    }
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let commit = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let _ = write!(
        s,
        "\n## Run of {started}\n\n`cargo bench --bench harness -- {}`\n\n\
         nproc {cores}; commit {commit} (plus the working tree); load average at start {load0}, at end {}; {:.0} s in all; {} runs per figure unless stated.\n\n\
         | figure | measured (median) | target | result |\n| --- | --- | --- | --- |\n",
        ctx.opts.args.join(" "),
        loadavg(),
        secs,
        ctx.opts.runs,
    );
    for r in &ctx.rows {
        let verdict = match r.pass {
            Some(true) => "pass",
            Some(false) => "**FAIL**",
            None => "-",
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {verdict} |",
            r.figure,
            r.value.replace('|', "\\|"),
            r.target
        );
    }
    for n in &ctx.notes {
        let _ = write!(s, "\n{n}\n");
    }
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)?;
    f.write_all(s.as_bytes())?;
    println!("appended to {}", path.display());
    Ok(())
}
