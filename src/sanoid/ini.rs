//! sanoid.conf read exactly the way sanoid reads it: Perl's
//! Config::IniFiles (3.000003 in Debian 12 and 13) with sanoid's options
//! (`-file` only: no `-nocase`, no `-allowcontinue`, no
//! `-handle_trailing_comment`). Every line keeps its byte span, so a rewrite
//! can change a few lines and copy every other byte.
//!
//! What Config::IniFiles does, and this reader with it
//! (docs/sanoid.md has the whole list, with the source lines):
//! - the line ending is the first line's (`\n`, `\r\n`, `\r`); every later
//!   line is split on that ending only, so a line with another ending is
//!   glued to its neighbours (refused here: sanoid would misread it);
//! - a UTF-8 byte-order mark at the start makes the first line malformed
//!   (the module means to strip it, but its source spells the mark doubly
//!   encoded): sanoid cannot read such a file;
//! - blank lines, and comment lines (`#` or `;` after blanks), are skipped;
//! - `[name]` (blanks allowed around and inside the brackets, nothing after)
//!   opens a section; a name seen twice continues the same section;
//! - `key = value`: the key is what precedes the first `=`, trimmed; the
//!   value is what follows, with leading blanks removed and **trailing ones
//!   kept**; a `# ...` after the value is part of it;
//! - `key = <<EOT` takes the following lines up to a line that is exactly
//!   `EOT` as the values;
//! - a key given twice has several values (sanoid 2.1 reads them as true,
//!   2.2 takes the first);
//! - a key before the first section, a line that is none of these, a here
//!   document without its end, or a file with no key at all make the whole
//!   file unreadable: sanoid exits.

use std::collections::BTreeMap;
use std::fmt;

/// A sanoid.conf that sanoid itself could not read, or that this reader
/// refuses because sanoid would read it differently from what it shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IniError {
    /// 1-based line number, as an editor shows it.
    pub line: usize,
    pub reason: String,
}

impl fmt::Display for IniError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.reason)
    }
}

/// One line of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// Byte offset of its first byte (the byte-order mark included, on line 0).
    pub start: usize,
    /// End of its content: where its line ending starts.
    pub content_end: usize,
    /// After its line ending (== `content_end` on a last line without one).
    pub end: usize,
    pub kind: Kind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Blank,
    Comment,
    /// A section header; the index into [`Ini::sections`].
    Header(usize),
    /// The first line of a parameter: section index, parameter index in it.
    Param(usize, usize),
    /// A line of a here document, or its end marker.
    HereDoc,
}

/// One `key = value` (or here document) in a section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    pub key: String,
    /// The value as Config::IniFiles returns it: one string, or one per line
    /// of a here document.
    pub values: Vec<String>,
    /// Its lines: the first, and the last (the end marker of a here document).
    pub first_line: usize,
    pub last_line: usize,
    pub heredoc: bool,
}

/// A section, with every block that opened it (a name written twice
/// continues the same section).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    pub name: String,
    /// Header lines, in file order.
    pub headers: Vec<usize>,
    pub params: Vec<Param>,
}

impl Section {
    /// Every value given to `key`, in file order (several assignments and
    /// here-document lines alike).
    pub fn values(&self, key: &str) -> Vec<&str> {
        self.params
            .iter()
            .filter(|p| p.key == key)
            .flat_map(|p| p.values.iter().map(String::as_str))
            .collect()
    }

    /// The value of `key` as sanoid's `$ini{$section}{$key}` holds it when
    /// it is a single string; None when absent or multi-valued.
    pub fn single(&self, key: &str) -> Option<&str> {
        match self.values(key).as_slice() {
            [one] => Some(one),
            _ => None,
        }
    }

    pub fn is_template(&self) -> bool {
        self.name.starts_with("template_")
    }
}

#[derive(Debug, Clone)]
pub struct Ini<'a> {
    pub text: &'a [u8],
    /// The line ending Config::IniFiles splits the file on (the first line's).
    pub eol: &'static [u8],
    pub lines: Vec<Line>,
    pub sections: Vec<Section>,
}

/// Perl's `\s`.
pub fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = s
        && is_space(*first)
    {
        s = rest;
    }
    while let [rest @ .., last] = s
        && is_space(*last)
    {
        s = rest;
    }
    s
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

const BOM: &[u8] = b"\xef\xbb\xbf";
/// What Config::IniFiles 3.000003 really strips from the start: its source
/// spells the byte-order mark as three Latin-1 characters in a file read as
/// bytes (no `use utf8`), so it matches the mark encoded twice.
const MOJIBAKE_BOM: &[u8] = b"\xc3\xaf\xc2\xbb\xc2\xbf";

/// The ending of the first line, as Config::IniFiles finds it: the first
/// CR, LF or NAK (0x15) byte, a CR followed by LF counting as CRLF.
fn first_eol(t: &[u8]) -> &'static [u8] {
    match t.iter().position(|b| matches!(b, b'\r' | b'\n' | 0x15)) {
        Some(i) if t[i] == b'\r' && t.get(i + 1) == Some(&b'\n') => b"\r\n",
        Some(i) if t[i] == b'\r' => b"\r",
        Some(i) if t[i] == 0x15 => b"\x15",
        _ => b"\n",
    }
}

/// What Config::IniFiles strips from the end of every line it reads:
/// `s/(\015\012?|\012|\025|\n)\z//`.
fn ending_len(chunk: &[u8]) -> usize {
    match chunk {
        [.., b'\r', b'\n'] => 2,
        [.., b'\r' | b'\n' | 0x15] => 1,
        _ => 0,
    }
}

pub fn parse(t: &[u8]) -> Result<Ini<'_>, IniError> {
    let eol = first_eol(t);
    // Split as Perl's readline with $/ = eol does: each chunk ends with eol,
    // except perhaps the last.
    let mut raw: Vec<(usize, usize, usize)> = Vec::new();
    let mut pos = 0;
    while pos < t.len() {
        let end = t[pos..]
            .windows(eol.len())
            .position(|w| w == eol)
            .map_or(t.len(), |i| pos + i + eol.len());
        let content_end = end - ending_len(&t[pos..end]);
        raw.push((pos, content_end, end));
        pos = end;
    }
    let err = |line: usize, reason: String| IniError {
        line: line + 1,
        reason,
    };
    let mut lines: Vec<Line> = Vec::with_capacity(raw.len());
    let mut sections: Vec<Section> = Vec::new();
    let mut by_name: BTreeMap<String, usize> = BTreeMap::new();
    let mut current: Option<usize> = None;
    let mut i = 0;
    while i < raw.len() {
        let (start, content_end, end) = raw[i];
        let mut content = &t[start..content_end];
        if i == 0 && content.starts_with(BOM) {
            return Err(err(
                0,
                "the file starts with a UTF-8 byte-order mark, which sanoid cannot read (Config::IniFiles 3.000003 only strips a doubly encoded one): remove it".into(),
            ));
        }
        if i == 0 && content.starts_with(MOJIBAKE_BOM) {
            content = &content[MOJIBAKE_BOM.len()..];
        }
        let glued = content.iter().any(|b| matches!(b, b'\r' | b'\n'));
        let trimmed = trim(content);
        // A comment (or blank) glued to the lines after it stays one for
        // Config::IniFiles: harmless. Anything else would be misread.
        if glued && !(trimmed.is_empty() || matches!(trimmed[0], b'#' | b';')) {
            return Err(err(
                i,
                format!(
                    "mixed line endings: the file's first line ends with {}, and this line holds another ending; sanoid would read it glued to its neighbours",
                    match eol {
                        b"\r\n" => "CRLF",
                        b"\r" => "CR",
                        _ => "LF",
                    }
                ),
            ));
        }
        let line = |kind| Line {
            start,
            content_end,
            end,
            kind,
        };
        if trimmed.is_empty() {
            lines.push(line(Kind::Blank));
            i += 1;
            continue;
        }
        if matches!(trimmed[0], b'#' | b';') {
            lines.push(line(Kind::Comment));
            i += 1;
            continue;
        }
        if trimmed[0] == b'['
            && trimmed.ends_with(b"]")
            && trimmed.len() >= 2
            && !trim(&trimmed[1..trimmed.len() - 1]).is_empty()
        {
            let name = text(trim(&trimmed[1..trimmed.len() - 1]));
            let idx = *by_name.entry(name.clone()).or_insert_with(|| {
                sections.push(Section {
                    name,
                    headers: Vec::new(),
                    params: Vec::new(),
                });
                sections.len() - 1
            });
            sections[idx].headers.push(i);
            current = Some(idx);
            lines.push(line(Kind::Header(idx)));
            i += 1;
            continue;
        }
        let Some(eq) = content.iter().position(|b| *b == b'=') else {
            return Err(err(
                i,
                format!(
                    "not a comment, `[section]` or `key = value` line: `{}` (sanoid cannot read the file)",
                    text(&trimmed[..trimmed.len().min(60)])
                ),
            ));
        };
        let key = trim(&content[..eq]);
        if key.is_empty() {
            return Err(err(
                i,
                "a `= value` line without a key (sanoid cannot read the file)".into(),
            ));
        }
        let Some(sec) = current else {
            return Err(err(
                i,
                "a key before the first section (sanoid cannot read the file)".into(),
            ));
        };
        let mut v = &content[eq + 1..];
        while let [first, rest @ ..] = v
            && is_space(*first)
        {
            v = rest;
        }
        let first_line = i;
        lines.push(line(Kind::Param(sec, sections[sec].params.len())));
        let mut param = Param {
            key: text(key),
            values: vec![text(v)],
            first_line,
            last_line: first_line,
            heredoc: false,
        };
        if let Some(eot) = v.strip_prefix(b"<<") {
            // A here document: every following line up to `eot` itself.
            param.heredoc = true;
            param.values.clear();
            let mut j = i + 1;
            loop {
                let Some(&(s, ce, e)) = raw.get(j) else {
                    return Err(err(
                        first_line,
                        format!(
                            "here document without its end marker `{}` (sanoid cannot read the file)",
                            text(eot)
                        ),
                    ));
                };
                let body = &t[s..ce];
                if body.iter().any(|b| matches!(b, b'\r' | b'\n')) {
                    return Err(err(j, "mixed line endings inside a here document".into()));
                }
                lines.push(Line {
                    start: s,
                    content_end: ce,
                    end: e,
                    kind: Kind::HereDoc,
                });
                if body == eot {
                    break;
                }
                param.values.push(text(body));
                j += 1;
            }
            param.last_line = j;
            i = j;
        }
        sections[sec].params.push(param);
        i += 1;
    }
    if sections.iter().all(|s| s.params.is_empty()) {
        return Err(err(
            0,
            "no `key = value` in any section (sanoid cannot read such a file)".into(),
        ));
    }
    Ok(Ini {
        text: t,
        eol,
        lines,
        sections,
    })
}

impl Ini<'_> {
    /// The bytes of a line without its ending.
    pub fn content(&self, line: usize) -> &[u8] {
        let l = &self.lines[line];
        &self.text[l.start..l.content_end]
    }

    /// The blanks a line starts with.
    pub fn indent(&self, line: usize) -> &[u8] {
        let c = self.content(line);
        let c = c.strip_prefix(BOM).unwrap_or(c);
        let n = c.iter().take_while(|b| matches!(b, b' ' | b'\t')).count();
        &c[..n]
    }

    pub fn section(&self, name: &str) -> Option<&Section> {
        self.sections.iter().find(|s| s.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ini(t: &str) -> Ini<'_> {
        parse(t.as_bytes()).unwrap_or_else(|e| panic!("{t:?}: {e}"))
    }

    #[test]
    fn values_are_what_config_inifiles_returns() {
        let i = ini(
            "# c\n[zpool1]\n\tautosnap = yes # master only\n\thourly=36  \n ; x\n[ template_a ]\nk = <<EOT\nline 1\n\nEOT\n[zpool1]\nautosnap = no\n",
        );
        let z = i.section("zpool1").unwrap();
        assert_eq!(z.headers, vec![1, 10]);
        assert_eq!(z.values("autosnap"), vec!["yes # master only", "no"]);
        assert_eq!(z.single("hourly"), Some("36  "), "trailing blanks are kept");
        assert_eq!(z.single("autosnap"), None);
        let t = i.section("template_a").unwrap();
        assert!(t.is_template());
        assert_eq!(t.values("k"), vec!["line 1", ""]);
        assert_eq!((t.params[0].first_line, t.params[0].last_line), (6, 9));
        assert_eq!(i.indent(2), b"\t");
    }

    #[test]
    fn line_endings_follow_the_first_line() {
        let i = ini("[a]\r\nk = v\r\n");
        assert_eq!(i.eol, b"\r\n");
        assert_eq!(i.section("a").unwrap().single("k"), Some("v"));
        // An LF file may carry CRLF lines: the CR goes with the ending.
        let i = ini("[a]\nk = v\r\nj = w");
        assert_eq!(i.section("a").unwrap().single("k"), Some("v"));
        assert_eq!(i.section("a").unwrap().single("j"), Some("w"));
        assert_eq!(i.lines[2].end, i.text.len(), "no final newline");
        // A CRLF file with an LF line: sanoid would glue it to the next.
        let e = parse(b"[a]\r\nk = v\r\n[b]\nk = w\r\n").unwrap_err();
        assert_eq!(e.line, 3);
        assert!(e.reason.contains("mixed line endings"), "{e}");
        // sanoid cannot read a file with a byte-order mark (its parser
        // strips only a doubly encoded one).
        let e = parse("\u{feff}[a]\nk = v\n".as_bytes()).unwrap_err();
        assert!(e.reason.contains("byte-order mark"), "{e}");
        assert_eq!(
            parse(b"\xc3\xaf\xc2\xbb\xc2\xbf[a]\nk = v\n")
                .unwrap()
                .sections[0]
                .name,
            "a"
        );
        // A comment glued to the next lines stays a comment for sanoid.
        let i = ini("[a]\r\n# one\n# two\r\nk = v\r\n");
        assert_eq!(i.section("a").unwrap().single("k"), Some("v"));
    }

    #[test]
    fn what_sanoid_cannot_read_is_refused_with_its_line() {
        for (t, line, want) in [
            ("k = v\n[a]\nk = v\n", 1, "before the first section"),
            ("[a]\nk v\n", 2, "not a comment"),
            ("[a\nk = v\n", 1, "not a comment"),
            ("[ ]\nk = v\n", 1, "not a comment"),
            ("[a]\n = v\n", 2, "without a key"),
            ("[a]\nk = <<EOT\nx\n", 2, "end marker"),
            ("# only a comment\n", 1, "no `key = value`"),
            ("[a]\n[b]\n", 1, "no `key = value`"),
            ("", 1, "no `key = value`"),
        ] {
            let e = parse(t.as_bytes()).unwrap_err();
            assert_eq!(e.line, line, "{t:?}: {e}");
            assert!(e.reason.contains(want), "{t:?}: {e}");
        }
    }

    #[test]
    fn odd_but_valid_lines() {
        // Nothing after the closing bracket makes it a header; `[a] = b` is
        // a key named `[a]` (which sanoid then refuses as unknown).
        let i = ini("[a] \nk=v\n[a] = b\n");
        assert_eq!(i.section("a").unwrap().values("[a]"), vec!["b"]);
        // A key may hold blanks; the value keeps an inner `=`.
        let i = ini("[a]\n my key =x=y\n");
        assert_eq!(i.section("a").unwrap().single("my key"), Some("x=y"));
        // Not UTF-8: read byte for byte.
        let t = b"# caf\xe9\n[a]\nk = v\n";
        assert_eq!(parse(t).unwrap().sections[0].single("k"), Some("v"));
    }
}
