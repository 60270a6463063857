//! Time for the statistics: when an event counts, the 15-minute UTC slot it is stored
//! in, and the edges of a caller's hour or day buckets in an IANA time zone. Every zone
//! in use today is offset from UTC by a whole number of quarter hours (India +5:30,
//! Nepal +5:45, Chatham +12:45), and so are the daylight-saving shifts (Lord Howe moves
//! by 30 minutes), so every local hour and midnight falls on a slot edge and a bucket is
//! the exact sum of its slots. Zones are resolved by `jiff`, from the system's tzdb or
//! its bundled copy; DST gaps and folds are jiff's `compatible` rule (a midnight that
//! does not exist starts the day at the end of the gap).

use jiff::{Timestamp, ZonedDateTime, tz::TimeZone};

/// Seconds of one stored slot: the finest granularity that any IANA zone's hour needs.
pub const SLOT_SECONDS: i64 = 15 * 60;
/// Seconds of one UTC day, the unit the store keys its records by.
pub const DAY_SECONDS: i64 = 24 * 3600;
/// Most buckets one answer holds.
pub const MAX_BUCKETS: usize = 10_000;
/// How far after its receipt an event's `CreateTime` may lie before the receipt time is
/// used instead: WeChat's clock may run a little ahead, but an event cannot come from
/// the future, and a forged or broken one must not sit in the store for years.
pub const MAX_FUTURE_SKEW_SECONDS: i64 = 3600;

/// The size of a bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BucketSize {
    /// One local hour.
    Hour,
    /// One local calendar day.
    Day,
}

/// Why bucket edges cannot be computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BucketError {
    /// The range holds more buckets than one answer may.
    #[error("the range holds more than {MAX_BUCKETS} buckets; shorten it or use larger buckets")]
    TooMany,
    /// A time outside what the time zone database can represent.
    #[error("time out of the supported range (years -9999 to 9999): {0}")]
    OutOfRange(String),
}

/// The second at which `create_time` (WeChat's, Unix seconds) counts for an event
/// received at `received` (Unix seconds).
pub(super) fn event_second(create_time: u64, received: i64) -> i64 {
    let created = i64::try_from(create_time).unwrap_or(i64::MAX);
    if created > received.saturating_add(MAX_FUTURE_SKEW_SECONDS) {
        received
    } else {
        created
    }
}

/// The edges of the buckets that cover `[start, end)` (Unix seconds), in `zone`: the
/// first edge starts the bucket containing `start`, the last ends the bucket containing
/// `end - 1`. `end` must be after `start`.
pub fn edges(
    start: i64,
    end: i64,
    size: BucketSize,
    zone: &TimeZone,
) -> Result<Vec<i64>, BucketError> {
    let out_of_range = |e: jiff::Error| BucketError::OutOfRange(e.to_string());
    let at = |second: i64| -> Result<ZonedDateTime, BucketError> {
        Ok(Timestamp::from_second(second)
            .map_err(out_of_range)?
            .to_zoned_datetime(zone.clone()))
    };
    let first = match size {
        BucketSize::Hour => hour_start(start, zone).map_err(out_of_range)?,
        BucketSize::Day => at(start)?
            .start_of_day()
            .map_err(out_of_range)?
            .timestamp()
            .as_second(),
    };
    let mut edges = vec![first];
    let mut edge = first;
    while edge < end {
        if edges.len() > MAX_BUCKETS {
            return Err(BucketError::TooMany);
        }
        let next = match size {
            BucketSize::Hour => hour_start(edge + 3600, zone).map_err(out_of_range)?,
            BucketSize::Day => at(edge)?
                .tomorrow()
                .and_then(|d| d.start_of_day())
                .map_err(out_of_range)?
                .timestamp()
                .as_second(),
        };
        // Never stuck, whatever a zone's rules say.
        edge = if next > edge { next } else { edge + 3600 };
        edges.push(edge);
    }
    Ok(edges)
}

/// The start (Unix seconds) of the local hour that `second` is in: its local `:00` in
/// its own offset, or the transition that jumped the clock into the middle of that hour
/// (after a half-hour DST shift, or in the second run of a repeated hour).
fn hour_start(second: i64, zone: &TimeZone) -> Result<i64, jiff::Error> {
    let offset = i64::from(zone.to_offset(Timestamp::from_second(second)?).seconds());
    let local = second + offset;
    let candidate = local - local.rem_euclid(3600) - offset;
    let transition = zone
        .preceding(Timestamp::from_second(second + 1)?)
        .next()
        .map(|t| t.timestamp().as_second());
    Ok(match transition {
        Some(t) if t > candidate => t,
        _ => candidate,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> i64 {
        s.parse::<Timestamp>().unwrap().as_second()
    }

    fn zone(name: &str) -> TimeZone {
        TimeZone::get(name).unwrap()
    }

    #[test]
    fn days_in_shanghai_start_at_local_midnight() {
        let e = edges(
            utc("2024-03-01T15:59:59Z"),
            utc("2024-03-02T16:00:00Z"),
            BucketSize::Day,
            &zone("Asia/Shanghai"),
        )
        .unwrap();
        assert_eq!(
            e,
            vec![
                utc("2024-02-29T16:00:00Z"),
                utc("2024-03-01T16:00:00Z"),
                utc("2024-03-02T16:00:00Z"),
            ]
        );
    }

    #[test]
    fn dst_days_are_23_and_25_hours() {
        let ny = zone("America/New_York");
        let spring = edges(
            utc("2024-03-10T05:00:00Z"),
            utc("2024-03-10T06:00:00Z"),
            BucketSize::Day,
            &ny,
        )
        .unwrap();
        assert_eq!(spring[1] - spring[0], 23 * 3600);
        let fall = edges(
            utc("2024-11-03T04:00:00Z"),
            utc("2024-11-03T05:00:00Z"),
            BucketSize::Day,
            &ny,
        )
        .unwrap();
        assert_eq!(fall[1] - fall[0], 25 * 3600);
    }

    #[test]
    fn folded_hour_is_two_buckets() {
        // 2024-11-03 01:00 EDT (05:00Z) and 01:00 EST (06:00Z) in New York.
        let e = edges(
            utc("2024-11-03T05:30:00Z"),
            utc("2024-11-03T07:00:00Z"),
            BucketSize::Hour,
            &zone("America/New_York"),
        )
        .unwrap();
        assert_eq!(
            e,
            vec![
                utc("2024-11-03T05:00:00Z"),
                utc("2024-11-03T06:00:00Z"),
                utc("2024-11-03T07:00:00Z"),
            ]
        );
        let second = edges(
            utc("2024-11-03T06:10:00Z"),
            utc("2024-11-03T06:20:00Z"),
            BucketSize::Hour,
            &zone("America/New_York"),
        )
        .unwrap();
        assert_eq!(second[0], utc("2024-11-03T06:00:00Z"));
    }

    #[test]
    fn quarter_hour_zones_land_on_slots() {
        for name in [
            "Asia/Kathmandu",
            "Asia/Kolkata",
            "Pacific/Chatham",
            "Australia/Lord_Howe",
        ] {
            for size in [BucketSize::Hour, BucketSize::Day] {
                let e = edges(
                    utc("2024-01-01T00:00:00Z"),
                    utc("2025-01-01T00:00:00Z"),
                    size,
                    &zone(name),
                )
                .unwrap_or_else(|e| panic!("{name}: {e}"));
                assert!(e.iter().all(|s| s % SLOT_SECONDS == 0), "{name} {size:?}");
                assert!(e.windows(2).all(|w| w[0] < w[1]), "{name} {size:?}");
            }
        }
    }

    #[test]
    fn too_many_buckets_are_refused() {
        let e = edges(0, 20_000 * 3600, BucketSize::Hour, &TimeZone::UTC);
        assert_eq!(e, Err(BucketError::TooMany));
        assert_eq!(
            edges(0, 10_000 * 3600, BucketSize::Hour, &TimeZone::UTC)
                .unwrap()
                .len(),
            10_001
        );
    }

    #[test]
    fn future_create_time_falls_back_to_receipt() {
        assert_eq!(event_second(100, 200), 100);
        assert_eq!(event_second(200 + 3600, 200), 3800);
        assert_eq!(event_second(200 + 3601, 200), 200);
        assert_eq!(event_second(u64::MAX, 200), 200);
    }
}
