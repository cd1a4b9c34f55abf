//! `/audit` (admins): the audit trail (the next slice).

use axum::Router;

use crate::app::AppState;

pub(crate) fn router() -> Router<AppState> {
    Router::new()
}
