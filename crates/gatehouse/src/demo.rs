//! Synthetic sessions for demos and benchmarks: realistic people, groups,
//! resources, connectors and networks, spread over a time span, with a few
//! sessions still active. Deterministic for a given seed.

use std::ops::Range;

use gatehouse_core::session::{ConnectorRef, ResourceRef, SessionUser, Sidecar};
use gatehouse_core::{Identity, Micros, Session};
use gatehouse_store::Resource;
use gatehouse_store::identity::User;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const FIRST_NAMES: &[&str] = &[
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory", "niaj", "olivia",
    "peggy", "rupert", "sybil", "trent", "victor", "walter", "yusuf", "zoe", "amara", "bashir", "chen", "dmitri",
    "elif", "farah", "goran", "hana", "ines", "jonas", "kenji", "lucia", "mateo", "noor", "oskar", "priya", "quinn",
    "rosa", "sven",
];
const LAST_NAMES: &[&str] =
    &["smith", "jones", "garcia", "kim", "nguyen", "patel", "muller", "rossi", "silva", "tanaka", "okafor", "novak"];
const GROUPS: &[&str] = &["dba", "sre", "backend", "data", "analytics", "security", "support", "finance", "oncall"];
const MACHINES: &[&str] =
    &["etl-nightly", "billing-worker", "metrics-exporter", "airflow", "dbt-runner", "backup-agent"];
const NATIVE_ROLES: &[&str] = &["app_readonly", "app_rw", "analyst", "admin", "replicator", "postgres"];
/// (name prefix, technology, server network)
const RESOURCE_KINDS: &[(&str, &str, &str)] = &[
    ("orders-db", "postgres", "10.20.1"),
    ("billing-db", "postgres", "10.20.2"),
    ("users-db", "postgres", "10.20.3"),
    ("inventory", "mysql", "10.30.1"),
    ("catalog", "mysql", "10.30.2"),
    ("events", "mongodb", "10.40.1"),
    ("warehouse", "snowflake", "172.16.5"),
    ("analytics", "redshift", "172.16.6"),
    ("bastion", "ssh", "10.50.1"),
    ("cache", "redis", "10.60.1"),
];
const ENVIRONMENTS: &[&str] = &["prod", "staging", "eu-prod"];
const CONNECTORS: &[&str] = &["connector-us-east-1", "connector-us-west-2", "connector-eu-west-1", "connector-onprem"];
/// Client networks: office, VPN, CI runners, a home connection over IPv6.
const CLIENT_NETWORKS: &[&str] = &["192.168.10", "192.168.20", "10.8.0", "10.99.4", "100.64.12"];

struct Person {
    identity: Identity,
    username: String,
}

/// Generates sessions of one organization.
pub struct DemoData {
    rng: StdRng,
    people: Vec<Person>,
    resources: Vec<ResourceRef>,
    connectors: Vec<ConnectorRef>,
}

impl DemoData {
    pub fn new(seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut people = Vec::new();
        for (i, first) in FIRST_NAMES.iter().enumerate() {
            let last = LAST_NAMES[i % LAST_NAMES.len()];
            let mut groups: Vec<String> =
                (0..rng.gen_range(1..=3)).map(|_| GROUPS[rng.gen_range(0..GROUPS.len())].to_owned()).collect();
            groups.sort();
            groups.dedup();
            people.push(Person {
                identity: Identity {
                    id: format!("user_{:04}", i + 1),
                    name: format!("{} {}", capitalize(first), capitalize(last)),
                    email: format!("{first}.{last}@example.com"),
                    kind: "human".into(),
                    groups,
                    external_ids: vec![format!("okta|00u{:06}", 100_000 + i * 37)],
                },
                username: format!("idp:formal:human:{first}.{last}@example.com"),
            });
        }
        for (i, machine) in MACHINES.iter().enumerate() {
            people.push(Person {
                identity: Identity {
                    id: format!("machine_{:04}", i + 1),
                    name: (*machine).to_owned(),
                    kind: "machine".into(),
                    groups: vec!["automation".into()],
                    ..Default::default()
                },
                username: format!("idp:formal:machine:{machine}"),
            });
        }
        let mut resources = Vec::new();
        for (prefix, technology, _) in RESOURCE_KINDS {
            for env in ENVIRONMENTS {
                resources.push(ResourceRef {
                    kind: "datastore".into(),
                    id: format!("res_{:04}", resources.len() + 1),
                    name: format!("{prefix}-{env}"),
                    technology: (*technology).to_owned(),
                });
            }
        }
        let connectors = CONNECTORS
            .iter()
            .enumerate()
            .map(|(i, name)| ConnectorRef {
                id: format!("con_{:04}", i + 1),
                name: (*name).to_owned(),
                run_id: String::new(),
            })
            .collect();
        Self { rng, people, resources, connectors }
    }

    /// The resources the sessions go to, as the registry holds them: their host is the
    /// sessions' server address.
    pub fn resources(&self, created: Micros) -> Vec<Resource> {
        self.resources
            .iter()
            .enumerate()
            .map(|(index, r)| Resource {
                id: r.id.clone(),
                name: r.name.clone(),
                kind: r.kind.clone(),
                technology: r.technology.clone(),
                host: server_ip(index),
                port: match r.technology.as_str() {
                    "postgres" => 5432,
                    "mysql" => 3306,
                    "mongodb" => 27017,
                    "redshift" => 5439,
                    "redis" => 6379,
                    "ssh" => 22,
                    _ => 443,
                },
                created,
            })
            .collect()
    }

    /// The people and machines the sessions name, as users of the organization with the same
    /// ids: `users list` shows them, and a token made for one logs in through a connector.
    pub fn users(&self, created: Micros) -> Vec<User> {
        self.people
            .iter()
            .map(|person| {
                let identity = &person.identity;
                User {
                    id: identity.id.clone(),
                    kind: identity.kind.parse().expect("the demo's people are humans or machines"),
                    email: identity.email.clone(),
                    name: identity.name.clone(),
                    groups: identity.groups.clone(),
                    external_ids: identity.external_ids.clone(),
                    disabled: false,
                    created,
                    updated: created,
                }
            })
            .collect()
    }

    /// `count` completed sessions started within `starts` (never in the last
    /// minute before `now`), plus `active` sessions started in the last few
    /// hours and still running, in start order as a connector reports them.
    pub fn sessions(&mut self, count: usize, active: usize, now: Micros, starts: Range<Micros>) -> Vec<Session> {
        let latest = starts.end.min(now - 60_000_000);
        let earliest = starts.start.min(latest - 1);
        let rng = &mut self.rng;
        let mut times: Vec<(Micros, bool)> = (0..count + active)
            .map(|i| {
                if i < count {
                    (rng.gen_range(earliest..latest), false)
                } else {
                    (now - rng.gen_range(1_000_000..4 * 3_600_000_000), true)
                }
            })
            .collect();
        times.sort_unstable();
        times.into_iter().map(|(start, is_active)| self.session(start, is_active, now)).collect()
    }

    fn session(&mut self, start: Micros, active: bool, now: Micros) -> Session {
        let rng = &mut self.rng;
        // A few heavy users produce most sessions, as in real audits.
        let who = (rng.gen_range(0.0f64..1.0).powi(2) * self.people.len() as f64) as usize;
        let person = &self.people[who.min(self.people.len() - 1)];
        let resource_index = (rng.gen_range(0.0f64..1.0).powf(1.5) * self.resources.len() as f64) as usize;
        let resource = self.resources[resource_index.min(self.resources.len() - 1)].clone();
        let connector = self.connectors[resource_index % self.connectors.len()].clone();
        let client_ip = if rng.gen_bool(0.05) {
            format!("2001:db8:{:x}::{:x}", rng.gen_range(1..16), rng.gen_range(1..4096))
        } else {
            format!("{}.{}", CLIENT_NETWORKS[rng.gen_range(0..CLIENT_NETWORKS.len())], rng.gen_range(2..250))
        };
        // Mostly short interactive sessions, some long ones.
        let duration = if rng.gen_bool(0.85) {
            rng.gen_range(2_000_000..20 * 60_000_000)
        } else {
            rng.gen_range(20 * 60_000_000..6 * 3_600_000_000)
        };
        let end = (!active).then(|| (start + duration).min(now));
        let native = NATIVE_ROLES[rng.gen_range(0..NATIVE_ROLES.len())];
        // A machine acting for a person of the organization: that user, groups and all, as the
        // connector records one named by `gatehouse.end_user`.
        let end_user = (person.identity.kind == "machine" && rng.gen_bool(0.3))
            .then(|| self.people[rng.gen_range(0..FIRST_NAMES.len())].identity.clone());
        Session {
            id: session_id(rng, start),
            start,
            end,
            client_ip,
            server_ip: server_ip(resource_index),
            sidecar: Sidecar {
                id: connector.id.clone(),
                name: connector.name.clone(),
                technology: resource.technology.clone(),
            },
            user: SessionUser {
                kind: person.identity.kind.clone(),
                username: person.username.clone(),
                formal: Some(person.identity.clone()),
                end_user,
                native_username: native.to_owned(),
            },
            resource,
            connector,
            parent_session_id: String::new(),
        }
    }
}

/// The address of the resource at `index`.
fn server_ip(index: usize) -> String {
    let network = RESOURCE_KINDS[index / ENVIRONMENTS.len() % RESOURCE_KINDS.len()].2;
    format!("{network}.{}", 10 + index % 200)
}

/// A UUIDv7 for a session that started at `start`.
pub fn session_id(rng: &mut impl Rng, start: Micros) -> String {
    let random: [u8; 10] = rng.r#gen();
    uuid::Builder::from_unix_timestamp_millis((start / 1000) as u64, &random).into_uuid().to_string()
}

fn capitalize(word: &str) -> String {
    let mut chars = word.chars();
    chars.next().map(|c| c.to_uppercase().chain(chars).collect()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_realistic() {
        let now = 1_700_000_000_000_000;
        let a = DemoData::new(7).sessions(500, 10, now, now - 30 * 86_400_000_000..now);
        let b = DemoData::new(7).sessions(500, 10, now, now - 30 * 86_400_000_000..now);
        assert_eq!(a, b);
        assert_eq!(a.iter().filter(|s| s.end.is_none()).count(), 10);
        assert!(a.iter().all(|s| s.start < now && s.end.is_none_or(|e| e >= s.start && e <= now)));
        assert!(a.windows(2).all(|w| w[0].start <= w[1].start), "in start order");
        let users: std::collections::HashSet<_> = a.iter().map(|s| &s.user.username).collect();
        assert!(users.len() > 20, "{}", users.len());
    }
}
