//! A minimal Chrome DevTools Protocol client: enough to drive Debian's headless Chromium from
//! the tests (open a page, evaluate JavaScript, watch console and network errors, take
//! screenshots) with nothing but a WebSocket.
//!
//! One WebSocket to the browser endpoint carries every command; a page is a target attached
//! with `flatten: true`, so its commands are the browser connection's with a `sessionId`.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::stream::SplitSink;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Message as Frame;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Where Debian's `chromium` package puts the browser.
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// How long one DevTools command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// A headless Chromium of this test's own (own profile directory, DevTools on a free port),
/// killed on drop so that a failed assertion leaves no browser behind.
pub struct Chromium {
    child: Child,
    endpoint: String,
    _profile: tempfile::TempDir,
}

impl Chromium {
    /// Starts the browser with a `width`×`height` window and waits for its DevTools endpoint.
    pub fn launch(width: u32, height: u32) -> Chromium {
        let profile = tempfile::tempdir().expect("a profile directory for chromium");
        let mut child = Command::new(CHROMIUM)
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-extensions",
                "--no-first-run",
                "--no-default-browser-check",
                "--hide-scrollbars",
                "--mute-audio",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(format!("--window-size={width},{height}"))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {CHROMIUM}: {e}"));
        let stderr = child.stderr.take().expect("chromium's stderr");
        let endpoint = match devtools_endpoint(stderr, Duration::from_secs(30)) {
            Ok(endpoint) => endpoint,
            Err(log) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("chromium printed no DevTools endpoint within 30 s; its output:\n{log}");
            }
        };
        Chromium {
            child,
            endpoint,
            _profile: profile,
        }
    }

    /// The browser's DevTools WebSocket URL.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads chromium's stderr until `DevTools listening on ws://…`; then keeps draining it on the
/// same thread (a full pipe would block the browser). `Err` holds what it printed instead.
fn devtools_endpoint(stderr: std::process::ChildStderr, limit: Duration) -> Result<String, String> {
    let (found, wait) = std::sync::mpsc::channel();
    let log = Arc::new(Mutex::new(String::new()));
    let seen = log.clone();
    std::thread::spawn(move || {
        let mut found = Some(found);
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(url) = line.strip_prefix("DevTools listening on ")
                && let Some(found) = found.take()
            {
                let _ = found.send(url.trim().to_owned());
            } else if found.is_some() {
                let mut seen = seen.lock().unwrap();
                seen.push_str(&line);
                seen.push('\n');
            }
        }
    });
    wait.recv_timeout(limit)
        .map_err(|_| log.lock().unwrap().clone())
}

type Sink = SplitSink<WebSocketStream<MaybeTlsStream<TcpStream>>, Frame>;
type Replies = HashMap<u64, oneshot::Sender<Result<Value, Value>>>;

/// A DevTools connection: commands with replies, and every event kept in order.
pub struct Cdp {
    sink: tokio::sync::Mutex<Sink>,
    replies: Arc<Mutex<Replies>>,
    events: Arc<Mutex<Vec<Value>>>,
    next_id: AtomicU64,
}

impl Cdp {
    /// Connects to a browser's DevTools endpoint.
    pub async fn connect(endpoint: &str) -> Arc<Cdp> {
        let (socket, _) = tokio_tungstenite::connect_async(endpoint)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to DevTools at {endpoint}: {e}"));
        let (sink, mut stream) = socket.split();
        let cdp = Arc::new(Cdp {
            sink: sink.into(),
            replies: Arc::default(),
            events: Arc::default(),
            next_id: AtomicU64::new(1),
        });
        let (replies, events) = (cdp.replies.clone(), cdp.events.clone());
        tokio::spawn(async move {
            while let Some(Ok(frame)) = stream.next().await {
                let Frame::Text(text) = frame else { continue };
                let Ok(message) = serde_json::from_str::<Value>(&text) else {
                    continue;
                };
                dispatch(message, &replies, &events);
            }
        });
        cdp
    }

    /// Sends `method` (to the page `session`, or the browser) and waits for its result.
    pub async fn call(&self, session: Option<&str>, method: &str, params: Value) -> Value {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut command = json!({"id": id, "method": method, "params": params});
        if let Some(session) = session {
            command["sessionId"] = json!(session);
        }
        let (reply, answer) = oneshot::channel();
        self.replies.lock().unwrap().insert(id, reply);
        self.sink
            .lock()
            .await
            .send(Frame::text(command.to_string()))
            .await
            .unwrap_or_else(|e| panic!("DevTools connection lost sending {method}: {e}"));
        match tokio::time::timeout(COMMAND_TIMEOUT, answer).await {
            Ok(Ok(Ok(result))) => result,
            Ok(Ok(Err(error))) => panic!("{method} failed: {error}"),
            Ok(Err(_)) => panic!("DevTools connection closed before answering {method}"),
            Err(_) => panic!("{method} got no answer within {COMMAND_TIMEOUT:?}"),
        }
    }

    /// Every event received so far (`{"method", "params", "sessionId"}`).
    pub fn events(&self) -> Vec<Value> {
        self.events.lock().unwrap().clone()
    }

    /// Opens a new tab at `about:blank` and attaches to it.
    pub async fn new_page(self: &Arc<Cdp>) -> Page {
        let target = self
            .call(None, "Target.createTarget", json!({"url": "about:blank"}))
            .await;
        let target_id = target["targetId"].as_str().expect("a target id");
        let attached = self
            .call(
                None,
                "Target.attachToTarget",
                json!({"targetId": target_id, "flatten": true}),
            )
            .await;
        Page {
            cdp: self.clone(),
            session: attached["sessionId"]
                .as_str()
                .expect("a session id")
                .to_owned(),
        }
    }
}

/// Routes one incoming message: a reply to its waiting command, an event to the log.
fn dispatch(message: Value, replies: &Mutex<Replies>, events: &Mutex<Vec<Value>>) {
    match message["id"].as_u64() {
        Some(id) => {
            if let Some(reply) = replies.lock().unwrap().remove(&id) {
                let answer = match message.get("error") {
                    Some(error) => Err(error.clone()),
                    None => Ok(message["result"].clone()),
                };
                let _ = reply.send(answer);
            }
        }
        None => events.lock().unwrap().push(message),
    }
}

/// One tab, driven over its flattened session.
pub struct Page {
    cdp: Arc<Cdp>,
    session: String,
}

impl Page {
    /// Sends a command to this page.
    pub async fn call(&self, method: &str, params: Value) -> Value {
        self.cdp.call(Some(&self.session), method, params).await
    }

    /// Turns on the domains whose events the tests watch.
    pub async fn enable(&self, domains: &[&str]) {
        for domain in domains {
            self.call(&format!("{domain}.enable"), json!({})).await;
        }
    }

    /// Starts loading `url` (the load itself is awaited by polling the page's state).
    pub async fn navigate(&self, url: &str) {
        let answer = self.call("Page.navigate", json!({"url": url})).await;
        assert!(
            answer.get("errorText").is_none(),
            "navigating to {url} failed: {answer}"
        );
    }

    /// Evaluates `expression` in the page (awaiting a promise) and returns its JSON value;
    /// panics on a JavaScript exception.
    pub async fn eval(&self, expression: &str) -> Value {
        let answer = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
            )
            .await;
        if let Some(exception) = answer.get("exceptionDetails") {
            panic!("evaluating `{expression}` threw: {exception}");
        }
        answer["result"]["value"].clone()
    }

    /// Polls `expression` until it is truthy and returns its value, or `Err` with its last
    /// value after `limit`. Polling (not sleeping a fixed time) keeps the test fast when the
    /// page is fast and patient when the machine is busy.
    pub async fn wait_for(&self, expression: &str, limit: Duration) -> Result<Value, Value> {
        let deadline = Instant::now() + limit;
        loop {
            let value = self.eval(expression).await;
            let truthy = match &value {
                Value::Null => false,
                Value::Bool(b) => *b,
                Value::Number(n) => n.as_f64() != Some(0.0),
                Value::String(s) => !s.is_empty(),
                Value::Array(_) | Value::Object(_) => true,
            };
            if truthy {
                return Ok(value);
            }
            if Instant::now() >= deadline {
                return Err(value);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Events of this page so far.
    pub fn events(&self) -> Vec<Value> {
        self.cdp
            .events()
            .into_iter()
            .filter(|e| e["sessionId"] == self.session.as_str())
            .collect()
    }

    /// Writes a PNG of the viewport, or of the whole page when `full`, to `path`.
    pub async fn screenshot(&self, path: &Path, full: bool) {
        let params = if full {
            let metrics = self.call("Page.getLayoutMetrics", json!({})).await;
            let size = &metrics["cssContentSize"];
            json!({
                "format": "png",
                "captureBeyondViewport": true,
                "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1},
            })
        } else {
            json!({"format": "png"})
        };
        let shot = self.call("Page.captureScreenshot", params).await;
        let png = base64_decode(shot["data"].as_str().expect("screenshot data"));
        assert!(png.starts_with(b"\x89PNG"), "the screenshot is not a PNG");
        std::fs::write(path, png)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    }
}

/// Standard base64 (what DevTools sends screenshots in); the tests need nothing more.
fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {:?}", c as char),
    };
    let digits: Vec<u8> = text
        .bytes()
        .filter(|c| !c.is_ascii_whitespace() && *c != b'=')
        .map(value)
        .collect();
    let mut out = Vec::with_capacity(digits.len() * 3 / 4);
    for chunk in digits.chunks(4) {
        let bits = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, d)| acc | (u32::from(*d) << (18 - 6 * i)));
        let bytes = bits.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    out
}

#[test]
fn base64_decodes_what_devtools_sends() {
    assert_eq!(base64_decode("aGVsbG8="), b"hello");
    assert_eq!(base64_decode("aGVsbG8h"), b"hello!");
    assert_eq!(base64_decode("aGk="), b"hi");
    assert_eq!(base64_decode(""), b"");
}
