//! `zfs-nfs-replica authorized-key [PUBKEY]`: the line to put in every
//! peer's `authorized_keys`, so the replication key runs nothing but
//! `serve` (README: Least privilege).

use tracing::error;

use crate::cli::AuthorizedKeyArgs;
use crate::config::Config;
use crate::exit::Exit;

/// What `authorized_keys` needs in front of the key.
pub const OPTIONS: &str = "command=\"/usr/bin/zfs-nfs-replica serve\",restrict";

pub fn print(cfg: &Config, args: &AuthorizedKeyArgs) -> Exit {
    let path = match (&args.pubkey, &cfg.ssh.identity) {
        (Some(p), _) => p.clone(),
        (None, Some(id)) => {
            let mut p = id.clone().into_os_string();
            p.push(".pub");
            p.into()
        }
        (None, None) => {
            error!("no public key: name one, or set [ssh] identity");
            return Exit::Config;
        }
    };
    match line(&path) {
        Ok(l) => {
            crate::outln!("{l}");
            Exit::Ok
        }
        Err(e) => {
            error!("{e}");
            Exit::Config
        }
    }
}

/// `OPTIONS key-type base64 [comment]` from a public key file (one key).
pub fn line(path: &std::path::Path) -> Result<String, String> {
    let text = crate::files::read_text(path, 16 << 10).map_err(|e| e.to_string())?;
    let key = text.trim();
    let fields: Vec<&str> = key.split_whitespace().collect();
    let ok = key.lines().count() == 1
        && fields.len() >= 2
        && ["ssh-", "ecdsa-sha2-", "sk-"]
            .iter()
            .any(|t| fields[0].starts_with(t));
    if !ok {
        return Err(format!(
            "{}: not an OpenSSH public key (`ssh-ed25519 AAAA... comment`)",
            path.display()
        ));
    }
    Ok(format!("{OPTIONS} {key}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_restricts_the_key_and_refuses_anything_else() {
        let d = tempfile::tempdir().unwrap();
        let k = d.path().join("id.pub");
        std::fs::write(&k, "ssh-ed25519 AAAAC3Nza zfs-nfs-replica\n").unwrap();
        assert_eq!(
            line(&k).unwrap(),
            "command=\"/usr/bin/zfs-nfs-replica serve\",restrict ssh-ed25519 AAAAC3Nza zfs-nfs-replica"
        );
        for bad in [
            "",
            "-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n",
            "ssh-ed25519\n",
        ] {
            std::fs::write(&k, bad).unwrap();
            assert!(line(&k).is_err(), "{bad:?}");
        }
    }
}
