//! `GET /api/v1/openapi.json`: the OpenAPI 3.1 description of the API, generated from the handlers and their
//! response types (`utoipa`), so it cannot drift from the code. The suite runs schemathesis against a live server
//! with it (`tests/it/openapi.rs`): no 5xx, every answer as described.

use std::sync::LazyLock;

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::OpenApi;

use crate::app::AppState;

pub const OPENAPI: &str = "/api/v1/openapi.json";

pub fn router() -> Router<AppState> {
    Router::new().route(OPENAPI, get(description))
}

/// A refusal, as every error is answered: a stable code from the one table (docs/access.md, docs/sync-protocol.md)
/// and a message saying what was wrong.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct ErrorBody {
    /// Stable, `snake_case`; clients branch on it.
    pub code: String,
    /// For people; may change between versions.
    pub message: String,
}

/// Every refusal: 401 without a valid token, 403 for a role that may not, 404 for something absent or outside the
/// caller's scope (alike), 409 for a stale write, 422 for bad input, 429 when rate limited.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)] // a description, never built
pub(crate) enum Refusals {
    #[response(status = "4XX", description = "Refused: `{code, message}`")]
    Refused(#[to_schema] ErrorBody),
}

/// Which boundary generation a query reads.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // read by the handlers from the raw query; here to be described
pub(crate) struct Generation {
    /// The boundary set; the filing set when not given.
    set: Option<String>,
    /// The set's generation number; its newest when not given.
    #[param(minimum = 1)]
    generation: Option<i64>,
}

/// The collector's local days a query reads: `from` inclusive, `to` exclusive, `YYYY-MM-DD` from 1900-01-01 to
/// 2200-01-01.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(crate) struct Days {
    #[param(format = Date)]
    from: Option<String>,
    #[param(format = Date)]
    to: Option<String>,
}

/// The status of an insight, as a filter names it.
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
pub(crate) enum Status {
    Filed,
    OutsideCoverage,
    Rejected,
    Withdrawn,
}

/// The filter on insights, shared by the list and the exports (docs/workbench.md).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(crate) struct InsightFilterParams {
    /// The boundary set `area` codes are read in; the filing set when not given.
    set: Option<String>,
    #[param(minimum = 1)]
    generation: Option<i64>,
    /// Area codes of that generation (any of them); repeat the parameter for several.
    #[param(explode = true)]
    area: Option<Vec<String>>,
    /// Category slugs of the campaign (any of them).
    #[param(explode = true)]
    category: Option<Vec<String>>,
    /// staff, barber-hairdresser, pupil, youth-worker or other.
    channel: Option<String>,
    #[param(format = Date)]
    from: Option<String>,
    #[param(format = Date)]
    to: Option<String>,
    #[param(explode = true, inline)]
    status: Option<Vec<Status>>,
    near_boundary: Option<bool>,
    #[param(minimum = 1, maximum = 5)]
    feeling_safe_min: Option<i64>,
    #[param(minimum = 1, maximum = 5)]
    feeling_safe_max: Option<i64>,
    #[param(inline)]
    triage: Option<crate::domain::insight_query::TriageState>,
    /// An analysts' tag.
    tag: Option<String>,
    /// Words to find in the text (all of them; English stemming, and as typed). Anything that is not a letter or
    /// a digit only separates words.
    q: Option<String>,
}

/// Where a page starts and how long it is.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(crate) struct PageParams {
    /// 1 to 200; 50 when not given.
    #[param(minimum = 1, maximum = 200)]
    limit: Option<i64>,
    /// `next_cursor` from the page before.
    cursor: Option<String>,
}

struct BearerToken;

impl utoipa::Modify for BearerToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Grapevine",
        description = "What neighbourhoods say about community safety: roll-ups, priorities, insights and their \
                       triage for analysts; enrolment for phones. Every request but enrolment takes an API token in \
                       the header `Authorization: Bearer <token>`; what each role may call is in docs/access.md."
    ),
    paths(
        super::areas::list_areas,
        super::areas::one_area,
        super::priorities::priorities,
        super::insights::list,
        super::insights::one,
        super::insights::triage,
        super::exports::insights_csv,
        super::exports::insights_geojson,
        super::exports::insights_gpkg,
        super::exports::insights_xlsx,
        super::exports::rollups_csv,
        super::audit::audit_trail,
        super::enrol::enrol,
    ),
    modifiers(&BearerToken),
    security(("bearer" = [])),
    tags(
        (name = "roll-ups", description = "Counts by area and category: never insight-level data"),
        (name = "insights", description = "The analyst's workbench: what people said, and its triage"),
        (name = "exports", description = "Files for Excel, Power BI and QGIS: the insights and the roll-up table"),
        (name = "audit", description = "The audit trail, for admins"),
        (name = "phones", description = "How a phone joins"),
    )
)]
pub struct ApiDoc;

/// The description as JSON, built once.
static DESCRIPTION: LazyLock<String> =
    LazyLock::new(|| ApiDoc::openapi().to_json().expect("the OpenAPI description serialises"));

async fn description() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], DESCRIPTION.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_description_is_openapi_3_1_and_names_every_api_route() {
        let description: serde_json::Value = serde_json::from_str(&DESCRIPTION).unwrap();
        assert!(description["openapi"].as_str().unwrap().starts_with("3.1"), "{}", description["openapi"]);
        let paths = description["paths"].as_object().unwrap();
        for path in [
            "/api/v1/areas",
            "/api/v1/insights",
            "/api/v1/insights/{id}/triage",
            "/api/v1/exports/insights.gpkg",
            "/api/v1/exports/rollups.csv",
            "/api/v1/enrol",
        ] {
            assert!(paths.contains_key(path), "{path}");
        }
        assert_eq!(description["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
    }
}
