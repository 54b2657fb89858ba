//! FHIRPath Patch (FHIR R4, "FHIRPath Patch" on the PATCH interaction): a `Parameters` resource
//! whose `operation` parameters each add, insert, delete, replace or move content at a place
//! named by a FHIRPath expression.
//!
//! The evaluator answers with references into the resource; each selected node is found again by
//! its address (it is the same `serde_json::Value` in the same tree), which gives its JSON
//! location, and the change is made there. Operations apply in order, each to the result of the
//! one before; the first that cannot apply stops the patch, so a caller writes all or nothing.
//!
//! As in the reference servers, `insert` and `move` split their path into a container and a
//! list (`Patient.name.given` is the `given` list of the one `Patient.name`), so that a list can
//! be addressed when it is empty; `add` names its container and the new child separately.

use serde_json::{Map, Value as Json};

use super::eval::suffix_names_type;
use super::{compile, evaluate, EvalContext, Item, ModelInfo};
use crate::fhir::outcome::Issue;

/// One operation of a FHIRPath Patch.
#[derive(Debug, Clone, PartialEq)]
pub enum PatchOp {
    /// Add child `name` with `value` to the single element `path` selects (appended when the
    /// child repeats).
    Add {
        path: String,
        name: String,
        value: PatchValue,
    },
    /// Insert `value` into the list `path` names, at `index`.
    Insert {
        path: String,
        index: usize,
        value: PatchValue,
    },
    /// Remove the element `path` selects (nothing selected: nothing to do).
    Delete { path: String },
    /// Replace the single element `path` selects.
    Replace { path: String, value: PatchValue },
    /// Move the item at `source` of the list `path` names to `destination`.
    Move {
        path: String,
        source: usize,
        destination: usize,
    },
}

/// A value to put in: its JSON, and the FHIR type its `value[x]` named (`None` for one built
/// from parts), which picks the key of a choice element (`valueQuantity`).
#[derive(Debug, Clone, PartialEq)]
pub struct PatchValue {
    pub json: Json,
    pub type_suffix: Option<String>,
}

/// Read the operations of a FHIRPath Patch `Parameters` resource. Every problem found is
/// returned, each located in the Parameters (`Parameters.parameter[1].part[0]`).
pub fn parse(params: &Json) -> Result<Vec<PatchOp>, Vec<Issue>> {
    let mut issues = Vec::new();
    if params.get("resourceType").and_then(Json::as_str) != Some("Parameters") {
        return Err(vec![Issue::error(
            "invalid",
            "a FHIRPath Patch is a Parameters resource",
        )
        .at("Parameters")]);
    }
    let mut ops = Vec::new();
    let parameters = params
        .get("parameter")
        .and_then(Json::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    if parameters.is_empty() {
        issues.push(
            Issue::error("required", "a FHIRPath Patch needs at least one operation")
                .at("Parameters.parameter"),
        );
    }
    for (n, p) in parameters.iter().enumerate() {
        let at = format!("Parameters.parameter[{n}]");
        if p.get("name").and_then(Json::as_str) != Some("operation") {
            issues.push(
                Issue::error(
                    "invalid",
                    "each parameter of a FHIRPath Patch is an `operation`",
                )
                .at(format!("{at}.name")),
            );
            continue;
        }
        match operation(p, &at) {
            Ok(op) => ops.push(op),
            Err(mut found) => issues.append(&mut found),
        }
    }
    if issues.is_empty() {
        Ok(ops)
    } else {
        Err(issues)
    }
}

/// The parts of one `operation` parameter.
fn operation(p: &Json, at: &str) -> Result<PatchOp, Vec<Issue>> {
    let parts = p
        .get("part")
        .and_then(Json::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let mut issues = Vec::new();
    let find = |name: &str| {
        parts
            .iter()
            .enumerate()
            .find(|(_, part)| part.get("name").and_then(Json::as_str) == Some(name))
    };
    let text = |name: &str, issues: &mut Vec<Issue>| -> Option<String> {
        let (i, part) = find(name)?;
        let v = ["valueString", "valueCode", "valueUri"]
            .iter()
            .find_map(|k| part.get(*k).and_then(Json::as_str));
        if v.is_none() {
            issues.push(
                Issue::error("invalid", format!("`{name}` must be a string"))
                    .at(format!("{at}.part[{i}]")),
            );
        }
        v.map(str::to_string)
    };
    let index = |name: &str, issues: &mut Vec<Issue>| -> Option<usize> {
        let (i, part) = find(name)?;
        let v = part
            .get("valueInteger")
            .and_then(Json::as_u64)
            .and_then(|v| usize::try_from(v).ok());
        if v.is_none() {
            issues.push(
                Issue::error(
                    "invalid",
                    format!("`{name}` must be a valueInteger of 0 or more"),
                )
                .at(format!("{at}.part[{i}]")),
            );
        }
        v
    };
    let value = |issues: &mut Vec<Issue>| -> Option<PatchValue> {
        let (i, part) = find("value")?;
        match part_value(part) {
            Some(v) => Some(v),
            None => {
                issues.push(
                    Issue::error("invalid", "`value` has neither a value[x] nor parts")
                        .at(format!("{at}.part[{i}]")),
                );
                None
            }
        }
    };
    let kind = text("type", &mut issues);
    let path = text("path", &mut issues);
    let need = |what: &str, found: bool, issues: &mut Vec<Issue>| {
        if !found {
            issues.push(
                Issue::error(
                    "required",
                    format!(
                        "a `{}` operation needs `{what}`",
                        kind.as_deref().unwrap_or("?")
                    ),
                )
                .at(format!("{at}.part")),
            );
        }
    };
    let Some(kind_code) = kind.clone() else {
        issues
            .push(Issue::error("required", "the operation has no `type`").at(format!("{at}.part")));
        return Err(issues);
    };
    need("path", path.is_some(), &mut issues);
    let path = path.unwrap_or_default();
    let op = match kind_code.as_str() {
        "add" => {
            let name = text("name", &mut issues);
            let value = value(&mut issues);
            need("name", name.is_some(), &mut issues);
            need("value", value.is_some(), &mut issues);
            name.zip(value)
                .map(|(name, value)| PatchOp::Add { path, name, value })
        }
        "insert" => {
            let i = index("index", &mut issues);
            let value = value(&mut issues);
            need("index", i.is_some(), &mut issues);
            need("value", value.is_some(), &mut issues);
            i.zip(value)
                .map(|(index, value)| PatchOp::Insert { path, index, value })
        }
        "delete" => Some(PatchOp::Delete { path }),
        "replace" => {
            let value = value(&mut issues);
            need("value", value.is_some(), &mut issues);
            value.map(|value| PatchOp::Replace { path, value })
        }
        "move" => {
            let source = index("source", &mut issues);
            let destination = index("destination", &mut issues);
            need("source", source.is_some(), &mut issues);
            need("destination", destination.is_some(), &mut issues);
            source
                .zip(destination)
                .map(|(source, destination)| PatchOp::Move {
                    path,
                    source,
                    destination,
                })
        }
        other => {
            issues.push(
                Issue::error(
                    "code-invalid",
                    format!(
                        "unknown operation type {other:?} (add, insert, delete, replace or move)"
                    ),
                )
                .at(format!("{at}.part")),
            );
            None
        }
    };
    match op {
        Some(op) if issues.is_empty() => Ok(op),
        _ => Err(issues),
    }
}

/// A `value` part: its `value[x]`, or an element built from its parts (each part a child; a
/// name given more than once makes a list).
fn part_value(part: &Json) -> Option<PatchValue> {
    let obj = part.as_object()?;
    if let Some((key, v)) = obj.iter().find(|(k, _)| {
        k.len() > "value".len() && k.starts_with("value") && k.as_bytes()[5].is_ascii_uppercase()
    }) {
        return Some(PatchValue {
            json: v.clone(),
            type_suffix: Some(key["value".len()..].to_string()),
        });
    }
    let parts = obj.get("part")?.as_array()?;
    let mut built = Map::new();
    for p in parts {
        let name = p.get("name").and_then(Json::as_str)?;
        let v = part_value(p)?.json;
        match built.get_mut(name) {
            Some(Json::Array(items)) => items.push(v),
            Some(existing) => {
                let first = existing.take();
                *existing = Json::Array(vec![first, v]);
            }
            None => {
                built.insert(name.to_string(), v);
            }
        }
    }
    Some(PatchValue {
        json: Json::Object(built),
        type_suffix: None,
    })
}

/// One step of a location in the JSON tree.
#[derive(Debug, Clone, PartialEq)]
enum Step {
    Key(String),
    Index(usize),
}

/// Apply `ops` in order to `resource`. On failure the resource may be partly changed: apply to a
/// copy, and keep it only on success. The issue names the operation
/// (`Parameters.parameter[n]`).
pub fn apply(ops: &[PatchOp], resource: &mut Json, model: &dyn ModelInfo) -> Result<(), Issue> {
    for (n, op) in ops.iter().enumerate() {
        apply_one(op, resource, model).map_err(|msg| {
            Issue::error("processing", msg).at(format!("Parameters.parameter[{n}]"))
        })?;
    }
    Ok(())
}

fn apply_one(op: &PatchOp, resource: &mut Json, model: &dyn ModelInfo) -> Result<(), String> {
    match op {
        PatchOp::Add { path, name, value } => {
            let (at, parent_path) = single(resource, model, path)?;
            let key = choice_key(model, &parent_path, name, value);
            let many = model.child(&parent_path, name).is_some_and(|c| c.many);
            let target = object_at(resource, &at, path)?;
            match target.get_mut(&key) {
                Some(Json::Array(items)) => items.push(value.json.clone()),
                Some(_) => {
                    return Err(format!(
                        "{path} already has `{key}`: use replace to change it"
                    ))
                }
                None if many => {
                    target.insert(key, Json::Array(vec![value.json.clone()]));
                }
                None => {
                    target.insert(key, value.json.clone());
                }
            }
            Ok(())
        }
        PatchOp::Insert { path, index, value } => {
            let (container, list) = split_list(path)?;
            let (at, _) = single(resource, model, container)?;
            let target = object_at(resource, &at, container)?;
            let items = target
                .entry(list.to_string())
                .or_insert_with(|| Json::Array(Vec::new()));
            let Json::Array(items) = items else {
                return Err(format!("{path} is not a list"));
            };
            if *index > items.len() {
                return Err(format!(
                    "index {index} is past the end of {path} ({} items)",
                    items.len()
                ));
            }
            items.insert(*index, value.json.clone());
            Ok(())
        }
        PatchOp::Delete { path } => {
            let found = locate(resource, model, path)?;
            match found.as_slice() {
                [] => Ok(()),
                [(at, _, _)] => {
                    remove(resource, at);
                    Ok(())
                }
                more => Err(format!(
                    "{path} selects {} elements; delete takes at most one",
                    more.len()
                )),
            }
        }
        PatchOp::Replace { path, value } => {
            let (at, _, ty) = match locate(resource, model, path)?.as_slice() {
                [one] => one.clone(),
                other => {
                    return Err(format!(
                        "{path} selects {} elements; replace takes exactly one",
                        other.len()
                    ))
                }
            };
            replace(resource, &at, &ty, value);
            Ok(())
        }
        PatchOp::Move {
            path,
            source,
            destination,
        } => {
            let (container, list) = split_list(path)?;
            let (at, _) = single(resource, model, container)?;
            let target = object_at(resource, &at, container)?;
            let Some(Json::Array(items)) = target.get_mut(list) else {
                return Err(format!("{path} is not a list"));
            };
            let len = items.len();
            if *source >= len || *destination >= len {
                return Err(format!(
                    "source {source} and destination {destination} must both be below the {len} items of {path}"
                ));
            }
            let item = items.remove(*source);
            items.insert(*destination, item);
            Ok(())
        }
    }
}

/// Where the nodes `path` selects are: each node's location, its model path (for child
/// look-ups) and its FHIR type.
fn locate(
    resource: &Json,
    model: &dyn ModelInfo,
    path: &str,
) -> Result<Vec<(Vec<Step>, String, String)>, String> {
    let expr = compile(path).map_err(|e| format!("{path} is not a FHIRPath expression: {e}"))?;
    let ctx = EvalContext::new(model, resource);
    let items = evaluate(&expr, &ctx).map_err(|e| format!("{path} cannot be evaluated: {e}"))?;
    let mut found = Vec::with_capacity(items.len());
    for item in &items {
        let Item::Node(node) = item else {
            return Err(format!(
                "{path} selects a computed value, not an element of the resource"
            ));
        };
        let Some(value) = node.value else {
            return Err(format!(
                "{path} selects an element that has extensions but no value"
            ));
        };
        let mut steps = Vec::new();
        if !find(resource, value, &mut steps) {
            return Err(format!(
                "{path} selects something outside the resource being patched"
            ));
        }
        let model_path = if node.path.is_empty() {
            node.ty
        } else {
            node.path
        };
        found.push((steps, model_path.to_string(), node.ty.to_string()));
    }
    Ok(found)
}

/// The one node `path` selects (its location and model path).
fn single(
    resource: &Json,
    model: &dyn ModelInfo,
    path: &str,
) -> Result<(Vec<Step>, String), String> {
    let mut found = locate(resource, model, path)?;
    match found.len() {
        1 => {
            let (at, model_path, _) = found.remove(0);
            Ok((at, model_path))
        }
        n => Err(format!("{path} selects {n} elements; it must select one")),
    }
}

/// Depth-first search for the value at `target`'s address.
fn find(node: &Json, target: &Json, steps: &mut Vec<Step>) -> bool {
    if std::ptr::eq(node, target) {
        return true;
    }
    match node {
        Json::Object(obj) => {
            for (k, v) in obj {
                steps.push(Step::Key(k.clone()));
                if find(v, target, steps) {
                    return true;
                }
                steps.pop();
            }
            false
        }
        Json::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                steps.push(Step::Index(i));
                if find(v, target, steps) {
                    return true;
                }
                steps.pop();
            }
            false
        }
        _ => false,
    }
}

fn at_mut<'j>(root: &'j mut Json, steps: &[Step]) -> Option<&'j mut Json> {
    steps.iter().try_fold(root, |node, step| match step {
        Step::Key(k) => node.as_object_mut()?.get_mut(k),
        Step::Index(i) => node.as_array_mut()?.get_mut(*i),
    })
}

fn object_at<'j>(
    root: &'j mut Json,
    steps: &[Step],
    path: &str,
) -> Result<&'j mut Map<String, Json>, String> {
    at_mut(root, steps)
        .and_then(Json::as_object_mut)
        .ok_or_else(|| format!("{path} is not an element with children"))
}

/// Remove the value at `steps`: an item from its list (the list too once empty), or a key
/// from its object with the primitive's `_key` extensions.
fn remove(root: &mut Json, steps: &[Step]) {
    let Some((last, parent)) = steps.split_last() else {
        return;
    };
    let Some(container) = at_mut(root, parent) else {
        return;
    };
    match (last, container) {
        (Step::Index(i), Json::Array(items)) => {
            if *i < items.len() {
                items.remove(*i);
            }
            if items.is_empty() {
                if let Some((Step::Key(k), grand)) = parent.split_last() {
                    if let Some(obj) = at_mut(root, grand).and_then(Json::as_object_mut) {
                        obj.remove(k);
                        obj.remove(&format!("_{k}"));
                    }
                }
            }
        }
        (Step::Key(k), Json::Object(obj)) => {
            obj.remove(k);
            obj.remove(&format!("_{k}"));
        }
        _ => {}
    }
}

/// Replace the value at `steps`; a choice element given a value of another type changes its
/// key (`valueQuantity` → `valueString`).
fn replace(root: &mut Json, steps: &[Step], ty: &str, value: &PatchValue) {
    if let (Some((Step::Key(key), parent)), Some(suffix)) =
        (steps.split_last(), value.type_suffix.as_deref())
    {
        // `valueQuantity` holding a `Quantity`: base `value`, the old type in the key's suffix.
        let base = key
            .len()
            .checked_sub(ty.len())
            .filter(|&n| n > 0)
            .and_then(|n| Some((key.get(..n)?, key.get(n..)?)))
            .filter(|(_, old)| suffix_names_type(old, ty) && !suffix_names_type(suffix, ty))
            .map(|(base, _)| base);
        if let (Some(base), Some(obj)) = (base, at_mut(root, parent).and_then(Json::as_object_mut))
        {
            obj.remove(key);
            obj.remove(&format!("_{key}"));
            obj.insert(format!("{base}{suffix}"), value.json.clone());
            return;
        }
    }
    if let Some(slot) = at_mut(root, steps) {
        *slot = value.json.clone();
    }
}

/// The JSON key of child `name` of `parent`: `name` itself, or for a choice element `name`
/// followed by the value's type.
fn choice_key(model: &dyn ModelInfo, parent: &str, name: &str, value: &PatchValue) -> String {
    match (model.child(parent, name), value.type_suffix.as_deref()) {
        (Some(c), Some(suffix)) if c.choice => format!("{name}{suffix}"),
        _ => name.to_string(),
    }
}

/// `Patient.name[0].given` → (`Patient.name[0]`, `given`): the container expression and the
/// list's name (a plain identifier after the last top-level dot).
fn split_list(path: &str) -> Result<(&str, &str), String> {
    let mut depth = 0i32;
    let mut quoted = false;
    let mut last_dot = None;
    for (i, c) in path.char_indices() {
        match c {
            '\'' => quoted = !quoted,
            '(' | '[' if !quoted => depth += 1,
            ')' | ']' if !quoted => depth -= 1,
            '.' if !quoted && depth == 0 => last_dot = Some(i),
            _ => {}
        }
    }
    let Some(dot) = last_dot else {
        return Err(format!(
            "{path} must end in the list's name after its container (`Patient.name`)"
        ));
    };
    let (container, list) = (&path[..dot], &path[dot + 1..]);
    if list.is_empty() || !list.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!(
            "{path} must end in the list's name after its container (`Patient.name`)"
        ));
    }
    Ok((container, list))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn model() -> std::sync::Arc<crate::validation::Validator> {
        crate::validation::Validator::shared_r4().expect("R4 definitions")
    }

    fn op(parts: Json) -> Json {
        json!({"name": "operation", "part": parts})
    }

    fn patch(ops: Vec<Json>, resource: &mut Json) -> Result<(), String> {
        let params = json!({"resourceType": "Parameters", "parameter": ops});
        let ops = parse(&params).map_err(|i| format!("{i:?}"))?;
        apply(&ops, resource, model().model()).map_err(|i| i.diagnostics)
    }

    fn patient() -> Json {
        json!({
            "resourceType": "Patient", "id": "p",
            "identifier": [{"system": "a", "value": "1"}, {"system": "b", "value": "2"}],
            "name": [{"family": "Hansen", "given": ["Anna", "Marie"]}],
            "birthDate": "1945-01-01"
        })
    }

    #[test]
    fn replace_delete_insert_and_move_change_what_their_paths_select() {
        let mut p = patient();
        patch(
            vec![
                op(json!([{"name": "type", "valueCode": "replace"},
                          {"name": "path", "valueString": "Patient.birthDate"},
                          {"name": "value", "valueDate": "1945-02-02"}])),
                op(json!([{"name": "type", "valueCode": "delete"},
                          {"name": "path", "valueString": "Patient.identifier.where(system = 'a')"}])),
                op(json!([{"name": "type", "valueCode": "insert"},
                          {"name": "path", "valueString": "Patient.name[0].given"},
                          {"name": "index", "valueInteger": 0},
                          {"name": "value", "valueString": "Ida"}])),
                op(json!([{"name": "type", "valueCode": "move"},
                          {"name": "path", "valueString": "Patient.name[0].given"},
                          {"name": "source", "valueInteger": 2},
                          {"name": "destination", "valueInteger": 0}])),
            ],
            &mut p,
        )
        .expect("applies");
        assert_eq!(p["birthDate"], "1945-02-02");
        assert_eq!(p["identifier"], json!([{"system": "b", "value": "2"}]));
        assert_eq!(p["name"][0]["given"], json!(["Marie", "Ida", "Anna"]));
    }

    #[test]
    fn add_builds_an_element_from_parts_and_deleting_the_last_item_removes_the_list() {
        let mut p = patient();
        patch(
            vec![
                op(json!([{"name": "type", "valueCode": "add"},
                          {"name": "path", "valueString": "Patient"},
                          {"name": "name", "valueString": "gender"},
                          {"name": "value", "valueCode": "female"}])),
                op(json!([{"name": "type", "valueCode": "add"},
                          {"name": "path", "valueString": "Patient"},
                          {"name": "name", "valueString": "identifier"},
                          {"name": "value", "part": [
                              {"name": "system", "valueUri": "c"},
                              {"name": "value", "valueString": "3"}]}])),
                op(json!([{"name": "type", "valueCode": "delete"},
                          {"name": "path", "valueString": "Patient.name"}])),
            ],
            &mut p,
        )
        .expect("applies");
        assert_eq!(p["gender"], "female");
        assert_eq!(p["identifier"][2], json!({"system": "c", "value": "3"}));
        assert!(p.get("name").is_none(), "{p}");
    }

    #[test]
    fn what_cannot_apply_is_refused_with_the_operation_named() {
        let mut p = patient();
        let err = patch(
            vec![op(json!([{"name": "type", "valueCode": "replace"},
                           {"name": "path", "valueString": "Patient.identifier"},
                           {"name": "value", "valueString": "x"}]))],
            &mut p,
        )
        .expect_err("two identifiers");
        assert!(err.contains("selects 2 elements"), "{err}");
        let err = patch(
            vec![op(json!([{"name": "type", "valueCode": "insert"},
                           {"name": "path", "valueString": "Patient.name[0].given"},
                           {"name": "index", "valueInteger": 5},
                           {"name": "value", "valueString": "x"}]))],
            &mut p,
        )
        .expect_err("past the end");
        assert!(err.contains("past the end"), "{err}");
        // A delete of nothing is nothing to do.
        patch(
            vec![op(json!([{"name": "type", "valueCode": "delete"},
                           {"name": "path", "valueString": "Patient.telecom"}]))],
            &mut p,
        )
        .expect("nothing to delete");
    }

    #[test]
    fn every_malformed_operation_is_reported_with_its_place() {
        let params = json!({"resourceType": "Parameters", "parameter": [
            op(json!([{"name": "type", "valueCode": "insert"},
                      {"name": "path", "valueString": "Patient.name"},
                      {"name": "index", "valueInteger": -1}])),
            op(json!([{"name": "type", "valueCode": "rename"},
                      {"name": "path", "valueString": "Patient"}])),
            {"name": "other"}
        ]});
        let issues = parse(&params).expect_err("malformed");
        let places: Vec<&str> = issues
            .iter()
            .filter_map(|i| i.expression.as_deref())
            .collect();
        assert!(
            places.contains(&"Parameters.parameter[0].part[2]"),
            "{places:?}"
        );
        assert!(
            places.contains(&"Parameters.parameter[0].part"),
            "{places:?}"
        );
        assert!(
            places.contains(&"Parameters.parameter[1].part"),
            "{places:?}"
        );
        assert!(
            places.contains(&"Parameters.parameter[2].name"),
            "{places:?}"
        );
    }

    #[test]
    fn replacing_a_choice_element_with_another_type_renames_its_key() {
        let mut obs = json!({"resourceType": "Observation", "status": "final",
            "code": {"text": "x"}, "valueQuantity": {"value": 1}});
        let ops = vec![PatchOp::Replace {
            path: "Observation.value".into(),
            value: PatchValue {
                json: json!("high"),
                type_suffix: Some("String".into()),
            },
        }];
        apply(&ops, &mut obs, model().model()).expect("applies");
        assert_eq!(obs["valueString"], "high");
        assert!(obs.get("valueQuantity").is_none(), "{obs}");
    }
}
