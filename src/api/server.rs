//! Serving the router over TCP, with bounds that no client can lift.
//!
//! - **Timeouts.** A connection has `idle_timeout` to send a request's headers, counted from the
//!   moment the server waits for them, which is also how long a kept-alive connection may stay
//!   idle (hyper's header read timeout). A client that sends half a request, or nothing, is
//!   closed.
//! - **A connection cap.** At most `max_connections` are open, WebSockets included, kept below
//!   the open-file limit (raised to its hard limit at start). At the cap a new connection
//!   closes the oldest idle one (no request in progress, open for a second at least), else the
//!   oldest live feed (`/live` or `/ws`: an answer that never ends), else the oldest idle one
//!   just opened: silent sockets and unread feeds cannot starve `/healthcheck`. When every
//!   connection has an ordinary request in progress, the new connection is refused.
//! - **A bounded drain.** On shutdown the listener closes, idle connections close at once, open
//!   requests get `shutdown_timeout` to finish, and whatever remains is dropped.
//!
//! HTTP/1.1 only, as the TypeScript (Fastify) service served it.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::Request;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use tracing::{debug, info, warn};

/// Limits of the HTTP server.
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    pub(crate) idle_timeout: Duration,
    pub(crate) max_connections: usize,
    pub(crate) shutdown_timeout: Duration,
}

/// File descriptors kept free for everything but client connections (Redis, logs, accept).
const RESERVED_FILES: u64 = 64;

/// The effective connection cap: `wanted`, kept below the open-file limit, which is first
/// raised to its hard limit.
fn connection_cap(wanted: usize) -> usize {
    let files = rlimit::increase_nofile_limit(u64::MAX)
        .or_else(|_| rlimit::getrlimit(rlimit::Resource::NOFILE).map(|(soft, _)| soft))
        .unwrap_or(1024);
    let cap = files.saturating_sub(RESERVED_FILES).max(1);
    wanted
        .min(usize::try_from(cap).unwrap_or(usize::MAX))
        .max(1)
}

/// How long a new connection may take to send its first request before the cap prefers
/// closing it to closing a live feed.
const IDLE_GRACE: Duration = Duration::from_secs(1);

/// One open connection, as the cap sees it.
struct Open {
    /// When it was accepted.
    opened: std::time::Instant,
    /// Requests in progress (a response body still being sent counts), live feeds aside.
    busy: Arc<AtomicUsize>,
    /// Live feeds being sent (`text/event-stream` answers, and a WebSocket for good).
    feeds: Arc<AtomicUsize>,
    /// Closes the connection.
    close: CancellationToken,
}

/// The open connections, oldest first.
#[derive(Default)]
struct Registry {
    open: Mutex<BTreeMap<u64, Open>>,
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Open>> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Closes the oldest idle connection open for [`IDLE_GRACE`], else the oldest one sending
    /// only a live feed, else the oldest idle one; false when every connection has an ordinary
    /// request in progress.
    fn evict_idle(&self) -> bool {
        let mut open = self.lock();
        let free = |c: &Open| c.busy.load(Ordering::Acquire) == 0;
        let feeding = |c: &Open| c.feeds.load(Ordering::Acquire) > 0;
        let idle = open
            .iter()
            .find(|(_, c)| free(c) && !feeding(c) && c.opened.elapsed() >= IDLE_GRACE)
            .or_else(|| open.iter().find(|(_, c)| free(c) && feeding(c)))
            .or_else(|| open.iter().find(|(_, c)| free(c)))
            .map(|(id, _)| *id);
        match idle.and_then(|id| open.remove(&id)) {
            Some(connection) => {
                connection.close.cancel();
                true
            }
            None => false,
        }
    }
}

/// Serves `app` on `listener` until `shutdown` is cancelled, then drains within the limits.
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let cap = connection_cap(limits.max_connections);
    if cap < limits.max_connections {
        info!(
            max_connections = cap,
            "connection cap lowered to fit the open-file limit"
        );
    }
    let registry = Arc::new(Registry::default());
    let mut connections = JoinSet::new();
    let closing = CancellationToken::new();
    let mut next_id = 0u64;
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            accepted = listener.accept() => accepted,
        };
        let (tcp, peer) = match accepted {
            Ok(pair) => pair,
            Err(err) => {
                // Out of file descriptors (or a connection reset before accept): make room.
                warn!(error = %err, "cannot accept a connection");
                if !registry.evict_idle() {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                continue;
            }
        };
        if registry.lock().len() >= cap && !registry.evict_idle() {
            debug!(%peer, "connection refused: every connection is busy");
            drop(tcp);
            continue;
        }
        next_id += 1;
        let open = Open {
            opened: std::time::Instant::now(),
            busy: Arc::default(),
            feeds: Arc::default(),
            close: closing.child_token(),
        };
        let counts = Counts {
            busy: open.busy.clone(),
            feeds: open.feeds.clone(),
        };
        let close = open.close.clone();
        registry.lock().insert(next_id, open);
        // The socket holds its place in the registry until it is dropped: after an upgrade
        // (`/ws`), that is when the WebSocket ends, not when the HTTP connection hands it over.
        let tcp = Held {
            io: tcp,
            _slot: Slot {
                registry: registry.clone(),
                id: next_id,
            },
        };
        let (idle_timeout, stop, app) = (limits.idle_timeout, shutdown.clone(), app.clone());
        connections.spawn(async move {
            serve_connection(tcp, peer, app, counts, close, stop, idle_timeout).await;
        });
    }
    drop(listener);
    let open = connections.len();
    if open > 0 {
        info!(
            open,
            timeout_ms = limits.shutdown_timeout.as_millis() as u64,
            "draining open connections"
        );
    }
    let drained = tokio::time::timeout(limits.shutdown_timeout, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        warn!(
            left = connections.len(),
            "connections still open at the shutdown timeout: closed"
        );
        closing.cancel();
        connections.shutdown().await;
    }
    Ok(())
}

/// What a connection has in progress, as the cap sees it.
#[derive(Clone)]
struct Counts {
    busy: Arc<AtomicUsize>,
    feeds: Arc<AtomicUsize>,
}

/// A connection's place in the registry, given up when dropped.
struct Slot {
    registry: Arc<Registry>,
    id: u64,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.registry.lock().remove(&self.id);
    }
}

/// A socket with its place in the registry.
struct Held {
    io: TcpStream,
    _slot: Slot,
}

impl tokio::io::AsyncRead for Held {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Held {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// Closes the request's connection when cancelled (the cap closing it): in the request's
/// extensions, for what outlives the HTTP exchange (a WebSocket).
#[derive(Clone)]
pub(crate) struct ConnectionClose(pub(crate) CancellationToken);

async fn serve_connection(
    tcp: Held,
    peer: SocketAddr,
    app: Router,
    counts: Counts,
    close: CancellationToken,
    shutdown: CancellationToken,
    idle_timeout: Duration,
) {
    // Answers are small; TCP_NODELAY sends them without Nagle's delay.
    let _ = tcp.io.set_nodelay(true);
    let closer = ConnectionClose(close.clone());
    let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        request.extensions_mut().insert(closer.clone());
        let guard = Busy::enter(&counts.busy);
        let (app, feeds) = (app.clone(), counts.feeds.clone());
        async move {
            let response = app.oneshot(request.map(Body::new)).await?;
            if response.status() == axum::http::StatusCode::SWITCHING_PROTOCOLS {
                // A WebSocket: a feed for as long as the socket lives.
                feeds.fetch_add(1, Ordering::AcqRel);
            }
            // A live feed never ends: it counts apart, as a connection the cap may close.
            let feed = response
                .headers()
                .get(axum::http::header::CONTENT_TYPE)
                .is_some_and(|t| t.as_bytes().starts_with(b"text/event-stream"));
            let guard = if feed {
                drop(guard);
                Busy::enter(&feeds)
            } else {
                guard
            };
            Ok::<_, Infallible>(response.map(|body| {
                Body::new(Tracked {
                    body,
                    _guard: guard,
                })
            }))
        }
    });
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(idle_timeout)
        .max_buf_size(64 * 1024);
    let connection = http
        .serve_connection(TokioIo::new(tcp), service)
        .with_upgrades();
    tokio::pin!(connection);
    tokio::select! {
        _ = connection.as_mut() => return,
        _ = close.cancelled() => return,
        _ = shutdown.cancelled() => connection.as_mut().graceful_shutdown(),
    }
    tokio::select! {
        _ = connection.as_mut() => {}
        _ = close.cancelled() => {}
    }
}

/// Counts a request in progress until its response body is sent (or dropped).
struct Busy(Arc<AtomicUsize>);

impl Busy {
    fn enter(count: &Arc<AtomicUsize>) -> Busy {
        count.fetch_add(1, Ordering::AcqRel);
        Busy(count.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body that keeps its connection counted as busy while it is being sent.
struct Tracked {
    body: Body,
    _guard: Busy,
}

impl hyper::body::Body for Tracked {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
