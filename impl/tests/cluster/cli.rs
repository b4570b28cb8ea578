//! The `kvraft` command line against a running cluster.

use super::*;

fn kvraft_cli(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_kvraft")).args(args).output().unwrap()
}

#[test]
fn the_cli_talks_to_a_cluster_and_explains_failures() {
    let _serial = serial();
    let cluster = start(3);
    let list = kvraft::config::format_cluster(cluster.client_addrs());
    for sub in ["server", "get", "put", "append", "local", "bench"] {
        let out = kvraft_cli(&[sub, "--help"]);
        assert!(out.status.success(), "{sub} --help");
    }
    assert!(kvraft_cli(&["put", "greeting", "hello", "--cluster", &list]).status.success());
    assert!(kvraft_cli(&["append", "greeting", " world", "--cluster", &list]).status.success());
    let out = kvraft_cli(&["get", "greeting", "--cluster", &list]);
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello world\n");

    let out = kvraft_cli(&["get", "greeting", "--cluster", &list, "--cluster-id", "5", "--timeout", "1s"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let last = err.lines().last().unwrap_or_default();
    assert!(last.starts_with("kvraft: error: ") && last.contains("cluster id 5"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let out = kvraft_cli(&[
        "server",
        "--id",
        "4",
        "--cluster",
        "1=127.0.0.1:1",
        "--client-addr",
        "127.0.0.1:0",
        "--data",
        data,
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.trim_end().ends_with("is not in the cluster list 1=127.0.0.1:1"), "{err}");

    for sub in ["server", "local"] {
        let help = String::from_utf8_lossy(&kvraft_cli(&[sub, "--help"]).stdout).into_owned();
        assert!(help.contains("--max-raft-state <BYTES>") && help.contains("never snapshot"), "{sub}: {help}");
    }
    let server = ["server", "--id", "1", "--cluster", "1=127.0.0.1:1", "--client-addr", "127.0.0.1:0", "--data", data];
    let out = kvraft_cli(&[&server[..], &["--max-raft-state", "0"]].concat());
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--max-raft-state must be at least 1 byte"), "{err}");
    let out = kvraft_cli(&["local", "--max-raft-state", "0"]);
    assert!(!out.status.success());
}

// ---- Snapshots: bounded disk, restart, catch-up by InstallSnapshot ----
