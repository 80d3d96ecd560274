//! Parser and planner on `zfs list -H -p` output captured from real OpenZFS
//! 2.1.11 (the lab): a master and a standby after a few runs, with a raw
//! encrypted tree, a bookmark, a volume, names with spaces and colons, a
//! diverged dataset and an interrupted receive (resume token).
//! Captured with: `zfs list -H -p -o name,type,guid,createtxg,creation,used,referenced,written,userrefs,receive_resume_token,encryption -t filesystem,volume,snapshot[,bookmark] -r zpool2`

use std::collections::HashMap;

use zfs_nfs_replica::plan::{self, Action, Conflict};
use zfs_nfs_replica::zfs::{Kind, ListParser, parse_list};

const MASTER: &str = include_str!("fixtures/zfs-list-master.txt");
const STANDBY: &str = include_str!("fixtures/zfs-list-standby.txt");

#[test]
fn parses_real_listings() {
    let m = parse_list(MASTER).unwrap();
    let s = parse_list(STANDBY).unwrap();
    assert_eq!(m.datasets.len(), 7);
    assert_eq!(m.datasets["zpool2/vol"].kind, Kind::Volume);
    assert!(m.datasets["zpool2/enc"].encrypted && m.datasets["zpool2/enc/child"].encrypted);
    let odd = &m.datasets["zpool2/odd:name.v-1_x y"];
    assert_eq!(
        &*odd.snapshots[0].name,
        "autosnap_2026-11-21_11:00:00_hourly"
    );
    // The bookmark shares its snapshot's guid but is not a snapshot.
    assert_eq!(m.datasets["zpool2/data"].snapshots.len(), 6);
    let token = s.datasets["zpool2/partial"]
        .resume_token
        .as_deref()
        .unwrap();
    assert!(token.starts_with("1-") && token.len() > 100);
    // Same guid on both sides, different createtxg (txgs are per pool).
    let (a, b) = (
        &m.datasets["zpool2/data"].snapshots[5],
        &s.datasets["zpool2/data"].snapshots[5],
    );
    assert_eq!((&*a.name, a.guid), (&*b.name, b.guid));
    assert_ne!(a.createtxg, b.createtxg);
    assert_eq!(s.datasets["zpool2/my data"].written, 0);
}

#[test]
fn plans_real_listings() {
    let m = parse_list(MASTER).unwrap();
    let s = parse_list(STANDBY).unwrap();
    let p = plan::plan(&m, "zpool2", &s, "zpool2", &plan::Options::default());
    let by: HashMap<&str, &Action> = p
        .items
        .iter()
        .map(|i| (i.source.as_str(), &i.action))
        .collect();
    assert!(matches!(by["zpool2"], Action::UpToDate { snapshot } if snapshot.name == "s6"));
    assert!(matches!(by["zpool2/data"], Action::UpToDate { .. }));
    assert!(matches!(by["zpool2/vol"], Action::UpToDate { .. }));
    assert!(matches!(
        by["zpool2/enc"],
        Action::Full {
            raw: true,
            force: false,
            ..
        }
    ));
    assert!(matches!(
        by["zpool2/enc/child"],
        Action::Full { raw: true, .. }
    ));
    assert!(matches!(
        by["zpool2/odd:name.v-1_x y"],
        Action::Full { raw: false, .. }
    ));
    let Action::Conflict(Conflict::Diverged {
        common,
        source_newer,
        receiver_newer,
    }) = by["zpool2/my data"]
    else {
        panic!("{:?}", by["zpool2/my data"]);
    };
    assert_eq!(common.name, "s3");
    assert_eq!(
        source_newer
            .iter()
            .map(|x| x.name.as_str())
            .collect::<Vec<_>>(),
        ["s6"]
    );
    assert_eq!(
        receiver_newer
            .iter()
            .map(|x| x.name.as_str())
            .collect::<Vec<_>>(),
        ["standby1"]
    );
    assert_eq!(receiver_newer[0].written, 69632);
    assert_eq!(p.receiver_only, ["zpool2/partial"]);
}

/// The fast listing of OpenZFS 2.3.9 (the lab's Debian 13 image), completed
/// by `zfs get` of what a run asks about, equals the full listing on every
/// dataset and every snapshot asked, and plans the same. Captured from one
/// tree (a volume, a held snapshot, a name with a space and a colon, an
/// interrupted receive) with:
/// `zfs list -H -p -t filesystem,volume,snapshot -r -o <LIST_PROPS> zpool1`,
/// `... -o name,guid,createtxg zpool1` and
/// `zfs get -H -p -o name,property,value <DETAIL_PROPS> <every name>`, of
/// which each case keeps the rows of the names it asks (`zfs get` prints
/// each name's rows on their own).
#[test]
fn a_completed_fast_listing_of_openzfs_2_3_equals_the_full_one_where_asked() {
    let full = parse_list(include_str!("fixtures/zfs-list-2.3-full.txt")).unwrap();
    let fast_text = include_str!("fixtures/zfs-list-2.3-fast.txt");
    let get_text = include_str!("fixtures/zfs-get-2.3-details.txt");
    let fast_with = |asked: &[String]| {
        let mut p = ListParser::fast();
        fast_text.lines().for_each(|l| p.line(l));
        let mut fast = p.finish().unwrap();
        assert!(fast.partial);
        let rows: String = get_text
            .lines()
            .filter(|l| asked.iter().any(|a| l.split('\t').next() == Some(a)))
            .map(|l| format!("{l}\n"))
            .collect();
        zfs_nfs_replica::zfs::details::complete(&mut fast, asked, &rows).unwrap();
        fast
    };
    // Every dataset, the newest snapshots, the one before (the common one
    // of a receiver a snapshot behind) and the held one.
    let mut asked: Vec<String> = full.datasets.keys().cloned().collect();
    for d in ["zpool1", "zpool1/a", "zpool1/odd:name x", "zpool1/v"] {
        for h in ["17", "18"] {
            asked.push(format!("{d}@autosnap_2026-12-01_{h}:00:00_hourly"));
        }
    }
    asked.push("zpool1/a@s1".into());
    let fast = fast_with(&asked);
    for (name, f) in &full.datasets {
        let d = &fast.datasets[name];
        assert_eq!(
            (
                &d.kind,
                d.guid,
                d.used,
                d.referenced,
                d.written,
                &d.resume_token,
                d.encrypted
            ),
            (
                &f.kind,
                f.guid,
                f.used,
                f.referenced,
                f.written,
                &f.resume_token,
                f.encrypted
            ),
            "{name}"
        );
        assert_eq!(d.snapshots.len(), f.snapshots.len(), "{name}");
        for (a, b) in d.snapshots.iter().zip(&f.snapshots) {
            assert_eq!(
                (&a.name, a.guid, a.createtxg),
                (&b.name, b.guid, b.createtxg)
            );
            if asked.contains(&format!("{name}@{}", a.name)) {
                assert_eq!(a, b, "{name}");
            }
        }
    }
    assert_eq!(fast.datasets["zpool1/v"].kind, Kind::Volume);
    assert_eq!(fast.datasets["zpool1/a"].snapshots[0].userrefs, 1);
    assert!(fast.datasets["zpool1/partial"].resume_token.is_some());
    // The planner gives the same answer from either, against a receiver
    // that has it all, and against an untouched one a snapshot behind. (A
    // conflict shows snapshots that were not asked: the engine lists in
    // full before acting on one, tests/engine.rs.)
    let opts = plan::Options::default();
    let mut behind = full.clone();
    for d in behind.datasets.values_mut() {
        d.snapshots.pop();
        d.written = 0;
    }
    behind.datasets.remove("zpool1/partial");
    for receiver in [&full, &behind] {
        let a = plan::plan(&fast, "zpool1", receiver, "zpool1", &opts);
        let b = plan::plan(&full, "zpool1", receiver, "zpool1", &opts);
        assert_eq!(a, b);
    }
}
