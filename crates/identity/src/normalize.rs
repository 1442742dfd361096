//! Identifier normalization: the same person written differently becomes the same key.

/// `  Anna.Berg+news@Example.SE ` → `anna.berg@example.se` (plus-addressing stripped when asked).
pub fn email(raw: &str, strip_plus: bool) -> Option<String> {
    let lower = raw.trim().to_lowercase();
    let (local, domain) = lower.split_once('@')?;
    let local = if strip_plus {
        local.split('+').next().unwrap_or(local)
    } else {
        local
    };
    if local.is_empty()
        || !domain.contains('.')
        || domain.contains('@')
        || lower.contains(char::is_whitespace)
    {
        return None;
    }
    Some(format!("{local}@{domain}"))
}

/// E.164: `070-123 45 67` with country code 46 → `+46701234567`; `0046…`, `+46…` and `46…`
/// too. Parsed by the numbering plans (libphonenumber's metadata) rather than by counting
/// digits, so a number that already carries its country code without a `+` is not given a
/// second one. Whether the number exists in its plan is [`crate::validate::phone`]'s question.
/// Without that question, 8 to 15 digits after the `+` (as E.164 allows) keep out fragments.
pub fn phone(raw: &str, default_country_code: Option<&str>) -> Option<String> {
    parse_phone(raw, default_country_code)
        .map(|n| e164(&n))
        .filter(|e| (9..=16).contains(&e.len()))
}

pub(crate) fn e164(number: &phonenumber::PhoneNumber) -> String {
    number.format().mode(phonenumber::Mode::E164).to_string()
}

/// The numbering plan needs a region (`SE`), the pipeline gives a calling code (`46`): the
/// code's main region decides how national prefixes and `00` are read.
fn region(country_code: &str) -> Option<phonenumber::country::Id> {
    let code: u16 = country_code.trim().trim_start_matches('+').parse().ok()?;
    let regions = phonenumber::metadata::DATABASE.by_code(&code)?;
    let main = regions
        .iter()
        .find(|m| m.is_main_country_for_code())
        .or_else(|| regions.first())?;
    main.id().parse().ok()
}

pub(crate) fn parse_phone(
    raw: &str,
    default_country_code: Option<&str>,
) -> Option<phonenumber::PhoneNumber> {
    let trimmed = raw.trim();
    let region = default_country_code.and_then(region);
    // Without a region the library knows no international prefix; `00` is the one used by
    // nearly every country, so it is read as `+` rather than losing the number.
    let text = match (region, trimmed.strip_prefix("00")) {
        (None, Some(rest)) => format!("+{rest}"),
        _ => trimmed.to_string(),
    };
    phonenumber::parse(region, text).ok()
}

/// National identity numbers without separators; a 12-digit Swedish personnummer
/// (`19850102-1234`) and its 10-digit form (`850102-1234`) give the same key. Only the form:
/// whether the number can exist is [`crate::validate::national_id`]'s question.
pub fn national_id(raw: &str) -> Option<String> {
    let compact: String = raw
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect::<String>()
        .to_uppercase();
    if compact.is_empty() {
        return None;
    }
    let all_digits = compact.bytes().all(|b| b.is_ascii_digit());
    Some(if all_digits && compact.len() == 12 {
        compact[2..].to_string()
    } else {
        compact
    })
}

/// Lowercase words without punctuation, common street abbreviations expanded.
fn words(raw: &str) -> String {
    raw.to_lowercase()
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| match w {
            "g" | "gt" => "gatan",
            "v" => "vagen",
            "st" | "str" => "street",
            "rd" => "road",
            "ave" => "avenue",
            other => other,
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Name, street address and postal code together: all three must be present.
pub fn name_address(name: &str, address: &str, postal_code: &str) -> Option<String> {
    let (n, a) = (words(name), words(address));
    let p: String = postal_code
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect::<String>()
        .to_uppercase();
    (!n.is_empty() && !a.is_empty() && !p.is_empty()).then(|| format!("{n}|{a}|{p}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        assert_eq!(
            email("  Anna.Berg+news@Example.SE ", true).as_deref(),
            Some("anna.berg@example.se")
        );
        assert_eq!(
            email("anna.berg+news@example.se", false).as_deref(),
            Some("anna.berg+news@example.se")
        );
        assert_eq!(email("not an email", true), None);
        assert_eq!(email("a@b", true), None);
    }

    #[test]
    fn phones() {
        for raw in [
            "070-123 45 67",
            "+46 70 123 45 67",
            "0046701234567",
            "(070) 1234567",
        ] {
            assert_eq!(
                phone(raw, Some("46")).as_deref(),
                Some("+46701234567"),
                "{raw}"
            );
        }
        assert_eq!(
            phone("070-123 45 67", None),
            None,
            "a national number needs a country"
        );
        assert_eq!(phone("123", Some("46")), None);
    }

    #[test]
    fn national_ids_and_addresses() {
        assert_eq!(national_id("19850102-1234"), national_id("850102-1234"));
        assert_eq!(national_id(" 850102 1234 ").as_deref(), Some("8501021234"));
        assert_eq!(
            name_address("Anna  Berg", "Storg. 5", "114 20"),
            name_address("anna berg", "storg 5", "11420")
        );
        assert_eq!(name_address("Anna", "", "11420"), None);
    }
}
