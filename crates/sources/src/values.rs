//! Typing one text cell as CRM exports write it: decimal commas, thousands separators, dates in
//! declared formats. A cell either becomes exactly its value or is refused with a reason —
//! never rounded, truncated or guessed.

use std::borrow::Cow;

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use segflow_spec::{ColumnType, CsvOptions};

/// A typed cell.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value<'a> {
    Null,
    Str(&'a str),
    I32(i32),
    I64(i64),
    F64(f64),
    Bool(bool),
    /// Days since 1970-01-01.
    Date(i32),
    /// Microseconds since 1970-01-01T00:00:00Z.
    Timestamp(i64),
    /// Unscaled value at the column's scale.
    Decimal(i128),
}

fn epoch() -> NaiveDate {
    NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or(NaiveDate::MIN)
}

/// `1 234,50` → `1234.50` for the declared separators; other stray characters are refused.
/// Text already in that form (the common case) is returned as is, without a copy.
///
/// A thousands separator is accepted only where it separates groups of three digits in the
/// integer part: with `thousands: "."` a cell `1.5` is far more likely a decimal point in the
/// wrong convention (or a typo) than fifteen, and dropping the separator anywhere would read
/// it as 15 — a silent factor of ten. So `1.234.567,89` reads, `1.5`, `12.34`, `1..234` and
/// `.123` are refused with a reason naming the separator.
fn normalize_number<'a>(text: &'a str, opts: &CsvOptions) -> Result<Cow<'a, str>, String> {
    if opts.decimal == b'.'
        && opts.thousands.is_none()
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'+' | b'e' | b'E'))
    {
        return Ok(Cow::Borrowed(text));
    }
    let mut out = String::with_capacity(text.len());
    let decimal = char::from(opts.decimal);
    let mut groups = Grouping::default();
    for c in text.chars() {
        let is_thousands = opts
            .thousands
            .is_some_and(|t| c == t || (t == ' ' && matches!(c, '\u{a0}' | '\u{202f}')));
        if is_thousands {
            groups.separator(c)?;
            continue;
        }
        if c == decimal {
            groups.end()?;
            out.push('.');
        } else if c.is_ascii_digit() {
            groups.digit();
            out.push(c);
        } else if c == '-' || c == '+' {
            out.push(c);
        } else if (c == 'e' || c == 'E') && decimal == '.' {
            groups.end()?;
            out.push(c);
        } else {
            return Err(format!("unexpected `{c}`"));
        }
    }
    groups.end()?;
    Ok(Cow::Owned(out))
}

/// Where a number's integer part stands with respect to its thousands separators.
#[derive(Debug, Default)]
struct Grouping {
    /// Digits since the start of the integer part or the last separator.
    digits: usize,
    /// The separator seen in the integer part, if any.
    seen: Option<char>,
    /// The integer part has ended (decimal separator or exponent).
    ended: bool,
}

impl Grouping {
    fn digit(&mut self) {
        if !self.ended {
            self.digits += 1;
        }
    }

    fn separator(&mut self, c: char) -> Result<(), String> {
        let well_placed = !self.ended
            && match self.seen {
                None => (1..=3).contains(&self.digits),
                Some(_) => self.digits == 3,
            };
        if !well_placed {
            return Err(misplaced(c));
        }
        self.seen = Some(c);
        self.digits = 0;
        Ok(())
    }

    /// The integer part ends; after a separator its last group must have three digits.
    fn end(&mut self) -> Result<(), String> {
        if !self.ended
            && let Some(sep) = self.seen
            && self.digits != 3
        {
            return Err(misplaced(sep));
        }
        self.ended = true;
        Ok(())
    }
}

fn misplaced(separator: char) -> String {
    let name = match separator {
        ' ' => "` ` (space)".to_string(),
        '\u{a0}' => "no-break space".to_string(),
        '\u{202f}' => "narrow no-break space".to_string(),
        c => format!("`{c}`"),
    };
    format!("thousands separator {name} is not between groups of three digits")
}

/// `YYYY-MM-DD` exactly, read without chrono's format machinery (the most common date by far);
/// anything else, including an impossible date, is left to chrono and its messages.
fn iso_date(text: &str) -> Option<NaiveDate> {
    let b = text.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let number = |range: std::ops::Range<usize>| {
        b[range].iter().try_fold(0u32, |n, &d| {
            d.is_ascii_digit().then(|| n * 10 + u32::from(d - b'0'))
        })
    };
    let year = i32::try_from(number(0..4)?).ok()?;
    NaiveDate::from_ymd_opt(year, number(5..7)?, number(8..10)?)
}

fn parse_decimal(text: &str, precision: u8, scale: i8) -> Result<i128, String> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let (int_part, frac_part) = digits.split_once('.').unwrap_or((digits, ""));
    if int_part.is_empty() && frac_part.is_empty()
        || !int_part.bytes().all(|b| b.is_ascii_digit())
        || !frac_part.bytes().all(|b| b.is_ascii_digit())
    {
        return Err("not a number".into());
    }
    let scale = usize::try_from(scale).unwrap_or(0);
    let (kept, dropped) = frac_part.split_at(frac_part.len().min(scale));
    if dropped.bytes().any(|b| b != b'0') {
        return Err(format!("more than {scale} decimals"));
    }
    let int_part = int_part.trim_start_matches('0');
    if int_part.len() + scale > usize::from(precision) {
        return Err(format!(
            "more than {} digits before the decimal point",
            usize::from(precision) - scale
        ));
    }
    let mut value: i128 = 0;
    for b in int_part
        .bytes()
        .chain(kept.bytes())
        .chain(std::iter::repeat_n(b'0', scale - kept.len()))
    {
        value = value * 10 + i128::from(b - b'0');
    }
    Ok(if negative { -value } else { value })
}

fn parse_bool(text: &str) -> Option<bool> {
    match text.to_ascii_lowercase().as_str() {
        "true" | "t" | "1" | "yes" | "y" => Some(true),
        "false" | "f" | "0" | "no" | "n" => Some(false),
        _ => None,
    }
}

fn parse_timestamp(text: &str, format: Option<&str>) -> Option<i64> {
    let utc = |dt: DateTime<Utc>| Some(dt.timestamp_micros());
    match format {
        Some(f) => DateTime::parse_from_str(text, f)
            .ok()
            .and_then(|dt| utc(dt.with_timezone(&Utc)))
            .or_else(|| {
                NaiveDateTime::parse_from_str(text, f)
                    .ok()
                    .and_then(|n| utc(n.and_utc()))
            }),
        None => DateTime::parse_from_rfc3339(text)
            .ok()
            .and_then(|dt| utc(dt.with_timezone(&Utc)))
            .or_else(|| {
                ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"]
                    .iter()
                    .find_map(|f| NaiveDateTime::parse_from_str(text, f).ok())
                    .and_then(|n| utc(n.and_utc()))
            }),
    }
}

/// Types one cell. Empty cells (after trimming) and declared null texts are NULL.
pub(crate) fn parse<'a>(
    text: &'a str,
    ty: ColumnType,
    format: Option<&str>,
    opts: &CsvOptions,
) -> Result<Value<'a>, String> {
    let trimmed = text.trim();
    if trimmed.is_empty() || opts.null_values.iter().any(|n| n == trimmed) {
        return Ok(Value::Null);
    }
    let refuse = |why: String| Err(format!("cannot read `{trimmed}` as {ty}: {why}"));
    match ty {
        ColumnType::String => Ok(Value::Str(text)),
        ColumnType::Int32 | ColumnType::Int64 => {
            let n = normalize_number(trimmed, opts)
                .and_then(|n| n.parse::<i64>().map_err(|e| e.to_string()));
            match (n, ty) {
                (Ok(v), ColumnType::Int32) => i32::try_from(v)
                    .map(Value::I32)
                    .or_else(|_| refuse("out of range".into())),
                (Ok(v), _) => Ok(Value::I64(v)),
                (Err(e), _) => refuse(e),
            }
        }
        ColumnType::Float64 => match normalize_number(trimmed, opts)
            .and_then(|n| n.parse::<f64>().map_err(|e| e.to_string()))
        {
            Ok(v) => Ok(Value::F64(v)),
            Err(e) => refuse(e),
        },
        ColumnType::Decimal { precision, scale } => {
            match normalize_number(trimmed, opts).and_then(|n| parse_decimal(&n, precision, scale))
            {
                Ok(v) => Ok(Value::Decimal(v)),
                Err(e) => refuse(e),
            }
        }
        ColumnType::Boolean => parse_bool(trimmed)
            .map(Value::Bool)
            .map_or_else(|| refuse("expected true/false, yes/no or 1/0".into()), Ok),
        ColumnType::Date => {
            if matches!(format, None | Some("%Y-%m-%d"))
                && let Some(d) = iso_date(trimmed)
            {
                return Ok(Value::Date((d - epoch()).num_days() as i32));
            }
            let f = format.unwrap_or("%Y-%m-%d");
            match NaiveDate::parse_from_str(trimmed, f) {
                Ok(d) => Ok(Value::Date((d - epoch()).num_days() as i32)),
                Err(e) => refuse(format!("{e} (format `{f}`)")),
            }
        }
        ColumnType::Timestamp => parse_timestamp(trimmed, format)
            .map(Value::Timestamp)
            .map_or_else(
                || {
                    refuse(format!(
                        "expected {}",
                        format.unwrap_or("an ISO 8601 timestamp")
                    ))
                },
                Ok,
            ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nordic() -> CsvOptions {
        CsvOptions {
            decimal: b',',
            thousands: Some(' '),
            ..CsvOptions::default()
        }
    }

    const DEC: ColumnType = ColumnType::Decimal {
        precision: 12,
        scale: 2,
    };

    #[test]
    fn decimal_commas_and_thousands() {
        let o = nordic();
        assert_eq!(
            parse("1 234,50", DEC, None, &o),
            Ok(Value::Decimal(123_450))
        );
        assert_eq!(
            parse("1\u{a0}234,5", DEC, None, &o),
            Ok(Value::Decimal(123_450))
        );
        assert_eq!(parse("-0,07", DEC, None, &o), Ok(Value::Decimal(-7)));
        assert_eq!(parse("12,300", DEC, None, &o), Ok(Value::Decimal(1_230)));
        assert_eq!(parse("3", ColumnType::Int64, None, &o), Ok(Value::I64(3)));
        assert!(parse("12,345", DEC, None, &o).is_err(), "never rounds");
        assert!(
            parse("1.234,50", DEC, None, &o).is_err(),
            "`.` is not declared"
        );
        let dots = CsvOptions {
            decimal: b',',
            thousands: Some('.'),
            ..CsvOptions::default()
        };
        assert_eq!(
            parse("1.234,50", DEC, None, &dots),
            Ok(Value::Decimal(123_450))
        );
        assert_eq!(
            parse("2,5", ColumnType::Float64, None, &o),
            Ok(Value::F64(2.5))
        );
    }

    #[test]
    fn thousands_separators_dropped_anywhere_in_a_number() {
        let dots = CsvOptions {
            decimal: b',',
            thousands: Some('.'),
            ..CsvOptions::default()
        };
        assert_eq!(
            parse("1.234.567,89", DEC, None, &dots),
            Ok(Value::Decimal(123_456_789))
        );
        assert_eq!(
            parse("-1.234", ColumnType::Int64, None, &dots),
            Ok(Value::I64(-1234))
        );
        assert_eq!(
            parse("999,5", ColumnType::Float64, None, &dots),
            Ok(Value::F64(999.5))
        );
        for bad in [
            "1.5",
            "12.34",
            "1..234",
            ".123",
            "1.2345",
            "1234.567",
            "1.234,5.6",
            "1.234.",
        ] {
            for ty in [DEC, ColumnType::Int64, ColumnType::Float64] {
                let err = parse(bad, ty, None, &dots).expect_err(bad);
                assert!(
                    err.ends_with("thousands separator `.` is not between groups of three digits"),
                    "{bad} as {ty}: {err}"
                );
            }
        }
        let spaces = CsvOptions {
            decimal: b',',
            thousands: Some(' '),
            ..CsvOptions::default()
        };
        assert_eq!(
            parse("1 234 567,5", DEC, None, &spaces),
            Ok(Value::Decimal(123_456_750))
        );
        assert_eq!(
            parse("12\u{202f}345", ColumnType::Int64, None, &spaces),
            Ok(Value::I64(12_345))
        );
        assert_eq!(
            parse("1 5", ColumnType::Int64, None, &spaces).expect_err("1 5"),
            "cannot read `1 5` as int64: thousands separator ` ` (space) is not between groups of three digits"
        );
        assert_eq!(
            parse("12\u{a0}34,5", DEC, None, &spaces).expect_err("nbsp"),
            "cannot read `12\u{a0}34,5` as decimal(12,2): thousands separator no-break space is not between groups of three digits"
        );
        let us = CsvOptions {
            thousands: Some(','),
            ..CsvOptions::default()
        };
        assert_eq!(
            parse("1,234.5", ColumnType::Float64, None, &us),
            Ok(Value::F64(1234.5))
        );
        assert_eq!(
            parse("1,234e2", ColumnType::Float64, None, &us),
            Ok(Value::F64(123_400.0))
        );
        assert!(parse("1,5", ColumnType::Float64, None, &us).is_err());
        assert!(parse("1.5e1,000", ColumnType::Float64, None, &us).is_err());
    }

    #[test]
    fn precision_and_ranges_are_enforced() {
        let o = CsvOptions::default();
        assert!(parse("12345678901.00", DEC, None, &o).is_err());
        assert_eq!(
            parse("0001234567890.10", DEC, None, &o),
            Ok(Value::Decimal(123_456_789_010))
        );
        assert!(parse("3000000000", ColumnType::Int32, None, &o).is_err());
        assert!(parse("1.5", ColumnType::Int64, None, &o).is_err());
        assert_eq!(
            parse("abc", ColumnType::Int64, None, &o).expect_err("refused"),
            "cannot read `abc` as int64: unexpected `a`"
        );
    }

    #[test]
    fn dates_timestamps_bools_and_nulls() {
        let o = CsvOptions {
            null_values: vec!["NULL".into()],
            ..CsvOptions::default()
        };
        assert_eq!(
            parse("2025-01-02", ColumnType::Date, None, &o),
            Ok(Value::Date(20_090))
        );
        assert_eq!(
            parse("02.01.2025", ColumnType::Date, Some("%d.%m.%Y"), &o),
            Ok(Value::Date(20_090))
        );
        assert_eq!(
            parse("20250102", ColumnType::Date, Some("%Y%m%d"), &o),
            Ok(Value::Date(20_090))
        );
        assert!(parse("2025-02-30", ColumnType::Date, None, &o).is_err());
        let noon_utc = 1_735_819_200_000_000;
        assert_eq!(
            parse("2025-01-02T13:00:00+01:00", ColumnType::Timestamp, None, &o),
            Ok(Value::Timestamp(noon_utc))
        );
        assert_eq!(
            parse("2025-01-02 12:00:00", ColumnType::Timestamp, None, &o),
            Ok(Value::Timestamp(noon_utc))
        );
        assert_eq!(
            parse("Yes", ColumnType::Boolean, None, &o),
            Ok(Value::Bool(true))
        );
        assert_eq!(
            parse(" NULL ", ColumnType::Int64, None, &o),
            Ok(Value::Null)
        );
        assert_eq!(parse("  ", ColumnType::Date, None, &o), Ok(Value::Null));
        assert_eq!(
            parse(" as is ", ColumnType::String, None, &o),
            Ok(Value::Str(" as is "))
        );
    }

    #[test]
    fn the_iso_date_fast_path_agrees_with_chrono() {
        let mut texts: Vec<String> = Vec::new();
        for y in [0, 1969, 1970, 2024, 2025, 9999] {
            for m in 0..=13 {
                for d in [0, 1, 9, 10, 28, 29, 30, 31, 32] {
                    texts.push(format!("{y:04}-{m:02}-{d:02}"));
                }
            }
        }
        texts.extend(
            [
                "2025-1-02",
                "2025-01-2",
                "+2025-01-02",
                "2025/01/02",
                "2025-0a-02",
            ]
            .map(String::from),
        );
        for t in &texts {
            let chrono = NaiveDate::parse_from_str(t, "%Y-%m-%d").ok();
            match iso_date(t) {
                Some(d) => assert_eq!(Some(d), chrono, "{t}"),
                None => assert!(t.len() != 10 || chrono.is_none(), "{t}"),
            }
        }
        let o = CsvOptions::default();
        assert_eq!(
            parse("2025-02-30", ColumnType::Date, None, &o).expect_err("no such day"),
            "cannot read `2025-02-30` as date: input is out of range (format `%Y-%m-%d`)"
        );
    }
}
