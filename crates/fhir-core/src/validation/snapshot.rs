//! Snapshot generation for differential-only profiles: start from the base definition's snapshot,
//! then apply each differential element in order — constrain an existing element, add a slice (a
//! copy of the sliced element and its descendants), or first expand a datatype (or the profile
//! named on it) when the differential reaches inside an element the snapshot has not unfolded.
//!
//! A choice element (`value[x]`) is unfolded only where its children are unambiguous, as HL7's
//! generator does: when it allows one type, in a type slice (`value[x]:valueQuantity`, which
//! keeps that one type), or for the children every type has (`id`, `extension`). Differential
//! elements must come in the order of the base; one that does not is reported (the profile is
//! still generated).

use std::collections::HashMap;

use crate::fhir::Member;
use serde_json::{Map, Value};

use super::definitions::Definitions;

/// Keys a differential element overrides on the snapshot element it constrains.
const OVERRIDES: &[&str] = &[
    "sliceName",
    "sliceIsConstraining",
    "min",
    "max",
    "type",
    "binding",
    "slicing",
    "maxLength",
    "mustSupport",
    "isModifier",
    "contentReference",
    "short",
    "definition",
    "comment",
];

/// Most differential elements a snapshot is generated for, and most elements a snapshot may grow
/// to. The generator finds elements by scanning the snapshot, so its cost grows with the square
/// of the profile's size, and StructureDefinitions reach it from clients (`$validate`): 8,000
/// slices took 7 s. The largest profiles in the R4 package and the Danish IGs have 188
/// differential and 256 snapshot elements; these bounds refuse none of them and keep a hostile
/// profile to milliseconds.
const MAX_DIFFERENTIAL: usize = 1_000;
const MAX_SNAPSHOT: usize = 10_000;

/// Element id → its `min` and `max` before the differential constrained it.
type Cardinalities = HashMap<String, (Option<Value>, Option<Value>)>;

fn elements(sd: &Value, part: &str) -> Vec<Value> {
    sd.member(part)
        .and_then(|s| s.member("element"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

fn str_of<'a>(e: &'a Value, k: &str) -> &'a str {
    e.member(k).and_then(Value::as_str).unwrap_or_default()
}

/// `sd` with `snapshot` filled from `base` (a StructureDefinition with a snapshot), and warnings
/// about a differential that does not follow the base's order.
pub fn generate(
    sd: &Value,
    base: &Value,
    defs: &Definitions,
) -> Result<(Value, Vec<String>), String> {
    let mut snap = elements(base, "snapshot");
    if snap.is_empty() {
        return Err("its base definition has no snapshot".into());
    }
    let diff = elements(sd, "differential");
    if diff.len() > MAX_DIFFERENTIAL {
        return Err(format!(
            "its differential has {} elements; snapshots are generated for at most \
             {MAX_DIFFERENTIAL} (larger profiles cost too much to check)",
            diff.len()
        ));
    }
    let mut warnings = Vec::new();
    // The previous differential element's id, to check the order.
    let mut previous: Option<String> = None;
    // Each constrained element's cardinality before this differential changed it: a new slice
    // starts from the base's element, not from the slicing entry as constrained here (a slicing
    // entry with `min` 1 does not make every slice required), as in HL7's generator.
    let mut before = Cardinalities::new();
    // A profile's paths start with its type, which is the base's type too (for constraints).
    for d in &diff {
        let Some(obj) = d.as_object() else {
            return Err("a differential element is not an object".into());
        };
        let path = str_of(d, "path");
        if path.is_empty() {
            return Err("a differential element has no path".into());
        }
        let id = match obj.member("id").and_then(Value::as_str) {
            Some(id) => id.to_string(),
            None => match obj.member("sliceName").and_then(Value::as_str) {
                Some(s) => format!("{path}:{s}"),
                None => path.to_string(),
            },
        };
        let id = choice_as_type_slice(&snap, &id);
        let idx = locate(&mut snap, &id, defs, &before)?;
        if snap.len() > MAX_SNAPSHOT {
            return Err(format!(
                "its snapshot grows past {MAX_SNAPSHOT} elements at {id} (its slices copy \
                 too much to check)"
            ));
        }
        if let Some(prev) = previous.as_deref() {
            if find(&snap, prev).is_some_and(|p| idx < p) {
                warnings.push(format!(
                    "the differential lists {id} after {prev}, but the base has it before; \
                     differential elements must follow the base's order (other snapshot \
                     generators reject this profile)"
                ));
            }
        }
        previous = Some(id.clone());
        if let (Some(d), Some(b)) = (obj.member("slicing"), snap[idx].member("slicing")) {
            if let Some(why) = slicing_redefined(d, b) {
                warnings.push(format!(
                    "{id} restates the slicing of its base with a different {why}; a profile may \
                     close an open slicing but not change its discriminators or order (other \
                     snapshot generators reject this profile)"
                ));
            }
        }
        before.entry(id.clone()).or_insert_with(|| {
            (
                snap[idx].member("min").cloned(),
                snap[idx].member("max").cloned(),
            )
        });
        merge(&mut snap[idx], obj);
        // A constraint on a child of a sliced element holds in every slice too
        // (`coding.version` max 0 → `coding:S.version` max 0).
        if !id.contains(':') {
            for (i, e) in snap.iter_mut().enumerate() {
                let eid = str_of(e, "id");
                if i != idx && eid.contains(':') && unsliced(eid) == id {
                    narrow(e, obj);
                }
            }
        }
    }
    let mut out = sd.clone();
    if let Some(o) = out.as_object_mut() {
        let mut snapshot = Map::new();
        snapshot.insert("element".into(), Value::Array(snap));
        o.insert("snapshot".into(), Value::Object(snapshot));
    }
    Ok((out, warnings))
}

/// R4's own profiles name a choice by its type-specific form (`Observation.valueQuantity`,
/// `Observation.valueQuantity.value`): that is the type slice `Observation.value[x]:valueQuantity`
/// (as HL7's generator reads it), so the element keeps that one type and its children unfold.
fn choice_as_type_slice(snap: &[Value], id: &str) -> String {
    let mut out = String::with_capacity(id.len() + 16);
    for (i, seg) in id.split('.').enumerate() {
        if i > 0 {
            out.push('.');
            if !seg.contains(':') && !seg.ends_with("[x]") {
                let split = seg
                    .char_indices()
                    .skip(1)
                    .filter(|(_, c)| c.is_ascii_uppercase())
                    .map(|(k, _)| k)
                    .find(|&k| {
                        let choice = format!("{out}{}[x]", &seg[..k]);
                        find(snap, &choice).is_some_and(|c| {
                            choice_slice_type(&choice, seg, snap[c].member("type")).is_some()
                        })
                    });
                if let Some(k) = split {
                    out.push_str(&seg[..k]);
                    out.push_str("[x]:");
                    out.push_str(seg);
                    continue;
                }
            }
        }
        out.push_str(seg);
    }
    out
}

fn find(snap: &[Value], id: &str) -> Option<usize> {
    snap.iter().position(|e| str_of(e, "id") == id)
}

/// The index of the element with `id`, creating it (a slice, or the unfolded children of a
/// datatype) when the snapshot does not have it yet.
fn locate(
    snap: &mut Vec<Value>,
    id: &str,
    defs: &Definitions,
    before: &Cardinalities,
) -> Result<usize, String> {
    if let Some(i) = find(snap, id) {
        return Ok(i);
    }
    let (parent_id, last) = id
        .rsplit_once('.')
        .ok_or_else(|| format!("element {id} is not in the base"))?;
    // A new slice: `A.b:s` (or a re-slice `A.b:s/t`) copies `A.b` (or `A.b:s`) and its subtree.
    if let Some((name, slice)) = last.split_once(':') {
        let sliced_id = match slice.rsplit_once('/') {
            Some((outer, _)) => format!("{parent_id}.{name}:{outer}"),
            None => format!("{parent_id}.{name}"),
        };
        let sliced = locate(snap, &sliced_id, defs, before)?;
        // Unfolding the parent may have brought the slice along (a profile on the type slices it).
        if let Some(i) = find(snap, id) {
            return Ok(i);
        }
        // A type slice of a choice (`value[x]:valueQuantity`) implies slicing by type.
        let implied = choice_slice_type(&sliced_id, slice, snap[sliced].member("type")).is_some();
        if let Some(o) = snap[sliced].as_object_mut() {
            if implied && !o.contains_key("slicing") {
                o.insert(
                    "slicing".into(),
                    serde_json::json!({"discriminator": [{"type": "type", "path": "$this"}],
                        "ordered": false, "rules": "open"}),
                );
            }
        }
        let end = subtree_end(snap, sliced);
        let mut copies: Vec<Value> = snap[sliced..end]
            .iter()
            .filter(|e| {
                // the sliced element and its children, but not its existing slices
                let eid = str_of(e, "id");
                eid == sliced_id || eid.starts_with(&format!("{sliced_id}."))
            })
            .cloned()
            .collect();
        for c in copies.iter_mut() {
            let eid = str_of(c, "id").to_string();
            let new_id = format!("{id}{}", &eid[sliced_id.len()..]);
            if let Some(o) = c.as_object_mut() {
                o.insert("id".into(), Value::String(new_id));
                o.remove("slicing");
                if eid == sliced_id {
                    o.insert("sliceName".into(), Value::String(slice.to_string()));
                    if let Some((min, max)) = before.get(&sliced_id) {
                        for (k, v) in [("min", min), ("max", max)] {
                            match v {
                                Some(v) => o.insert(k.into(), v.clone()),
                                None => o.remove(k),
                            };
                        }
                    }
                    // a type slice of a choice (`value[x]:valueQuantity`) has that one type
                    if let Some(t) = choice_slice_type(&eid, slice, o.member("type")) {
                        o.insert("type".into(), Value::Array(vec![t]));
                    }
                }
            }
        }
        let at = end;
        snap.splice(at..at, copies);
        return Ok(at);
    }
    // A child of an element the snapshot has not unfolded yet: unfold the parent's type.
    let parent = locate(snap, parent_id, defs, before)?;
    let already = snap
        .iter()
        .any(|e| str_of(e, "id").starts_with(&format!("{parent_id}.")));
    if !already {
        unfold(snap, parent, last.split(':').next().unwrap_or(last), defs)?;
        if let Some(i) = find(snap, id) {
            return Ok(i);
        }
    }
    // `A.valueQuantity` style: the type-specific form of a choice element.
    if let Some(i) = snap.iter().position(|e| {
        let eid = str_of(e, "id");
        eid.ends_with("[x]")
            && eid.rsplit_once('.').map(|(p, _)| p) == Some(parent_id)
            && last.starts_with(eid.rsplit('.').next().unwrap_or("").trim_end_matches("[x]"))
    }) {
        return Ok(i);
    }
    Err(format!("element {id} is not in the base definition"))
}

/// One past the last element belonging to `snap[i]` (its descendants and slices).
fn subtree_end(snap: &[Value], i: usize) -> usize {
    let id = str_of(&snap[i], "id");
    let prefix_child = format!("{id}.");
    let prefix_slice = format!("{id}:");
    let mut end = i + 1;
    while end < snap.len() {
        let eid = str_of(&snap[end], "id");
        if eid.starts_with(&prefix_child) || eid.starts_with(&prefix_slice) {
            end += 1;
        } else {
            break;
        }
    }
    end
}

/// The one type of a type slice of a choice element: `value[x]` sliced as `valueQuantity`.
fn choice_slice_type(sliced_id: &str, slice: &str, types: Option<&Value>) -> Option<Value> {
    let name = sliced_id.rsplit('.').next()?.strip_suffix("[x]")?;
    types?
        .as_array()?
        .iter()
        .find(|t| super::model::choice_key(name, str_of(t, "code")) == slice)
        .cloned()
}

/// Insert the children of `snap[parent]`'s type (or of the profile its type names) after it;
/// `child` is the child the differential wants.
fn unfold(
    snap: &mut Vec<Value>,
    parent: usize,
    child: &str,
    defs: &Definitions,
) -> Result<(), String> {
    let p = &snap[parent];
    let parent_id = str_of(p, "id").to_string();
    let parent_path = str_of(p, "path").to_string();
    let types = p
        .member("type")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let source = if let Some(r) = p.member("contentReference").and_then(Value::as_str) {
        // copy the referenced element's children from this same snapshot
        let target = r.rsplit_once('#').map_or(r, |(_, t)| t).to_string();
        let kids: Vec<Value> = snap
            .iter()
            .filter(|e| str_of(e, "id").starts_with(&format!("{target}.")))
            .cloned()
            .collect();
        (target, kids)
    } else {
        // Children every type has (`id`, `extension`) are those of Element.
        let element = [serde_json::json!({"code": "Element"})];
        let t = match types.len() {
            1 => &types[0],
            0 => return Err(format!("cannot unfold {parent_id}: it has no type")),
            _ if ["id", "extension"].contains(&child) => &element[0],
            n => {
                let codes: Vec<&str> = types.iter().map(|t| str_of(t, "code")).collect();
                return Err(format!(
                    "the differential constrains {parent_id}.{child}, but {parent_id} allows \
                     {n} types ({}); restrict it to one type, or use a type slice, first",
                    codes.join(", ")
                ));
            }
        };
        let profile_url = t
            .member("profile")
            .and_then(Value::as_array)
            .and_then(|a| a.first())
            .and_then(Value::as_str);
        let code = str_of(t, "code");
        let raw = profile_url
            .and_then(|u| defs.raw(u))
            .or_else(|| defs.type_def(code).and_then(|p| defs.raw(&p.url)))
            .ok_or_else(|| format!("cannot unfold {parent_id}: type {code} is not loaded"))?;
        let els = elements(&raw, "snapshot");
        let root = els
            .first()
            .map(|e| str_of(e, "id").to_string())
            .unwrap_or_default();
        (root, els.into_iter().skip(1).collect())
    };
    let (root, kids) = source;
    let mut renamed = Vec::with_capacity(kids.len());
    for mut k in kids {
        let eid = str_of(&k, "id").to_string();
        let epath = str_of(&k, "path").to_string();
        let Some(rest_id) = eid.strip_prefix(&root) else {
            continue;
        };
        let root_path = root.split(':').next().unwrap_or(&root);
        let rest_path = epath.strip_prefix(root_path).unwrap_or(&epath).to_string();
        if let Some(o) = k.as_object_mut() {
            o.insert("id".into(), Value::String(format!("{parent_id}{rest_id}")));
            o.insert(
                "path".into(),
                Value::String(format!("{parent_path}{rest_path}")),
            );
        }
        renamed.push(k);
    }
    let at = parent + 1;
    snap.splice(at..at, renamed);
    Ok(())
}

fn merge(target: &mut Value, diff: &Map<String, Value>) {
    let Some(t) = target.as_object_mut() else {
        return;
    };
    for (k, v) in diff {
        if k == "constraint" {
            let mut all = t
                .member("constraint")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            for c in v.as_array().into_iter().flatten() {
                let key = c.member("key");
                all.retain(|x| x.member("key") != key);
                all.push(c.clone());
            }
            t.insert(k.clone(), Value::Array(all));
        } else if OVERRIDES.contains(&k.as_str())
            || ["fixed", "pattern", "minValue", "maxValue"]
                .iter()
                .any(|p| k.starts_with(p))
        {
            t.insert(k.clone(), v.clone());
        }
    }
}

/// What a differential's `slicing` changes in its base's, when the change is not allowed: the
/// discriminators (when both give them: same types and paths, in order), `ordered` (when both
/// give it), or the rules (a profile may narrow `open` to anything and `closed` to `openAtEnd`,
/// as HL7's snapshot generator accepts; nothing else).
fn slicing_redefined(diff: &Value, base: &Value) -> Option<String> {
    let discriminators = |s: &Value| -> Vec<(String, String)> {
        s.member("discriminator")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|d| (str_of(d, "type").to_string(), str_of(d, "path").to_string()))
            .collect()
    };
    let (dd, bd) = (discriminators(diff), discriminators(base));
    let show = |d: &[(String, String)]| {
        d.iter()
            .map(|(t, p)| format!("{t}:{p}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if !dd.is_empty() && !bd.is_empty() && dd != bd {
        return Some(format!(
            "discriminator ({} where the base has {})",
            show(&dd),
            show(&bd)
        ));
    }
    if let (Some(d), Some(b)) = (
        diff.member("ordered").and_then(Value::as_bool),
        base.member("ordered").and_then(Value::as_bool),
    ) {
        if d != b {
            return Some(format!("order (ordered {d} where the base has {b})"));
        }
    }
    let (dr, br) = (str_of(diff, "rules"), str_of(base, "rules"));
    let allowed = dr.is_empty()
        || br.is_empty()
        || dr == br
        || br == "open"
        || (dr == "openAtEnd" && br == "closed");
    (!allowed).then(|| format!("rule ({dr} where the base has {br})"))
}

/// An element id without its slice names: `A.b:s.c` → `A.b.c`.
fn unsliced(id: &str) -> String {
    id.split('.')
        .map(|seg| seg.split(':').next().unwrap_or(seg))
        .collect::<Vec<_>>()
        .join(".")
}

/// Apply the cardinality of `diff` where it is stricter.
fn narrow(target: &mut Value, diff: &Map<String, Value>) {
    let Some(t) = target.as_object_mut() else {
        return;
    };
    if let Some(min) = diff.member("min").and_then(Value::as_u64) {
        if t.member("min").and_then(Value::as_u64).unwrap_or(0) < min {
            t.insert("min".into(), Value::from(min));
        }
    }
    if let Some(max) = diff.member("max").and_then(Value::as_str) {
        let current = t.member("max").and_then(Value::as_str).unwrap_or("*");
        let stricter = match (current.parse::<u64>(), max.parse::<u64>()) {
            (_, Err(_)) => false,
            (Err(_), Ok(_)) => true,
            (Ok(c), Ok(m)) => m < c,
        };
        if stricter {
            t.insert("max".into(), Value::String(max.to_string()));
        }
    }
}
