//! Smoke test of the load program: a short run against the memcached it starts itself must
//! print one table with every requested cell, non-zero cycles, and the round trips the design
//! promises (a read-only session cycle is one memcached command, a read-modify-write two).
//! No timing goal is asserted here: those belong to the benchmark itself.

use std::process::Command;

struct Row {
    workload: String,
    concurrency: usize,
    cycles_per_sec: f64,
    commands: Option<f64>,
}

fn parse_table(stdout: &str) -> Vec<Row> {
    let mut rows = Vec::new();
    let mut in_table = false;
    for line in stdout.lines() {
        if line.starts_with("-----") {
            in_table = true;
            continue;
        }
        if !in_table || line.trim().is_empty() {
            if in_table && line.trim().is_empty() {
                break;
            }
            continue;
        }
        let cols: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(cols.len(), 11, "unexpected table line: {line}");
        rows.push(Row {
            workload: cols[0].to_string(),
            concurrency: cols[1].parse().expect("concurrency is a number"),
            cycles_per_sec: cols[2].parse().expect("cycles/s is a number"),
            commands: cols[5].parse().ok(),
        });
    }
    rows
}

#[test]
fn load_program_prints_a_table_with_cycles() {
    let out = Command::new(env!("CARGO_BIN_EXE_cgi-session-load"))
        .args([
            "--sessions",
            "100",
            "--duration-secs",
            "0.1",
            "--warmup-secs",
            "0",
            "--rounds",
            "1",
            "--concurrency",
            "1,4",
            "--only",
            "raw,raw-ro,json,json-ro,perl,memory,file",
            "--quiet",
        ])
        .output()
        .expect("the load program runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "exit {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    assert!(stdout.contains("memcached 1."), "{stdout}");
    let rows = parse_table(&stdout);
    let wanted = ["raw", "raw-ro", "json", "json-ro", "perl", "memory", "file"];
    assert_eq!(rows.len(), wanted.len() * 2, "{stdout}");
    for w in wanted {
        for c in [1, 4] {
            let row = rows
                .iter()
                .find(|r| r.workload == w && r.concurrency == c)
                .unwrap_or_else(|| panic!("no row for {w} at {c}:\n{stdout}"));
            assert!(
                row.cycles_per_sec > 0.0,
                "{w} at {c} made no cycle:\n{stdout}"
            );
        }
    }
    // Round trips per cycle, from memcached's own counters, at concurrency 1 (no conflicts).
    let cmds = |w: &str| {
        rows.iter()
            .find(|r| r.workload == w && r.concurrency == 1)
            .and_then(|r| r.commands)
            .unwrap_or_else(|| panic!("no command count for {w}:\n{stdout}"))
    };
    assert_eq!(cmds("raw"), 2.0, "{stdout}");
    assert_eq!(cmds("raw-ro"), 1.0, "{stdout}");
    assert_eq!(cmds("json"), 2.0, "{stdout}");
    assert_eq!(cmds("json-ro"), 1.0, "{stdout}");
    assert_eq!(cmds("perl"), 2.0, "{stdout}");
}

#[test]
fn bad_settings_are_refused_with_a_message() {
    let out = Command::new(env!("CARGO_BIN_EXE_cgi-session-load"))
        .args(["--only", "raw,nope", "--quiet"])
        .output()
        .expect("the load program runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unknown workload \"nope\""), "{stderr}");
    assert!(
        stderr.contains("json-ro"),
        "lists the valid names: {stderr}"
    );

    let out = Command::new(env!("CARGO_BIN_EXE_cgi-session-load"))
        .args(["--concurrency", "0", "--only", "memory", "--quiet"])
        .output()
        .expect("the load program runs");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--concurrency"));
}
