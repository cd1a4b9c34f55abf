//! What an analyst asks of the insights: one filter, parsed once and shared by the list, the exports and the pages,
//! so the three cannot disagree (`docs/workbench.md`). A query string is `application/x-www-form-urlencoded`;
//! `area` and `category` may be given several times (they combine with "or"), every other parameter once; anything
//! unknown or malformed is refused with a message naming the parameter, never read as a silent default.

use base64::Engine;
use grapevine_sync_proto::campaign::DEFAULT_CAMPAIGN;
use grapevine_sync_proto::Channel;

use super::period::{parse_day, DayRange};
use super::shown;

/// The most insights one page holds, and how many a page holds when `limit` is not given.
pub const MAX_PAGE: u32 = 200;
pub const DEFAULT_PAGE: u32 = 50;

/// The most words `q` may hold; each is searched for (all of them must be found).
pub const MAX_SEARCH_WORDS: usize = 16;

/// Where an insight stands in the analysts' triage: `new → reviewed → actioned | not_actionable`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TriageState {
    New,
    Reviewed,
    Actioned,
    NotActionable,
}

impl TriageState {
    pub const ALL: [TriageState; 4] =
        [TriageState::New, TriageState::Reviewed, TriageState::Actioned, TriageState::NotActionable];

    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            TriageState::New => "new",
            TriageState::Reviewed => "reviewed",
            TriageState::Actioned => "actioned",
            TriageState::NotActionable => "not_actionable",
        }
    }

    #[must_use]
    pub fn parse(text: &str) -> Option<TriageState> {
        TriageState::ALL.into_iter().find(|state| state.as_str() == text)
    }

    /// How a person reads it.
    #[must_use]
    pub fn label(self) -> &'static str {
        match self {
            TriageState::New => "New",
            TriageState::Reviewed => "Reviewed",
            TriageState::Actioned => "Actioned",
            TriageState::NotActionable => "Not actionable",
        }
    }
}

/// The statuses an insight can have, as a filter names them (`Outcome::status`).
pub const STATUSES: [&str; 4] = ["filed", "outside_coverage", "rejected", "withdrawn"];

/// Where a page of insights starts: after the insight with this arrival number (newest first, so every insight on
/// the next page arrived before it). Written base64url, with a version, so it is opaque to clients and a mangled
/// one is told apart from a real one. It carries no right: the filter and the scope are applied afresh every time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub before_seq: i64,
}

/// The version a cursor is written in.
const CURSOR_PREFIX: &str = "i1.";

impl Cursor {
    #[must_use]
    pub fn encode(self) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{CURSOR_PREFIX}{}", self.before_seq))
    }

    /// A cursor as `encode` wrote it.
    ///
    /// # Errors
    /// A message saying the cursor is not one this server gave.
    pub fn decode(text: &str) -> Result<Cursor, String> {
        let refused = || format!("cursor={} is not a cursor this server gave; start again without it", shown(text));
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text).map_err(|_| refused())?;
        let text = String::from_utf8(bytes).map_err(|_| refused())?;
        let number = text.strip_prefix(CURSOR_PREFIX).ok_or_else(refused)?;
        let valid = !number.is_empty() && number.len() <= 18 && number.bytes().all(|byte| byte.is_ascii_digit());
        let before_seq =
            valid.then(|| number.parse::<i64>().ok()).flatten().filter(|seq| *seq > 0).ok_or_else(refused)?;
        Ok(Cursor { before_seq })
    }
}

/// The filter on insights. Empty lists and `None` mean "any".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InsightQuery {
    /// The boundary set and generation `area` codes (and each item's `area`) are read in: the filing set's newest
    /// when not given.
    pub set: Option<String>,
    pub generation: Option<i64>,
    /// Areas of that generation, any of them.
    pub areas: Vec<String>,
    /// Category slugs of the campaign, any of them.
    pub categories: Vec<String>,
    pub channel: Option<Channel>,
    /// The collector's local day of capture: `from` inclusive, `to` exclusive.
    pub days: DayRange,
    /// `STATUSES`, any of them.
    pub statuses: Vec<&'static str>,
    /// Whether the insight lies near a border of its area in the generation read.
    pub near_boundary: Option<bool>,
    /// Feeling-safe scores from `.0` to `.1` inclusive (1–5); an insight without one is left out when this is given.
    pub feeling_safe: Option<(u8, u8)>,
    pub triage: Option<TriageState>,
    /// An analysts' tag the insight carries.
    pub tag: Option<String>,
    /// The words of `q`, each to be found in the text (stemmed in English, and as typed).
    pub words: Vec<String>,
    /// As typed, for the audit trail and the pages.
    pub q: Option<String>,
}

/// A list request: the filter, and where the page starts and how long it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InsightPageRequest {
    pub query: InsightQuery,
    pub cursor: Option<Cursor>,
    pub limit: u32,
}

/// The parameters of the filter, in the order the docs list them.
pub const FILTER_PARAMETERS: [&str; 13] = [
    "set",
    "generation",
    "area",
    "category",
    "channel",
    "from",
    "to",
    "status",
    "near_boundary",
    "feeling_safe_min",
    "feeling_safe_max",
    "triage",
    "tag",
];

/// The parameters that may be given more than once.
const REPEATABLE: [&str; 3] = ["area", "category", "status"];

/// The longest a tag may be.
pub const MAX_TAG_CHARS: usize = 40;

/// A tag as stored: trimmed, lower case, inner runs of white space as one hyphen; letters, digits, `-` and `_` only.
///
/// # Errors
/// A message saying what a tag may be.
pub fn normalise_tag(text: &str) -> Result<String, String> {
    let tag = text.split_whitespace().collect::<Vec<_>>().join("-").to_lowercase();
    let valid = !tag.is_empty()
        && tag.chars().count() <= MAX_TAG_CHARS
        && tag.chars().all(|c| c.is_alphanumeric() || c == '-' || c == '_');
    if valid {
        Ok(tag)
    } else {
        Err(format!(
            "tag '{}' is not a tag: 1 to {MAX_TAG_CHARS} letters, digits, '-' or '_' (spaces become '-')",
            shown(text)
        ))
    }
}

/// The words `q` is searched by: runs of letters and digits (any script), lower case. Everything else (quotes, `*`,
/// `-`, brackets) only separates words, so nothing a person types is read as search syntax.
#[must_use]
pub fn search_words(q: &str) -> Vec<String> {
    q.split(|c: char| !c.is_alphanumeric()).filter(|word| !word.is_empty()).map(str::to_lowercase).collect()
}

impl InsightQuery {
    /// Parses a raw query string (still percent-encoded), taking the filter's parameters, `q`, and those in `extra`
    /// (which the caller reads from the returned pairs).
    ///
    /// # Errors
    /// A message naming the parameter that is unknown, repeated or malformed.
    pub fn parse(query: Option<&str>, extra: &[&str]) -> Result<(InsightQuery, Vec<(String, String)>), String> {
        let mut parsed = InsightQuery::default();
        let mut extras = Vec::new();
        let mut seen: Vec<String> = Vec::new();
        let (mut low, mut high) = (None, None);
        for (key, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
            let known = FILTER_PARAMETERS.contains(&key.as_ref()) || key == "q" || extra.contains(&key.as_ref());
            if !known {
                let mut all: Vec<&str> = FILTER_PARAMETERS.to_vec();
                all.push("q");
                all.extend(extra);
                return Err(format!("unknown parameter '{}'; this endpoint takes {}", shown(&key), all.join(", ")));
            }
            if !REPEATABLE.contains(&key.as_ref()) && seen.iter().any(|earlier| *earlier == key) {
                return Err(format!("{} is given more than once; give it once", shown(&key)));
            }
            seen.push(key.to_string());
            if value.is_empty() {
                return Err(format!("{key} needs a value"));
            }
            let value = value.into_owned();
            match key.as_ref() {
                "set" => parsed.set = Some(value),
                "generation" => parsed.generation = Some(parse_number(&key, &value, 1, i64::MAX)?),
                "area" => push_once(&mut parsed.areas, value.trim().to_owned()),
                "category" => {
                    if !DEFAULT_CAMPAIGN.categories.iter().any(|category| category.slug == value) {
                        let known: Vec<&str> = DEFAULT_CAMPAIGN.categories.iter().map(|c| c.slug).collect();
                        return Err(format!("category={} is not one of {}", shown(&value), known.join(", ")));
                    }
                    push_once(&mut parsed.categories, value);
                }
                "channel" => {
                    let channel = Channel::parse(&value).ok_or_else(|| {
                        let known: Vec<&str> = Channel::ALL.iter().map(|channel| channel.as_str()).collect();
                        format!("channel={} is not one of {}", shown(&value), known.join(", "))
                    })?;
                    parsed.channel = Some(channel);
                }
                "from" => parsed.days.from = Some(parse_day(&key, &value)?),
                "to" => parsed.days.to = Some(parse_day(&key, &value)?),
                "status" => {
                    let status = STATUSES
                        .into_iter()
                        .find(|status| *status == value)
                        .ok_or_else(|| format!("status={} is not one of {}", shown(&value), STATUSES.join(", ")))?;
                    if !parsed.statuses.contains(&status) {
                        parsed.statuses.push(status);
                    }
                }
                "near_boundary" => {
                    parsed.near_boundary = Some(match value.as_str() {
                        "true" => true,
                        "false" => false,
                        _ => return Err(format!("near_boundary={} is not true or false", shown(&value))),
                    });
                }
                "feeling_safe_min" => low = Some(parse_score(&key, &value)?),
                "feeling_safe_max" => high = Some(parse_score(&key, &value)?),
                "triage" => {
                    let state = TriageState::parse(&value).ok_or_else(|| {
                        let known: Vec<&str> = TriageState::ALL.iter().map(|state| state.as_str()).collect();
                        format!("triage={} is not one of {}", shown(&value), known.join(", "))
                    })?;
                    parsed.triage = Some(state);
                }
                "tag" => parsed.tag = Some(normalise_tag(&value).map_err(|message| format!("tag: {message}"))?),
                "q" => {
                    if value.chars().count() > 500 {
                        return Err("q is longer than 500 characters".to_owned());
                    }
                    let words = search_words(&value);
                    if words.is_empty() {
                        return Err(format!("q={} holds no words to search for (letters or digits)", shown(&value)));
                    }
                    if words.len() > MAX_SEARCH_WORDS {
                        return Err(format!("q holds {} words; search for at most {MAX_SEARCH_WORDS}", words.len()));
                    }
                    parsed.words = words;
                    parsed.q = Some(value);
                }
                _ => extras.push((key.into_owned(), value)),
            }
        }
        parsed.feeling_safe = match (low, high) {
            (None, None) => None,
            (low, high) => {
                let (low, high) = (low.unwrap_or(1), high.unwrap_or(5));
                if low > high {
                    return Err(format!("feeling_safe_min ({low}) is above feeling_safe_max ({high})"));
                }
                Some((low, high))
            }
        };
        let (from, to) = parsed.days.bounds();
        if from >= to {
            return Err(format!("from ({from}) must be before to ({to}); to is exclusive"));
        }
        Ok((parsed, extras))
    }

    /// The filter as the audit trail records it: the parameters given, never the words searched for beyond their
    /// count (a search can itself be sensitive).
    #[must_use]
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(set) = &self.set {
            parts.push(format!("set={}", shown(set)));
        }
        if let Some(generation) = self.generation {
            parts.push(format!("generation={generation}"));
        }
        for area in &self.areas {
            parts.push(format!("area={}", shown(area)));
        }
        for category in &self.categories {
            parts.push(format!("category={category}"));
        }
        if let Some(channel) = self.channel {
            parts.push(format!("channel={channel}"));
        }
        if let Some(from) = self.days.from {
            parts.push(format!("from={from}"));
        }
        if let Some(to) = self.days.to {
            parts.push(format!("to={to}"));
        }
        for status in &self.statuses {
            parts.push(format!("status={status}"));
        }
        if let Some(near) = self.near_boundary {
            parts.push(format!("near_boundary={near}"));
        }
        if let Some((low, high)) = self.feeling_safe {
            parts.push(format!("feeling_safe={low}-{high}"));
        }
        if let Some(triage) = self.triage {
            parts.push(format!("triage={}", triage.as_str()));
        }
        if let Some(tag) = &self.tag {
            parts.push(format!("tag={tag}"));
        }
        if !self.words.is_empty() {
            parts.push(format!("q=({} words)", self.words.len()));
        }
        if parts.is_empty() {
            "all".to_owned()
        } else {
            parts.join("&")
        }
    }
}

impl InsightPageRequest {
    /// Parses a list request: the filter, `cursor` and `limit` (1 to `MAX_PAGE`).
    ///
    /// # Errors
    /// As `InsightQuery::parse`, and a malformed cursor or limit.
    pub fn parse(query: Option<&str>) -> Result<InsightPageRequest, String> {
        let (query, extras) = InsightQuery::parse(query, &["cursor", "limit"])?;
        let mut request = InsightPageRequest { query, cursor: None, limit: DEFAULT_PAGE };
        for (key, value) in extras {
            match key.as_str() {
                "cursor" => request.cursor = Some(Cursor::decode(&value)?),
                _ => request.limit = u32::try_from(parse_number(&key, &value, 1, i64::from(MAX_PAGE))?).unwrap_or(1),
            }
        }
        Ok(request)
    }
}

fn push_once(list: &mut Vec<String>, value: String) {
    if !list.contains(&value) {
        list.push(value);
    }
}

fn parse_number(key: &str, value: &str, low: i64, high: i64) -> Result<i64, String> {
    let digits = !value.is_empty() && value.len() <= 18 && value.bytes().all(|byte| byte.is_ascii_digit());
    digits
        .then(|| value.parse::<i64>().ok())
        .flatten()
        .filter(|number| (low..=high).contains(number))
        .ok_or_else(|| format!("{key}={} is not a whole number from {low} to {high}", shown(value)))
}

fn parse_score(key: &str, value: &str) -> Result<u8, String> {
    parse_number(key, value, 1, 5).map(|score| u8::try_from(score).unwrap_or(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    fn parse(query: &str) -> Result<InsightQuery, String> {
        InsightQuery::parse(Some(query), &[]).map(|(query, _)| query)
    }

    #[test]
    fn filters_combine_and_repeat_where_they_may() {
        let query = parse(
            "area=E05008737&area=E05008738&category=drugs&category=asb&channel=pupil&from=2026-01-01&to=2026-02-01\
             &status=filed&near_boundary=true&feeling_safe_min=2&triage=reviewed&tag=Chip+Shop&q=dealing+%22after%22",
        )
        .unwrap();
        assert_eq!(query.areas, ["E05008737", "E05008738"]);
        assert_eq!(query.categories, ["drugs", "asb"]);
        assert_eq!(query.channel, Some(Channel::Pupil));
        assert_eq!(query.days, DayRange { from: Some(date!(2026 - 01 - 01)), to: Some(date!(2026 - 02 - 01)) });
        assert_eq!(query.statuses, ["filed"]);
        assert_eq!(
            (query.near_boundary, query.feeling_safe, query.triage),
            (Some(true), Some((2, 5)), Some(TriageState::Reviewed))
        );
        assert_eq!(query.tag.as_deref(), Some("chip-shop"));
        assert_eq!(query.words, ["dealing", "after"]);
        assert!(query.describe().contains("q=(2 words)") && !query.describe().contains("dealing"));
        assert_eq!(parse("").unwrap().describe(), "all");
    }

    #[test]
    fn bad_values_are_refused_naming_the_parameter() {
        for (bad, named) in [
            ("category=unicorns", "category=unicorns"),
            ("channel=carrier-pigeon", "channel="),
            ("status=lost", "status=lost"),
            ("triage=done", "triage=done"),
            ("near_boundary=yes", "near_boundary"),
            ("feeling_safe_min=0", "feeling_safe_min"),
            ("feeling_safe_min=4&feeling_safe_max=2", "feeling_safe_min (4)"),
            ("from=2026-02-30", "from="),
            ("from=2026-02-01&to=2026-01-01", "from (2026-02-01)"),
            ("q=%22*%22+-", "holds no words"),
            ("tag=%3Cscript%3E", "tag"),
            ("set=wards&set=wards", "set is given more than once"),
            ("sort=oldest", "unknown parameter 'sort'"),
            ("generation=0", "generation"),
        ] {
            let message = parse(bad).unwrap_err();
            assert!(message.contains(named), "{bad}: {message}");
        }
    }

    #[test]
    fn search_syntax_is_only_ever_words() {
        assert_eq!(search_words(r#""dealing" NEAR(chip shop) -knife *"#), ["dealing", "near", "chip", "shop", "knife"]);
        assert_eq!(search_words("Mae'r plant yn ofnus"), ["mae", "r", "plant", "yn", "ofnus"]);
        assert_eq!(search_words("ŵyr café"), ["ŵyr", "café"]);
    }

    #[test]
    fn cursors_read_back_and_mangled_ones_are_refused() {
        let cursor = Cursor { before_seq: 12_345 };
        assert_eq!(Cursor::decode(&cursor.encode()), Ok(cursor));
        for bad in ["", "!!!", "aTEuMA", "aTEuLTE", "aTIuNQ", "aTEuOTk5OTk5OTk5OTk5OTk5OTk5OTk5"] {
            assert!(Cursor::decode(bad).unwrap_err().contains("not a cursor"), "{bad}");
        }
        let page = InsightPageRequest::parse(Some(&format!("limit=10&cursor={}", cursor.encode()))).unwrap();
        assert_eq!((page.limit, page.cursor), (10, Some(cursor)));
        assert!(InsightPageRequest::parse(Some("limit=100000")).unwrap_err().contains("limit"));
        assert!(InsightPageRequest::parse(Some("limit=0")).unwrap_err().contains("limit"));
        assert_eq!(InsightPageRequest::parse(None).unwrap().limit, DEFAULT_PAGE);
    }
}
