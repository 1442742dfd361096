//! Hive-style partition directory names (`region=Nord%2FOst`).

/// Hive, Spark and DuckDB read this directory name as NULL.
pub const NULL_PARTITION: &str = "__HIVE_DEFAULT_PARTITION__";

/// Percent-encodes what cannot appear in a partition directory name, as Hive does (`=`, `/`,
/// `%`, quotes, control characters…), so every value round-trips and no name is ambiguous.
pub fn escape_partition_value(value: Option<&str>) -> String {
    let Some(value) = value else {
        return NULL_PARTITION.to_string();
    };
    if value.is_empty() {
        return NULL_PARTITION.to_string();
    }
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if c.is_control() || "\"#%'*/:=?\\{[]^".contains(c) {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        } else {
            out.push(c);
        }
    }
    // `.` and `..` would name other directories.
    if out == "." || out == ".." {
        return out.replace('.', "%2E");
    }
    out
}

/// `column=value` for one partition level.
pub fn partition_dir(column: &str, value: Option<&str>) -> String {
    format!("{column}={}", escape_partition_value(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_separators_and_nulls() {
        assert_eq!(partition_dir("period", Some("2025")), "period=2025");
        assert_eq!(
            partition_dir("region", Some("Nord/Ost")),
            "region=Nord%2FOst"
        );
        assert_eq!(partition_dir("k", Some("a=b%")), "k=a%3Db%25");
        assert_eq!(partition_dir("k", None), "k=__HIVE_DEFAULT_PARTITION__");
        assert_eq!(partition_dir("k", Some("")), "k=__HIVE_DEFAULT_PARTITION__");
        assert_eq!(partition_dir("k", Some("..")), "k=%2E%2E");
        assert_eq!(partition_dir("city", Some("Malmö")), "city=Malmö");
    }
}
