//! Notifications after a run: ntfy, Gotify, a JSON webhook (generic,
//! Discord or Slack shape) natively over HTTP(S), healthchecks.io-style
//! pings (start, success, fail: a run that never happens is noticed), and
//! a command (e.g. apprise). By default only changes are sent (failing,
//! recovered, another role, a new conflict) and a persisting failure is
//! repeated with back-off ([`decide`], pure); `on = "every-run"` sends
//! every run. A notification that cannot be delivered is logged and never
//! fails the run. URLs and tokens are never logged: targets are named by
//! kind and host.

use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::cmdline::Cmd;
use crate::config::{Notify, NotifyOn, NotifyTarget, TargetKind, WebhookFormat};
use crate::health::Level;
use crate::runner::{Runner, stderr_head};
use crate::status::Status;
use crate::units::parse_time;

/// What is sent.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub node: String,
    pub level: Level,
    pub title: String,
    pub body: String,
    pub reasons: Vec<String>,
    pub time: String,
}

fn word(l: Level) -> &'static str {
    match l {
        Level::Ok => "OK",
        Level::Warn => "WARNING",
        Level::Fail => "CRITICAL",
    }
}

/// The message for an evaluated status (`status::evaluate` ran on it).
pub fn message(s: &Status, recovered: bool) -> Message {
    let level = s.status.unwrap_or(Level::Ok);
    let title = if level == Level::Ok && recovered {
        format!("zfs-nfs-replica {}: OK again ({})", s.node, s.role.role)
    } else {
        format!(
            "zfs-nfs-replica {}: {} ({}, {})",
            s.node,
            word(level),
            s.role.role,
            s.last_run.result
        )
    };
    let mut body: Vec<String> = s.reasons.clone();
    if body.is_empty() {
        body.push(format!(
            "last run {} (exit {}) in {:.1}s",
            s.last_run.result, s.last_run.exit_code, s.last_run.duration_seconds
        ));
    }
    if let Some(f) = &s.failover
        && f.time >= s.last_run.started
    {
        body.push(format!("failover: {} ({})", f.result, f.action));
    }
    for p in &s.pools {
        for q in &p.quarantine {
            body.push(format!("quarantine on {}: {q}", p.peer));
        }
    }
    Message {
        node: s.node.clone(),
        level,
        title,
        body: body.join("\n"),
        reasons: s.reasons.clone(),
        time: s.last_run.finished.clone(),
    }
}

/// What was last notified (`<state_dir>/notify.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notified {
    pub level: Level,
    pub role: String,
    /// Datasets in conflict (`dataset -> peer`), to notice a new one.
    pub conflicts: Vec<String>,
    /// When the last notification went out.
    pub sent: String,
    /// Repeats of the current failure sent so far.
    pub repeats: u32,
}

pub const STATE_FILE: &str = "notify.json";

/// The facts a notification is decided on.
pub fn facts(s: &Status) -> (Level, String, Vec<String>) {
    let mut conflicts: Vec<String> = s
        .pools
        .iter()
        .flat_map(|p| {
            p.datasets
                .iter()
                .filter(|d| d.result == crate::report::DatasetOutcome::Conflict)
                .map(move |d| format!("{} -> {}", d.dataset, p.peer))
        })
        .collect();
    conflicts.sort();
    (
        s.status.unwrap_or(Level::Ok),
        s.role.role.to_string(),
        conflicts,
    )
}

/// Whether to send now, and why. Pure.
pub fn decide(
    prev: Option<&Notified>,
    (level, role, conflicts): &(Level, String, Vec<String>),
    now: DateTime<Utc>,
    cfg: &Notify,
) -> Option<String> {
    if cfg.on == NotifyOn::EveryRun {
        return Some("every run".into());
    }
    let Some(p) = prev else {
        return (*level > Level::Ok).then(|| format!("{} (first run)", word(*level)));
    };
    if p.level != *level {
        return Some(format!("{} -> {}", word(p.level), word(*level)));
    }
    if p.role != *role {
        return Some(format!("role {} -> {role}", p.role));
    }
    if let Some(c) = conflicts.iter().find(|c| !p.conflicts.contains(c)) {
        return Some(format!("new conflict: {c}"));
    }
    if *level == Level::Ok {
        return None;
    }
    // The same failure: again after repeat_after, doubling up to repeat_max.
    let wait = cfg
        .repeat_after
        .get()
        .saturating_mul(1u32 << p.repeats.min(20))
        .min(cfg.repeat_max.get());
    let since = parse_time(&p.sent)?;
    let elapsed = (now - since).to_std().unwrap_or(Duration::ZERO);
    (elapsed >= wait).then(|| format!("still {} (repeat {})", word(*level), p.repeats + 1))
}

/// The state after sending (or not): repeats count up only for the same failure.
pub fn next_state(
    prev: Option<&Notified>,
    (level, role, conflicts): (Level, String, Vec<String>),
    now: DateTime<Utc>,
) -> Notified {
    let same = prev.is_some_and(|p| p.level == level && p.role == role);
    Notified {
        repeats: match prev {
            Some(p) if same => p.repeats + 1,
            _ => 0,
        },
        level,
        role,
        conflicts,
        sent: crate::units::stamp(now),
    }
}

/// A target as logs may show it: kind and host, never the URL or a token.
pub fn label(t: &NotifyTarget, url: Option<&str>) -> String {
    let kind = format!("{:?}", t.kind).to_lowercase();
    match url.and_then(|u| reqwest::Url::parse(u).ok()) {
        Some(u) => format!("{kind} ({})", u.host_str().unwrap_or("?")),
        None => match &t.command {
            Some(c) => format!("{kind} ({})", c[0]),
            None => kind,
        },
    }
}

fn read_secret(path: &Path, what: &str) -> Result<String, String> {
    let t = crate::files::read_text(path, 64 << 10).map_err(|e| format!("{what} {e}"))?;
    let t = t.trim().to_string();
    if t.is_empty() || t.contains('\n') {
        return Err(format!("{what} {}: expected one line", path.display()));
    }
    Ok(t)
}

fn url_of(t: &NotifyTarget) -> Result<Option<String>, String> {
    match (&t.url, &t.url_file) {
        (Some(u), _) => Ok(Some(u.clone())),
        (None, Some(f)) => {
            let u = read_secret(f, "url_file")?;
            if !(u.starts_with("https://") || u.starts_with("http://")) {
                return Err(format!("url_file {}: not an http(s) URL", f.display()));
            }
            Ok(Some(u))
        }
        (None, None) => Ok(None),
    }
}

/// HTTP headers allow visible ASCII only (ntfy reads the title from one).
fn header_safe(s: &str) -> String {
    s.chars()
        .map(|c| if (' '..='~').contains(&c) { c } else { '?' })
        .collect()
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

/// A healthchecks.io ping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ping {
    Start,
    Success,
    Fail,
}

/// Delivers messages. One HTTP client for all targets, every request and
/// command bounded by `timeout`.
pub struct Sender<'a, R: Runner> {
    http: reqwest::Client,
    /// Why HTTPS cannot be verified (the CA file), if so.
    ca_error: Option<String>,
    timeout: Duration,
    runner: &'a R,
}

impl<'a, R: Runner> Sender<'a, R> {
    pub fn new(cfg: &Notify, runner: &'a R) -> Result<Sender<'a, R>, String> {
        let (tls, ca_error) = match crate::pve::client::tls_config(&crate::config::Trust::CaFile(
            cfg.ca_file.clone(),
        )) {
            Ok(t) => (t, None),
            Err(e) => {
                // Plain http:// targets still work; https:// ones say why not.
                let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
                let t = rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .map_err(|e| e.to_string())?
                    .with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth();
                (t, Some(format!("[notify] ca_file: {e}")))
            }
        };
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .timeout(cfg.timeout.get())
            .connect_timeout(cfg.timeout.get())
            .redirect(reqwest::redirect::Policy::limited(3))
            .user_agent(concat!("zfs-nfs-replica/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot set up the HTTP client: {e}"))?;
        Ok(Sender {
            http,
            ca_error,
            timeout: cfg.timeout.get(),
            runner,
        })
    }

    async fn post(
        &self,
        url: &str,
        headers: &[(&str, String)],
        body: Vec<u8>,
        json: bool,
    ) -> Result<(), String> {
        if url.starts_with("https://")
            && let Some(e) = &self.ca_error
        {
            return Err(e.clone());
        }
        let mut req = self.http.post(url).body(body);
        if json {
            req = req.header(reqwest::header::CONTENT_TYPE, "application/json");
        }
        for (k, v) in headers {
            req = req.header(*k, v.as_str());
        }
        let resp = req.send().await.map_err(|e| {
            if e.is_timeout() {
                format!("no answer within {}s", self.timeout.as_secs())
            } else {
                // Without the URL, which may hold a secret.
                format!("cannot deliver: {}", e.without_url())
            }
        })?;
        let st = resp.status();
        if st.is_success() {
            Ok(())
        } else {
            Err(format!("HTTP {}", st.as_u16()))
        }
    }

    /// Send `m` to one target (healthchecks targets get the success/fail ping).
    pub async fn send(&self, t: &NotifyTarget, m: &Message) -> Result<(), String> {
        let url = url_of(t)?;
        let url = url.as_deref().unwrap_or_default();
        let token = match &t.token_file {
            Some(f) => Some(read_secret(f, "token_file")?),
            None => None,
        };
        match t.kind {
            TargetKind::Ntfy => {
                let (prio, tag) = match m.level {
                    Level::Ok => ("2", "white_check_mark"),
                    Level::Warn => ("3", "warning"),
                    Level::Fail => ("5", "rotating_light"),
                };
                let mut h = vec![
                    ("Title", header_safe(&m.title)),
                    ("Priority", prio.to_string()),
                    ("Tags", tag.to_string()),
                ];
                if let Some(tok) = token {
                    h.push(("Authorization", format!("Bearer {tok}")));
                }
                self.post(url, &h, m.body.clone().into_bytes(), false).await
            }
            TargetKind::Gotify => {
                let base = url.trim_end_matches('/');
                let endpoint = if base.ends_with("/message") {
                    base.to_string()
                } else {
                    format!("{base}/message")
                };
                let prio = match m.level {
                    Level::Ok => 2,
                    Level::Warn => 5,
                    Level::Fail => 8,
                };
                let body =
                    serde_json::json!({"title": m.title, "message": m.body, "priority": prio});
                let h = vec![("X-Gotify-Key", token.unwrap_or_default())];
                self.post(&endpoint, &h, body.to_string().into_bytes(), true)
                    .await
            }
            TargetKind::Webhook => {
                let body = match t.format.unwrap_or_default() {
                    WebhookFormat::Json => serde_json::json!({
                        "title": m.title, "message": m.body, "status": word(m.level).to_lowercase(),
                        "node": m.node, "reasons": m.reasons, "time": m.time,
                    }),
                    WebhookFormat::Discord => serde_json::json!({
                        "content": truncate(&format!("**{}**\n{}", m.title, m.body), 1990)
                    }),
                    WebhookFormat::Slack => {
                        serde_json::json!({"text": format!("*{}*\n{}", m.title, m.body)})
                    }
                };
                self.post(url, &[], body.to_string().into_bytes(), true)
                    .await
            }
            TargetKind::Healthchecks => {
                let ping = if m.level == Level::Fail {
                    Ping::Fail
                } else {
                    Ping::Success
                };
                self.ping(t, ping, &format!("{}\n{}", m.title, m.body), &m.node)
                    .await
            }
            TargetKind::Command => {
                let argv = t.command.clone().unwrap_or_default();
                let sub = |a: &str| {
                    a.replace("{title}", &m.title)
                        .replace("{body}", &m.body)
                        .replace("{status}", word(m.level))
                        .replace("{node}", &m.node)
                };
                let cmd = Cmd::new(sub(&argv[0])).args(argv[1..].iter().map(|a| sub(a)));
                match self.runner.output(&cmd, self.timeout).await {
                    Ok(o) if o.success() => Ok(()),
                    Ok(o) => Err(format!(
                        "exit {}: {}",
                        o.status.code().map_or("signal".into(), |c| c.to_string()),
                        stderr_head(&o.stderr)
                    )),
                    Err(e) => Err(e.to_string()),
                }
            }
        }
    }

    /// A healthchecks.io ping: `URL/start`, `URL` (success) or `URL/fail`,
    /// with the text as the body (healthchecks keeps the first 100 kB).
    /// `{node}` in the URL is this node's name: one check per node (with
    /// one URL for all, a standby's success would clear the master's
    /// failure).
    pub async fn ping(
        &self,
        t: &NotifyTarget,
        p: Ping,
        text: &str,
        node: &str,
    ) -> Result<(), String> {
        let url = url_of(t)?.unwrap_or_default().replace("{node}", node);
        let base = url.trim_end_matches('/');
        let u = match p {
            Ping::Start => format!("{base}/start"),
            Ping::Success => base.to_string(),
            Ping::Fail => format!("{base}/fail"),
        };
        self.post(&u, &[], truncate(text, 10_000).into_bytes(), false)
            .await
    }
}

/// Send `m` to every target but the healthchecks ones; one line logged per
/// target. Returns how many took it.
pub async fn deliver<R: Runner>(
    sender: &Sender<'_, R>,
    targets: &[NotifyTarget],
    m: &Message,
) -> usize {
    let mut ok = 0;
    for t in targets {
        let name = label(t, url_of(t).ok().flatten().as_deref());
        match sender.send(t, m).await {
            Ok(()) => {
                info!("notified {name}: {}", m.title);
                ok += 1;
            }
            Err(e) => warn!("notification to {name} not delivered: {e}"),
        }
    }
    ok
}

/// Healthchecks-style targets at the start of a run.
pub async fn run_started<R: Runner>(cfg: &Notify, runner: &R, node: &str) {
    let hc: Vec<&NotifyTarget> = cfg
        .targets
        .iter()
        .filter(|t| t.kind == TargetKind::Healthchecks)
        .collect();
    if hc.is_empty() {
        return;
    }
    let Ok(sender) = Sender::new(cfg, runner) else {
        return;
    };
    for t in hc {
        if let Err(e) = sender.ping(t, Ping::Start, "", node).await {
            let name = label(t, url_of(t).ok().flatten().as_deref());
            warn!("start ping to {name} not delivered: {e}");
        }
    }
}

/// After a run: ping the healthchecks targets (every run), and send to the
/// others what [`decide`] says. `s` is the evaluated status.
pub async fn after_run<R: Runner>(cfg: &Notify, state_dir: &Path, s: &Status, runner: &R) {
    if cfg.targets.is_empty() {
        return;
    }
    let sender = match Sender::new(cfg, runner) {
        Ok(x) => x,
        Err(e) => {
            warn!("notifications not sent: {e}");
            return;
        }
    };
    let path = state_dir.join(STATE_FILE);
    let prev: Option<Notified> = crate::files::read_text(&path, crate::files::DEFAULT_LIMIT)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok());
    let f = facts(s);
    let now = Utc::now();
    let recovered = prev.as_ref().is_some_and(|p| p.level > Level::Ok);
    let m = message(s, recovered);
    let (hc, others): (Vec<NotifyTarget>, Vec<NotifyTarget>) = cfg
        .targets
        .iter()
        .cloned()
        .partition(|t| t.kind == TargetKind::Healthchecks);
    for t in &hc {
        // Every run: healthchecks notices a run that never happens.
        if let Err(e) = sender.send(t, &m).await {
            let name = label(t, url_of(t).ok().flatten().as_deref());
            warn!("ping to {name} not delivered: {e}");
        }
    }
    let Some(why) = decide(prev.as_ref(), &f, now, cfg) else {
        return;
    };
    if others.is_empty() {
        return;
    }
    info!("notifying: {why}");
    if deliver(&sender, &others, &m).await == 0 {
        // Nothing delivered: keep the old state, so the next run tries again.
        return;
    }
    let next = next_state(prev.as_ref(), f, now);
    let text = serde_json::to_string_pretty(&next).unwrap_or_default();
    if let Err(e) = crate::files::replace_atomically(&path, text.as_bytes(), 0o644, None) {
        warn!("{}: cannot write: {e}", path.display());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(on: NotifyOn) -> Notify {
        Notify {
            on,
            ..Notify::default()
        }
    }

    fn at(h: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_795_000_000 + h * 3600, 0).unwrap()
    }

    fn f(level: Level, role: &str, conflicts: &[&str]) -> (Level, String, Vec<String>) {
        (
            level,
            role.into(),
            conflicts.iter().map(|c| c.to_string()).collect(),
        )
    }

    #[test]
    fn changes_are_sent_and_a_persisting_failure_backs_off() {
        let c = cfg(NotifyOn::Changes);
        let ok = f(Level::Ok, "master", &[]);
        let bad = f(Level::Fail, "master", &["zpool1/a -> pve2"]);
        assert_eq!(
            decide(None, &ok, at(0), &c),
            None,
            "quiet while all is well"
        );
        assert!(decide(None, &bad, at(0), &c).is_some());
        let s0 = next_state(None, bad.clone(), at(0));
        assert_eq!(
            decide(Some(&s0), &bad, at(0), &c),
            None,
            "not every ten minutes"
        );
        assert_eq!(
            decide(Some(&s0), &bad, at(1), &c).as_deref(),
            Some("still CRITICAL (repeat 1)"),
            "again after repeat_after (1h)"
        );
        let s1 = next_state(Some(&s0), bad.clone(), at(1));
        assert_eq!(s1.repeats, 1);
        assert_eq!(decide(Some(&s1), &bad, at(2), &c), None, "then after 2h");
        assert!(decide(Some(&s1), &bad, at(3), &c).is_some());
        let late = Notified {
            repeats: 10,
            ..s1.clone()
        };
        assert!(
            decide(Some(&late), &bad, at(1 + 24), &c).is_some(),
            "capped at repeat_max"
        );
        assert_eq!(decide(Some(&late), &bad, at(1 + 23), &c), None);
        // A new conflict, a role change and a recovery are each news.
        let more = f(
            Level::Fail,
            "master",
            &["zpool1/a -> pve2", "zpool1/b -> pve2"],
        );
        assert_eq!(
            decide(Some(&s0), &more, at(0), &c).as_deref(),
            Some("new conflict: zpool1/b -> pve2")
        );
        let standby = f(Level::Fail, "standby", &["zpool1/a -> pve2"]);
        assert!(
            decide(Some(&s0), &standby, at(0), &c)
                .unwrap()
                .starts_with("role master")
        );
        assert_eq!(
            decide(Some(&s0), &ok, at(0), &c).as_deref(),
            Some("CRITICAL -> OK")
        );
        assert_eq!(next_state(Some(&s0), ok.clone(), at(0)).repeats, 0);
        assert!(decide(Some(&next_state(None, ok.clone(), at(0))), &ok, at(5), &c).is_none());
        assert!(decide(None, &ok, at(0), &cfg(NotifyOn::EveryRun)).is_some());
    }

    #[test]
    fn labels_never_show_secrets() {
        let t = NotifyTarget {
            kind: TargetKind::Webhook,
            url: Some("https://discord.com/api/webhooks/123/SECRET".into()),
            url_file: None,
            token_file: None,
            format: None,
            command: None,
        };
        let l = label(&t, t.url.as_deref());
        assert_eq!(l, "webhook (discord.com)");
        assert!(!format!("{t:?}").contains("SECRET"));
        assert_eq!(header_safe("ok — naïve\n"), "ok ? na?ve?");
        assert_eq!(truncate("ééé", 3), "é...");
    }
}
