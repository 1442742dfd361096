//! Person-level identity across two sources and two years.

use std::collections::BTreeMap;

use crate::common::{Scratch, parquet_files, read_parquet, run_pipeline};

const PIPELINE: &str = r#"
pipeline: persons
period: year
output_dir: out
sources:
  crm:
    path: crm_${period}.csv
    schema: { customer_id: string, email: string, phone: string, personnummer: string, name: string, street: string, postal_code: string }
  web:
    path: web_${period}.csv
    schema: { user_id: string, mail: string, mobile: string }
steps:
  - name: persons
    model: identity
    default_country_code: "46"
    plus_addressing: strip
    inputs:
      - { from: crm, key: customer_id, email: email, phone: phone, national_id: personnummer, name: name, address: street, postal_code: postal_code }
      - { from: web, key: user_id, email: mail, phone: mobile }
outputs:
  persons: { from: persons, order_by: [source, key] }
"#;

/// source/key → (person_id, matched_by) of one run.
fn persons(s: &Scratch, period: &str) -> BTreeMap<String, (String, String)> {
    let (_, rows) =
        read_parquet(&parquet_files(&s.path(&format!("out/persons/period={period}")))[0]);
    rows.into_iter()
        .map(|r| (format!("{}/{}", r[0], r[1]), (r[2].clone(), r[3].clone())))
        .collect()
}

#[test]
fn same_people_spelled_differently_get_one_stable_person_id() {
    let s = Scratch::new();
    // 2024: Anna is K1 in the CRM and W1 on the web (e-mail with other case and +tag); Bo is K2
    // and W2 (phone written nationally and internationally); Cia and Dan are on their own.
    s.write(
        "crm_2024.csv",
        "customer_id,email,phone,personnummer,name,street,postal_code\n\
         K1,Anna.Berg@Example.se,,19850102-1234,Anna Berg,Storgatan 5,114 20\n\
         K2,bo@x.se,070-999 88 77,,Bo Ek,Lilla vägen 2,22100\n\
         K3,cia@x.se,,,Cia Lund,Ön 1,99999\n",
    );
    s.write(
        "web_2024.csv",
        "user_id,mail,mobile\nW1,anna.berg+shop@example.se,\nW2,,+46 70 999 88 77\nW3,dan@x.se,\n",
    );
    let p = s.write("p.yaml", PIPELINE);
    let r = run_pipeline(&p, "2024", s.dir.path());
    r.assert_code(0);
    let y1 = persons(&s, "2024");
    let id = |m: &BTreeMap<String, (String, String)>, k: &str| m[k].0.clone();
    assert_eq!(id(&y1, "crm/K1"), id(&y1, "web/W1"));
    assert_eq!(id(&y1, "crm/K2"), id(&y1, "web/W2"));
    let distinct: std::collections::BTreeSet<String> = y1.values().map(|v| v.0.clone()).collect();
    assert_eq!(distinct.len(), 4, "{y1:?}");
    let matched: Vec<&str> = y1.values().map(|v| v.1.as_str()).collect();
    assert_eq!(
        matched,
        vec!["email", "phone", "none", "email", "phone", "none"]
    );
    let step = r
        .manifest()
        .steps
        .into_iter()
        .find(|s| s.name == "persons")
        .expect("step");
    let params = step.parameters.expect("parameters");
    assert_eq!(params["merges"]["email"], 1);
    assert_eq!(params["merges"]["phone"], 1);
    assert_eq!(params["persons"], 4);

    // 2025: Anna re-registered as K9 with her personnummer in the short form and a new e-mail;
    // the web account W1 is gone. Bo is unchanged; Eva is new.
    s.write(
        "crm_2025.csv",
        "customer_id,email,phone,personnummer,name,street,postal_code\n\
         K9,anna@newmail.se,,850102-1234,Anna Berg,Storgatan 5,11420\n\
         K2,bo@x.se,070-999 88 77,,Bo Ek,Lilla vägen 2,22100\n\
         K4,eva@x.se,,,Eva Ny,Gata 1,11111\n",
    );
    s.write("web_2025.csv", "user_id,mail,mobile\nW2,,0046709998877\n");
    let r = run_pipeline(&p, "2025", s.dir.path());
    r.assert_code(0);
    let y2 = persons(&s, "2025");
    assert_eq!(id(&y2, "crm/K9"), id(&y1, "crm/K1"), "Anna keeps her id");
    assert_eq!(id(&y2, "crm/K2"), id(&y1, "crm/K2"), "Bo keeps his id");
    assert_eq!(id(&y2, "web/W2"), id(&y1, "crm/K2"));
    assert!(
        !distinct.contains(&id(&y2, "crm/K4")),
        "Eva is a new person"
    );
    let step = r
        .manifest()
        .steps
        .into_iter()
        .find(|s| s.name == "persons")
        .expect("step");
    assert_eq!(step.parameters.expect("parameters")["known_persons"], 2);
}

/// Regression (issue 11, "registry errors"): a registry that exists but cannot be opened was
/// read as "no registry", so every person would be re-keyed and the registry overwritten. Here
/// `out/identity` is a file, so opening the registry below it fails with "not a directory":
/// the run must stop at the identity step, naming the registry.
#[test]
fn a_registry_that_cannot_be_opened_is_an_error_not_an_empty_registry() {
    let s = Scratch::new();
    s.write(
        "crm_2024.csv",
        "customer_id,email,phone,personnummer,name,street,postal_code\nK1,a@x.se,,,,,\n",
    );
    s.write("web_2024.csv", "user_id,mail,mobile\nW1,a@x.se,\n");
    s.write("out/identity", "not a directory");
    let p = s.write("p.yaml", PIPELINE);
    let r = run_pipeline(&p, "2024", s.dir.path());
    r.assert_code(2);
    assert!(
        r.stderr.contains("cannot read the identity registry"),
        "{}",
        r.stderr
    );
}

/// Regression (issue 11 item 12): with the README's privacy setup, `pii: hash` on e-mail and
/// phone hashed the raw text at read time, so identity saw HMAC hex it could not read as an
/// e-mail and linked nobody; and `Anna@X.se` and `anna@x.se` hashed to different tokens. Now
/// each identifier column is normalized by its identity rule before hashing, identity links
/// on the tokens, clear-text inputs of the same rule are tokenized to match, a placeholder
/// hashed at read time still counts as rejected, and no clear value reaches any output.
#[test]
fn identity_links_on_pii_hashed_identifiers_normalized_before_hashing() {
    let s = Scratch::new();
    s.write(
        "crm.csv",
        "customer_id,email,phone\n\
         K1,Anna.Berg@Example.SE ,\n\
         K2,,070-999 88 77\n\
         K3,n/a,\n\
         K4,N/A,\n\
         K5,,\n\
         K6, ,\n",
    );
    // The web export is not hashed: its e-mails must still meet the CRM's tokens.
    s.write(
        "web.csv",
        "user_id,mail,mobile\nW1,anna.berg+shop@example.se,\nW2,,+46 70 999 88 77\n",
    );
    let p = s.write(
        "p.yaml",
        r#"
pipeline: hashed_persons
period: year
output_dir: out
privacy: { key_env: SEGFLOW_PII_KEY }
sources:
  crm:
    path: crm.csv
    schema:
      customer_id: string
      email: { type: string, pii: hash }
      phone: { type: string, pii: hash }
  web:
    path: web.csv
    schema: { user_id: string, mail: string, mobile: string }
steps:
  - name: persons
    model: identity
    default_country_code: "46"
    plus_addressing: strip
    inputs:
      - { from: crm, key: customer_id, email: email, phone: phone }
      - { from: web, key: user_id, email: mail, phone: mobile }
  - { name: crm_out, sql: "SELECT * FROM crm" }
outputs:
  persons: { from: persons, order_by: [source, key] }
  crm_out: { from: crm_out, order_by: [customer_id] }
"#,
    );
    let r = crate::common::segflow_env(
        &["run", p.to_str().expect("utf8"), "--period", "2025"],
        s.dir.path(),
        &[("SEGFLOW_PII_KEY", "test-key-not-a-secret")],
    );
    r.assert_code(0);
    let y = persons(&s, "2025");
    let id = |k: &str| y[k].0.clone();
    assert_eq!(id("crm/K1"), id("web/W1"), "{y:?}");
    assert_eq!(y["crm/K1"].1, "email");
    assert_eq!(id("crm/K2"), id("web/W2"), "{y:?}");
    assert_eq!(y["crm/K2"].1, "phone");
    // The two `N/A`s are placeholders, not one shared e-mail.
    assert_ne!(id("crm/K3"), id("crm/K4"));
    // Blank e-mails are no e-mail, not one shared token.
    assert_ne!(id("crm/K5"), id("crm/K6"));
    let distinct: std::collections::BTreeSet<String> = y.values().map(|v| v.0.clone()).collect();
    assert_eq!(distinct.len(), 6, "{y:?}");
    let step = r
        .manifest()
        .steps
        .into_iter()
        .find(|s| s.name == "persons")
        .expect("step");
    let params = step.parameters.expect("parameters");
    assert_eq!(params["merges"]["email"], 1, "{params}");
    assert_eq!(params["merges"]["phone"], 1, "{params}");
    assert_eq!(params["rejected"]["email"], 2, "{params}");

    // The hashed columns hold tokens, never the values, and the same person's e-mail written
    // two ways is one token.
    let (names, rows) = read_parquet(&parquet_files(&s.path("out/crm_out/period=2025"))[0]);
    let email = names.iter().position(|n| n == "email").expect("email");
    let phone = names.iter().position(|n| n == "phone").expect("phone");
    for row in &rows {
        for cell in [&row[email], &row[phone]] {
            assert!(!cell.contains('@') && !cell.contains("070"), "{row:?}");
        }
    }
    // The placeholders are kept as (marked) tokens: nothing is lost, nothing links.
    assert!(
        rows[2][email].starts_with("invalid-") && rows[3][email].starts_with("invalid-"),
        "{rows:?}"
    );
}

/// Review finding on item 12: hashed identifiers were hashed once more for the registry, so
/// turning on `pii: hash` for a column re-keyed every person known by it. A person known from
/// a run on clear e-mails keeps the id when the e-mail column is hashed from then on.
#[test]
fn turning_on_pii_hash_keeps_known_person_ids() {
    let s = Scratch::new();
    let pipeline = |email: &str| {
        format!(
            r#"
pipeline: persons
period: year
output_dir: out
privacy: {{ key_env: SEGFLOW_PII_KEY }}
sources:
  crm:
    path: crm_${{period}}.csv
    schema: {{ customer_id: string, email: {email} }}
steps:
  - name: persons
    model: identity
    inputs:
      - {{ from: crm, key: customer_id, email: email }}
outputs:
  persons: {{ from: persons, order_by: [source, key] }}
"#
        )
    };
    let env = [("SEGFLOW_PII_KEY", "test-key-not-a-secret")];
    s.write("crm_2024.csv", "customer_id,email\nK1,anna@x.se\n");
    let p = s.write("p.yaml", &pipeline("string"));
    crate::common::segflow_env(
        &["run", p.to_str().expect("utf8"), "--period", "2024"],
        s.dir.path(),
        &env,
    )
    .assert_code(0);
    // 2025: Anna has a new customer number; the e-mail column is hashed from now on.
    s.write("crm_2025.csv", "customer_id,email\nK9,Anna@X.se\n");
    let p = s.write("p.yaml", &pipeline("{ type: string, pii: hash }"));
    crate::common::segflow_env(
        &["run", p.to_str().expect("utf8"), "--period", "2025"],
        s.dir.path(),
        &env,
    )
    .assert_code(0);
    let before = persons(&s, "2024");
    let after = persons(&s, "2025");
    assert_eq!(
        after["crm/K9"].0, before["crm/K1"].0,
        "{before:?} {after:?}"
    );
}
