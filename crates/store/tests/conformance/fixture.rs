//! The handcrafted sessions every query, window and ordering test runs over,
//! and the `check` helpers that compare a listing with an expected id set.
//!
//! All times are fixed offsets from [`NOW`] (2024-06-01T12:00:00Z), so query
//! texts can spell them out as RFC 3339. The table below is the reference for
//! every expected id list in the suite (times are minutes before NOW):
//!
//! | id  | start | end | status | user (formal groups)      | client ip      | tech      | connector |
//! |-----|-------|-----|--------|---------------------------|----------------|-----------|-----------|
//! | s01 | 600 (02:00)  | 570 (02:30) | done | alice [dba sre]  | 10.0.0.1       | postgres  | eu |
//! | s02 | 540 (03:00)  | 480 (04:00) | done | bob [dev]        | 10.0.0.2       | postgres  | eu |
//! | s03 | 480 (04:00)  | 450 (04:30) | done | carol [dba]      | 10.1.2.3       | mysql     | us |
//! | s04 | 480 (04:00)  | 390 (05:30) | done | dave []          | 192.168.1.7    | mysql     | us |
//! | s05 | 300 (07:00)  | -           | act  | erin [sre oncall], end user zed | 2001:db8::5 | postgres | eu |
//! | s06 | 240 (08:00)  | 180 (09:00) | done | frank [dev qa]   | 2001:db8:1::6  | mongodb   | us |
//! | s07 | 200 (08:40)  | 110 (10:10) | done | Alice [dba sre]  | 10.0.0.1       | postgres  | eu |
//! | s08 | 150 (09:30)  | -           | act  | grace [dba], end user amy | 2001:db9::8 | mysql | us |
//! | s09 | 130 (09:50)  | 110 (10:10) | done | heidi [DBA]      | 172.16.0.9     | postgres  | us |
//! | s10 | 130 (09:50)  | 70 (10:50)  | done | svc-etl [] (machine) | 10.200.0.10 | mysql    | us |
//! | s11 | 100 (10:20)  | 70 (10:50)  | done | judy [qa]        | ::1            | postgres  | us |
//! | s12 | 90 (10:30)   | -           | act  | karl [sre], end user zed | 10.0.0.12 | postgres | eu |
//! | s13 | 60 (11:00)   | 55 (11:05)  | done | `x' OR 1=1 --`   | (none)         | redis     | lab |
//! | s14 | 45 (11:15)   | 35 (11:25)  | done | `a_b`            | 10.0.1.14      | redis     | lab |
//! | s15 | 40 (11:20)   | 30 (11:30)  | done | `axb`            | 10.0.1.15      | redis     | lab |
//! | s16 | 30 (11:30)   | 29 (11:31)  | done | `a%b`            | 10.0.1.16      | redis     | lab |
//! | s17 | 20 (11:40)   | -           | act  | `azzb`           | 10.0.1.17      | redis     | lab |
//! | s18 | 10 (11:50)   | 8 (11:52)   | done | `c\d`            | 10.0.1.18      | redis     | lab |
//! | s19 | 5 (11:55)    | -           | act  | `Élodie`         | 10.0.1.19      | redis     | lab |
//! | s20 | 2000 (05-31 02:40) | -     | act  | mallory [oncall] | 10.0.0.20      | postgres  | eu |
//! | s21 | 1500 (05-31 11:00) | 100 (10:20) | done | nina [dev] | 172.16.5.21    | snowflake | us |
//! | s22 | 180 (09:00)  | 120 (10:00) | done | oscar []         | 192.168.2.22   | mysql     | us |
//!
//! Ties on purpose: starts s03=s04 and s09=s10; ends s07=s09 and s10=s11;
//! durations 5m (s13, active s19), 10m, 20m (s09, active s17), 30m, 60m and
//! 90m (s04, s07, active s12); all six active sessions tie on end time.
//!
//! A second organization, globex, holds decoys: the same ids with different
//! content, and copies under other ids (`gs01`...). Every check verifies that
//! each returned row is acme's own, so every query test is an isolation test.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use gatehouse_core::session::{ConnectorRef, ResourceRef, SessionUser, Sidecar};
use gatehouse_core::{Identity, Micros, OrgId, Session};
use gatehouse_store::{Direction, ListQuery, SortKey, Store};

/// 2024-06-01T12:00:00Z, the instant every listing and query is evaluated at.
pub const NOW: Micros = 1_717_243_200_000_000;
pub const MINUTE: Micros = 60_000_000;

/// `minutes` before [`NOW`].
pub fn ago(minutes: i64) -> Micros {
    NOW - minutes * MINUTE
}

/// A query text and the exact ids it must return in acme.
pub type Case = (&'static str, &'static [&'static str]);

pub const ALL: &[&str] = &[
    "s01", "s02", "s03", "s04", "s05", "s06", "s07", "s08", "s09", "s10", "s11", "s12", "s13", "s14", "s15", "s16",
    "s17", "s18", "s19", "s20", "s21", "s22",
];
pub const ACTIVE: &[&str] = &["s05", "s08", "s12", "s17", "s19", "s20"];
pub const COMPLETED: &[&str] =
    &["s01", "s02", "s03", "s04", "s06", "s07", "s09", "s10", "s11", "s13", "s14", "s15", "s16", "s18", "s21", "s22"];
/// Sessions with a formal (known) user.
pub const FORMAL: &[&str] =
    &["s01", "s02", "s03", "s04", "s05", "s06", "s07", "s08", "s09", "s10", "s11", "s12", "s20", "s21", "s22"];
pub const EU: &[&str] = &["s01", "s02", "s05", "s07", "s12", "s20"];
pub const US: &[&str] = &["s03", "s04", "s06", "s08", "s09", "s10", "s11", "s21", "s22"];
pub const LAB: &[&str] = &["s13", "s14", "s15", "s16", "s17", "s18", "s19"];
pub const POSTGRES: &[&str] = &["s01", "s02", "s05", "s07", "s09", "s11", "s12", "s20"];

/// Where a session ran: its connector, sidecar and server address.
pub struct Via {
    connector: (&'static str, &'static str),
    sidecar: (&'static str, &'static str, &'static str),
    server_ip: &'static str,
}

const VIA_EU: Via =
    Via { connector: ("c-eu", "EU West"), sidecar: ("sc-eu", "eu-proxy", "multi"), server_ip: "10.9.0.1" };
const VIA_US: Via =
    Via { connector: ("c-us", "US East"), sidecar: ("sc-us", "us-proxy", "multi"), server_ip: "10.8.0.1" };
const VIA_LAB: Via =
    Via { connector: ("c-lab", "Lab"), sidecar: ("sc-lab", "lab-proxy", "multi"), server_ip: "fd00::1" };

/// A session under construction; see the `completed` and `active` constructors.
pub struct Build(Session);

pub fn completed(id: &str, started_ago: i64, lasted: i64) -> Build {
    Build(Session {
        id: id.into(),
        start: ago(started_ago),
        end: Some(ago(started_ago) + lasted * MINUTE),
        ..Default::default()
    })
}

pub fn active(id: &str, started_ago: i64) -> Build {
    Build(Session { id: id.into(), start: ago(started_ago), end: None, ..Default::default() })
}

fn strings(values: &[&str]) -> Vec<String> {
    values.iter().map(|v| v.to_string()).collect()
}

impl Build {
    /// A known human: username, formal identity `u-<username>` with groups.
    pub fn person(mut self, username: &str, name: &str, email: &str, groups: &[&str]) -> Self {
        self.0.user = SessionUser {
            kind: "human".into(),
            username: username.into(),
            formal: Some(Identity {
                id: format!("u-{username}"),
                name: name.into(),
                email: email.into(),
                kind: "human".into(),
                groups: strings(groups),
                external_ids: Vec::new(),
            }),
            ..self.0.user
        };
        self
    }

    fn formal(&mut self) -> &mut Identity {
        self.0.user.formal.as_mut().expect("person() first")
    }

    pub fn user_id(mut self, id: &str) -> Self {
        self.formal().id = id.into();
        self
    }

    pub fn machine(mut self) -> Self {
        self.0.user.kind = "machine".into();
        self.formal().kind = "machine".into();
        self
    }

    pub fn external_ids(mut self, ids: &[&str]) -> Self {
        self.formal().external_ids = strings(ids);
        self
    }

    pub fn end_user(mut self, id: &str, name: &str, email: &str, groups: &[&str]) -> Self {
        self.0.user.end_user = Some(Identity {
            id: id.into(),
            name: name.into(),
            email: email.into(),
            kind: "customer".into(),
            groups: strings(groups),
            external_ids: Vec::new(),
        });
        self
    }

    /// Only a startup user name, no known identity.
    pub fn local(mut self, username: &str) -> Self {
        self.0.user.kind = "native".into();
        self.0.user.username = username.into();
        self
    }

    pub fn native(mut self, username: &str) -> Self {
        self.0.user.native_username = username.into();
        self
    }

    pub fn ip(mut self, client_ip: &str) -> Self {
        self.0.client_ip = client_ip.into();
        self
    }

    pub fn via(mut self, via: &Via) -> Self {
        self.0.connector =
            ConnectorRef { id: via.connector.0.into(), name: via.connector.1.into(), run_id: String::new() };
        self.0.sidecar =
            Sidecar { id: via.sidecar.0.into(), name: via.sidecar.1.into(), technology: via.sidecar.2.into() };
        self.0.server_ip = via.server_ip.into();
        self
    }

    pub fn db(mut self, technology: &str, name: &str, kind: &str) -> Self {
        let id = format!("r-{}", name.to_lowercase().replace(' ', "-"));
        self.0.resource = ResourceRef { kind: kind.into(), id, name: name.into(), technology: technology.into() };
        self
    }

    pub fn parent(mut self, id: &str) -> Self {
        self.0.parent_session_id = id.into();
        self
    }

    pub fn build(self) -> Session {
        self.0
    }
}

/// acme's sessions; see the table at the top of this file.
pub fn sessions() -> Vec<Session> {
    vec![
        completed("s01", 600, 30)
            .person("alice", "Alice Anders", "Alice@Example.com", &["dba", "sre"])
            .external_ids(&["ext-001"])
            .native("app")
            .ip("10.0.0.1")
            .via(&VIA_EU)
            .db("postgres", "prod db", "datastore")
            .build(),
        completed("s02", 540, 60)
            .person("bob", "Bob Brown", "bob@example.com", &["dev"])
            .native("readonly")
            .ip("10.0.0.2")
            .via(&VIA_EU)
            .db("postgres", "analytics", "datastore")
            .build(),
        completed("s03", 480, 30)
            .person("carol", "Carol Clark", "CAROL@EXAMPLE.ORG", &["dba"])
            .native("app")
            .ip("10.1.2.3")
            .via(&VIA_US)
            .db("mysql", "orders", "datastore")
            .build(),
        completed("s04", 480, 90)
            .person("dave", "Dave Dunn", "dave@corp.example", &[])
            .user_id("U-Dave")
            .external_ids(&["ext-004", "ldap-dave"])
            .native("admin")
            .ip("192.168.1.7")
            .via(&VIA_US)
            .db("mysql", "Prod Replica", "instance")
            .build(),
        active("s05", 300)
            .person("erin", "Erin Evans", "erin@example.com", &["sre", "oncall"])
            .end_user("eu-zed", "Zed Zee", "Zed@Customers.example", &["customers"])
            .native("app")
            .ip("2001:db8::5")
            .via(&VIA_EU)
            .db("postgres", "prod db", "datastore")
            .build(),
        completed("s06", 240, 60)
            .person("frank", "Frank Fox", "frank@corp.example", &["dev", "qa"])
            .native("readonly")
            .ip("2001:db8:1::6")
            .via(&VIA_US)
            .db("mongodb", "catalog", "datastore")
            .build(),
        // alice again, under another spelling of her user and email.
        completed("s07", 200, 90)
            .person("Alice", "Alice Anders", "alice@example.com", &["dba", "sre"])
            .user_id("u-alice")
            .external_ids(&["ext-001"])
            .native("app")
            .ip("10.0.0.1")
            .via(&VIA_EU)
            .db("postgres", "Prod DB", "datastore")
            .build(),
        active("s08", 150)
            .person("grace", "Grace Green", "grace@example.com", &["dba"])
            .end_user("eu-amy", "Amy Ash", "amy@shop.example", &["vip", "customers"])
            .native("app")
            .ip("2001:db9::8")
            .via(&VIA_US)
            .db("mysql", "orders", "datastore")
            .build(),
        // Groups are keywords: `DBA` is not `dba`.
        completed("s09", 130, 20)
            .person("heidi", "Heidi Hill", "heidi@example.com", &["DBA"])
            .native("readonly")
            .ip("172.16.0.9")
            .via(&VIA_US)
            .db("postgres", "billing", "datastore")
            .build(),
        completed("s10", 130, 60)
            .person("svc-etl", "ETL Service", "etl@corp.example", &[])
            .machine()
            .native("app")
            .ip("10.200.0.10")
            .via(&VIA_US)
            .db("mysql", "orders", "datastore")
            .build(),
        completed("s11", 100, 30)
            .person("judy", "Judy Jones", "judy@example.com", &["qa"])
            .native("readonly")
            .ip("::1")
            .via(&VIA_US)
            .db("postgres", "billing", "datastore")
            .build(),
        active("s12", 90)
            .person("karl", "Karl King", "karl@example.com", &["sre"])
            .end_user("eu-zed", "Zed Zee", "zed@customers.example", &["customers"])
            .native("app")
            .ip("10.0.0.12")
            .via(&VIA_EU)
            .db("postgres", "analytics", "datastore")
            .build(),
        // Hostile and unusual user names, with no formal identity.
        completed("s13", 60, 5).local("x' OR 1=1 --").via(&VIA_LAB).db("redis", "cache", "aws").build(),
        completed("s14", 45, 10)
            .local("a_b")
            .ip("10.0.1.14")
            .via(&VIA_LAB)
            .db("redis", "cache", "aws")
            .parent("s13")
            .build(),
        completed("s15", 40, 10)
            .local("axb")
            .ip("10.0.1.15")
            .via(&VIA_LAB)
            .db("redis", "cache", "aws")
            .parent("s14")
            .build(),
        completed("s16", 30, 1).local("a%b").ip("10.0.1.16").via(&VIA_LAB).db("redis", "cache", "aws").build(),
        active("s17", 20).local("azzb").ip("10.0.1.17").via(&VIA_LAB).db("redis", "cache", "aws").build(),
        completed("s18", 10, 2).local("c\\d").ip("10.0.1.18").via(&VIA_LAB).db("redis", "cache", "aws").build(),
        active("s19", 5).local("Élodie").ip("10.0.1.19").via(&VIA_LAB).db("redis", "cache", "aws").build(),
        // Long sessions: one still active since the day before, one that ended an hour and a half ago.
        active("s20", 2000)
            .person("mallory", "Mallory Moss", "mallory@example.com", &["oncall"])
            .native("admin")
            .ip("10.0.0.20")
            .via(&VIA_EU)
            .db("postgres", "prod db", "datastore")
            .build(),
        completed("s21", 1500, 1400)
            .person("nina", "Nina Nash", "nina@corp.example", &["dev"])
            .native("app")
            .ip("172.16.5.21")
            .via(&VIA_US)
            .db("snowflake", "warehouse", "aws")
            .build(),
        completed("s22", 180, 60)
            .person("oscar", "Oscar Ortiz", "oscar@example.com", &[])
            .native("readonly")
            .ip("192.168.2.22")
            .via(&VIA_US)
            .db("mysql", "inventory", "instance")
            .build(),
    ]
}

/// globex's sessions: acme's ids with different content (so a leaked row is
/// told apart from acme's own), and acme's content under other ids.
pub fn decoys() -> Vec<Session> {
    let same_ids = sessions().into_iter().map(|mut s| {
        s.connector.name = "Globex".into();
        s.user.native_username = "globex".into();
        s
    });
    let other_ids = sessions().into_iter().map(|mut s| {
        s.id = format!("g{}", s.id);
        s
    });
    same_ids.chain(other_ids).collect()
}

/// Parses `text` at `now` into the default listing (newest first) of up to 1000 rows.
pub fn listing(text: &str, now: Micros) -> ListQuery {
    let filter = gatehouse_query::parse(text, now).unwrap_or_else(|e| panic!("query {text:?} does not parse: {e}"));
    ListQuery { filter, ..ListQuery::newest(1000, now) }
}

/// A store loaded with the fixture, and the checks that run against it.
///
/// Checks record mismatches instead of panicking at the first, so one run
/// reports every failing query; the report is raised when the fixture is
/// dropped at the end of the test.
pub struct Fixture<'a> {
    pub store: &'a dyn Store,
    pub acme: OrgId,
    pub globex: OrgId,
    /// acme's sessions, in table order.
    pub sessions: Vec<Session>,
    acme_by_id: BTreeMap<String, Session>,
    globex_by_id: BTreeMap<String, Session>,
    failures: Mutex<Vec<String>>,
}

impl<'a> Fixture<'a> {
    pub async fn load(store: &'a dyn Store) -> Self {
        let acme = store.ensure_org("acme").await.expect("ensure acme").id;
        let globex = store.ensure_org("globex").await.expect("ensure globex").id;
        let sessions = sessions();
        let decoys = decoys();
        // Decoys first, so that acme's rows are not simply the first ones stored.
        assert_eq!(store.insert_sessions(globex, &decoys).await.expect("insert decoys"), decoys.len() as u64);
        assert_eq!(store.insert_sessions(acme, &sessions).await.expect("insert fixture"), sessions.len() as u64);
        let by_id = |list: &[Session]| list.iter().map(|s| (s.id.clone(), s.clone())).collect();
        let fixture = Self {
            store,
            acme,
            globex,
            acme_by_id: by_id(&sessions),
            globex_by_id: by_id(&decoys),
            sessions,
            failures: Mutex::new(Vec::new()),
        };
        assert_eq!(fixture.acme_by_id.keys().map(String::as_str).collect::<Vec<_>>(), ALL, "fixture ids");
        fixture
    }

    pub fn session(&self, id: &str) -> &Session {
        self.acme_by_id.get(id).unwrap_or_else(|| panic!("no fixture session {id}"))
    }

    /// The sessions of `org` as stored by the fixture (acme's or globex's).
    pub fn stored(&self, org: OrgId) -> &BTreeMap<String, Session> {
        if org == self.acme { &self.acme_by_id } else { &self.globex_by_id }
    }

    /// Records a failure, reported when the fixture is dropped.
    pub fn fail(&self, message: String) {
        self.failures.lock().unwrap_or_else(|e| e.into_inner()).push(message);
    }

    /// Lists, panicking on a store error (never expected in this suite).
    pub async fn list(&self, org: OrgId, query: &ListQuery) -> Vec<Session> {
        self.store.list_sessions(org, query).await.unwrap_or_else(|e| panic!("list_sessions failed: {e:?}"))
    }

    /// `text` in acme returns exactly `expected`, newest first.
    pub async fn check(&self, text: &str, expected: &[&str]) {
        self.check_query(text, &listing(text, NOW), expected).await;
    }

    pub async fn check_all(&self, cases: &[Case]) {
        for (text, expected) in cases {
            self.check(text, expected).await;
        }
    }

    /// As `check`, with `text` parsed and listed at `now` instead of [`NOW`].
    pub async fn check_at(&self, now: Micros, text: &str, expected: &[&str]) {
        self.check_query(&format!("{text} (at NOW{:+}m)", (now - NOW) / MINUTE), &listing(text, now), expected).await;
    }

    /// As `check`, within the window `[start, end)`.
    pub async fn check_window(&self, text: &str, start: Option<Micros>, end: Option<Micros>, expected: &[&str]) {
        let query = ListQuery { window_start: start, window_end: end, ..listing(text, NOW) };
        let minutes = |at: Option<Micros>| at.map_or("open".to_owned(), |at| format!("NOW{:+}m", (at - NOW) / MINUTE));
        let label = format!("{text:?} in window [{}, {})", minutes(start), minutes(end));
        self.check_query(&label, &query, expected).await;
    }

    /// Runs `query` in acme and compares with `expected`, which must come
    /// back complete, without duplicates, in the query's order, each row
    /// exactly as acme stored it.
    pub async fn check_query(&self, label: &str, query: &ListQuery, expected: &[&str]) {
        for id in expected {
            assert!(self.acme_by_id.contains_key(*id), "test bug: {label}: unknown id {id} in expected");
        }
        let rows = match self.store.list_sessions(self.acme, query).await {
            Ok(rows) => rows,
            Err(e) => return self.fail(format!("{label}: store error {e:?}")),
        };
        let got: Vec<&str> = rows.iter().map(|s| s.id.as_str()).collect();
        let want = self.in_order(query, expected);
        if got != want {
            let got_set: BTreeSet<&str> = got.iter().copied().collect();
            let want_set: BTreeSet<&str> = want.iter().copied().collect();
            let missing: Vec<_> = want_set.difference(&got_set).collect();
            let unexpected: Vec<_> = got_set.difference(&want_set).collect();
            self.fail(format!(
                "{label}:\n      expected {want:?}\n      got      {got:?}\n      missing {missing:?}, unexpected {unexpected:?}"
            ));
            return;
        }
        for row in &rows {
            if Some(row) != self.acme_by_id.get(&row.id) {
                self.fail(format!("{label}: row {} differs from acme's session (another org's row?): {row:?}", row.id));
            }
        }
    }

    /// `ids` in the order `query` lists them, per `ListQuery::key_of`.
    pub fn in_order<'s>(&self, query: &ListQuery, ids: &[&'s str]) -> Vec<&'s str> {
        let mut keyed: Vec<(i64, &str)> = ids.iter().map(|id| (query.key_of(self.session(id)), *id)).collect();
        keyed.sort();
        if query.direction == Direction::Desc {
            keyed.reverse();
        }
        keyed.into_iter().map(|(_, id)| id).collect()
    }

    /// Every acme session in the total order of `sort` and `direction` at `query.now`.
    pub fn reference_order(&self, query: &ListQuery) -> Vec<String> {
        self.in_order(query, ALL).into_iter().map(str::to_owned).collect()
    }
}

impl Drop for Fixture<'_> {
    fn drop(&mut self) {
        let failures = self.failures.get_mut().unwrap_or_else(|e| e.into_inner());
        if !failures.is_empty() && !std::thread::panicking() {
            panic!("{} check(s) failed:\n  - {}", failures.len(), failures.join("\n  - "));
        }
    }
}

/// The listing of every sort and direction, at [`NOW`].
pub fn every_sort() -> Vec<ListQuery> {
    let mut out = Vec::new();
    for sort in [SortKey::StartTime, SortKey::EndTime, SortKey::Duration] {
        for direction in [Direction::Asc, Direction::Desc] {
            out.push(ListQuery { sort, direction, ..ListQuery::newest(1000, NOW) });
        }
    }
    out
}
