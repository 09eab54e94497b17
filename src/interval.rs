//! Interval math for incremental models: time units, half-open intervals and
//! sets of them, plus the few operations the planner needs to work out the
//! minimal ranges to rebuild.
//!
//! Everything here is pure: no I/O and no clock ("now" is always passed in).
//!
//! # Conventions
//! - Time points are [`NaiveDateTime`] values in UTC. A DATE is its midnight.
//! - Intervals are half-open, `[start, end)`, and never empty.
//! - An [`IntervalSet`] is always sorted and merged: overlapping *and* adjacent
//!   intervals coalesce, so two sets are equal exactly when they cover the same
//!   points.
//! - Points are expected to lie in years 1..=9999 (what an ISO date can say).
//!   Near the ends of chrono's range (about ±262,000 years) arithmetic
//!   saturates instead of panicking, and alignment laws may not hold there.
//!
//! # Text forms
//! A point is written `2025-03-01` when it is a midnight, else
//! `2025-03-01T13:00:00` (with a fraction only if it has one). An interval is
//! written with both ends in the same form: dates when both ends are
//! midnights, timestamps otherwise. Its serde form is a pair
//! `["2025-03-01", "2025-04-01"]`; a set is a list of pairs.

use std::fmt;
use std::str::FromStr;

use chrono::{Datelike, Days, Months, NaiveDate, NaiveDateTime, NaiveTime, TimeDelta, Timelike};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// What can go wrong turning user input into units, points and intervals.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IntervalError {
    #[error("unknown time unit `{input}`: expected one of hour, day, week, month, year")]
    UnknownUnit { input: String },
    #[error(
        "invalid date or timestamp `{input}`: expected YYYY-MM-DD or YYYY-MM-DDTHH:MM:SS (UTC)"
    )]
    InvalidPoint { input: String },
    #[error("invalid interval `{input}`: expected START..END, e.g. 2025-03-01..2025-04-01")]
    InvalidInterval { input: String },
    #[error(
        "empty interval: start {start} is not before end {end} (intervals are half-open [start, end))"
    )]
    EmptyInterval { start: String, end: String },
}

// ---------------------------------------------------------------------------
// Unit
// ---------------------------------------------------------------------------

/// The time grain of an incremental model. Ordered from finest to coarsest.
///
/// Weeks are ISO weeks: they start on Monday at 00:00 UTC, so a week can span
/// two calendar years.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Unit {
    Hour,
    Day,
    Week,
    Month,
    Year,
}

impl Unit {
    /// All units, finest first.
    pub const ALL: [Unit; 5] = [Unit::Hour, Unit::Day, Unit::Week, Unit::Month, Unit::Year];

    /// The lowercase name used in headers and JSON (`"day"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Hour => "hour",
            Unit::Day => "day",
            Unit::Week => "week",
            Unit::Month => "month",
            Unit::Year => "year",
        }
    }

    /// The start of the unit containing `t` (the largest aligned point `<= t`).
    ///
    /// ```
    /// # use hubforge::interval::Unit;
    /// # use chrono::NaiveDate;
    /// let t = NaiveDate::from_ymd_opt(2025, 3, 19).unwrap().and_hms_opt(13, 5, 0).unwrap();
    /// assert_eq!(Unit::Month.floor(t).to_string(), "2025-03-01 00:00:00");
    /// ```
    pub fn floor(self, t: NaiveDateTime) -> NaiveDateTime {
        let date = t.date();
        match self {
            Unit::Hour => date.and_time(
                NaiveTime::from_hms_opt(t.hour(), 0, 0).expect("hour of a valid time is valid"),
            ),
            Unit::Day => midnight(date),
            Unit::Week => {
                let back = u64::from(date.weekday().num_days_from_monday());
                // Only the very first days of chrono's range have no Monday before them.
                date.checked_sub_days(Days::new(back))
                    .map_or(NaiveDateTime::MIN, midnight)
            }
            Unit::Month => midnight(date.with_day(1).expect("day 1 exists in every month")),
            Unit::Year => midnight(date.with_ordinal(1).expect("day 1 exists in every year")),
        }
    }

    /// The smallest aligned point `>= t`: `t` itself when aligned, else the
    /// start of the next unit.
    pub fn ceil(self, t: NaiveDateTime) -> NaiveDateTime {
        let floor = self.floor(t);
        if floor == t { t } else { self.add(floor, 1) }
    }

    /// Whether `t` is the start of a unit.
    pub fn is_aligned(self, t: NaiveDateTime) -> bool {
        self.floor(t) == t
    }

    /// `t` moved by `n` units (`n` may be negative), or `None` past chrono's range.
    ///
    /// On aligned points the result is exact and aligned for every unit
    /// (`2024-01-01` + 1 month = `2024-02-01`). On unaligned points hours, days
    /// and weeks are exact durations, while months and years keep the time of
    /// day and clamp the day to the end of the target month
    /// (`2024-01-31` + 1 month = `2024-02-29`).
    pub fn checked_add(self, t: NaiveDateTime, n: i64) -> Option<NaiveDateTime> {
        match self {
            Unit::Hour => t.checked_add_signed(TimeDelta::try_hours(n)?),
            Unit::Day => t.checked_add_signed(TimeDelta::try_days(n)?),
            Unit::Week => t.checked_add_signed(TimeDelta::try_weeks(n)?),
            Unit::Month => add_months(t, n),
            Unit::Year => add_months(t, n.checked_mul(12)?),
        }
    }

    /// [`Unit::checked_add`] that saturates at [`NaiveDateTime::MAX`] /
    /// [`NaiveDateTime::MIN`] instead of failing (unreachable for years 1..=9999
    /// unless `n` is absurd).
    pub fn add(self, t: NaiveDateTime, n: i64) -> NaiveDateTime {
        self.checked_add(t, n).unwrap_or(if n >= 0 {
            NaiveDateTime::MAX
        } else {
            NaiveDateTime::MIN
        })
    }

    /// The number of unit boundaries in `(a, b]`, negative when `b < a`.
    ///
    /// For aligned `a <= b` this is the number of units in `[a, b)`, so that
    /// `add(a, count_between(a, b)) == b`. For unaligned points it equals
    /// `count_between(floor(a), floor(b))`.
    pub fn count_between(self, a: NaiveDateTime, b: NaiveDateTime) -> i64 {
        self.index(b) - self.index(a)
    }

    /// The ordinal of the unit containing `t` on a fixed, gapless numbering.
    fn index(self, t: NaiveDateTime) -> i64 {
        let date = t.date();
        // 0001-01-01 (day 1 from CE) is a Monday, which anchors ISO weeks.
        let days = i64::from(date.num_days_from_ce()) - 1;
        match self {
            Unit::Hour => days * 24 + i64::from(t.hour()),
            Unit::Day => days,
            Unit::Week => days.div_euclid(7),
            Unit::Month => i64::from(date.year()) * 12 + i64::from(date.month0()),
            Unit::Year => i64::from(date.year()),
        }
    }
}

fn midnight(date: NaiveDate) -> NaiveDateTime {
    date.and_time(NaiveTime::MIN)
}

fn add_months(t: NaiveDateTime, n: i64) -> Option<NaiveDateTime> {
    let months = Months::new(u32::try_from(n.unsigned_abs()).ok()?);
    if n >= 0 {
        t.checked_add_months(months)
    } else {
        t.checked_sub_months(months)
    }
}

impl fmt::Display for Unit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Unit {
    type Err = IntervalError;

    /// Parses `hour`, `day`, `week`, `month` or `year` (case-insensitive).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim();
        Unit::ALL
            .into_iter()
            .find(|unit| unit.as_str().eq_ignore_ascii_case(wanted))
            .ok_or_else(|| IntervalError::UnknownUnit {
                input: s.to_string(),
            })
    }
}

// ---------------------------------------------------------------------------
// Points
// ---------------------------------------------------------------------------

/// Parses a UTC point: `2025-03-01` (midnight), `2025-03-01T13:00:00`,
/// optionally with a fraction, a space instead of `T`, no seconds
/// (`2025-03-01T13:00`) or a trailing `Z`.
pub fn parse_point(s: &str) -> Result<NaiveDateTime, IntervalError> {
    let trimmed = s.trim();
    let text = trimmed
        .strip_suffix('Z')
        .or_else(|| trimmed.strip_suffix('z'))
        .unwrap_or(trimmed);
    if let Ok(date) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(midnight(date));
    }
    const FORMATS: [&str; 4] = [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
    ];
    FORMATS
        .iter()
        .find_map(|format| NaiveDateTime::parse_from_str(text, format).ok())
        .ok_or_else(|| IntervalError::InvalidPoint {
            input: s.to_string(),
        })
}

/// Writes a point as `2025-03-01` when it is a midnight, else as
/// `2025-03-01T13:00:00` (a fraction of a second only when there is one).
pub fn format_point(t: NaiveDateTime) -> String {
    if t.time() == NaiveTime::MIN {
        format_date(t)
    } else {
        format_timestamp(t)
    }
}

fn format_date(t: NaiveDateTime) -> String {
    t.format("%Y-%m-%d").to_string()
}

fn format_timestamp(t: NaiveDateTime) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.f").to_string()
}

// ---------------------------------------------------------------------------
// Interval
// ---------------------------------------------------------------------------

/// A non-empty half-open time range `[start, end)`.
///
/// The fields are private so that `start < end` always holds; build one with
/// [`Interval::new`] or [`Interval::parse`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Interval {
    start: NaiveDateTime,
    end: NaiveDateTime,
}

impl Interval {
    /// `[start, end)`, or an error when `start >= end`.
    pub fn new(start: NaiveDateTime, end: NaiveDateTime) -> Result<Self, IntervalError> {
        Self::checked(start, end).ok_or_else(|| IntervalError::EmptyInterval {
            start: format_point(start),
            end: format_point(end),
        })
    }

    /// `[start, end)`, or `None` when it would be empty.
    fn checked(start: NaiveDateTime, end: NaiveDateTime) -> Option<Self> {
        (start < end).then_some(Interval { start, end })
    }

    /// Parses both ends with [`parse_point`]: `Interval::parse("2025-03-01", "2025-04-01")`
    /// is March 2025.
    pub fn parse(start: &str, end: &str) -> Result<Self, IntervalError> {
        Self::new(parse_point(start)?, parse_point(end)?)
    }

    /// The unit interval containing `t`: `[floor(t), floor(t) + 1 unit)`.
    pub fn unit_at(unit: Unit, t: NaiveDateTime) -> Self {
        let start = unit.floor(t);
        let end = unit.add(start, 1);
        // Only at the very end of chrono's range can `end` fail to pass `start`.
        Self::checked(start, end).unwrap_or(Interval {
            start,
            end: NaiveDateTime::MAX,
        })
    }

    /// Inclusive start.
    pub fn start(&self) -> NaiveDateTime {
        self.start
    }

    /// Exclusive end.
    pub fn end(&self) -> NaiveDateTime {
        self.end
    }

    /// Whether `start <= t < end`.
    pub fn contains_point(&self, t: NaiveDateTime) -> bool {
        self.start <= t && t < self.end
    }

    /// The common part, if any.
    pub fn intersect(&self, other: &Interval) -> Option<Interval> {
        Self::checked(self.start.max(other.start), self.end.min(other.end))
    }

    /// Whether both ends are aligned to `unit`.
    pub fn is_aligned(&self, unit: Unit) -> bool {
        unit.is_aligned(self.start) && unit.is_aligned(self.end)
    }

    /// Both ends as text, in the same form (dates when both are midnights).
    fn text_ends(&self) -> (String, String) {
        let dates = self.start.time() == NaiveTime::MIN && self.end.time() == NaiveTime::MIN;
        let format = if dates { format_date } else { format_timestamp };
        (format(self.start), format(self.end))
    }
}

impl fmt::Display for Interval {
    /// `2025-03-01..2025-04-01`, or `2025-03-01T13:00:00..2025-03-01T15:00:00`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (start, end) = self.text_ends();
        write!(f, "{start}..{end}")
    }
}

impl FromStr for Interval {
    type Err = IntervalError;

    /// Parses the [`Display`](fmt::Display) form `START..END`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (start, end) = s
            .split_once("..")
            .ok_or_else(|| IntervalError::InvalidInterval {
                input: s.to_string(),
            })?;
        Self::parse(start, end)
    }
}

impl Serialize for Interval {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.text_ends().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Interval {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let (start, end) = <(String, String)>::deserialize(deserializer)?;
        Interval::parse(&start, &end).map_err(serde::de::Error::custom)
    }
}

// ---------------------------------------------------------------------------
// IntervalSet
// ---------------------------------------------------------------------------

/// A set of time points stored as sorted, disjoint, non-adjacent intervals.
///
/// Operations return new sets; none mutates in place.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct IntervalSet {
    intervals: Vec<Interval>,
}

impl IntervalSet {
    /// The empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// The set covering one interval.
    pub fn single(interval: Interval) -> Self {
        IntervalSet {
            intervals: vec![interval],
        }
    }

    /// The union of any intervals, in any order, overlapping or not.
    pub fn from_intervals(intervals: impl IntoIterator<Item = Interval>) -> Self {
        let mut sorted: Vec<Interval> = intervals.into_iter().collect();
        sorted.sort_unstable();
        Self::from_sorted(sorted)
    }

    /// Coalesces intervals already sorted by start.
    fn from_sorted(sorted: impl IntoIterator<Item = Interval>) -> Self {
        let mut merged: Vec<Interval> = Vec::new();
        for next in sorted {
            match merged.last_mut() {
                Some(last) if next.start <= last.end => last.end = last.end.max(next.end),
                _ => merged.push(next),
            }
        }
        IntervalSet { intervals: merged }
    }

    /// Whether the set covers no point.
    pub fn is_empty(&self) -> bool {
        self.intervals.is_empty()
    }

    /// The number of (merged) intervals, not of units.
    pub fn len(&self) -> usize {
        self.intervals.len()
    }

    /// The merged intervals, sorted.
    pub fn intervals(&self) -> &[Interval] {
        &self.intervals
    }

    /// Iterates the merged intervals, sorted.
    pub fn iter(&self) -> std::slice::Iter<'_, Interval> {
        self.intervals.iter()
    }

    /// The smallest interval containing the whole set, if it is not empty.
    pub fn span(&self) -> Option<Interval> {
        let first = self.intervals.first()?;
        let last = self.intervals.last()?;
        Some(Interval {
            start: first.start,
            end: last.end,
        })
    }

    /// Whether some interval contains `t`.
    pub fn contains_point(&self, t: NaiveDateTime) -> bool {
        let i = self.intervals.partition_point(|iv| iv.end <= t);
        self.intervals.get(i).is_some_and(|iv| iv.start <= t)
    }

    /// Whether every point of `interval` is in the set.
    pub fn covers(&self, interval: &Interval) -> bool {
        // Merged intervals never touch, so a covered interval lies in just one.
        let i = self
            .intervals
            .partition_point(|iv| iv.end <= interval.start);
        self.intervals
            .get(i)
            .is_some_and(|iv| iv.start <= interval.start && interval.end <= iv.end)
    }

    /// Whether every interval starts and ends on a `unit` boundary.
    pub fn is_aligned(&self, unit: Unit) -> bool {
        self.intervals.iter().all(|iv| iv.is_aligned(unit))
    }

    /// Points in either set.
    pub fn union(&self, other: &IntervalSet) -> IntervalSet {
        let (a, b) = (&self.intervals, &other.intervals);
        let (mut i, mut j) = (0, 0);
        let mut sorted = Vec::with_capacity(a.len() + b.len());
        while i < a.len() || j < b.len() {
            if j == b.len() || (i < a.len() && a[i] <= b[j]) {
                sorted.push(a[i]);
                i += 1;
            } else {
                sorted.push(b[j]);
                j += 1;
            }
        }
        Self::from_sorted(sorted)
    }

    /// Points in both sets.
    pub fn intersect(&self, other: &IntervalSet) -> IntervalSet {
        let (a, b) = (&self.intervals, &other.intervals);
        let (mut i, mut j) = (0, 0);
        let mut out = Vec::new();
        while i < a.len() && j < b.len() {
            out.extend(a[i].intersect(&b[j]));
            if a[i].end <= b[j].end {
                i += 1;
            } else {
                j += 1;
            }
        }
        Self::from_sorted(out)
    }

    /// Points in `self` but not in `other`.
    pub fn subtract(&self, other: &IntervalSet) -> IntervalSet {
        let holes = &other.intervals;
        let mut out = Vec::new();
        let mut j = 0;
        for iv in &self.intervals {
            // Holes ending before this interval cannot touch later ones either.
            while j < holes.len() && holes[j].end <= iv.start {
                j += 1;
            }
            let mut cursor = iv.start;
            let mut k = j;
            while k < holes.len() && holes[k].start < iv.end {
                out.extend(Interval::checked(cursor, holes[k].start));
                cursor = cursor.max(holes[k].end);
                k += 1;
            }
            out.extend(Interval::checked(cursor, iv.end));
        }
        Self::from_sorted(out)
    }

    /// The part of the set inside `range` (intersection with one interval).
    pub fn clamp(&self, range: &Interval) -> IntervalSet {
        self.intersect(&IntervalSet::single(*range))
    }

    /// The parts of `range` the set does not cover.
    pub fn gaps_within(&self, range: &Interval) -> IntervalSet {
        IntervalSet::single(*range).subtract(self)
    }

    /// Each interval widened to whole units: `[floor(start), ceil(end))`.
    ///
    /// This is the smallest `unit`-aligned superset: a stale day makes its
    /// whole month stale in a monthly model.
    pub fn align_outward(&self, unit: Unit) -> IntervalSet {
        // Flooring and ceiling keep the order of starts, so no re-sort is needed.
        Self::from_sorted(self.intervals.iter().map(|iv| Interval {
            start: unit.floor(iv.start),
            end: unit.ceil(iv.end).max(iv.end),
        }))
    }

    /// Each interval narrowed to the whole units inside it: `[ceil(start),
    /// floor(end))`, dropping what holds no whole unit. The largest
    /// `unit`-aligned subset: a decision about "up to October 15" covers
    /// September of a monthly model, not October.
    pub fn align_inward(&self, unit: Unit) -> IntervalSet {
        Self::from_intervals(self.intervals.iter().filter_map(|iv| {
            let (start, end) = (unit.ceil(iv.start), unit.floor(iv.end));
            (start < end).then_some(Interval { start, end })
        }))
    }

    /// The window rule: each `[a, b)` becomes `[a, b + (window − 1) units)`.
    ///
    /// A child with `window = N` builds each of its units from the N parent
    /// units ending with that unit, so a parent change in `[a, b)` reaches the
    /// child units from `a` up to `N − 1` units past `b`. `window <= 1` returns
    /// the set unchanged. The start is never moved. On unaligned ends months
    /// and years shift as in [`Unit::add`]; the planner aligns (see
    /// [`IntervalSet::align_outward`]) before or after as it needs.
    pub fn extend_end(&self, unit: Unit, window: u32) -> IntervalSet {
        let extra = i64::from(window.saturating_sub(1));
        if extra == 0 {
            return self.clone();
        }
        Self::from_sorted(self.intervals.iter().map(|iv| Interval {
            start: iv.start,
            end: unit.add(iv.end, extra).max(iv.end),
        }))
    }

    /// Every `unit` interval the set touches, in order, each once. An
    /// unaligned set is aligned outward first.
    pub fn units(&self, unit: Unit) -> impl Iterator<Item = Interval> + use<> {
        self.align_outward(unit)
            .intervals
            .into_iter()
            .flat_map(move |iv| chunks(iv, unit, 1))
    }

    /// Splits the set into backfill batches: consecutive `unit`-aligned chunks
    /// of at most `batch` units that never cross a gap (40 days with a batch
    /// of 31 give 31 days, then 9). An unaligned set is aligned outward first;
    /// `batch = 0` is treated as 1.
    pub fn batches(&self, unit: Unit, batch: u32) -> Vec<Interval> {
        let size = i64::from(batch.max(1));
        self.align_outward(unit)
            .intervals
            .into_iter()
            .flat_map(|iv| chunks(iv, unit, size))
            .collect()
    }

    /// The number of `unit` intervals the set touches (of its outward
    /// alignment, so for an aligned set its exact length in units).
    pub fn count_units(&self, unit: Unit) -> i64 {
        self.align_outward(unit)
            .intervals
            .iter()
            .map(|iv| unit.count_between(iv.start, iv.end))
            .sum()
    }
}

/// Consecutive pieces of `size` units from the start of `iv`, the last one cut
/// at `iv.end`.
fn chunks(iv: Interval, unit: Unit, size: i64) -> impl Iterator<Item = Interval> {
    let mut cursor = Some(iv.start);
    std::iter::from_fn(move || {
        let start = cursor?;
        let end = match unit.checked_add(start, size) {
            Some(next) if next > start && next < iv.end => next,
            _ => iv.end,
        };
        cursor = (end < iv.end).then_some(end);
        Some(Interval { start, end })
    })
}

/// The universe of an incremental model: every complete unit from the unit
/// containing `start` up to, not including, the unit containing `end`:
/// `[floor(start), floor(end))`. Empty when that range is empty.
///
/// Pass [`last_complete`] of "now" (or the user's `--end`) as `end`.
pub fn expected(start: NaiveDateTime, end: NaiveDateTime, unit: Unit) -> IntervalSet {
    Interval::checked(unit.floor(start), unit.floor(end))
        .map(IntervalSet::single)
        .unwrap_or_default()
}

/// The end of the last complete unit at `now`: `floor(now)`. The unit that
/// contains `now` is still filling up and is never built.
pub fn last_complete(now: NaiveDateTime, unit: Unit) -> NaiveDateTime {
    unit.floor(now)
}

impl fmt::Display for IntervalSet {
    /// `2025-03-01..2025-04-01, 2025-05-01..2025-05-03`; `(empty)` for the empty set.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("(empty)");
        }
        for (i, iv) in self.intervals.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{iv}")?;
        }
        Ok(())
    }
}

impl From<Interval> for IntervalSet {
    fn from(interval: Interval) -> Self {
        IntervalSet::single(interval)
    }
}

impl FromIterator<Interval> for IntervalSet {
    fn from_iter<I: IntoIterator<Item = Interval>>(iter: I) -> Self {
        IntervalSet::from_intervals(iter)
    }
}

impl IntoIterator for IntervalSet {
    type Item = Interval;
    type IntoIter = std::vec::IntoIter<Interval>;

    fn into_iter(self) -> Self::IntoIter {
        self.intervals.into_iter()
    }
}

impl<'a> IntoIterator for &'a IntervalSet {
    type Item = &'a Interval;
    type IntoIter = std::slice::Iter<'a, Interval>;

    fn into_iter(self) -> Self::IntoIter {
        self.intervals.iter()
    }
}

impl Serialize for IntervalSet {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.intervals.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for IntervalSet {
    /// Accepts pairs in any order, overlapping or not, and merges them.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Vec::<Interval>::deserialize(deserializer).map(IntervalSet::from_intervals)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDateTime {
        midnight(NaiveDate::from_ymd_opt(y, m, day).unwrap())
    }

    fn h(y: i32, m: u32, day: u32, hour: u32) -> NaiveDateTime {
        d(y, m, day) + TimeDelta::hours(i64::from(hour))
    }

    fn p(s: &str) -> NaiveDateTime {
        parse_point(s).unwrap()
    }

    fn iv(start: &str, end: &str) -> Interval {
        Interval::parse(start, end).unwrap()
    }

    fn set(pairs: &[(&str, &str)]) -> IntervalSet {
        IntervalSet::from_intervals(pairs.iter().map(|(a, b)| iv(a, b)))
    }

    // --- Unit -------------------------------------------------------------

    #[test]
    fn floor_table() {
        let cases = [
            (Unit::Hour, "2025-03-01T13:45:10", "2025-03-01T13:00:00"),
            (Unit::Hour, "2025-03-01T00:00:00.5", "2025-03-01"),
            (Unit::Day, "2025-03-01T23:59:59", "2025-03-01"),
            (Unit::Day, "2024-02-29T12:00", "2024-02-29"),
            // 2025-03-01 is a Saturday.
            (Unit::Week, "2025-03-01", "2025-02-24"),
            (Unit::Week, "2025-02-24", "2025-02-24"),
            // ISO weeks spanning a year boundary.
            (Unit::Week, "2025-01-01T08:00", "2024-12-30"),
            (Unit::Week, "2021-01-03", "2020-12-28"),
            (Unit::Month, "2024-02-29T23:00", "2024-02-01"),
            (Unit::Month, "2025-12-31", "2025-12-01"),
            (Unit::Year, "2024-12-31T23:59:59", "2024-01-01"),
        ];
        for (unit, input, expected) in cases {
            assert_eq!(unit.floor(p(input)), p(expected), "{unit} floor of {input}");
        }
    }

    #[test]
    fn ceil_table() {
        let cases = [
            (Unit::Hour, "2025-03-01T23:30", "2025-03-02"),
            (Unit::Hour, "2025-03-01T13:00", "2025-03-01T13:00"),
            (Unit::Day, "2024-02-28T01:00", "2024-02-29"),
            (Unit::Day, "2024-12-31T00:00:01", "2025-01-01"),
            (Unit::Week, "2024-12-31", "2025-01-06"),
            (Unit::Week, "2025-01-06", "2025-01-06"),
            (Unit::Month, "2024-02-15", "2024-03-01"),
            (Unit::Month, "2024-12-02", "2025-01-01"),
            (Unit::Month, "2024-03-01", "2024-03-01"),
            (Unit::Year, "2024-12-31T01:00", "2025-01-01"),
            (Unit::Year, "2025-01-01", "2025-01-01"),
        ];
        for (unit, input, expected) in cases {
            assert_eq!(unit.ceil(p(input)), p(expected), "{unit} ceil of {input}");
        }
    }

    #[test]
    fn add_table() {
        let cases = [
            (Unit::Hour, "2025-03-01T23:00", 2, "2025-03-02T01:00"),
            (Unit::Hour, "2025-01-01", -1, "2024-12-31T23:00"),
            (Unit::Day, "2024-02-28", 1, "2024-02-29"),
            (Unit::Day, "2023-02-28", 1, "2023-03-01"),
            (Unit::Day, "2024-12-31", 1, "2025-01-01"),
            (Unit::Week, "2024-12-30", 1, "2025-01-06"),
            (Unit::Week, "2025-01-06", -2, "2024-12-23"),
            (Unit::Month, "2024-01-01", 1, "2024-02-01"),
            (Unit::Month, "2024-12-01", 1, "2025-01-01"),
            (Unit::Month, "2025-01-01", -1, "2024-12-01"),
            (Unit::Month, "2024-01-01", 26, "2026-03-01"),
            (Unit::Year, "2024-01-01", 1, "2025-01-01"),
            (Unit::Year, "2024-01-01", -25, "1999-01-01"),
            // Unaligned months and years clamp the day and keep the time.
            (Unit::Month, "2024-01-31T10:00", 1, "2024-02-29T10:00"),
            (Unit::Month, "2023-01-31", 1, "2023-02-28"),
            (Unit::Year, "2024-02-29", 1, "2025-02-28"),
        ];
        for (unit, input, n, expected) in cases {
            assert_eq!(unit.add(p(input), n), p(expected), "{input} + {n} {unit}");
        }
    }

    #[test]
    fn add_saturates_instead_of_panicking() {
        let t = d(2025, 1, 1);
        for unit in Unit::ALL {
            assert_eq!(unit.checked_add(t, i64::MAX), None, "{unit}");
            assert_eq!(unit.checked_add(t, i64::MIN), None, "{unit}");
            assert_eq!(unit.add(t, i64::MAX), NaiveDateTime::MAX, "{unit}");
            assert_eq!(unit.add(t, i64::MIN), NaiveDateTime::MIN, "{unit}");
        }
        // Units near the ends of chrono's range do not panic either.
        for unit in Unit::ALL {
            let _ = unit.ceil(NaiveDateTime::MAX);
            let _ = unit.floor(NaiveDateTime::MIN);
            let _ = Interval::unit_at(unit, NaiveDateTime::MAX);
        }
    }

    #[test]
    fn is_aligned_table() {
        let cases = [
            (Unit::Hour, "2025-03-01T13:00", true),
            (Unit::Hour, "2025-03-01T13:00:01", false),
            (Unit::Day, "2025-03-01", true),
            (Unit::Day, "2025-03-01T01:00", false),
            (Unit::Week, "2024-12-30", true),
            (Unit::Week, "2025-01-01", false),
            (Unit::Month, "2025-03-01", true),
            (Unit::Month, "2025-03-02", false),
            (Unit::Year, "2025-01-01", true),
            (Unit::Year, "2025-02-01", false),
        ];
        for (unit, input, expected) in cases {
            assert_eq!(unit.is_aligned(p(input)), expected, "{unit} {input}");
        }
    }

    #[test]
    fn count_between_table() {
        let cases = [
            (Unit::Hour, "2025-03-01T22:00", "2025-03-02T02:00", 4),
            (Unit::Day, "2024-02-01", "2024-03-01", 29),
            (Unit::Day, "2023-02-01", "2023-03-01", 28),
            (Unit::Day, "2024-01-01", "2025-01-01", 366),
            (Unit::Week, "2024-12-30", "2025-01-13", 2),
            (Unit::Month, "2024-11-01", "2025-02-01", 3),
            (Unit::Year, "2020-01-01", "2025-01-01", 5),
            (Unit::Month, "2025-03-01", "2025-03-01", 0),
            (Unit::Month, "2025-03-01", "2025-01-01", -2),
            // Unaligned: boundaries crossed in (a, b].
            (Unit::Day, "2025-03-01T12:00", "2025-03-02T01:00", 1),
            (Unit::Month, "2025-03-15", "2025-04-01", 1),
            (Unit::Week, "2025-01-01", "2025-01-05", 0),
        ];
        for (unit, a, b, expected) in cases {
            assert_eq!(unit.count_between(p(a), p(b)), expected, "{unit} {a}..{b}");
        }
    }

    #[test]
    fn unit_text_forms() {
        for unit in Unit::ALL {
            assert_eq!(unit.to_string().parse::<Unit>(), Ok(unit));
            let json = serde_json::to_string(&unit).unwrap();
            assert_eq!(json, format!("\"{unit}\""));
            assert_eq!(serde_json::from_str::<Unit>(&json).unwrap(), unit);
        }
        assert_eq!(" Month ".parse::<Unit>(), Ok(Unit::Month));
        let err = "days".parse::<Unit>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown time unit `days`: expected one of hour, day, week, month, year"
        );
        assert!(serde_json::from_str::<Unit>("\"Day\"").is_err());
    }

    // --- Points and intervals -----------------------------------------------

    #[test]
    fn parse_point_table() {
        let cases = [
            ("2025-03-01", h(2025, 3, 1, 0)),
            ("2025-03-01T13:00:00", h(2025, 3, 1, 13)),
            ("2025-03-01 13:00:00", h(2025, 3, 1, 13)),
            ("2025-03-01T13:00", h(2025, 3, 1, 13)),
            ("2025-03-01T13:00:00Z", h(2025, 3, 1, 13)),
            (" 2025-03-01 ", h(2025, 3, 1, 0)),
        ];
        for (input, expected) in cases {
            assert_eq!(parse_point(input), Ok(expected), "{input}");
        }
        for bad in [
            "",
            "2025-02-30",
            "2025-13-01",
            "yesterday",
            "2025-03-01T25:00",
        ] {
            assert_eq!(
                parse_point(bad),
                Err(IntervalError::InvalidPoint {
                    input: bad.to_string()
                })
            );
        }
    }

    #[test]
    fn format_point_table() {
        assert_eq!(format_point(d(2025, 3, 1)), "2025-03-01");
        assert_eq!(format_point(h(2025, 3, 1, 13)), "2025-03-01T13:00:00");
        let frac = h(2025, 3, 1, 0) + TimeDelta::milliseconds(500);
        assert_eq!(format_point(frac), "2025-03-01T00:00:00.500");
        assert_eq!(parse_point(&format_point(frac)), Ok(frac));
    }

    #[test]
    fn interval_new_rejects_empty() {
        assert!(Interval::new(d(2025, 3, 1), d(2025, 3, 2)).is_ok());
        let err = Interval::new(d(2025, 3, 1), d(2025, 3, 1)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "empty interval: start 2025-03-01 is not before end 2025-03-01 \
             (intervals are half-open [start, end))"
        );
        assert!(Interval::new(d(2025, 4, 1), d(2025, 3, 1)).is_err());
        assert!(Interval::parse("2025-04-01", "2025-03-01").is_err());
    }

    #[test]
    fn interval_text_forms() {
        let march = iv("2025-03-01", "2025-04-01");
        assert_eq!(march.to_string(), "2025-03-01..2025-04-01");
        assert_eq!(
            serde_json::to_string(&march).unwrap(),
            r#"["2025-03-01","2025-04-01"]"#
        );
        // One end off midnight writes both as timestamps.
        let evening = Interval::new(h(2025, 3, 1, 22), d(2025, 3, 2)).unwrap();
        assert_eq!(
            evening.to_string(),
            "2025-03-01T22:00:00..2025-03-02T00:00:00"
        );
        assert_eq!(
            serde_json::to_string(&evening).unwrap(),
            r#"["2025-03-01T22:00:00","2025-03-02T00:00:00"]"#
        );
        for interval in [march, evening] {
            assert_eq!(interval.to_string().parse::<Interval>(), Ok(interval));
            let json = serde_json::to_string(&interval).unwrap();
            assert_eq!(serde_json::from_str::<Interval>(&json).unwrap(), interval);
        }
        assert!(matches!(
            "2025-03-01".parse::<Interval>(),
            Err(IntervalError::InvalidInterval { .. })
        ));
        assert!(serde_json::from_str::<Interval>(r#"["2025-04-01","2025-03-01"]"#).is_err());
        assert!(serde_json::from_str::<Interval>(r#"["2025-04-01"]"#).is_err());
    }

    #[test]
    fn interval_helpers() {
        let march = iv("2025-03-01", "2025-04-01");
        assert!(march.contains_point(d(2025, 3, 1)));
        assert!(march.contains_point(h(2025, 3, 31, 23)));
        assert!(!march.contains_point(d(2025, 4, 1)));
        assert_eq!(
            march.intersect(&iv("2025-03-20", "2025-05-01")),
            Some(iv("2025-03-20", "2025-04-01"))
        );
        assert_eq!(march.intersect(&iv("2025-04-01", "2025-05-01")), None);
        assert!(march.is_aligned(Unit::Month));
        assert!(!march.is_aligned(Unit::Week));
        assert_eq!(
            Interval::unit_at(Unit::Week, d(2025, 1, 1)),
            iv("2024-12-30", "2025-01-06")
        );
    }

    // --- IntervalSet ----------------------------------------------------------

    #[test]
    fn from_intervals_sorts_and_merges_overlapping_and_adjacent() {
        let s = set(&[
            ("2025-05-01", "2025-05-03"),
            ("2025-03-10", "2025-04-01"),
            ("2025-03-01", "2025-03-10"), // adjacent
            ("2025-03-05", "2025-03-20"), // overlapping
            ("2025-05-02", "2025-05-03"), // inside
        ]);
        assert_eq!(
            s.intervals(),
            &[
                iv("2025-03-01", "2025-04-01"),
                iv("2025-05-01", "2025-05-03")
            ]
        );
        assert_eq!(s.len(), 2);
        assert_eq!(
            s.to_string(),
            "2025-03-01..2025-04-01, 2025-05-01..2025-05-03"
        );
        assert_eq!(s.span(), Some(iv("2025-03-01", "2025-05-03")));
        assert_eq!(s.iter().count(), 2);
        assert_eq!(IntervalSet::new().to_string(), "(empty)");
        assert!(IntervalSet::new().is_empty());
        assert_eq!(IntervalSet::new().span(), None);
    }

    #[test]
    fn set_operations() {
        let a = set(&[("2025-01-01", "2025-01-10"), ("2025-01-20", "2025-01-31")]);
        let b = set(&[("2025-01-05", "2025-01-25")]);
        assert_eq!(a.union(&b), set(&[("2025-01-01", "2025-01-31")]));
        assert_eq!(
            a.intersect(&b),
            set(&[("2025-01-05", "2025-01-10"), ("2025-01-20", "2025-01-25")])
        );
        assert_eq!(
            a.subtract(&b),
            set(&[("2025-01-01", "2025-01-05"), ("2025-01-25", "2025-01-31")])
        );
        assert_eq!(b.subtract(&a), set(&[("2025-01-10", "2025-01-20")]));
        assert_eq!(a.subtract(&a), IntervalSet::new());
        assert_eq!(a.union(&IntervalSet::new()), a);
        assert_eq!(a.intersect(&IntervalSet::new()), IntervalSet::new());
        // Adjacent sets union into one interval.
        let c = set(&[("2025-01-10", "2025-01-20")]);
        assert_eq!(a.union(&c), set(&[("2025-01-01", "2025-01-31")]));
        // One hole splitting an interval, across midnight on an hour grid.
        let day = set(&[("2025-03-01T20:00", "2025-03-02T06:00")]);
        let hole = set(&[("2025-03-01T23:00", "2025-03-02T01:00")]);
        assert_eq!(
            day.subtract(&hole).to_string(),
            "2025-03-01T20:00:00..2025-03-01T23:00:00, 2025-03-02T01:00:00..2025-03-02T06:00:00"
        );
    }

    #[test]
    fn contains_point_and_covers_at_boundaries() {
        let s = set(&[("2025-01-01", "2025-01-10"), ("2025-01-20", "2025-01-31")]);
        assert!(s.contains_point(d(2025, 1, 1)));
        assert!(!s.contains_point(d(2025, 1, 10)));
        assert!(s.contains_point(h(2025, 1, 9, 23)));
        assert!(!s.contains_point(d(2024, 12, 31)));
        assert!(s.contains_point(d(2025, 1, 20)));
        assert!(!s.contains_point(d(2025, 1, 31)));
        assert!(s.covers(&iv("2025-01-01", "2025-01-10")));
        assert!(s.covers(&iv("2025-01-21", "2025-01-22")));
        assert!(!s.covers(&iv("2025-01-09", "2025-01-21")));
        assert!(!s.covers(&iv("2025-01-10", "2025-01-11")));
        assert!(!s.covers(&iv("2024-12-31", "2025-01-02")));
        assert!(!IntervalSet::new().covers(&iv("2025-01-01", "2025-01-02")));
    }

    #[test]
    fn clamp_and_gaps_within() {
        let built = set(&[("2025-01-01", "2025-01-10"), ("2025-01-20", "2025-02-05")]);
        let january = iv("2025-01-01", "2025-02-01");
        assert_eq!(
            built.clamp(&january),
            set(&[("2025-01-01", "2025-01-10"), ("2025-01-20", "2025-02-01")])
        );
        assert_eq!(
            built.gaps_within(&january),
            set(&[("2025-01-10", "2025-01-20")])
        );
        assert_eq!(
            IntervalSet::new().gaps_within(&january),
            IntervalSet::single(january)
        );
        assert_eq!(
            built.gaps_within(&iv("2025-01-02", "2025-01-05")),
            IntervalSet::new()
        );
    }

    #[test]
    fn align_outward_table() {
        let cases = [
            // A stale day makes its month stale; a leap day is in February.
            (
                Unit::Month,
                set(&[("2024-02-29", "2024-03-01")]),
                "2024-02-01..2024-03-01",
            ),
            // Two days in one month collapse to that month once.
            (
                Unit::Month,
                set(&[("2025-03-02", "2025-03-03"), ("2025-03-20", "2025-03-21")]),
                "2025-03-01..2025-04-01",
            ),
            // An ISO week across New Year.
            (
                Unit::Week,
                set(&[("2025-01-01", "2025-01-02")]),
                "2024-12-30..2025-01-06",
            ),
            // Hours across midnight make both days stale.
            (
                Unit::Day,
                set(&[("2025-03-01T23:00", "2025-03-02T01:00")]),
                "2025-03-01..2025-03-03",
            ),
            (
                Unit::Year,
                set(&[("2024-12-31", "2025-01-02")]),
                "2024-01-01..2026-01-01",
            ),
            // Already aligned: unchanged.
            (
                Unit::Day,
                set(&[("2025-03-01", "2025-03-05")]),
                "2025-03-01..2025-03-05",
            ),
        ];
        for (unit, input, expected) in cases {
            assert_eq!(
                input.align_outward(unit).to_string(),
                expected,
                "{unit} {input}"
            );
        }
    }

    #[test]
    fn extend_end_table() {
        let stale = set(&[("2025-03-01", "2025-03-02")]);
        // window = 7: the child's days up to 6 days later read the stale day.
        assert_eq!(
            stale.extend_end(Unit::Day, 7),
            set(&[("2025-03-01", "2025-03-08")])
        );
        assert_eq!(stale.extend_end(Unit::Day, 1), stale);
        assert_eq!(stale.extend_end(Unit::Day, 0), stale);
        // Extended ranges that meet merge.
        let two = set(&[("2025-03-01", "2025-03-02"), ("2025-03-05", "2025-03-06")]);
        assert_eq!(
            two.extend_end(Unit::Day, 4),
            set(&[("2025-03-01", "2025-03-09")])
        );
        // Months across a year end, and hours across midnight.
        assert_eq!(
            set(&[("2025-11-01", "2025-12-01")]).extend_end(Unit::Month, 3),
            set(&[("2025-11-01", "2026-02-01")])
        );
        assert_eq!(
            set(&[("2025-03-01T22:00", "2025-03-01T23:00")]).extend_end(Unit::Hour, 3),
            set(&[("2025-03-01T22:00", "2025-03-02T01:00")])
        );
    }

    #[test]
    fn units_table() {
        let days: Vec<String> = set(&[("2024-02-28", "2024-03-02")])
            .units(Unit::Day)
            .map(|u| u.to_string())
            .collect();
        assert_eq!(
            days,
            [
                "2024-02-28..2024-02-29",
                "2024-02-29..2024-03-01",
                "2024-03-01..2024-03-02",
            ]
        );
        let hours: Vec<String> = set(&[("2025-03-01T23:00", "2025-03-02T01:00")])
            .units(Unit::Hour)
            .map(|u| u.to_string())
            .collect();
        assert_eq!(
            hours,
            [
                "2025-03-01T23:00:00..2025-03-02T00:00:00",
                "2025-03-02T00:00:00..2025-03-02T01:00:00",
            ]
        );
        let weeks: Vec<Interval> = set(&[("2024-12-31", "2025-01-07")])
            .units(Unit::Week)
            .collect();
        assert_eq!(
            weeks,
            [
                iv("2024-12-30", "2025-01-06"),
                iv("2025-01-06", "2025-01-13")
            ]
        );
        // Unaligned input is aligned first; a month touched twice comes once.
        let months: Vec<Interval> =
            set(&[("2025-03-02", "2025-03-03"), ("2025-03-20", "2025-04-02")])
                .units(Unit::Month)
                .collect();
        assert_eq!(
            months,
            [
                iv("2025-03-01", "2025-04-01"),
                iv("2025-04-01", "2025-05-01")
            ]
        );
        assert_eq!(IntervalSet::new().units(Unit::Day).count(), 0);
    }

    #[test]
    fn batches_table() {
        // 40 days with batch 31: 31 days, then 9.
        let forty = set(&[("2025-01-01", "2025-02-10")]);
        assert_eq!(
            forty.batches(Unit::Day, 31),
            [
                iv("2025-01-01", "2025-02-01"),
                iv("2025-02-01", "2025-02-10")
            ]
        );
        // Never across a gap.
        let split = set(&[("2025-01-01", "2025-01-04"), ("2025-01-05", "2025-01-07")]);
        assert_eq!(
            split.batches(Unit::Day, 10),
            [
                iv("2025-01-01", "2025-01-04"),
                iv("2025-01-05", "2025-01-07")
            ]
        );
        // Months across a year end.
        assert_eq!(
            set(&[("2024-11-01", "2025-03-01")]).batches(Unit::Month, 3),
            [
                iv("2024-11-01", "2025-02-01"),
                iv("2025-02-01", "2025-03-01")
            ]
        );
        // batch 0 counts as 1; unaligned input is aligned first.
        assert_eq!(
            set(&[("2025-01-01T12:00", "2025-01-02T12:00")]).batches(Unit::Day, 0),
            [
                iv("2025-01-01", "2025-01-02"),
                iv("2025-01-02", "2025-01-03")
            ]
        );
        assert!(IntervalSet::new().batches(Unit::Day, 7).is_empty());
    }

    #[test]
    fn expected_and_last_complete() {
        let now = p("2024-04-10T15:30");
        assert_eq!(last_complete(now, Unit::Month), d(2024, 4, 1));
        assert_eq!(last_complete(now, Unit::Day), d(2024, 4, 10));
        assert_eq!(last_complete(now, Unit::Hour), h(2024, 4, 10, 15));
        assert_eq!(
            expected(
                p("2024-01-15"),
                last_complete(now, Unit::Month),
                Unit::Month
            ),
            set(&[("2024-01-01", "2024-04-01")])
        );
        assert_eq!(
            expected(p("2024-01-01"), now, Unit::Day),
            set(&[("2024-01-01", "2024-04-10")])
        );
        assert_eq!(
            expected(p("2024-12-31T22:00"), p("2025-01-01T01:30"), Unit::Hour).to_string(),
            "2024-12-31T22:00:00..2025-01-01T01:00:00"
        );
        // No complete unit yet, or start after end: empty.
        assert!(expected(p("2024-04-02"), now, Unit::Month).is_empty());
        assert!(expected(p("2025-01-01"), now, Unit::Day).is_empty());
    }

    #[test]
    fn count_units_table() {
        let s = set(&[("2024-02-01", "2024-03-01"), ("2024-12-30", "2025-01-02")]);
        assert_eq!(s.count_units(Unit::Day), 29 + 3);
        assert_eq!(s.count_units(Unit::Month), 3);
        assert_eq!(s.count_units(Unit::Year), 2);
        assert_eq!(IntervalSet::new().count_units(Unit::Hour), 0);
    }

    #[test]
    fn set_serde() {
        let s = set(&[("2025-03-01", "2025-04-01"), ("2025-05-01", "2025-05-03")]);
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(
            json,
            r#"[["2025-03-01","2025-04-01"],["2025-05-01","2025-05-03"]]"#
        );
        assert_eq!(serde_json::from_str::<IntervalSet>(&json).unwrap(), s);
        // Unsorted, overlapping input is merged on the way in.
        let messy = r#"[["2025-05-01","2025-05-03"],["2025-03-01","2025-03-20"],["2025-03-10","2025-04-01"]]"#;
        assert_eq!(serde_json::from_str::<IntervalSet>(messy).unwrap(), s);
        assert!(serde_json::from_str::<IntervalSet>(r#"[["2025-04-01","2025-03-01"]]"#).is_err());
        assert_eq!(serde_json::to_string(&IntervalSet::new()).unwrap(), "[]");
    }

    // --- Properties -------------------------------------------------------------

    /// A grid of points `base + k * step`; sets built on it break only at grid points.
    #[derive(Debug, Clone, Copy)]
    struct Grid {
        base: NaiveDateTime,
        step: TimeDelta,
    }

    const GRID_POINTS: i64 = 120;

    impl Grid {
        fn at(self, k: i64) -> NaiveDateTime {
            self.base + self.step * i32::try_from(k).unwrap()
        }

        /// Membership of each grid cell `[at(k), at(k + 1))`, which is all a grid set can vary on.
        fn cells(self, s: &IntervalSet) -> Vec<bool> {
            (0..GRID_POINTS)
                .map(|k| s.contains_point(self.at(k)))
                .collect()
        }
    }

    fn grids() -> impl Strategy<Value = Grid> {
        prop_oneof![
            // Days around a year end and through a leap February.
            Just(Grid {
                base: d(2023, 12, 20),
                step: TimeDelta::days(1)
            }),
            // Hours across midnights and a year end.
            Just(Grid {
                base: h(2024, 12, 30, 18),
                step: TimeDelta::hours(1)
            }),
        ]
    }

    fn set_on(grid: Grid) -> impl Strategy<Value = IntervalSet> {
        prop::collection::vec((0..GRID_POINTS - 20, 1i64..20), 0..6).prop_map(move |pairs| {
            IntervalSet::from_intervals(
                pairs
                    .into_iter()
                    .map(|(k, len)| Interval::new(grid.at(k), grid.at(k + len)).unwrap()),
            )
        })
    }

    fn three_sets() -> impl Strategy<Value = (Grid, IntervalSet, IntervalSet, IntervalSet)> {
        grids().prop_flat_map(|g| (Just(g), set_on(g), set_on(g), set_on(g)))
    }

    fn units() -> impl Strategy<Value = Unit> {
        prop::sample::select(Unit::ALL.to_vec())
    }

    fn assert_normalized(s: &IntervalSet) {
        for pair in s.intervals().windows(2) {
            assert!(pair[0].end() < pair[1].start(), "not merged: {s}");
        }
        for interval in s.iter() {
            assert!(interval.start() < interval.end());
        }
    }

    fn is_subset(a: &IntervalSet, b: &IntervalSet) -> bool {
        a.subtract(b).is_empty()
    }

    proptest! {
        #[test]
        fn prop_set_ops_match_pointwise_model((g, a, b, _c) in three_sets()) {
            let (ca, cb) = (g.cells(&a), g.cells(&b));
            let zip = |f: fn(bool, bool) -> bool| -> Vec<bool> {
                ca.iter().zip(&cb).map(|(x, y)| f(*x, *y)).collect()
            };
            prop_assert_eq!(g.cells(&a.union(&b)), zip(|x, y| x || y));
            prop_assert_eq!(g.cells(&a.intersect(&b)), zip(|x, y| x && y));
            prop_assert_eq!(g.cells(&a.subtract(&b)), zip(|x, y| x && !y));
            for s in [a.union(&b), a.intersect(&b), a.subtract(&b)] {
                assert_normalized(&s);
            }
        }

        #[test]
        fn prop_set_laws((_g, a, b, c) in three_sets()) {
            let diff = a.subtract(&b);
            prop_assert!(diff.intersect(&b).is_empty());
            prop_assert_eq!(diff.union(&a.intersect(&b)), a.clone());
            prop_assert_eq!(a.union(&b), b.union(&a));
            prop_assert_eq!(a.intersect(&b), b.intersect(&a));
            prop_assert_eq!(a.union(&b).union(&c), a.union(&b.union(&c)));
            prop_assert_eq!(a.intersect(&b).intersect(&c), a.intersect(&b.intersect(&c)));
            prop_assert_eq!(a.union(&a), a.clone());
            // Rebuilding from the merged intervals changes nothing.
            prop_assert_eq!(IntervalSet::from_intervals(a.iter().copied()), a.clone());
        }

        #[test]
        fn prop_contains_and_covers_agree((g, a, _b, _c) in three_sets(), k in 0..GRID_POINTS - 1, len in 1i64..10) {
            let range = Interval::new(g.at(k), g.at((k + len).min(GRID_POINTS))).unwrap();
            let all_in = (k..(k + len).min(GRID_POINTS)).all(|i| a.contains_point(g.at(i)));
            prop_assert_eq!(a.covers(&range), all_in);
            let gaps = a.gaps_within(&range);
            prop_assert!(gaps.intersect(&a).is_empty());
            prop_assert_eq!(gaps.union(&a.clamp(&range)), IntervalSet::single(range));
        }

        #[test]
        fn prop_align_outward_is_smallest_aligned_superset((_g, a, _b, _c) in three_sets(), unit in units()) {
            let aligned = a.align_outward(unit);
            assert_normalized(&aligned);
            prop_assert!(aligned.is_aligned(unit));
            prop_assert!(is_subset(&a, &aligned));
            // Minimal: every unit it holds touches the input.
            for u in aligned.units(unit) {
                prop_assert!(!a.clamp(&u).is_empty(), "{} adds the untouched unit {}", aligned, u);
            }
            prop_assert_eq!(aligned.align_outward(unit), aligned.clone());
            prop_assert_eq!(aligned.count_units(unit), i64::try_from(aligned.units(unit).count()).unwrap());
        }

        #[test]
        fn prop_batches_cover_exactly((_g, a, _b, _c) in three_sets(), unit in units(), batch in 0u32..8) {
            let aligned = a.align_outward(unit);
            let batches = a.batches(unit, batch);
            prop_assert_eq!(IntervalSet::from_intervals(batches.iter().copied()), aligned.clone());
            for pair in batches.windows(2) {
                prop_assert!(pair[0].end() <= pair[1].start());
            }
            for chunk in &batches {
                prop_assert!(chunk.is_aligned(unit));
                let n = unit.count_between(chunk.start(), chunk.end());
                prop_assert!((1..=i64::from(batch.max(1))).contains(&n));
                prop_assert!(aligned.covers(chunk));
            }
        }

        #[test]
        fn prop_extend_end_monotone_and_contains((_g, a, b, _c) in three_sets(), unit in units(), n in 0u32..5, m in 0u32..5) {
            let bigger = a.union(&b);
            let ext = a.extend_end(unit, n);
            assert_normalized(&ext);
            prop_assert!(is_subset(&a, &ext));
            prop_assert!(is_subset(&ext, &bigger.extend_end(unit, n)));
            let (lo, hi) = (n.min(m), n.max(m));
            prop_assert!(is_subset(&a.extend_end(unit, lo), &a.extend_end(unit, hi)));
            // Starts never move.
            prop_assert_eq!(ext.iter().next().map(Interval::start), a.iter().next().map(Interval::start));
        }

        #[test]
        fn prop_serde_and_text_round_trip((_g, a, _b, _c) in three_sets()) {
            let json = serde_json::to_string(&a).unwrap();
            prop_assert_eq!(serde_json::from_str::<IntervalSet>(&json).unwrap(), a.clone());
            for interval in a.iter() {
                prop_assert_eq!(interval.to_string().parse::<Interval>().unwrap(), *interval);
            }
        }

        #[test]
        fn prop_add_count_between_inverse(unit in units(), k in -500i64..500, n in -500i64..500) {
            let a = unit.add(unit.floor(d(2024, 2, 29)), k);
            let b = unit.add(a, n);
            prop_assert!(unit.is_aligned(a) && unit.is_aligned(b));
            prop_assert_eq!(unit.count_between(a, b), n);
            prop_assert_eq!(unit.add(b, -n), a);
        }

        #[test]
        fn prop_floor_ceil_bracket(unit in units(), minutes in 0i64..(60 * 24 * 800)) {
            let t = h(2023, 12, 1, 0) + TimeDelta::minutes(minutes);
            let (lo, hi) = (unit.floor(t), unit.ceil(t));
            prop_assert!(lo <= t && t <= hi);
            prop_assert!(unit.is_aligned(lo) && unit.is_aligned(hi));
            prop_assert!(unit.count_between(lo, hi) <= 1);
            prop_assert!(Interval::unit_at(unit, t).contains_point(t));
        }
    }
}
