//! Commands as plain data: a program and its arguments, with a shell-quoted
//! `Display` that appears in logs, errors and `--dry-run` output.
//!
//! Nothing here spawns anything; [`crate::runner`] does. Remote commands are
//! sent to the peer's shell by ssh, so [`Cmd::to_shell`] quotes every argument.

use std::fmt;

/// A command line: program plus arguments, never passed through a local shell.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Cmd {
    pub program: String,
    pub args: Vec<String>,
}

impl Cmd {
    pub fn new(program: impl Into<String>) -> Self {
        Cmd {
            program: program.into(),
            args: Vec::new(),
        }
    }

    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// The command as one string for a POSIX shell: every word quoted where
    /// needed. This is what ssh hands to the peer's login shell.
    pub fn to_shell(&self) -> String {
        let mut out = shell_quote(&self.program);
        for a in &self.args {
            out.push(' ');
            out.push_str(&shell_quote(a));
        }
        out
    }
}

impl fmt::Display for Cmd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_shell())
    }
}

impl fmt::Debug for Cmd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cmd({})", self.to_shell())
    }
}

/// Quote one word for a POSIX shell. Words made only of characters that no
/// shell treats specially are left bare so logs stay readable; anything else
/// is wrapped in single quotes, with embedded single quotes written as `'\''`.
pub fn shell_quote(word: &str) -> String {
    let safe = !word.is_empty()
        && word.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(b, b'_' | b'-' | b'.' | b'/' | b':' | b'@' | b'%' | b'+' | b',' | b'=')
        })
        // `=` and `@` are only special in some positions; a leading `-` is
        // fine for the shell (it is the program's business), but `~` and `#`
        // at the start are not, and they are not in the safe set anyway.
        ;
    if safe {
        return word.to_string();
    }
    let mut out = String::with_capacity(word.len() + 2);
    out.push('\'');
    for c in word.chars() {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_words_stay_bare() {
        assert_eq!(
            shell_quote("zpool1/data@autosnap_2024-01-01_00:00:00_hourly"),
            "zpool1/data@autosnap_2024-01-01_00:00:00_hourly"
        );
        assert_eq!(shell_quote("-H"), "-H");
    }

    #[test]
    fn specials_are_quoted() {
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(shell_quote("$(rm -rf /)"), "'$(rm -rf /)'");
        assert_eq!(shell_quote("a;b|c&d`e`\n"), "'a;b|c&d`e`\n'");
        assert_eq!(shell_quote("~root"), "'~root'");
        assert_eq!(shell_quote("#x"), "'#x'");
        assert_eq!(shell_quote("*"), "'*'");
    }

    #[test]
    fn display_quotes_each_word() {
        let c = Cmd::new("zfs").args(["send", "-I", "pool/my data@a", "pool/my data@b"]);
        assert_eq!(
            c.to_string(),
            "zfs send -I 'pool/my data@a' 'pool/my data@b'"
        );
    }
}
