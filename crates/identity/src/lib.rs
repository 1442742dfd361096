//! Person-level identity: records about the same person, from several sources and exports,
//! linked into one `person_id`.
//!
//! Records are linked when they share a normalized identifier, by rule in this order: the same
//! source record key, national id, email, phone, name + address. Linked records form one person
//! (union-find, so A–B by email and B–C by phone make A, B and C one person). Because one wrong
//! link merges whole groups, an identifier links only if it could be real ([`validate`]: check
//! digits, numbering plans, placeholders like `N/A` or `0000000000`) and if it is not on more
//! records than [`Limits::max_records_per_identifier`]; the rest are counted for the manifest.
//!
//! Ids are stable across runs through a registry: every identifier ever seen (as a SHA-256, not
//! the value) → its person id. A person keeps the id of any identifier known before (the
//! smallest when two known persons merge); a new person's id is derived from its smallest
//! identifier hash, so a run without history is deterministic too. Two persons never share an
//! id in one run, even when an old registry says so (see `assign_ids`).

pub mod normalize;
pub mod validate;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

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
    /// `(source, rule)` pairs whose values are already tokens ([`token`]): the source column
    /// is `pii: hash`, normalized by this rule before hashing at read time. Such values link
    /// by equality; plain values of the same rule from other inputs are turned into tokens
    /// too (with `hash_key`), so hashed and clear inputs still link.
    pub tokens: BTreeSet<(String, &'static str)>,
}

/// What a `pii: hash` identifier column holds in place of a value that passes its rule:
/// HMAC-SHA-256 under the pipeline's key of `rule:normalized`. A value that fails its rule is
/// hashed as it was written and marked with [`INVALID_TOKEN_PREFIX`], so it is still kept (as
/// a token) but never links.
pub fn token(key: &[u8], rule: &str, normalized: &str) -> String {
    identifier_hash(Some(key), rule, normalized)
}

/// Marks the token of an identifier that failed its rule (see [`token`]).
pub const INVALID_TOKEN_PREFIX: &str = "invalid-";

/// The normalized identifier of `raw` under `rule` (`email`, `phone`, `national_id`), as
/// linking uses it; `Ok(None)` for an empty value.
pub fn normalize_identifier(
    rule: &str,
    raw: &str,
    strip_plus_addressing: bool,
    default_country_code: Option<&str>,
) -> Result<Option<String>, validate::Rejection> {
    match rule {
        "email" => validate::email(raw, strip_plus_addressing),
        "phone" => validate::phone(raw, default_country_code),
        "national_id" => validate::national_id(raw),
        _ => Err(validate::Rejection::Invalid),
    }
}

/// A default for [`Limits::max_records_per_identifier`]: households and small firms share an
/// address or a phone, but no real person's e-mail or phone is on more customer records than
/// this.
pub const DEFAULT_MAX_RECORDS_PER_IDENTIFIER: usize = 50;

/// Guards against identifiers that pass every rule yet are placeholders in practice: the
/// shop's own phone typed in for walk-in customers, `kundtjanst@shop.se`. Kept apart from
/// [`Options`] so that code building `Options` field by field keeps compiling; new limits can
/// be added without breaking callers (start from [`Limits::default`] and set fields).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// An identifier on more distinct records (source + key) than this is not used to link
    /// and is reported in [`Resolved::over_shared`]. Record keys themselves are exempt: a
    /// source saying two rows are one customer is not a placeholder. `usize::MAX` turns the cap
    /// off.
    pub max_records_per_identifier: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_records_per_identifier: DEFAULT_MAX_RECORDS_PER_IDENTIFIER,
        }
    }
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
    /// Identifiers that failed their rules (see [`validate`]), per rule, counted once per
    /// record: how much of the input could not help linking, for the manifest. Every rule but
    /// `record_key` is present, zero included.
    pub rejected: BTreeMap<&'static str, u64>,
    /// Identifiers shared by more records than [`Limits::max_records_per_identifier`], per
    /// rule: each one's number of records, largest first. Only counts — the values are
    /// personal data and stay out of the manifest.
    pub over_shared: BTreeMap<&'static str, Vec<u64>>,
}

/// The identifiers usable for linking, by rule; rejected ones are counted in `rejected`.
/// Phones are remembered by their raw text: parsing against the numbering plans is the slow
/// part, and the same number recurs across sources and exports.
fn identifiers<'a>(
    r: &'a Record,
    opts: &Options,
    phones: &mut HashMap<&'a str, Result<Option<String>, validate::Rejection>>,
    rejected: &mut BTreeMap<&'static str, u64>,
) -> [Option<String>; 5] {
    let is_token = |rule: &str| {
        opts.tokens
            .iter()
            .any(|(source, token_rule)| *source == r.source && *token_rule == rule)
    };
    let raw_phone = r.phone.as_deref().unwrap_or("");
    // A token is not a phone number: parsing it against the numbering plans is wasted work.
    let phone = if is_token("phone") {
        Ok(None)
    } else {
        phones
            .entry(raw_phone)
            .or_insert_with(|| validate::phone(raw_phone, opts.default_country_code.as_deref()))
            .clone()
    };
    let checked = [
        validate::national_id(r.national_id.as_deref().unwrap_or("")),
        validate::email(r.email.as_deref().unwrap_or(""), opts.strip_plus_addressing),
        phone,
        validate::name_address(
            r.name.as_deref(),
            r.address.as_deref(),
            r.postal_code.as_deref(),
        ),
    ];
    let mut out: [Option<String>; 5] = Default::default();
    out[0] = Some(format!("{}\u{1f}{}", r.source, r.key));
    let given = [&r.national_id, &r.email, &r.phone];
    for (i, result) in checked.into_iter().enumerate() {
        let rule = RULES[i + 1];
        let result = match given.get(i) {
            // A token from a `pii: hash` column: normalized and checked at read time.
            Some(value) if is_token(rule) => {
                match value.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
                    None => Ok(None),
                    Some(v) if v.starts_with(INVALID_TOKEN_PREFIX) => {
                        Err(validate::Rejection::Invalid)
                    }
                    Some(v) => Ok(Some(v.to_string())),
                }
            }
            // Clear text of a rule other inputs give as tokens: make it comparable.
            Some(_) if opts.tokens.iter().any(|(_, r)| *r == rule) => {
                result.map(|v| v.map(|v| identifier_hash(opts.hash_key.as_deref(), rule, &v)))
            }
            _ => result,
        };
        match result {
            Ok(value) => out[i + 1] = value,
            Err(_) => *rejected.entry(rule).or_default() += 1,
        }
    }
    out
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

/// Drops every identifier (record keys excepted) that more than `cap` distinct records carry,
/// returning each one's record count per rule, largest first.
fn drop_over_shared(
    ids: &mut [[Option<String>; 5]],
    cap: usize,
) -> BTreeMap<&'static str, Vec<u64>> {
    let mut over: BTreeMap<&'static str, Vec<u64>> = BTreeMap::new();
    // The same record key repeated (history rows of one customer) is one record.
    let mut key_index: HashMap<&str, usize> = HashMap::new();
    let record_of: Vec<usize> = ids
        .iter()
        .enumerate()
        .map(|(i, r)| *key_index.entry(r[0].as_deref().unwrap_or("")).or_insert(i))
        .collect();
    for (rule_index, rule) in RULES.iter().enumerate().skip(1) {
        let mut seen: HashSet<(&str, usize)> = HashSet::new();
        let mut count: HashMap<&str, u64> = HashMap::new();
        for (i, record_ids) in ids.iter().enumerate() {
            if let Some(value) = record_ids[rule_index].as_deref()
                && seen.insert((value, record_of[i]))
            {
                *count.entry(value).or_default() += 1;
            }
        }
        let dropped: HashMap<String, u64> = count
            .into_iter()
            .filter(|&(_, n)| usize::try_from(n).is_ok_and(|n| n > cap))
            .map(|(v, n)| (v.to_string(), n))
            .collect();
        if dropped.is_empty() {
            continue;
        }
        let mut counts: Vec<u64> = dropped.values().copied().collect();
        counts.sort_unstable_by(|a, b| b.cmp(a));
        over.insert(rule, counts);
        for record_ids in ids.iter_mut() {
            if record_ids[rule_index]
                .as_deref()
                .is_some_and(|v| dropped.contains_key(v))
            {
                record_ids[rule_index] = None;
            }
        }
    }
    over
}

/// [`resolve_with`] under the default [`Limits`].
pub fn resolve(records: &[Record], opts: &Options, registry: &HashMap<String, String>) -> Resolved {
    resolve_with(records, opts, &Limits::default(), registry)
}

pub fn resolve_with(
    records: &[Record],
    opts: &Options,
    limits: &Limits,
    registry: &HashMap<String, String>,
) -> Resolved {
    let n = records.len();
    let mut rejected: BTreeMap<&'static str, u64> = RULES[1..].iter().map(|r| (*r, 0)).collect();
    let mut phones = HashMap::new();
    let mut ids: Vec<[Option<String>; 5]> = records
        .iter()
        .map(|r| identifiers(r, opts, &mut phones, &mut rejected))
        .collect();
    drop(phones);
    let over_shared = drop_over_shared(&mut ids, limits.max_records_per_identifier);
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
    let group_hashes: Vec<BTreeSet<String>> = groups
        .values()
        .map(|members| {
            members
                .iter()
                .flat_map(|&i| {
                    RULES.iter().zip(&ids[i]).filter_map(|(rule, v)| {
                        v.as_ref().map(|v| {
                            if opts.tokens.iter().any(|(_, r)| r == rule) {
                                // Already `identifier_hash(key, rule, normalized)` (see
                                // `token`): the same registry key as before the column was
                                // hashed, so known persons stay known.
                                v.clone()
                            } else {
                                identifier_hash(opts.hash_key.as_deref(), rule, v)
                            }
                        })
                    })
                })
                .collect()
        })
        .collect();
    let ids_of_groups = assign_ids(&group_hashes, registry);
    let mut person_id = vec![String::new(); n];
    let mut new_registry: BTreeMap<String, String> = registry
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut known_persons = 0;
    for ((members, hashes), (id, known)) in groups.values().zip(group_hashes).zip(ids_of_groups) {
        known_persons += usize::from(known);
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
        rejected,
        over_shared,
    }
}

/// A person id per group, and whether it came from the registry.
///
/// A group keeps the smallest registry id among its identifiers — but no two groups may share
/// one. They would, after records that a placeholder once collapsed into one person are told
/// apart again: each still finds the collapsed person's id under its own identifiers. The id
/// then stays with the group holding the smallest identifier hash registered under it
/// (deterministic, whatever the input order); the others take their next known id, or a new
/// one.
fn assign_ids(
    group_hashes: &[BTreeSet<String>],
    registry: &HashMap<String, String>,
) -> Vec<(String, bool)> {
    // Per group: its known ids, each with the smallest of its hashes registered under it.
    let known: Vec<BTreeMap<&String, &String>> = group_hashes
        .iter()
        .map(|hashes| {
            let mut ids: BTreeMap<&String, &String> = BTreeMap::new();
            for h in hashes {
                if let Some(id) = registry.get(h) {
                    ids.entry(id).or_insert(h);
                }
            }
            ids
        })
        .collect();
    let mut claim: HashMap<&String, &String> = HashMap::new();
    for ids in &known {
        for (&id, &h) in ids {
            claim
                .entry(id)
                .and_modify(|best| *best = (*best).min(h))
                .or_insert(h);
        }
    }
    let mut taken: HashSet<String> = HashSet::new();
    let mut out: Vec<Option<(String, bool)>> = vec![None; group_hashes.len()];
    // First every group that owns one of its known ids; then the rest, in group order.
    for (g, ids) in known.iter().enumerate() {
        if let Some((&id, _)) = ids.iter().find(|&(id, h)| claim.get(id) == Some(h)) {
            taken.insert(id.clone());
            out[g] = Some((id.clone(), true));
        }
    }
    let used: HashSet<&String> = registry.values().collect();
    for (g, ids) in known.iter().enumerate() {
        if out[g].is_some() {
            continue;
        }
        if let Some(&id) = ids.keys().find(|id| !taken.contains(**id)) {
            taken.insert(id.clone());
            out[g] = Some((id.clone(), true));
            continue;
        }
        let smallest = group_hashes[g].first().map_or("", String::as_str);
        let id = [16, 32, smallest.len()]
            .iter()
            .map(|&len| format!("P{}", &smallest[..len.min(smallest.len())]))
            .find(|id| !taken.contains(id) && (known[g].is_empty() || !used.contains(id)))
            .unwrap_or_else(|| format!("P{smallest}-{g}"));
        taken.insert(id.clone());
        out[g] = Some((id, false));
    }
    out.into_iter().map(Option::unwrap_or_default).collect()
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
            ..Options::default()
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

    fn sweden() -> Options {
        Options {
            strip_plus_addressing: true,
            default_country_code: Some("46".into()),
            hash_key: None,
            ..Options::default()
        }
    }

    fn with_national_id(key: &str, national_id: &str) -> Record {
        Record {
            national_id: Some(national_id.into()),
            ..rec("crm", key, None, None)
        }
    }

    #[test]
    fn placeholder_phone_0000000000_links_nobody() {
        let records = [
            rec("crm", "1", None, Some("0000000000")),
            rec("crm", "2", None, Some("0000000000")),
            rec("web", "a", None, Some("000-000 00 00")),
        ];
        let r = resolve(&records, &sweden(), &HashMap::new());
        assert_eq!(r.persons, 3);
        assert_eq!(r.matched_by, vec!["none"; 3]);
    }

    #[test]
    fn n_a_national_id_links_nobody() {
        let records = [
            with_national_id("1", "N/A"),
            with_national_id("2", "n/a"),
            with_national_id("3", "NA"),
        ];
        let r = resolve(&records, &sweden(), &HashMap::new());
        assert_eq!(r.persons, 3);
        assert_eq!(r.matched_by, vec!["none"; 3]);
    }

    #[test]
    fn personnummer_with_a_wrong_check_digit_links_nobody() {
        // 811218-9876 is valid (Luhn); 811218-9875 is a typo that must not link to anyone.
        let records = [
            with_national_id("1", "811218-9875"),
            with_national_id("2", "19811218-9875"),
        ];
        let r = resolve(&records, &sweden(), &HashMap::new());
        assert_eq!(r.persons, 2);
    }

    #[test]
    fn placeholder_emails_link_nobody() {
        let records = [
            rec("crm", "1", Some("test@test.com"), None),
            rec("crm", "2", Some("TEST@test.com"), None),
            rec("crm", "3", Some("noemail@shop.se"), None),
            rec("crm", "4", Some("noemail@shop.se"), None),
        ];
        let r = resolve(&records, &sweden(), &HashMap::new());
        assert_eq!(r.persons, 4);
    }

    #[test]
    fn phone_with_country_code_without_plus_keeps_one_country_code() {
        let records = [
            rec("crm", "1", None, Some("+46 70 123 45 67")),
            rec("web", "a", None, Some("46701234567")),
            rec("web", "b", None, Some("0046701234567")),
        ];
        let r = resolve(&records, &sweden(), &HashMap::new());
        assert_eq!(r.persons, 1);
        assert_eq!(r.matched_by, vec!["phone"; 3]);
    }

    #[test]
    fn an_identifier_shared_by_more_records_than_the_cap_links_nobody() {
        // The shop's own address typed into 51 customer records: a placeholder, not a person.
        let records: Vec<Record> = (0..51)
            .map(|i| rec("crm", &i.to_string(), Some("kundtjanst@shop.se"), None))
            .collect();
        let r = resolve(&records, &sweden(), &HashMap::new());
        assert_eq!(r.persons, 51);
        assert!(r.matched_by.iter().all(|m| *m == "none"));
    }

    #[test]
    fn customers_collapsed_by_a_placeholder_last_year_get_their_own_ids_again() {
        // Last year's registry, written before placeholders were rejected: every customer's
        // identifiers point at the one person that `0000000000` built.
        let records: Vec<Record> = (0..3)
            .map(|i| {
                rec(
                    "crm",
                    &i.to_string(),
                    Some(&format!("c{i}@x.se")),
                    Some("0000000000"),
                )
            })
            .collect();
        let mut registry = HashMap::new();
        for r in &records {
            for (rule, value) in [
                ("record_key", format!("crm\u{1f}{}", r.key)),
                ("email", r.email.clone().unwrap_or_default()),
                ("phone", "+46000000000".to_string()),
            ] {
                registry.insert(
                    identifier_hash(None, rule, &value),
                    "Pcollapsed".to_string(),
                );
            }
        }
        let r = resolve(&records, &sweden(), &registry);
        let distinct: BTreeSet<&String> = r.person_id.iter().collect();
        assert_eq!(distinct.len(), 3, "{:?}", r.person_id);
        assert!(r.person_id.contains(&"Pcollapsed".to_string()));
        assert_eq!(r.known_persons, 1);
    }

    #[test]
    fn rejected_and_over_shared_identifiers_are_counted_without_their_values() {
        let mut records = vec![
            rec("crm", "1", Some("n/a"), Some("0000000000")),
            rec("crm", "2", Some("anna@x"), Some("070-123 45 67")),
            with_national_id("3", "811218-9875"),
        ];
        // One customer's 60 history rows share an e-mail: one record, not a placeholder.
        records.extend((0..60).map(|_| rec("crm", "4", Some("bo@x.se"), None)));
        // Four records share the reception's phone, over a cap of three.
        records.extend((0..4).map(|i| rec("web", &i.to_string(), None, Some("08-123 456 78"))));
        let limits = Limits {
            max_records_per_identifier: 3,
        };
        let r = resolve_with(&records, &sweden(), &limits, &HashMap::new());
        assert_eq!(r.rejected["email"], 2);
        assert_eq!(r.rejected["phone"], 1);
        assert_eq!(r.rejected["national_id"], 1);
        assert_eq!(r.rejected["name_address"], 0);
        assert_eq!(r.over_shared, BTreeMap::from([("phone", vec![4])]));
        // The history rows stay one person; the reception's callers stay four.
        assert_eq!(r.persons, 3 + 1 + 4);
        let debug = format!("{r:?}");
        assert!(!debug.contains("123 456") && !debug.contains("+46812345678"));
    }

    #[test]
    fn the_default_cap_allows_fifty_records() {
        let records: Vec<Record> = (0..DEFAULT_MAX_RECORDS_PER_IDENTIFIER)
            .map(|i| rec("crm", &i.to_string(), Some("family@x.se"), None))
            .collect();
        let r = resolve(&records, &sweden(), &HashMap::new());
        assert_eq!(r.persons, 1);
        assert!(r.over_shared.is_empty());
    }
}
