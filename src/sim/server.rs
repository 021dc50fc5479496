//! The `chatstats-sim` HTTP server: the simulated upstream as an endless `text/event-stream`
//! body, so the worker can be run against it exactly as against the real upstream.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use futures::StreamExt;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::info;

use super::generator::{CHUNK_BYTES, Generator};
use super::pacing::{MAX_BATCH, Pacer};

/// How the simulated upstream server streams.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SimSettings {
    /// Events per second per connection; 0 (or less) streams as fast as the client reads.
    pub rate: f64,
    /// Seed of every connection's stream: each connection starts the same stream from the
    /// beginning, so all clients see the same events (each at the time it is sent: the
    /// streams are on the live clock).
    pub seed: u64,
}

/// What the handler needs; axum clones it for every request.
#[derive(Clone)]
struct ServerState {
    settings: SimSettings,
    shutdown: CancellationToken,
}

/// Serves the simulated upstream on `listener` until `shutdown` is cancelled: `GET /` answers
/// `text/event-stream` with a body that never ends, one stream per connection from
/// `settings.seed`, paced at `settings.rate`, on the live clock ([`Generator::live`]: each
/// event's `tmi-sent-ts` is when it is sent, give or take 1.5 s). On shutdown every open body is ended, so the
/// server stops promptly instead of waiting for endless responses.
pub async fn serve(
    listener: TcpListener,
    settings: SimSettings,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let address = listener.local_addr()?;
    info!(%address, rate = settings.rate, seed = settings.seed, url = %format!("http://{address}/"),
          "simulated chat stream listening");
    let app = Router::new()
        .route("/", get(stream_events))
        .with_state(ServerState {
            settings,
            shutdown: shutdown.clone(),
        });
    // Paced events go out in small chunks: without TCP_NODELAY, Nagle's algorithm holds them
    // back for tens of milliseconds (measured: 25-36 ms stalls in the latency benchmark).
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown.cancelled_owned())
    .await
}

/// Logs when a client's stream ends, however it ends.
struct Connection {
    peer: SocketAddr,
    events: u64,
}

impl Drop for Connection {
    fn drop(&mut self) {
        info!(peer = %self.peer, events = self.events, "client disconnected");
    }
}

/// One connection's stream: its own generator and schedule.
struct ChunkStream {
    generator: Generator,
    pacer: Pacer,
    connection: Connection,
}

impl ChunkStream {
    /// The next chunk: the events due now (all that fit in 64 KiB when unpaced).
    async fn next_chunk(&mut self) -> Bytes {
        let due = self.pacer.wait(MAX_BATCH).await;
        let mut buf = Vec::with_capacity(if self.pacer.unlimited() {
            CHUNK_BYTES + 4096
        } else {
            (due as usize).min(256) * 512
        });
        let mut written = 0;
        while written < due && buf.len() < CHUNK_BYTES {
            self.generator.write_event(&mut buf);
            written += 1;
        }
        self.pacer.emitted(written);
        self.connection.events += written;
        Bytes::from(buf)
    }
}

/// `GET /`: a fresh stream from the seed for each connection, ended on shutdown.
async fn stream_events(
    State(state): State<ServerState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
) -> Response {
    info!(%peer, "client connected");
    let stream = ChunkStream {
        generator: Generator::live(state.settings.seed),
        pacer: Pacer::new(state.settings.rate),
        connection: Connection { peer, events: 0 },
    };
    let chunks = futures::stream::unfold(stream, |mut stream| async move {
        let chunk = stream.next_chunk().await;
        Some((Ok::<_, Infallible>(chunk), stream))
    })
    .take_until(state.shutdown.cancelled_owned());
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(chunks),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::sim::generator::{START_TS_MS, sent_ts, without_times, write_events};
    use crate::source::decode::{Decoder, Frame};
    use crate::timeline::now_ms;

    /// Asserts that `a` and `b`, prefixes of streams, hold the same events but for their
    /// times, as far as the shorter one goes.
    fn assert_same_events(a: &[u8], b: &[u8]) {
        let (a, b) = (without_times(a), without_times(b));
        let n = a.len().min(b.len());
        assert!(n >= 7 * 1024, "{n} bytes to compare");
        assert_eq!(a[..n], b[..n]);
    }

    async fn read_some(url: &str, at_least: usize) -> Result<(String, Vec<u8>), reqwest::Error> {
        let mut response = reqwest::get(url).await?.error_for_status()?;
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let mut body = Vec::new();
        while body.len() < at_least {
            match response.chunk().await? {
                Some(chunk) => body.extend_from_slice(&chunk),
                None => break,
            }
        }
        Ok((content_type, body))
    }

    #[tokio::test]
    async fn the_server_streams_decodable_events_and_stops_on_shutdown()
    -> Result<(), Box<dyn std::error::Error>> {
        for rate in [0.0, 2000.0] {
            let listener = TcpListener::bind("127.0.0.1:0").await?;
            let url = format!("http://{}/", listener.local_addr()?);
            let shutdown = CancellationToken::new();
            let server = tokio::spawn(serve(
                listener,
                SimSettings { rate, seed: 4 },
                shutdown.clone(),
            ));
            let (content_type, body) =
                tokio::time::timeout(Duration::from_secs(20), read_some(&url, 8 * 1024)).await??;
            assert_eq!(content_type, "text/event-stream");
            assert!(body.len() >= 8 * 1024, "{} bytes", body.len());
            // Every client sees the same stream: the file's, from the start, but for the times,
            // which are the current ones.
            let mut expected = Vec::new();
            write_events(&mut expected, 200, 4, START_TS_MS)?;
            assert_same_events(&body[..8 * 1024], &expected);
            let mut payloads = Vec::new();
            let mut decoder = Decoder::new(64 * 1024);
            decoder.push(&body, |f| payloads.push(f));
            assert!(payloads.len() >= 10);
            let now = now_ms();
            for frame in &payloads {
                let Frame::Payload(payload) = frame else {
                    continue;
                };
                if let Some(ts) = sent_ts(payload) {
                    assert!(
                        (now - 30_000..=now).contains(&ts),
                        "sent at {ts}, now {now}"
                    );
                }
            }
            let objects = payloads
                .iter()
                .filter(|f| {
                    matches!(f, Frame::Payload(p)
                        if serde_json::from_slice::<serde_json::Value>(p).is_ok_and(|v| v.is_object()))
                })
                .count();
            assert!(
                objects * 10 >= payloads.len() * 9,
                "{objects} of {}",
                payloads.len()
            );
            // A second client gets the same events.
            let (_, again) =
                tokio::time::timeout(Duration::from_secs(20), read_some(&url, 8 * 1024)).await??;
            assert_same_events(&again[..8 * 1024], &body[..8 * 1024]);
            shutdown.cancel();
            tokio::time::timeout(Duration::from_secs(10), server).await???;
        }
        Ok(())
    }
}
