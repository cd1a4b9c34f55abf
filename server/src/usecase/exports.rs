//! Exports (docs/exports.md): every insight a filter lets through, as CSV, GeoJSON, GeoPackage or XLSX, and the
//! roll-up table (area × category × period) as CSV. Each is checked against `export_insights`, narrowed to the
//! principal's scope, read from one snapshot of the database and streamed: the store sends rows a batch at a time
//! through a bounded channel, a writer (`export`) turns them into the file's bytes, and the bytes wait in another
//! bounded channel for the client, so memory does not grow with the number of rows.
//!
//! The audit entry (`export.insights` or `export.rollups`, the filter as its target, the format and the row count as
//! its detail) is appended when the export finishes, before its last bytes are sent: a download that cannot be
//! recorded never arrives whole. One cut short is recorded `failed`, with the rows written so far and why.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use grapevine_sync_proto::ErrorCode;
use serde_json::json;
use tokio::sync::{mpsc, oneshot};

use super::insights::{InsightView, Pseudonyms};
use super::rollups::Visible;
use super::{UseCaseError, UseCases};
use crate::audit::AuditOutcome;
use crate::domain::insight_query::InsightQuery;
use crate::domain::{shown, Action, DayRange, PeriodKind, Principal};
use crate::export::columns::{InsightRows, RollupRows, INSIGHT_COLUMNS, ROLLUP_COLUMNS};
use crate::export::{byte_channel, csv, geojson, gpkg, xlsx, ByteSink, Chunks, Cut, InsightFormat, Rows};
use crate::geo::atlas::Atlas;

/// Rows read from the database at a time.
pub const EXPORT_BATCH: u32 = 1000;

/// Batches that may wait for the writer before the read waits too.
const BATCHES_IN_FLIGHT: usize = 2;

/// Exports one node runs at once. Each holds a read of the database open (on PostgreSQL, three connections of its
/// own) and keeps about a core busy until its file is delivered or abandoned; one more is refused (`rate_limited`)
/// rather than left to slow every other down or to exhaust the database's connections.
pub const EXPORTS_AT_ONCE: usize = 4;

/// When a refused export is told to try again: about how long a large export takes.
const EXPORT_RETRY: std::time::Duration = std::time::Duration::from_secs(30);

const INSIGHTS_VERB: &str = "export.insights";
const ROLLUPS_VERB: &str = "export.rollups";

/// An export on its way: the file's name and its bytes.
#[derive(Debug)]
pub struct Download {
    /// `grapevine-insights-2026-12-07.csv` and the like: what the file is, and the day (UTC) it was made.
    pub filename: String,
    pub chunks: Chunks,
}

/// What a roll-up export reads: a generation (the filing set's newest unless named), a period kind, and the periods
/// starting inside `days`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RollupExport {
    pub set: Option<String>,
    pub generation: Option<i64>,
    pub kind: PeriodKind,
    pub days: DayRange,
    /// Start the CSV with a byte-order mark.
    pub bom: bool,
}

impl RollupExport {
    /// The request as the audit trail records it.
    #[must_use]
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(set) = &self.set {
            parts.push(format!("set={}", shown(set)));
        }
        if let Some(generation) = self.generation {
            parts.push(format!("generation={generation}"));
        }
        parts.push(format!("period={}", self.kind.as_str()));
        if let Some(from) = self.days.from {
            parts.push(format!("from={from}"));
        }
        if let Some(to) = self.days.to {
            parts.push(format!("to={to}"));
        }
        parts.join("&")
    }
}

/// Today (UTC), for a file's name.
fn today() -> String {
    time::OffsetDateTime::now_utc().date().to_string()
}

fn too_large(n_rows: u64) -> UseCaseError {
    UseCaseError::Invalid {
        code: ErrorCode::ExportTooLarge,
        message: format!(
            "{n_rows} insights match, and an XLSX sheet holds at most {} rows under its header: narrow the filter, \
             or choose CSV, which has no limit",
            xlsx::MAX_DATA_ROWS
        ),
    }
}

impl UseCases {
    /// `GET /api/v1/exports/insights.{csv,geojson,gpkg,xlsx}`: every insight the filter and the scope let through,
    /// newest first.
    ///
    /// # Errors
    /// `Forbidden` (recorded); `NotFound` (`area_not_found`) for an area outside the scope; `Invalid`
    /// (`export_too_large`) for an XLSX export of more rows than a sheet holds (counted before anything is written);
    /// `RateLimited` while `EXPORTS_AT_ONCE` exports are running on this node; the store or the trail fails. Each
    /// after the permission check is recorded `failed`.
    pub async fn export_insights(
        &self,
        principal: &Principal,
        atlas: Arc<Atlas>,
        query: &InsightQuery,
        format: InsightFormat,
    ) -> Result<Download, UseCaseError> {
        self.export_insights_in_batches(principal, atlas, query, format, EXPORT_BATCH).await
    }

    /// `export_insights`, reading `batch` rows at a time (the tests read one at a time, to write between two).
    ///
    /// # Errors
    /// As `export_insights`.
    pub async fn export_insights_in_batches(
        &self,
        principal: &Principal,
        atlas: Arc<Atlas>,
        query: &InsightQuery,
        format: InsightFormat,
        batch: u32,
    ) -> Result<Download, UseCaseError> {
        let target = query.describe();
        let extension = format.extension();
        self.authorize_audited(principal, Action::ExportInsights, INSIGHTS_VERB, &target).await?;
        let refused = |error: UseCaseError, n_rows: u64| {
            self.refused(principal, INSIGHTS_VERB, &target, extension, n_rows, error)
        };
        let (filter, generation_id) = match Self::insight_filter(principal, &atlas, query) {
            Ok((filter, generation)) => (filter, generation.info.id),
            Err(error) => return refused(error, 0).await,
        };
        let slot = match self.export_slot() {
            Ok(slot) => slot,
            Err(error) => return refused(error, 0).await,
        };
        let key = self.pseudonym_key().await?.to_vec();
        let (sender, receiver) = mpsc::channel(BATCHES_IN_FLIGHT);
        let (count, counted) = match format {
            InsightFormat::Xlsx => {
                let (count, counted) = oneshot::channel();
                (Some(count), Some(counted))
            }
            _ => (None, None),
        };
        let store = Arc::clone(&self.store);
        let producer = tokio::spawn(async move { store.export_insights(filter, batch, count, sender).await });
        if let Some(counted) = counted {
            let n_rows = match counted.await {
                Ok(n_rows) => n_rows,
                Err(_) => {
                    let error = match producer.await {
                        Ok(Err(error)) => error.context("counting the rows of an export"),
                        _ => anyhow::anyhow!("the export's read stopped before counting its rows"),
                    };
                    return refused(UseCaseError::Internal(error), 0).await;
                }
            };
            if xlsx::check_rows(n_rows).is_err() {
                // Dropping the receiver ends the read.
                return refused(too_large(n_rows), n_rows).await;
            }
        }
        let rows = InsightRows { atlas, generation_id };
        let pseudonyms = Pseudonyms::new(key);
        let (rows, n_written) = Rows::new(receiver, producer, move |record: crate::store::insights::InsightRecord| {
            Some(rows.row(InsightView { collector: pseudonyms.of(record.collector_id), record }))
        });
        let (sink, chunks) = byte_channel();
        let writer = async move {
            let mut sink = sink;
            match format {
                InsightFormat::Csv { bom } => csv::write(&INSIGHT_COLUMNS, rows, &mut sink, bom).await?,
                InsightFormat::GeoJson => geojson::write(&INSIGHT_COLUMNS, rows, &mut sink).await?,
                InsightFormat::GeoPackage => gpkg::write(&INSIGHT_COLUMNS, rows, &mut sink).await?,
                InsightFormat::Xlsx => return xlsx::write(&INSIGHT_COLUMNS, rows, sink).await,
            }
            Ok(sink)
        };
        self.deliver(principal.clone(), INSIGHTS_VERB, target, extension, n_written, writer);
        Ok(Download { filename: format!("grapevine-insights-{}.{extension}", today()), chunks: chunks.holding(slot) })
    }

    /// `GET /api/v1/exports/rollups.csv`: the roll-up cells of a generation and period kind (every category, and
    /// all of them together), for the areas within the scope (and, for an unscoped principal, the insights outside
    /// every area).
    ///
    /// # Errors
    /// `Forbidden` (recorded); `NotFound` (`area_not_found`) for an unknown set or generation; `RateLimited` as for
    /// `export_insights`; the store or the trail fails.
    pub async fn export_rollups(
        &self,
        principal: &Principal,
        atlas: Arc<Atlas>,
        request: &RollupExport,
    ) -> Result<Download, UseCaseError> {
        let target = request.describe();
        self.authorize_audited(principal, Action::ExportInsights, ROLLUPS_VERB, &target).await?;
        let Some(generation) = atlas.find(request.set.as_deref(), request.generation) else {
            let known: Vec<String> = atlas
                .generations()
                .iter()
                .map(|generation| format!("{} {}", generation.info.set_name, generation.info.generation))
                .collect();
            let error = UseCaseError::NotFound {
                code: ErrorCode::AreaNotFound,
                message: format!("no such boundary set or generation; there are: {}", known.join(", ")),
            };
            return self.refused(principal, ROLLUPS_VERB, &target, "csv", 0, error).await;
        };
        let generation_id = generation.info.id;
        let slot = match self.export_slot() {
            Ok(slot) => slot,
            Err(error) => return self.refused(principal, ROLLUPS_VERB, &target, "csv", 0, error).await,
        };
        let visible = Visible::of(principal, &atlas, generation);
        let (sender, receiver) = mpsc::channel(BATCHES_IN_FLIGHT);
        let store = Arc::clone(&self.store);
        let (kind, days) = (request.kind, request.days);
        let producer =
            tokio::spawn(async move { store.export_cells(generation_id, kind, days, EXPORT_BATCH, sender).await });
        let rows = RollupRows { atlas, generation_id, kind };
        // `Visible::All` holds the cells outside every area too; a scope holds none of them.
        let (rows, n_written) = Rows::new(receiver, producer, move |cell: crate::store::rollup::RollupCell| {
            visible.contains(&cell.area_code).then(|| rows.row(cell))
        });
        let (sink, chunks) = byte_channel();
        let bom = request.bom;
        let writer = async move {
            let mut sink = sink;
            csv::write(&ROLLUP_COLUMNS, rows, &mut sink, bom).await?;
            Ok(sink)
        };
        self.deliver(principal.clone(), ROLLUPS_VERB, target, "csv", n_written, writer);
        let filename = format!("grapevine-rollups-{}-{}.csv", request.kind.as_str(), today());
        Ok(Download { filename, chunks: chunks.holding(slot) })
    }

    /// One of the node's export slots, held by the download until it ends; `RateLimited` when all are taken.
    fn export_slot(&self) -> Result<tokio::sync::OwnedSemaphorePermit, UseCaseError> {
        Arc::clone(&self.exports).try_acquire_owned().map_err(|_| UseCaseError::RateLimited {
            reason: "too many exports are running",
            retry_after: EXPORT_RETRY,
        })
    }

    /// Records an export refused after the permission check (`failed`, with the code), and refuses it.
    async fn refused(
        &self,
        principal: &Principal,
        verb: &str,
        target: &str,
        format: &str,
        n_rows: u64,
        error: UseCaseError,
    ) -> Result<Download, UseCaseError> {
        let detail = json!({ "format": format, "rows": n_rows, "code": error.code().as_str() });
        self.record(principal, verb, target, AuditOutcome::Failed, detail).await?;
        Err(error)
    }

    /// Runs an export's writer in a task of its own, then records it (before its last bytes leave) or, when it was
    /// cut short, records that.
    fn deliver(
        &self,
        principal: Principal,
        verb: &'static str,
        target: String,
        format: &'static str,
        n_written: Arc<AtomicU64>,
        writer: impl std::future::Future<Output = Result<ByteSink, Cut>> + Send + 'static,
    ) {
        let usecases = self.clone();
        tokio::spawn(async move {
            let written = writer.await;
            let n_rows = n_written.load(Ordering::Relaxed);
            match written {
                Ok(sink) => {
                    let detail = json!({ "format": format, "rows": n_rows });
                    match usecases.record(&principal, verb, &target, AuditOutcome::Allowed, detail).await {
                        // A client gone now had all but the last chunk; there is nothing left to tell anyone.
                        Ok(()) => drop(sink.finish().await),
                        Err(error) => {
                            tracing::error!(%error, verb, "cannot record an export; its download is cut short");
                        }
                    }
                }
                Err(cut) => {
                    let detail = match &cut {
                        Cut::ClientGone => json!({ "format": format, "rows": n_rows, "reason": "client_gone" }),
                        Cut::Failed(error) => {
                            tracing::error!(
                                error = format!("{error:#}"),
                                verb,
                                "an export failed; its download is cut short"
                            );
                            json!({ "format": format, "rows": n_rows, "code": ErrorCode::Internal.as_str() })
                        }
                    };
                    if let Err(error) = usecases.record(&principal, verb, &target, AuditOutcome::Failed, detail).await {
                        tracing::error!(%error, verb, "cannot record an export cut short in the audit trail");
                    }
                }
            }
        });
    }
}
