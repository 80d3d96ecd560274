//! sanoid.conf as people write it: the layouts the rewrite must get right,
//! each with the datasets sanoid must snapshot once the file is rewritten
//! for the master, and for a standby. Real sanoid is the judge
//! (tests/lab.rs); the datasets are [`TREE`].

/// The datasets every shape is judged on (both pools, as the lab makes them).
pub const TREE: &[&str] = &[
    "zpool1",
    "zpool1/data-nfs-share",
    "zpool1/data-nfs-share/sub",
    "zpool1/vm-disks",
    "zpool1/vm-disks/a",
    "zpool2",
    "zpool2/photos",
    "zpool2/photos/2024",
    "zpool2/scratch",
];

pub struct Shape {
    pub name: &'static str,
    pub conf: String,
    /// The managed datasets (`[sanoid] datasets`, by default the pools).
    pub managed: &'static [&'static str],
    /// What sanoid snapshots with the file rewritten for the master...
    pub master: &'static [&'static str],
    /// ...and for a standby.
    pub standby: &'static [&'static str],
}

const POOLS: &[&str] = &["zpool1", "zpool2"];
const ALL: &[&str] = TREE;
const ZPOOL1: &[&str] = &[
    "zpool1",
    "zpool1/data-nfs-share",
    "zpool1/data-nfs-share/sub",
    "zpool1/vm-disks",
    "zpool1/vm-disks/a",
];

fn shape(
    name: &'static str,
    conf: &str,
    managed: &'static [&'static str],
    master: &'static [&'static str],
    standby: &'static [&'static str],
) -> Shape {
    Shape {
        name,
        conf: conf.to_string(),
        managed,
        master,
        standby,
    }
}

const LAB: &str = "# NFS pools\n[zpool1]\n\tuse_template = production\n\trecursive = yes\n\n[zpool2]\n\tuse_template = production\n\trecursive = yes\n\tautosnap = yes\n\n[template_production]\n\tfrequently = 0\n\thourly = 36\n\tdaily = 30\n\tautosnap = yes\n\tautoprune = yes\n";

pub fn all() -> Vec<Shape> {
    vec![
        shape("pool-roots-template-recursive", LAB, POOLS, ALL, &[]),
        shape(
            "child-sections-only",
            "# as zfs-nfs-replica.sh's documentation showed it\n[zpool1/data-nfs-share]\n\tuse_template = production\n\trecursive = yes\n\n[zpool2/photos]\n\tuse_template = production\n\trecursive = yes\n\n[template_production]\n\thourly = 36\n\tautosnap = yes\n",
            POOLS,
            &[
                "zpool1/data-nfs-share",
                "zpool1/data-nfs-share/sub",
                "zpool2/photos",
                "zpool2/photos/2024",
            ],
            &[],
        ),
        shape(
            "own-autosnap-below-a-recursive-section",
            "[zpool1]\n\trecursive = yes\n\tautosnap = yes\n[zpool1/vm-disks]\n\tautosnap = yes\n\thourly = 4\n[zpool2/scratch]\n\tautosnap = yes\n",
            &["zpool1"],
            &[
                "zpool1",
                "zpool1/data-nfs-share",
                "zpool1/data-nfs-share/sub",
                "zpool1/vm-disks",
                "zpool1/vm-disks/a",
                "zpool2/scratch",
            ],
            &["zpool2/scratch"],
        ),
        shape(
            "autosnap-from-a-template-only",
            "[zpool1]\n\tuse_template = snap\n\trecursive = yes\n[zpool2/photos]\n\tuse_template = snap\n[template_snap]\n\tautosnap = yes\n\thourly = 12\n",
            POOLS,
            &[
                "zpool1",
                "zpool1/data-nfs-share",
                "zpool1/data-nfs-share/sub",
                "zpool1/vm-disks",
                "zpool1/vm-disks/a",
                "zpool2/photos",
            ],
            &[],
        ),
        shape("crlf", &LAB.replace('\n', "\r\n"), POOLS, ALL, &[]),
        shape(
            "trailing-comments",
            "[zpool1]\n\trecursive = yes\n\tautosnap = yes # master only\n[zpool2]\n\tautosnap = no ; off on the standby\n\trecursive = yes\n",
            POOLS,
            ALL,
            &[],
        ),
        shape(
            "no-final-newline",
            "[zpool1]\n\trecursive = yes\n\thourly = 2",
            POOLS,
            ZPOOL1,
            &[],
        ),
        shape(
            "a-managed-pool-without-a-section",
            "[zpool1]\n\trecursive = yes\n\tautosnap = yes\n",
            POOLS,
            ZPOOL1,
            &[],
        ),
        shape(
            "here-documents",
            "[zpool1]\n\trecursive = yes\n\tscript_timeout = <<EOT\n5\nEOT\n\tautosnap = <<EOT\nyes\nEOT\n",
            POOLS,
            ZPOOL1,
            &[],
        ),
        shape(
            "process-children-only",
            "[zpool1]\n\trecursive = yes\n\tprocess_children_only = yes\n\tautosnap = yes\n",
            POOLS,
            &[
                "zpool1/data-nfs-share",
                "zpool1/data-nfs-share/sub",
                "zpool1/vm-disks",
                "zpool1/vm-disks/a",
            ],
            &[],
        ),
        shape(
            "zfs-recursion",
            "[zpool1]\n\trecursive = zfs\n\tautosnap = yes\n[zpool1/vm-disks]\n\thourly = 4\n",
            POOLS,
            ZPOOL1,
            &[],
        ),
        shape(
            "a-key-written-twice",
            "[zpool1]\n\trecursive = yes\n\tautosnap = no\n\tautosnap = no\n",
            POOLS,
            ZPOOL1,
            &[],
        ),
        shape(
            "a-section-written-twice",
            "[zpool1]\n\trecursive = yes\n[zpool2]\n\trecursive = yes\n\tautosnap = yes\n[zpool1]\n\tautosnap = yes\n\thourly = 6\n",
            POOLS,
            ALL,
            &[],
        ),
        shape(
            "user-template-default",
            "[template_default]\n\tautosnap = yes\n\thourly = 6\n[zpool1]\n\trecursive = yes\n[zpool2/scratch]\n\thourly = 1\n",
            &["zpool1"],
            &[
                "zpool1",
                "zpool1/data-nfs-share",
                "zpool1/data-nfs-share/sub",
                "zpool1/vm-disks",
                "zpool1/vm-disks/a",
                "zpool2/scratch",
            ],
            &["zpool2/scratch"],
        ),
        shape(
            "a-trailing-blank-after-no",
            "[zpool1]\n\trecursive = yes\n\tautosnap = no \n",
            POOLS,
            ZPOOL1,
            &[],
        ),
        shape(
            "a-path-key",
            "[nfs share]\n\tpath = zpool1/data-nfs-share\n\trecursive = yes\n\tautosnap = yes\n",
            POOLS,
            &["zpool1/data-nfs-share", "zpool1/data-nfs-share/sub"],
            &[],
        ),
        shape(
            "semicolons-and-odd-indentation",
            "; replication pools\n[zpool1]\nrecursive=yes\n    autosnap=yes\n[zpool2]\n use_template=p\n[template_p]\nautosnap=yes\n",
            POOLS,
            &[
                "zpool1",
                "zpool1/data-nfs-share",
                "zpool1/data-nfs-share/sub",
                "zpool1/vm-disks",
                "zpool1/vm-disks/a",
                "zpool2",
            ],
            &[],
        ),
    ]
}

/// Files sanoid itself cannot load: the rewrite refuses them too (and
/// changes nothing), naming the line.
pub fn unreadable() -> Vec<(&'static str, String)> {
    vec![
        (
            "a-byte-order-mark",
            "\u{feff}[zpool1]\n\trecursive = yes\n\tautosnap = yes\n".into(),
        ),
        (
            "crlf-with-a-section-appended-with-lf",
            "[zpool1]\r\n\trecursive = yes\r\n\tautosnap = yes\r\n\n[zpool2]\n\tautosnap = no\n"
                .into(),
        ),
        (
            "a-key-before-the-first-section",
            "autosnap = no\n[zpool1]\n\trecursive = yes\n".into(),
        ),
        (
            "a-line-without-equals",
            "[zpool1]\n\trecursive yes\n".into(),
        ),
        (
            "a-here-document-without-its-end",
            "[zpool1]\n\tautosnap = <<EOT\nyes\n".into(),
        ),
    ]
}

/// The datasets a `sanoid --take-snapshots --readonly --verbose` output
/// says it would snapshot: each `taking snapshot DS@...` line, and for
/// `(zfs recursive)` every dataset below DS in [`TREE`] too.
pub fn snapshotted(output: &str) -> std::collections::BTreeSet<String> {
    let mut set = std::collections::BTreeSet::new();
    for l in output.lines() {
        let Some(rest) = l.strip_prefix("taking snapshot ") else {
            continue;
        };
        let Some((ds, tail)) = rest.split_once('@') else {
            continue;
        };
        set.insert(ds.to_string());
        if tail.ends_with("(zfs recursive)") {
            for t in TREE {
                if t.starts_with(&format!("{ds}/")) {
                    set.insert(t.to_string());
                }
            }
        }
    }
    set
}
