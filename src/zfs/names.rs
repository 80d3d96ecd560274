//! ZFS name rules (OpenZFS `zfs_namecheck.c`): components of letters, digits,
//! `-`, `_`, `.`, `:` and space; `/` separates components, `@` a snapshot and
//! `#` a bookmark. Names are checked before they are put in a command so a
//! hostile or broken listing cannot smuggle anything else into one.

/// OpenZFS `valid_char()`.
pub fn valid_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | ' ')
}

const MAX_NAME_LEN: usize = 255;

/// A name that does not follow the rules: what it was meant to be, the name
/// (a long one cut), and why not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidName {
    pub what: &'static str,
    pub name: String,
    pub reason: Option<String>,
}

impl std::fmt::Display for InvalidName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid {} `{}`", self.what, self.name)?;
        match &self.reason {
            Some(r) => write!(f, ": {r}"),
            None => Ok(()),
        }
    }
}

impl std::error::Error for InvalidName {}

fn invalid(what: &'static str, name: &str, reason: impl Into<String>) -> InvalidName {
    InvalidName {
        what,
        name: name.to_string(),
        reason: Some(reason.into()),
    }
}

fn check_component(full: &str, comp: &str) -> Result<(), InvalidName> {
    if comp.is_empty() {
        return Err(invalid("dataset name", full, "empty component"));
    }
    if comp == "." || comp == ".." {
        return Err(invalid(
            "dataset name",
            full,
            format!("`{comp}` is not a valid component"),
        ));
    }
    if let Some(c) = comp.chars().find(|c| !valid_char(*c)) {
        return Err(invalid(
            "dataset name",
            full,
            format!("character {c:?} is not allowed"),
        ));
    }
    Ok(())
}

/// A filesystem or volume name: `pool` or `pool/a/b`.
pub fn valid_dataset_name(name: &str) -> Result<(), InvalidName> {
    if name.len() > MAX_NAME_LEN {
        return Err(invalid(
            "dataset name",
            name,
            format!("longer than {MAX_NAME_LEN} characters"),
        ));
    }
    let mut comps = name.split('/');
    let pool = comps.next().unwrap_or("");
    check_component(name, pool)?;
    if !pool.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return Err(invalid(
            "dataset name",
            name,
            "a pool name starts with a letter",
        ));
    }
    for c in comps {
        check_component(name, c)?;
    }
    Ok(())
}

/// The part after `@`.
pub fn valid_snapshot_short_name(name: &str) -> Result<(), InvalidName> {
    check_component(name, name)
}

/// `dataset@snap`.
pub fn valid_snapshot_name(name: &str) -> Result<(), InvalidName> {
    let (ds, snap) = name
        .split_once('@')
        .ok_or_else(|| invalid("snapshot name", name, "no `@`"))?;
    valid_dataset_name(ds)?;
    valid_snapshot_short_name(snap)
}

/// Hold tags are free text for ZFS; ours stay within a safe set.
pub fn valid_hold_tag(tag: &str) -> Result<(), InvalidName> {
    if tag.is_empty() || tag.len() > 200 {
        return Err(invalid("hold tag", tag, "1 to 200 characters"));
    }
    if let Some(c) = tag
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':')))
    {
        return Err(invalid(
            "hold tag",
            tag,
            format!("character {c:?} is not allowed"),
        ));
    }
    Ok(())
}

/// A `zfs send` resume token is printable ASCII without spaces.
pub fn valid_resume_token(token: &str) -> Result<(), InvalidName> {
    if !token.is_empty() && token.len() < 64 * 1024 && token.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(())
    } else {
        Err(InvalidName {
            what: "receive_resume_token",
            name: token.chars().take(40).collect(),
            reason: None,
        })
    }
}

/// `name` is `root` or lies below it: `pool/a` is at or below `pool`,
/// `pool/ab` is not.
pub fn is_at_or_below(name: &str, root: &str) -> bool {
    name.strip_prefix(root)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// `name` moved from below `from` to below `to`: the same dataset on the
/// other side (`zpool1/a/b` from `zpool1` to `backup/zpool1` is
/// `backup/zpool1/a/b`). A name not at or below `from` comes back as it is.
pub fn rebase(name: &str, from: &str, to: &str) -> String {
    if is_at_or_below(name, from) {
        format!("{to}{}", &name[from.len()..])
    } else {
        name.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_or_below_and_rebase() {
        assert!(is_at_or_below("pool", "pool"));
        assert!(is_at_or_below("pool/a/b", "pool/a"));
        assert!(!is_at_or_below("pool/ab", "pool/a"));
        assert!(!is_at_or_below("poo", "pool"));
        assert_eq!(
            rebase("zpool1/a/b", "zpool1", "backup/zpool1"),
            "backup/zpool1/a/b"
        );
        assert_eq!(rebase("zpool1", "zpool1", "zpool2"), "zpool2");
        assert_eq!(rebase("other/a", "zpool1", "zpool2"), "other/a");
    }

    #[test]
    fn dataset_names() {
        for ok in [
            "zpool1",
            "zpool1/data",
            "tank/my data/vm-100-disk-0",
            "p/a:b.c_d-e",
        ] {
            assert!(valid_dataset_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "/zpool1",
            "zpool1/",
            "zpool1//a",
            "1pool",
            "p/../x",
            "p/.",
            "p/a@s",
            "p/a#b",
            "p/a;rm",
            "p/a\nb",
            "p/$(x)",
            "p/a'b",
            "p/tab\tx",
        ] {
            assert!(valid_dataset_name(bad).is_err(), "{bad:?}");
        }
        assert!(valid_dataset_name(&format!("p/{}", "a".repeat(300))).is_err());
    }

    #[test]
    fn snapshot_names() {
        assert!(valid_snapshot_name("zpool1/data@autosnap_2024-01-01_00:00:00_hourly").is_ok());
        assert!(valid_snapshot_name("zpool1/my data@my snap").is_ok());
        assert!(valid_snapshot_name("zpool1/data").is_err());
        assert!(valid_snapshot_name("zpool1/data@a@b").is_err());
        assert!(valid_snapshot_name("zpool1/data@").is_err());
    }

    #[test]
    fn tags_and_tokens() {
        assert!(valid_hold_tag("zfs-nfs-replica:pve2").is_ok());
        assert!(valid_hold_tag("a b").is_err());
        assert!(valid_hold_tag("").is_err());
        assert!(valid_resume_token("1-e604ea4bf-e0-789c63a2").is_ok());
        assert!(
            valid_resume_token("1-abc;rm").is_ok(),
            "shell specials are quoted, not rejected"
        );
        assert!(valid_resume_token("1 abc").is_err());
        assert!(valid_resume_token("").is_err());
    }
}
