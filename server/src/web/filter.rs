//! The analysts' GET forms, read from a query string: a period (`PeriodForm`: first and last day, the last day
//! included, as people say it) and the insights filter (`InsightFilterForm`: the same filter the API takes, read by
//! `InsightQuery::parse`, so the pages, the API and the exports cannot disagree). A form sends its empty fields too;
//! they mean "any", and a field that is wrong says so beside it, never as a silent default.

use grapevine_sync_proto::campaign::DEFAULT_CAMPAIGN;
use grapevine_sync_proto::Channel;
use time::Date;

use super::page::FormErrors;
use super::session::Form;
use crate::domain::insight_query::{InsightQuery, TriageState, FILTER_PARAMETERS, STATUSES};
use crate::domain::period::parse_day;
use crate::domain::{DayRange, PeriodKind};

/// A date as the pages write it: `1 October 2026`.
pub(crate) fn long_date(day: Date) -> String {
    format!("{} {} {}", day.day(), day.month(), day.year())
}

/// A month as the pages write it: `October 2026`.
pub(crate) fn month_name(start: Date) -> String {
    format!("{} {}", start.month(), start.year())
}

/// A short month for a chart's axis and a table's heading: `Oct 2026`.
pub(crate) fn short_month(start: Date) -> String {
    let name = start.month().to_string();
    format!("{} {}", &name[..3], start.year())
}

/// A period of days as the pages write it: `October 2026` for a calendar month, otherwise its first and last day.
pub(crate) fn describe_days(days: DayRange) -> String {
    let (from, to) = days.bounds();
    if PeriodKind::Month.start_of(from) == from && PeriodKind::Month.end_of(from) == to {
        return month_name(from);
    }
    let last = to.previous_day().unwrap_or(to);
    if last == from {
        long_date(from)
    } else {
        format!("{} to {}", long_date(from), long_date(last))
    }
}

/// The last full calendar month before `today`.
pub(crate) fn last_full_month(today: Date) -> DayRange {
    let this_month = PeriodKind::Month.start_of(today);
    let last_month = this_month.previous_day().map_or(this_month, |day| PeriodKind::Month.start_of(day));
    DayRange { from: Some(last_month), to: Some(this_month) }
}

/// A date field as typed: empty, or a day written year-month-day.
fn typed_day(form: &Form, field: &'static str, which: &str, errors: &mut FormErrors) -> Option<Date> {
    let typed = form.get(field).trim();
    if typed.is_empty() {
        return None;
    }
    let parsed = parse_day(field, typed).ok();
    if parsed.is_none() {
        errors.add(field, format!("Enter the {which} day as year-month-day, for example 2026-03-31"));
    }
    parsed
}

/// A period chosen on a page, and the period it is compared with.
#[derive(Debug)]
pub(crate) struct PeriodForm {
    /// As typed (or the default's), to show in the form again.
    pub from: String,
    pub until: String,
    /// `[from, until + 1 day)`.
    pub days: DayRange,
    /// The period before it: the calendar period of the same kind for a whole month, quarter or year, otherwise the
    /// same number of days just before.
    pub previous: DayRange,
    pub errors: FormErrors,
}

impl PeriodForm {
    /// Reads `from` and `until` (the last day, included); with neither, the last full month before `today`.
    pub fn read(form: &Form, today: Date) -> PeriodForm {
        let mut errors = FormErrors::default();
        let default = last_full_month(today);
        let from = typed_day(form, "from", "first", &mut errors);
        let until = typed_day(form, "until", "last", &mut errors);
        let chosen = match (from, until) {
            (None, None) if errors.is_empty() => Some(default),
            (Some(from), Some(until)) if until < from => {
                errors.add("until", "The last day must be the same as or after the first day");
                None
            }
            (Some(from), Some(until)) => Some(DayRange { from: Some(from), to: until.next_day() }),
            (None, Some(_)) if errors.of("from").is_none() => {
                errors.add("from", "Enter the first day too");
                None
            }
            (Some(_), None) if errors.of("until").is_none() => {
                errors.add("until", "Enter the last day too");
                None
            }
            _ => None,
        };
        let previous = chosen.and_then(DayRange::comparable_previous);
        if chosen.is_some() && previous.is_none() {
            errors.add("from", "Choose a later first day: there is no period before this one to compare it with");
        }
        let (days, previous) = match (chosen, previous) {
            (Some(days), Some(previous)) => (days, previous),
            _ => (default, default.comparable_previous().unwrap_or(default)),
        };
        let (shown_from, shown_until) = if form.get("from").trim().is_empty() && form.get("until").trim().is_empty() {
            let (from, to) = days.bounds();
            (from.to_string(), to.previous_day().unwrap_or(to).to_string())
        } else {
            (form.get("from").trim().to_owned(), form.get("until").trim().to_owned())
        };
        PeriodForm { from: shown_from, until: shown_until, days, previous, errors }
    }

    /// The period as a query string (`from=…&until=…`), for links that keep it.
    pub fn query(&self) -> String {
        let (from, to) = self.days.bounds();
        let until = to.previous_day().unwrap_or(to);
        format!("from={from}&until={until}")
    }

    /// The twelve months that end with the month the period ends in, as a period of whole months.
    pub fn trend_months(&self) -> DayRange {
        let (_, to) = self.days.bounds();
        let last_month = PeriodKind::Month.start_of(to.previous_day().unwrap_or(to));
        let end = PeriodKind::Month.end_of(last_month);
        let mut start = last_month;
        for _ in 0..11 {
            start = start.previous_day().map_or(start, |day| PeriodKind::Month.start_of(day));
        }
        DayRange { from: Some(start), to: Some(end) }
    }
}

/// The fields of the insights filter form, in the order the page shows them; the names are the API's, except
/// `until` (the last day, included) for the API's `to` (the day after).
pub(crate) const FILTER_FIELDS: [&str; 12] = [
    "q",
    "area",
    "category",
    "channel",
    "from",
    "until",
    "status",
    "triage",
    "tag",
    "near_boundary",
    "feeling_safe_min",
    "feeling_safe_max",
];

/// Fields of the filter a link may carry that the form does not show: kept as they are.
const KEPT_FIELDS: [&str; 2] = ["set", "generation"];

/// The insights filter as a page reads it.
#[derive(Debug)]
pub(crate) struct InsightFilterForm {
    /// Every non-empty field, as typed, in the order given.
    pub fields: Vec<(String, String)>,
    /// The filter understood (`InsightQuery::default()`, everything, when the form has errors).
    pub query: InsightQuery,
    /// The same filter as the API spells it (`to`, the day after the last), for the exports.
    pub api_query: String,
    pub errors: FormErrors,
}

impl InsightFilterForm {
    /// Reads the filter's fields from a query string; other fields (a page's cursor) are left to the caller.
    pub fn read(raw: Option<&str>) -> InsightFilterForm {
        let fields: Vec<(String, String)> = form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
            .filter(|(name, value)| {
                (FILTER_FIELDS.contains(&name.as_ref()) || KEPT_FIELDS.contains(&name.as_ref()))
                    && !value.trim().is_empty()
            })
            .map(|(name, value)| (name.into_owned(), value.trim().to_owned()))
            .collect();
        let typed = Form::from_pairs(fields.clone());
        let mut errors = FormErrors::default();
        let from = typed_day(&typed, "from", "first", &mut errors);
        let until = typed_day(&typed, "until", "last", &mut errors);
        if let (Some(from), Some(until)) = (from, until) {
            if until < from {
                errors.add("until", "The last day must be the same as or after the first day");
            }
        }
        let mut api = form_urlencoded::Serializer::new(String::new());
        for (name, value) in &fields {
            match name.as_str() {
                "until" => {
                    if let Some(to) = until.and_then(Date::next_day) {
                        api.append_pair("to", &to.to_string());
                    }
                }
                "from" if from.is_none() => {}
                _ => {
                    api.append_pair(name, value);
                }
            }
        }
        let mut query = InsightQuery::default();
        let api_query = api.finish();
        if errors.is_empty() {
            match InsightQuery::parse(Some(&api_query), &[]) {
                Ok((parsed, _)) => query = parsed,
                Err(message) => errors.add(field_of(&message), sentence(&message)),
            }
        }
        InsightFilterForm { fields, query, api_query, errors }
    }

    /// The first value of a field, as typed (empty when not given).
    pub fn value(&self, name: &str) -> &str {
        self.fields.iter().find(|(field, _)| field == name).map_or("", |(_, value)| value.as_str())
    }

    /// Whether `value` is among the values given for `name` (to select it again).
    pub fn has(&self, name: &str, value: &str) -> bool {
        self.fields.iter().any(|(field, given)| field == name && given == value)
    }

    /// The filter as a query string (page spelling), for links that keep it; empty when no field is given.
    pub fn query_string(&self) -> String {
        let mut query = form_urlencoded::Serializer::new(String::new());
        for (name, value) in &self.fields {
            query.append_pair(name, value);
        }
        query.finish()
    }

    /// `path`, with the filter and then `more` (already encoded, may be empty) as its query.
    pub fn link(&self, path: &str, more: &str) -> String {
        let query = [self.query_string(), more.to_owned()].into_iter().filter(|part| !part.is_empty());
        let query: Vec<String> = query.collect();
        if query.is_empty() {
            path.to_owned()
        } else {
            format!("{path}?{}", query.join("&"))
        }
    }

    /// The fields a link carries that the form does not show (`set`, `generation`), to send again as hidden fields.
    pub fn kept(&self) -> Vec<(&str, &str)> {
        self.fields
            .iter()
            .filter(|(name, _)| KEPT_FIELDS.contains(&name.as_str()))
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect()
    }

    pub fn is_filtered(&self) -> bool {
        !self.fields.is_empty()
    }
}

/// The form field a parse error is about: the parameter its message starts with (`category=…`, `tag: …`,
/// `feeling_safe_min (4) …`); a parameter the form does not show is reported at the search field.
fn field_of(message: &str) -> &'static str {
    let named = FILTER_PARAMETERS.iter().chain(&["q"]).copied().filter(|name| {
        message.strip_prefix(name).is_some_and(|rest| rest.starts_with(['=', ' ', ':']) || rest.is_empty())
    });
    let parameter = named.max_by_key(|name| name.len()).unwrap_or("q");
    match parameter {
        "to" => "until",
        name => FILTER_FIELDS.iter().find(|field| **field == name).copied().unwrap_or("q"),
    }
}

/// A parser's message as a sentence on a page.
pub(crate) fn sentence(message: &str) -> String {
    let mut chars = message.chars();
    chars.next().map_or_else(String::new, |first| first.to_uppercase().chain(chars).collect())
}

/// A choice in a select field: its value and its words.
#[derive(Debug, Clone)]
pub(crate) struct Choice {
    pub value: String,
    pub label: String,
}

impl Choice {
    fn new(value: impl Into<String>, label: impl Into<String>) -> Choice {
        Choice { value: value.into(), label: label.into() }
    }
}

/// The choices of the filter's select fields, read by `templates/insight_filters.html`.
#[derive(Debug)]
pub(crate) struct FilterChoices {
    pub areas: Vec<Choice>,
    pub categories: Vec<Choice>,
    pub channels: Vec<Choice>,
    pub statuses: Vec<Choice>,
    pub triage: Vec<Choice>,
    pub scores: Vec<Choice>,
}

impl FilterChoices {
    /// The choices, with the areas a person may choose among (code and name).
    pub fn new(areas: impl Iterator<Item = (String, String)>) -> FilterChoices {
        let mut areas: Vec<Choice> = areas.map(|(code, name)| Choice::new(code, name)).collect();
        areas.sort_by(|a, b| a.label.cmp(&b.label));
        FilterChoices {
            areas,
            categories: DEFAULT_CAMPAIGN
                .categories
                .iter()
                .map(|category| Choice::new(category.slug, category.label))
                .collect(),
            channels: Channel::ALL
                .iter()
                .map(|channel| Choice::new(channel.as_str(), channel_label(*channel)))
                .collect(),
            statuses: STATUSES.iter().map(|status| Choice::new(*status, status_label(status))).collect(),
            triage: TriageState::ALL.iter().map(|state| Choice::new(state.as_str(), state.label())).collect(),
            scores: (1..=5).map(|score: u8| Choice::new(score.to_string(), score.to_string())).collect(),
        }
    }
}

/// How a person reads a channel.
pub(crate) fn channel_label(channel: Channel) -> &'static str {
    match channel {
        Channel::Staff => "Staff",
        Channel::BarberHairdresser => "Barber or hairdresser",
        Channel::Pupil => "Pupil",
        Channel::YouthWorker => "Youth worker",
        Channel::Other => "Other",
    }
}

/// How a person reads an insight's status.
pub(crate) fn status_label(status: &str) -> &'static str {
    match status {
        "filed" => "Filed",
        "outside_coverage" => "Outside coverage",
        "rejected" => "Rejected",
        "withdrawn" => "Withdrawn",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    fn form(query: &str) -> Form {
        Form::from_query(Some(query))
    }

    #[test]
    fn a_period_defaults_to_the_last_full_month_against_the_month_before() {
        let period = PeriodForm::read(&form(""), date!(2026 - 03 - 15));
        assert!(period.errors.is_empty());
        assert_eq!((period.from.as_str(), period.until.as_str()), ("2026-02-01", "2026-02-28"));
        assert_eq!(period.days, DayRange { from: Some(date!(2026 - 02 - 01)), to: Some(date!(2026 - 03 - 01)) });
        assert_eq!(period.previous, DayRange { from: Some(date!(2026 - 01 - 01)), to: Some(date!(2026 - 02 - 01)) });
        assert_eq!(describe_days(period.days), "February 2026");
        assert_eq!(period.query(), "from=2026-02-01&until=2026-02-28");
        assert_eq!(
            PeriodForm::read(&form(""), date!(2026 - 01 - 01)).days.from,
            Some(date!(2025 - 12 - 01)),
            "the month before January is last year's December"
        );
        let trend = period.trend_months();
        assert_eq!(trend, DayRange { from: Some(date!(2025 - 03 - 01)), to: Some(date!(2026 - 03 - 01)) });
    }

    #[test]
    fn a_period_chosen_includes_its_last_day_and_says_what_is_wrong() {
        let period = PeriodForm::read(&form("from=2026-03-10&until=2026-03-19"), date!(2026 - 06 - 01));
        assert!(period.errors.is_empty());
        assert_eq!(period.days, DayRange { from: Some(date!(2026 - 03 - 10)), to: Some(date!(2026 - 03 - 20)) });
        assert_eq!(period.previous, DayRange { from: Some(date!(2026 - 02 - 28)), to: Some(date!(2026 - 03 - 10)) });
        assert_eq!(describe_days(period.days), "10 March 2026 to 19 March 2026");
        for (query, field) in [
            ("from=2026-03-10&until=2026-03-01", "until"),
            ("from=yesterday&until=2026-03-01", "from"),
            ("from=2026-03-10", "until"),
            ("until=2026-03-10", "from"),
            ("from=1900-01-01&until=1900-01-31", "from"),
        ] {
            let period = PeriodForm::read(&form(query), date!(2026 - 06 - 01));
            assert!(period.errors.of(field).is_some(), "{query}: {:?}", period.errors);
            assert_eq!(period.days, last_full_month(date!(2026 - 06 - 01)), "{query}: the default is read instead");
        }
    }

    #[test]
    fn the_filter_reads_as_the_api_does_with_the_last_day_included() {
        let filter = InsightFilterForm::read(Some(
            "q=chip+shop&area=&category=drugs&from=2026-01-01&until=2026-01-31&triage=reviewed&cursor=abc&tag=",
        ));
        assert!(filter.errors.is_empty(), "{:?}", filter.errors);
        assert_eq!(filter.query.words, ["chip", "shop"]);
        assert_eq!(filter.query.categories, ["drugs"]);
        assert_eq!(filter.query.days, DayRange { from: Some(date!(2026 - 01 - 01)), to: Some(date!(2026 - 02 - 01)) });
        assert_eq!(filter.query.triage, Some(TriageState::Reviewed));
        assert_eq!(
            filter.query_string(),
            "q=chip+shop&category=drugs&from=2026-01-01&until=2026-01-31&triage=reviewed"
        );
        assert_eq!(filter.api_query, "q=chip+shop&category=drugs&from=2026-01-01&to=2026-02-01&triage=reviewed");
        assert_eq!(filter.link("/insights", "cursor=x"), format!("/insights?{}&cursor=x", filter.query_string()));
        assert_eq!(InsightFilterForm::read(None).link("/insights", ""), "/insights");
    }

    #[test]
    fn a_wrong_filter_field_is_named_beside_it() {
        for (query, field) in [
            ("category=unicorns", "category"),
            ("tag=%3Cb%3E", "tag"),
            ("feeling_safe_min=4&feeling_safe_max=2", "feeling_safe_min"),
            ("q=%22*%22", "q"),
            ("from=2026-02-01&until=2026-01-01", "until"),
            ("from=01/02/2026", "from"),
            ("generation=0", "q"),
        ] {
            let filter = InsightFilterForm::read(Some(query));
            assert!(filter.errors.of(field).is_some(), "{query}: {:?}", filter.errors);
            assert_eq!(filter.query, InsightQuery::default(), "{query}");
        }
    }
}
