//! Listing both sides of a pool, at once: one `zfs list` per side for all
//! pools of a run when it can, the quarantine taken out of both.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use tracing::debug;

use super::{Engine, PoolError, PoolJob, checked};
use crate::plan::{Action, Item};
use crate::runner::Runner;
use crate::side::Side;
use crate::ssh::Peer;
use crate::zfs::{self, Dataset, Listing, Op, Snapshot};

impl<R: Runner> Engine<'_, R> {
    pub async fn list_both(
        &mut self,
        job: &PoolJob,
        peer: &Peer,
    ) -> Result<(Listing, Listing), PoolError> {
        let (src, dst, quarantine) = list_pair(
            self.runner,
            self.settings.command_timeout,
            (Side::Local, &job.source),
            (Side::Remote(peer), &job.target),
        )
        .await?;
        self.quarantine = quarantine;
        Ok((src, dst))
    }
}

/// One listing of both sides: source, receiver, the receiver's quarantine.
pub(super) type Listed = Result<(Listing, Listing, Vec<String>), PoolError>;

/// Both sides of every job listed: one command per side for all of them
/// when there are several; one listing per job if that fails (a missing
/// pool, overlapping roots), so that each error lands on its own job.
pub(super) async fn list_many<R: Runner>(
    runner: &R,
    timeout: Duration,
    peer: &Peer,
    jobs: &[PoolJob],
) -> Vec<Option<Listed>> {
    let remote = Side::Remote(peer);
    if jobs.len() > 1
        && let Ok((mut src, mut dst)) = list_roots(
            runner,
            timeout,
            (Side::Local, jobs.iter().map(|j| j.source.clone()).collect()),
            (remote, jobs.iter().map(|j| j.target.clone()).collect()),
        )
        .await
    {
        return jobs
            .iter()
            .map(|j| Some(split(&mut src, &mut dst, j)))
            .collect();
    }
    let mut out = Vec::new();
    for j in jobs {
        out.push(Some(
            list_pair(
                runner,
                timeout,
                (Side::Local, &j.source),
                (remote, &j.target),
            )
            .await,
        ));
    }
    out
}

/// What one job's transfers started from: the listings of its last pass
/// and the items whose streams all completed; None when that cannot be
/// told from the plan (a stream failed: a `-I` stream may have landed part
/// of its snapshots), so that job is listed again in full.
pub(super) type Sent<'a> = Option<(&'a (Listing, Listing), Vec<&'a Item>)>;

/// Both sides of every job after its transfers: one listing of the datasets
/// alone per side, for all jobs, both at once, with the snapshots taken from
/// the plan ([`after_transfers`]). A job whose state the plan cannot tell,
/// or all of them when the datasets listing fails (a peer whose `serve`
/// predates it, say), is listed again in full, and the debug log says why.
pub(super) async fn after_many<R: Runner>(
    runner: &R,
    timeout: Duration,
    peer: &Peer,
    jobs: &[PoolJob],
    sent: Vec<Sent<'_>>,
) -> Vec<Option<Result<(Listing, Listing), PoolError>>> {
    let mut out: Vec<Option<Result<(Listing, Listing), PoolError>>> =
        jobs.iter().map(|_| None).collect();
    if jobs.is_empty() {
        return out;
    }
    let (sop, dop) = (
        Op::ListDatasets {
            roots: jobs.iter().map(|j| j.source.clone()).collect(),
        },
        Op::ListDatasets {
            roots: jobs.iter().map(|j| j.target.clone()).collect(),
        },
    );
    let remote = Side::Remote(peer);
    let mut sizes = if sent.iter().any(Option::is_some) {
        match list_ops(runner, timeout, (Side::Local, &sop), (remote, &dop)).await {
            Ok(l) => Some(l),
            Err(e) => {
                debug!(
                    "listing the datasets after the transfers failed ({e}); listing everything again"
                );
                None
            }
        }
    } else {
        None
    };
    let mut again = Vec::new();
    for (k, j) in jobs.iter().enumerate() {
        let merged = match (sizes.as_mut(), &sent[k]) {
            (Some((s, d)), Some((before, items))) => match split(s, d, j) {
                Ok((s, d, _)) => after_transfers(before, items, &(s, d)),
                Err(e) => Err(e.to_string()),
            },
            (None, Some(_)) => Err("no datasets listing".into()),
            (_, None) => Err("a transfer did not complete".into()),
        };
        match merged {
            Ok(l) => out[k] = Some(Ok(l)),
            Err(why) => {
                debug!(
                    "{}: state after the transfers not known from the plan ({why}); listing it again",
                    j.source
                );
                again.push(k);
            }
        }
    }
    let jobs_again: Vec<PoolJob> = again.iter().map(|k| jobs[*k].clone()).collect();
    let mut relisted = list_many(runner, timeout, peer, &jobs_again).await;
    for (n, k) in again.into_iter().enumerate() {
        out[k] = relisted[n].take().map(|r| r.map(|(s, d, _)| (s, d)));
    }
    out
}

/// One job's part of a listing of several roots, taken out of it (the roots
/// of one listing do not overlap: each dataset is one job's).
pub(super) fn split(src: &mut Listing, dst: &mut Listing, j: &PoolJob) -> Listed {
    let part = |l: &mut Listing, root: &str| {
        let mine: Vec<String> = l
            .datasets
            .keys()
            .filter(|n| crate::zfs::names::is_at_or_below(n, root))
            .cloned()
            .collect();
        Listing {
            datasets: mine
                .into_iter()
                .filter_map(|n| l.datasets.remove_entry(&n))
                .collect(),
            partial: l.partial,
        }
    };
    let mut s = part(src, &j.source);
    let mut d = part(dst, &j.target);
    if !s.datasets.contains_key(&j.source) {
        return Err(PoolError::Parse {
            side: "local".into(),
            msg: format!("{} is missing from its own listing", j.source),
        });
    }
    crate::quarantine::split_quarantine(&mut s, &j.source);
    let q = crate::quarantine::split_quarantine(&mut d, &j.target);
    Ok((s, d, q))
}

/// List a source tree and a receiver tree (either may be local or remote),
/// both at once: the slower listing sets the pace, not the sum. Datasets
/// `resolve` set aside are taken out of both (they are never replicated,
/// planned or size-checked); the receiver's are returned apart.
pub async fn list_pair<R: Runner>(
    runner: &R,
    timeout: Duration,
    (sside, sroot): (Side<'_>, &str),
    (dside, droot): (Side<'_>, &str),
) -> Result<(Listing, Listing, Vec<String>), PoolError> {
    let (mut src, mut dst) = list_roots(
        runner,
        timeout,
        (sside, vec![sroot.to_string()]),
        (dside, vec![droot.to_string()]),
    )
    .await?;
    if !src.datasets.contains_key(sroot) {
        return Err(PoolError::Parse {
            side: sside.label(),
            msg: format!("{sroot} is missing from its own listing"),
        });
    }
    crate::quarantine::split_quarantine(&mut src, sroot);
    let quarantine = crate::quarantine::split_quarantine(&mut dst, droot);
    Ok((src, dst, quarantine))
}

/// `zfs list` of some roots on one side and some on the other, at once.
pub(super) async fn list_roots<R: Runner>(
    runner: &R,
    timeout: Duration,
    (sside, sroots): (Side<'_>, Vec<String>),
    (dside, droots): (Side<'_>, Vec<String>),
) -> Result<(Listing, Listing), PoolError> {
    let sop = Op::List { roots: sroots };
    let dop = Op::List { roots: droots };
    list_ops(runner, timeout, (sside, &sop), (dside, &dop)).await
}

/// Two listings, one per side, at once.
pub(super) async fn list_ops<R: Runner>(
    runner: &R,
    timeout: Duration,
    (sside, sop): (Side<'_>, &Op),
    (dside, dop): (Side<'_>, &Op),
) -> Result<(Listing, Listing), PoolError> {
    let started = Instant::now();
    let (src, dst) = tokio::join!(
        list_one(runner, timeout, sside, sop),
        list_one(runner, timeout, dside, dop)
    );
    debug!(
        "listed {} and {} in {:.2}s",
        sside.show(sop),
        dside.show(dop),
        started.elapsed().as_secs_f64()
    );
    Ok((src?, dst?))
}

/// One listing on one side, parsed as its lines arrive: a big listing's
/// text is never held whole.
pub async fn list_one<R: Runner>(
    runner: &R,
    timeout: Duration,
    side: Side<'_>,
    op: &Op,
) -> Result<Listing, PoolError> {
    let mut parser = match op {
        Op::ListFast { .. } => zfs::ListParser::fast(),
        _ => zfs::ListParser::default(),
    };
    let res = runner
        .output_lines(&side.cmd(op), timeout, &mut |line| parser.line(line))
        .await;
    checked(side, op, res)?;
    parser.finish().map_err(|e| PoolError::Parse {
        side: side.label(),
        msg: format!("`{}`: {e}", side.show(op)),
    })
}

/// Both sides as the transfers left them, without listing every snapshot
/// again: the datasets' own rows (sizes, guid, resume token) come from
/// `sizes`, a listing of the datasets alone ([`Op::ListDatasets`]); the
/// snapshots from `before`, plus on the receiver what `sent` carried (every
/// source snapshot a `-I` stream covers, as the plan chose it). `sent` are
/// the items whose every stream completed. Only datasets known before, or
/// created by a received stream, are kept: a dataset that appears during
/// the run is listed by the next one.
///
/// An `Err` says why the sizes listing cannot be explained by `before` and
/// the plan (a dataset replaced during the run, a received snapshot not in
/// the source's listing): the caller then lists everything again. A
/// received snapshot's `createtxg` on the receiver is not known without
/// asking it; the values given keep the receiver's order (after every
/// snapshot kept), which is all the planner and the status read from it.
pub(super) fn after_transfers(
    before: &(Listing, Listing),
    sent: &[&Item],
    sizes: &(Listing, Listing),
) -> Result<(Listing, Listing), String> {
    let (src_before, dst_before) = before;
    // Target -> its snapshots now, and its guid when it must be the same
    // dataset as before (an incremental receive; a full one makes it anew).
    let mut received: BTreeMap<&str, (Vec<Snapshot>, Option<u64>)> = BTreeMap::new();
    for item in sent {
        let src = src_before
            .datasets
            .get(&item.source)
            .ok_or_else(|| format!("{} is not in the listing it was planned from", item.source))?;
        let at = |guid: u64| {
            src.snapshots
                .iter()
                .position(|s| s.guid == guid)
                .ok_or_else(|| format!("{}: a sent snapshot is not in its listing", item.source))
        };
        let (kept, range) = match &item.action {
            Action::Full { first, last, .. } => (None, at(first.guid)?..=at(last.guid)?),
            Action::Incremental { base, last, .. } => {
                (Some(base.guid), at(base.guid)? + 1..=at(last.guid)?)
            }
            _ => continue,
        };
        let mut same = None;
        let mut snaps: Vec<Snapshot> = match kept {
            // `-I` from the common snapshot: the receiver keeps what it had
            // up to it; anything after it was rolled back, or there was
            // nothing (the plan sends only onto the newest common one).
            Some(base) => {
                let was = dst_before.datasets.get(&item.target).ok_or_else(|| {
                    format!("{} is not in the listing it was planned from", item.target)
                })?;
                same = Some(was.guid);
                let old = &was.snapshots;
                let upto = old
                    .iter()
                    .position(|s| s.guid == base)
                    .ok_or_else(|| format!("{}: the base is not in its listing", item.target))?;
                old[..=upto].to_vec()
            }
            None => Vec::new(),
        };
        let carried = src.snapshots.get(range).ok_or_else(|| {
            format!(
                "{}: the snapshots sent are not in order in its listing",
                item.source
            )
        })?;
        let after = snaps.last().map_or(0, |s| s.createtxg);
        for (txg, s) in (after + 1..).zip(carried) {
            snaps.push(Snapshot {
                createtxg: txg,
                used: 0,
                userrefs: 0,
                ..s.clone()
            });
        }
        received.insert(&item.target, (snaps, same));
    }
    let side = |before: &Listing,
                sizes: &Listing,
                received: &BTreeMap<&str, (Vec<Snapshot>, Option<u64>)>| {
        let mut out = Listing {
            partial: before.partial,
            ..Listing::default()
        };
        for (name, d) in &sizes.datasets {
            let snapshots = match (received.get(name.as_str()), before.datasets.get(name)) {
                (Some((_, Some(guid))), _) if *guid != d.guid => {
                    return Err(format!("{name} was replaced during the run"));
                }
                (Some((r, _)), _) => r.clone(),
                (None, Some(b)) if b.guid == d.guid => b.snapshots.clone(),
                (None, Some(_)) => return Err(format!("{name} was replaced during the run")),
                (None, None) => continue,
            };
            out.datasets.insert(
                name.clone(),
                Dataset {
                    snapshots,
                    ..d.clone()
                },
            );
        }
        if let Some(missing) = received.keys().find(|t| !out.datasets.contains_key(**t)) {
            return Err(format!("{missing} received a stream but is not listed"));
        }
        Ok(out)
    };
    Ok((
        side(src_before, &sizes.0, &BTreeMap::new())?,
        side(dst_before, &sizes.1, &received)?,
    ))
}

/// Names per `zfs get` or `zfs list -d 1`: a command line stays short.
const CHUNK: usize = 500;

/// One command per `CHUNK` names (a command line stays short), one after
/// the other on `side`; their outputs, in order.
pub(super) async fn chunked<R: Runner>(
    runner: &R,
    timeout: Duration,
    side: Side<'_>,
    names: &[String],
    op: impl Fn(Vec<String>) -> Op,
) -> Result<String, super::PoolError> {
    let mut text = String::new();
    for chunk in names.chunks(CHUNK) {
        let op = op(chunk.to_vec());
        debug!(command = %side.show(&op), "run");
        let out = runner.output(&side.cmd(&op), timeout).await;
        text.push_str(&checked(side, &op, out)?);
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{self, Options, standing};
    use crate::testutil::{ds, listing};

    fn guids(l: &Listing, name: &str) -> Vec<u64> {
        l.datasets[name].snapshots.iter().map(|s| s.guid).collect()
    }

    /// The datasets alone, as `zfs list -t filesystem,volume` shows them
    /// after the run: new sizes, no snapshots.
    fn sizes_of(l: &Listing, used: u64) -> Listing {
        let mut out = l.clone();
        for d in out.datasets.values_mut() {
            d.snapshots.clear();
            d.used = used;
            d.written = 0;
        }
        out
    }

    fn sent(plan: &plan::Plan) -> Vec<&Item> {
        plan.items
            .iter()
            .filter(|i| matches!(i.action, Action::Full { .. } | Action::Incremental { .. }))
            .collect()
    }

    #[test]
    fn an_incremental_and_a_new_child_leave_what_a_listing_would_show() {
        let src = listing(vec![
            ds("zpool1", "a:1:10 b:2:20 c:3:30 d:4:40", 0),
            ds("zpool1/new", "b:12:20 c:13:30", 0),
        ]);
        let dst = listing(vec![ds("backup/zpool1", "a:1:100 b:2:110", 0)]);
        let plan = plan::plan(&src, "zpool1", &dst, "backup/zpool1", &Options::default());
        let mut after_dst = sizes_of(&dst, 7 << 20);
        after_dst
            .datasets
            .insert("backup/zpool1/new".into(), sizes_of(&listing(vec![ds("backup/zpool1/new", "", 0)]), 9).datasets["backup/zpool1/new"].clone());
        let before = (src.clone(), dst.clone());
        let (s, d) =
            after_transfers(&before, &sent(&plan), &(sizes_of(&src, 5 << 20), after_dst)).unwrap();
        // Source: its snapshots as planned from, its sizes as now.
        assert_eq!(guids(&s, "zpool1"), [1, 2, 3, 4]);
        assert_eq!(s.datasets["zpool1"].used, 5 << 20);
        // Receiver: what it had up to the base, then every snapshot `-I`
        // carried, in order; the new child whole.
        assert_eq!(guids(&d, "backup/zpool1"), [1, 2, 3, 4]);
        assert_eq!(guids(&d, "backup/zpool1/new"), [12, 13]);
        assert_eq!(d.datasets["backup/zpool1"].used, 7 << 20);
        let txg: Vec<u64> = d.datasets["backup/zpool1"]
            .snapshots
            .iter()
            .map(|s| s.createtxg)
            .collect();
        assert!(txg.is_sorted() && txg[..2] == [100, 110], "{txg:?}");
        // As a second listing would: both in sync, nothing newer anywhere.
        for (sname, tname) in [
            ("zpool1", "backup/zpool1"),
            ("zpool1/new", "backup/zpool1/new"),
        ] {
            let st = standing(&s.datasets[sname], &d.datasets[tname]);
            assert_eq!(
                st.common.map(|c| c.guid),
                s.datasets[sname].snapshots.last().map(|c| c.guid)
            );
            assert!(st.source_newer.is_empty() && st.receiver_newer.is_empty());
        }
        let again = plan::plan(&s, "zpool1", &d, "backup/zpool1", &Options::default());
        assert!(
            again
                .items
                .iter()
                .all(|i| matches!(i.action, Action::UpToDate { .. })),
            "{again:#?}"
        );
    }

    #[test]
    fn a_rolled_back_receiver_keeps_its_snapshots_and_gets_the_new_ones() {
        // Writes on the receiver since the common snapshot, proven noise:
        // the plan rolls it back to the base, then receives.
        let src = listing(vec![ds("zpool1", "a:1:10 b:2:20", 0)]);
        let dst = listing(vec![ds("backup/zpool1", "z:0:90 a:1:100", 4096)]);
        let opts = Options {
            noise: [("backup/zpool1".to_string(), "zfs diff: nothing".to_string())].into(),
            ..Options::default()
        };
        let plan = plan::plan(&src, "zpool1", &dst, "backup/zpool1", &opts);
        assert!(
            matches!(
                plan.items[0].action,
                Action::Incremental {
                    discard: Some(_),
                    ..
                }
            ),
            "{plan:#?}"
        );
        let (_, d) = after_transfers(
            &(src.clone(), dst.clone()),
            &sent(&plan),
            &(sizes_of(&src, 1), sizes_of(&dst, 1)),
        )
        .unwrap();
        assert_eq!(guids(&d, "backup/zpool1"), [0, 1, 2]);
        assert_eq!(d.datasets["backup/zpool1"].written, 0);
    }

    #[test]
    fn what_the_plan_cannot_explain_is_listed_again() {
        let src = listing(vec![ds("zpool1", "a:1:10 b:2:20", 0)]);
        let dst = listing(vec![ds("backup/zpool1", "a:1:100", 0)]);
        let plan = plan::plan(&src, "zpool1", &dst, "backup/zpool1", &Options::default());
        let before = (src.clone(), dst.clone());
        // The receiver dataset was destroyed and made anew during the run.
        let mut replaced = sizes_of(&dst, 1);
        replaced.datasets.get_mut("backup/zpool1").unwrap().guid = 99;
        let e = after_transfers(&before, &sent(&plan), &(sizes_of(&src, 1), replaced)).unwrap_err();
        assert!(e.contains("replaced"), "{e}");
        // The receiver dataset is gone although a stream landed in it.
        let e = after_transfers(
            &before,
            &sent(&plan),
            &(sizes_of(&src, 1), Listing::default()),
        )
        .unwrap_err();
        assert!(e.contains("not listed"), "{e}");
        for (source, why) in [
            // A listing whose order contradicts the plan: an error, never a panic.
            ("b:2:20 a:1:10", "not in order"),
            // The plan names a snapshot its listing does not hold.
            ("a:1:10", "not in its listing"),
        ] {
            let before = (listing(vec![ds("zpool1", source, 0)]), dst.clone());
            let e = after_transfers(
                &before,
                &sent(&plan),
                &(sizes_of(&src, 1), sizes_of(&dst, 1)),
            )
            .unwrap_err();
            assert!(e.contains(why), "{source}: {e}");
        }
    }

    #[test]
    fn a_dataset_that_appeared_during_the_run_waits_for_the_next_listing() {
        let src = listing(vec![ds("zpool1", "a:1:10", 0)]);
        let dst = listing(vec![ds("backup/zpool1", "a:1:100", 0)]);
        let mut now = sizes_of(&src, 1);
        now.datasets
            .insert("zpool1/late".into(), ds("zpool1/late", "", 0));
        let (s, d) =
            after_transfers(&(src.clone(), dst.clone()), &[], &(now, sizes_of(&dst, 1))).unwrap();
        assert!(!s.datasets.contains_key("zpool1/late"));
        assert_eq!(guids(&s, "zpool1"), [1]);
        assert_eq!(guids(&d, "backup/zpool1"), [1]);
    }
}
