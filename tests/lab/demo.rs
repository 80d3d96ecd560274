//! See it run: two lab nodes (qemu, real OpenZFS, sanoid, OpenSSH), the
//! Proxmox API stand-in answering as Proxmox, and the tool installed on
//! both as the package installs it. Walks through a first sync, an
//! incremental, a planned migration, a crash failover with its divergence
//! resolved, and `status` on both nodes, printing each command and what
//! the tool said. Run by `tests/lab/demo.sh` (not part of the test
//! command: the lab scenarios prove each of these steps).

#[path = "../common/mod.rs"]
mod common;

use common::lab::{Lab, Out};

const A: &str = "pve1";
const B: &str = "pve2";

fn say(text: &str) {
    println!("\n\x1b[1m== {text}\x1b[0m");
}

fn show(node: &str, what: &str, out: &Out) {
    println!(
        "\x1b[36m{node}# {what}\x1b[0m   (exit {})",
        out.code.map_or("-".into(), |c| c.to_string())
    );
    for l in out.stdout.lines().chain(out.stderr.lines()) {
        println!("    {l}");
    }
}

/// The tool on `node` (within the systemd unit's limits), shown.
fn tool(lab: &Lab, node: &str, args: &str) -> Out {
    let out = lab.sh(
        node,
        &format!(
            "{} /usr/bin/zfs-nfs-replica {args}",
            common::lab::unit_limits()
        ),
    );
    show(node, &format!("zfs-nfs-replica {args}"), &out);
    out
}

/// A shell command on `node`, shown.
fn sh(lab: &Lab, node: &str, cmd: &str) -> Out {
    let out = lab.sh(node, cmd);
    show(node, cmd, &out);
    out
}

fn expect(out: &Out, codes: &[i32], what: &str) {
    if !out.code.is_some_and(|c| codes.contains(&c)) {
        eprintln!("demo: {what}: exit {:?}, expected {codes:?}", out.code);
        std::process::exit(1);
    }
}

fn main() {
    say(
        "Two Proxmox nodes, pve1 and pve2, each with its own pools; container 103 (the NFS server) runs on pve1",
    );
    let lab = Lab::get();
    lab.fresh_pools();
    lab.place_guest(A);
    for n in [A, B] {
        lab.configure(n, "");
    }
    sh(
        &lab,
        A,
        "zfs create zpool1/share && echo 'hello from pve1' > /zpool1/share/readme.txt && \
         dd if=/dev/urandom of=/zpool1/share/data.bin bs=1M count=8 status=none && zfs snapshot -r zpool1@first",
    );
    sh(&lab, A, "cat /etc/zfs-nfs-replica/config.toml");

    say("check: the config, the API's answer, the peer over the restricted key");
    let out = tool(&lab, A, "check");
    expect(&out, &[0], "check");

    say("The plan, with nothing changed");
    tool(&lab, A, "run --dry-run");

    say("First sync into the empty standby pools (the flag is needed once)");
    let out = tool(&lab, A, "run --overwrite-empty-target");
    expect(&out, &[0], "first sync");
    let out = tool(&lab, B, "run");
    expect(&out, &[1], "the standby's run");
    sh(
        &lab,
        B,
        "zfs list -o name,readonly,used -r zpool1; grep autosnap /etc/sanoid/sanoid.conf",
    );

    say("An incremental: a new file and a snapshot (sanoid takes them every hour on the master)");
    sh(
        &lab,
        A,
        "echo 'second version' > /zpool1/share/notes.txt && zfs snapshot -r zpool1@second",
    );
    let out = tool(&lab, A, "run");
    expect(&out, &[0], "incremental");
    sh(&lab, B, "zfs list -t snapshot -o name,guid -r zpool1/share");

    say("A planned migration: pve1 -> pve2, with writes after the last snapshot");
    sh(
        &lab,
        A,
        "echo 'written a second before the migration' > /zpool1/share/last-words.txt && sync",
    );
    lab.place_guest(B);
    lab.pve.set(|s| s.guest_status = "stopped".into());
    tool(&lab, A, "hook 103 post-stop");
    let out = tool(&lab, B, "hook 103 pre-start");
    expect(&out, &[0], "pre-start on the new master");
    lab.pve.set(|s| s.guest_status = "running".into());
    sh(
        &lab,
        B,
        "cat /zpool1/share/last-words.txt; zfs get -H -o name,value readonly zpool1/share",
    );

    say(
        "A crash: pve2 dies (its link is cut) with unreplicated writes; HA starts the guest on pve1",
    );
    sh(
        &lab,
        B,
        "echo 'written on pve2 just before it died' > /zpool1/share/on-pve2.txt && zfs snapshot -r zpool1@on-pve2",
    );
    lab.ok(B, "ip link set eth1 down");
    lab.place_guest(A);
    lab.pve.set(|s| s.guest_status = "stopped".into());
    let out = tool(&lab, A, "hook 103 pre-start");
    expect(&out, &[0], "pre-start after the crash");
    lab.pve.set(|s| s.guest_status = "running".into());
    lab.ok(B, "ip link set eth1 up");

    say(
        "pve2 is back: what it wrote never reached pve1, so its copy diverged (kept, never rolled back)",
    );
    sh(
        &lab,
        A,
        "echo 'new master writes' > /zpool1/share/after-failover.txt && zfs snapshot -r zpool1@after",
    );
    tool(&lab, A, "run");
    tool(&lab, A, "diverged");
    say(
        "resolve: pve2's divergent data goes to its quarantine (kept, readable); the next run re-syncs",
    );
    let out = tool(&lab, A, "resolve zpool1 --keep-divergent");
    expect(&out, &[0], "resolve");
    let out = tool(&lab, A, "run");
    expect(&out, &[0, 1], "the run after resolve");
    sh(
        &lab,
        B,
        "cat /var/lib/zfs-nfs-replica/quarantine/zpool1/*/share/on-pve2.txt",
    );

    say(
        "The timer's next run on the standby, then status on both nodes (also as --json, --check for Nagios, and a Prometheus textfile)",
    );
    tool(&lab, B, "run");
    for n in [A, B] {
        tool(&lab, n, "status");
    }
    println!("\ndemo: done (the lab stops when this program exits)");
}
