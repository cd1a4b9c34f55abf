//! Who a browser is, and whether its form may be believed.
//!
//! - The session cookie holds the session id; `UseCases::session` reads the session and its person at every request,
//!   so signing out or disabling a person holds at once on every node.
//! - `Signed`: a page for signed-in people. Without a live session a GET is sent to sign in (and brought back); any
//!   other method gets a page saying so, having changed nothing.
//! - `SignedForm`: a POST by a signed-in person: its origin is checked, its body read within `FORM_LIMIT`, and its
//!   `csrf` field checked against the session's token for the form's action (its path). A wrong token is refused
//!   with a 403 page and an audit entry (`csrf.refused`), and nothing is done.
//! - `AnonymousForm`: a POST before there is a session (signing in, setting a password): its origin is checked and
//!   its body read within the limit. (The set-password link's token is itself the secret such a form needs; signing
//!   in from another site's form is stopped by the origin check.)

use axum::body::Body;
use axum::extract::{FromRequest, FromRequestParts, OptionalFromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method};
use axum::response::{IntoResponse, Response};

use super::page::PageError;
use crate::app::{AppState, WebConfig};
use crate::domain::{local_path, RequestContext};
use crate::usecase::sign_in::SignedIn;
use crate::usecase::UseCaseError;

/// The most a form's body may hold.
pub(crate) const FORM_LIMIT: usize = 64 * 1024;

/// The session cookie's name: `__Host-` (which browsers accept only when `Secure`, for `Path=/` and no `Domain`)
/// when the pages are reached over https.
pub(crate) fn cookie_name(web: &WebConfig) -> &'static str {
    if web.https() {
        "__Host-grapevine"
    } else {
        "grapevine"
    }
}

/// `Set-Cookie` for a new session: for this host only, never sent by a script or to another site's subrequest.
/// A browser-session cookie: the server ends the session itself (idle, lifetime).
pub(crate) fn session_cookie(web: &WebConfig, value: &str) -> HeaderValue {
    let secure = if web.https() { "; Secure" } else { "" };
    let cookie = format!("{}={value}; Path=/; HttpOnly; SameSite=Lax{secure}", cookie_name(web));
    HeaderValue::try_from(cookie).expect("a session id is URL-safe base64")
}

/// `Set-Cookie` that removes the session cookie.
pub(crate) fn removed_cookie(web: &WebConfig) -> HeaderValue {
    let secure = if web.https() { "; Secure" } else { "" };
    let cookie = format!("{}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0{secure}", cookie_name(web));
    HeaderValue::try_from(cookie).expect("a fixed cookie")
}

/// The value of the cookie `name` among a request's `Cookie` headers.
pub(crate) fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(cookie, _)| *cookie == name)
        .map(|(_, value)| value.trim().to_owned())
        .filter(|value| !value.is_empty())
}

/// `/sign-in`, asking to come back to `return_to` afterwards (and saying why, when a session ended).
pub(crate) fn sign_in_location(return_to: &str, reason: Option<&str>) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    if return_to != "/" {
        query.append_pair("return_to", return_to);
    }
    if let Some(reason) = reason {
        query.append_pair("reason", reason);
    }
    let query = query.finish();
    if query.is_empty() {
        "/sign-in".to_owned()
    } else {
        format!("/sign-in?{query}")
    }
}

/// Whether a form was sent from another site: the browser says so (`Sec-Fetch-Site: cross-site`), or its `Origin`
/// is neither the host it was sent to nor the public URL's. `Origin: null` is no evidence either way: with
/// `Referrer-Policy: no-referrer` browsers send it on their own forms' POSTs; the CSRF token decides then.
fn cross_origin(headers: &HeaderMap, web: &WebConfig) -> bool {
    let text = |name| headers.get(name).and_then(|value: &HeaderValue| value.to_str().ok());
    if text(header::HeaderName::from_static("sec-fetch-site"))
        .is_some_and(|site| site.eq_ignore_ascii_case("cross-site"))
    {
        return true;
    }
    let Some(origin) = text(header::ORIGIN).filter(|origin| *origin != "null") else { return false };
    let authority = origin.split_once("://").map_or(origin, |(_, authority)| authority);
    let same_host = text(header::HOST).is_some_and(|host| host.eq_ignore_ascii_case(authority));
    let public = web.public_url.as_deref().is_some_and(|url| {
        let url = url.trim_end_matches('/');
        let origin_of_url = url.match_indices('/').nth(2).map_or(url, |(end, _)| &url[..end]);
        origin_of_url.eq_ignore_ascii_case(origin)
    });
    !(same_host || public)
}

/// A signed-in person's session, read from the cookie.
#[derive(Debug)]
pub(crate) struct Signed(pub SignedIn);

/// Why there is no live session: no cookie, or the use case's reason (`unauthorized`, `session_expired`,
/// `person_disabled`), or a failure.
async fn read_session(parts: &Parts, state: &AppState) -> Result<SignedIn, Option<UseCaseError>> {
    let Some(cookie) = cookie_value(&parts.headers, cookie_name(&state.config.web)) else { return Err(None) };
    state.usecases.session(&cookie, context(parts, state)).await.map_err(Some)
}

pub(crate) fn context(parts: &Parts, state: &AppState) -> RequestContext {
    crate::http::request_context(parts, &state.config.trusted_proxies)
}

impl FromRequestParts<AppState> for Signed {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let why = match read_session(parts, state).await {
            Ok(signed) => return Ok(Signed(signed)),
            Err(Some(UseCaseError::Internal(error))) => return Err(PageError::internal(error).into_response()),
            Err(why) => why,
        };
        let code = why.as_ref().map(UseCaseError::code);
        if !matches!(parts.method, Method::GET | Method::HEAD) {
            let code = code.unwrap_or(grapevine_sync_proto::ErrorCode::Unauthorized);
            return Err(PageError::not_signed_in(code).into_response());
        }
        let return_to = parts.uri.path_and_query().map_or("/", |path| path.as_str());
        let return_to = local_path(return_to).unwrap_or("/");
        let reason = code.map(|code| code.as_str()).filter(|code| *code != "unauthorized");
        let mut response = super::see_other(&sign_in_location(return_to, reason));
        if why.is_some() {
            response.headers_mut().append(header::SET_COOKIE, removed_cookie(&state.config.web));
        }
        Err(response)
    }
}

/// A page anyone may see, with the person in the header when signed in.
impl OptionalFromRequestParts<AppState> for Signed {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Option<Self>, Self::Rejection> {
        match read_session(parts, state).await {
            Ok(signed) => Ok(Some(Signed(signed))),
            Err(Some(UseCaseError::Internal(error))) => Err(PageError::internal(error).into_response()),
            Err(_) => Ok(None),
        }
    }
}

/// Where a request came from, for the use cases' audit entries.
#[derive(Debug)]
pub(crate) struct Context(pub RequestContext);

impl FromRequestParts<AppState> for Context {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        Ok(Context(context(parts, state)))
    }
}

/// A form's fields, as sent (`application/x-www-form-urlencoded`). Its `Debug` names the fields only: a form may
/// hold a password.
#[derive(Default)]
pub(crate) struct Form(Vec<(String, String)>);

impl std::fmt::Debug for Form {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.0.iter().map(|(name, _)| name)).finish()
    }
}

impl Form {
    /// The first value of the field `name`; empty when it was not sent.
    pub fn get(&self, name: &str) -> &str {
        self.0.iter().find(|(field, _)| field == name).map_or("", |(_, value)| value.as_str())
    }

    /// A query string's fields (a GET form, such as the audit trail's filter).
    pub fn from_query(query: Option<&str>) -> Form {
        Form(form_urlencoded::parse(query.unwrap_or_default().as_bytes()).into_owned().collect())
    }

    /// Fields already read.
    pub fn from_pairs(pairs: Vec<(String, String)>) -> Form {
        Form(pairs)
    }

    /// Reads a form's body, within `FORM_LIMIT`.
    async fn read(headers: &HeaderMap, body: Body) -> Result<Form, PageError> {
        let declared = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse::<usize>().ok());
        if declared.is_some_and(|length| length > FORM_LIMIT) {
            return Err(PageError::too_large());
        }
        let bytes = axum::body::to_bytes(body, FORM_LIMIT).await.map_err(|_| PageError::too_large())?;
        Ok(Form(form_urlencoded::parse(&bytes).into_owned().collect()))
    }
}

/// A POST from a signed-in person whose CSRF token is right for the form's action and whose origin is this site.
#[derive(Debug)]
pub(crate) struct SignedForm {
    pub signed: SignedIn,
    pub form: Form,
}

impl FromRequest<AppState> for SignedForm {
    type Rejection = Response;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = request.into_parts();
        let Signed(signed) = <Signed as FromRequestParts<AppState>>::from_request_parts(&mut parts, state).await?;
        let action = parts.uri.path().to_owned();
        if cross_origin(&parts.headers, &state.config.web) {
            return Err(refuse_csrf(state, Some(&signed), &signed.principal.context, &action).await);
        }
        let form = Form::read(&parts.headers, body).await.map_err(|error| error.for_person(&signed).into_response())?;
        if !signed.csrf_matches(&action, form.get("csrf")) {
            return Err(refuse_csrf(state, Some(&signed), &signed.principal.context, &action).await);
        }
        Ok(SignedForm { signed, form })
    }
}

/// A POST from someone not (yet) signed in, from this site.
#[derive(Debug)]
pub(crate) struct AnonymousForm {
    pub form: Form,
    pub context: RequestContext,
}

impl FromRequest<AppState> for AnonymousForm {
    type Rejection = Response;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let (parts, body) = request.into_parts();
        let context = context(&parts, state);
        if cross_origin(&parts.headers, &state.config.web) {
            return Err(refuse_csrf(state, None, &context, parts.uri.path()).await);
        }
        let form = Form::read(&parts.headers, body).await.map_err(IntoResponse::into_response)?;
        Ok(AnonymousForm { form, context })
    }
}

/// The 403 page for a form with a wrong token or from another site, recorded in the audit trail.
async fn refuse_csrf(state: &AppState, signed: Option<&SignedIn>, context: &RequestContext, path: &str) -> Response {
    if let Err(error) = state.usecases.record_csrf_refusal(signed, context, path).await {
        tracing::error!(%error, "cannot record a refused form in the audit trail");
    }
    let page = PageError::csrf();
    match signed {
        Some(signed) => page.for_person(signed).into_response(),
        None => page.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_form_from_another_site_is_told_apart() {
        let web = WebConfig { public_url: Some("https://grapevine.example.org/".into()), ..WebConfig::default() };
        let headers = |pairs: &[(&'static str, &str)]| {
            let mut headers = HeaderMap::new();
            for (name, value) in pairs {
                headers.insert(*name, HeaderValue::from_str(value).unwrap());
            }
            headers
        };
        assert!(!cross_origin(&headers(&[("host", "127.0.0.1:8080")]), &web));
        assert!(!cross_origin(&headers(&[("host", "127.0.0.1:8080"), ("origin", "http://127.0.0.1:8080")]), &web));
        assert!(!cross_origin(&headers(&[("host", "10.0.0.1"), ("origin", "https://grapevine.example.org")]), &web));
        assert!(!cross_origin(&headers(&[("host", "127.0.0.1:8080"), ("origin", "null")]), &web));
        assert!(cross_origin(&headers(&[("host", "127.0.0.1:8080"), ("origin", "https://evil.example")]), &web));
        assert!(cross_origin(&headers(&[("host", "127.0.0.1:8080"), ("sec-fetch-site", "cross-site")]), &web));
    }

    #[test]
    fn the_session_cookie_is_host_only_and_secure_over_https() {
        let https = WebConfig { behind_tls_proxy: true, ..WebConfig::default() };
        let cookie = session_cookie(&https, "abc");
        assert_eq!(cookie, "__Host-grapevine=abc; Path=/; HttpOnly; SameSite=Lax; Secure");
        assert_eq!(session_cookie(&WebConfig::default(), "abc"), "grapevine=abc; Path=/; HttpOnly; SameSite=Lax");
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_static("other=1; grapevine=abc"));
        assert_eq!(cookie_value(&headers, "grapevine").as_deref(), Some("abc"));
        assert_eq!(cookie_value(&headers, "__Host-grapevine"), None);
    }
}
