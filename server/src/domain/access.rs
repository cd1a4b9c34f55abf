//! People, roles and scopes: who may do what, where. `docs/access.md` holds the same table as `permits` in words,
//! and the authorisation test reads that file, so the two cannot drift apart.

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;

use uuid::Uuid;

/// What a principal is allowed to do in general; its `Scope` narrows where.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// A phone: syncs its own collector's documents, nothing else.
    Collector,
    /// Runs cohorts of collectors: invitations and devices for its areas, and how many insights its cohorts sent;
    /// never insight text.
    Coordinator,
    /// The commissioner's office: roll-ups, priorities, insight text, triage and exports, within its scope.
    Analyst,
    /// A partnership board: disclosure-controlled summaries within its scope; never insight-level data.
    Board,
    /// People, tokens, boundaries, postcodes and settings. Reading insights is not implied.
    Admin,
}

impl Role {
    /// Every role, in the order `docs/access.md` lists them.
    pub const ALL: [Role; 5] = [Role::Collector, Role::Coordinator, Role::Analyst, Role::Board, Role::Admin];

    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Collector => "collector",
            Role::Coordinator => "coordinator",
            Role::Analyst => "analyst",
            Role::Board => "board",
            Role::Admin => "admin",
        }
    }

    /// The role named `text` exactly as `as_str` spells it.
    #[must_use]
    pub fn parse(text: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|role| role.as_str() == text)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An area of a boundary set, as a scope names it (`wards:E05012345`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AreaRef {
    pub set: String,
    pub code: String,
    /// The id of the set's generation the area was granted in (its newest then), so a later generation neither
    /// widens nor narrows the grant; `None` for an area as typed, before it is checked and granted.
    pub generation_id: Option<i64>,
}

impl AreaRef {
    /// Reads `SET:CODE`; the set and the code must both be non-empty.
    #[must_use]
    pub fn parse(text: &str) -> Option<AreaRef> {
        let (set, code) = text.trim().split_once(':')?;
        let (set, code) = (set.trim(), code.trim());
        (!set.is_empty() && !code.is_empty()).then(|| AreaRef {
            set: set.to_owned(),
            code: code.to_owned(),
            generation_id: None,
        })
    }
}

impl fmt::Display for AreaRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.set, self.code)
    }
}

/// Where a principal may act. An area, count or insight outside it is answered exactly as one that does not exist.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Scope {
    /// No limit by area (an admin, an unscoped service account, the operator at the command line).
    #[default]
    Everything,
    /// These areas, and the areas of other sets that lie within them (`docs/access.md` says how "within" is decided).
    Areas(BTreeSet<AreaRef>),
}

impl Scope {
    /// Reads `SET:CODE,SET:CODE,…`; `None` names the first part that is not `SET:CODE`. An empty list is refused
    /// (a scope of nothing would be a person who can do nothing; disable them instead).
    ///
    /// # Errors
    /// The part of the list that is not `SET:CODE`.
    pub fn parse_list(text: &str) -> Result<Scope, String> {
        let mut areas = BTreeSet::new();
        for part in text.split(',') {
            areas.insert(AreaRef::parse(part).ok_or_else(|| part.trim().to_owned())?);
        }
        Ok(Scope::Areas(areas))
    }

    /// `SET:CODE,…`, or `everything`.
    #[must_use]
    pub fn describe(&self) -> String {
        match self {
            Scope::Everything => "everything".to_owned(),
            Scope::Areas(areas) => areas.iter().map(AreaRef::to_string).collect::<Vec<_>>().join(","),
        }
    }
}

/// Who is acting, as the audit trail names them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// A person with an account, through one of their API tokens (or, later, a browser session).
    Person { person_id: Uuid, email: String },
    /// A collector's phone.
    Device { device_id: Uuid, collector_id: Uuid },
    /// A token made with `grapevine token add --role R --label L`: an unscoped service account.
    ServiceAccount { token_id: Uuid, label: String },
    /// Someone at the server's command line: whoever can run `grapevine` there holds the database already.
    Operator { os_user: String },
}

impl Actor {
    /// How the audit trail names the actor: a kind and a stable id.
    #[must_use]
    pub fn audit_name(&self) -> String {
        match self {
            Actor::Person { email, .. } => format!("person:{email}"),
            Actor::Device { device_id, .. } => format!("device:{device_id}"),
            Actor::ServiceAccount { token_id, .. } => format!("token:{token_id}"),
            Actor::Operator { os_user } => format!("operator:{os_user}"),
        }
    }
}

/// Where a request came from, for the audit trail and the log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestContext {
    pub request_id: Option<String>,
    pub client_addr: Option<IpAddr>,
}

impl RequestContext {
    /// The network a request came from, as budgets per address count it: an IPv4 address, or an IPv6 address's /64
    /// network (one household or phone may hold a whole /64). Without an address (a router served without connect
    /// info), every request shares one.
    #[must_use]
    pub fn network(&self) -> IpAddr {
        network_of(self.client_addr)
    }
}

/// `RequestContext::network` for an address alone.
#[must_use]
pub fn network_of(address: Option<IpAddr>) -> IpAddr {
    match address {
        Some(IpAddr::V6(v6)) if v6.to_ipv4_mapped().is_none() => {
            let network = u128::from(v6) & !u128::from(u64::MAX);
            IpAddr::V6(std::net::Ipv6Addr::from(network))
        }
        Some(address) => address.to_canonical(),
        None => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
    }
}

/// Who acts, with which role, where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub actor: Actor,
    pub role: Role,
    pub scope: Scope,
    pub context: RequestContext,
}

impl Principal {
    /// The operator at the command line: the admin role, unscoped.
    #[must_use]
    pub fn operator() -> Principal {
        let os_user = std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).unwrap_or_else(|_| "unknown".into());
        Principal {
            actor: Actor::Operator { os_user },
            role: Role::Admin,
            scope: Scope::Everything,
            context: RequestContext::default(),
        }
    }
}

/// What a presented credential turned out to be, as authentication (`Store::authenticate`) answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authenticated {
    /// A live credential: who acts, with their role and scope as they are now (a person's are read at every request,
    /// so a change of role or a disabling takes effect at once on every node).
    Principal(Principal),
    /// A phone whose device was revoked: refused everywhere, with its own code so it can tell the person.
    RevokedDevice { device_id: Uuid },
    /// An API token past its `expires_at`.
    Expired,
    /// A token of a person who has been disabled.
    Disabled,
}

/// Every action a principal can take. `docs/access.md` lists each with the roles that may take it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Sync the documents of the device's own collector (`/sync`).
    SyncOwnDocuments,
    /// Neighbourhood roll-ups: `GET /api/v1/areas`, `GET /api/v1/areas/{code}`.
    ReadRollups,
    /// Priorities: `GET /api/v1/priorities`.
    ReadPriorities,
    /// Create, list and revoke invitations.
    ManageInvitations,
    /// Add, list and revoke devices.
    ManageDevices,
    /// Add, list, change and disable people.
    ManagePeople,
    /// Add, list and revoke API tokens.
    ManageTokens,
    /// Import boundary generations.
    ImportBoundaries,
    /// Import a postcode directory.
    ImportPostcodes,
    /// Read the audit trail.
    ReadAudit,
    /// Back up or restore the database (the operator, on the server).
    Backup,
    /// Read insights (their text, place and history): `GET /api/v1/insights`, `GET /api/v1/insights/{id}`.
    ReadInsights,
    /// Triage insights: state, notes, tags, links to priorities.
    TriageInsights,
    /// Export insights and roll-ups (CSV, GeoJSON, GeoPackage, XLSX).
    ExportInsights,
}

impl Action {
    /// Every action, in the order `docs/access.md` lists them.
    pub const ALL: [Action; 14] = [
        Action::SyncOwnDocuments,
        Action::ReadRollups,
        Action::ReadPriorities,
        Action::ManageInvitations,
        Action::ManageDevices,
        Action::ManagePeople,
        Action::ManageTokens,
        Action::ImportBoundaries,
        Action::ImportPostcodes,
        Action::ReadAudit,
        Action::Backup,
        Action::ReadInsights,
        Action::TriageInsights,
        Action::ExportInsights,
    ];

    /// The action's name in the audit trail and in `docs/access.md`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Action::SyncOwnDocuments => "sync_own_documents",
            Action::ReadRollups => "read_rollups",
            Action::ReadPriorities => "read_priorities",
            Action::ManageInvitations => "manage_invitations",
            Action::ManageDevices => "manage_devices",
            Action::ManagePeople => "manage_people",
            Action::ManageTokens => "manage_tokens",
            Action::ImportBoundaries => "import_boundaries",
            Action::ImportPostcodes => "import_postcodes",
            Action::ReadAudit => "read_audit",
            Action::Backup => "backup",
            Action::ReadInsights => "read_insights",
            Action::TriageInsights => "triage_insights",
            Action::ExportInsights => "export_insights",
        }
    }

    #[must_use]
    pub fn parse(text: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|action| action.as_str() == text)
    }
}

/// Whether `role` may take `action` at all; the principal's scope then narrows where. This match is the one place
/// that decides; `docs/access.md` says the same in a table, checked by a test.
#[must_use]
pub fn permits(role: Role, action: Action) -> bool {
    use Action as A;
    match role {
        Role::Collector => matches!(action, A::SyncOwnDocuments),
        Role::Coordinator => matches!(action, A::ManageInvitations | A::ManageDevices),
        Role::Analyst => matches!(
            action,
            A::ReadRollups | A::ReadPriorities | A::ReadInsights | A::TriageInsights | A::ExportInsights
        ),
        Role::Board => false,
        Role::Admin => matches!(
            action,
            A::ManageInvitations
                | A::ManageDevices
                | A::ManagePeople
                | A::ManageTokens
                | A::ImportBoundaries
                | A::ImportPostcodes
                | A::ReadAudit
                | A::Backup
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_and_actions_read_back_what_they_write() {
        for role in Role::ALL {
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        for action in Action::ALL {
            assert_eq!(Action::parse(action.as_str()), Some(action));
        }
        assert_eq!(Role::parse("Analyst"), None, "spelt exactly");
        assert_eq!(Role::parse("superuser"), None);
    }

    #[test]
    fn a_scope_list_names_its_first_bad_part() {
        let scope = Scope::parse_list("districts:E07000197, wards:E05012345").unwrap();
        assert_eq!(scope.describe(), "districts:E07000197,wards:E05012345");
        assert_eq!(Scope::parse_list("districts:E07000197,E05012345"), Err("E05012345".into()));
        assert_eq!(Scope::parse_list(""), Err(String::new()));
        assert_eq!(Scope::parse_list("wards:"), Err("wards:".into()));
    }

    /// The rows of `docs/access.md`'s role × action table: (action, one cell per role in `Role::ALL`'s order).
    fn documented_table() -> Vec<(String, Vec<String>)> {
        let doc = include_str!("../../../docs/access.md");
        let table =
            doc.split("<!-- access-table -->").nth(1).and_then(|rest| rest.split("<!-- /access-table -->").next());
        let rows =
            table.expect("docs/access.md has the access-table markers").lines().filter(|line| line.starts_with('|'));
        let cells =
            |line: &str| line.trim_matches('|').split('|').map(|cell| cell.trim().to_owned()).collect::<Vec<_>>();
        let mut rows = rows.map(cells);
        let header = rows.next().expect("a header row");
        let roles: Vec<&str> = Role::ALL.iter().map(|role| role.as_str()).collect();
        assert_eq!(header[1..], roles, "the table's columns are the roles, in order");
        rows.filter(|row| !row[0].starts_with("---"))
            .map(|row| (row[0].trim_matches('`').to_owned(), row[1..].to_vec()))
            .collect()
    }

    #[test]
    fn docs_access_md_says_what_permits_decides() {
        let table = documented_table();
        let documented: Vec<&str> = table.iter().map(|(action, _)| action.as_str()).collect();
        let actions: Vec<&str> = Action::ALL.iter().map(|action| action.as_str()).collect();
        assert_eq!(documented, actions, "every action, in Action::ALL's order");
        for (action, cells) in &table {
            let action = Action::parse(action).unwrap();
            for (role, cell) in Role::ALL.into_iter().zip(cells) {
                let documented = match cell.as_str() {
                    "yes" | "in scope" => true,
                    "–" => false,
                    other => panic!("{}/{role}: '{other}' is not yes, in scope or –", action.as_str()),
                };
                assert_eq!(permits(role, action), documented, "{} by {role}", action.as_str());
            }
        }
    }

    #[test]
    fn only_admins_manage_people_and_admins_do_not_read_rollups() {
        let managing_people: Vec<Role> =
            Role::ALL.into_iter().filter(|role| permits(*role, Action::ManagePeople)).collect();
        assert_eq!(managing_people, [Role::Admin]);
        assert!(!permits(Role::Admin, Action::ReadRollups), "reading insight data is granted, not implied");
        assert!(!permits(Role::Collector, Action::ReadRollups));
    }
}
