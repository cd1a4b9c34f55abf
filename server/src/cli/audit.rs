//! `grapevine audit list|verify`: parse, call `crate::audit`, render.

use clap::Subcommand;
use futures_util::StreamExt;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{Date, OffsetDateTime};

use super::DatabaseArgs;
use crate::audit::{canonical_json, canonical_time, hex, AuditFilter, Verified};
use crate::domain::Principal;
use crate::usecase::UseCases;

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// List audit entries, oldest first: a line each (after a header), or with --json one JSON object a line (JSON
    /// Lines). Filters combine; times are UTC.
    List {
        /// Only entries of this actor: `person:EMAIL`, `device:ID`, `token:ID` (a service account) or `operator:USER`.
        #[arg(long)]
        actor: Option<String>,
        /// Only entries of this action, e.g. `token.add`.
        #[arg(long)]
        action: Option<String>,
        /// Only entries at or after this: a date (YYYY-MM-DD, from its midnight UTC) or an RFC 3339 time
        /// (2026-12-06T10:00:00Z).
        #[arg(long, value_parser = parse_since)]
        since: Option<OffsetDateTime>,
        /// Only entries before this: a date (YYYY-MM-DD, that whole day included) or an RFC 3339 time (excluded).
        #[arg(long, value_parser = parse_until)]
        until: Option<OffsetDateTime>,
        /// Print one JSON object a line (JSON Lines): every field, hashes in hex, times as in the hash.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Walk the whole chain from entry 1 and recompute every hash. Prints "intact: N entries" and the head hash (note
    /// it down elsewhere: entries removed from the end leave an intact chain), or names the first broken entry and
    /// why, and exits non-zero.
    Verify {
        #[command(flatten)]
        database: DatabaseArgs,
    },
}

pub(super) async fn run(command: AuditCommand) -> anyhow::Result<()> {
    match command {
        AuditCommand::List { actor, action, since, until, json, database } => {
            let usecases = UseCases::open(&database.database_url).await?;
            let filter = AuditFilter { actor, action, since, until, ..AuditFilter::default() };
            let mut entries = usecases.audit_entries(&Principal::operator(), filter).await?;
            if !json {
                println!(
                    "{:>8}  {:<27}  {:<7}  {:<24}  {:<11}  {:<20}  {:<36}  detail",
                    "seq", "at", "outcome", "actor", "role", "action", "target"
                );
            }
            while let Some(entry) = entries.next().await {
                let entry = entry?;
                if json {
                    println!("{}", serde_json::to_string(&entry.to_json())?);
                } else {
                    println!(
                        "{:>8}  {:<27}  {:<7}  {:<24}  {:<11}  {:<20}  {:<36}  {}",
                        entry.seq,
                        canonical_time(entry.at),
                        entry.outcome,
                        shown(&entry.actor),
                        shown(&entry.role),
                        shown(&entry.action),
                        shown(&entry.target),
                        shown(&canonical_json(&entry.detail)?)
                    );
                }
            }
        }
        AuditCommand::Verify { database } => {
            let usecases = UseCases::open(&database.database_url).await?;
            match usecases.verify_audit(&Principal::operator()).await? {
                Verified::Intact { n, head } => println!("intact: {n} entries; head hash {}", hex(&head)),
                Verified::Broken { seq, reason } => {
                    anyhow::bail!("the audit trail is broken at entry {seq}: {reason}")
                }
            }
        }
    }
    Ok(())
}

/// A field for the text listing, its control characters escaped, so no stored value can start a line of its own.
fn shown(text: &str) -> String {
    text.chars().map(|c| if c.is_control() { c.escape_default().to_string() } else { c.to_string() }).collect()
}

/// `--since`: a date means its midnight (UTC).
fn parse_since(text: &str) -> Result<OffsetDateTime, String> {
    parse_date(text).map_or_else(|| parse_time(text), |date| Ok(date.midnight().assume_utc()))
}

/// `--until`: a date means the whole of that day, so the midnight after it.
fn parse_until(text: &str) -> Result<OffsetDateTime, String> {
    match parse_date(text) {
        Some(date) => {
            let next = date.next_day().ok_or_else(|| format!("'{text}' is the last day there is"))?;
            Ok(next.midnight().assume_utc())
        }
        None => parse_time(text),
    }
}

fn parse_date(text: &str) -> Option<Date> {
    Date::parse(text, format_description!("[year]-[month]-[day]")).ok()
}

fn parse_time(text: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(text, &Rfc3339).map_err(|_| {
        format!("'{text}' is neither a date (YYYY-MM-DD) nor an RFC 3339 time (e.g. 2026-12-06T10:00:00Z)")
    })
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    #[test]
    fn a_date_since_is_its_midnight_and_a_date_until_takes_the_whole_day() {
        assert_eq!(parse_since("2026-12-06"), Ok(datetime!(2026-12-06 00:00 UTC)));
        assert_eq!(parse_until("2026-12-06"), Ok(datetime!(2026-12-07 00:00 UTC)));
        assert_eq!(parse_since("2026-12-06T10:30:00+01:00"), Ok(datetime!(2026-12-06 09:30 UTC)));
        assert_eq!(parse_until("2026-12-06T10:30:00.25Z"), Ok(datetime!(2026-12-06 10:30:00.25 UTC)));
    }

    #[test]
    fn an_unreadable_time_is_refused_naming_both_forms() {
        for text in ["yesterday", "2026-13-01", "06/12/2026", "2026-12-06 10:00"] {
            let error = parse_since(text).unwrap_err();
            assert!(error.contains(text) && error.contains("YYYY-MM-DD") && error.contains("RFC 3339"), "{error}");
        }
    }

    #[test]
    fn control_characters_in_a_listed_field_are_escaped() {
        assert_eq!(shown("a\nseq 1\tb"), "a\\nseq 1\\tb");
        assert_eq!(shown("café"), "café");
    }
}
