//! Which identifiers may link records at all.
//!
//! Normalization makes the same person's identifier look the same; it also makes every
//! `0000000000`, `N/A` and `test@test.com` look the same, and one such value typed into
//! thousands of customer records would make them one person. An identifier is used for linking
//! only if it passes its rules here; otherwise the record keeps its own key.

use crate::normalize;

/// Why an identifier was not used for linking.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Rejection {
    /// It cannot exist: a personnummer with a wrong check digit, a number outside every
    /// numbering plan, an e-mail address without a domain.
    Invalid,
    /// It is what people type when they have no value: `n/a`, `unknown`, `0000000000`,
    /// `1234567890`, `noemail@…`.
    Placeholder,
}

/// Values that mean "no value", compared lowercased with everything but letters and digits
/// removed, so `N/A`, `n.a.` and `n a` are all `na`. Swedish ones too, since the data is.
const PLACEHOLDER_WORDS: &[&str] = &[
    "na",
    "none",
    "null",
    "nil",
    "nan",
    "unknown",
    "undefined",
    "missing",
    "empty",
    "blank",
    "notapplicable",
    "notavailable",
    "tbd",
    "test",
    "dummy",
    "fake",
    "ingen",
    "saknas",
    "okand",
    "okänd",
    "uppgiftsaknas",
];

/// Local parts (before any `+tag`) that stand for "no e-mail address", on any domain.
const PLACEHOLDER_EMAIL_LOCALS: &[&str] = &[
    "noemail",
    "nomail",
    "ingenmail",
    "ingenepost",
    "noreply",
    "donotreply",
    "noname",
    "example",
];

/// Domains reserved for examples and tests (RFC 2606) or used as "no domain" by shop staff.
const PLACEHOLDER_EMAIL_DOMAINS: &[&str] = &[
    "example.com",
    "example.org",
    "example.net",
    "test.com",
    "test.se",
    "domain.com",
    "noemail.com",
    "noemail.se",
];

/// Top-level domains that never deliver mail (RFC 2606, RFC 6761).
const PLACEHOLDER_TLDS: &[&str] = &["test", "example", "invalid", "localhost", "local"];

fn compact_lower(raw: &str) -> String {
    raw.chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect()
}

/// `n/a`, `-`, `?`: a placeholder word, or nothing but punctuation.
fn is_placeholder_text(raw: &str) -> bool {
    let compact = compact_lower(raw);
    compact.is_empty() || PLACEHOLDER_WORDS.contains(&compact.as_str())
}

/// `0000000000`, `XXXXXX`: one character repeated.
fn is_one_character(compact: &str) -> bool {
    let mut chars = compact.chars();
    chars.next().is_some_and(|first| chars.all(|c| c == first))
}

/// `123456789`, `1234567890`, `9876543210`: a run of consecutive digits, each one more (or one
/// less) than the one before, wrapping 9 → 0. Six digits at least, so a real short number is
/// not caught by chance.
fn is_digit_run(digits: &str) -> bool {
    let d: Vec<u8> = digits.bytes().map(|b| b.wrapping_sub(b'0')).collect();
    if d.len() < 6 || d.iter().any(|&x| x > 9) {
        return false;
    }
    let step = |a: u8, b: u8| (b + 10 - a) % 10;
    let first = step(d[0], d[1]);
    (first == 1 || first == 9) && d.windows(2).all(|w| step(w[0], w[1]) == first)
}

/// The Luhn check used by Swedish personnummer: over the 10-digit form, weights 2, 1, 2, …
fn luhn_ok(ten: &[u8]) -> bool {
    let sum: u32 = ten
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            let d = u32::from(b - b'0') * if i % 2 == 0 { 2 } else { 1 };
            d / 10 + d % 10
        })
        .sum();
    sum.is_multiple_of(10)
}

/// A Swedish personnummer or samordningsnummer (day + 60) in its 10-digit form: a month, a
/// day and the check digit that catches one wrong digit or two swapped ones.
fn swedish_id_ok(ten: &str) -> bool {
    let b = ten.as_bytes();
    let two = |i: usize| u32::from(b[i] - b'0') * 10 + u32::from(b[i + 1] - b'0');
    let (month, day) = (two(2), two(4));
    (1..=12).contains(&month) && ((1..=31).contains(&day) || (61..=91).contains(&day)) && luhn_ok(b)
}

/// `Ok(None)`: no value. `Ok(Some(key))`: the normalized national id, usable for linking.
///
/// Ten or twelve digits (separators `-`, `+` and spaces allowed) are read as a Swedish
/// personnummer or samordningsnummer and must have a real month, day and check digit. Other
/// countries' ids are kept as before, but placeholders are still refused.
pub fn national_id(raw: &str) -> Result<Option<String>, Rejection> {
    if raw.trim().is_empty() {
        return Ok(None);
    }
    if is_placeholder_text(raw) {
        return Err(Rejection::Placeholder);
    }
    let Some(key) = normalize::national_id(raw) else {
        return Err(Rejection::Placeholder);
    };
    let raw_compact: String = raw.chars().filter(char::is_ascii_alphanumeric).collect();
    if is_one_character(&key) || is_digit_run(&key) || is_digit_run(&raw_compact) {
        return Err(Rejection::Placeholder);
    }
    let all_digits = raw_compact.bytes().all(|b| b.is_ascii_digit());
    match raw_compact.len() {
        12 if all_digits => {
            let century = &raw_compact[..2];
            if !matches!(century, "18" | "19" | "20") || !swedish_id_ok(&key) {
                return Err(Rejection::Invalid);
            }
        }
        10 if all_digits && !swedish_id_ok(&key) => return Err(Rejection::Invalid),
        _ => {}
    }
    Ok(Some(key))
}

/// `Ok(None)`: no value. `Ok(Some(key))`: the E.164 number, usable for linking.
///
/// The number must be valid in its numbering plan (a national number read with
/// `default_country_code`), and neither one digit repeated nor a run like `123456789`.
pub fn phone(raw: &str, default_country_code: Option<&str>) -> Result<Option<String>, Rejection> {
    if raw.trim().is_empty() {
        return Ok(None);
    }
    if is_placeholder_text(raw) {
        return Err(Rejection::Placeholder);
    }
    let digits: String = raw.chars().filter(char::is_ascii_digit).collect();
    if digits.is_empty() {
        return Err(Rejection::Placeholder);
    }
    if is_one_character(&digits) || is_digit_run(&digits) {
        return Err(Rejection::Placeholder);
    }
    let number = normalize::parse_phone(raw, default_country_code).ok_or(Rejection::Invalid)?;
    let national = number.national().value().to_string();
    if is_one_character(&national) || is_digit_run(&national) {
        return Err(Rejection::Placeholder);
    }
    if !number.is_valid() {
        return Err(Rejection::Invalid);
    }
    Ok(Some(normalize::e164(&number)))
}

/// `Ok(None)`: no value. `Ok(Some(key))`: the normalized address, usable for linking.
///
/// Only the shape is checked (one `@`, a dot in the domain, no spaces, no empty domain
/// label): deliverability cannot be known here. Addresses that stand for "none" are refused.
pub fn email(raw: &str, strip_plus_addressing: bool) -> Result<Option<String>, Rejection> {
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Ok(None);
    }
    if is_placeholder_text(trimmed) {
        return Err(Rejection::Placeholder);
    }
    let key = normalize::email(trimmed, strip_plus_addressing).ok_or(Rejection::Invalid)?;
    let (local, domain) = key.split_once('@').ok_or(Rejection::Invalid)?;
    if domain.split('.').any(str::is_empty) {
        return Err(Rejection::Invalid);
    }
    let lower = trimmed.to_lowercase();
    let untagged = lower.split(['+', '@']).next().unwrap_or(local);
    let local_compact = compact_lower(untagged);
    let tld = domain.rsplit('.').next().unwrap_or(domain);
    if local_compact.is_empty()
        || PLACEHOLDER_WORDS.contains(&local_compact.as_str())
        || PLACEHOLDER_EMAIL_LOCALS.contains(&local_compact.as_str())
        || PLACEHOLDER_EMAIL_DOMAINS.contains(&domain)
        || PLACEHOLDER_TLDS.contains(&tld)
    {
        return Err(Rejection::Placeholder);
    }
    Ok(Some(key))
}

/// `Ok(None)`: not all three parts given (an empty part is not given). `Ok(Some(key))`: usable for linking.
///
/// `Unknown`, `n/a`, `-` as a name or street would link everyone at one postal code.
pub fn name_address(
    name: Option<&str>,
    address: Option<&str>,
    postal_code: Option<&str>,
) -> Result<Option<String>, Rejection> {
    let (Some(name), Some(address), Some(postal_code)) = (name, address, postal_code) else {
        return Ok(None);
    };
    if [name, address, postal_code]
        .iter()
        .any(|p| p.trim().is_empty())
    {
        return Ok(None);
    }
    let postal_digits: String = postal_code.chars().filter(char::is_ascii_digit).collect();
    if [name, address, postal_code]
        .iter()
        .any(|p| is_placeholder_text(p))
        || (!postal_digits.is_empty() && postal_digits.bytes().all(|b| b == b'0'))
    {
        return Err(Rejection::Placeholder);
    }
    Ok(normalize::name_address(name, address, postal_code))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SE: Option<&str> = Some("46");

    #[test]
    fn swedish_national_ids_need_a_date_and_a_check_digit() {
        let key = Ok(Some("8112189876".to_string()));
        for raw in ["811218-9876", "8112189876", "19811218-9876", "198112189876"] {
            assert_eq!(national_id(raw), key, "{raw}");
        }
        // A centenarian's `+` separator is still the same number.
        assert_eq!(national_id("811218+9876"), key);
        // Samordningsnummer: day + 60.
        assert_eq!(
            national_id("701063-2391"),
            Ok(Some("7010632391".to_string()))
        );
        assert_eq!(national_id("811218-9875"), Err(Rejection::Invalid));
        assert_eq!(
            national_id("811318-9876"),
            Err(Rejection::Invalid),
            "month 13"
        );
        assert_eq!(
            national_id("21811218-9876"),
            Err(Rejection::Invalid),
            "century 21"
        );
    }

    #[test]
    fn national_id_placeholders() {
        for raw in [
            "N/A",
            "n.a.",
            "NA",
            "none",
            "NULL",
            "unknown",
            "-",
            "?",
            "okänd",
            "0000000000",
            "000000-0000",
            "1234567890",
            "XXXXXXXX",
        ] {
            assert_eq!(national_id(raw), Err(Rejection::Placeholder), "{raw}");
        }
        assert_eq!(national_id("  "), Ok(None));
        // Not Swedish: kept as written, without separators.
        assert_eq!(
            national_id("AB 12 34 56 C"),
            Ok(Some("AB123456C".to_string()))
        );
    }

    #[test]
    fn phones_must_exist_in_their_numbering_plan() {
        let e164 = Ok(Some("+46701234567".to_string()));
        for raw in [
            "070-123 45 67",
            "+46 70 123 45 67",
            "0046701234567",
            "46701234567",
            "46 70 123 45 67",
        ] {
            assert_eq!(phone(raw, SE), e164, "{raw}");
        }
        assert_eq!(
            phone("+45 20 12 34 56", SE).map(|p| p.is_some()),
            Ok(true),
            "Danish"
        );
        assert_eq!(phone("0046701234567", None), e164, "00 without a country");
        assert_eq!(phone("070-123 45 67", None), Err(Rejection::Invalid));
        assert_eq!(phone("+46 12", SE), Err(Rejection::Invalid));
        assert_eq!(phone("", SE), Ok(None));
        for raw in [
            "0000000000",
            "000-000 00 00",
            "9999999",
            "1234567890",
            "0123456789",
            "+46 123 456 789",
            "n/a",
            "-",
            "none",
        ] {
            assert_eq!(phone(raw, SE), Err(Rejection::Placeholder), "{raw}");
        }
    }

    #[test]
    fn email_shapes_and_placeholders() {
        assert_eq!(
            email(" Anna+shop@X.se ", true),
            Ok(Some("anna@x.se".to_string()))
        );
        for raw in [
            "anna",
            "anna@x",
            "anna@@x.se",
            "an na@x.se",
            "anna@x..se",
            "anna@.se",
        ] {
            assert_eq!(email(raw, true), Err(Rejection::Invalid), "{raw}");
        }
        for raw in [
            "test@test.com",
            "noemail@shop.se",
            "NoEmail+1@shop.se",
            "no.email@shop.se",
            "ingen@shop.se",
            "n/a",
            "anna@example.com",
            "anna@shop.invalid",
        ] {
            assert_eq!(email(raw, false), Err(Rejection::Placeholder), "{raw}");
        }
    }

    #[test]
    fn name_address_placeholders() {
        assert_eq!(
            name_address(Some("Unknown"), Some("Storg. 5"), Some("114 20")),
            Err(Rejection::Placeholder)
        );
        assert_eq!(
            name_address(Some("Anna"), Some("n/a"), Some("114 20")),
            Err(Rejection::Placeholder)
        );
        assert_eq!(
            name_address(Some("Anna"), Some("Storg. 5"), Some("000 00")),
            Err(Rejection::Placeholder)
        );
        assert!(matches!(
            name_address(Some("Anna"), Some("Storg. 5"), Some("114 20")),
            Ok(Some(_))
        ));
        assert_eq!(name_address(Some("Anna"), None, Some("114 20")), Ok(None));
    }

    #[test]
    fn digit_runs() {
        assert!(is_digit_run("123456789"));
        assert!(is_digit_run("8901234567"));
        assert!(is_digit_run("9876543210"));
        assert!(!is_digit_run("0701234567"));
        assert!(!is_digit_run("12345"));
    }
}
