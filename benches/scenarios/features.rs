//! The `features` scenario (issue 29): what each feature of the round before costs alone, on
//! the same bulk plain-HTTP job, runs interleaved: the icon store (`ICON_STORE=off` against
//! `chosen`), and the async resolver (hickory asking a DNS server on loopback for every site,
//! against `FETCH_RESOLVE` rules that need no lookup). The per-host and per-address limiters
//! cannot be turned off; their CPU is the `politeness slots` row of `stages`.

use super::*;
use crate::dns::FakeDns;

pub(crate) async fn sc_features(ctx: &mut Ctx) -> Result<()> {
    let n = ctx.opts.domains;
    // Names looked up by DNS are fetched on ports 80 and 443.
    let net = bulk_net(ctx, n, false, true).await?;
    let dns = FakeDns::start().await?;
    let mut variants: Vec<(&str, Vec<(&'static str, String)>)> = vec![
        (
            "as benchmarked (ICON_STORE=chosen, FETCH_RESOLVE rules)",
            vec![],
        ),
        ("ICON_STORE=off", vec![("ICON_STORE", "off".into())]),
    ];
    if net.low_ports {
        variants.push((
            "DNS through the async resolver (FETCH_DNS_SERVERS, no FETCH_RESOLVE)",
            vec![
                ("FETCH_RESOLVE", String::new()),
                ("FETCH_DNS_SERVERS", dns.addr.to_string()),
            ],
        ));
    } else {
        ctx.note("features: ports 80/443 are busy, so no run through the resolver".into());
    }
    let mut builds = vec![("this build", ctx.bin.clone())];
    if let Some(b) = ctx.opts.baseline_bin.clone() {
        builds.push(("baseline", b));
    }
    // runs[build][variant], interleaved so that the machine's load falls on all alike.
    let mut runs: Vec<Vec<Vec<RunOut>>> = vec![vec![vec![]; variants.len()]; builds.len()];
    let mut queries = vec![0u64; builds.len()];
    for _ in 0..ctx.opts.runs {
        for (i, (label, env)) in variants.iter().enumerate() {
            for (b, (build, bin)) in builds.iter().enumerate() {
                println!("    {build}, {label}:");
                let mut o = crate::stages::same_slots();
                o.env.extend(env.iter().cloned());
                let d = ctx.deploy_bin(bin, Some(&net), o).await?;
                let asked = dns.queries.load(Ordering::Relaxed);
                runs[b][i].push(timed_job(ctx, &net, &d, n, None).await?.0);
                queries[b] += dns.queries.load(Ordering::Relaxed) - asked;
            }
        }
    }
    let cpu_us = |r: &[RunOut]| {
        median(
            &r.iter()
                .map(|x| x.svc_cpu / n as f64 * 1e6)
                .collect::<Vec<_>>(),
        )
    };
    for (b, (build, _)) in builds.iter().enumerate() {
        let (base_rate, _) = summarize(&runs[b][0]);
        let base_cpu = cpu_us(&runs[b][0]);
        for (i, (label, _)) in variants.iter().enumerate() {
            let (rate, wall) = summarize(&runs[b][i]);
            let cpu = cpu_us(&runs[b][i]);
            ctx.row(
                &format!("feature alone, bulk plain HTTP, {n} domains, embedded SQLite, {build}: {label}"),
                format!(
                    "{rate:.0}/s ({:.2}× the first; wall {wall:.2}s), service CPU {cpu:.0} µs per domain ({:+.0} µs against the first)",
                    rate / base_rate,
                    cpu - base_cpu
                ),
                "(reported)",
                None,
            );
        }
    }
    if variants.len() > 2 {
        for (b, (build, _)) in builds.iter().enumerate() {
            let domains = ctx.opts.runs * n;
            ctx.note(format!(
                "features, {build}: the name server answered {} queries for {domains} domains looked up ({:.1} per domain; A and AAAA make 2)",
                queries[b],
                queries[b] as f64 / domains as f64
            ));
        }
    }
    Ok(())
}
