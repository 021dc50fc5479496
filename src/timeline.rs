//! Time in the statistics: a message's time, the UTC buckets it counts in, and how a range of
//! time is answered from buckets.
//!
//! Statistics by time are kept in buckets of three granularities — UTC minutes, hours and days —
//! each kept for its own retention. A range `[from, to)` is answered from the fewest buckets
//! that cover it ([`cover`]): a range of up to 6 h is exact to the minute while its minutes are
//! kept (whole hours inside it come from hour buckets, the edges from minute buckets). A longer
//! one starts on a whole hour, and whole days inside it come from day buckets; a start older
//! than a granularity's retention is widened to the next. Its end stays exact to the minute
//! while the minutes there are kept, else it is widened likewise: a range with no start ("up to
//! 10:20") covers nothing after 10:20. The range actually covered is what the API reports in
//! `Range-From`/`Range-To`. The module is a leaf: it imports nothing from the crate.

use std::time::Duration;

/// Milliseconds in a minute.
const MINUTE_MS: u64 = 60_000;
/// Ranges up to this long are answered exactly to the minute.
pub const EXACT_MINUTES_UP_TO_MS: u64 = 6 * 3_600_000;
/// How far ahead of the processing time a message's own time may be.
pub const MAX_FUTURE_MS: u64 = 5 * MINUTE_MS;

/// A bucket size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Granularity {
    /// A UTC minute.
    Minute,
    /// A UTC hour.
    Hour,
    /// A UTC day.
    Day,
}

impl Granularity {
    /// Finest first.
    pub const ALL: [Granularity; 3] = [Granularity::Minute, Granularity::Hour, Granularity::Day];

    /// The bucket's length in milliseconds.
    pub fn ms(self) -> u64 {
        match self {
            Granularity::Minute => MINUTE_MS,
            Granularity::Hour => 60 * MINUTE_MS,
            Granularity::Day => 24 * 60 * MINUTE_MS,
        }
    }

    /// Its letter in key names and in the API (`m`, `h`, `d`).
    pub fn letter(self) -> char {
        char::from(self.letter_str().as_bytes()[0])
    }

    /// [`Granularity::letter`] as text.
    pub fn letter_str(self) -> &'static str {
        match self {
            Granularity::Minute => "m",
            Granularity::Hour => "h",
            Granularity::Day => "d",
        }
    }

    /// The position in [`Granularity::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// One bucket: a granularity and the bucket's number since the Unix epoch (`ms / g.ms()`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Bucket {
    /// Its size.
    pub granularity: Granularity,
    /// Its number: its start in milliseconds divided by its length.
    pub number: u64,
}

impl Bucket {
    /// The bucket of `granularity` that holds `ms`.
    pub fn of(granularity: Granularity, ms: u64) -> Bucket {
        Bucket {
            granularity,
            number: ms / granularity.ms(),
        }
    }

    /// Its start, in Unix milliseconds.
    pub fn start_ms(self) -> u64 {
        self.number * self.granularity.ms()
    }

    /// Its end (exclusive), in Unix milliseconds.
    pub fn end_ms(self) -> u64 {
        self.start_ms() + self.granularity.ms()
    }
}

/// How long the buckets of each granularity are kept, counted from their end, and how long
/// recorded messages are kept for the history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Per granularity, finest first.
    pub kept: [Duration; 3],
    /// Recorded messages, counted from their recording (zero: not kept).
    pub history: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            kept: [
                Duration::from_secs(7 * 3600),
                Duration::from_secs(49 * 3600),
                Duration::from_secs(35 * 86_400),
            ],
            history: Duration::from_secs(24 * 3600),
        }
    }
}

impl Retention {
    /// How long buckets of `granularity` are kept.
    pub fn of(&self, granularity: Granularity) -> Duration {
        self.kept[granularity.index()]
    }

    /// True while `bucket` is kept at `now_ms`.
    pub fn keeps(&self, bucket: Bucket, now_ms: u64) -> bool {
        bucket.end_ms() + self.of(bucket.granularity).as_millis() as u64 > now_ms
    }

    /// When `bucket` expires, in Unix seconds.
    pub fn expiry_secs(&self, bucket: Bucket) -> u64 {
        (bucket.end_ms() + self.of(bucket.granularity).as_millis() as u64).div_ceil(1000)
    }
}

/// The current Unix time in milliseconds.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// `ms` as an RFC 3339 UTC date-time, with milliseconds (`2026-11-23T08:00:05.000Z`) or, when
/// `millis` is false, whole seconds (`2026-11-23T08:00:00Z`).
pub fn rfc3339(ms: u64, millis: bool) -> String {
    // Civil date from days since the epoch (Howard Hinnant's algorithm), to stay a leaf.
    let (days, rest) = (ms / 86_400_000, ms % 86_400_000);
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let (hour, minute, second, milli) = (
        rest / 3_600_000,
        rest / 60_000 % 60,
        rest / 1000 % 60,
        rest % 1000,
    );
    if !(0..=9999).contains(&year) {
        let millis = if millis {
            format!(".{milli:03}")
        } else {
            String::new()
        };
        return format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}{millis}Z");
    }
    // Digits into a fixed template: a history entry's time is formatted once per message, and
    // `format!` cost ten times as much.
    let mut text = *b"0000-00-00T00:00:00.000Z";
    let fields = [
        (0, 4, year as u64),
        (5, 2, month as u64),
        (8, 2, day as u64),
        (11, 2, hour),
        (14, 2, minute),
        (17, 2, second),
        (20, 3, milli),
    ];
    for (at, width, mut n) in fields {
        for digit in text[at..at + width].iter_mut().rev() {
            *digit = b'0' + (n % 10) as u8;
            n /= 10;
        }
    }
    let len = if millis { 24 } else { 19 };
    let mut out = String::with_capacity(len + 1);
    out.push_str(std::str::from_utf8(&text[..len]).unwrap_or_default());
    if !millis {
        out.push('Z');
    }
    out
}

/// The time a message counts at: its `tmi-sent-ts` (Unix ms) when that is a valid integer (ASCII
/// digits only, as Twitch sends it: no sign, no spaces) no more than [`MAX_FUTURE_MS`] ahead of
/// `processed_ms`, else `processed_ms`.
pub fn message_time(sent: Option<&str>, processed_ms: u64) -> u64 {
    sent.filter(|s| s.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|s| s.parse::<u64>().ok())
        .filter(|&t| t <= processed_ms.saturating_add(MAX_FUTURE_MS))
        .unwrap_or(processed_ms)
}

/// The buckets a store can read: with Redis, hour and day buckets exist once the finer buckets
/// of a whole hour or day are rolled up into them; the last hour and day rolled for every scope
/// are kept here. The in-memory store writes every bucket directly: [`Rolled::ALL`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rolled {
    /// The last hour number rolled up (hours up to it can be read).
    pub hour: u64,
    /// The last day number rolled up.
    pub day: u64,
}

impl Rolled {
    /// Every bucket can be read.
    pub const ALL: Rolled = Rolled {
        hour: u64::MAX,
        day: u64::MAX,
    };

    /// Nothing rolled up yet.
    pub const NONE: Rolled = Rolled { hour: 0, day: 0 };

    /// True when `bucket` can be read.
    pub fn has(&self, bucket: Bucket) -> bool {
        match bucket.granularity {
            Granularity::Minute => true,
            Granularity::Hour => bucket.number <= self.hour,
            Granularity::Day => bucket.number <= self.day,
        }
    }
}

/// The buckets of the next finer granularity that `bucket` is made of (none for a minute).
pub fn children(bucket: Bucket) -> Vec<Bucket> {
    let finer = match bucket.granularity {
        Granularity::Minute => return Vec::new(),
        Granularity::Hour => Granularity::Minute,
        Granularity::Day => Granularity::Hour,
    };
    buckets_between(finer, bucket.start_ms(), bucket.end_ms())
}

/// A range as answered: the buckets read and the range they cover, `[from_ms, to_ms)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Covered {
    /// Start of the covered range (Unix ms), a bucket boundary.
    pub from_ms: u64,
    /// End of the covered range (Unix ms, exclusive), a bucket boundary.
    pub to_ms: u64,
    /// The buckets read, oldest first, without overlap: they tile `[from_ms, to_ms)` but for
    /// buckets no longer kept and the future.
    pub buckets: Vec<Bucket>,
}

/// The fewest buckets kept at `now_ms` (and readable: `rolled`) that cover `[from_ms, to_ms)`
/// (see the module docs). Buckets wholly in the future (past what a message's time may be)
/// are empty and left out. `from_ms < to_ms` is the caller's to check.
pub fn cover(
    from_ms: u64,
    to_ms: u64,
    now_ms: u64,
    retention: &Retention,
    rolled: &Rolled,
) -> Covered {
    // The start's granularity: minutes only for short ranges; and only one whose buckets are
    // still kept at the start of the range.
    let first = Granularity::ALL
        .into_iter()
        .filter(|g| *g != Granularity::Minute || to_ms - from_ms <= EXACT_MINUTES_UP_TO_MS)
        .find(|g| retention.keeps(Bucket::of(*g, from_ms), now_ms))
        .unwrap_or(Granularity::Day);
    // The end's: the finest whose buckets are kept where the range's last buckets would be.
    let last = Granularity::ALL
        .into_iter()
        .filter(|g| *g <= first)
        .find(|g| end_kept(*g, first, to_ms, now_ms, retention))
        .unwrap_or(first);
    let start = from_ms / first.ms() * first.ms();
    let end = to_ms.div_ceil(last.ms()) * last.ms();
    let horizon = now_ms.saturating_add(MAX_FUTURE_MS);
    let mut buckets = Vec::new();
    let mut at = start;
    while at < end && at <= horizon {
        // The coarsest bucket that starts here and fits.
        let size = Granularity::ALL
            .into_iter()
            .rev()
            .filter(|g| *g >= last)
            .find(|g| at % g.ms() == 0 && at + g.ms() <= end)
            .unwrap_or(last);
        readable(
            Bucket::of(size, at),
            horizon,
            now_ms,
            retention,
            rolled,
            &mut buckets,
        );
        at += size.ms();
    }
    Covered {
        from_ms: start,
        to_ms: end,
        buckets,
    }
}

/// True when a range ending at `to_ms`, tiled with buckets of `first` and finer down to `end`,
/// reads only kept buckets at its end: buckets of a finer granularity than `first` fill only
/// the last bucket of the next coarser one before `to_ms`, so each must be kept from that
/// bucket's start.
fn end_kept(end: Granularity, first: Granularity, to_ms: u64, now_ms: u64, r: &Retention) -> bool {
    let last_ms = to_ms.saturating_sub(1);
    Granularity::ALL
        .windows(2)
        .filter(|pair| pair[0] >= end && pair[1] <= first)
        .all(|pair| {
            let coarser = pair[1].ms();
            r.keeps(Bucket::of(pair[0], last_ms / coarser * coarser), now_ms)
        })
}

/// The buckets to read for `bucket` at `now_ms`, added to `out`. A bucket not kept or not
/// rolled up yet is read from the finer ones it is made of, those that are kept; wholly past
/// `horizon` (the future), it is empty. A kept bucket whose finer ones are not all kept any
/// more is read itself, rolled up or not: what a backfill or a late message wrote into it
/// directly is all there is.
pub fn readable(
    bucket: Bucket,
    horizon: u64,
    now_ms: u64,
    retention: &Retention,
    rolled: &Rolled,
    out: &mut Vec<Bucket>,
) {
    if bucket.start_ms() > horizon {
        return;
    }
    let kept = retention.keeps(bucket, now_ms);
    if kept && rolled.has(bucket) {
        out.push(bucket);
        return;
    }
    let finer = children(bucket);
    let (Some(oldest), Some(newest)) = (finer.first(), finer.last()) else {
        return;
    };
    if kept && !retention.keeps(*oldest, now_ms) {
        out.push(bucket);
        return;
    }
    // None of them kept either (the newest ends last): nothing to read below, which keeps
    // a range back to 1970 from visiting its millions of minutes.
    if !kept && !retention.keeps(*newest, now_ms) {
        return;
    }
    for child in finer {
        readable(child, horizon, now_ms, retention, rolled, out);
    }
}

/// Every bucket of `granularity` from the one holding `from_ms` to the one before `to_ms`
/// (the one holding `to_ms - 1`), oldest first.
pub fn buckets_between(granularity: Granularity, from_ms: u64, to_ms: u64) -> Vec<Bucket> {
    let first = from_ms / granularity.ms();
    let last = to_ms.saturating_sub(1) / granularity.ms();
    (first..=last)
        .filter(|_| to_ms > from_ms)
        .map(|number| Bucket {
            granularity,
            number,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2026-11-23T10:17:05Z
    const NOW: u64 = 1_795_392_000_000 + 10 * 3_600_000 + 17 * MINUTE_MS + 5_000;

    fn sizes(covered: &Covered) -> String {
        covered
            .buckets
            .iter()
            .map(|b| b.granularity.letter())
            .collect()
    }

    #[test]
    fn a_message_counts_at_its_sent_time_unless_it_is_unusable() {
        assert_eq!(message_time(Some("1000"), 5000), 1000);
        assert_eq!(message_time(Some("abc"), 5000), 5000);
        assert_eq!(message_time(None, 5000), 5000);
        assert_eq!(
            message_time(Some("4102444800000"), 5000),
            5000,
            "the future"
        );
        assert_eq!(
            message_time(Some("305000"), 5000),
            305000,
            "5 min ahead is fine"
        );
        assert_eq!(message_time(Some("-5"), 5000), 5000);
        for not_an_integer in ["+1000", " 1000", "1000 ", "1e3", "", "1_000"] {
            assert_eq!(
                message_time(Some(not_an_integer), 5000),
                5000,
                "{not_an_integer:?}"
            );
        }
    }

    #[test]
    fn a_short_range_is_exact_to_the_minute_from_minutes_and_hours() {
        let r = Retention::default();
        // 07:30:20 .. 10:17:05 → minutes 07:30..07:59, hours 08 and 09, minutes 10:00..10:17.
        let from = NOW - 2 * 3_600_000 - 46 * MINUTE_MS - 45_000;
        let c = cover(from, NOW, NOW, &r, &Rolled::ALL);
        assert_eq!(c.from_ms, from / MINUTE_MS * MINUTE_MS);
        assert_eq!(c.to_ms, (NOW / MINUTE_MS + 1) * MINUTE_MS);
        assert_eq!(sizes(&c), format!("{}hh{}", "m".repeat(30), "m".repeat(18)));
        let tiled: u64 = c.buckets.iter().map(|b| b.granularity.ms()).sum();
        assert_eq!(tiled, c.to_ms - c.from_ms);
    }

    #[test]
    fn a_longer_range_starts_on_an_hour_with_days_inside_and_ends_exact() {
        let r = Retention {
            kept: [
                Duration::from_secs(7 * 3600),
                Duration::from_secs(8 * 86_400),
                Duration::from_secs(35 * 86_400),
            ],
            ..Retention::default()
        };
        let c = cover(NOW - 3 * 86_400_000, NOW, NOW, &r, &Rolled::ALL);
        assert_eq!(c.from_ms % 3_600_000, 0);
        assert_eq!(c.to_ms, (NOW / MINUTE_MS + 1) * MINUTE_MS);
        // 10:00..24:00 three days ago, two days, 00:00..10:00 today, 10:00..10:18.
        assert_eq!(
            sizes(&c),
            format!("{}dd{}{}", "h".repeat(14), "h".repeat(10), "m".repeat(18))
        );
        let tiled: u64 = c.buckets.iter().map(|b| b.granularity.ms()).sum();
        assert_eq!(tiled, c.to_ms - c.from_ms);
    }

    #[test]
    fn a_range_with_no_start_ends_where_it_was_asked_to() {
        let r = Retention::default();
        let (hour, day) = (3_600_000, 86_400_000);
        // Up to 09:47:30 today: 35 days, 00:00..09:00 in hours, 09:00..09:48 in minutes.
        let to = NOW / hour * hour - hour + 47 * MINUTE_MS + 30_000;
        let c = cover(NOW - 35 * day, to, NOW, &r, &Rolled::ALL);
        assert_eq!(c.from_ms % day, 0);
        assert_eq!(c.to_ms, to.div_ceil(MINUTE_MS) * MINUTE_MS);
        assert!(sizes(&c).ends_with(&format!("d{}{}", "h".repeat(9), "m".repeat(48))));
        assert!(c.buckets.iter().all(|b| r.keeps(*b, NOW)));
        // Up to 01:30 yesterday: its minutes are gone, its hours kept.
        let to = NOW / day * day - day + hour + 30 * MINUTE_MS;
        let c = cover(NOW - 35 * day, to, NOW, &r, &Rolled::ALL);
        assert_eq!(c.to_ms, to.div_ceil(hour) * hour);
        assert!(sizes(&c).ends_with("dhh"));
        // Up to 01:30 four days ago: days only.
        let c = cover(NOW - 35 * day, to - 3 * day, NOW, &r, &Rolled::ALL);
        assert_eq!(c.to_ms, (to - 3 * day).div_ceil(day) * day);
        assert!(sizes(&c).chars().all(|g| g == 'd'));
        // The end's hours must be kept from its day's start: 45 h ago is 13:17 two days ago,
        // whose day began 58 h ago, past the 49 h of hours. So the end is a whole day.
        let c = cover(NOW - 35 * day, NOW - 45 * hour, NOW, &r, &Rolled::ALL);
        assert_eq!(c.to_ms % day, 0);
    }

    #[test]
    fn a_range_older_than_a_retention_uses_the_next_granularity() {
        let r = Retention::default();
        // One hour, ten days ago: minutes and hours are gone, so the whole day is read.
        let from = NOW - 10 * 86_400_000;
        let c = cover(from, from + 3_600_000, NOW, &r, &Rolled::ALL);
        assert_eq!(sizes(&c), "d");
        assert_eq!(c.from_ms, from / 86_400_000 * 86_400_000);
        // Nothing rolled up (a backfill into a new namespace): the day is still read, and an
        // hour whose minutes are gone too.
        let c = cover(from, from + 3_600_000, NOW, &r, &Rolled::NONE);
        assert_eq!(sizes(&c), "d");
        let ten_hours_ago = (NOW - 10 * 3_600_000) / 3_600_000 * 3_600_000;
        let c = cover(
            ten_hours_ago,
            ten_hours_ago + 3_600_000,
            NOW,
            &r,
            &Rolled::NONE,
        );
        assert_eq!(sizes(&c), "h");
    }

    #[test]
    fn a_range_back_to_1970_reads_only_what_is_kept() {
        let r = Retention::default();
        for rolled in [Rolled::NONE, Rolled::ALL] {
            let c = cover(0, NOW, NOW, &r, &rolled);
            assert!(c.buckets.iter().all(|b| r.keeps(*b, NOW)));
            // The 35 days kept, as days (rolled) or down to the hours and minutes kept.
            let first = c.buckets.first().unwrap().start_ms();
            assert!(NOW - first <= 36 * 86_400_000, "{first}");
        }
    }

    #[test]
    fn buckets_not_rolled_up_yet_are_read_from_finer_ones_and_the_future_is_skipped() {
        let r = Retention::default();
        let hour = NOW / 3_600_000;
        // Hours up to two hours ago are rolled up; the last one is not.
        let rolled = Rolled {
            hour: hour - 2,
            day: NOW / 86_400_000 - 1,
        };
        let c = cover(NOW - 3 * 3_600_000, NOW + 3_600_000, NOW, &r, &rolled);
        // 07:17..08:00 minutes, 08:00 hour, 09:00..10:17+5 minutes (not rolled, then future).
        assert_eq!(
            sizes(&c),
            format!("{}h{}", "m".repeat(43), "m".repeat(60 + 18 + 5))
        );
        assert_eq!(children(Bucket::of(Granularity::Day, NOW)).len(), 24);
    }

    proptest::proptest! {
        /// Every time up to the year 9999 reads as humantime writes it, with and without
        /// milliseconds.
        #[test]
        fn a_time_is_written_as_rfc3339_says(ms in 0u64..=253_402_300_799_999) {
            let at = std::time::UNIX_EPOCH + Duration::from_millis(ms);
            let millis = humantime::format_rfc3339_millis(at).to_string();
            proptest::prop_assert_eq!(rfc3339(ms, true), millis);
            let seconds = humantime::format_rfc3339_seconds(at).to_string();
            proptest::prop_assert_eq!(rfc3339(ms, false), seconds);
        }

        /// Any range: the buckets read lie in order inside the covered range, which holds the
        /// range asked; each is kept; and the end is exact to the minute wherever the minutes
        /// of its day are still kept.
        #[test]
        fn a_covered_range_holds_the_range_asked_in_kept_buckets_and_ends_exact_when_it_can(
            ago in 0u64..40 * 86_400_000,
            length in 1u64..40 * 86_400_000,
            kept in (2u64..12, 26u64..80, 1u64..40),
        ) {
            let r = Retention {
                kept: [
                    Duration::from_secs(kept.0 * 3600),
                    Duration::from_secs(kept.1 * 3600),
                    Duration::from_secs(kept.2.max(4) * 86_400),
                ],
                ..Retention::default()
            };
            let from = NOW.saturating_sub(ago);
            let to = from + length;
            let c = cover(from, to, NOW, &r, &Rolled::ALL);
            proptest::prop_assert!(c.from_ms <= from && c.to_ms >= to);
            let mut at = c.from_ms;
            for b in &c.buckets {
                proptest::prop_assert!(b.start_ms() >= at && b.end_ms() <= c.to_ms, "{b:?}");
                proptest::prop_assert!(r.keeps(*b, NOW), "{b:?} not kept");
                at = b.end_ms();
            }
            let day_start = (to - 1) / 86_400_000 * 86_400_000;
            if r.keeps(Bucket::of(Granularity::Minute, day_start), NOW) {
                proptest::prop_assert_eq!(c.to_ms, to.div_ceil(MINUTE_MS) * MINUTE_MS);
            }
        }
    }

    #[test]
    fn times_are_written_in_rfc_3339() {
        assert_eq!(rfc3339(1_795_420_805_000, true), "2026-11-23T08:00:05.000Z");
        assert_eq!(rfc3339(1_795_420_800_000, false), "2026-11-23T08:00:00Z");
        assert_eq!(rfc3339(0, true), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400_123, true), "2000-02-29T00:00:00.123Z");
        assert_eq!(
            rfc3339(253_402_300_799_999, true),
            "9999-12-31T23:59:59.999Z"
        );
        assert_eq!(rfc3339(253_402_300_800_000, false), "10000-01-01T00:00:00Z");
    }

    #[test]
    fn buckets_between_include_partial_ends() {
        let b = buckets_between(Granularity::Minute, 90_000, 200_000);
        assert_eq!(
            b.iter().map(|b| b.number).collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
        assert!(buckets_between(Granularity::Hour, 5, 5).is_empty());
    }
}
