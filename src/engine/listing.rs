//! Listing both sides of a pool, at once: one `zfs list` per side for all
//! pools of a run when it can, the quarantine taken out of both.

use std::time::{Duration, Instant};

use tracing::debug;

use super::{Engine, PoolError, PoolJob, checked};
use crate::runner::Runner;
use crate::side::Side;
use crate::ssh::Peer;
use crate::zfs::{self, Listing, Op};

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
        && let Ok((src, dst)) = list_roots(
            runner,
            timeout,
            (Side::Local, jobs.iter().map(|j| j.source.clone()).collect()),
            (remote, jobs.iter().map(|j| j.target.clone()).collect()),
        )
        .await
    {
        return jobs.iter().map(|j| Some(split(&src, &dst, j))).collect();
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

/// One job's part of a listing of several roots.
pub(super) fn split(src: &Listing, dst: &Listing, j: &PoolJob) -> Listed {
    let part = |l: &Listing, root: &str| Listing {
        datasets: l
            .datasets
            .iter()
            .filter(|(n, _)| crate::zfs::names::is_at_or_below(n, root))
            .map(|(n, d)| (n.clone(), d.clone()))
            .collect(),
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
    let (scmd, dcmd) = (sside.cmd(&sop), dside.cmd(&dop));
    let started = Instant::now();
    let (l, r) = tokio::join!(runner.output(&scmd, timeout), runner.output(&dcmd, timeout));
    debug!(
        "listed {} and {} in {:.2}s",
        sside.show(&sop),
        dside.show(&dop),
        started.elapsed().as_secs_f64()
    );
    let parse = |side: Side<'_>, op: &Op, res| -> Result<Listing, PoolError> {
        let text = checked(side, op, res)?;
        zfs::parse_list(&text).map_err(|e| PoolError::Parse {
            side: side.label(),
            msg: format!("`{}`: {e}", side.show(op)),
        })
    };
    let src = parse(sside, &sop, l)?;
    let dst = parse(dside, &dop, r)?;
    Ok((src, dst))
}
