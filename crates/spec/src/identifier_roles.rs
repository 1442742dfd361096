//! Which source columns are identifiers of a person, as the identity steps that read them
//! say. A `pii: hash` column is hashed right after reading, before any step sees it; if it is
//! an e-mail, phone or national id that identity links on, the value must be normalized
//! first (`Anna@X.se` and `anna@x.se` must give one token), with the same rules identity
//! applies — so the rules travel with the source column.

use std::collections::BTreeMap;

use crate::decode::Decoded;
use crate::diagnostic::Diagnostic;
use crate::pipeline::{IdentifierRole, Pii, StepKind};
use crate::yaml::Ctx;

/// Sets `Source::identifiers` from the identity steps that read a source directly, and
/// refuses what cannot work on hashed values.
pub(crate) fn assign(ctx: &mut Ctx<'_>, doc: &mut Decoded) {
    let mut roles: BTreeMap<(String, String), (IdentifierRole, String)> = BTreeMap::new();
    for step in &doc.steps {
        let StepKind::Identity(spec) = &step.kind else {
            continue;
        };
        for input in &spec.inputs {
            let Some(source) = doc
                .sources
                .iter()
                .find(|s| s.name.value == input.from.value)
            else {
                continue;
            };
            let hashed = |column: &str| {
                source
                    .schema
                    .iter()
                    .any(|c| c.name == column && c.pii == Some(Pii::Hash))
            };
            let wanted = [
                (
                    input.email.as_deref(),
                    IdentifierRole::Email {
                        strip_plus_addressing: spec.strip_plus_addressing,
                    },
                ),
                (
                    input.phone.as_deref(),
                    IdentifierRole::Phone {
                        default_country_code: spec.default_country_code.clone(),
                    },
                ),
                (input.national_id.as_deref(), IdentifierRole::NationalId),
            ];
            for (column, role) in wanted {
                // Only a hashed column needs its rule at read time; a clear one is
                // normalized by each identity step on its own terms.
                let Some(column) = column.filter(|c| hashed(c)) else {
                    continue;
                };
                let key = (source.name.value.clone(), column.to_string());
                match roles.get(&key) {
                    Some((other, other_step)) if *other != role => ctx.push(
                        Diagnostic::new(
                            input.from.loc,
                            "steps",
                            format!(
                                "column `{column}` of source `{}` is read as {} by step `{}` and as {} by step `{other_step}`",
                                source.name.value,
                                role.describe(),
                                step.name.value,
                                other.describe()
                            ),
                        )
                        .with_hint(
                            "a column is normalized one way before it is hashed; give both identity steps the same plus_addressing and default_country_code",
                        ),
                    ),
                    Some(_) => {}
                    None => {
                        roles.insert(key, (role, step.name.value.clone()));
                    }
                }
            }
            for column in [&input.name, &input.address, &input.postal_code]
                .into_iter()
                .flatten()
            {
                if hashed(column) {
                    ctx.push(
                        Diagnostic::new(
                            input.from.loc,
                            "steps",
                            format!(
                                "step `{}` links on name and address, but column `{column}` of source `{}` is `pii: hash`: hashed text cannot be compared as names and addresses are",
                                step.name.value, source.name.value
                            ),
                        )
                        .with_hint(
                            "link on e-mail, phone or national id (which are normalized before hashing), or leave name/address/postal_code out of this input",
                        ),
                    );
                }
            }
        }
    }
    for ((source, column), (role, _)) in roles {
        if let Some(s) = doc.sources.iter_mut().find(|s| s.name.value == source) {
            s.identifiers.insert(column, role);
        }
    }
}
