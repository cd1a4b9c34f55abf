//! Every route, with a token of every role, in and out of scope, on both backends, against what `docs/access.md`
//! says: the route table names each route's action, the role table whether each role may take it. The docs and the
//! code cannot drift apart: a route the server has and the table lacks fails too.

use std::collections::{BTreeMap, BTreeSet};

use grapevine_server::domain::{Action, Principal, Role};
use grapevine_server::usecase::UseCases;
use grapevine_tests::points::{ABBEY_HULTON, JOINERS_SQUARE};
use grapevine_tests::{Backend, Phone, TestApp};
use serde_json::Value;

const ACCESS_MD: &str = include_str!("../../docs/access.md");

/// The rows of the table between `<!-- NAME -->` and `<!-- /NAME -->`, header and rule left out, cells trimmed.
fn table(name: &str) -> Vec<Vec<String>> {
    let start = format!("<!-- {name} -->");
    let end = format!("<!-- /{name} -->");
    let body = ACCESS_MD.split(&start).nth(1).and_then(|rest| rest.split(&end).next()).expect("the table's markers");
    body.lines()
        .filter(|line| line.starts_with('|'))
        .skip(2)
        .map(|line| line.trim_matches('|').split('|').map(|cell| cell.trim().trim_matches('`').to_owned()).collect())
        .collect()
}

/// What `docs/access.md` says a role may do with an action: "yes", "in scope" or "–".
fn documented(action: Action, role: Role) -> String {
    let roles: Vec<&str> = Role::ALL.iter().map(|role| role.as_str()).collect();
    let column = 1 + roles.iter().position(|name| *name == role.as_str()).unwrap();
    let row = table("access-table").into_iter().find(|row| row[0] == action.as_str());
    row.unwrap_or_else(|| panic!("docs/access.md has no row for {}", action.as_str()))[column].clone()
}

/// The documented routes: (method, path) → the action, or `None` for a route anyone may call.
fn documented_routes() -> BTreeMap<(String, String), Option<Action>> {
    let mut routes = BTreeMap::new();
    for row in table("route-table") {
        let action = Action::parse(&row[1]);
        for route in row[0].split(',') {
            let route = route.trim().trim_matches('`');
            let (method, path) = route.split_once(' ').unwrap_or_else(|| panic!("'{route}' is not METHOD PATH"));
            routes.insert((method.to_owned(), path.to_owned()), action);
        }
    }
    routes
}

/// Every path the server routes, read from its source (`.route("PATH"`, or `.route(NAME` with `const NAME: &str =
/// "PATH";` in the same file), so a new route without a row fails.
fn routed_paths() -> BTreeSet<String> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../server/src");
    let mut paths = BTreeSet::new();
    let mut pending = vec![root];
    while let Some(path) = pending.pop() {
        if path.is_dir() {
            pending.extend(std::fs::read_dir(&path).unwrap().map(|entry| entry.unwrap().path()));
        } else if path.extension().is_some_and(|extension| extension == "rs") {
            let text = std::fs::read_to_string(&path).unwrap();
            for piece in text.split(".route(").skip(1) {
                let routed = match piece.strip_prefix('"') {
                    Some(literal) => literal.split('"').next().unwrap().to_owned(),
                    None => {
                        let name = piece.split(',').next().unwrap().trim();
                        let constant = format!("const {name}: &str = \"");
                        let value = text.split(&constant).nth(1).unwrap_or_else(|| panic!("{name} in {path:?}"));
                        value.split('"').next().unwrap().to_owned()
                    }
                };
                paths.insert(routed);
            }
        }
    }
    paths
}

#[test]
fn every_route_the_server_has_is_in_the_table() {
    let documented: BTreeSet<String> = documented_routes().into_keys().map(|(_, path)| path).collect();
    assert_eq!(routed_paths(), documented, "docs/access.md's route table and the server's routes");
}

/// A token for each role: unscoped, and (for people) scoped to the one area `inside`.
struct Tokens {
    unscoped: BTreeMap<Role, String>,
    scoped: BTreeMap<Role, String>,
}

async fn tokens(app: &TestApp, usecases: &UseCases, scope: &str) -> Tokens {
    let operator = Principal::operator();
    let (mut unscoped, mut scoped) = (BTreeMap::new(), BTreeMap::new());
    unscoped.insert(Role::Collector, app.add_device("a collector's phone").await);
    for role in [Role::Coordinator, Role::Analyst, Role::Board, Role::Admin] {
        for (tokens, areas) in [(&mut unscoped, None), (&mut scoped, Some(scope))] {
            let email = format!("{}-{}@example.org", role.as_str(), if areas.is_some() { "scoped" } else { "all" });
            usecases.add_person(&operator, &email, role.as_str(), areas).await.unwrap();
            let issued = usecases.issue_person_token(&operator, &email, "authorisation test", None).await.unwrap();
            tokens.insert(role, issued.token);
        }
    }
    Tokens { unscoped, scoped }
}

/// The status a route answers a token with, and the error code if any. A POST is a triage write naming the version
/// the insight's triage is at now (read by `reader`), so only the permission check and the scope can refuse it.
async fn call(app: &TestApp, method: &str, path: &str, token: Option<&str>, reader: &str) -> (u16, Option<String>) {
    let (status, body) = match method {
        "GET" => app.get(path, token).await,
        "POST" => {
            let insight = path.strip_suffix("/triage").expect("the one POST route that takes a role is triage");
            let (_, current) = app.get(insight, Some(reader)).await;
            let version = current["triage"]["version"].as_i64().unwrap_or(0);
            let body = serde_json::json!({ "version": version, "note": "seen by the authorisation test" });
            let mut request = reqwest::Client::new().post(format!("{}{path}", app.http_url())).json(&body);
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            let response = request.send().await.unwrap();
            (response.status().as_u16(), response.json().await.unwrap_or(Value::Null))
        }
        other => panic!("{other} {path}: only GET and POST routes take a role"),
    };
    (status, body["code"].as_str().map(str::to_owned))
}

async fn every_route_with_every_role_in_and_out_of_scope(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let usecases = UseCases::new(app.store.clone());
    let listed = app.areas("").await;
    let codes: Vec<String> =
        listed["areas"].as_array().unwrap().iter().map(|area| area["code"].as_str().unwrap().to_owned()).collect();
    let set = listed["boundaries"]["set"].as_str().unwrap().to_owned();
    let (inside, outside) = (JOINERS_SQUARE.0.to_owned(), ABBEY_HULTON.0.to_owned());
    assert!(codes.contains(&inside) && codes.contains(&outside), "both wards are in the filing set");
    let tokens = tokens(&app, &usecases, &format!("{set}:{inside}")).await;
    let period = "from=2026-01-01&to=2026-02-01";
    // An insight in each ward, for the routes that read one.
    let phone = Phone::new(&app, "a barber").await;
    let in_scope = phone.capture_at("drugs", JOINERS_SQUARE.1, JOINERS_SQUARE.2, Some(2)).await;
    let out_of_scope = phone.capture_at("asb", ABBEY_HULTON.1, ABBEY_HULTON.2, Some(3)).await;
    phone.sync(&app).await.unwrap();
    let reader = tokens.unscoped[&Role::Analyst].clone();

    for ((method, path), action) in documented_routes() {
        // Pages take a session, not a token: `every_page_with_every_role` tries them.
        let Some(action) = action.filter(|_| path.starts_with("/api/") || path == "/sync") else { continue };
        // The concrete requests for a route: (path and query, the area it names if any).
        let requests: Vec<(String, Option<&str>)> = match path.as_str() {
            "/api/v1/areas/{code}" => {
                vec![
                    (format!("/api/v1/areas/{inside}"), Some(&inside)),
                    (format!("/api/v1/areas/{outside}"), Some(&outside)),
                ]
            }
            "/api/v1/priorities" => vec![
                (format!("/api/v1/priorities?{period}"), None),
                (format!("/api/v1/priorities?{period}&area={inside}"), Some(&inside)),
                (format!("/api/v1/priorities?{period}&area={outside}"), Some(&outside)),
            ],
            "/api/v1/insights/{id}" | "/api/v1/insights/{id}/triage" => [(in_scope, &inside), (out_of_scope, &outside)]
                .into_iter()
                .map(|(id, area)| (path.replace("{id}", &id.to_string()), Some(area.as_str())))
                .collect(),
            other => vec![(other.to_owned(), None)],
        };
        // An insight outside the scope is answered as one that does not exist, as an area is.
        let absent = if path.starts_with("/api/v1/insights/") { "insight_not_found" } else { "area_not_found" };
        for (request, area) in &requests {
            let (status, code) = call(&app, &method, request, None, &reader).await;
            assert_eq!((status, code.as_deref()), (401, Some("unauthorized")), "{request} without a token");
            for role in Role::ALL {
                let said = documented(action, role);
                for (token, scoped) in [(tokens.unscoped.get(&role), false), (tokens.scoped.get(&role), true)] {
                    let Some(token) = token else { continue };
                    let (status, code) = call(&app, &method, request, Some(token), &reader).await;
                    let seen = format!(
                        "{method} {request} as {role}{}: {status} {code:?}",
                        if scoped { " (scoped)" } else { "" }
                    );
                    match said.as_str() {
                        "–" => assert_eq!((status, code.as_deref()), (403, Some("forbidden")), "{seen}"),
                        _ if scoped && area.is_some_and(|area| *area == outside) => {
                            assert_eq!((status, code.as_deref()), (404, Some(absent)), "{seen}: as if absent");
                        }
                        // The sync endpoint lets a device through to the WebSocket upgrade, which a plain GET lacks.
                        _ if path == "/sync" => assert!(![401, 403].contains(&status), "{seen}"),
                        _ => assert_eq!(status, 200, "{seen}"),
                    }
                }
            }
        }
    }

    // A scoped analyst's list of areas holds its scope and nothing else, and no count from outside every area.
    let (status, body) = app.get("/api/v1/areas", Some(&tokens.scoped[&Role::Analyst])).await;
    assert_eq!(status, 200);
    let seen: Vec<&str> = body["areas"].as_array().unwrap().iter().map(|area| area["code"].as_str().unwrap()).collect();
    assert_eq!(seen, [inside.as_str()]);
    assert!(body["outside_coverage"].is_null(), "{body}");
    let (_, body) = app.get(&format!("/api/v1/priorities?{period}"), Some(&tokens.scoped[&Role::Analyst])).await;
    assert!(body["areas"].as_array().unwrap().iter().all(|area| area["code"] == inside.as_str()), "{body}");
}

on_both_backends!(every_route_with_every_role_in_and_out_of_scope);

/// Every page that takes an action, signed in as each role: allowed where `docs/access.md` says so, `403` where it
/// does not. A form is sent with its session's own CSRF token, so only the permission check can refuse it.
async fn every_page_with_every_role(backend: Backend) {
    use secrecy::{ExposeSecret, SecretString};
    let app = TestApp::spawn(backend).await;
    let usecases = UseCases::new(app.store.clone());
    let operator = Principal::operator();
    let password = SecretString::from("a passphrase for the authorisation test");
    let context = grapevine_server::domain::RequestContext::default();
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    for role in Role::ALL {
        let email = format!("{}@example.org", role.as_str());
        usecases.add_person(&operator, &email, role.as_str(), None).await.unwrap();
        let link = usecases.issue_password_link(&operator, &email).await.unwrap();
        usecases.set_password(link.token.expose_secret(), &password, context.clone()).await.unwrap();
        let opened = usecases.sign_in_with_password(&email, &password, context.clone()).await.unwrap();
        let cookie = format!("grapevine={}", opened.cookie_value.expose_secret());
        let signed_in = usecases.session(opened.cookie_value.expose_secret(), context.clone()).await.unwrap();
        for ((method, route), action) in documented_routes() {
            let Some(action) = action.filter(|_| !route.starts_with("/api/") && route != "/sync") else { continue };
            // A route's parameters as a page would have them (an insight and an area nobody has).
            let path = route.replace("{id}", &uuid::Uuid::new_v4().to_string()).replace("{code}", "E05999999");
            let url = format!("{}{path}", app.http_url());
            let request = match method.as_str() {
                "GET" => client.get(&url),
                "POST" => client
                    .post(&url)
                    .header("origin", app.http_url())
                    // Well-formed fields, so the permission check is what answers (an unknown token id, a new email).
                    .form(&[
                        ("csrf", signed_in.csrf_token(&path)),
                        ("email", "someone.new@example.org".to_owned()),
                        ("role", "analyst".to_owned()),
                        ("id", uuid::Uuid::new_v4().to_string()),
                    ]),
                other => panic!("{other} {path}: pages are GET or POST"),
            };
            let status = request.header("cookie", &cookie).send().await.unwrap().status().as_u16();
            let seen = format!("{method} {path} as {role}: {status}");
            match documented(action, role).as_str() {
                "–" => assert_eq!(status, 403, "{seen}"),
                _ => assert!(![401, 403].contains(&status), "{seen}"),
            }
        }
    }
}

on_both_backends!(every_page_with_every_role);

/// A scope given in one boundary set covers the areas of another that lie within it (docs/access.md, "what within
/// means"): a Stafford partnership scoped to its district (ONS districts, imported) reads the Stafford wards, exactly
/// those the ward file places in Stafford, and a Newcastle ward is answered as absent.
async fn a_district_scope_reads_the_wards_within_it(backend: Backend) {
    use grapevine_server::geo::boundary_files::{read_boundary_file, ReadOptions};
    let app = TestApp::spawn(backend).await;
    let usecases = UseCases::new(app.store.clone());
    let operator = Principal::operator();
    let districts_file = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("data/boundaries/uk-local-authority-districts-2022.geojson");
    let districts = read_boundary_file(&districts_file, &ReadOptions::default()).unwrap();
    usecases.import_boundaries(&operator, "districts", "lad-2022.geojson", districts.areas).await.unwrap();
    let app = app.restart().await; // loads the new generation now rather than at the next reload
    let usecases = UseCases::new(app.store.clone());
    usecases.add_person(&operator, "stafford@example.org", "analyst", Some("districts:E07000197")).await.unwrap();
    let token = usecases.issue_person_token(&operator, "stafford@example.org", "test", None).await.unwrap().token;

    let wards: Value =
        serde_json::from_str(include_str!("../../server/data/boundaries/staffordshire-wards-2013.geojson")).unwrap();
    let in_district = |district: &str| -> BTreeSet<String> {
        wards["features"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|ward| ward["properties"]["LADCD"] == district)
            .map(|ward| ward["properties"]["WD13CD"].as_str().unwrap().to_owned())
            .collect()
    };
    let (status, body) = app.get("/api/v1/areas", Some(&token)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["boundaries"]["set"], "wards", "the filing set is read, through the district scope");
    let seen: BTreeSet<String> =
        body["areas"].as_array().unwrap().iter().map(|area| area["code"].as_str().unwrap().to_owned()).collect();
    assert_eq!(seen, in_district("E07000197"));
    let newcastle_ward = in_district("E07000195").into_iter().next().unwrap();
    let (status, body) = app.get(&format!("/api/v1/areas/{newcastle_ward}"), Some(&token)).await;
    assert_eq!((status, body["code"].as_str()), (404, Some("area_not_found")));
    // The district itself, in its own set, is within the scope; its neighbour is not.
    let (status, _) = app.get("/api/v1/areas/E07000197?set=districts", Some(&token)).await;
    assert_eq!(status, 200);
    let (status, _) = app.get("/api/v1/areas/E07000195?set=districts", Some(&token)).await;
    assert_eq!(status, 404);
}

on_both_backends!(a_district_scope_reads_the_wards_within_it);
