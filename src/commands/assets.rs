//! `zfs-nfs-replica generate-assets DIR` (hidden): what the Debian package
//! ships besides the binary, generated from the command-line definition
//! itself so it can never drift: the man page, shell completions, and the
//! commented configuration installed as /etc/zfs-nfs-replica/config.toml.

use std::path::Path;

use clap::CommandFactory;
use clap_complete::Shell;

use crate::cli::Cli;

const EXAMPLE: &str = include_str!("../../examples/config.toml");

/// examples/config.toml with every setting commented out: nothing runs
/// until the operator edits it (it does not even parse before that).
pub fn commented_config() -> String {
    let mut out = String::from(
        "# zfs-nfs-replica: nothing replicates until you edit this file (at least\n\
         # [cluster] and one [[pool]]: remove the leading `# ` of the lines you keep)\n\
         # and enable the timer: systemctl enable --now zfs-nfs-replica.timer\n\
         # The same file, uncommented: /usr/share/doc/zfs-nfs-replica/examples/config.toml\n\
         #\n",
    );
    for line in EXAMPLE.lines() {
        let t = line.trim_start();
        if t.is_empty() || t.starts_with('#') {
            out.push_str(line);
        } else {
            out.push_str("# ");
            out.push_str(line);
        }
        out.push('\n');
    }
    out
}

pub fn generate(dir: &Path) -> Result<(), String> {
    let err = |e: std::io::Error| format!("{}: {e}", dir.display());
    std::fs::create_dir_all(dir).map_err(err)?;
    let cmd = Cli::command();
    // zfs-nfs-replica.1 and one page per subcommand (zfs-nfs-replica-run.1, ...).
    clap_mangen::generate_to(cmd.clone(), dir).map_err(|e| format!("man pages: {e}"))?;
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        let mut c = cmd.clone();
        clap_complete::generate_to(shell, &mut c, "zfs-nfs-replica", dir).map_err(err)?;
    }
    std::fs::write(dir.join("config.toml"), commented_config()).map_err(err)?;
    // The main page gets the sections clap does not write; the config
    // file gets a page of its own.
    let main = dir.join("zfs-nfs-replica.1");
    let mut page = std::fs::read_to_string(&main).map_err(err)?;
    page.push_str(&extra_sections());
    std::fs::write(&main, page).map_err(err)?;
    std::fs::write(dir.join("zfs-nfs-replica.toml.5"), config_page()).map_err(err)?;
    Ok(())
}

/// A line of text for roff: no request or escape it could be taken for.
fn roff(line: &str) -> String {
    let t = line.replace('\\', "\\e");
    if t.starts_with('.') || t.starts_with('\'') {
        format!("\\&{t}")
    } else {
        t
    }
}

/// EXIT STATUS, FILES and SEE ALSO for zfs-nfs-replica(1).
fn extra_sections() -> String {
    let mut o = String::from(".SH \"EXIT STATUS\"\n.nf\n");
    for l in crate::exit::TABLE.lines().skip(1) {
        o.push_str(&roff(l.trim_start()));
        o.push('\n');
    }
    o.push_str(
        ".fi\n\
         \\fBstatus \\-\\-check\\fR follows the monitoring-plugin convention instead: \
         0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.\n\
         .SH FILES\n\
         .TP\n/etc/zfs\\-nfs\\-replica/config.toml\nThe configuration (\\fBzfs\\-nfs\\-replica.toml\\fR(5)).\n\
         .TP\n/etc/zfs\\-nfs\\-replica/pve\\-token\nThe Proxmox API token, mode 0600.\n\
         .TP\n/var/lib/zfs\\-nfs\\-replica/\nState: status.json, the size history, the role, promotion and failover records.\n\
         .TP\n/run/zfs\\-nfs\\-replica/\nLocks, ssh control sockets, the recorded role answer, a handover marker.\n\
         .TP\n/etc/sanoid/sanoid.conf\nRewritten so that only the master takes snapshots (a backup is kept).\n\
         .SH \"SEE ALSO\"\n\
         \\fBzfs\\-nfs\\-replica.toml\\fR(5), \\fBzfs\\fR(8), \\fBzfs\\-send\\fR(8), \\fBzfs\\-receive\\fR(8), \
         \\fBzfs\\-allow\\fR(8), \\fBsanoid\\fR(8), \\fBsshd\\fR(8) (authorized_keys), \\fBha\\-manager\\fR(1), \
         /usr/share/doc/zfs\\-nfs\\-replica/README.md\n",
    );
    o
}

/// zfs-nfs-replica.toml(5): the configuration, every key documented as in
/// the example it ships.
fn config_page() -> String {
    let mut o = format!(
        ".TH ZFS\\-NFS\\-REPLICA.TOML 5 \"\" \"zfs\\-nfs\\-replica {}\"\n\
         .SH NAME\nzfs\\-nfs\\-replica.toml \\- configuration of zfs\\-nfs\\-replica\n\
         .SH SYNOPSIS\n/etc/zfs\\-nfs\\-replica/config.toml\n\
         .SH DESCRIPTION\nTOML, read strictly: an unknown key, a wrong type or an out\\-of\\-range \
         value is an error naming the file, line and key, and nothing runs (exit 2). \
         Every key, with its default, as the packaged example documents it:\n.PP\n.nf\n",
        env!("CARGO_PKG_VERSION")
    );
    for l in EXAMPLE.lines() {
        o.push_str(&roff(l));
        o.push('\n');
    }
    o.push_str(".fi\n.SH \"SEE ALSO\"\n\\fBzfs\\-nfs\\-replica\\fR(1)\n");
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_config_is_the_example_commented_out() {
        let c = commented_config();
        let e = crate::config::parse_str(&c, "config.toml").unwrap_err().0;
        assert!(
            e.contains("missing field `cluster`"),
            "nothing runs unedited: {e}"
        );
        let uncommented: String = c
            .lines()
            .skip(5)
            .map(|l| {
                let body = l.strip_prefix("# ").unwrap_or(l);
                let was_setting = EXAMPLE
                    .lines()
                    .any(|x| x == body && !x.trim_start().starts_with('#'));
                format!("{}\n", if was_setting { body } else { l })
            })
            .collect();
        assert_eq!(uncommented, EXAMPLE);
    }

    #[test]
    fn man_page_and_completions() {
        let d = tempfile::tempdir().unwrap();
        generate(d.path()).unwrap();
        let man = std::fs::read_to_string(d.path().join("zfs-nfs-replica.1")).unwrap();
        assert!(man.contains(".TH zfs-nfs-replica"), "{man}");
        for sub in ["run", "status", "resolve", "adopt", "diverged"] {
            assert!(man.contains(sub), "{sub} in the man page");
        }
        assert!(!man.contains("generate-assets"), "hidden from the man page");
        let run = std::fs::read_to_string(d.path().join("zfs-nfs-replica-run.1")).unwrap();
        assert!(run.contains("accept\\-size\\-change"), "{run}");
        let bash = std::fs::read_to_string(d.path().join("zfs-nfs-replica.bash")).unwrap();
        assert!(bash.contains("--keep-divergent") && bash.contains("--accept-size-change"));
        assert!(d.path().join("_zfs-nfs-replica").exists());
        assert!(d.path().join("zfs-nfs-replica.fish").exists());
        for want in [
            ".SH \"EXIT STATUS\"",
            "6  serve",
            ".SH FILES",
            ".SH \"SEE ALSO\"",
        ] {
            assert!(man.contains(want), "{want}:\n{man}");
        }
        let five = std::fs::read_to_string(d.path().join("zfs-nfs-replica.toml.5")).unwrap();
        assert!(five.starts_with(".TH ZFS\\-NFS\\-REPLICA.TOML 5"), "{five}");
        assert!(
            five.contains("[cluster]") && five.contains("[[pool]]"),
            "{five}"
        );
        // No example line is read as a roff request.
        assert!(five.lines().all(|l| !l.starts_with("'")), "{five}");
    }
}
