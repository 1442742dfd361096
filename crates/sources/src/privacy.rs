//! Personal data: columns marked `pii: hash` are replaced by a keyed hash right after reading,
//! columns marked `pii: drop` are removed. Nothing downstream — steps, outputs, checks, the
//! manifest — ever sees the original values.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, StringBuilder};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::display::array_value_to_string;
use datafusion::common::{Column, DataFusionError, Result as DfResult};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use hmac::{Hmac, Mac};
use segflow_spec::{IdentifierRole, Pii, Source};
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

/// The schema steps see for a source, from its declaration alone (no file is read): declared
/// types, then protection applied. Static validation plans every step against it.
pub fn table_schema(source: &Source) -> SchemaRef {
    let declared = Schema::new(
        source
            .schema
            .iter()
            .map(|c| Field::new(&c.name, crate::schema::arrow_type(c.data_type), true))
            .collect::<Vec<_>>(),
    );
    protected_schema(source, &declared)
}

/// Whether the source has anything to protect.
pub(crate) fn has_pii(source: &Source) -> bool {
    source
        .schema
        .iter()
        .any(|c| matches!(c.pii, Some(Pii::Hash | Pii::Drop)))
}

/// The keyed hash of one value. An identifier identity links on is normalized by its rule
/// first, so `Anna@X.se` and `anna@x.se` become one token; one that fails its rule keeps a
/// hash of its text, marked so that identity counts it as rejected instead of linking on it.
fn hash_value(key: &[u8], role: Option<&IdentifierRole>, text: &str) -> String {
    let Some(role) = role else {
        return pseudonymize(key, text);
    };
    let (strip, country) = match role {
        IdentifierRole::Email {
            strip_plus_addressing,
        } => (*strip_plus_addressing, None),
        IdentifierRole::Phone {
            default_country_code,
        } => (false, default_country_code.as_deref()),
        IdentifierRole::NationalId => (false, None),
    };
    match segflow_identity::normalize_identifier(role.rule(), text, strip, country) {
        Ok(Some(normalized)) => segflow_identity::token(key, role.rule(), &normalized),
        // Blank: no identifier. An empty string, not one token shared by every blank value,
        // which identity would take for one e-mail address many people have.
        Ok(None) => String::new(),
        Err(_) => format!(
            "{}{}",
            segflow_identity::INVALID_TOKEN_PREFIX,
            pseudonymize(key, text)
        ),
    }
}

/// The keyed hash of every value's text; NULL stays NULL. One HMAC per value is inherent
/// (there is no batch kernel for it), so this is the one row-by-row loop.
fn hash_array(
    key: &[u8],
    role: Option<&IdentifierRole>,
    array: &ArrayRef,
) -> Result<ArrayRef, ArrowError> {
    let mut out = StringBuilder::with_capacity(array.len(), array.len() * 64);
    // Identifiers recur (one phone on many orders) and parsing a phone number against the
    // numbering plans is the slow part: each distinct text is normalized once per batch.
    let mut seen: std::collections::HashMap<String, String> = std::collections::HashMap::new();
    for i in 0..array.len() {
        if array.is_null(i) {
            out.append_null();
            continue;
        }
        let text = array_value_to_string(array, i)?;
        if role.is_none() {
            out.append_value(pseudonymize(key, &text));
            continue;
        }
        let token = match seen.get(&text) {
            Some(token) => token.clone(),
            None => {
                let token = hash_value(key, role, &text);
                seen.insert(text, token.clone());
                token
            }
        };
        out.append_value(token);
    }
    Ok(Arc::new(out.finish()))
}

/// `pii: hash` as a SQL function, so a lazily scanned source (Parquet, JSON lines) is
/// protected in its plan, before any other expression sees the value. The key lives inside
/// the function and is never printed (plans show only the function's name).
#[derive(PartialEq, Eq, Hash)]
struct Pseudonymize {
    key: Vec<u8>,
    /// Set for an identifier column: the rules it is normalized by before hashing.
    role: Option<IdentifierRole>,
    signature: Signature,
}

impl std::fmt::Debug for Pseudonymize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pseudonymize { key: <withheld> }")
    }
}

impl ScalarUDFImpl for Pseudonymize {
    fn name(&self) -> &str {
        "segflow_pseudonymize"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let [value] = args.args.as_slice() else {
            return Err(DataFusionError::Internal(
                "segflow_pseudonymize takes one argument".into(),
            ));
        };
        let array = value.to_array(args.number_rows)?;
        Ok(ColumnarValue::Array(hash_array(
            &self.key,
            self.role.as_ref(),
            &array,
        )?))
    }
}

/// The declared columns of a source (already in its declared schema) after `pii: hash` and
/// `pii: drop`, as expressions: what `protect` does to a batch, for a lazy plan.
pub(crate) fn protect_exprs(source: &Source, key: &[u8]) -> Vec<Expr> {
    let udf = |role: Option<&IdentifierRole>| {
        ScalarUDF::new_from_impl(Pseudonymize {
            key: key.to_vec(),
            role: role.cloned(),
            signature: Signature::any(1, Volatility::Immutable),
        })
    };
    source
        .schema
        .iter()
        .filter(|c| c.pii != Some(Pii::Drop))
        .map(|c| {
            let value = Expr::Column(Column::new_unqualified(&c.name));
            match c.pii {
                Some(Pii::Hash) => udf(source.identifiers.get(&c.name))
                    .call(vec![value])
                    .alias(&c.name),
                _ => value,
            }
        })
        .collect()
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
                columns.push(hash_array(key, source.identifiers.get(&spec.name), array)?)
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
