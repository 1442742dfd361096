//! Key normalization, so `123 45`, `12345` and `SE-123 45` are the same Swedish postal code.
//!
//! Each normalizer returns the canonical key, or `None` when the text is not a valid key of
//! that kind (the engine counts those as invalid keys rather than silently not matching).

/// How postal codes are written and validated per country.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Country {
    /// Sweden: 5 digits, written `123 45`.
    Se,
    /// Denmark: 4 digits.
    Dk,
    /// Norway: 4 digits.
    No,
    /// Finland: 5 digits.
    Fi,
    /// United States: ZIP (5 digits) or ZIP+4; the key is the 5-digit ZIP.
    Us,
    /// United Kingdom: outward code (`SW1A`) and inward code (`1AA`), written `SW1A 1AA`.
    Uk,
}

impl Country {
    pub fn parse(code: &str) -> Option<Self> {
        Some(match code.to_ascii_uppercase().as_str() {
            "SE" => Country::Se,
            "DK" => Country::Dk,
            "NO" => Country::No,
            "FI" => Country::Fi,
            "US" => Country::Us,
            "UK" | "GB" => Country::Uk,
            _ => return None,
        })
    }

    pub const CODES: [&'static str; 6] = ["SE", "DK", "NO", "FI", "US", "UK"];

    fn prefixes(self) -> &'static [&'static str] {
        match self {
            Country::Se => &["SE"],
            Country::Dk => &["DK"],
            Country::No => &["NO"],
            Country::Fi => &["FI"],
            Country::Us => &["US"],
            Country::Uk => &["GB", "UK"],
        }
    }
}

/// Strips an `SE-` / `DK ` style country prefix.
fn without_country_prefix(text: &str, country: Country) -> &str {
    after_country_prefix(text, country).unwrap_or(text)
}

/// The text after an `SE-` / `DK ` style country prefix, `None` when it has none.
fn after_country_prefix(text: &str, country: Country) -> Option<&str> {
    country.prefixes().iter().find_map(|prefix| {
        let rest = text.strip_prefix(prefix)?.trim_start_matches(['-', ' ']);
        rest.starts_with(|c: char| c.is_ascii_digit())
            .then_some(rest)
    })
}

fn digits_only(text: &str) -> Option<String> {
    let digits: String = text
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '.'))
        .collect();
    digits.chars().all(|c| c.is_ascii_digit()).then_some(digits)
}

/// The canonical postal code: digits only for the Nordics and the US (5-digit ZIP), `AA9A 9AA`
/// for the UK.
pub fn postal_code(text: &str, country: Country) -> Option<String> {
    let upper = text.trim().to_ascii_uppercase();
    let text = without_country_prefix(&upper, country);
    match country {
        Country::Se | Country::Fi => digits_only(text).filter(|d| d.len() == 5),
        Country::Dk | Country::No => digits_only(text).filter(|d| d.len() == 4),
        Country::Us => {
            // ZIP+4 keeps its ZIP; a ZIP stored as a number loses leading zeros (02134 → 2134).
            let zip = text.split_once('-').map_or(text, |(zip, plus4)| {
                if plus4.len() == 4 && plus4.chars().all(|c| c.is_ascii_digit()) {
                    zip
                } else {
                    text
                }
            });
            let digits = digits_only(zip)?;
            match digits.len() {
                5 => Some(digits),
                9 => Some(digits[..5].to_string()),
                3 | 4 => Some(format!("{digits:0>5}")),
                _ => None,
            }
        }
        Country::Uk => uk_postcode(text),
    }
}

/// `SW1A1AA`, `sw1a 1aa` → `SW1A 1AA`. The inward code is always digit-letter-letter; the
/// outward code is 2–4 characters starting with a letter.
fn uk_postcode(text: &str) -> Option<String> {
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    if !(5..=7).contains(&compact.len()) || !compact.is_ascii() {
        return None;
    }
    let (outward, inward) = compact.split_at(compact.len() - 3);
    let inward_ok = {
        let b = inward.as_bytes();
        b[0].is_ascii_digit() && b[1].is_ascii_alphabetic() && b[2].is_ascii_alphabetic()
    };
    let outward_ok = outward.starts_with(|c: char| c.is_ascii_alphabetic())
        && outward.chars().all(|c| c.is_ascii_alphanumeric())
        && outward.chars().any(|c| c.is_ascii_digit());
    (inward_ok && outward_ok).then(|| format!("{outward} {inward}"))
}

/// The coarser area of a canonical postal code, for fallback joins: the first 3 digits in
/// Sweden and Finland, the first 2 in Denmark and Norway, the 3-digit ZIP prefix (SCF) in
/// the US, the outward code (postcode district) in the UK.
pub fn postal_area(text: &str, country: Country) -> Option<String> {
    let code = postal_code(text, country)?;
    Some(match country {
        Country::Se | Country::Fi | Country::Us => code[..3].to_string(),
        Country::Dk | Country::No => code[..2].to_string(),
        Country::Uk => code.split(' ').next().unwrap_or_default().to_string(),
    })
}

/// An area code as a reference table holds it (`123`, `sw1a`): upper case, no spaces or
/// hyphens.
pub fn area_key(text: &str) -> Option<String> {
    let key: String = text
        .chars()
        .filter(|c| !matches!(c, ' ' | '-'))
        .collect::<String>()
        .to_uppercase();
    (!key.is_empty()).then_some(key)
}

/// Trimmed text; empty is no key.
pub fn exact(text: &str) -> Option<String> {
    let t = text.trim();
    (!t.is_empty()).then(|| t.to_string())
}

/// Street abbreviations written out, so `Storg. 5` and `Storgatan 5` are the same address.
const ABBREVIATIONS: [(&str, &str); 10] = [
    ("ST", "STREET"),
    ("RD", "ROAD"),
    ("AVE", "AVENUE"),
    ("AV", "AVENUE"),
    ("BLVD", "BOULEVARD"),
    ("LN", "LANE"),
    ("DR", "DRIVE"),
    ("G", "GATAN"),
    ("V", "VÄGEN"),
    ("VEJ", "VEJ"),
];

/// Upper case, punctuation dropped, whitespace collapsed, abbreviations written out; a
/// word ending in `G.`/`V.` (`Storg.`) is a street name cut short (`STORGATAN`).
pub fn address(text: &str) -> Option<String> {
    let upper = text.trim().to_uppercase();
    if upper.is_empty() {
        return None;
    }
    let mut words = Vec::new();
    for raw in upper.split_whitespace() {
        let abbreviated = raw.ends_with('.');
        let word: String = raw.chars().filter(|c| c.is_alphanumeric()).collect();
        if word.is_empty() {
            continue;
        }
        let expanded = ABBREVIATIONS
            .iter()
            .find(|(short, _)| *short == word)
            .map(|(_, long)| (*long).to_string())
            .or_else(|| {
                // `STORG.` → `STORGATAN`, `KUNGSV.` → `KUNGSVÄGEN`.
                let stem = word.strip_suffix('G').map(|s| (s, "GATAN"));
                let stem = stem.or_else(|| word.strip_suffix('V').map(|s| (s, "VÄGEN")));
                stem.filter(|(s, _)| abbreviated && s.len() >= 2)
                    .map(|(s, end)| format!("{s}{end}"))
            })
            .unwrap_or(word);
        words.push(expanded);
    }
    (!words.is_empty()).then(|| words.join(" "))
}

/// A Swedish organisation number (10 digits, Luhn check digit; `16` century prefix and
/// hyphen allowed) or a Danish CVR number (8 digits, modulus 11 with weights 2,7,6,5,4,3,2,1).
///
/// A Swedish VAT number, `SE` + the organisation number + `01`, keys as the organisation
/// number: firmographic data and invoices write them that way, and the company is the same.
/// The `SE` is required, since without it 12 digits could as well be a personal identity
/// number with its century. `SE16…01` reads two ways, but never validly both: the `16` adds 8
/// to the Luhn sum where the `01` adds 1.
pub fn org_number(text: &str, country: Country) -> Option<String> {
    let upper = text.trim().to_ascii_uppercase();
    let prefixed = after_country_prefix(&upper, country);
    let digits = digits_only(prefixed.unwrap_or(&upper))?;
    match country {
        Country::Se => {
            let readings: Vec<&str> = match digits.len() {
                10 => vec![&digits],
                12 => {
                    let century = digits.strip_prefix("16");
                    let vat = digits.strip_suffix("01").filter(|_| prefixed.is_some());
                    century.into_iter().chain(vat).collect()
                }
                _ => Vec::new(),
            };
            readings
                .into_iter()
                .find(|d| luhn_valid(d))
                .map(str::to_string)
        }
        Country::Dk => {
            const WEIGHTS: [u32; 8] = [2, 7, 6, 5, 4, 3, 2, 1];
            if digits.len() != 8 {
                return None;
            }
            let sum: u32 = digits
                .chars()
                .zip(WEIGHTS)
                .map(|(c, w)| c.to_digit(10).unwrap_or(0) * w)
                .sum();
            sum.is_multiple_of(11).then_some(digits)
        }
        _ => digits_only(&upper).filter(|d| !d.is_empty()),
    }
}

fn luhn_valid(digits: &str) -> bool {
    let sum: u32 = digits
        .chars()
        .rev()
        .enumerate()
        .map(|(i, c)| {
            let d = c.to_digit(10).unwrap_or(0);
            if i % 2 == 1 {
                let doubled = d * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nordic_postal_codes_in_every_national_style() {
        for text in ["123 45", "12345", "SE-123 45", "se 12345", " 123-45 "] {
            assert_eq!(
                postal_code(text, Country::Se).as_deref(),
                Some("12345"),
                "{text}"
            );
        }
        assert_eq!(postal_code("1234", Country::Se), None);
        assert_eq!(postal_code("DK-2100", Country::Dk).as_deref(), Some("2100"));
        assert_eq!(postal_code("0150", Country::No).as_deref(), Some("0150"));
        assert_eq!(postal_code("00100", Country::Fi).as_deref(), Some("00100"));
        assert_eq!(postal_code("12A45", Country::Se), None);
        assert_eq!(postal_area("123 45", Country::Se).as_deref(), Some("123"));
        assert_eq!(postal_area("2100", Country::Dk).as_deref(), Some("21"));
    }

    #[test]
    fn us_zip_codes_and_zip_plus_four() {
        assert_eq!(postal_code("02134", Country::Us).as_deref(), Some("02134"));
        assert_eq!(
            postal_code("02134-1234", Country::Us).as_deref(),
            Some("02134")
        );
        assert_eq!(
            postal_code("021341234", Country::Us).as_deref(),
            Some("02134")
        );
        // A ZIP that went through a spreadsheet as a number.
        assert_eq!(postal_code("2134", Country::Us).as_deref(), Some("02134"));
        assert_eq!(postal_code("123456", Country::Us), None);
        assert_eq!(postal_area("02134", Country::Us).as_deref(), Some("021"));
    }

    #[test]
    fn uk_postcodes_get_their_space_back() {
        for text in ["SW1A 1AA", "sw1a1aa", " SW1A  1AA", "GB-SW1A 1AA"] {
            let got = postal_code(&text.replace("GB-", ""), Country::Uk);
            assert_eq!(got.as_deref(), Some("SW1A 1AA"), "{text}");
        }
        assert_eq!(
            postal_code("M1 1AE", Country::Uk).as_deref(),
            Some("M1 1AE")
        );
        assert_eq!(postal_code("1AA SW1", Country::Uk), None);
        assert_eq!(postal_area("m11ae", Country::Uk).as_deref(), Some("M1"));
    }

    #[test]
    fn addresses_compare_after_case_punctuation_and_abbreviations() {
        assert_eq!(address("Storg. 5").as_deref(), Some("STORGATAN 5"));
        assert_eq!(address("  storgatan   5 ").as_deref(), Some("STORGATAN 5"));
        assert_eq!(
            address("10 Downing St.").as_deref(),
            Some("10 DOWNING STREET")
        );
        assert_eq!(
            address("10, Downing Street").as_deref(),
            Some("10 DOWNING STREET")
        );
        assert_eq!(address("Kungsv. 12B").as_deref(), Some("KUNGSVÄGEN 12B"));
        assert_eq!(address("   "), None);
    }

    #[test]
    fn organisation_numbers_with_check_digits() {
        // 556036-0793 (a real, published Swedish organisation number): Luhn over 5560360793.
        assert_eq!(
            org_number("556036-0793", Country::Se).as_deref(),
            Some("5560360793")
        );
        assert_eq!(
            org_number("16556036-0793", Country::Se).as_deref(),
            Some("5560360793")
        );
        assert_eq!(org_number("556036-0794", Country::Se), None);
        // CVR 10150817: 1·2+0·7+1·6+5·5+0·4+8·3+1·2+7·1 = 66 = 6·11.
        assert_eq!(
            org_number("DK 10150817", Country::Dk).as_deref(),
            Some("10150817")
        );
        assert_eq!(org_number("10150818", Country::Dk), None);
    }

    #[test]
    fn swedish_vat_format_organisation_numbers() {
        // 556677-8899: Luhn over 5566778899 is 60. VAT: SE + the 10 digits + 01.
        let key = org_number("556677-8899", Country::Se);
        assert_eq!(key.as_deref(), Some("5566778899"));
        for text in [
            "SE556677889901",
            "se556677889901",
            " SE 5566778899 01 ",
            "SE 556677-8899 01",
            "SE-556677-8899-01",
            "SE5566 7788 9901",
        ] {
            assert_eq!(org_number(text, Country::Se), key, "{text}");
        }
        assert_eq!(
            org_number("SE556036079301", Country::Se).as_deref(),
            Some("5560360793")
        );
        // Bad Luhn in the 10 digits.
        assert_eq!(org_number("SE556677889801", Country::Se), None);
        assert_eq!(org_number("SE556036079401", Country::Se), None);
        // Wrong suffix: a VAT number ends in 01.
        for text in [
            "SE556677889902",
            "SE556677889900",
            "SE55667788990",
            "SE5566778899011",
        ] {
            assert_eq!(org_number(text, Country::Se), None, "{text}");
        }
        // Without `SE`, 12 digits are not a VAT number.
        assert_eq!(org_number("556677889901", Country::Se), None);
        // The century form is as before, prefixed or not.
        assert_eq!(
            org_number("SE 16556036-0793", Country::Se).as_deref(),
            Some("5560360793")
        );
    }
}
