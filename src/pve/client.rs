//! The Proxmox API over HTTPS: TLS always verified (the cluster CA, or a
//! SHA-256 pin of the node certificate), an API token read from a file that
//! only root can read, every request bounded, and the `{"data": ...}`
//! envelope unwrapped in one place.

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{AUTHORIZATION, HeaderValue};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use serde_json::Value;

use crate::config::{Proxmox, Trust};

/// Why an API request gave no usable answer. Every variant means "doubt".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// Our own setup (token file, CA file): nothing was sent. In the other
    /// variants `path` is the request as people read it: `GET /cluster/status`.
    #[error("{0}")]
    Setup(String),
    #[error("{path}: no answer within {secs}s")]
    Timeout { path: String, secs: u64 },
    #[error("{path}: cannot reach the API: {reason}")]
    Unreachable { path: String, reason: String },
    #[error("{path}: HTTP {status}{hint}")]
    Status {
        path: String,
        status: u16,
        hint: String,
    },
    #[error("{path}: malformed answer: {reason}")]
    Malformed { path: String, reason: String },
}

/// `USER@REALM!TOKENID=SECRET`. Never printed: `Debug` shows only the id.
#[derive(Clone)]
pub struct Token(String);

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let id = self.0.split_once('=').map(|(id, _)| id).unwrap_or("?");
        write!(f, "Token({id}=<secret>)")
    }
}

/// Read the token file, refusing one that group or others can read.
pub fn load_token(path: &Path) -> Result<Token, ApiError> {
    use std::os::unix::fs::PermissionsExt;
    let shown = path.display();
    let meta = std::fs::metadata(path)
        .map_err(|e| ApiError::Setup(format!("[proxmox] token_file {shown}: {e}")))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(ApiError::Setup(format!(
            "[proxmox] token_file {shown} is readable by group or others (mode {mode:04o}): run `chmod 600 {shown}`"
        )));
    }
    let text = crate::files::read_text(path, 64 << 10)
        .map_err(|e| ApiError::Setup(format!("[proxmox] token_file {e}")))?;
    let t = text.trim();
    let t = t.strip_prefix("PVEAPIToken=").unwrap_or(t);
    // USER@REALM!TOKENID=SECRET; the secret itself is never echoed.
    let ok = t.lines().count() == 1
        && t.split_once('=').is_some_and(|(id, secret)| {
            !secret.is_empty()
                && id
                    .split_once('!')
                    .is_some_and(|(user, tid)| user.contains('@') && !tid.is_empty())
        })
        && !t.contains(char::is_whitespace);
    if !ok {
        return Err(ApiError::Setup(format!(
            "[proxmox] token_file {shown}: expected one line `USER@REALM!TOKENID=SECRET`"
        )));
    }
    Ok(Token(t.to_string()))
}

pub struct Client {
    http: reqwest::Client,
    base: String,
    timeout: Duration,
    auth: HeaderValue,
}

impl Client {
    pub fn new(cfg: &Proxmox) -> Result<Client, ApiError> {
        let token = load_token(&cfg.token_file)?;
        let tls = tls_config(&cfg.trust())?;
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .no_proxy()
            .http1_only()
            .timeout(cfg.timeout.get())
            .connect_timeout(cfg.timeout.get())
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| ApiError::Setup(format!("cannot set up the HTTPS client: {e}")))?;
        let mut auth = HeaderValue::from_str(&format!("PVEAPIToken={}", token.0))
            .map_err(|_| ApiError::Setup("[proxmox] token_file: invalid characters".into()))?;
        // Keeps the header out of any debug output.
        auth.set_sensitive(true);
        Ok(Client {
            http,
            base: format!("{}/api2/json", cfg.url.trim_end_matches('/')),
            timeout: cfg.timeout.get(),
            auth,
        })
    }

    /// `GET /api2/json{path}`, returning what is under `data`.
    pub async fn get(&self, path: &str) -> Result<Value, ApiError> {
        self.request(reqwest::Method::GET, path, None).await
    }

    /// `POST` with a form body (`key=value&...`, values already safe: node
    /// names and words), returning what is under `data`.
    pub async fn post(&self, path: &str, form: &str) -> Result<Value, ApiError> {
        self.request(reqwest::Method::POST, path, Some(form)).await
    }

    /// `PUT` with a form body, as [`Client::post`].
    pub async fn put(&self, path: &str, form: &str) -> Result<Value, ApiError> {
        self.request(reqwest::Method::PUT, path, Some(form)).await
    }

    async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        form: Option<&str>,
    ) -> Result<Value, ApiError> {
        let what = format!("{method} {path}");
        let url = format!("{}{path}", self.base);
        let mut req = self
            .http
            .request(method, &url)
            .header(AUTHORIZATION, self.auth.clone());
        if let Some(f) = form {
            req = req
                .header(
                    reqwest::header::CONTENT_TYPE,
                    "application/x-www-form-urlencoded",
                )
                .body(f.to_string());
        }
        let resp = req
            .send()
            .await
            .map_err(|e| self.transport_error(&what, &e))?;
        let status = resp.status();
        let body = resp
            .bytes()
            .await
            .map_err(|e| self.transport_error(&what, &e))?;
        if !status.is_success() {
            return Err(ApiError::Status {
                path: what,
                status: status.as_u16(),
                hint: status_hint(status.as_u16(), &body),
            });
        }
        unwrap_data(&what, &body)
    }

    fn transport_error(&self, path: &str, e: &reqwest::Error) -> ApiError {
        if e.is_timeout() {
            return ApiError::Timeout {
                path: path.to_string(),
                secs: self.timeout.as_secs().max(1),
            };
        }
        ApiError::Unreachable {
            path: path.to_string(),
            reason: root_cause(e),
        }
    }
}

/// The innermost error message (e.g. the TLS verification failure), without
/// the URL reqwest prefixes.
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur: &(dyn std::error::Error + 'static) = e;
    let mut msgs = vec![cur.to_string()];
    while let Some(s) = cur.source() {
        cur = s;
        msgs.push(cur.to_string());
    }
    // The last two levels usually carry the useful part ("invalid peer
    // certificate: UnknownIssuer", "Connection refused (os error 111)").
    let n = msgs.len();
    strip_urls(&msgs[n.saturating_sub(2)..].join(": "))
}

/// Without the documentation links some errors carry ("peer closed
/// connection without sending TLS close_notify:
/// https://docs.rs/rustls/.../index.html#unexpected-eof"): a log line is
/// for the operator, who needs what happened, not a crate's manual.
fn strip_urls(msg: &str) -> String {
    let kept: Vec<&str> = msg
        .split(' ')
        .filter(|w| !(w.starts_with("https://") || w.starts_with("http://")))
        .collect();
    kept.join(" ")
        .trim_end_matches([':', ' '])
        .replace(": :", ":")
}

fn status_hint(status: u16, body: &[u8]) -> String {
    let msg = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| {
            v.get("message")
                .and_then(Value::as_str)
                .map(|s| s.trim().to_string())
                .or_else(|| v.get("errors").map(|e| e.to_string()))
        })
        .filter(|m| !m.is_empty());
    let what = match status {
        401 => " (authentication failed: check [proxmox] token_file)".to_string(),
        403 => " (permission denied: the token needs the PVEAuditor role on /, and Sys.Console on / for the failover policy; a privilege-separated token also needs them on its user)".to_string(),
        _ => String::new(),
    };
    match msg {
        Some(m) => format!("{what}: {}", m.chars().take(200).collect::<String>()),
        None => what,
    }
}

/// Every answer is `{"data": ...}`; anything else is malformed.
pub fn unwrap_data(path: &str, body: &[u8]) -> Result<Value, ApiError> {
    let malformed = |reason: String| ApiError::Malformed {
        path: path.to_string(),
        reason,
    };
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        let head: String = String::from_utf8_lossy(body).chars().take(40).collect();
        malformed(format!("not JSON ({e}), starts with {head:?}"))
    })?;
    match v {
        Value::Object(mut m) => m
            .remove("data")
            .ok_or_else(|| malformed("no `data` field".into())),
        _ => Err(malformed("not a JSON object".into())),
    }
}

pub fn tls_config(trust: &Trust) -> Result<rustls::ClientConfig, ApiError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| ApiError::Setup(format!("TLS setup: {e}")))?;
    let mut cfg = match trust {
        Trust::CaFile(path) => {
            let shown = path.display();
            let pem = crate::files::read(path, 4 << 20).map_err(|e| {
                ApiError::Setup(format!(
                    "[proxmox] ca_file {e} (or pin the certificate with `fingerprint`)"
                ))
            })?;
            let mut roots = rustls::RootCertStore::empty();
            let mut n = 0;
            for cert in CertificateDer::pem_slice_iter(&pem) {
                let cert = cert.map_err(|e| {
                    ApiError::Setup(format!("[proxmox] ca_file {shown}: bad PEM: {e:?}"))
                })?;
                roots.add(cert).map_err(|e| {
                    ApiError::Setup(format!(
                        "[proxmox] ca_file {shown}: unusable certificate: {e}"
                    ))
                })?;
                n += 1;
            }
            if n == 0 {
                return Err(ApiError::Setup(format!(
                    "[proxmox] ca_file {shown}: no certificate in it"
                )));
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        Trust::Fingerprint(pin) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Pinned {
                pin: *pin,
                provider,
            }))
            .with_no_client_auth(),
    };
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

/// Accepts exactly the certificate whose SHA-256 is pinned (what Proxmox's
/// own tools do with a fingerprint), and still verifies the handshake
/// signature with that certificate's key.
#[derive(Debug)]
struct Pinned {
    pin: [u8; 32],
    provider: Arc<rustls::crypto::CryptoProvider>,
}

pub fn fingerprint_of(der: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, der);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

fn hex(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let got = fingerprint_of(end_entity.as_ref());
        if got == self.pin {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!(
                "certificate fingerprint {} is not the pinned [proxmox] fingerprint",
                hex(&got)
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope() {
        assert_eq!(
            unwrap_data("/x", br#"{"data":[1]}"#).unwrap(),
            serde_json::json!([1])
        );
        for bad in [&b"<html>"[..], b"[]", br#"{"errors":{}}"#, b""] {
            let e = unwrap_data("/x", bad).unwrap_err();
            assert!(
                matches!(e, ApiError::Malformed { .. }),
                "{:?}: {e}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn errors_carry_no_documentation_links() {
        assert_eq!(
            strip_urls(
                "connection closed: peer closed connection without sending TLS close_notify: https://docs.rs/rustls/latest/rustls/manual/_03_howto/index.html#unexpected-eof"
            ),
            "connection closed: peer closed connection without sending TLS close_notify"
        );
        assert_eq!(
            strip_urls("Connection refused (os error 111)"),
            "Connection refused (os error 111)"
        );
    }

    #[test]
    fn token_debug_hides_the_secret() {
        let t = Token("repl@pve!ro=s3cr3t".into());
        let d = format!("{t:?}");
        assert!(!d.contains("s3cr3t") && d.contains("repl@pve!ro"), "{d}");
    }

    #[test]
    fn token_file_mode_and_shape() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("tok");
        std::fs::write(&p, "repl@pve!ro=abc-123\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = load_token(&p).unwrap_err().to_string();
        assert!(e.contains("mode 0644") && e.contains("chmod 600"), "{e}");
        assert!(!e.contains("abc-123"), "{e}");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(load_token(&p).unwrap().0, "repl@pve!ro=abc-123");
        for bad in [
            "abc-123",
            "repl@pve=abc",
            "repl@pve!ro=",
            "a b@pve!x=y",
            "x\ny",
        ] {
            std::fs::write(&p, bad).unwrap();
            let e = load_token(&p).unwrap_err().to_string();
            assert!(e.contains("expected one line"), "{bad:?}: {e}");
            assert!(!e.contains(bad), "the token's content leaked: {e}");
        }
    }

    #[test]
    fn status_hints() {
        assert!(status_hint(401, b"").contains("token_file"));
        assert!(status_hint(403, b"").contains("PVEAuditor"));
        let h = status_hint(
            500,
            br#"{"data":null,"message":"Configuration file 'nodes/pve2/lxc/103.conf' does not exist\n"}"#,
        );
        assert!(h.ends_with("does not exist"), "{h}");
    }
}
