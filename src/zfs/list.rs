//! Parsing `zfs list -H -p` output. One listing per side per pool is all the
//! planner needs; lines with the wrong field count or unparsable numbers are
//! errors naming the line, never guesses.

use std::collections::{BTreeMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use super::names::{valid_dataset_name, valid_resume_token, valid_snapshot_short_name};

/// The columns we ask for, in order. `written` on a filesystem is the data
/// written since its newest snapshot (unsnapshotted changes); on a snapshot,
/// the data written since the previous one.
pub const LIST_PROPS: &[&str] = &[
    "name",
    "type",
    "guid",
    "createtxg",
    "creation",
    "used",
    "referenced",
    "written",
    "userrefs",
    "receive_resume_token",
    "encryption",
];

/// The columns OpenZFS 2.2+ lists without reading each snapshot's
/// properties (its fast path, PR #14110: only these and `numclones`,
/// `inconsistent`, `redacted`, `origin` qualify). Everything else a plan
/// relies on is asked of the few snapshots that need it
/// ([`super::details`]).
pub const FAST_PROPS: &[&str] = &["name", "guid", "createtxg"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Filesystem,
    Volume,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Filesystem => "filesystem",
            Kind::Volume => "volume",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The part after `@` (shared by every snapshot of a listing that has
    /// the same one).
    pub name: Arc<str>,
    pub guid: u64,
    pub createtxg: u64,
    /// Seconds since the epoch.
    pub creation: i64,
    pub used: u64,
    pub referenced: u64,
    pub written: u64,
    /// Number of holds (any tag).
    pub userrefs: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dataset {
    /// Full name, e.g. `zpool1/data`.
    pub name: String,
    pub kind: Kind,
    pub guid: u64,
    pub used: u64,
    pub referenced: u64,
    pub written: u64,
    pub resume_token: Option<String>,
    /// `encryption` is not `off`.
    pub encrypted: bool,
    /// Sorted by `createtxg`, oldest first.
    pub snapshots: Vec<Snapshot>,
}

impl Dataset {
    pub fn newest(&self) -> Option<&Snapshot> {
        self.snapshots.last()
    }
}

/// Every filesystem and volume below (and including) a root, by full name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    pub datasets: BTreeMap<String, Dataset>,
    /// Made from a fast listing ([`FAST_PROPS`]): every dataset's own row is
    /// exact ([`super::details`] completed it), and so are the snapshots it
    /// asked about (each dataset's newest, the newest common one, the last
    /// run's holds); every other snapshot has only its name, guid and
    /// createtxg (its other fields are 0).
    pub partial: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot parse `zfs list` output line {line}: {reason}: {text:?}")]
pub struct ParseError {
    pub line: usize,
    pub reason: String,
    pub text: String,
}

pub(super) fn num(field: &str, what: &str) -> Result<u64, String> {
    field
        .parse::<u64>()
        .map_err(|_| format!("{what} `{field}` is not a number"))
}

/// `-` means "not applicable" in `zfs list -p`.
pub(super) fn num_or_zero(field: &str, what: &str) -> Result<u64, String> {
    if field == "-" {
        Ok(0)
    } else {
        num(field, what)
    }
}

/// Parse a whole `zfs list -H -p -o <LIST_PROPS>` text.
pub fn parse_list(text: &str) -> Result<Listing, ParseError> {
    let mut p = ListParser::default();
    for line in text.lines() {
        p.line(line);
    }
    p.finish()
}

/// The same parse, one line at a time, as the lines arrive from `zfs list`:
/// the listing's text is never held whole (1M snapshots per side are
/// ~130 MiB of text; bench/RESULTS.md). The first bad line is kept and
/// every later line ignored; [`ListParser::finish`] reports it.
#[derive(Debug, Default)]
pub struct ListParser {
    /// Lines of [`FAST_PROPS`] instead of [`LIST_PROPS`].
    fast: bool,
    datasets: BTreeMap<String, Dataset>,
    /// The snapshots of one dataset read since its last line of another
    /// kind (`zfs list -r` lists a dataset's snapshots together): checked
    /// and looked up once, moved to their dataset when the run ends.
    run: Run,
    /// Snapshots listed before their dataset (not how `zfs list -r` orders
    /// them, but not excluded either): attached at the end, with the line
    /// of the first.
    early: Vec<(usize, String, Vec<Snapshot>)>,
    /// One copy of each snapshot name: sanoid (and `zfs snapshot -r`) give
    /// every dataset of a tree the same names, so a listing has few.
    names: HashSet<Arc<str>, BuildHasherDefault<Fnv>>,
    lineno: usize,
    error: Option<ParseError>,
}

#[derive(Debug, Default)]
struct Run {
    dataset: String,
    /// The line of its first snapshot.
    line: usize,
    /// Kept between runs for its capacity: each dataset gets an exact copy.
    snapshots: Vec<Snapshot>,
}

/// FNV-1a: interning hashes every snapshot name of a listing, and these are
/// short and not chosen by an adversary who could profit from collisions.
#[derive(Debug)]
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
        }
    }
}

impl ListParser {
    /// A parser of `zfs list -o name,guid,createtxg` lines ([`FAST_PROPS`]):
    /// datasets get placeholder rows (a filesystem, sizes 0) and snapshots
    /// only their name, guid and createtxg, until [`super::details`]
    /// completes them. Its listing is [`Listing::partial`].
    pub fn fast() -> ListParser {
        ListParser {
            fast: true,
            ..ListParser::default()
        }
    }

    /// One line, without its newline.
    pub fn line(&mut self, raw: &str) {
        self.lineno += 1;
        if self.error.is_some() || raw.is_empty() {
            return;
        }
        if let Err(reason) = self.parse_line(raw) {
            self.error = Some(ParseError {
                line: self.lineno,
                reason,
                text: raw.chars().take(200).collect(),
            });
        }
    }

    /// The current run of snapshots to its dataset (or to `early`).
    fn end_run(&mut self) {
        if self.run.snapshots.is_empty() {
            return;
        }
        let snaps: Vec<Snapshot> = self.run.snapshots.drain(..).collect();
        match self.datasets.get_mut(&self.run.dataset) {
            Some(d) if d.snapshots.is_empty() => d.snapshots = snaps,
            Some(d) => d.snapshots.extend(snaps),
            None => self
                .early
                .push((self.run.line, self.run.dataset.clone(), snaps)),
        }
    }

    fn intern(&mut self, name: &str) -> Arc<str> {
        if let Some(n) = self.names.get(name) {
            return n.clone();
        }
        let n: Arc<str> = Arc::from(name);
        self.names.insert(n.clone());
        n
    }

    fn parse_line(&mut self, raw: &str) -> Result<(), String> {
        // The fields, without allocating for each line.
        let mut f = [""; LIST_PROPS.len()];
        let expected = if self.fast {
            FAST_PROPS.len()
        } else {
            LIST_PROPS.len()
        };
        let mut found = 0;
        for (k, field) in raw.split('\t').enumerate() {
            if let Some(slot) = f.get_mut(k) {
                *slot = field;
            }
            found += 1;
        }
        if found != expected {
            return Err(format!(
                "expected {expected} tab-separated fields, found {found}"
            ));
        }
        if self.fast {
            // name, guid, createtxg: the type is in the name (the listing
            // asks for filesystems, volumes and snapshots only); the rest
            // stays "unknown" until the details come.
            let typ = if f[0].contains('@') {
                "snapshot"
            } else {
                "filesystem"
            };
            f = [f[0], typ, f[1], f[2], "0", "0", "0", "0", "0", "-", "off"];
        }
        let (name, typ) = (f[0], f[1]);
        match typ {
            "filesystem" | "volume" => {
                self.end_run();
                valid_dataset_name(name).map_err(|e| e.to_string())?;
                let token = match f[9] {
                    "-" | "" => None,
                    t => {
                        valid_resume_token(t).map_err(|e| e.to_string())?;
                        Some(t.to_string())
                    }
                };
                let ds = Dataset {
                    name: name.to_string(),
                    kind: if typ == "volume" {
                        Kind::Volume
                    } else {
                        Kind::Filesystem
                    },
                    guid: num(f[2], "guid")?,
                    used: num(f[5], "used")?,
                    referenced: num(f[6], "referenced")?,
                    written: num_or_zero(f[7], "written")?,
                    resume_token: token,
                    encrypted: !matches!(f[10], "off" | "-"),
                    snapshots: Vec::new(),
                };
                if self.datasets.insert(name.to_string(), ds).is_some() {
                    return Err("dataset listed twice".into());
                }
            }
            "snapshot" => {
                let (ds, short) = name
                    .split_once('@')
                    .ok_or_else(|| "snapshot name without `@`".to_string())?;
                if self.run.snapshots.is_empty() || ds != self.run.dataset {
                    valid_dataset_name(ds).map_err(|e| e.to_string())?;
                    self.end_run();
                    self.run.dataset.clear();
                    self.run.dataset.push_str(ds);
                    self.run.line = self.lineno;
                }
                valid_snapshot_short_name(short).map_err(|e| e.to_string())?;
                let creation = f[4]
                    .parse::<i64>()
                    .map_err(|_| format!("creation `{}` is not a number", f[4]))?;
                let snap = Snapshot {
                    name: self.intern(short),
                    guid: num(f[2], "guid")?,
                    createtxg: num(f[3], "createtxg")?,
                    creation,
                    used: num(f[5], "used")?,
                    referenced: num(f[6], "referenced")?,
                    written: num_or_zero(f[7], "written")?,
                    userrefs: num_or_zero(f[8], "userrefs")?,
                };
                self.run.snapshots.push(snap);
            }
            // Bookmarks cannot be the base of -I streams; we list them only if a
            // caller asks for them, and ignore them for planning.
            "bookmark" => {}
            other => return Err(format!("unknown type `{other}`")),
        }
        Ok(())
    }

    /// The listing, or the first bad line.
    pub fn finish(mut self) -> Result<Listing, ParseError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        self.end_run();
        let mut datasets = self.datasets;
        for (lineno, ds, snaps) in self.early {
            let Some(d) = datasets.get_mut(&ds) else {
                return Err(ParseError {
                    line: lineno,
                    reason: format!("snapshot of `{ds}`, which is not in the listing"),
                    text: format!("{ds}@{}", snaps[0].name),
                });
            };
            d.snapshots.extend(snaps);
        }
        for d in datasets.values_mut() {
            d.snapshots.sort_by_key(|s| s.createtxg);
        }
        Ok(Listing {
            datasets,
            partial: self.fast,
        })
    }
}

/// `zfs holds -H` lines: `snapshot<TAB>tag<TAB>timestamp`.
pub fn parse_holds(text: &str) -> Result<Vec<(String, String)>, ParseError> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        if raw.is_empty() {
            continue;
        }
        let f: Vec<&str> = raw.split('\t').collect();
        if f.len() != 3 || !f[0].contains('@') || f[1].is_empty() {
            return Err(ParseError {
                line: i + 1,
                reason: "expected `snapshot<TAB>tag<TAB>timestamp`".into(),
                text: raw.chars().take(200).collect(),
            });
        }
        out.push((f[0].to_string(), f[1].to_string()));
    }
    Ok(out)
}

/// One line of `zpool list -H -p -o name,health,size,allocated,free`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolUsage {
    pub name: String,
    pub health: String,
    pub size: u64,
    pub allocated: u64,
    pub free: u64,
}

pub fn parse_pool_list(text: &str) -> Result<Vec<PoolUsage>, ParseError> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        if raw.is_empty() {
            continue;
        }
        let err = |reason: String| ParseError {
            line: i + 1,
            reason,
            text: raw.chars().take(200).collect(),
        };
        let f: Vec<&str> = raw.split('\t').collect();
        if f.len() != 5 {
            return Err(err(format!(
                "expected 5 tab-separated fields, found {}",
                f.len()
            )));
        }
        out.push(PoolUsage {
            name: f[0].to_string(),
            health: f[1].to_string(),
            size: num(f[2], "size").map_err(err)?,
            allocated: num(f[3], "allocated").map_err(err)?,
            free: num(f[4], "free").map_err(err)?,
        });
    }
    Ok(out)
}

/// What a role change reads of each filesystem and volume.
pub const ROLE_PROPS: &[&str] = &[
    "readonly",
    "mounted",
    "canmount",
    "mountpoint",
    "receive_resume_token",
    "keystatus",
];

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoleProps {
    pub readonly: bool,
    /// `zfs get` source: `local`, `default`, `received`, `inherited from X`.
    pub readonly_source: String,
    /// None for volumes (`-`).
    pub mounted: Option<bool>,
    pub canmount: Option<String>,
    pub mountpoint: Option<String>,
    /// A resumable receive was interrupted here: its partial state (a
    /// hidden `%recv` child, or this dataset itself when it never existed
    /// before) holds space until it completes or is discarded.
    pub partial_receive: bool,
    /// An encrypted dataset whose key is not loaded (a raw-received copy):
    /// it cannot be mounted.
    pub key_unavailable: bool,
}

fn on_off(v: &str, what: &str) -> Result<bool, String> {
    match v {
        "on" | "yes" => Ok(true),
        "off" | "no" => Ok(false),
        _ => Err(format!("{what} `{v}` is not on/off")),
    }
}

/// `zfs get -H -p -o name,property,value,source ROLE_PROPS`, by dataset.
pub fn parse_role_props(text: &str) -> Result<BTreeMap<String, RoleProps>, ParseError> {
    let mut out: BTreeMap<String, RoleProps> = BTreeMap::new();
    for (i, raw) in text.lines().enumerate() {
        if raw.is_empty() {
            continue;
        }
        let err = |reason: String| ParseError {
            line: i + 1,
            reason,
            text: raw.to_string(),
        };
        let f: Vec<&str> = raw.split('\t').collect();
        if f.len() != 4 {
            return Err(err(format!(
                "expected 4 tab-separated fields, got {}",
                f.len()
            )));
        }
        valid_dataset_name(f[0]).map_err(|e| err(e.to_string()))?;
        let e = out.entry(f[0].to_string()).or_default();
        let value = (f[2] != "-").then(|| f[2].to_string());
        match f[1] {
            "readonly" => {
                e.readonly = on_off(f[2], "readonly").map_err(&err)?;
                e.readonly_source = f[3].to_string();
            }
            "mounted" => {
                e.mounted = value
                    .map(|v| on_off(&v, "mounted"))
                    .transpose()
                    .map_err(&err)?
            }
            "canmount" => e.canmount = value,
            "mountpoint" => e.mountpoint = value,
            "receive_resume_token" => e.partial_receive = value.is_some(),
            "keystatus" => e.key_unavailable = f[2] == "unavailable",
            p => return Err(err(format!("unexpected property `{p}`"))),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Hand-made edge cases in the shape of `zfs list -H -p -o <LIST_PROPS>`;
    // tests/real_listings.rs parses output captured from real OpenZFS.
    const SAMPLE: &str = "zpool1\tfilesystem\t4395412948192410397\t1\t1700000000\t1245184\t98304\t0\t-\t-\toff
zpool1@autosnap_2024-01-01_00:00:00_hourly\tsnapshot\t1111\t50\t1700000100\t0\t98304\t98304\t1\t-\toff
zpool1/my data\tfilesystem\t222\t40\t1700000050\t200704\t110592\t4096\t-\t-\toff
zpool1/my data@b\tsnapshot\t3333\t70\t1700000300\t0\t110592\t12288\t0\t-\toff
zpool1/my data@a\tsnapshot\t2222\t60\t1700000200\t12288\t98304\t98304\t0\t-\toff
zpool1/my data#a\tbookmark\t2222\t60\t1700000200\t-\t-\t-\t-\t-\t-
zpool1/vol\tvolume\t444\t80\t1700000400\t1048576\t57344\t0\t-\t-\toff
zpool1/recv\tfilesystem\t555\t90\t1700000500\t98304\t98304\t98304\t-\t1-e604ea4bf-e0-789c63a2\toff
zpool1/enc\tfilesystem\t666\t95\t1700000600\t98304\t98304\t98304\t-\t-\taes-256-gcm
";

    #[test]
    fn the_streaming_parser_keeps_the_first_bad_line_and_shares_names() {
        let text = "zpool1\tfilesystem\t1\t1\t1700000000\t1\t1\t0\t-\t-\toff
zpool1@same\tsnapshot\t11\t5\t1700000100\t0\t1\t1\t0\t-\toff
zpool1/a\tfilesystem\t2\t2\t1700000000\t1\t1\t0\t-\t-\toff
zpool1/a@same\tsnapshot\t12\t6\t1700000100\t0\t1\t1\t0\t-\toff
";
        let mut p = ListParser::default();
        text.lines().for_each(|l| p.line(l));
        let l = p.finish().unwrap();
        let (a, b) = (
            &l.datasets["zpool1"].snapshots[0].name,
            &l.datasets["zpool1/a"].snapshots[0].name,
        );
        assert!(Arc::ptr_eq(a, b), "one copy of a name per listing");
        assert_eq!(l, parse_list(text).unwrap());

        let mut p = ListParser::default();
        for line in [
            "zpool1\tfilesystem\t1\t1\t1700000000\t1\t1\t0\t-\t-\toff",
            "zpool1@x\tsnapshot\tNaN\t5\t1700000100\t0\t1\t1\t0\t-\toff",
            "garbage after the bad line",
        ] {
            p.line(line);
        }
        let e = p.finish().unwrap_err();
        assert_eq!(
            (e.line, e.reason.as_str()),
            (2, "guid `NaN` is not a number")
        );
    }

    #[test]
    fn parses_datasets_snapshots_and_skips_bookmarks() {
        let l = parse_list(SAMPLE).unwrap();
        assert_eq!(l.datasets.len(), 5);
        let d = &l.datasets["zpool1/my data"];
        assert_eq!(d.kind, Kind::Filesystem);
        assert_eq!(d.written, 4096);
        let names: Vec<_> = d.snapshots.iter().map(|s| &*s.name).collect();
        assert_eq!(names, ["a", "b"], "sorted by createtxg, not listing order");
        assert_eq!(d.snapshots[0].guid, 2222);
        assert_eq!(l.datasets["zpool1"].snapshots[0].userrefs, 1);
        assert_eq!(l.datasets["zpool1"].snapshots[0].creation, 1700000100);
        assert_eq!(l.datasets["zpool1/vol"].kind, Kind::Volume);
        assert_eq!(
            l.datasets["zpool1/recv"].resume_token.as_deref(),
            Some("1-e604ea4bf-e0-789c63a2")
        );
        assert!(l.datasets["zpool1/enc"].encrypted);
        assert!(!l.datasets["zpool1"].encrypted);
        assert_eq!(l.datasets["zpool1"].guid, 4395412948192410397);
    }

    #[test]
    fn rejects_wrong_field_count_with_line_number() {
        let bad = "zpool1\tfilesystem\t1\t1\n";
        let e = parse_list(bad).unwrap_err();
        assert_eq!(e.line, 1);
        assert!(
            e.to_string()
                .contains("expected 11 tab-separated fields, found 4")
        );
    }

    #[test]
    fn rejects_garbage_numbers_and_names() {
        let line = |f: &str| {
            SAMPLE
                .lines()
                .next()
                .unwrap()
                .replacen("4395412948192410397", f, 1)
        };
        assert!(
            parse_list(&line("abc"))
                .unwrap_err()
                .reason
                .contains("guid")
        );
        let e = parse_list("zpool1/a;b\tfilesystem\t1\t1\t1\t1\t1\t0\t-\t-\toff\n").unwrap_err();
        assert!(e.reason.contains("not allowed"));
        let e = parse_list("p@s\tsnapshot\t1\t1\t1\t1\t1\t1\t0\t-\toff\n").unwrap_err();
        assert!(e.reason.contains("not in the listing"));
        let e = parse_list("p\tweird\t1\t1\t1\t1\t1\t1\t0\t-\toff\n").unwrap_err();
        assert!(e.reason.contains("unknown type"));
    }

    #[test]
    fn pool_status() {
        let p = parse_pool_list("zpool1\tONLINE\t520093696\t1179648\t518914048\n").unwrap();
        assert_eq!(p[0].health, "ONLINE");
        assert_eq!(p[0].free, 518914048);
        assert!(parse_pool_list("zpool1\tONLINE\n").is_err());
    }

    #[test]
    fn role_props() {
        // The shape of `zfs get -H -p -r -t filesystem,volume -o
        // name,property,value,source ROLE_PROPS`.
        let text = "zpool1\treadonly\ton\tlocal\nzpool1\tmounted\tno\t-\nzpool1\tcanmount\ton\tdefault\nzpool1\tmountpoint\t/zpool1\tdefault\n\
                    zpool1\treceive_resume_token\t-\t-\n\
                    zpool1/vol\treadonly\toff\treceived\nzpool1/vol\tmounted\t-\t-\nzpool1/vol\tcanmount\t-\t-\nzpool1/vol\tmountpoint\t-\t-\n\
                    zpool1/vol\treceive_resume_token\t1-e7a7b7b5f-e0-789c636064000310a501c49c50360710a71\t-\n\
                    zpool1/vol\tkeystatus\tunavailable\t-\nzpool1\tkeystatus\t-\t-\n";
        let m = parse_role_props(text).unwrap();
        assert_eq!(
            m["zpool1"],
            RoleProps {
                readonly: true,
                readonly_source: "local".into(),
                mounted: Some(false),
                canmount: Some("on".into()),
                mountpoint: Some("/zpool1".into()),
                partial_receive: false,
                key_unavailable: false,
            }
        );
        assert_eq!(m["zpool1/vol"].mounted, None);
        assert!(m["zpool1/vol"].partial_receive && m["zpool1/vol"].key_unavailable);
        assert_eq!(m["zpool1/vol"].readonly_source, "received");
        for bad in [
            "zpool1\treadonly\tmaybe\tlocal\n",
            "zpool1\treadonly\ton\n",
            "zpool1\tcompression\ton\tlocal\n",
        ] {
            assert!(parse_role_props(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn holds() {
        let h = parse_holds("zpool1/a@s1\tzfs-nfs-replica:pve2\tSat Nov 21 10:00 2026\nzpool1/a b@s 2\tkeep\tSat Nov 21 10:00 2026\n").unwrap();
        assert_eq!(
            h,
            vec![
                (
                    "zpool1/a@s1".to_string(),
                    "zfs-nfs-replica:pve2".to_string()
                ),
                ("zpool1/a b@s 2".to_string(), "keep".to_string()),
            ]
        );
        assert!(parse_holds("garbage\n").is_err());
    }
}
