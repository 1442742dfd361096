//! Person-level identity: records about the same person, from several sources and exports,
//! linked into one `person_id`.
//!
//! Records are linked when they share a normalized identifier, by rule in this order: the same
//! source record key, national id, email, phone, name + address. Linked records form one person
//! (union-find, so A–B by email and B–C by phone make A, B and C one person).
//!
//! Ids are stable across runs through a registry: every identifier ever seen (as a SHA-256, not
//! the value) → its person id. A person keeps the id of any identifier known before (the
//! smallest when two known persons merge); a new person's id is derived from its smallest
//! identifier hash, so a run without history is deterministic too.

pub mod normalize;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// One input record with its raw identifier values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Record {
    pub source: String,
    pub key: String,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub national_id: Option<String>,
    pub name: Option<String>,
    pub address: Option<String>,
    pub postal_code: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    /// Key for the registry's identifier hashes (the pipeline's PII key): with it, the stored
    /// hashes cannot be matched against a list of known e-mail addresses.
    pub hash_key: Option<Vec<u8>>,
    /// `anna+news@x.se` is `anna@x.se`.
    pub strip_plus_addressing: bool,
    /// Country calling code for national phone numbers, e.g. `46`.
    pub default_country_code: Option<String>,
}

/// Linking rules in precedence order.
pub const RULES: [&str; 5] = [
    "record_key",
    "national_id",
    "email",
    "phone",
    "name_address",
];

/// The outcome: a person id per record (in input order), how each record was linked, merges
/// per rule, and the registry to keep for the next run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub person_id: Vec<String>,
    /// The first rule that linked the record to another one, or `none`.
    pub matched_by: Vec<&'static str>,
    /// Unions per rule that joined two different groups.
    pub merges: BTreeMap<&'static str, u64>,
    pub persons: usize,
    /// Persons that got an id already in the registry.
    pub known_persons: usize,
    /// Identifier hash → person id, old entries kept.
    pub registry: BTreeMap<String, String>,
}

fn identifiers(r: &Record, opts: &Options) -> [Option<String>; 5] {
    let name_address = match (&r.name, &r.address, &r.postal_code) {
        (Some(n), Some(a), Some(p)) => normalize::name_address(n, a, p),
        _ => None,
    };
    [
        Some(format!("{}\u{1f}{}", r.source, r.key)),
        r.national_id.as_deref().and_then(normalize::national_id),
        r.email
            .as_deref()
            .and_then(|e| normalize::email(e, opts.strip_plus_addressing)),
        r.phone
            .as_deref()
            .and_then(|p| normalize::phone(p, opts.default_country_code.as_deref())),
        name_address,
    ]
}

/// HMAC-SHA-256 (with a key) or SHA-256 of `rule:value`: what the registry stores instead of
/// personal data.
fn identifier_hash(key: Option<&[u8]>, rule: &str, value: &str) -> String {
    let text = format!("{rule}:{value}");
    match key.and_then(|k| <Hmac<Sha256> as Mac>::new_from_slice(k).ok()) {
        Some(mut mac) => {
            mac.update(text.as_bytes());
            hex::encode(mac.finalize().into_bytes())
        }
        None => hex::encode(Sha256::digest(text.as_bytes())),
    }
}

fn find(parent: &mut [usize], mut i: usize) -> usize {
    while parent[i] != i {
        parent[i] = parent[parent[i]];
        i = parent[i];
    }
    i
}

pub fn resolve(records: &[Record], opts: &Options, registry: &HashMap<String, String>) -> Resolved {
    let n = records.len();
    let ids: Vec<[Option<String>; 5]> = records.iter().map(|r| identifiers(r, opts)).collect();
    let mut parent: Vec<usize> = (0..n).collect();
    let mut matched_by = vec!["none"; n];
    let mut merges: BTreeMap<&'static str, u64> = RULES.iter().map(|r| (*r, 0)).collect();
    for (rule_index, rule) in RULES.iter().enumerate() {
        let mut first: HashMap<&str, usize> = HashMap::new();
        for (i, record_ids) in ids.iter().enumerate() {
            let Some(value) = &record_ids[rule_index] else {
                continue;
            };
            let Some(&j) = first.get(value.as_str()) else {
                first.insert(value, i);
                continue;
            };
            for k in [i, j] {
                if matched_by[k] == "none" {
                    matched_by[k] = rule;
                }
            }
            let (a, b) = (find(&mut parent, i), find(&mut parent, j));
            if a != b {
                parent[a.max(b)] = a.min(b);
                *merges.entry(rule).or_default() += 1;
            }
        }
    }
    let mut groups: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for i in 0..n {
        let root = find(&mut parent, i);
        groups.entry(root).or_default().push(i);
    }
    let mut person_id = vec![String::new(); n];
    let mut new_registry: BTreeMap<String, String> = registry
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut known_persons = 0;
    for members in groups.values() {
        let hashes: BTreeSet<String> = members
            .iter()
            .flat_map(|&i| {
                RULES.iter().zip(&ids[i]).filter_map(|(rule, v)| {
                    v.as_ref()
                        .map(|v| identifier_hash(opts.hash_key.as_deref(), rule, v))
                })
            })
            .collect();
        let known: BTreeSet<&String> = hashes.iter().filter_map(|h| registry.get(h)).collect();
        let id = match known.first() {
            Some(existing) => {
                known_persons += 1;
                (*existing).clone()
            }
            None => format!(
                "P{}",
                &hashes
                    .first()
                    .map_or_else(String::new, |h| h[..16].to_string())
            ),
        };
        for h in hashes {
            new_registry.insert(h, id.clone());
        }
        for &i in members {
            person_id[i] = id.clone();
        }
    }
    Resolved {
        person_id,
        matched_by,
        merges,
        persons: groups.len(),
        known_persons,
        registry: new_registry,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(source: &str, key: &str, email: Option<&str>, phone: Option<&str>) -> Record {
        Record {
            source: source.into(),
            key: key.into(),
            email: email.map(Into::into),
            phone: phone.map(Into::into),
            ..Record::default()
        }
    }

    #[test]
    fn transitive_links_and_merge_counts() {
        let opts = Options {
            strip_plus_addressing: true,
            default_country_code: Some("46".into()),
            hash_key: None,
        };
        let records = [
            rec("crm", "1", Some("Anna@X.se"), None),
            rec("web", "a", Some("anna+shop@x.se"), Some("070-111 22 33")),
            rec("web", "b", None, Some("+46701112233")),
            rec("crm", "2", Some("bo@x.se"), None),
        ];
        let r = resolve(&records, &opts, &HashMap::new());
        assert_eq!(r.persons, 2);
        assert_eq!(r.person_id[0], r.person_id[1]);
        assert_eq!(r.person_id[1], r.person_id[2]);
        assert_ne!(r.person_id[0], r.person_id[3]);
        assert_eq!(r.matched_by, vec!["email", "email", "phone", "none"]);
        assert_eq!(r.merges["email"], 1);
        assert_eq!(r.merges["phone"], 1);
    }

    #[test]
    fn ids_survive_new_identifiers_through_the_registry() {
        let opts = Options::default();
        let year1 = resolve(
            &[rec("crm", "1", Some("anna@x.se"), None)],
            &opts,
            &HashMap::new(),
        );
        let registry: HashMap<String, String> = year1.registry.clone().into_iter().collect();
        // Next year: a new CRM key and an extra identifier that hashes smaller or larger — the
        // id stays, because the email is known.
        let year2 = resolve(
            &[rec("crm", "77", Some("ANNA@x.se"), Some("+46700000000"))],
            &opts,
            &registry,
        );
        assert_eq!(year2.person_id, year1.person_id);
        assert_eq!(year2.known_persons, 1);
    }
}
