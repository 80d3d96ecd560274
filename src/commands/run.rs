//! `zfs-nfs-replica run`: decide the role, then replicate every pool to every peer.

use std::collections::BTreeMap;
use std::io::IsTerminal;

use tracing::{debug, error, info, warn};

use crate::cli::RunArgs;
use crate::config::{Config, OnUnhealthy};
use crate::engine::{Engine, GuardJob, HoldHint, PoolJob, Settings};
use crate::exit::{self, Exit};
use crate::guard;
use crate::health;
use crate::history::{self, History, Loaded};
use crate::lock::{LockError, try_lock_pool};
use crate::notify;
use crate::progress_bar::{Bar, Progress, Silent};
use crate::pve::Role;
use crate::pve::{self, Purpose};
use crate::report::{Outcome, PoolReport, RoleName};
use crate::role;
use crate::runner::{Runner, SystemRunner};
use crate::side::Side;
use crate::ssh::Peer;
use crate::state;
use crate::status;

pub async fn run(cfg: &Config, args: &RunArgs) -> Exit {
    for (flag, list) in [
        ("--pool", &args.pools),
        ("--accept-size-change", &args.accept_size_change),
    ] {
        for p in list {
            if !cfg.pools.iter().any(|c| c.name.as_str() == p) {
                error!("{flag} {p}: not a configured [[pool]]");
                return Exit::Config;
            }
        }
    }
    let runner = SystemRunner {
        kill_grace: cfg.timeouts.kill_grace.get(),
    };
    run_with(cfg, args, &runner, pve::decide(cfg, Purpose::Run)).await
}

/// A run, end to end, with what it is handed: the runner every command goes
/// through, and the master checks (the Proxmox API). `run` hands in the
/// real ones; a test hands in a fake runner and a decision.
pub async fn run_with<R: Runner>(
    cfg: &Config,
    args: &RunArgs,
    runner: &R,
    decide: impl std::future::Future<Output = pve::Decision>,
) -> Exit {
    let started = chrono::Utc::now();
    if !args.dry_run {
        // Before the API answers: the configured name, else the hostname
        // (a Proxmox node's name).
        let node = super::local_node(cfg)
            .ok()
            .or_else(crate::pve::short_hostname)
            .unwrap_or_else(|| "unknown".into());
        notify::run_started(&cfg.notify, runner, &node).await;
    }
    let mut obs = status::Observed::default();
    let code = run_inner(cfg, args, runner, decide, &mut obs).await;
    if !args.dry_run {
        let mut s = record(cfg, obs, started, code);
        status::evaluate(
            &mut s,
            chrono::Utc::now(),
            &status::Thresholds::from_config(&cfg.status),
        );
        // The metrics carry the verdict (`status`); the status file stays
        // unjudged (`status` judges it when read).
        write_metrics(cfg, &s);
        notify::after_run(&cfg.notify, &cfg.paths.state_dir, &s, runner).await;
    }
    code
}

/// After a run (not a dry run): the status file.
/// Logs and shows what the sanoid.conf rewrite did; false (logged) when it
/// refused the file, which refuses the run.
fn sanoid_applied(r: Result<Option<String>, String>, shown: &mut Vec<String>) -> bool {
    match r {
        Ok(Some(line)) => {
            info!("sanoid: {line}");
            shown.push(format!("# sanoid: {line}"));
            true
        }
        Ok(None) => true,
        Err(e) => {
            error!("refusing: sanoid config: {e}; left untouched");
            false
        }
    }
}

fn record(
    cfg: &Config,
    mut obs: status::Observed,
    started: chrono::DateTime<chrono::Utc>,
    code: Exit,
) -> status::Status {
    let dir = &cfg.paths.state_dir;
    let previous = status::load(dir).unwrap_or_else(|e| {
        warn!("previous status ignored: {e}");
        None
    });
    obs.role_since = state::load_role(dir).ok().flatten().and_then(|r| r.since);
    obs.failover = state::load_failover(dir).ok().flatten();
    obs.promotion = state::load_promotion(dir).ok().flatten();
    let s = status::assemble(obs, started, chrono::Utc::now(), code, previous.as_ref());
    if let Err(e) = status::save(dir, &s) {
        error!("cannot record the status: {e}");
    }
    s
}

/// The node_exporter textfile, when its directory exists.
fn write_metrics(cfg: &Config, s: &status::Status) {
    let prom = &cfg.status.prometheus_textfile;
    if prom.as_os_str().is_empty() {
        return;
    }
    match prom.parent() {
        Some(d) if d.is_dir() => {
            if let Err(e) = status::prometheus::write(prom, s) {
                error!("{e}");
            }
        }
        _ => debug!(
            "{}: its directory does not exist (no node_exporter textfile collector): not written",
            prom.display()
        ),
    }
}

async fn run_inner<R: Runner>(
    cfg: &Config,
    args: &RunArgs,
    runner: &R,
    decide: impl std::future::Future<Output = pve::Decision>,
    obs: &mut status::Observed,
) -> Exit {
    // A node that was master last time most likely still is: its ssh
    // connections are opened while the master checks run (about a second
    // saved). They are closed unused if the checks say otherwise.
    let was_master = state::load_role(&cfg.paths.state_dir)
        .ok()
        .flatten()
        .is_some_and(|r| r.role == RoleName::Master);
    let guess = super::local_node(cfg).ok();
    let early = async {
        let mut m = BTreeMap::new();
        if let (true, Some(me)) = (was_master, &guess) {
            for t in super::peers(cfg, me) {
                let p = connect(runner, cfg, &t, args.dry_run).await;
                m.insert(t.name.clone(), p);
            }
        }
        m
    };
    let cmd_timeout = cfg.timeouts.command.get();
    // The master's own preparation (sanoid, datasets writable, pool
    // health) runs while the connections open, right after the checks.
    let prep = async {
        let d = decide.await;
        if !matches!(d.role, Role::Master) {
            return (d, None);
        }
        let sanoid = role::set_autosnap(cfg, true, args.dry_run);
        if sanoid.is_err() {
            return (d, Some((sanoid, role::Changes::default(), Vec::new())));
        }
        let (ch, hs) = tokio::join!(
            role::make_writable(runner, cfg, &args.pools, args.dry_run, cmd_timeout),
            health::read::of_side(runner, cfg, Side::Local, false)
        );
        (d, Some((sanoid, ch, hs)))
    };
    let ((decision, prep), mut early) = tokio::join!(prep, early);
    if !matches!(decision.role, Role::Master) || guess.as_deref() != Some(decision.local.as_str()) {
        close_all(cfg, std::mem::take(&mut early)).await;
    }
    let local = decision.local.clone();
    obs.node = local.clone();
    obs.role = Some(status::RoleInfo::of(&decision));
    // What dry-run prints before the replication plan.
    let mut shown: Vec<String> = Vec::new();
    let mut role_code = Exit::NothingToDo;
    if !args.dry_run {
        // A run that was not sure records nothing.
        if let Some(master) = decision.master()
            && let Err(e) = state::record_role(&cfg.paths.state_dir, decision.role.name(), master)
        {
            warn!("cannot record this node's role: {e}");
        }
    }
    match decision.role {
        Role::Unsure { reason } => {
            error!(
                node = %local,
                "refusing: nobody is surely master ({reason}); sanoid.conf and ZFS left as they are"
            );
            if args.dry_run {
                crate::outln!(
                    "# this node ({local}): nobody is surely master: {reason}\n# nothing would be done"
                );
            }
            return Exit::Refused;
        }
        Role::Standby { master } => {
            return as_standby(cfg, args, runner, &local, &master, shown, obs).await;
        }
        Role::Master => {
            info!(node = %local, "this node is master");
            shown.push(format!("# this node ({local}) is master"));
        }
    }
    let (sanoid, ch, hs) = prep.expect("prepared: this node is master");
    if !sanoid_applied(sanoid, &mut shown) {
        close_all(cfg, early).await;
        return Exit::Refused;
    }
    role::log_changes("master", &ch);
    shown.extend(ch.done.iter().map(|d| format!("# {d}")));
    if !ch.errors.is_empty() {
        role_code = Exit::Transient;
    }
    // The source pools' health, and what the policy makes of it.
    health::read::log(&local, &hs);
    shown.extend(hs.iter().map(|h| format!("# health: {}", h.summary())));
    obs.health = hs.clone();
    let (refused, failover_reasons) = health_policy(cfg.health.on_unhealthy, &hs);
    let settings = Settings {
        overwrite_empty: args.overwrite_empty_target,
        ..Settings::from_config(cfg, &local, args.dry_run)
    };
    let mut bar = Bar::new();
    let mut silent = Silent;
    let progress: &mut dyn Progress =
        if std::io::stderr().is_terminal() && !crate::logging::under_journald() {
            &mut bar
        } else {
            &mut silent
        };
    let mut engine = Engine::new(runner, &settings, progress);
    engine.shown = shown;
    let scope = Scope {
        refused: &refused,
        want_peer_health: !failover_reasons.is_empty(),
        peers: early,
        only_peer: None,
        master_since: master_since(&cfg.paths.state_dir),
    };
    let mut all = replicate_all(cfg, args, &mut engine, scope).await;
    let mut code_floor = Exit::NothingToDo;
    if !failover_reasons.is_empty() {
        let line = failover(
            cfg,
            &local,
            decision.ha_sid.as_deref(),
            &failover_reasons,
            &all.peer_health,
            args.dry_run,
        )
        .await;
        engine.shown.push(format!("# failover: {line}"));
        code_floor = Exit::Refused;
    }
    if args.dry_run {
        crate::outln!("{}", engine.shown.join("\n"));
    }
    for r in &all.reports {
        match r.outcome {
            Outcome::Refused | Outcome::Transient => warn!("{}", r.summary()),
            _ => info!("{}", r.summary()),
        }
    }
    let code = exit::combine(all.reports.iter().map(|r| r.outcome));
    obs.reports = std::mem::take(&mut all.reports);
    // A failed role change (readonly) or a health failover counts, but never
    // hides a worse outcome.
    [role_code, code_floor]
        .into_iter()
        .filter(|c| !c.is_success())
        .fold(code, Exit::and)
}

/// What the master does with its unhealthy source pools, by the policy:
/// alert only, refuse them (pool -> why), or replicate what can be and then
/// hand the guest over (the reasons).
fn health_policy(
    policy: OnUnhealthy,
    hs: &[health::PoolHealth],
) -> (BTreeMap<String, String>, Vec<String>) {
    let mut refused: BTreeMap<String, String> = BTreeMap::new();
    let mut failover_reasons: Vec<String> = Vec::new();
    for h in hs.iter().filter(|h| h.level == health::Level::Fail) {
        let why = format!("source pool {}", h.summary());
        match policy {
            OnUnhealthy::Alert => {
                error!("{why}; replicating anyway (on_unhealthy = \"alert\")")
            }
            OnUnhealthy::Refuse => {
                error!("{why}; not replicated (on_unhealthy = \"refuse\")");
                refused.insert(h.pool.clone(), why);
            }
            OnUnhealthy::Failover => {
                error!(
                    "{why}; replicating what can be, then handing the guest over (on_unhealthy = \"failover\")"
                );
                failover_reasons.push(why);
            }
        }
    }
    (refused, failover_reasons)
}

/// A standby's run: sanoid off, its copies read-only at once, how far behind
/// it is, its pools' health. Nothing is sent, nothing remote is touched.
async fn as_standby<R: Runner>(
    cfg: &Config,
    args: &RunArgs,
    runner: &R,
    local: &str,
    master: &str,
    mut shown: Vec<String>,
    obs: &mut status::Observed,
) -> Exit {
    let cmd_timeout = cfg.timeouts.command.get();
    info!(node = %local, master = %master, "this node is a standby: nothing to send");
    shown.push(format!(
        "# this node ({local}) is a standby; {master} is master"
    ));
    if !sanoid_applied(role::set_autosnap(cfg, false, args.dry_run), &mut shown) {
        return Exit::Refused;
    }
    // A node that is not master writes nothing into its copies.
    let ch = role::make_readonly(runner, cfg, &args.pools, args.dry_run, cmd_timeout).await;
    role::log_changes("standby", &ch);
    shown.extend(ch.done.iter().map(|d| format!("# {d}")));
    let now = chrono::Utc::now();
    obs.received = role::standby_received(runner, cfg, cmd_timeout).await;
    for r in &obs.received {
        let line = r.line(now);
        info!("standby: {line}");
        shown.push(format!("# {line}"));
    }
    // Unhealthy standby pools matter before any failover: say so.
    let hs = health::read::of_side(runner, cfg, Side::Local, true).await;
    health::read::log(local, &hs);
    shown.extend(hs.iter().map(|h| format!("# health: {}", h.summary())));
    // A standby whose `zpool` cannot run (or whose pool is missing) is not
    // "nothing to do": the exit code says so, beside the status and the
    // metrics.
    let unreadable = hs.iter().any(|h| h.state.is_empty());
    obs.health = hs;
    if args.dry_run {
        crate::outln!("{}", shown.join("\n"));
    }
    if unreadable {
        error!(node = %local, "standby: the state of its pools could not be read");
        return Exit::Transient;
    }
    Exit::NothingToDo
}

/// The failover policy, after the pools were replicated as far as they
/// could be: move the guest to a healthy standby, or stop it within the
/// cooldown, or stay. Recorded and logged; returns one line for people.
async fn failover(
    cfg: &Config,
    local: &str,
    ha_sid: Option<&str>,
    reasons: &[String],
    peer_health: &BTreeMap<String, Vec<health::PoolHealth>>,
    dry_run: bool,
) -> String {
    let healthy: Vec<String> = peer_health
        .iter()
        .filter(|(_, hs)| !hs.is_empty() && hs.iter().all(|h| h.level != health::Level::Fail))
        .map(|(n, _)| n.clone())
        .collect();
    for (n, hs) in peer_health {
        for h in hs.iter().filter(|h| h.level == health::Level::Fail) {
            warn!("failover: standby {n} is not a candidate: {}", h.summary());
        }
    }
    let dir = &cfg.paths.state_dir;
    let recent = crate::failover::recent_move(
        chrono::Utc::now(),
        cfg.health.failover_cooldown.get(),
        state::load_role(dir).ok().flatten().as_ref(),
        state::load_promotion(dir).ok().flatten().as_ref(),
        state::load_failover(dir).ok().flatten().as_ref(),
    );
    let action = crate::failover::choose(recent, &healthy, ha_sid);
    let sid = ha_sid.unwrap_or("?");
    let planned = match &action {
        crate::failover::Action::Migrate { to } => {
            format!("ask HA to migrate {sid} to {to} (POST /cluster/ha/resources/{sid}/migrate)")
        }
        crate::failover::Action::Stop { why } => {
            format!("ask HA to stop {sid} (PUT /cluster/ha/resources/{sid} state=stopped): {why}")
        }
        crate::failover::Action::Stay { why } => format!("nothing asked of HA: {why}"),
    };
    if dry_run {
        return format!("would {planned}");
    }
    let result = match &action {
        crate::failover::Action::Stay { why } => Ok(why.clone()),
        _ => match crate::pve::client::Client::new(&cfg.proxmox) {
            Ok(c) => crate::failover::carry_out(&c, sid, &action).await,
            Err(e) => Err(e.to_string()),
        },
    };
    let (ok, text) = match &result {
        Ok(t) => (true, t.clone()),
        Err(e) => (false, e.clone()),
    };
    match (&action, ok) {
        (crate::failover::Action::Stay { .. }, _) => error!("failover: {planned}"),
        (crate::failover::Action::Stop { why }, true) => error!("failover: {text}: {why}"),
        (_, true) => error!("failover: {text}"),
        (_, false) => error!("failover: could not {planned}: {text}"),
    }
    let rec = state::FailoverRecord {
        time: crate::units::now_stamp(),
        node: local.to_string(),
        action: action.name().to_string(),
        to: match &action {
            crate::failover::Action::Migrate { to } => Some(to.clone()),
            _ => None,
        },
        reasons: reasons.to_vec(),
        result: text.clone(),
        ok,
    };
    if let Err(e) = state::record_failover(dir, &rec) {
        warn!("cannot record the failover: {e}");
    }
    if ok {
        text
    } else {
        format!("FAILED to {planned}: {text}")
    }
}

/// What replicating every pool gave: one report per pool and peer, and the
/// standbys' pool health when the failover policy asked for it.
pub(crate) struct All {
    pub reports: Vec<PoolReport>,
    pub peer_health: BTreeMap<String, Vec<health::PoolHealth>>,
}

/// What [`replicate_all`] covers beyond the pools `args` names.
pub(crate) struct Scope<'a> {
    /// Pools refused before any listing (the health policy), with why.
    pub refused: &'a BTreeMap<String, String>,
    /// Also read every standby's pool health (the failover policy asks).
    pub want_peer_health: bool,
    /// Connections already open (or failed), by peer name.
    pub peers: BTreeMap<String, Result<Peer, String>>,
    /// Send to this peer alone (the handover).
    pub only_peer: Option<&'a str>,
    /// When this node last became master (RFC 3339): the size history
    /// counts from then (a failover and a failback in between make older
    /// entries meaningless). None: not known, every entry counts.
    pub master_since: Option<String>,
}

/// When this node last became master, as its role record says.
pub(crate) fn master_since(state_dir: &std::path::Path) -> Option<String> {
    state::load_role(state_dir)
        .ok()
        .flatten()
        .filter(|r| r.role == RoleName::Master)
        .and_then(|r| r.since)
}

pub(crate) async fn replicate_all<R: Runner>(
    cfg: &Config,
    args: &RunArgs,
    engine: &mut Engine<'_, R>,
    scope: Scope<'_>,
) -> All {
    let Scope {
        refused,
        want_peer_health,
        mut peers,
        only_peer,
        master_since,
    } = scope;
    let runner = engine.runner;
    let cmd_timeout = engine.settings.command_timeout;
    let mut reports = Vec::new();
    let targets: Vec<crate::ssh::Target> = super::peers(cfg, &engine.settings.local_node)
        .into_iter()
        .filter(|t| only_peer.is_none_or(|o| o == t.name))
        .collect();
    let job_of = |pool: &crate::config::Pool| PoolJob {
        source: pool.name.to_string(),
        target: pool.target().to_string(),
        exclude: pool.exclude.iter().map(|e| e.to_string()).collect(),
        guard: None,
    };
    // Every pool's lock and size history first; a pool that cannot be
    // locked or trusted is reported and left out. The locks are held until
    // every peer is done (the guards drop at the end of this function).
    let mut ready: Vec<(&crate::config::Pool, Option<History>)> = Vec::new();
    let mut _locks = Vec::new();
    for pool in cfg
        .pools
        .iter()
        .filter(|p| args.pools.is_empty() || args.pools.iter().any(|n| n == p.name.as_str()))
    {
        let job = job_of(pool);
        if let Some(why) = refused.get(pool.zpool()) {
            for t in &targets {
                reports.push(failed_report(&job, &t.name, why.clone(), Outcome::Refused));
            }
            continue;
        }
        // Dry-run takes no lock: it must not create or change any file.
        if !args.dry_run {
            match try_lock_pool(&cfg.paths.run_dir, pool.name.as_str()) {
                Ok(l) => _locks.push(l),
                Err(e) => {
                    let busy = matches!(e, LockError::Busy { .. });
                    warn!("skipping pool {}: {e}", pool.name);
                    for t in &targets {
                        reports.push(failed_report(
                            &job,
                            &t.name,
                            e.to_string(),
                            if busy {
                                Outcome::Transient
                            } else {
                                Outcome::Refused
                            },
                        ));
                    }
                    continue;
                }
            }
        }
        // The size history, read under the pool's lock. One that cannot be
        // trusted refuses the pool until it is rebuilt.
        match history::load(&cfg.paths.state_dir, pool.name.as_str(), !args.dry_run) {
            Ok(Loaded::Ok(h)) => ready.push((pool, Some(h))),
            Ok(Loaded::None) => ready.push((pool, None)),
            other => {
                let why = match other {
                    Ok(Loaded::Corrupt { reason, moved_to }) => format!(
                        "size history is corrupt ({reason}); kept as {}",
                        moved_to.display()
                    ),
                    Ok(Loaded::NeedsRebuild { aside }) => format!(
                        "size history was corrupt (kept as {}) and has not been rebuilt",
                        aside.display()
                    ),
                    Err(e) => format!("size history unreadable: {e}"),
                    Ok(_) => unreachable!(),
                };
                let msg = format!(
                    "{why}: pool refused until `zfs-nfs-replica history rebuild {}`",
                    pool.name
                );
                error!("{msg}");
                for t in &targets {
                    reports.push(failed_report(&job, &t.name, msg.clone(), Outcome::Refused));
                }
            }
        }
    }
    for t in &targets {
        if ready.is_empty() {
            break;
        }
        if !peers.contains_key(&t.name) {
            peers.insert(t.name.clone(), connect(runner, cfg, t, args.dry_run).await);
        }
        if args.dry_run {
            engine
                .shown
                .push(format!("# connect to {} ({}) over ssh", t.name, t.addr));
        }
        let peer = match &peers[&t.name] {
            Ok(p) => p,
            Err(e) => {
                for (pool, _) in &ready {
                    reports.push(failed_report(
                        &job_of(pool),
                        &t.name,
                        e.clone(),
                        Outcome::Transient,
                    ));
                }
                continue;
            }
        };
        let jobs: Vec<PoolJob> = ready
            .iter()
            .map(|(pool, hist)| PoolJob {
                guard: Some(GuardJob {
                    last: hist
                        .as_ref()
                        .and_then(|h| h.last_for_since(&t.name, master_since.as_deref()).cloned()),
                    thresholds: guard::Thresholds {
                        min_size_ratio: pool.min_size_ratio,
                        history_tolerance: pool.history_tolerance,
                    },
                    accept: args
                        .accept_size_change
                        .iter()
                        .any(|p| p == pool.name.as_str()),
                    handover: args.handover,
                }),
                ..job_of(pool)
            })
            .collect();
        // What the last run held: asked about while the listings run.
        let mut hint = hold_hint(&jobs);
        hint.complete =
            !args.handover && full_listing_recent(cfg, &jobs, &t.name, master_since.as_deref());
        let gate = may_write(runner, peer, &engine.settings.local_node, cmd_timeout);
        let reps = engine.replicate_many(&jobs, peer, &hint, gate).await;
        for ((_, hist), (job, report)) in ready.iter_mut().zip(jobs.iter().zip(reps)) {
            if !args.dry_run {
                record_history(cfg, job, &t.name, &report, hist);
                record_full_listing(cfg, job, &t.name, &report);
            }
            reports.push(report);
        }
    }
    let mut peer_health = BTreeMap::new();
    if want_peer_health {
        // Where could the guest go? Every standby's pools, over the same
        // connections (or new ones, for pools skipped above).
        for t in &targets {
            if !peers.contains_key(&t.name) {
                peers.insert(t.name.clone(), connect(runner, cfg, t, args.dry_run).await);
            }
            let hs = match &peers[&t.name] {
                Ok(p) => health::read::of_side(runner, cfg, Side::Remote(p), true).await,
                Err(e) => health::read::zpools(cfg, true)
                    .iter()
                    .map(|z| health::PoolHealth::unknown(z, format!("unreachable: {e}")))
                    .collect(),
            };
            peer_health.insert(t.name.clone(), hs);
        }
    }
    close_all(cfg, peers).await;
    All {
        reports,
        peer_health,
    }
}

/// May this node write into `peer`? The peer's own answer (its binary, its
/// own master check), asked over the same connection: only a standby of
/// this node, or a node waiting for this node's handover, is written into.
pub(crate) async fn may_write<R: Runner>(
    runner: &R,
    peer: &Peer,
    local: &str,
    timeout: std::time::Duration,
) -> Result<(), String> {
    let op = crate::zfs::Op::Role {
        asked_by: local.to_string(),
    };
    let side = Side::Remote(peer);
    let asking = || format!("could not ask {} who is master", peer.name);
    let out = runner
        .output(&side.cmd(&op), timeout)
        .await
        .map_err(|e| format!("{}: {e}", asking()))?;
    if !out.success() {
        return Err(format!(
            "{}: `{}` failed: {}",
            asking(),
            side.show(&op),
            crate::runner::stderr_head(&out.stderr)
        ));
    }
    let a: crate::pve::Answer = serde_json::from_str(out.stdout.trim())
        .map_err(|e| format!("{}: its answer is not readable ({e})", asking()))?;
    debug!("{} answers: {:?}", peer.name, a);
    a.allows(local)
}

/// The ssh master connection to one peer; the error, logged, as text.
async fn connect<R: Runner>(
    runner: &R,
    cfg: &Config,
    t: &crate::ssh::Target,
    dry_run: bool,
) -> Result<Peer, String> {
    let p = Peer::connect(runner, &cfg.ssh, t, &super::socket_dir(cfg, dry_run))
        .await
        .map_err(|e| e.to_string());
    if let Err(e) = &p {
        error!("{e}");
    }
    p
}

async fn close_all(cfg: &Config, peers: BTreeMap<String, Result<Peer, String>>) {
    for (_, p) in peers {
        if let Ok(p) = p {
            p.close(cfg.ssh.connect_timeout.get()).await;
        }
    }
}

/// The snapshots the last run held on both sides for these pools: the
/// common snapshot of each dataset, as the size history recorded it after
/// that run (the engine's own record, not the status people read).
fn hold_hint(jobs: &[PoolJob]) -> HoldHint {
    let mut h = HoldHint::default();
    for job in jobs {
        let Some(last) = job.guard.as_ref().and_then(|g| g.last.as_ref()) else {
            continue;
        };
        for (name, sizes) in &last.datasets {
            if let Some(s) = &sizes.snapshot {
                let target = crate::zfs::names::rebase(name, &job.source, &job.target);
                h.local.push(format!("{name}@{}", s.name));
                h.remote.push(format!("{target}@{}", s.name));
            }
        }
    }
    h
}

/// May this run use the fast listing towards `peer`? Only when, for every
/// pool, the last run's holds are known (a completed run since this node
/// became master) and a completed run listed it in full within
/// `[replication] full_listing_every` and since this node became master.
fn full_listing_recent(cfg: &Config, jobs: &[PoolJob], peer: &str, since: Option<&str>) -> bool {
    let done = state::load_full_listings(&cfg.paths.state_dir)
        .ok()
        .flatten()
        .unwrap_or_default();
    fast_allowed(
        &done,
        cfg.replication.full_listing_every.get(),
        jobs,
        peer,
        since,
        chrono::Utc::now(),
    )
}

fn fast_allowed(
    done: &state::FullListings,
    every: std::time::Duration,
    jobs: &[PoolJob],
    peer: &str,
    since: Option<&str>,
    now: chrono::DateTime<chrono::Utc>,
) -> bool {
    if every.is_zero() || jobs.is_empty() {
        return false;
    }
    let (since, every) = (
        since.and_then(crate::units::parse_time),
        chrono::Duration::from_std(every).unwrap_or(chrono::Duration::MAX),
    );
    jobs.iter().all(|j| {
        let listed = done
            .get(&j.source)
            .and_then(|m| m.get(peer))
            .and_then(|t| crate::units::parse_time(t));
        j.guard.as_ref().is_some_and(|g| g.last.is_some())
            && listed.is_some_and(|t| {
                t <= now && now.signed_duration_since(t) < every && since.is_none_or(|s| t >= s)
            })
    })
}

/// After a pool run that completed from full listings, remember when.
fn record_full_listing(cfg: &Config, job: &PoolJob, peer: &str, report: &PoolReport) {
    let full = report
        .listings
        .as_ref()
        .is_some_and(|(s, d)| !s.partial && !d.partial);
    if report.error.is_none()
        && full
        && let Err(e) = state::record_full_listing(&cfg.paths.state_dir, &job.source, peer)
    {
        error!("cannot record the full listing of {}: {e}", job.source);
    }
}

/// After a pool run that the guards let through and that completed (every
/// dataset decided: sent, up to date, or refused by a conflict), add both
/// sides' sizes to the pool's history.
fn record_history(
    cfg: &Config,
    job: &PoolJob,
    peer: &str,
    report: &PoolReport,
    hist: &mut Option<History>,
) {
    if report.error.is_some() {
        return;
    }
    let Some((src, dst)) = &report.listings else {
        return;
    };
    let now = crate::units::now_stamp();
    let Some(mut entry) = history::entry_from(now, peer, &job.source, &job.target, src, dst) else {
        return;
    };
    if let Some(g) = &job.guard {
        if g.accept {
            entry = entry.accepting_live();
        }
        guard::mark_acceptance(
            &mut entry,
            &job.source,
            g.last.as_ref(),
            g.accept,
            g.thresholds,
        );
    }
    let h = hist.get_or_insert_with(|| History::new(&job.source));
    h.push(entry);
    if let Err(e) = history::save(&cfg.paths.state_dir, h) {
        error!("cannot record the size history of {}: {e}", job.source);
    }
}

fn failed_report(job: &PoolJob, peer: &str, error: String, outcome: Outcome) -> PoolReport {
    PoolReport {
        pool: job.source.clone(),
        peer: peer.to_string(),
        outcome,
        datasets: Vec::new(),
        receiver_only: Vec::new(),
        bytes: 0,
        duration: Default::default(),
        error: Some(error),
        listings: None,
        quarantine: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(pool: &str, last: bool) -> PoolJob {
        let entry = crate::history::Entry {
            time: "2026-12-01T10:00:00Z".into(),
            peer: "pve2".into(),
            root_guid: 1,
            datasets: BTreeMap::new(),
        };
        PoolJob {
            source: pool.into(),
            target: pool.into(),
            exclude: Vec::new(),
            guard: Some(GuardJob {
                last: last.then_some(entry),
                thresholds: guard::Thresholds {
                    min_size_ratio: 0.5,
                    history_tolerance: 0.5,
                },
                accept: false,
                handover: false,
            }),
        }
    }

    #[test]
    fn the_fast_listing_needs_a_recent_full_one_since_this_node_became_master() {
        let at = |t: &str| crate::units::parse_time(t).unwrap();
        let mut done = state::FullListings::new();
        done.entry("zpool1".into())
            .or_default()
            .insert("pve2".into(), "2026-12-01T10:00:00Z".into());
        let six = std::time::Duration::from_secs(6 * 3600);
        let (one, both, unknown) = (
            vec![job("zpool1", true)],
            vec![job("zpool1", true), job("zpool2", true)],
            vec![job("zpool1", false)],
        );
        // (pools, every, peer, became master, now, fast?)
        let cases = [
            (&one, six, "pve2", None, "12:00:00", true),
            (&one, six, "pve2", None, "16:00:01", false),
            (&one, six, "pve3", None, "12:00:00", false),
            (&both, six, "pve2", None, "12:00:00", false),
            (
                &one,
                six,
                "pve2",
                Some("2026-12-01T11:00:00Z"),
                "12:00:00",
                false,
            ),
            (
                &one,
                six,
                "pve2",
                Some("2026-12-01T09:00:00Z"),
                "12:00:00",
                true,
            ),
            (&unknown, six, "pve2", None, "12:00:00", false),
            (
                &one,
                std::time::Duration::ZERO,
                "pve2",
                None,
                "12:00:00",
                false,
            ),
            // A record from the future (a clock set back).
            (&one, six, "pve2", None, "09:00:00", false),
        ];
        for (k, (jobs, every, peer, since, now, want)) in cases.into_iter().enumerate() {
            let now = at(&format!("2026-12-01T{now}Z"));
            assert_eq!(
                fast_allowed(&done, every, jobs, peer, since, now),
                want,
                "case {k}"
            );
        }
    }
}
