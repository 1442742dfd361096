//! Excel exports: a sheet becomes CSV text in memory and goes through the same typing,
//! bad-row and privacy path as any CSV export, so every rule holds for both.

use std::io::Cursor;

use calamine::{Data, Reader, Xlsx, open_workbook_from_rs};

use crate::csv_file::FileProblem;

/// A cell as text: whole numbers without `.0` (Excel stores every number as a float), dates
/// as ISO 8601, errors as their Excel code (which then fail typing unless the column is text).
fn cell_text(cell: &Data) -> String {
    match cell {
        Data::Empty => String::new(),
        Data::String(s) | Data::DateTimeIso(s) | Data::DurationIso(s) => s.clone(),
        Data::Int(i) => i.to_string(),
        Data::Float(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{f:.0}"),
        Data::Float(f) => f.to_string(),
        Data::Bool(b) => b.to_string(),
        Data::DateTime(dt) => match dt.as_datetime() {
            Some(t) if t.time() == chrono::NaiveTime::MIN => t.date().to_string(),
            Some(t) => t.format("%Y-%m-%dT%H:%M:%S").to_string(),
            None => dt.to_string(),
        },
        Data::Error(e) => format!("#{e:?}"),
    }
}

/// The named (or first) sheet as CSV text; row 1 is the header. Rows keep their sheet row
/// numbers as line numbers as long as no cell holds a line break.
pub(crate) fn sheet_as_csv(bytes: Vec<u8>, sheet: Option<&str>) -> Result<String, FileProblem> {
    let problem = |m: String| FileProblem::Decode(m);
    let mut book: Xlsx<_> = open_workbook_from_rs(Cursor::new(bytes))
        .map_err(|e| problem(format!("not a readable .xlsx workbook: {e}")))?;
    let names = book.sheet_names();
    let name = match sheet {
        Some(wanted) => names
            .iter()
            .find(|n| n.as_str() == wanted)
            .cloned()
            .ok_or_else(|| {
                problem(format!(
                    "no sheet `{wanted}` (sheets: {})",
                    names.join(", ")
                ))
            })?,
        None => names
            .first()
            .cloned()
            .ok_or_else(|| problem("the workbook has no sheets".into()))?,
    };
    let range = book
        .worksheet_range(&name)
        .map_err(|e| problem(format!("cannot read sheet `{name}`: {e}")))?;
    let mut out = csv::Writer::from_writer(Vec::new());
    for row in range.rows() {
        out.write_record(row.iter().map(cell_text))
            .map_err(|e| problem(format!("cannot convert sheet `{name}`: {e}")))?;
    }
    let bytes = out
        .into_inner()
        .map_err(|e| problem(format!("cannot convert sheet `{name}`: {e}")))?;
    String::from_utf8(bytes).map_err(|e| problem(e.to_string()))
}
