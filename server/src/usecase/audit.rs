//! Writing the audit trail from the use cases, and reading it (`grapevine audit`, `GET /api/v1/audit`).
//!
//! An action and its entry: the entry (outcome `allowed`) is appended BEFORE the action runs, so an action whose entry
//! cannot be written does not happen; if the action then fails, a second entry (outcome `failed`, with the error's
//! code) follows. A refusal by the permission check is an entry (`refused`) of its own. Entries name ids and counts,
//! never content (`docs/audit.md`).

use std::future::Future;

use futures_util::stream::BoxStream;
use futures_util::{StreamExt, TryStreamExt};
use grapevine_sync_proto::ErrorCode;
use serde_json::{json, Value};

use super::{UseCaseError, UseCases};
use crate::audit::{AuditEntry, AuditFilter, AuditOutcome, NewAuditEntry, Verified};
use crate::domain::{Action, Actor, Principal};

impl UseCases {
    /// Appends one entry for `principal`.
    ///
    /// # Errors
    /// The entry cannot be written (then the action must not happen).
    pub(crate) async fn record(
        &self,
        principal: &Principal,
        verb: &str,
        target: &str,
        outcome: AuditOutcome,
        detail: Value,
    ) -> Result<(), UseCaseError> {
        self.append(principal, verb, target, outcome, detail).await.map(drop)
    }

    /// Appends one entry for `principal` and returns it as stored.
    async fn append(
        &self,
        principal: &Principal,
        verb: &str,
        target: &str,
        outcome: AuditOutcome,
        detail: Value,
    ) -> Result<AuditEntry, UseCaseError> {
        let entry = NewAuditEntry {
            actor: principal.actor.audit_name(),
            role: principal.role.as_str().to_owned(),
            action: verb.to_owned(),
            target: target.to_owned(),
            outcome,
            client_addr: principal.context.client_addr.map(|address| address.to_string()),
            request_id: principal.context.request_id.clone(),
            detail,
        };
        Ok(self.store.append_audit(entry).await?)
    }

    /// The permission check, with the refusal in the trail.
    ///
    /// # Errors
    /// `Forbidden` (recorded), or the refusal cannot be recorded.
    pub(crate) async fn authorize_audited(
        &self,
        principal: &Principal,
        action: Action,
        verb: &str,
        target: &str,
    ) -> Result<(), UseCaseError> {
        match Self::authorize(principal, action) {
            Ok(()) => Ok(()),
            Err(refusal) => {
                self.record(principal, verb, target, AuditOutcome::Refused, serde_json::json!({})).await?;
                Err(refusal)
            }
        }
    }

    /// Runs `act` as `verb` on `target`: checked, recorded before it runs, and its failure recorded after.
    ///
    /// # Errors
    /// Refused, the entry cannot be written (nothing was done), or `act` failed.
    pub(crate) async fn audited<T>(
        &self,
        principal: &Principal,
        action: Action,
        verb: &str,
        target: &str,
        detail: Value,
        act: impl Future<Output = Result<T, UseCaseError>>,
    ) -> Result<T, UseCaseError> {
        self.authorize_audited(principal, action, verb, target).await?;
        self.record(principal, verb, target, AuditOutcome::Allowed, detail).await?;
        match act.await {
            Ok(done) => Ok(done),
            Err(error) => {
                let failed = serde_json::json!({ "code": error.code().as_str() });
                if let Err(not_recorded) = self.record(principal, verb, target, AuditOutcome::Failed, failed).await {
                    tracing::error!(error = %not_recorded, verb, "cannot record a failed action in the audit trail");
                }
                Err(error)
            }
        }
    }

    /// Runs a listing as `verb` on `target`: checked, read, then recorded with its row count (a read whose entry
    /// cannot be written is not answered).
    ///
    /// # Errors
    /// Refused; the read fails; the entry cannot be written.
    pub(crate) async fn audited_listing<T>(
        &self,
        principal: &Principal,
        action: Action,
        verb: &str,
        target: &str,
        read: impl Future<Output = anyhow::Result<Vec<T>>>,
    ) -> Result<Vec<T>, UseCaseError> {
        self.authorize_audited(principal, action, verb, target).await?;
        let rows = read.await?;
        self.record(principal, verb, target, AuditOutcome::Allowed, json!({ "rows": rows.len() })).await?;
        Ok(rows)
    }

    /// The entries `filter` lets through, oldest first (newest first from an `AuditCursor::Before`), as the trail
    /// stood when asked. A person's read of the trail (over the API or the audit page) is itself an entry, which the
    /// read does not list; the operator at the server's command line, who holds the database itself, is not recorded
    /// reading it.
    ///
    /// # Errors
    /// Refused; `since` not before `until`; the entry cannot be written.
    pub async fn audit_entries(
        &self,
        principal: &Principal,
        filter: AuditFilter,
    ) -> Result<BoxStream<'_, anyhow::Result<AuditEntry>>, UseCaseError> {
        self.authorize_audited(principal, Action::ReadAudit, "audit.list", "audit_log").await?;
        let detail = json!({
            "actor": filter.actor,
            "action": filter.action,
            "since": filter.since.map(crate::audit::canonical_time),
            "until": filter.until.map(crate::audit::canonical_time),
        });
        let newest_first = matches!(filter.cursor, crate::audit::AuditCursor::Before(_));
        // Lazy: nothing is read before the entry below is written.
        let entries = crate::audit::list(self.store.as_ref(), filter)
            .map_err(|error| UseCaseError::Invalid { code: ErrorCode::InvalidQuery, message: error.to_string() })?;
        let own_entry = if matches!(principal.actor, Actor::Operator { .. }) {
            None
        } else {
            Some(self.append(principal, "audit.list", "audit_log", AuditOutcome::Allowed, detail).await?.seq)
        };
        // Read newest first, the entries at and after this read's own come first, and are passed over.
        Ok(match own_entry {
            Some(own) if newest_first => {
                entries.try_skip_while(move |entry| std::future::ready(Ok(entry.seq >= own))).boxed()
            }
            Some(own) => entries.try_take_while(move |entry| std::future::ready(Ok(entry.seq < own))).boxed(),
            None => entries,
        })
    }

    /// Recomputes the whole chain (a check of the hashes, which names no one; not itself recorded).
    ///
    /// # Errors
    /// Refused; the store cannot be read.
    pub async fn verify_audit(&self, principal: &Principal) -> Result<Verified, UseCaseError> {
        self.authorize_audited(principal, Action::ReadAudit, "audit.verify", "audit_log").await?;
        Ok(crate::audit::verify_store(self.store.as_ref()).await?)
    }
}
