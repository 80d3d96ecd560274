//! Parser and planner on `zfs list -H -p` output captured from real OpenZFS
//! 2.1.11 (the lab): a master and a standby after a few runs, with a raw
//! encrypted tree, a bookmark, a volume, names with spaces and colons, a
//! diverged dataset and an interrupted receive (resume token).
//! Captured with: `zfs list -H -p -o name,type,guid,createtxg,creation,used,referenced,written,userrefs,receive_resume_token,encryption -t filesystem,volume,snapshot[,bookmark] -r zpool2`

use std::collections::HashMap;

use zfs_nfs_replica::plan::{self, Action, Conflict};
use zfs_nfs_replica::zfs::{Kind, parse_list};

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
