//! Periods: the calendar periods roll-ups are kept for (`PeriodKind`) and a query's days (`DayRange`).

use time::{Date, Duration, Month};

/// The earliest and latest days a query reads when a period is open-ended.
pub const FIRST_DAY: Date = time::macros::date!(1900 - 01 - 01);
pub const LAST_DAY: Date = time::macros::date!(2200 - 01 - 01);

/// The calendar periods roll-ups are kept for. Weeks are ISO weeks, starting on Monday.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PeriodKind {
    Day,
    Week,
    Month,
    Quarter,
    Year,
}

impl PeriodKind {
    pub const ALL: [PeriodKind; 5] =
        [PeriodKind::Day, PeriodKind::Week, PeriodKind::Month, PeriodKind::Quarter, PeriodKind::Year];

    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            PeriodKind::Day => "day",
            PeriodKind::Week => "week",
            PeriodKind::Month => "month",
            PeriodKind::Quarter => "quarter",
            PeriodKind::Year => "year",
        }
    }

    #[must_use]
    pub fn parse(text: &str) -> Option<PeriodKind> {
        PeriodKind::ALL.into_iter().find(|kind| kind.as_str() == text)
    }

    /// The first day of the period of this kind that holds `day`.
    #[must_use]
    pub fn start_of(self, day: Date) -> Date {
        let month_start = |month: Month| Date::from_calendar_date(day.year(), month, 1).unwrap_or(day);
        match self {
            PeriodKind::Day => day,
            PeriodKind::Week => day - Duration::days(i64::from(day.weekday().number_days_from_monday())),
            PeriodKind::Month => month_start(day.month()),
            PeriodKind::Quarter => {
                let first_month = (u8::from(day.month()) - 1) / 3 * 3 + 1;
                month_start(Month::try_from(first_month).unwrap_or(Month::January))
            }
            PeriodKind::Year => month_start(Month::January),
        }
    }

    /// The first day after the period that starts on `start`.
    #[must_use]
    pub fn end_of(self, start: Date) -> Date {
        let add_months = |months: u8| {
            let index = i32::from(u8::from(start.month()) - 1) + i32::from(months);
            let month = Month::try_from(u8::try_from(index % 12 + 1).unwrap_or(1)).unwrap_or(Month::January);
            Date::from_calendar_date(start.year() + index / 12, month, 1).unwrap_or(Date::MAX)
        };
        match self {
            PeriodKind::Day => start.next_day().unwrap_or(Date::MAX),
            PeriodKind::Week => start.checked_add(Duration::days(7)).unwrap_or(Date::MAX),
            PeriodKind::Month => add_months(1),
            PeriodKind::Quarter => add_months(3),
            PeriodKind::Year => add_months(12),
        }
    }
}

/// A period of whole days: `from` inclusive, `to` exclusive; `None` is unbounded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DayRange {
    pub from: Option<Date>,
    pub to: Option<Date>,
}

impl DayRange {
    /// The days to read, with open ends running to the earliest and latest days the roll-ups can hold.
    #[must_use]
    pub fn bounds(self) -> (Date, Date) {
        (self.from.unwrap_or(FIRST_DAY), self.to.unwrap_or(LAST_DAY))
    }

    /// The same number of days just before this period (for "change against the previous period"); `None` for an
    /// open period, or one whose previous period would start before the calendar does.
    #[must_use]
    pub fn previous(self) -> Option<DayRange> {
        let (from, to) = (self.from?, self.to?);
        Some(DayRange { from: Some(from.checked_sub(to - from)?), to: Some(from) })
    }

    /// The period an analyst compares this one with: when it is exactly one calendar month, quarter or year, the one
    /// of that kind just before it (September against August, not against the 30 days before September); otherwise
    /// the same number of days just before (`previous`).
    #[must_use]
    pub fn comparable_previous(self) -> Option<DayRange> {
        let (from, to) = (self.from?, self.to?);
        let whole = [PeriodKind::Year, PeriodKind::Quarter, PeriodKind::Month]
            .into_iter()
            .find(|kind| kind.start_of(from) == from && kind.end_of(from) == to);
        match whole {
            Some(kind) => {
                let start = kind.start_of(from.previous_day()?);
                (start >= FIRST_DAY).then_some(DayRange { from: Some(start), to: Some(from) })
            }
            None => self.previous(),
        }
    }
}

/// A day written exactly `YYYY-MM-DD` (no week dates, no ordinal dates, no basic format, no time, no sign), between
/// `FIRST_DAY` and `LAST_DAY`; `key` names the parameter in the message that refuses anything else.
///
/// # Errors
/// A message naming `key` and saying what is wrong.
pub fn parse_day(key: &str, value: &str) -> Result<Date, String> {
    let not_a_day = || format!("{key}={} is not a date written YYYY-MM-DD", crate::domain::shown(value));
    let bytes = value.as_bytes();
    let shaped = bytes.len() == 10
        && bytes[4] == b'-'
        && bytes[7] == b'-'
        && bytes.iter().enumerate().all(|(index, byte)| index == 4 || index == 7 || byte.is_ascii_digit());
    if !shaped {
        return Err(not_a_day());
    }
    // The shape check leaves only ASCII digits in these slices, so they parse.
    let number = |range: std::ops::Range<usize>| value[range].parse::<u16>().map_err(|_| not_a_day());
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let month = u8::try_from(month).ok().and_then(|month| time::Month::try_from(month).ok()).ok_or_else(not_a_day)?;
    let day = u8::try_from(day).map_err(|_| not_a_day())?;
    let date = Date::from_calendar_date(i32::from(year), month, day)
        .map_err(|_| format!("{key}={} is not a day of the calendar", crate::domain::shown(value)))?;
    if !(FIRST_DAY..=LAST_DAY).contains(&date) {
        return Err(format!("{key}={date} is out of range: dates run from {FIRST_DAY} to {LAST_DAY}"));
    }
    Ok(date)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    fn days(from: Date, to: Date) -> DayRange {
        DayRange { from: Some(from), to: Some(to) }
    }

    #[test]
    fn a_calendar_period_is_compared_with_the_one_before_it_of_its_kind() {
        // March (31 days) against February (28), not against the 31 days before March.
        assert_eq!(
            days(date!(2026 - 03 - 01), date!(2026 - 04 - 01)).comparable_previous(),
            Some(days(date!(2026 - 02 - 01), date!(2026 - 03 - 01)))
        );
        assert_eq!(
            days(date!(2026 - 01 - 01), date!(2026 - 02 - 01)).comparable_previous(),
            Some(days(date!(2025 - 12 - 01), date!(2026 - 01 - 01)))
        );
        assert_eq!(
            days(date!(2026 - 04 - 01), date!(2026 - 07 - 01)).comparable_previous(),
            Some(days(date!(2026 - 01 - 01), date!(2026 - 04 - 01)))
        );
        assert_eq!(
            days(date!(2026 - 01 - 01), date!(2027 - 01 - 01)).comparable_previous(),
            Some(days(date!(2025 - 01 - 01), date!(2026 - 01 - 01)))
        );
        // Any other run of days: the same number of days just before.
        assert_eq!(
            days(date!(2026 - 03 - 10), date!(2026 - 03 - 20)).comparable_previous(),
            Some(days(date!(2026 - 02 - 28), date!(2026 - 03 - 10)))
        );
        assert_eq!(DayRange { from: None, to: Some(date!(2026 - 03 - 20)) }.comparable_previous(), None);
        assert_eq!(days(FIRST_DAY, date!(1900 - 02 - 01)).comparable_previous(), None, "nothing before the calendar");
    }
}
