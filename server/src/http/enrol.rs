//! `POST /api/v1/enrol`: a phone redeems an invitation code for its own device token (docs/sync-protocol.md,
//! "Enrolment"). No bearer token: the code is the credential.

use std::net::{IpAddr, SocketAddr};

use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Extension, Json, Router};
use grapevine_sync_proto::doc_id::id_key_from_hex;
use grapevine_sync_proto::ErrorCode;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::error::{shown, ApiError};
use crate::app::AppState;
use crate::domain::RequestContext;
use crate::store::RedeemError;

/// What the body must be, as refusals say it.
const EXPECTED_BODY: &str = r#"{"code": "…", "label": "…", "id_key": "64 hex digits"}"#;

/// The longest device label accepted, in characters.
pub const MAX_LABEL_CHARS: usize = 100;

pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/enrol", post(enrol))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct EnrolRequest {
    code: String,
    /// A label for the device, e.g. "Sam's phone"; absent or empty, the invitation's label.
    #[serde(default)]
    label: String,
    /// The phone's id key (64 hex digits), kept with the device: the insight ids the phone makes with it are the
    /// device's alone to create (docs/sync-protocol.md, "Who may write a document"). Optional, for older phones.
    #[serde(default)]
    id_key: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct EnrolResponse {
    device_id: Uuid,
    collector_id: Uuid,
    /// The device's bearer token for `/sync`, shown only now.
    token: String,
}

/// The address a request is counted against: its peer's, or, when the peer is a trusted reverse proxy, the
/// right-most address in `X-Forwarded-For` that is not itself a trusted proxy (the left part of the header is
/// whatever the client wrote, and believing it would let a guesser pick a fresh address for every guess). An entry
/// that is not an address ends the walk at the proxy.
pub(crate) fn client_address(peer: IpAddr, headers: &HeaderMap, trusted: &[IpAddr]) -> IpAddr {
    let is_trusted = |address: IpAddr| trusted.iter().any(|proxy| proxy.to_canonical() == address);
    let peer = peer.to_canonical();
    if !is_trusted(peer) {
        return peer;
    }
    let forwarded: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .collect();
    for entry in forwarded.into_iter().rev() {
        let parsed = entry.parse::<IpAddr>().or_else(|_| entry.parse::<SocketAddr>().map(|address| address.ip()));
        match parsed.map(|address| address.to_canonical()) {
            Ok(address) if is_trusted(address) => {}
            Ok(address) => return address,
            Err(_) => return peer,
        }
    }
    peer
}

/// The key an address's enrolment budget is kept under: its network (`RequestContext::network`).
pub(crate) fn budget_key(address: Option<IpAddr>) -> IpAddr {
    crate::domain::access::network_of(address)
}

/// Redeems a code, within the address's budget of unknown codes: every attempt takes a token first (so parallel
/// guesses cannot outrun the count) and gets it back unless the code was unknown. A spent budget refuses every code,
/// right ones too, with `429 rate_limited` and `Retry-After`; nothing is looked up.
#[utoipa::path(post, path = "/api/v1/enrol", tag = "phones", request_body = EnrolRequest,
    responses((status = 201, body = EnrolResponse), super::openapi::Refusals), security(()))]
pub(crate) async fn enrol(
    State(state): State<AppState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    request_id: Option<Extension<crate::telemetry::RequestId>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    request: Result<Json<EnrolRequest>, JsonRejection>,
) -> Response {
    // The code is a credential: one written into the URL would end up in proxy logs. Refused before the budget is
    // touched, since nothing is looked up.
    if let Some(name) = query.as_deref().and_then(|query| form_urlencoded::parse(query.as_bytes()).next()) {
        return ApiError::invalid_query(format!(
            "enrol takes no query parameters (got '{}'); send {EXPECTED_BODY} as the JSON body",
            shown(&name.0)
        ))
        .into_response();
    }
    let trusted = &state.config.trusted_proxies;
    let client_addr = peer.map(|Extension(ConnectInfo(peer))| client_address(peer.ip(), &headers, trusted));
    let key = budget_key(client_addr);
    let context =
        RequestContext { request_id: request_id.map(|Extension(request_id)| request_id.to_string()), client_addr };
    let limiter = &state.enrol_limiter;
    if !limiter.allow(key) {
        // Whole seconds, rounded up: a client that waits this long finds a token.
        let wait = (limiter.wait(&key).as_secs_f64().ceil() as u64).max(1);
        tracing::debug!(address = %key, "enrolment refused: too many unknown codes from this address");
        let message = format!("too many unknown codes from this network; try again in {wait} s");
        let mut response =
            ApiError::new(StatusCode::TOO_MANY_REQUESTS, ErrorCode::RateLimited, message).into_response();
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(wait));
        return response;
    }
    let outcome = redeem(&state, request, context).await;
    if !matches!(&outcome, Err(error) if error.code == ErrorCode::InvitationUnknown) {
        limiter.refund(&key);
    } else if !limiter.wait(&key).is_zero() {
        // Said once, as the budget runs out, not for every refusal after it: a guesser must not fill the log.
        tracing::warn!(address = %key, "too many unknown invitation codes from this address; refusing enrolment for now");
    }
    outcome.into_response()
}

async fn redeem(
    state: &AppState,
    request: Result<Json<EnrolRequest>, JsonRejection>,
    context: RequestContext,
) -> Result<(StatusCode, Json<EnrolResponse>), ApiError> {
    let Json(request) = request.map_err(|rejection| ApiError::json_body(&rejection, EXPECTED_BODY))?;
    let label = request.label.trim();
    if label.chars().count() > MAX_LABEL_CHARS || label.chars().any(char::is_control) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::InvalidRequest,
            format!("label: at most {MAX_LABEL_CHARS} characters on one line"),
        ));
    }
    let id_key = match request.id_key.as_deref().map(|text| (text, id_key_from_hex(text))) {
        None => None,
        Some((_, Some(key))) => Some(key),
        Some((text, None)) => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                ErrorCode::InvalidRequest,
                format!("id_key: 64 hex digits expected, not '{}'", shown(text)),
            ))
        }
    };
    let now = time::OffsetDateTime::now_utc();
    let secret = &state.invitation_secret;
    match state.usecases.enrol(secret, &request.code, label, id_key.as_ref(), now, context).await {
        Ok((device, token)) => {
            tracing::info!(device = %device.device_id, collector = %device.collector_id, "enrolled a device");
            Ok((
                StatusCode::CREATED,
                Json(EnrolResponse { device_id: device.device_id, collector_id: device.collector_id, token }),
            ))
        }
        Err(RedeemError::Database(error)) => Err(ApiError::from(error)),
        Err(RedeemError::Unknown) => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::InvitationUnknown,
            "no invitation has this code; check it character by character",
        )),
        Err(RedeemError::Expired) => Err(gone(ErrorCode::InvitationExpired, "this invitation has expired")),
        Err(RedeemError::UsedUp) => Err(gone(ErrorCode::InvitationUsedUp, "every use of this invitation is taken")),
        Err(RedeemError::Revoked) => Err(gone(ErrorCode::InvitationRevoked, "this invitation was withdrawn")),
    }
}

fn gone(code: ErrorCode, message: &str) -> ApiError {
    ApiError::new(StatusCode::GONE, code, format!("{message}; ask for a new one"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(address: &str) -> IpAddr {
        address.parse().unwrap()
    }

    fn key(address: &str) -> IpAddr {
        budget_key(Some(ip(address)))
    }

    #[test]
    fn an_ipv6_network_shares_one_budget_and_a_mapped_ipv4_address_is_itself() {
        assert_eq!(key("2001:db8:1:2:aaaa::1"), key("2001:db8:1:2:bbbb::9"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        assert_eq!(key("::ffff:192.0.2.7"), key("192.0.2.7"));
        assert_ne!(key("192.0.2.7"), key("192.0.2.8"));
        assert_eq!(budget_key(None), IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED));
    }

    #[test]
    fn forwarded_for_is_believed_only_from_a_trusted_proxy_and_only_its_right_end() {
        let headers = |values: &[&str]| {
            let mut headers = HeaderMap::new();
            for value in values {
                headers.append("x-forwarded-for", HeaderValue::from_str(value).unwrap());
            }
            headers
        };
        let proxies = [ip("127.0.0.1"), ip("10.0.0.2")];
        // Not from a proxy: the header is the client's own words.
        assert_eq!(client_address(ip("192.0.2.7"), &headers(&["198.51.100.1"]), &proxies), ip("192.0.2.7"));
        assert_eq!(client_address(ip("127.0.0.1"), &headers(&["198.51.100.1"]), &[]), ip("127.0.0.1"));
        // From a proxy: the right-most address that is not a proxy; what the client prepended is ignored.
        let chain = headers(&["203.0.113.9, 198.51.100.1", "10.0.0.2"]);
        assert_eq!(client_address(ip("127.0.0.1"), &chain, &proxies), ip("198.51.100.1"));
        assert_eq!(
            client_address(ip("::ffff:127.0.0.1"), &headers(&["198.51.100.1:4711"]), &proxies),
            ip("198.51.100.1")
        );
        // Nothing usable: the proxy's own address.
        assert_eq!(client_address(ip("127.0.0.1"), &headers(&[]), &proxies), ip("127.0.0.1"));
        assert_eq!(client_address(ip("127.0.0.1"), &headers(&["not an address"]), &proxies), ip("127.0.0.1"));
        assert_eq!(client_address(ip("127.0.0.1"), &headers(&["10.0.0.2"]), &proxies), ip("127.0.0.1"));
    }
}
