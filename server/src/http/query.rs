//! The query strings of the analyst API (docs/geotagging.md, "Query parameters"). A query is
//! `application/x-www-form-urlencoded`: names and values are percent-decoded (`+` is a space), each parameter may be
//! given once, and dates are strictly `YYYY-MM-DD` between `EARLIEST_DAY` and `LATEST_DAY`. Anything else is refused
//! with `422 invalid_query` and a message naming the parameter, never read as a silent default.

use axum::http::StatusCode;
use grapevine_sync_proto::ErrorCode;
use time::Date;
#[cfg(test)]
use time::Month;

use super::error::{shown, ApiError};
use crate::domain::period::{DayRange, PeriodKind, FIRST_DAY, LAST_DAY};
use crate::geo::atlas::{Atlas, Generation};

/// The earliest date a query may name. It is where an open `from` starts, so naming it reads what leaving `from` out
/// reads; the period before the widest query then starts in 1600, which both stores hold.
pub(crate) const EARLIEST_DAY: Date = FIRST_DAY;

/// The latest date a query may name (as `to`, which is exclusive): where an open `to` ends. Bounding it keeps every
/// period's end a real day, so `to` stays exclusive (the calendar cannot step past 9999-12-31, and a period running
/// to it would take its last day in).
pub(crate) const LATEST_DAY: Date = LAST_DAY;

/// The query parameters of the analyst API (each endpoint allows its own).
#[derive(Debug, Default, PartialEq)]
pub(crate) struct ApiQuery {
    pub set: Option<String>,
    pub generation: Option<i64>,
    /// `from` inclusive, `to` exclusive.
    pub days: DayRange,
    pub period: Option<PeriodKind>,
    pub area: Option<String>,
    /// The audit trail's filters: who acted, and what they did.
    pub actor: Option<String>,
    pub action: Option<String>,
    /// A CSV download starts with a byte-order mark (`bom=true`).
    pub bom: Option<bool>,
}

impl ApiQuery {
    /// Parses a raw query string (as the request has it, still percent-encoded), taking only the parameters in
    /// `allowed`.
    pub(crate) fn parse(query: Option<&str>, allowed: &[&str]) -> Result<ApiQuery, ApiError> {
        let mut parsed = ApiQuery::default();
        let mut seen: Vec<String> = Vec::new();
        // Empty pairs (`a=1&&b=2`, a trailing `&`) are skipped by the decoder, as browsers write them.
        for (key, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
            let Some(&key) = allowed.iter().find(|allowed| **allowed == key) else {
                return Err(ApiError::invalid_query(format!(
                    "unknown parameter '{}'; this endpoint takes {}",
                    shown(&key),
                    allowed.join(", ")
                )));
            };
            if seen.iter().any(|earlier| earlier == key) {
                return Err(ApiError::invalid_query(format!(
                    "{key} is given more than once; give each parameter once"
                )));
            }
            seen.push(key.to_owned());
            if value.is_empty() {
                return Err(ApiError::invalid_query(format!("{key} needs a value")));
            }
            match key {
                "from" => parsed.days.from = Some(parse_day(key, &value)?),
                "to" => parsed.days.to = Some(parse_day(key, &value)?),
                "set" => parsed.set = Some(value.into_owned()),
                "area" => parsed.area = Some(value.into_owned()),
                "actor" => parsed.actor = Some(value.into_owned()),
                "bom" => parsed.bom = Some(parse_bom(&value)?),
                "action" => parsed.action = Some(value.into_owned()),
                "generation" => {
                    let number = value
                        .bytes()
                        .all(|byte| byte.is_ascii_digit())
                        .then(|| value.parse::<i64>().ok())
                        .flatten()
                        .filter(|number| *number >= 1)
                        .ok_or_else(|| {
                            ApiError::invalid_query(format!(
                                "generation={} is not a generation number (1, 2, …)",
                                shown(&value)
                            ))
                        })?;
                    parsed.generation = Some(number);
                }
                "period" => {
                    let kind = PeriodKind::parse(&value).ok_or_else(|| {
                        ApiError::invalid_query(format!(
                            "period={} is not one of day, week, month, quarter, year",
                            shown(&value)
                        ))
                    })?;
                    parsed.period = Some(kind);
                }
                other => {
                    // A caller allowed a name this parser does not know: the server's mistake, not the client's.
                    return Err(ApiError::from(anyhow::anyhow!("the query parameter '{other}' has no parser")));
                }
            }
        }
        // An open end runs to the range's end, so a lone `from` at the end or `to` at the start leaves no days too.
        let (from, to) = parsed.days.bounds();
        if from >= to {
            let message = match (parsed.days.from, parsed.days.to) {
                (Some(_), None) => format!("from={from} leaves no days: it must be before {LATEST_DAY}"),
                (None, Some(_)) => format!("to={to} leaves no days: it must be after {EARLIEST_DAY}"),
                _ => format!(
                    "from ({from}) must be before to ({to}); to is exclusive, so one day is from=D&to=the day after"
                ),
            };
            return Err(ApiError::invalid_query(message));
        }
        Ok(parsed)
    }

    /// The generation asked for: the filing set's newest unless `set` and `generation` say otherwise.
    pub(crate) fn generation<'a>(&self, atlas: &'a Atlas) -> Result<&'a Generation, ApiError> {
        atlas.find(self.set.as_deref(), self.generation).ok_or_else(|| {
            let known: Vec<String> = atlas
                .generations()
                .iter()
                .map(|generation| format!("{} {}", generation.info.set_name, generation.info.generation))
                .collect();
            ApiError::new(
                StatusCode::NOT_FOUND,
                ErrorCode::AreaNotFound,
                format!("no such boundary set or generation; there are: {}", known.join(", ")),
            )
        })
    }
}

/// `bom=true` or `bom=false`.
pub(crate) fn parse_bom(value: &str) -> Result<bool, ApiError> {
    match value {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(ApiError::invalid_query(format!("bom={} is not true or false", shown(value)))),
    }
}

/// A day written exactly `YYYY-MM-DD`, between `EARLIEST_DAY` and `LATEST_DAY` (`period::parse_day`).
fn parse_day(key: &str, value: &str) -> Result<Date, ApiError> {
    crate::domain::period::parse_day(key, value).map_err(ApiError::invalid_query)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::rollup::tile;
    use proptest::prelude::*;
    use time::macros::date;

    const ALL: &[&str] = &["set", "generation", "from", "to", "period", "area"];

    fn refusal(query: &str) -> ApiError {
        let error = ApiQuery::parse(Some(query), ALL).unwrap_err();
        assert_eq!((error.status, error.code), (StatusCode::UNPROCESSABLE_ENTITY, ErrorCode::InvalidQuery), "{query}");
        error
    }

    #[test]
    fn queries_parse_or_say_what_is_wrong() {
        assert_eq!(ApiQuery::parse(None, ALL).unwrap(), ApiQuery::default());
        assert_eq!(ApiQuery::parse(Some(""), ALL).unwrap(), ApiQuery::default());
        let parsed =
            ApiQuery::parse(Some("from=2026-01-01&to=2026-02-01&set=wards&generation=2&period=week"), ALL).unwrap();
        assert_eq!(parsed.days, DayRange { from: Some(date!(2026 - 01 - 01)), to: Some(date!(2026 - 02 - 01)) });
        assert_eq!(
            (parsed.set.as_deref(), parsed.generation, parsed.period),
            (Some("wards"), Some(2), Some(PeriodKind::Week))
        );
        for (bad, named) in [
            ("from=2026-13-01", "from"),
            ("from=yesterday", "from"),
            ("to=", "to"),
            ("to", "to"),
            ("from=2026-02-01&to=2026-01-01", "from"),
            ("from=2026-01-01&to=2026-01-01", "to"),
            ("since=2026-01-01", "since"),
            ("generation=0", "generation"),
            ("generation=two", "generation"),
            ("generation=+2", "generation"),
            ("generation=99999999999999999999", "generation"),
            ("period=fortnight", "period"),
            ("set=", "set"),
            ("to=1900-01-01", "to=1900-01-01 leaves no days"),
            ("from=2200-01-01", "from=2200-01-01 leaves no days"),
        ] {
            let error = refusal(bad);
            assert!(error.message.contains(named), "{bad}: {}", error.message);
        }
        let error = ApiQuery::parse(Some("period=week"), &["from", "to"]).unwrap_err();
        assert!(error.message.contains("unknown parameter 'period'"), "{}", error.message);
    }

    #[test]
    fn names_and_values_are_percent_decoded() {
        let parsed = ApiQuery::parse(Some("set=police%20neighbourhoods&%61rea=E05%30%30"), ALL).unwrap();
        assert_eq!(parsed.set.as_deref(), Some("police neighbourhoods"));
        assert_eq!(parsed.area.as_deref(), Some("E0500"));
        // The form encoding's space.
        assert_eq!(
            ApiQuery::parse(Some("set=police+neighbourhoods"), ALL).unwrap().set.as_deref(),
            Some("police neighbourhoods")
        );
        let parsed = ApiQuery::parse(Some("from=2026%2D01%2D01"), ALL).unwrap();
        assert_eq!(parsed.days.from, Some(date!(2026 - 01 - 01)));
        // A literal `+` is written `%2B`, and a signed year is still not a date.
        assert!(refusal("from=%2B2026-01-01").message.contains("YYYY-MM-DD"));
    }

    #[test]
    fn a_repeated_parameter_is_refused_naming_it() {
        for (query, named) in [
            ("from=2026-01-01&from=2026-02-01", "from is given more than once"),
            ("set=wards&set=wards", "set is given more than once"),
            ("period=day&%70eriod=week", "period is given more than once"),
        ] {
            let error = refusal(query);
            assert!(error.message.contains(named), "{query}: {}", error.message);
        }
    }

    #[test]
    fn only_calendar_days_written_yyyy_mm_dd_are_dates() {
        for bad in [
            "2026-W01-1",
            "20260101",
            "2026-01-01T23:59:59Z",
            "2026-01-01T00:00",
            "2026-001",
            "+2026-01-01",
            "-2026-01-01",
            "2026-1-01",
            "２０２６-01-01",
            "2026-01-01 ",
            " 2026-01-01",
        ] {
            let error =
                refusal(&format!("from={}", form_urlencoded::byte_serialize(bad.as_bytes()).collect::<String>()));
            assert!(
                error.message.starts_with("from=") && error.message.contains("YYYY-MM-DD"),
                "{bad}: {}",
                error.message
            );
        }
        for impossible in ["2026-02-29", "2026-04-31", "2026-00-10", "2026-01-00"] {
            let error = refusal(&format!("to={impossible}"));
            assert!(error.message.contains("to="), "{impossible}: {}", error.message);
        }
        assert_eq!(ApiQuery::parse(Some("from=2028-02-29"), ALL).unwrap().days.from, Some(date!(2028 - 02 - 29)));
    }

    #[test]
    fn dates_outside_the_range_are_refused_naming_the_parameter() {
        for (query, named) in [
            ("from=0000-01-01&to=9999-12-31", "from=0000-01-01 is out of range"),
            ("from=0001-01-01", "from=0001-01-01 is out of range"),
            ("from=1899-12-31", "from=1899-12-31 is out of range"),
            ("to=9999-12-31", "to=9999-12-31 is out of range"),
            ("to=2200-01-02", "to=2200-01-02 is out of range"),
        ] {
            let error = refusal(query);
            assert!(error.message.contains(named), "{query}: {}", error.message);
            assert!(error.message.contains("1900-01-01 to 2200-01-01"), "{}", error.message);
        }
        // What the attack reached: the period before 0000-01-01..9999-12-31 would start before the calendar does,
        // which panicked; it is now no period at all, and the parser never lets such dates through anyway.
        let attack = DayRange { from: Some(date!(0000 - 01 - 01)), to: Some(date!(9999 - 12 - 31)) };
        assert_eq!(attack.previous(), None);
        // The range's ends themselves are dates a query may name, and the period before the widest one is whole.
        let widest = ApiQuery::parse(Some("from=1900-01-01&to=2200-01-01"), ALL).unwrap().days;
        assert_eq!(widest.bounds(), DayRange::default().bounds(), "naming the ends reads what leaving them out reads");
        assert_eq!(
            widest.previous(),
            Some(DayRange { from: Some(date!(1600 - 01 - 01)), to: Some(date!(1900 - 01 - 01)) })
        );
    }

    #[test]
    fn a_message_repeats_at_most_a_short_escaped_piece_of_what_was_sent() {
        let error = refusal(&format!("set=wards&{}=1", "x".repeat(500)));
        assert!(error.message.len() < 200, "{}", error.message);
        assert!(error.message.contains(&format!("'{}…'", "x".repeat(40))), "{}", error.message);
        let error = refusal("period=%1B%5B31mred%0Aline");
        assert!(!error.message.contains(['\u{1b}', '\n']), "{}", error.message);
        assert!(error.message.contains("\\u{1b}[31mred\\nline"), "{}", error.message);
    }

    /// Pieces a hostile query is built from: the names the endpoints know and some they do not, and values that are
    /// nearly dates, extreme dates, numbers and noise, each maybe percent-encoded.
    fn name() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => prop::sample::select(vec!["from", "to", "set", "generation", "period", "area"]).prop_map(str::to_owned),
            1 => prop::sample::select(vec!["token", "FROM", "", "from ", "fr%6Fm", "%FF"]).prop_map(str::to_owned),
            1 => "[a-z%]{0,8}",
        ]
    }

    fn value() -> impl Strategy<Value = String> {
        let day =
            (0u16..=9999, 0u8..=13, 0u8..=32).prop_map(|(year, month, day)| format!("{year:04}-{month:02}-{day:02}"));
        let near = prop::sample::select(vec![
            "0000-01-01",
            "0001-01-01",
            "9999-12-31",
            "1899-12-31",
            "1900-01-01",
            "2200-01-01",
            "2200-01-02",
            "2026-W01-1",
            "20260101",
            "2026-01-01T23:59:59Z",
            "+10000-01-01",
            "-0001-01-01",
            "2026-001",
        ])
        .prop_map(str::to_owned);
        let plain = prop_oneof![
            3 => day,
            3 => near,
            1 => prop::sample::select(vec!["day", "week", "month", "quarter", "year", "wards", "E05000001"]).prop_map(str::to_owned),
            1 => any::<i64>().prop_map(|number| number.to_string()),
            2 => ".{0,12}",
        ];
        (plain, any::<bool>()).prop_map(|(value, encode)| {
            if encode {
                form_urlencoded::byte_serialize(value.as_bytes()).collect()
            } else {
                value
            }
        })
    }

    fn query() -> impl Strategy<Value = String> {
        prop::collection::vec((name(), prop::option::of(value())), 0..6).prop_map(|pairs| {
            pairs
                .into_iter()
                .map(|(name, value)| match value {
                    Some(value) => format!("{name}={value}"),
                    None => name,
                })
                .collect::<Vec<_>>()
                .join("&")
        })
    }

    /// Checks what a query that parsed promises the store: dates inside the range, `from` before `to`, a previous
    /// period that exists, and a tiling of exactly `[from, to)`, so `to` is never read.
    fn assert_safe_for_the_store(parsed: &ApiQuery) {
        let (from, to) = parsed.days.bounds();
        assert!(EARLIEST_DAY <= from && from < to && to <= LATEST_DAY, "{from}..{to}");
        if parsed.days.from.is_some() && parsed.days.to.is_some() {
            let previous = parsed.days.previous().expect("a previous period");
            assert_eq!(previous.to, parsed.days.from);
            assert_eq!(to - from, previous.to.unwrap() - previous.from.unwrap());
        }
        let runs = tile(from, to);
        let mut cursor = from;
        for run in &runs {
            assert_eq!(run.first_start, cursor, "the tiling has no gap or overlap");
            cursor = run.kind.end_of(run.last_start);
            assert!(cursor > run.last_start, "a period ends after it starts");
        }
        assert_eq!(cursor, to, "the tiling ends exactly at to");
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

        #[test]
        fn any_query_string_parses_or_is_refused_naming_a_parameter(query in query()) {
            match ApiQuery::parse(Some(&query), ALL) {
                Ok(parsed) => assert_safe_for_the_store(&parsed),
                Err(error) => {
                    prop_assert_eq!(error.code, ErrorCode::InvalidQuery, "{}: {}", query, error.message);
                    prop_assert_eq!(error.status, StatusCode::UNPROCESSABLE_ENTITY);
                    let names: Vec<String> =
                        form_urlencoded::parse(query.as_bytes()).map(|(name, _)| name.into_owned()).collect();
                    prop_assert!(
                        names.iter().any(|name| error.message.contains(&shown(name))),
                        "{}: {} names none of {:?}", query, error.message, names
                    );
                }
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(query in ".{0,200}") {
            if let Err(error) = ApiQuery::parse(Some(&query), ALL) {
                prop_assert_eq!(error.code, ErrorCode::InvalidQuery);
            }
        }

        #[test]
        fn a_day_is_accepted_exactly_when_it_is_on_the_calendar_and_in_range(
            year in 0u16..=9999, month in 0u8..=13, day in 0u8..=32
        ) {
            let written = format!("{year:04}-{month:02}-{day:02}");
            let calendar = Month::try_from(month).ok().and_then(|month| Date::from_calendar_date(i32::from(year), month, day).ok());
            let expected = calendar.filter(|date| (EARLIEST_DAY..=LATEST_DAY).contains(date));
            let parsed = ApiQuery::parse(Some(&format!("to={written}")), ALL).ok().and_then(|parsed| parsed.days.to);
            prop_assert_eq!(parsed, expected, "{}", written);
        }

        #[test]
        fn percent_encoding_every_byte_changes_nothing(query in query()) {
            let encoded: String = query
                .split('&')
                .map(|pair| {
                    pair.split('=')
                        .map(|part| {
                            // Decode as the server would, then write every byte as %XX.
                            let decoded: Vec<u8> = form_urlencoded::parse(format!("x={part}").as_bytes())
                                .next()
                                .map(|(_, value)| value.into_owned().into_bytes())
                                .unwrap_or_default();
                            decoded.iter().map(|byte| format!("%{byte:02X}")).collect::<String>()
                        })
                        .collect::<Vec<_>>()
                        .join("=")
                })
                .collect::<Vec<_>>()
                .join("&");
            let plain = ApiQuery::parse(Some(&query), ALL).map_err(|error| error.message);
            let percent = ApiQuery::parse(Some(&encoded), ALL).map_err(|error| error.message);
            prop_assert_eq!(plain, percent, "{} vs {}", query, encoded);
        }

        #[test]
        fn every_accepted_period_is_tiled_exactly_and_has_a_period_before_it(
            from_offset in 0i64..=(LATEST_DAY - EARLIEST_DAY).whole_days(),
            length in 1i64..=(LATEST_DAY - EARLIEST_DAY).whole_days(),
        ) {
            let from = EARLIEST_DAY + time::Duration::days(from_offset);
            let to = (from + time::Duration::days(length)).min(LATEST_DAY);
            prop_assume!(from < to);
            let parsed = ApiQuery::parse(Some(&format!("from={from}&to={to}")), ALL).unwrap();
            assert_safe_for_the_store(&parsed);
        }
    }
}
