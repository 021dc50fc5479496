//! Rate limits (`governor`'s keyed GCRA limiters): `INGEST_RATE_LIMIT` counts the requests of
//! `POST /messages` per bearer token, `READ_RATE_LIMIT` the `GET` and `HEAD` requests per client
//! IP address. Over the limit, a request gets `429 Too Many Requests` with `Retry-After`.
//!
//! Ingestion counts requests, not messages: a batch of 1,000 costs what one message costs, so
//! clients are pushed towards batches, which is what makes ingestion cheap for Redis (one
//! script call per request), and the 1,000-payload cap bounds the messages per request.
//!
//! The client IP is the TCP peer, unless the peer is one of `TRUSTED_PROXIES`: then it is the
//! right-most address of `X-Forwarded-For` that is not itself a trusted proxy (what the nearest
//! untrusted hop told a trusted proxy; anything left of it may be forged). An IPv6 client is
//! counted by its /64 network, the block one host is usually given, so that it cannot step
//! round its budget by changing addresses.
//!
//! Memory: a keyed limiter keeps one state per key. Ingestion keys are token indexes (a fixed,
//! small set). Read keys are client networks, so [`sweep`] drops, every
//! [`SWEEP_INTERVAL`], every key whose budget is whole again (a client unseen for longer than
//! its burst takes to refill): memory is bounded by the clients active within that time.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use ipnet::IpNet;
use tokio_util::sync::CancellationToken;

use super::ApiSettings;
use super::error::ApiError;

/// How often keys of clients whose budget is whole again are dropped.
pub(crate) const SWEEP_INTERVAL: Duration = Duration::from_secs(10);

/// The unit of a rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Per {
    Second,
    Minute,
    Hour,
}

impl Per {
    fn seconds(self) -> u32 {
        match self {
            Per::Second => 1,
            Per::Minute => 60,
            Per::Hour => 3600,
        }
    }

    fn letter(self) -> char {
        match self {
            Per::Second => 's',
            Per::Minute => 'm',
            Per::Hour => 'h',
        }
    }
}

/// A rate limit: `amount` requests per second, minute or hour, of which `burst` may come at
/// once (a client that waited long enough may send `burst` requests back to back).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    amount: NonZeroU32,
    per: Per,
    burst: NonZeroU32,
}

impl RateLimit {
    /// Parses `200/s`, `60/m` or `1000/h`; an empty value is no limit (`None`). The burst is
    /// the amount per second, at least 1 (`200/s`: 200, `60/m`: 1, `7200/h`: 2); see
    /// [`RateLimit::with_burst`].
    pub fn parse(text: &str) -> Result<Option<RateLimit>, String> {
        let text = text.trim();
        if text.is_empty() {
            return Ok(None);
        }
        let expected = "expected a rate such as 200/s, 60/m or 1000/h (a whole number of 1 or more, per s, m or h); empty for no limit";
        let (amount, unit) = text.split_once('/').ok_or(expected)?;
        let amount = amount.trim().parse::<NonZeroU32>().map_err(|_| expected)?;
        let per = match unit.trim() {
            "s" => Per::Second,
            "m" => Per::Minute,
            "h" => Per::Hour,
            _ => return Err(expected.to_owned()),
        };
        let burst = NonZeroU32::new(amount.get() / per.seconds()).unwrap_or(NonZeroU32::MIN);
        Ok(Some(RateLimit { amount, per, burst }))
    }

    /// This limit with `burst` requests allowed at once.
    pub fn with_burst(self, burst: NonZeroU32) -> RateLimit {
        RateLimit { burst, ..self }
    }

    /// The burst.
    pub fn burst(&self) -> u32 {
        self.burst.get()
    }

    fn quota(&self) -> Quota {
        let quota = match self.per {
            Per::Second => Quota::per_second(self.amount),
            Per::Minute => Quota::per_minute(self.amount),
            Per::Hour => Quota::per_hour(self.amount),
        };
        quota.allow_burst(self.burst)
    }
}

impl std::fmt::Display for RateLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{} (burst {})",
            self.amount,
            self.per.letter(),
            self.burst
        )
    }
}

/// The peers whose `X-Forwarded-For` is believed (`TRUSTED_PROXIES`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Parses comma-separated IP addresses and CIDR networks (`10.0.0.0/8, ::1`); empty: none.
    pub fn parse(text: &str) -> Result<TrustedProxies, String> {
        let mut nets = Vec::new();
        for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let net = match item.parse::<IpNet>() {
                Ok(net) => net.trunc(),
                Err(_) => item.parse::<IpAddr>().map(IpNet::from).map_err(|_| {
                    format!("`{item}` is not an IP address or a CIDR network such as 10.0.0.0/8")
                })?,
            };
            nets.push(net);
        }
        Ok(TrustedProxies(nets))
    }

    /// True when `ip` is a trusted proxy.
    fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// True when no proxy is trusted.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The client of a request from `peer` with `headers` (see the module docs).
pub(crate) fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &TrustedProxies) -> IpAddr {
    let mut client = peer.to_canonical();
    if !trusted.trusts(client) {
        return client;
    }
    let hops = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .collect::<Vec<_>>();
    for hop in hops.iter().rev() {
        // A hop that is not an address ends the chain: nothing left of it can be believed.
        let Some(ip) = forwarded_address(hop) else {
            break;
        };
        client = ip;
        if !trusted.trusts(ip) {
            break;
        }
    }
    client
}

/// An `X-Forwarded-For` item: an address, possibly with a port (`[::1]:80`, `1.2.3.4:80`).
fn forwarded_address(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    hop.parse::<IpAddr>()
        .or_else(|_| hop.parse::<SocketAddr>().map(|s| s.ip()))
        .ok()
        .map(|ip| ip.to_canonical())
}

/// The key a client is counted under: its IPv4 address, or its IPv6 /64 network.
fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => {
            let network = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(network))
        }
    }
}

/// The API's rate limiters and what they need to find the client.
pub(crate) struct Limiters {
    /// Requests of `POST /messages`, by token index.
    ingest: Option<DefaultKeyedRateLimiter<usize>>,
    /// `GET` and `HEAD` requests, by client.
    read: Option<DefaultKeyedRateLimiter<IpAddr>>,
    trusted: TrustedProxies,
}

impl Limiters {
    /// The limiters `settings` ask for.
    pub(crate) fn new(settings: &ApiSettings) -> Limiters {
        Limiters {
            ingest: settings
                .ingest_rate
                .map(|limit| RateLimiter::keyed(limit.quota())),
            read: settings
                .read_rate
                .map(|limit| RateLimiter::keyed(limit.quota())),
            trusted: settings.trusted_proxies.clone(),
        }
    }

    /// Counts a `POST /messages` of the token at `token`; the 429 to answer when over its
    /// limit.
    pub(crate) fn check_ingest(&self, token: usize) -> Result<(), ApiError> {
        check(self.ingest.as_ref(), &token)
    }

    /// Counts a read by the client of `request`; the 429 to answer when over its limit.
    fn check_read(&self, request: &Request) -> Result<(), ApiError> {
        let Some(limiter) = &self.read else {
            return Ok(());
        };
        // Every connection's requests carry their peer (`server.rs`); a request without one
        // (the router called in process) counts as the unspecified address.
        let peer = request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), |c| c.0.ip());
        let client = client_ip(peer, request.headers(), &self.trusted);
        check(Some(limiter), &client_key(client))
    }

    /// Drops the keys of clients whose budget is whole again (they would start afresh anyway).
    fn sweep(&self) {
        if let Some(read) = &self.read {
            read.retain_recent();
            read.shrink_to_fit();
        }
        if let Some(ingest) = &self.ingest {
            ingest.retain_recent();
        }
    }
}

/// Counts one request of `key`: a 429 with the whole seconds to wait (at least 1) when over.
fn check<K: std::hash::Hash + Eq + Clone>(
    limiter: Option<&DefaultKeyedRateLimiter<K>>,
    key: &K,
) -> Result<(), ApiError> {
    let Some(limiter) = limiter else {
        return Ok(());
    };
    limiter.check_key(key).map_err(|not_until| {
        let wait = not_until.wait_time_from(DefaultClock::default().now());
        let retry_after = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        ApiError::TooManyRequests {
            retry_after: retry_after.max(1),
        }
    })
}

/// Applies `READ_RATE_LIMIT` to every `GET` and `HEAD` request, before the response cache (a
/// cached answer costs the client's budget too).
pub(crate) async fn read_limit(
    State(limiters): State<Arc<Limiters>>,
    request: Request,
    next: Next,
) -> Response {
    let read = matches!(*request.method(), Method::GET | Method::HEAD);
    if read && let Err(limited) = limiters.check_read(&request) {
        return limited.into_response();
    }
    next.run(request).await
}

/// Sweeps the limiters every [`SWEEP_INTERVAL`] until `stop` is cancelled.
pub(crate) async fn sweep(limiters: Arc<Limiters>, stop: CancellationToken) {
    let mut every = tokio::time::interval(SWEEP_INTERVAL);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = every.tick() => limiters.sweep(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_parsed_with_their_default_bursts() {
        let rate = |t: &str| RateLimit::parse(t).unwrap().unwrap();
        assert_eq!(rate("200/s").to_string(), "200/s (burst 200)");
        assert_eq!(rate(" 60 / m ").to_string(), "60/m (burst 1)");
        assert_eq!(rate("7200/h").to_string(), "7200/h (burst 2)");
        assert_eq!(rate("1/h").burst(), 1);
        let five = NonZeroU32::new(5).unwrap();
        assert_eq!(rate("1/s").with_burst(five).to_string(), "1/s (burst 5)");
        assert_eq!(RateLimit::parse("  ").unwrap(), None);
        for bad in ["200", "0/s", "-1/s", "1.5/s", "10/d", "x/s", "200/sec"] {
            assert!(RateLimit::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn over_the_limit_a_request_is_told_how_long_to_wait() {
        let limit = RateLimit::parse("1/m").unwrap().unwrap();
        let limiter = RateLimiter::keyed(limit.quota());
        assert!(check(Some(&limiter), &1usize).is_ok());
        match check(Some(&limiter), &1usize) {
            Err(ApiError::TooManyRequests { retry_after }) => {
                assert!((59..=60).contains(&retry_after), "{retry_after}")
            }
            other => panic!("{other:?}"),
        }
        assert!(check(Some(&limiter), &2usize).is_ok(), "keys are separate");
        assert!(check::<usize>(None, &1).is_ok());
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let trusted = TrustedProxies::parse("127.0.0.1, 10.0.0.0/8").unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let headers = |values: &[&str]| {
            let mut headers = HeaderMap::new();
            for value in values {
                headers.append("x-forwarded-for", value.parse().unwrap());
            }
            headers
        };
        let forwarded = headers(&["203.0.113.9, 198.51.100.7", "10.1.2.3"]);
        assert_eq!(
            client_ip(ip("127.0.0.1"), &forwarded, &trusted),
            ip("198.51.100.7"),
            "the right-most untrusted hop"
        );
        assert_eq!(
            client_ip(ip("192.0.2.1"), &forwarded, &trusted),
            ip("192.0.2.1"),
            "an untrusted peer's header is ignored"
        );
        assert_eq!(
            client_ip(
                ip("::ffff:127.0.0.1"),
                &headers(&["[2001:db8::1]:443"]),
                &trusted
            ),
            ip("2001:db8::1"),
            "mapped peers and hops with ports"
        );
        assert_eq!(
            client_ip(ip("127.0.0.1"), &headers(&["junk, 10.0.0.1"]), &trusted),
            ip("10.0.0.1"),
            "the chain ends at a hop that is not an address"
        );
        assert_eq!(
            client_ip(ip("127.0.0.1"), &HeaderMap::new(), &trusted),
            ip("127.0.0.1")
        );
        assert!(TrustedProxies::parse("10.0.0.0/33").is_err());
        assert!(TrustedProxies::parse("proxy.local").is_err());
        assert!(TrustedProxies::parse(" ").unwrap().is_empty());
        assert_eq!(
            client_key(ip("2001:db8:1:2:3:4:5:6")),
            ip("2001:db8:1:2::"),
            "IPv6 clients by /64"
        );
    }
}
