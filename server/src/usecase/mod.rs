//! The use cases: every action a person, a device or an operator can take is one method of `UseCases`. Each takes
//! the acting `Principal` first, checks the action against `domain::access::permits` (the one table), narrows what it
//! reads to the principal's scope, writes the audit entry, and only then calls the store. HTTP (`http/`), the sync
//! endpoint (`sync`) and the command line (`cli`) are adapters around it: they parse, call and render, and never hold
//! the store themselves (`tests/it/one_door.rs` proves it).

pub mod access;
pub mod audit;
pub mod cohorts;
pub mod exports;
pub mod insights;
pub mod oidc;
pub mod people;
pub mod reference;
pub mod rollups;
pub mod sign_in;
pub mod sync;

use std::net::IpAddr;
use std::sync::Arc;

use grapevine_sync_proto::ErrorCode;

use crate::domain::{Action, Principal};
use crate::store::Store;
use crate::sync::RateLimiter;

/// How many refused credentials from one network are recorded one by one: this many at once, and this many a minute
/// after that. Beyond it they are still refused, and counted in the log, but not each appended to the trail, so
/// nobody can fill the trail (or queue every audited action behind its lock) by spraying bad tokens.
const REFUSALS_RECORDED_PER_MINUTE: f64 = 20.0;

/// The door every action goes through.
#[derive(Debug, Clone)]
pub struct UseCases {
    store: Arc<dyn Store>,
    /// Per network, how many more refused credentials are recorded one by one.
    refusals_recorded: Arc<RateLimiter<IpAddr>>,
    /// How long browser sessions live.
    sessions: sign_in::SessionPolicy,
    /// Per network, how many more failed password sign-ins are taken (`sign_in::FAILURES_PER_NETWORK_*`).
    sign_in_failures: Arc<RateLimiter<IpAddr>>,
    /// The organisation's identity provider, when one is configured (`with_oidc`).
    oidc: Option<Arc<crate::identity::oidc::OidcClient>>,
    /// The key collector pseudonyms are made with, read from the store once.
    pseudonym_key: Arc<tokio::sync::OnceCell<Vec<u8>>>,
    /// The exports this node may run at once (`exports::EXPORTS_AT_ONCE`), shared by every clone.
    exports: Arc<tokio::sync::Semaphore>,
}

/// Why a use case did not do what was asked. Each maps onto the one code table; adapters choose only how to say it
/// (an HTTP status, an exit code).
#[derive(Debug, thiserror::Error)]
pub enum UseCaseError {
    /// The principal's role does not allow the action at all. Used only where existence is no secret (an analyst
    /// asking for the people page); anything scoped answers `NotFound`.
    #[error("refused (forbidden): the role {role} may not {action}", action = action.as_str())]
    Forbidden { role: crate::domain::Role, action: Action },
    /// No credential, or one that is unknown, expired, revoked or whose holder is disabled; the code says which.
    #[error("refused ({code}): {message}")]
    Unauthenticated { code: ErrorCode, message: String },
    /// Absent, or outside the principal's scope: the two are answered alike, so existence does not leak.
    #[error("refused ({code}): {message}")]
    NotFound { code: ErrorCode, message: String },
    /// The input is wrong; the message names what.
    #[error("refused ({code}): {message}")]
    Invalid { code: ErrorCode, message: String },
    /// The thing changed since the version the caller read; nothing was written (`triage_changed`).
    #[error("refused ({code}): {message}")]
    Conflict { code: ErrorCode, message: String },
    /// Too many at once (`reason` says of what: failed sign-ins from one account or network, exports running on
    /// this node); try again after `retry_after`.
    #[error("refused (rate_limited): {reason}; try again in {} seconds", retry_after.as_secs().max(1))]
    RateLimited { reason: &'static str, retry_after: std::time::Duration },
    /// The store (or the audit trail) failed; the detail is for the log, never the client.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl UseCaseError {
    /// The stable code an adapter reports.
    #[must_use]
    pub fn code(&self) -> ErrorCode {
        match self {
            UseCaseError::Forbidden { .. } => ErrorCode::Forbidden,
            UseCaseError::Unauthenticated { code, .. }
            | UseCaseError::NotFound { code, .. }
            | UseCaseError::Invalid { code, .. }
            | UseCaseError::Conflict { code, .. } => *code,
            UseCaseError::RateLimited { .. } => ErrorCode::RateLimited,
            UseCaseError::Internal(_) => ErrorCode::Internal,
        }
    }

    /// No credential was given, or none the server knows.
    #[must_use]
    pub fn unauthorized() -> UseCaseError {
        UseCaseError::Unauthenticated {
            code: ErrorCode::Unauthorized,
            message: "a valid bearer token is required".into(),
        }
    }
}

impl UseCases {
    #[must_use]
    pub fn new(store: Arc<dyn Store>) -> UseCases {
        let per_second = REFUSALS_RECORDED_PER_MINUTE / 60.0;
        let refusals_recorded = Arc::new(RateLimiter::new(per_second, REFUSALS_RECORDED_PER_MINUTE));
        let sign_in_failures = Arc::new(RateLimiter::new(
            sign_in::FAILURES_PER_NETWORK_PER_MINUTE / 60.0,
            sign_in::FAILURES_PER_NETWORK_BURST,
        ));
        UseCases {
            store,
            refusals_recorded,
            sessions: sign_in::SessionPolicy::default(),
            sign_in_failures,
            oidc: None,
            pseudonym_key: Arc::default(),
            exports: Arc::new(tokio::sync::Semaphore::new(exports::EXPORTS_AT_ONCE)),
        }
    }

    /// The same door, with each network allowed `burst` failed sign-ins at once and `per_minute` after that (the
    /// defaults are `sign_in::FAILURES_PER_NETWORK_*`).
    #[must_use]
    pub fn with_sign_in_budget(self, burst: f64, per_minute: f64) -> UseCases {
        let sign_in_failures = Arc::new(RateLimiter::new(per_minute / 60.0, burst));
        UseCases { sign_in_failures, ..self }
    }

    /// The same door, with browser sessions living as `policy` says.
    #[must_use]
    pub fn with_sessions(self, policy: sign_in::SessionPolicy) -> UseCases {
        UseCases { sessions: policy, ..self }
    }

    /// Opens (creating and migrating) the database at `database_url`, for the command line.
    ///
    /// # Errors
    /// The database cannot be opened or migrated.
    pub async fn open(database_url: &str) -> anyhow::Result<UseCases> {
        Ok(UseCases::new(crate::store::open(database_url).await?))
    }

    /// The first line of every use case: may this principal take this action at all?
    ///
    /// # Errors
    /// `UseCaseError::Forbidden`.
    fn authorize(principal: &Principal, action: Action) -> Result<(), UseCaseError> {
        if crate::domain::access::permits(principal.role, action) {
            Ok(())
        } else {
            Err(UseCaseError::Forbidden { role: principal.role, action })
        }
    }
}
