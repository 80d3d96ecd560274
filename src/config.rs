//! The configuration file (TOML): strict, with errors that name the file, the
//! line and the key, and suggest the closest valid key.
//!
//! `parse(path)` reads a file; `parse_str(text, origin)` lets tests feed bytes.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::zfs::names::{is_at_or_below, valid_dataset_name, valid_hold_tag};

pub const DEFAULT_PATH: &str = "/etc/zfs-nfs-replica/config.toml";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub cluster: Cluster,
    #[serde(default)]
    pub ssh: Ssh,
    #[serde(default)]
    pub timeouts: Timeouts,
    #[serde(default)]
    pub replication: Replication,
    #[serde(default)]
    pub paths: Paths,
    #[serde(default)]
    pub proxmox: Proxmox,
    #[serde(default)]
    pub checks: Checks,
    #[serde(default)]
    pub sanoid: Sanoid,
    #[serde(default)]
    pub hook: Hook,
    #[serde(default)]
    pub health: Health,
    #[serde(default)]
    pub status: StatusCfg,
    #[serde(default)]
    pub notify: Notify,
    #[serde(rename = "pool", default)]
    pub pools: Vec<Pool>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cluster {
    /// The Proxmox guest (CT/VM id) whose host node is the master.
    pub guest: u32,
    /// Node name -> address used for ssh. The master replicates to every other node.
    pub nodes: BTreeMap<NodeName, String>,
    /// This node's name, when the hostname is not the Proxmox node name.
    #[serde(default)]
    pub node: Option<NodeName>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Ssh {
    pub user: String,
    pub identity: Option<PathBuf>,
    pub port: u16,
    pub connect_timeout: Dur,
    pub server_alive_interval: Dur,
    pub server_alive_count: u32,
    /// Known-hosts file for the peers; default: ssh's own (`~/.ssh/known_hosts`,
    /// `/etc/ssh/ssh_known_hosts`, which Proxmox links to the cluster-wide file).
    pub known_hosts: Option<PathBuf>,
    /// `yes` (default) or `accept-new`. Never `no`.
    pub strict_host_key_checking: HostKeyChecking,
}

impl Default for Ssh {
    fn default() -> Self {
        Ssh {
            user: "root".into(),
            identity: None,
            port: 22,
            connect_timeout: Dur::secs(10),
            server_alive_interval: Dur::secs(10),
            server_alive_count: 3,
            known_hosts: None,
            strict_host_key_checking: HostKeyChecking::Yes,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HostKeyChecking {
    Yes,
    AcceptNew,
}

impl HostKeyChecking {
    pub fn as_ssh(self) -> &'static str {
        match self {
            HostKeyChecking::Yes => "yes",
            HostKeyChecking::AcceptNew => "accept-new",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Timeouts {
    /// Any single `zfs` command that is not a transfer (list, hold, release, ...),
    /// local or on the peer.
    pub command: Dur,
    /// A transfer that reports no progress for this long is killed.
    pub stall: Dur,
    /// Upper bound for one dataset's transfer.
    pub transfer: Dur,
    /// Between SIGTERM and SIGKILL when a command is killed.
    pub kill_grace: Dur,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            command: Dur::secs(120),
            stall: Dur::secs(600),
            transfer: Dur::secs(24 * 3600),
            kill_grace: Dur::secs(10),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Replication {
    /// Prefix of the hold tag that protects each dataset's incremental base; the
    /// full tag is `<hold_tag>:<other node>`.
    pub hold_tag: HoldTag,
    /// Send the datasets' properties with the stream (`zfs send -p`), so a
    /// failover finds the same mountpoints and settings.
    pub send_properties: bool,
    /// A standby keeps its received filesystems mounted, read-only: OpenZFS
    /// lists the snapshots of an unmounted filesystem several times slower
    /// (bench/RESULTS.md: "Listing forms"), and the copy can be looked at.
    /// `false` leaves new copies as received (unmounted).
    pub standby_mounted: bool,
    /// A timer run lists every snapshot with all its properties at least
    /// this often (per pool and peer, and always first after this node
    /// becomes master); in between it lists only names, guids and
    /// createtxgs, which OpenZFS 2.2+ reads without each snapshot's
    /// properties, and asks the rest of the few snapshots it needs. The
    /// full listing is what finds a hold of ours that a crash left on an
    /// older snapshot. `0`: always list in full.
    pub full_listing_every: Dur,
}

impl Default for Replication {
    fn default() -> Self {
        Replication {
            hold_tag: HoldTag("zfs-nfs-replica".into()),
            send_properties: true,
            standby_mounted: true,
            full_listing_every: Dur::secs(6 * 3600),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Paths {
    /// Lock files and ssh control sockets (tmpfs: nothing here survives a reboot).
    pub run_dir: PathBuf,
    /// Persistent state.
    pub state_dir: PathBuf,
}

impl Default for Paths {
    fn default() -> Self {
        Paths {
            run_dir: "/run/zfs-nfs-replica".into(),
            state_dir: "/var/lib/zfs-nfs-replica".into(),
        }
    }
}

/// How this node asks Proxmox who hosts the guest.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Proxmox {
    /// The local node's API (`https://` only).
    pub url: String,
    /// File holding `USER@REALM!TOKENID=SECRET`; must not be readable by
    /// group or others.
    pub token_file: PathBuf,
    /// The cluster CA that signs every node certificate. Default (when no
    /// `fingerprint` is set): `/etc/pve/pve-root-ca.pem`.
    pub ca_file: Option<PathBuf>,
    /// Instead of the CA: the SHA-256 fingerprint of the node certificate,
    /// `AA:BB:...` as Proxmox shows it.
    pub fingerprint: Option<Fingerprint>,
    /// Bound on each API request (connect, TLS, answer).
    pub timeout: Dur,
    /// The cluster filesystem's guest list, read as a local cross-check when
    /// it exists.
    pub vmlist: PathBuf,
}

pub const DEFAULT_CA_FILE: &str = "/etc/pve/pve-root-ca.pem";

impl Default for Proxmox {
    fn default() -> Self {
        Proxmox {
            url: "https://127.0.0.1:8006".into(),
            token_file: "/etc/zfs-nfs-replica/pve-token".into(),
            ca_file: None,
            fingerprint: None,
            timeout: Dur::secs(10),
            vmlist: "/etc/pve/.vmlist".into(),
        }
    }
}

/// What the TLS connection to the API trusts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    CaFile(PathBuf),
    Fingerprint([u8; 32]),
}

impl Proxmox {
    pub fn trust(&self) -> Trust {
        match (&self.fingerprint, &self.ca_file) {
            (Some(f), _) => Trust::Fingerprint(f.0),
            (None, Some(p)) => Trust::CaFile(p.clone()),
            (None, None) => Trust::CaFile(DEFAULT_CA_FILE.into()),
        }
    }
}

/// A SHA-256 certificate fingerprint, `AA:BB:...` (32 bytes).
#[derive(Clone, PartialEq, Eq)]
pub struct Fingerprint(pub [u8; 32]);

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hex: Vec<String> = self.0.iter().map(|b| format!("{b:02X}")).collect();
        f.write_str(&hex.join(":"))
    }
}

pub fn parse_fingerprint(s: &str) -> Result<[u8; 32], String> {
    let bad = || {
        format!(
            "invalid fingerprint `{s}`: write the SHA-256 fingerprint as 32 hex bytes separated by `:` (AA:BB:...)"
        )
    };
    let parts: Vec<&str> = s.trim().split(':').collect();
    if parts.len() != 32 {
        return Err(bad());
    }
    let mut out = [0u8; 32];
    for (i, p) in parts.iter().enumerate() {
        if p.len() != 2 {
            return Err(bad());
        }
        out[i] = u8::from_str_radix(p, 16).map_err(|_| bad())?;
    }
    Ok(out)
}

impl<'de> Deserialize<'de> for Fingerprint {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_fingerprint(&s)
            .map(Fingerprint)
            .map_err(serde::de::Error::custom)
    }
}

/// The repeated master check.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Checks {
    /// How many times every check must agree (the triple check).
    pub count: u32,
    /// Pause between two checks.
    pub interval: Dur,
}

impl Default for Checks {
    fn default() -> Self {
        Checks {
            count: 3,
            interval: Dur::secs(2),
        }
    }
}

/// The sanoid config whose `autosnap` follows this node's role.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Sanoid {
    pub config: PathBuf,
    /// Dataset sections whose `autosnap` follows the role. Default: the
    /// configured pools' names. `[]` leaves sanoid.conf alone.
    pub datasets: Option<Vec<DatasetName>>,
}

impl Default for Sanoid {
    fn default() -> Self {
        Sanoid {
            config: "/etc/sanoid/sanoid.conf".into(),
            datasets: None,
        }
    }
}

/// The Proxmox hookscript (`zfs-nfs-replica hook <vmid> <phase>`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Hook {
    /// The promotion (`pre-start`: writable, mounted, sanoid on) is bounded
    /// by this.
    pub timeout: Dur,
    /// A planned migration's handover (the old master's last writes sent
    /// before the guest starts here) may delay the start this long; past
    /// it, this node promotes at once and the rest is a divergence.
    pub handover_timeout: Dur,
}

impl Default for Hook {
    fn default() -> Self {
        Hook {
            timeout: Dur::secs(30),
            handover_timeout: Dur::secs(600),
        }
    }
}

/// What the master does when one of its pools is unhealthy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnUnhealthy {
    /// Report it and replicate anyway.
    Alert,
    /// Report it and replicate nothing from that pool.
    Refuse,
    /// Replicate what can be, then ask Proxmox HA to move the guest to a
    /// healthy standby (or stop it, within the cooldown of an earlier move).
    Failover,
}

impl OnUnhealthy {
    pub fn as_str(self) -> &'static str {
        match self {
            OnUnhealthy::Alert => "alert",
            OnUnhealthy::Refuse => "refuse",
            OnUnhealthy::Failover => "failover",
        }
    }
}

/// Pool health (`zpool status`, `zpool list`), read on every node every run.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Health {
    /// Warn when a pool has less than this fraction of its size free.
    pub min_free: f64,
    /// The master's policy for an unhealthy source pool.
    pub on_unhealthy: OnUnhealthy,
    /// After the guest moved to this node (or this node moved it away), a
    /// health failure within this time stops the guest instead of moving
    /// it again: no ping-pong between two sick nodes.
    pub failover_cooldown: Dur,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            min_free: 0.05,
            on_unhealthy: OnUnhealthy::Alert,
            failover_cooldown: Dur::secs(3600),
        }
    }
}

/// When notifications are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NotifyOn {
    /// A change of state (failing, recovered, role, a new conflict), and a
    /// persisting failure again with back-off.
    Changes,
    /// Every run, whatever happened.
    EveryRun,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TargetKind {
    Ntfy,
    Gotify,
    Webhook,
    Healthchecks,
    Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum WebhookFormat {
    /// `{"title", "message", "status", "node", "reasons", "time"}`.
    #[default]
    Json,
    /// `{"content": ...}`.
    Discord,
    /// `{"text": ...}`.
    Slack,
}

/// One notification target. URLs often carry secrets: give them in a file
/// (`url_file`) if the config is readable by others; they are never logged.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyTarget {
    pub kind: TargetKind,
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub url_file: Option<PathBuf>,
    /// ntfy: an access token (sent as a Bearer token); gotify: the app token.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// webhook only.
    #[serde(default)]
    pub format: Option<WebhookFormat>,
    /// command only: argv; `{title}`, `{body}`, `{status}`, `{node}` are replaced.
    #[serde(default)]
    pub command: Option<Vec<String>>,
}

impl fmt::Debug for NotifyTarget {
    // The URL may hold a secret: never printed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NotifyTarget")
            .field("kind", &self.kind)
            .field("url", &self.url.as_ref().map(|_| "<hidden>"))
            .field("url_file", &self.url_file)
            .field("token_file", &self.token_file)
            .field("format", &self.format)
            .field(
                "command",
                &self.command.as_ref().map(|c| c.first().cloned()),
            )
            .finish()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Notify {
    pub on: NotifyOn,
    /// A failure that persists is notified again after this, then after
    /// twice as long, and so on up to `repeat_max`.
    pub repeat_after: Dur,
    pub repeat_max: Dur,
    /// Bound on each delivery (HTTP request or command).
    pub timeout: Dur,
    /// Trusted CAs for HTTPS targets (Debian's bundle by default).
    pub ca_file: PathBuf,
    #[serde(rename = "target")]
    pub targets: Vec<NotifyTarget>,
}

impl Default for Notify {
    fn default() -> Self {
        Notify {
            on: NotifyOn::Changes,
            repeat_after: Dur::secs(3600),
            repeat_max: Dur::secs(24 * 3600),
            timeout: Dur::secs(10),
            ca_file: "/etc/ssl/certs/ca-certificates.crt".into(),
            targets: Vec::new(),
        }
    }
}

pub const DEFAULT_PROM: &str = "/var/lib/prometheus/node-exporter/zfs_nfs_replica.prom";

/// `status` and the metrics every run writes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StatusCfg {
    /// The node_exporter textfile; written when its directory exists. `""`
    /// turns it off.
    pub prometheus_textfile: PathBuf,
    /// Replication lag (or time since the last run) that makes the status
    /// WARN, and CRIT. Includes sanoid's snapshot interval.
    pub warn_lag: Dur,
    pub crit_lag: Dur,
    /// Failed runs in a row before a transient failure is CRIT.
    pub max_failures: u32,
}

impl Default for StatusCfg {
    fn default() -> Self {
        StatusCfg {
            prometheus_textfile: DEFAULT_PROM.into(),
            warn_lag: Dur::secs(2 * 3600),
            crit_lag: Dur::secs(6 * 3600),
            max_failures: 3,
        }
    }
}

impl Config {
    /// The sanoid sections whose autosnap this tool manages.
    pub fn sanoid_datasets(&self) -> Vec<String> {
        match &self.sanoid.datasets {
            Some(d) => d.iter().map(|d| d.to_string()).collect(),
            None => self.pools.iter().map(|p| p.name.to_string()).collect(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pool {
    /// The local pool (or dataset) to replicate, with everything below it.
    pub name: DatasetName,
    /// Where it goes on the peers; default: the same name.
    #[serde(default)]
    pub target: Option<DatasetName>,
    /// Subtrees that are not replicated (full dataset names below `name`).
    #[serde(default)]
    pub exclude: Vec<DatasetName>,
    /// Refuse the pool when a source dataset uses less than this fraction
    /// of its replica (an empty or replaced disk).
    #[serde(default = "default_min_size_ratio")]
    pub min_size_ratio: f64,
    /// Refuse the pool when a dataset shrank (source) or changed (replica)
    /// by more than this fraction since the last successful run.
    #[serde(default = "default_history_tolerance")]
    pub history_tolerance: f64,
    /// The pool's disks by their `/dev/disk/by-id/` names (e.g.
    /// `usb-WD_Elements_25A3_5758...-0:0`); a missing one is reported.
    #[serde(default)]
    pub disks: Vec<String>,
}

fn default_min_size_ratio() -> f64 {
    0.5
}

fn default_history_tolerance() -> f64 {
    0.2
}

impl Pool {
    /// Is `name` one of this pool's replicated datasets on the source: at
    /// or below the pool, not excluded, not in its quarantine (which stays
    /// read-only and unreplicated whatever the role).
    pub fn manages(&self, name: &str) -> bool {
        is_at_or_below(name, self.name.as_str())
            && !self.excludes(name)
            && !is_at_or_below(name, &crate::quarantine::container(self.name.as_str()))
    }

    /// Is `name` at or below one of the excluded subtrees?
    pub fn excludes(&self, name: &str) -> bool {
        self.exclude
            .iter()
            .any(|e| is_at_or_below(name, e.as_str()))
    }

    pub fn target(&self) -> &str {
        self.target.as_ref().unwrap_or(&self.name).as_str()
    }

    /// The zpool the source dataset lives in.
    pub fn zpool(&self) -> &str {
        pool_of(self.name.as_str())
    }

    /// The zpool the target dataset lives in (on the peers).
    pub fn target_zpool(&self) -> &str {
        pool_of(self.target())
    }
}

/// The pool part of a dataset name.
pub fn pool_of(dataset: &str) -> &str {
    dataset.split('/').next().unwrap_or(dataset)
}

/// A human duration: "500ms", "5s", "10m", "2h", "1d", or combinations ("1h30m").
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Dur(pub Duration);

impl Dur {
    pub const fn secs(s: u64) -> Dur {
        Dur(Duration::from_secs(s))
    }
    pub fn get(self) -> Duration {
        self.0
    }
}

impl fmt::Debug for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if t == "0" {
        return Ok(Duration::ZERO);
    }
    // humantime: the units systemd accepts ("500ms", "30s", "10min",
    // "2h", "1h 30m", "7days"); a bare number or a sign is refused.
    let total = humantime::parse_duration(t).map_err(|e| match e {
        // Beyond what a u64 of nanoseconds holds (or finer than one).
        humantime::DurationError::NumberOverflow => format!(
            "duration `{s}` is out of range: longer than a year (365d), where every wait of the tool must end, or finer than 1ns"
        ),
        e => format!(
            "invalid duration `{s}` ({e}): write e.g. \"500ms\", \"30s\", \"10m\", \"2h\", \"1h30m\""
        ),
    })?;
    if total > MAX_DURATION {
        return Err(format!(
            "duration `{s}` is longer than a year (365d): every wait of the tool must end"
        ));
    }
    Ok(total)
}

/// The longest duration a setting may have. Deadlines are added to clocks
/// and multiplied (a check's deadline is twice the API timeout): a year
/// leaves room for that, where an absurd value would overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 86400);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_duration(&s)
            .map(Dur)
            .map_err(serde::de::Error::custom)
    }
}

macro_rules! validated_string {
    ($(#[$m:meta])* $name:ident, $check:expr) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                let check: fn(&str) -> Result<(), _> = $check;
                check(&s).map_err(serde::de::Error::custom)?;
                Ok($name(s))
            }
        }
    };
}

validated_string!(
    /// A ZFS dataset name (pool or pool/path), checked like OpenZFS does.
    DatasetName,
    valid_dataset_name
);
validated_string!(
    /// A Proxmox node name (a hostname label).
    NodeName,
    valid_node_name
);
validated_string!(
    /// A `zfs hold` tag prefix.
    HoldTag,
    valid_hold_tag
);

pub fn valid_node_name(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid node name `{s}`: Proxmox node names are hostname labels (letters, digits, `-`)"
        ))
    }
}

/// A configuration error, already phrased for the operator.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

pub fn parse(path: &Path) -> Result<Config, ConfigError> {
    let text = crate::files::read_text(path, 4 << 20).map_err(|e| {
        ConfigError(format!(
            "{}: cannot read config: {}",
            path.display(),
            e.reason()
        ))
    })?;
    parse_str(&text, &path.display().to_string())
}

/// Parse and validate configuration text; `origin` names it in errors.
pub fn parse_str(text: &str, origin: &str) -> Result<Config, ConfigError> {
    let cfg: Config =
        toml::from_str(text).map_err(|e| ConfigError(describe_toml_error(&e, text, origin)))?;
    validate(&cfg).map_err(|e| {
        ConfigError(match locate(text, e.table, e.nth, e.key) {
            Some(line) => format!("{origin}:{line}: {}", e.msg),
            None => format!("{origin}: {}", e.msg),
        })
    })?;
    Ok(cfg)
}

/// The line (1-based) where `key` of the `nth` `[table]` (or `[[table]]`)
/// is written, else that table's header; None when neither is (a default).
fn locate(text: &str, table: &str, nth: usize, key: &str) -> Option<usize> {
    if table.is_empty() {
        return None;
    }
    let mut current = String::new();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut index = 0;
    let mut header = None;
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        let name = t
            .strip_prefix("[[")
            .and_then(|r| r.split("]]").next())
            .or_else(|| t.strip_prefix('[').and_then(|r| r.split(']').next()));
        if let Some(name) = name {
            current = name.trim().to_string();
            let n = seen.entry(current.clone()).or_insert(0);
            index = *n;
            *n += 1;
            if current == table && index == nth {
                header = Some(i + 1);
            }
            // `[cluster.nodes]` is where `nodes` of [cluster] is written.
            if !key.is_empty() && current == format!("{table}.{key}") {
                return Some(i + 1);
            }
            continue;
        }
        if current == table && index == nth && !key.is_empty() {
            let written = t
                .split_once('=')
                .map(|(k, _)| k.trim().trim_matches('"'))
                .is_some_and(|k| k == key || k.starts_with(&format!("{key}.")));
            if written {
                return Some(i + 1);
            }
        }
    }
    header
}

/// A host name (RFC 1123 labels), an IPv4 address, or an IPv6 address
/// (with an optional `%zone`): what ssh is handed after `--`, nothing a
/// shell or ssh could read as more than one word or an option.
fn valid_address(a: &str) -> bool {
    if a.is_empty() || a.len() > 253 {
        return false;
    }
    if a.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    if let Some((ip, zone)) = a.split_once('%') {
        return ip.parse::<std::net::Ipv6Addr>().is_ok()
            && !zone.is_empty()
            && zone
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    }
    a.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    })
}

/// A login name as ssh's `-l` takes it: no blank, no shell character, not
/// an option.
fn valid_user(u: &str) -> bool {
    !u.is_empty()
        && u.len() <= 32
        && !u.starts_with('-')
        && u.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// A setting that parsed but makes no sense, and where it is written.
struct Invalid {
    /// `cluster`, `pool`, `notify.target`, ... ("" for the top level).
    table: &'static str,
    /// Which `[[table]]` of an array of tables (0 otherwise).
    nth: usize,
    /// The key ("" for the table itself).
    key: &'static str,
    msg: String,
}

fn bad(table: &'static str, nth: usize, key: &'static str, msg: String) -> Invalid {
    Invalid {
        table,
        nth,
        key,
        msg,
    }
}

fn validate(cfg: &Config) -> Result<(), Invalid> {
    if cfg.cluster.nodes.len() < 2 {
        return Err(bad(
            "cluster",
            0,
            "nodes",
            "[cluster] nodes: list at least two nodes (this one and a peer)".into(),
        ));
    }
    if let Some(n) = &cfg.cluster.node
        && !cfg.cluster.nodes.contains_key(n)
    {
        return Err(bad(
            "cluster",
            0,
            "node",
            format!("[cluster] node `{n}` is not one of [cluster] nodes"),
        ));
    }
    for (n, addr) in &cfg.cluster.nodes {
        if !valid_address(addr) {
            return Err(bad(
                "cluster",
                0,
                "nodes",
                format!(
                    "[cluster] nodes.{n}: invalid address `{addr}` (a host name, an IPv4 or an IPv6 address)"
                ),
            ));
        }
    }
    for (key, dir) in [
        ("run_dir", &cfg.paths.run_dir),
        ("state_dir", &cfg.paths.state_dir),
    ] {
        if !dir.is_absolute() {
            return Err(bad(
                "paths",
                0,
                key,
                format!(
                    "[paths] {key} `{}`: must be an absolute path (a relative one would put the tool's files wherever it was started)",
                    dir.display()
                ),
            ));
        }
    }
    if !valid_user(&cfg.ssh.user) {
        return Err(bad(
            "ssh",
            0,
            "user",
            format!(
                "[ssh] user `{}`: not a user name (letters, digits, `_`, `-`, `.`; not starting with `-`)",
                cfg.ssh.user
            ),
        ));
    }
    if cfg.pools.is_empty() {
        return Err(bad(
            "",
            0,
            "",
            "no [[pool]] configured: add at least one `[[pool]]` with a `name`".into(),
        ));
    }
    let mut seen = std::collections::BTreeSet::new();
    for (i, p) in cfg.pools.iter().enumerate() {
        let pool = |key: &'static str, msg: String| bad("pool", i, key, msg);
        if !(p.min_size_ratio > 0.0 && p.min_size_ratio <= 1.0) {
            return Err(pool(
                "min_size_ratio",
                format!(
                    "[[pool]] `{}`: min_size_ratio {} must be in (0, 1]",
                    p.name, p.min_size_ratio
                ),
            ));
        }
        if !(0.0..1.0).contains(&p.history_tolerance) {
            return Err(pool(
                "history_tolerance",
                format!(
                    "[[pool]] `{}`: history_tolerance {} must be in [0, 1)",
                    p.name, p.history_tolerance
                ),
            ));
        }
        if !seen.insert(p.name.as_str()) {
            return Err(pool(
                "name",
                format!("[[pool]] name `{}` is configured twice", p.name),
            ));
        }
        for d in &p.disks {
            if d.is_empty() || d.contains('/') || d.starts_with('.') {
                return Err(pool(
                    "disks",
                    format!(
                        "[[pool]] `{}`: disks entry `{d}` must be a name in /dev/disk/by-id/ (no path)",
                        p.name
                    ),
                ));
            }
        }
        for e in &p.exclude {
            if !e.as_str().starts_with(&format!("{}/", p.name)) {
                return Err(pool(
                    "exclude",
                    format!(
                        "[[pool]] `{}`: exclude `{e}` is not a dataset below `{}`",
                        p.name, p.name
                    ),
                ));
            }
        }
    }
    let t = &cfg.timeouts;
    for (k, d) in [
        ("command", t.command),
        ("stall", t.stall),
        ("transfer", t.transfer),
    ] {
        if d.get().is_zero() {
            return Err(bad(
                "timeouts",
                0,
                k,
                format!("[timeouts] {k}: must be more than 0 (a deadline is required)"),
            ));
        }
    }
    let px = &cfg.proxmox;
    let Some(rest) = px.url.strip_prefix("https://") else {
        return Err(bad(
            "proxmox",
            0,
            "url",
            format!(
                "[proxmox] url `{}`: must start with https:// (the API is only spoken over verified TLS)",
                px.url
            ),
        ));
    };
    if rest.is_empty()
        || rest.contains(char::is_whitespace)
        || reqwest::Url::parse(&px.url).is_err()
    {
        return Err(bad(
            "proxmox",
            0,
            "url",
            format!("[proxmox] url `{}`: not a valid URL", px.url),
        ));
    }
    if px.ca_file.is_some() && px.fingerprint.is_some() {
        return Err(bad(
            "proxmox",
            0,
            "fingerprint",
            "[proxmox] set either ca_file or fingerprint, not both (which one to trust would be ambiguous)"
                .into(),
        ));
    }
    if px.timeout.get().is_zero() {
        return Err(bad(
            "proxmox",
            0,
            "timeout",
            "[proxmox] timeout: must be more than 0 (a deadline is required)".into(),
        ));
    }
    if cfg.checks.count == 0 || cfg.checks.count > 10 {
        return Err(bad(
            "checks",
            0,
            "count",
            "[checks] count: must be between 1 and 10".into(),
        ));
    }
    if !(0.0..1.0).contains(&cfg.health.min_free) {
        return Err(bad(
            "health",
            0,
            "min_free",
            format!(
                "[health] min_free {} must be in [0, 1) (a fraction of the pool's size, e.g. 0.05)",
                cfg.health.min_free
            ),
        ));
    }
    let n = &cfg.notify;
    if n.timeout.get().is_zero() || n.repeat_after.get().is_zero() {
        return Err(bad(
            "notify",
            0,
            "timeout",
            "[notify] timeout and repeat_after: must be more than 0".into(),
        ));
    }
    if n.repeat_max.get() < n.repeat_after.get() {
        return Err(bad(
            "notify",
            0,
            "repeat_max",
            "[notify] repeat_max: must be at least repeat_after".into(),
        ));
    }
    for (i, t) in n.targets.iter().enumerate() {
        validate_target(t).map_err(|e| {
            bad(
                "notify.target",
                i,
                "",
                format!("[[notify.target]] #{} ({:?}): {e}", i + 1, t.kind),
            )
        })?;
    }
    let st = &cfg.status;
    if st.warn_lag.get().is_zero() || st.crit_lag.get() < st.warn_lag.get() {
        return Err(bad(
            "status",
            0,
            "crit_lag",
            "[status] warn_lag must be more than 0 and crit_lag at least warn_lag".into(),
        ));
    }
    if st.max_failures == 0 {
        return Err(bad(
            "status",
            0,
            "max_failures",
            "[status] max_failures: must be at least 1".into(),
        ));
    }
    if cfg.hook.timeout.get().is_zero() {
        return Err(bad(
            "hook",
            0,
            "timeout",
            "[hook] timeout: must be more than 0 (a deadline is required)".into(),
        ));
    }
    if cfg.hook.handover_timeout.get() > Duration::from_secs(3600) {
        return Err(bad(
            "hook",
            0,
            "handover_timeout",
            "[hook] handover_timeout: at most 1h (the guest's start waits for it)".into(),
        ));
    }
    if cfg.ssh.connect_timeout.get() < Duration::from_secs(1) {
        return Err(bad(
            "ssh",
            0,
            "connect_timeout",
            "[ssh] connect_timeout: must be at least 1s (ssh counts whole seconds)".into(),
        ));
    }
    if cfg.ssh.server_alive_interval.get() < Duration::from_secs(1)
        || cfg.ssh.server_alive_count == 0
    {
        return Err(bad(
            "ssh",
            0,
            "server_alive_interval",
            "[ssh] server_alive_interval must be at least 1s and server_alive_count at least 1"
                .into(),
        ));
    }
    Ok(())
}

fn validate_target(t: &NotifyTarget) -> Result<(), String> {
    let http = t.kind != TargetKind::Command;
    match (http, t.url.is_some(), t.url_file.is_some()) {
        (true, true, true) => return Err("set url or url_file, not both".into()),
        (true, false, false) => return Err("url (or url_file) is required".into()),
        (false, true, _) | (false, _, true) => {
            return Err("url/url_file are for HTTP targets; a command target has `command`".into());
        }
        _ => {}
    }
    if let Some(u) = &t.url
        && !(u.starts_with("https://") || u.starts_with("http://"))
    {
        return Err("url must start with https:// (or http://)".into());
    }
    match t.kind {
        TargetKind::Command => match &t.command {
            Some(c) if !c.is_empty() && !c[0].is_empty() => {}
            _ => return Err("command = [\"program\", \"arg\", ...] is required".into()),
        },
        _ if t.command.is_some() => return Err("command is for kind = \"command\" only".into()),
        _ => {}
    }
    if t.format.is_some() && t.kind != TargetKind::Webhook {
        return Err("format is for kind = \"webhook\" only".into());
    }
    match (t.kind, &t.token_file) {
        (TargetKind::Gotify, None) => Err("token_file (the app token) is required".into()),
        (TargetKind::Ntfy | TargetKind::Gotify, _) | (_, None) => Ok(()),
        _ => Err("token_file is for ntfy and gotify only".into()),
    }
}

/// Turn a TOML/serde error into one line: `file:line: message (did you mean ...)`.
fn describe_toml_error(e: &toml::de::Error, text: &str, origin: &str) -> String {
    let msg = e.message().trim().to_string();
    let (line, section) = match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            // On a `[table]` line itself the error is about the table, at
            // the top level; below one, about a key of that table.
            let this_line = text.lines().nth(line - 1).unwrap_or("");
            let section = if this_line.trim_start().starts_with('[') {
                None
            } else {
                section_at(before)
            };
            (Some(line), section)
        }
        None => (None, None),
    };
    let mut out = match line {
        Some(l) => format!("{origin}:{l}: "),
        None => format!("{origin}: "),
    };
    if let Some(sec) = section {
        out.push_str(&format!("in [{sec}]: "));
    }
    out.push_str(&msg.replace('\n', " "));
    if let Some(s) = suggestion(&msg) {
        out.push_str(&format!(" (did you mean `{s}`?)"));
    }
    out
}

/// The `[section]` header in force at the end of `before`.
fn section_at(before: &str) -> Option<String> {
    before.lines().rev().find_map(|l| {
        let t = l.trim();
        let inner = t
            .strip_prefix("[[")
            .and_then(|r| r.strip_suffix("]]"))
            .or_else(|| t.strip_prefix('[').and_then(|r| r.strip_suffix(']')))?;
        Some(inner.trim().to_string())
    })
}

/// From serde's "unknown field `x`, expected one of `a`, `b`", the nearest valid key.
fn suggestion(msg: &str) -> Option<String> {
    let (unknown, rest) = if let Some(r) = msg.strip_prefix("unknown field `") {
        let end = r.find('`')?;
        (&r[..end], &r[end..])
    } else if let Some(r) = msg.strip_prefix("unknown variant `") {
        let end = r.find('`')?;
        (&r[..end], &r[end..])
    } else {
        return None;
    };
    let expected = rest.split_once("expected")?.1;
    let candidates: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
    candidates
        .into_iter()
        .map(|c| (edit_distance(unknown, c), c))
        .filter(|(d, c)| *d <= (c.len().max(unknown.len()) / 2).max(2))
        .min()
        .map(|(_, c)| c.to_string())
}

fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[cluster]
guest = 103
nodes = { pve1 = "10.0.0.11", pve2 = "10.0.0.12" }

[[pool]]
name = "zpool1"
"#;

    #[test]
    fn minimal_config_gets_defaults() {
        let c = parse_str(MINIMAL, "t.toml").unwrap();
        assert_eq!(c.cluster.guest, 103);
        assert_eq!(c.ssh.user, "root");
        assert_eq!(c.ssh.connect_timeout.get(), Duration::from_secs(10));
        assert_eq!(c.pools[0].target(), "zpool1");
        assert_eq!(c.timeouts.stall.get(), Duration::from_secs(600));
        assert_eq!(c.replication.hold_tag.as_str(), "zfs-nfs-replica");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("10m").unwrap(), Duration::from_secs(600));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("365d").unwrap(), MAX_DURATION);
        for absurd in [
            "9999999999999999999s",
            "366d",
            "18446744073709551615ms",
            "99999999999999999999s",
        ] {
            assert!(parse_duration(absurd).is_err(), "{absurd}");
        }
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert_eq!(
            parse_duration("1h 30min").unwrap(),
            Duration::from_secs(5400)
        );
        for bad in ["", "5", "s", "-5s", "5x", "1h-2m", "99999999999999999999s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn unknown_key_names_file_line_section_and_suggestion() {
        let text = MINIMAL.replace("[[pool]]", "[ssh]\nidenity = \"/k\"\n\n[[pool]]");
        let e = parse_str(&text, "/etc/x.toml").unwrap_err().0;
        assert!(
            e.starts_with("/etc/x.toml:7: in [ssh]: unknown field `idenity`"),
            "{e}"
        );
        assert!(e.ends_with("(did you mean `identity`?)"), "{e}");
        assert!(!e.contains('\n'));
    }

    #[test]
    fn wrong_type_names_line() {
        let text = MINIMAL.replace("guest = 103", "guest = \"ct103\"");
        let e = parse_str(&text, "c.toml").unwrap_err().0;
        assert!(e.starts_with("c.toml:3: in [cluster]:"), "{e}");
        assert!(e.contains("invalid type"), "{e}");
    }

    #[test]
    fn bad_values_are_errors() {
        let cases = [
            (
                "[ssh]\nconnect_timeout = \"5 parsecs\"\n",
                "invalid duration",
            ),
            (
                "[ssh]\nstrict_host_key_checking = \"no\"\n",
                "unknown variant `no`",
            ),
            ("[timeouts]\nstall = \"0\"\n", "must be more than 0"),
        ];
        for (extra, want) in cases {
            let text = MINIMAL.replace("[[pool]]", &format!("{extra}\n[[pool]]"));
            let e = parse_str(&text, "c.toml").unwrap_err().0;
            assert!(e.contains(want), "{extra}: {e}");
        }
        let e = parse_str(&MINIMAL.replace("zpool1\"", "zpool1/../x\""), "c.toml")
            .unwrap_err()
            .0;
        assert!(
            e.contains("c.toml:7") && e.contains("invalid dataset name"),
            "{e}"
        );
        let e = parse_str(&MINIMAL.replace("pve2 =", "-bad ="), "c.toml")
            .unwrap_err()
            .0;
        assert!(e.contains("invalid node name"), "{e}");
    }

    #[test]
    fn cross_field_checks() {
        let one_node = MINIMAL.replace(", pve2 = \"10.0.0.12\"", "");
        assert!(
            parse_str(&one_node, "c")
                .unwrap_err()
                .0
                .contains("at least two nodes")
        );
        let no_pool = MINIMAL.replace("[[pool]]\nname = \"zpool1\"\n", "");
        assert!(
            parse_str(&no_pool, "c")
                .unwrap_err()
                .0
                .contains("no [[pool]]")
        );
        let dup = format!("{MINIMAL}\n[[pool]]\nname = \"zpool1\"\n");
        assert!(
            parse_str(&dup, "c")
                .unwrap_err()
                .0
                .contains("configured twice")
        );
        let unknown_self = MINIMAL.replace("guest = 103", "guest = 103\nnode = \"pve9\"");
        assert!(
            parse_str(&unknown_self, "c")
                .unwrap_err()
                .0
                .contains("not one of")
        );
        let bad_exclude = format!("{MINIMAL}exclude = [\"zpool2/x\"]\n");
        assert!(
            parse_str(&bad_exclude, "c")
                .unwrap_err()
                .0
                .contains("not a dataset below")
        );
    }

    #[test]
    fn proxmox_and_checks() {
        let c = parse_str(MINIMAL, "c").unwrap();
        assert_eq!(c.proxmox.trust(), Trust::CaFile(DEFAULT_CA_FILE.into()));
        assert_eq!(c.checks.count, 3);
        assert_eq!(c.sanoid_datasets(), vec!["zpool1".to_string()]);
        let fp = (0..32)
            .map(|i| format!("{i:02x}"))
            .collect::<Vec<_>>()
            .join(":");
        let pinned = MINIMAL.replace(
            "[[pool]]",
            &format!("[proxmox]\nfingerprint = \"{fp}\"\n[[pool]]"),
        );
        let c = parse_str(&pinned, "c").unwrap();
        match c.proxmox.trust() {
            Trust::Fingerprint(b) => assert_eq!(b[31], 31),
            t => panic!("{t:?}"),
        }
        let cases = [
            (
                "[proxmox]\nurl = \"http://127.0.0.1:8006\"\n",
                "must start with https://",
            ),
            ("[proxmox]\nurl = \"https://\"\n", "not a valid URL"),
            (
                "[proxmox]\nfingerprint = \"AA:BB\"\n",
                "invalid fingerprint",
            ),
            (
                &format!("[proxmox]\nfingerprint = \"{fp}\"\nca_file = \"/x\"\n"),
                "either ca_file or fingerprint",
            ),
            ("[proxmox]\ntimeout = \"0\"\n", "must be more than 0"),
            ("[checks]\ncount = 0\n", "between 1 and 10"),
            ("[hook]\ntimeout = \"0\"\n", "must be more than 0"),
            (
                "[sanoid]\ndatasets = [\"bad@name\"]\n",
                "invalid dataset name",
            ),
            ("[proxmox]\ntoken = \"x\"\n", "did you mean `token_file`"),
        ];
        for (extra, want) in cases {
            let text = MINIMAL.replace("[[pool]]", &format!("{extra}\n[[pool]]"));
            let e = parse_str(&text, "c.toml").unwrap_err().0;
            assert!(e.contains(want), "{extra}: {e}");
        }
        let none = MINIMAL.replace("[[pool]]", "[sanoid]\ndatasets = []\n[[pool]]");
        assert!(parse_str(&none, "c").unwrap().sanoid_datasets().is_empty());
    }

    #[test]
    fn health() {
        let c = parse_str(MINIMAL, "c").unwrap();
        assert_eq!(c.health.on_unhealthy, OnUnhealthy::Alert);
        assert_eq!(c.health.failover_cooldown.get(), Duration::from_secs(3600));
        assert_eq!(c.pools[0].zpool(), "zpool1");
        let cases = [
            (
                "[health]\nmin_free = 1.5\n",
                "min_free 1.5 must be in [0, 1)",
            ),
            (
                "[health]\non_unhealthy = \"failovr\"\n",
                "(did you mean `failover`?)",
            ),
        ];
        for (extra, want) in cases {
            let text = MINIMAL.replace("[[pool]]", &format!("{extra}\n[[pool]]"));
            let e = parse_str(&text, "c.toml").unwrap_err().0;
            assert!(e.contains(want), "{extra}: {e}");
        }
        let e = parse_str(&format!("{MINIMAL}disks = [\"/dev/sda\"]\n"), "c")
            .unwrap_err()
            .0;
        assert!(e.contains("must be a name in /dev/disk/by-id/"), "{e}");
        let c = parse_str(
            &format!("{MINIMAL}target = \"backup/zpool1\"\ndisks = [\"usb-X\"]\n"),
            "c",
        )
        .unwrap();
        assert_eq!(c.pools[0].target_zpool(), "backup");
        assert_eq!(c.pools[0].disks, ["usb-X"]);
    }

    #[test]
    fn suggestion_needs_a_close_key() {
        assert_eq!(
            suggestion("unknown field `prot`, expected one of `user`, `port`"),
            Some("port".into())
        );
        assert_eq!(
            suggestion("unknown field `zzzzzzzz`, expected one of `user`, `port`"),
            None
        );
    }
}
