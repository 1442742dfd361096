//! Personal data: columns marked `pii: hash` are replaced by a keyed hash right after reading,
//! columns marked `pii: drop` are removed. Nothing downstream — steps, outputs, checks, the
//! manifest — ever sees the original values.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, StringBuilder};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::display::array_value_to_string;
use hmac::{Hmac, Mac};
use segflow_spec::{Pii, Source};
use sha2::Sha256;

/// HMAC-SHA-256 of `value` under `key`, as lowercase hex: the same person gets the same token
/// in every run and every source with the same key, and the token cannot be reversed by
/// hashing a dictionary of e-mail addresses without the key.
pub fn pseudonymize(key: &[u8], value: &str) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(value.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// The schema a source has after protection: dropped columns gone, hashed ones text.
pub(crate) fn protected_schema(source: &Source, declared: &Schema) -> SchemaRef {
    let fields: Vec<Field> = source
        .schema
        .iter()
        .zip(declared.fields())
        .filter(|(c, _)| c.pii != Some(Pii::Drop))
        .map(|(c, f)| match c.pii {
            Some(Pii::Hash) => Field::new(f.name(), DataType::Utf8, true),
            _ => f.as_ref().clone(),
        })
        .collect();
    Arc::new(Schema::new(fields))
}

/// Whether the source has anything to protect.
pub(crate) fn has_pii(source: &Source) -> bool {
    source
        .schema
        .iter()
        .any(|c| matches!(c.pii, Some(Pii::Hash | Pii::Drop)))
}

/// Applies `pii: hash` and `pii: drop` to one batch in the declared schema.
pub(crate) fn protect(
    source: &Source,
    key: &[u8],
    batch: &RecordBatch,
    schema: &SchemaRef,
) -> Result<RecordBatch, ArrowError> {
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    for (spec, array) in source.schema.iter().zip(batch.columns()) {
        match spec.pii {
            Some(Pii::Drop) => {}
            Some(Pii::Hash) => {
                let mut out = StringBuilder::with_capacity(array.len(), array.len() * 64);
                for i in 0..array.len() {
                    if array.is_null(i) {
                        out.append_null();
                    } else {
                        out.append_value(pseudonymize(key, &array_value_to_string(array, i)?));
                    }
                }
                columns.push(Arc::new(out.finish()));
            }
            _ => columns.push(Arc::clone(array)),
        }
    }
    RecordBatch::try_new(Arc::clone(schema), columns)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 4231 test case 2.
    #[test]
    fn hmac_sha256_matches_the_rfc_vector() {
        assert_eq!(
            pseudonymize(b"Jefe", "what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
