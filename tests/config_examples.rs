//! Every file under examples/ parses, and the documented defaults are the
//! code's defaults.

use std::path::Path;

use zfs_nfs_replica::config;

#[test]
fn every_example_parses() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "toml") {
            config::parse(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            n += 1;
        }
    }
    assert!(n >= 1, "no example config found in {}", dir.display());
}

#[test]
fn the_documented_example_states_the_real_defaults() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/config.toml");
    let documented = config::parse(&path).unwrap();
    // The same file with every optional section removed: only defaults left.
    let minimal =
        "[cluster]\nguest = 103\nnodes = { a = \"x\", b = \"y\" }\n[[pool]]\nname = \"zpool1\"\n";
    let defaults = config::parse_str(minimal, "minimal").unwrap();
    assert_eq!(
        format!("{:?}", documented.timeouts),
        format!("{:?}", defaults.timeouts)
    );
    assert_eq!(
        format!("{:?}", documented.paths),
        format!("{:?}", defaults.paths)
    );
    assert_eq!(
        format!("{:?}", documented.replication),
        format!("{:?}", defaults.replication)
    );
    for (what, d, m) in [
        (
            "proxmox",
            format!("{:?}", documented.proxmox),
            format!("{:?}", defaults.proxmox),
        ),
        (
            "checks",
            format!("{:?}", documented.checks),
            format!("{:?}", defaults.checks),
        ),
        (
            "sanoid",
            format!("{:?}", documented.sanoid),
            format!("{:?}", defaults.sanoid),
        ),
        (
            "hook",
            format!("{:?}", documented.hook),
            format!("{:?}", defaults.hook),
        ),
        (
            "health",
            format!("{:?}", documented.health),
            format!("{:?}", defaults.health),
        ),
        (
            "status",
            format!("{:?}", documented.status),
            format!("{:?}", defaults.status),
        ),
        (
            "notify",
            format!("{:?}", documented.notify),
            format!("{:?}", defaults.notify),
        ),
    ] {
        assert_eq!(d, m, "[{what}] in examples/config.toml");
    }
    let (d, m) = (&documented.pools[0], &defaults.pools[0]);
    assert_eq!(
        (d.min_size_ratio, d.history_tolerance, &d.disks),
        (m.min_size_ratio, m.history_tolerance, &m.disks)
    );
    let (d, m) = (&documented.ssh, &defaults.ssh);
    assert_eq!(
        (
            &d.user,
            d.port,
            d.connect_timeout,
            d.server_alive_interval,
            d.server_alive_count,
            d.strict_host_key_checking
        ),
        (
            &m.user,
            m.port,
            m.connect_timeout,
            m.server_alive_interval,
            m.server_alive_count,
            m.strict_host_key_checking
        )
    );
}

#[test]
fn a_missing_file_is_named() {
    let e = config::parse(Path::new("/nonexistent/config.toml"))
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("/nonexistent/config.toml: cannot read config"),
        "{e}"
    );
}
