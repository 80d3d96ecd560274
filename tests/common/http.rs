//! A plain HTTP/1.1 server on loopback that records every request: the
//! receiving end for notification tests. The path decides the answer:
//! `/hang...` never answers, `/status/NNN...` answers NNN, anything else 200.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    /// Lower-case names.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

pub struct Recorder {
    pub port: u16,
    pub requests: Arc<Mutex<Vec<Request>>>,
}

impl Recorder {
    /// Serves from its own thread until the test process ends.
    pub fn start() -> Recorder {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        std_listener.set_nonblocking(true).unwrap();
        let port = std_listener.local_addr().unwrap().port();
        let requests: Arc<Mutex<Vec<Request>>> = Arc::default();
        let reqs = requests.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
                loop {
                    let Ok((s, _)) = listener.accept().await else {
                        continue;
                    };
                    let reqs = reqs.clone();
                    tokio::spawn(async move {
                        let _ = serve(s, &reqs).await;
                    });
                }
            });
        });
        Recorder { port, requests }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn taken(&self) -> Vec<Request> {
        std::mem::take(&mut *self.requests.lock().unwrap())
    }
}

/// Reads one request: its head (at most 64 KiB) and a body of its
/// `Content-Length`. None when the peer closes (or floods) before the head
/// ends. Shared with the Proxmox API stand-in (pve.rs).
pub async fn read_request<S: tokio::io::AsyncRead + Unpin>(
    s: &mut S,
) -> std::io::Result<Option<Request>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        if buf.len() > 64 * 1024 {
            return Ok(None);
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or_default().split_whitespace();
    let (method, path) = (
        first.next().unwrap_or_default().to_string(),
        first.next().unwrap_or_default().to_string(),
    );
    let mut req = Request {
        method,
        path,
        headers: lines
            .filter_map(|l| {
                l.split_once(':')
                    .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            })
            .collect(),
        body: String::new(),
    };
    let len: usize = req
        .header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + len {
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    req.body = String::from_utf8_lossy(&buf[head_end..]).into_owned();
    Ok(Some(req))
}

async fn serve(mut s: tokio::net::TcpStream, reqs: &Mutex<Vec<Request>>) -> std::io::Result<()> {
    let Some(req) = read_request(&mut s).await? else {
        return Ok(());
    };
    let path = req.path.clone();
    reqs.lock().unwrap().push(req);
    if path.starts_with("/hang") {
        std::future::pending::<()>().await;
    }
    let status: u16 = path
        .strip_prefix("/status/")
        .and_then(|r| r.get(..3))
        .and_then(|c| c.parse().ok())
        .unwrap_or(200);
    let resp = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
    );
    s.write_all(resp.as_bytes()).await?;
    s.shutdown().await
}
