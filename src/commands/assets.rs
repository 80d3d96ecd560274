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
    Ok(())
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
    }
}
