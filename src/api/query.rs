//! The query string of the statistics routes: parsed once, validated with errors in Fastify's
//! wording (`querystring/limit must be <= 1000`), and turned into a scope and a time range.

use bytes::Bytes;
use time::format_description::well_known::Rfc3339;

use super::error::ApiError;
use crate::detail::Scope;
use crate::message::TopList;
use crate::timeline::{Granularity, Retention};

/// Top lists answer 10 entries unless `?limit=` says otherwise.
pub(crate) const DEFAULT_LIMIT: usize = 10;
/// Largest accepted `?limit=`.
pub(crate) const MAX_LIMIT: usize = 1000;
/// Most buckets one activity answer holds.
pub(crate) const MAX_ACTIVITY_BUCKETS: u64 = 1440;

/// The windows a `?window=` may name, and their length.
const WINDOWS: [(&str, u64); 8] = [
    ("1m", 60),
    ("5m", 300),
    ("15m", 900),
    ("1h", 3600),
    ("6h", 6 * 3600),
    ("24h", 24 * 3600),
    ("7d", 7 * 86_400),
    ("30d", 30 * 86_400),
];

/// The parameters a statistics route may receive. Unknown parameters are ignored.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Params {
    pub(crate) limit: Option<usize>,
    pub(crate) room: Option<String>,
    pub(crate) nick: Option<String>,
    pub(crate) from_ms: Option<u64>,
    pub(crate) to_ms: Option<u64>,
    pub(crate) window_ms: Option<u64>,
    pub(crate) bucket: Option<Granularity>,
    pub(crate) before: Option<String>,
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::BadRequest(message.into())
}

impl Params {
    /// Parses a raw query string (the last value of a repeated parameter wins). The value of
    /// a parameter it reads must decode to UTF-8: `?room=%FF` is a 400, as `/stats/rooms/%FF`
    /// is, not a room named U+FFFD.
    pub(crate) fn parse(query: Option<&str>) -> Result<Params, ApiError> {
        let mut params = Params::default();
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (name, raw) = pair.split_once('=').unwrap_or((pair, ""));
            let name = form_decode(name).unwrap_or_default();
            let value =
                || form_decode(raw).ok_or_else(|| bad(format!("querystring/{name} must be UTF-8")));
            match name.as_str() {
                "limit" => params.limit = Some(limit(&value()?)?),
                "room" => params.room = Some(name_value("room", value()?)?),
                "nick" => params.nick = Some(name_value("nick", value()?)?),
                "from" => params.from_ms = Some(time_value("from", &value()?)?),
                "to" => params.to_ms = Some(time_value("to", &value()?)?),
                "window" => params.window_ms = Some(window(&value()?)?),
                "bucket" => params.bucket = Some(bucket(&value()?)?),
                "before" => params.before = Some(name_value("before", value()?)?),
                _ => {}
            }
        }
        Ok(params)
    }

    /// The limit, or the default.
    pub(crate) fn limit(&self) -> usize {
        self.limit.unwrap_or(DEFAULT_LIMIT)
    }

    /// True when a range (`from`, `to` or `window`) is asked for.
    pub(crate) fn is_ranged(&self) -> bool {
        self.from_ms.is_some() || self.to_ms.is_some() || self.window_ms.is_some()
    }

    /// Checks the combinations a top list accepts.
    pub(crate) fn check_top(&self, list: TopList) -> Result<(), ApiError> {
        if self.room.is_some() && self.nick.is_some() {
            return Err(bad(
                "querystring/room and querystring/nick cannot be combined",
            ));
        }
        if list == TopList::Rooms && self.room.is_some() {
            return Err(bad("querystring/room is not accepted by /stats/rooms"));
        }
        if list == TopList::Nicks && self.nick.is_some() {
            return Err(bad("querystring/nick is not accepted by /stats/nicks"));
        }
        if self.nick.is_some() && self.is_ranged() {
            return Err(bad(
                "querystring/nick cannot be combined with from, to or window: statistics by nick are all-time",
            ));
        }
        if self.bucket.is_some() {
            return Err(bad(
                "querystring/bucket is only accepted by /stats/activity",
            ));
        }
        self.check_range()
    }

    /// Checks `window` against `from`/`to`, and `from < to`.
    pub(crate) fn check_range(&self) -> Result<(), ApiError> {
        if self.window_ms.is_some() && (self.from_ms.is_some() || self.to_ms.is_some()) {
            return Err(bad("querystring/window cannot be combined with from or to"));
        }
        if let (Some(from), Some(to)) = (self.from_ms, self.to_ms)
            && from >= to
        {
            return Err(bad("querystring/from must be before querystring/to"));
        }
        Ok(())
    }

    /// The scope the filters name.
    pub(crate) fn scope(&self) -> Scope {
        match (&self.room, &self.nick) {
            (Some(room), _) => Scope::Room(Bytes::copy_from_slice(room.as_bytes())),
            (None, Some(nick)) => Scope::Nick(Bytes::copy_from_slice(nick.as_bytes())),
            (None, None) => Scope::Global,
        }
    }

    /// The range asked for, `[from, to)` in Unix ms, if any: a window ends now; an omitted `to`
    /// is now; an omitted `from`, or one older than anything kept, is as far back as anything
    /// is kept (so that `Range-From` never claims a range of buckets long expired).
    pub(crate) fn range(
        &self,
        now_ms: u64,
        retention: &Retention,
    ) -> Result<Option<(u64, u64)>, ApiError> {
        if let Some(window) = self.window_ms {
            return Ok(Some((now_ms.saturating_sub(window), now_ms)));
        }
        if !self.is_ranged() {
            return Ok(None);
        }
        let to = self.to_ms.unwrap_or(now_ms);
        let kept = retention.of(Granularity::Day).as_millis() as u64;
        let oldest = now_ms.saturating_sub(kept);
        let from = match self.from_ms {
            Some(from) if from >= to && self.to_ms.is_none() => {
                return Err(bad(
                    "querystring/from must be before now (querystring/to, when omitted)",
                ));
            }
            Some(from) if from >= to => {
                return Err(bad("querystring/from must be before querystring/to"));
            }
            Some(from) => from.max(oldest),
            None => oldest,
        }
        .min(to.saturating_sub(1));
        Ok(Some((from, to)))
    }
}

/// `raw` decoded as `application/x-www-form-urlencoded` (`+` is a space, `%XX` a byte; a `%`
/// not followed by two hex digits is kept as it is), or `None` when the bytes are not UTF-8.
fn form_decode(raw: &str) -> Option<String> {
    let spaced = raw.replace('+', " ");
    let decoded = percent_encoding::percent_decode_str(&spaced)
        .decode_utf8()
        .ok()?;
    Some(decoded.into_owned())
}

fn limit(raw: &str) -> Result<usize, ApiError> {
    let n: i128 = raw
        .trim()
        .parse()
        .map_err(|_| bad("querystring/limit must be integer"))?;
    if n < 1 {
        return Err(bad("querystring/limit must be >= 1"));
    }
    if n > MAX_LIMIT as i128 {
        return Err(bad(format!("querystring/limit must be <= {MAX_LIMIT}")));
    }
    Ok(n as usize)
}

fn name_value(name: &str, value: String) -> Result<String, ApiError> {
    if value.trim().is_empty() {
        return Err(bad(format!("querystring/{name} must not be empty")));
    }
    Ok(value)
}

/// A time: Unix milliseconds, or an RFC 3339 date-time.
fn time_value(name: &str, raw: &str) -> Result<u64, ApiError> {
    let raw = raw.trim();
    let expected = || {
        bad(format!(
            "querystring/{name} must be an RFC 3339 date-time or Unix milliseconds"
        ))
    };
    let ms = if !raw.is_empty() && raw.bytes().all(|b| b.is_ascii_digit()) {
        raw.parse::<u64>().map_err(|_| expected())?
    } else {
        let parsed = time::OffsetDateTime::parse(raw, &Rfc3339).map_err(|_| expected())?;
        let ms = parsed.unix_timestamp_nanos() / 1_000_000;
        u64::try_from(ms).map_err(|_| bad(format!("querystring/{name} must not be before 1970")))?
    };
    if ms > LATEST_MS {
        return Err(bad(format!(
            "querystring/{name} must not be after 9999-12-31T00:00:00Z"
        )));
    }
    Ok(ms)
}

/// The latest time a query may name, 9999-12-31T00:00:00Z: a range widened to whole days from
/// there still ends in a year RFC 3339 can write (`Range-To`).
const LATEST_MS: u64 = 253_402_214_400_000;

fn window(raw: &str) -> Result<u64, ApiError> {
    WINDOWS
        .iter()
        .find(|(name, _)| *name == raw.trim())
        .map(|(_, secs)| secs * 1000)
        .ok_or_else(|| {
            let names: Vec<&str> = WINDOWS.iter().map(|(n, _)| *n).collect();
            bad(format!(
                "querystring/window must be one of {}",
                names.join(", ")
            ))
        })
}

fn bucket(raw: &str) -> Result<Granularity, ApiError> {
    match raw.trim() {
        "1m" => Ok(Granularity::Minute),
        "1h" => Ok(Granularity::Hour),
        "1d" => Ok(Granularity::Day),
        _ => Err(bad("querystring/bucket must be one of 1m, 1h, 1d")),
    }
}

pub(crate) use crate::timeline::rfc3339;

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(q: &str) -> Result<Params, String> {
        Params::parse(Some(q)).map_err(|e| e.to_string())
    }

    #[test]
    fn limits_are_validated_in_fastify_words() {
        assert_eq!(parse("").unwrap().limit(), 10);
        assert_eq!(parse("limit=1000").unwrap().limit, Some(1000));
        assert_eq!(parse("x=1&limit=%203").unwrap().limit, Some(3));
        assert_eq!(
            parse("limit=0").unwrap_err(),
            "querystring/limit must be >= 1"
        );
        assert_eq!(
            parse("limit=1001").unwrap_err(),
            "querystring/limit must be <= 1000"
        );
        assert_eq!(
            parse("limit=abc").unwrap_err(),
            "querystring/limit must be integer"
        );
        assert_eq!(
            parse("limit=99999999999999999999999999999999999999999").unwrap_err(),
            "querystring/limit must be integer"
        );
    }

    #[test]
    fn values_are_form_decoded_and_must_be_utf8() {
        let p = parse("room=%23caf%C3%A9+bar&nick=a%2Bb&x=%FF").unwrap();
        assert_eq!(p.room.as_deref(), Some("#café bar"));
        assert_eq!(p.nick.as_deref(), Some("a+b"));
        assert_eq!(
            parse("room=%FF").unwrap_err(),
            "querystring/room must be UTF-8"
        );
        assert_eq!(parse("nick=%zz").unwrap().nick.as_deref(), Some("%zz"));
        assert_eq!(parse("&&limit=3&").unwrap().limit, Some(3));
        assert_eq!(
            parse("limit").unwrap_err(),
            "querystring/limit must be integer"
        );
    }

    #[test]
    fn times_are_rfc_3339_or_unix_milliseconds() {
        let p = parse("from=1795420860000&to=2026-11-23T08:03:00Z").unwrap();
        assert_eq!(p.from_ms, Some(1_795_420_860_000));
        assert_eq!(p.to_ms, Some(1_795_420_980_000));
        assert!(parse("from=yesterday").is_err());
        assert!(parse("from=-5").is_err());
        assert!(parse("to=2026-11-23").is_err());
        assert_eq!(
            parse("from=1969-12-31T23:59:59Z").unwrap_err(),
            "querystring/from must not be before 1970"
        );
        assert_eq!(parse("from=1970-01-01T00:00:00Z").unwrap().from_ms, Some(0));
        assert_eq!(rfc3339(1_795_420_805_000, true), "2026-11-23T08:00:05.000Z");
        assert_eq!(rfc3339(1_795_420_800_000, false), "2026-11-23T08:00:00Z");
    }

    #[test]
    fn combinations_that_make_no_sense_are_refused() {
        let refused =
            |q: &str, list| parse(q).and_then(|p| p.check_top(list).map_err(|e| e.to_string()));
        assert!(refused("room=%23a&nick=b", TopList::Words).is_err());
        assert!(refused("window=5m&from=1", TopList::Words).is_err());
        assert!(refused("nick=b&window=5m", TopList::Words).is_err());
        assert!(refused("room=%23a", TopList::Rooms).is_err());
        assert!(refused("nick=a", TopList::Nicks).is_err());
        assert!(refused("from=5&to=5", TopList::Words).is_err());
        assert!(refused("window=2h", TopList::Words).is_err());
        assert!(refused("room=", TopList::Words).is_err());
        assert!(refused("bucket=1m", TopList::Words).is_err());
        assert!(refused("room=%23a&window=5m", TopList::Emotes).is_ok());
        assert!(refused("nick=a", TopList::Rooms).is_ok());
        assert_eq!(window("24h").unwrap(), 86_400_000);
    }

    #[test]
    fn an_open_end_is_now_and_an_open_start_is_what_is_kept() {
        let r = Retention::default();
        let now = 1_795_420_800_000;
        let p = parse("from=1795420000000").unwrap();
        assert_eq!(p.range(now, &r).unwrap(), Some((1_795_420_000_000, now)));
        let p = parse("to=1795420000000").unwrap();
        let (from, to) = p.range(now, &r).unwrap().unwrap();
        assert_eq!(to, 1_795_420_000_000);
        assert_eq!(from, now - 35 * 86_400_000);
        let p = parse("window=5m").unwrap();
        assert_eq!(p.range(now, &r).unwrap(), Some((now - 300_000, now)));
        let future = parse("from=1795430000000").unwrap().range(now, &r);
        assert!(future.unwrap_err().to_string().contains("before now"));
    }

    #[test]
    fn a_start_older_than_anything_kept_is_where_the_kept_buckets_start() {
        let r = Retention::default();
        let now = 1_795_420_800_000;
        let oldest = now - 35 * 86_400_000;
        for from in ["0", "1970-01-01T00:00:00Z", "2025-01-01T00:00:00Z"] {
            let p = parse(&format!("from={from}")).unwrap();
            assert_eq!(p.range(now, &r).unwrap(), Some((oldest, now)), "{from}");
        }
        // A range all older than that: at its end, where nothing is kept either.
        let p = parse("from=0&to=1000").unwrap();
        assert_eq!(p.range(now, &r).unwrap(), Some((999, 1000)));
    }

    #[test]
    fn times_end_where_a_widened_range_can_still_be_written() {
        for late in [
            "to=9999-12-31T23:59:59Z",
            "to=253402300799999",
            "from=9999-12-31T00:00:01Z",
            "to=99999999999999999999",
        ] {
            let err = parse(late).unwrap_err();
            assert!(err.contains("must"), "{late}: {err}");
        }
        assert!(parse("to=9999-12-31T00:00:00Z").is_ok());
        assert!(parse("to=253402214400000").is_ok());
    }
}
