//! The summary printed at the end of a run.

use std::fmt::Write;

use crate::report::model::{PhaseReport, Report};

/// Renders the report as a plain-text table.
pub fn render(r: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "\n== {} against {} ==", r.scenario, r.base_url);
    let _ = writeln!(
        out,
        "{:<12} {:>9} {:>10} {:>10} {:>8} {:>8} {:>8} {:>8} {:>9}  answers by status",
        "phase", "requests", "answered/s", "good/s", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms"
    );
    for p in &r.phases {
        let _ = writeln!(out, "{}", phase_row(p));
        for (route, l) in &p.routes {
            let _ = writeln!(
                out,
                "  {:<10} {:>9} {:>10} {:>10} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>9.2}",
                route, l.count, "", "", l.p50_ms, l.p90_ms, l.p99_ms, l.p999_ms, l.max_ms
            );
        }
    }
    if let Some(ratio) = r.ratio {
        let _ = writeln!(
            out,
            "ratio to the no-op route: throughput {:.2}, p99 {:.2}",
            ratio.throughput, ratio.p99
        );
    }
    if let Some(s) = &r.settle {
        let fmt = |v: Option<f64>| v.map_or("never".to_owned(), |v| format!("{v:.2} s"));
        let _ = writeln!(
            out,
            "settled: {} after the last request, {} after the start ({})",
            fmt(s.after_last_request_s),
            fmt(s.after_start_s),
            s.method
        );
    }
    if let Some(ws) = r.websocket.as_ref().filter(|ws| ws.clients > 0) {
        let d = &ws.delay;
        let _ = writeln!(
            out,
            "commit-to-client (WebSocket, {}/{} buyers, {} updates): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            ws.connected, ws.clients, d.count, d.p50_ms, d.p99_ms, d.max_ms
        );
    }
    for p in &r.phases {
        for u in &p.processes {
            let _ = writeln!(
                out,
                "  [{}] {:<14} cpu mean {:>6.1}% max {:>6.1}%  rss max {:>8.1} MiB",
                p.name, u.name, u.cpu_mean_pct, u.cpu_max_pct, u.rss_max_mib
            );
        }
    }
    if !r.facts.is_null() {
        let _ = writeln!(out, "facts: {}", r.facts);
    }
    for v in &r.verdicts {
        let mark = if v.ok { "PASS" } else { "FAIL" };
        let _ = writeln!(
            out,
            "{mark} {:<12} {:<9} {}",
            v.check,
            format!("{:?}", v.source).to_lowercase(),
            v.detail
        );
    }
    for n in &r.notes {
        let _ = writeln!(out, "note: {n}");
    }
    let _ = writeln!(
        out,
        "{}",
        if r.passed { "RESULT: all consistency checks passed" } else { "RESULT: CONSISTENCY CHECK FAILED" }
    );
    out
}

fn phase_row(p: &PhaseReport) -> String {
    let statuses: Vec<String> = p.by_status.iter().map(|(s, n)| format!("{s}:{n}")).collect();
    let l = &p.latency;
    format!(
        "{:<12} {:>9} {:>10.0} {:>10.0} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>9.2}  {}",
        p.name,
        p.requests,
        p.answered_per_s,
        p.good_per_s,
        l.p50_ms,
        l.p90_ms,
        l.p99_ms,
        l.p999_ms,
        l.max_ms,
        statuses.join(" ")
    )
}
