//! The binary as an operator runs it: exit codes and one-line errors.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_zfs-nfs-replica"))
}

fn write_config(dir: &std::path::Path, text: &str) -> std::path::PathBuf {
    let p = dir.join("config.toml");
    std::fs::write(&p, text).unwrap();
    p
}

const GOOD: &str = "[cluster]\nguest = 103\nnode = \"pve1\"\nnodes = { pve1 = \"127.0.0.1\", pve2 = \"127.0.0.1\" }\n[ssh]\nport = 9\nconnect_timeout = \"1s\"\n[[pool]]\nname = \"zpool1\"\n";

#[test]
fn help_documents_the_exit_codes() {
    let out = bin().arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for want in [
        "Exit codes:",
        "1  nothing to do",
        "2  usage or configuration error",
        "4  refused",
    ] {
        assert!(text.contains(want), "{want} missing from --help");
    }
    // ...and each subcommand's own --help, where the codes apply.
    for cmd in [
        "run", "resolve", "adopt", "diverged", "handover", "standby", "serve",
    ] {
        let out = bin().args([cmd, "--help"]).output().unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(text.contains("4  refused"), "{cmd} --help: {text}");
    }
    let out = bin().args(["hook", "--help"]).output().unwrap();
    assert!(String::from_utf8(out.stdout).unwrap().contains("0  always"));
}

#[test]
fn a_malformed_config_is_exit_2_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let p = write_config(dir.path(), &GOOD.replace("port = 9", "prot = 9"));
    let out = bin().arg("--config").arg(&p).arg("run").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    let line = err
        .lines()
        .find(|l| l.contains("config error"))
        .unwrap_or_else(|| panic!("{err}"));
    assert!(
        line.contains(&format!(
            "{}:6: in [ssh]: unknown field `prot`",
            p.display()
        )),
        "{line}"
    );
    assert!(line.contains("did you mean `port`"), "{line}");
}

#[test]
fn usage_errors_are_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let p = write_config(dir.path(), GOOD);
    assert_eq!(
        bin()
            .arg("--config")
            .arg(&p)
            .arg("frobnicate")
            .output()
            .unwrap()
            .status
            .code(),
        Some(2)
    );
    let out = bin()
        .arg("--config")
        .arg(&p)
        .args(["run", "--pool", "zpool9"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--pool zpool9: not a configured [[pool]]")
    );
}

#[test]
fn an_unreachable_peer_is_a_transient_failure_and_creates_nothing_in_dry_run() {
    // This node is master per its API (the stand-in), with no .vmlist here.
    let pve = common::pve::FakePve::start(&[("pve1", "10.0.0.1"), ("pve2", "10.0.0.2")], 103);
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    let tok = dir.path().join("tok");
    std::fs::write(&tok, &pve.token).unwrap();
    std::fs::set_permissions(&tok, std::fs::Permissions::from_mode(0o600)).unwrap();
    let sanoid = dir.path().join("sanoid.conf");
    std::fs::write(&sanoid, "[zpool1]\n\tautosnap = no\n").unwrap();
    let text = GOOD.replace(
        "[[pool]]",
        &format!(
            "[paths]\nrun_dir = \"{}\"\n[proxmox]\nurl = \"{}\"\ntoken_file = \"{}\"\nca_file = \"{}\"\nvmlist = \"/nonexistent\"\n\
             [checks]\ninterval = \"10ms\"\n[sanoid]\nconfig = \"{}\"\n[[pool]]",
            run_dir.display(),
            pve.url("pve1"),
            tok.display(),
            pve.ca_file.path().display(),
            sanoid.display()
        ),
    );
    let p = write_config(dir.path(), &text);
    let out = bin()
        .arg("--config")
        .arg(&p)
        .args(["run", "--dry-run"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains("ssh to pve2 (127.0.0.1): cannot connect"),
        "{err}"
    );
    let leftovers: Vec<_> = std::fs::read_dir(&run_dir)
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    assert!(leftovers.is_empty(), "dry-run left files: {leftovers:?}");
    let out = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.contains("# this node (pve1) is master")
            && out.contains("would set autosnap = yes in [zpool1]"),
        "{out}"
    );
    assert_eq!(
        std::fs::read_to_string(&sanoid).unwrap(),
        "[zpool1]\n\tautosnap = no\n"
    );
}
