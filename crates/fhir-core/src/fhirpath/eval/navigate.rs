//! Navigation: a path step from a node to its children (choice elements by their JSON keys,
//! primitives with their `_name` extensions), all children, and descendants. The steps are
//! `#[inline]`: in a module of their own they may land in another codegen unit than the evaluator
//! that calls them for every path step (measured: 5 % slower without).

use super::*;

impl<'c, 'a> Evaluator<'c, 'a> {
    /// One navigation step `name` from `item`. At the start of a path (`root`) a type
    /// name matching the focus selects the focus itself.
    #[inline]
    pub(super) fn step(
        &self,
        item: &Item<'a>,
        name: &str,
        root: bool,
        out: &mut Collection<'a>,
    ) -> R<()> {
        match item {
            Item::Node(n) => {
                if root && name.starts_with(|c: char| c.is_ascii_uppercase()) {
                    let ty = n.type_name();
                    if ty == name || self.model.is_subtype(ty, name) {
                        out.push(item.clone());
                        return Ok(());
                    }
                    if self.model.is_type(name) && !ty.is_empty() {
                        if self.ctx.strict {
                            return err(format!("'{name}' does not match the context type {ty}"));
                        }
                        return Ok(());
                    }
                }
                self.children_named(n, name, out)
            }
            Item::TypeInfo(t) => {
                match name {
                    "namespace" => out.push(Item::String(t.namespace.clone())),
                    "name" => out.push(Item::String(t.name.clone())),
                    _ => {}
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Children of `n` called `name` (choice elements `value[x]` included).
    #[inline]
    pub(crate) fn children_named(
        &self,
        n: &Node<'a>,
        name: &str,
        out: &mut Collection<'a>,
    ) -> R<()> {
        let obj = match n.value {
            Some(Json::Object(o)) => o,
            _ => {
                // primitive: only `id` and `extension`, found in the `_name` object
                if let Some(Json::Object(e)) = n.ext {
                    let ty = match name {
                        "extension" => "Extension",
                        "id" => "System.String",
                        _ => return Ok(()),
                    };
                    push_values(member(e, name), None, ty, ty, out);
                }
                return Ok(());
            }
        };
        let def = if n.path.is_empty() {
            None
        } else {
            self.model.child(n.path, name)
        };
        match def {
            Some(d) if d.choice => {
                for (k, v) in obj {
                    let (key, is_ext) = match k.strip_prefix('_') {
                        Some(rest) => (rest, true),
                        None => (k.as_str(), false),
                    };
                    let Some(suffix) = key.strip_prefix(name) else {
                        continue;
                    };
                    let Some(t) = d.types.iter().find(|t| suffix_names_type(suffix, t)) else {
                        continue;
                    };
                    if is_ext {
                        if member(obj, key).is_none() {
                            push_values(None, Some(v), t, t, out);
                        }
                    } else {
                        push_values(Some(v), ext_lookup(obj, key), t, t, out);
                    }
                }
            }
            Some(d) => {
                let ty = d.types.first().map(String::as_str).unwrap_or("");
                let path = d.inline_path.unwrap_or(ty);
                let e = if d.inline_path.is_none()
                    && (self.model.is_primitive(ty) || ty.starts_with("System."))
                {
                    ext_lookup(obj, name)
                } else {
                    None
                };
                push_values(member(obj, name), e, ty, path, out);
            }
            None => {
                let v = member(obj, name);
                let e = ext_lookup(obj, name);
                if v.is_some() || e.is_some() {
                    if self.ctx.strict && self.knows(n) {
                        return err(format!("unknown element '{name}' on {}", n.path));
                    }
                    push_values(v, e, "", "", out);
                    return Ok(());
                }
                if !self.knows(n) {
                    // no model: recognise choice keys such as valueQuantity
                    for (k, v) in obj {
                        if let Some(suffix) = k.strip_prefix(name) {
                            if suffix.starts_with(|c: char| c.is_ascii_uppercase()) {
                                let t = type_from_suffix(suffix);
                                push_values(Some(v), ext_lookup(obj, k), t, t, out);
                            }
                        }
                    }
                } else if self.ctx.strict {
                    return err(format!("unknown element '{name}' on {}", n.path));
                }
            }
        }
        Ok(())
    }

    /// Does the model describe this node's type?
    #[inline]
    pub(super) fn knows(&self, n: &Node<'a>) -> bool {
        !n.path.is_empty()
            && (self.model.child(n.path, "id").is_some()
                || self.model.child(n.path, "extension").is_some())
    }

    /// Type and model path of the JSON key `key` under `n` (choice keys resolved).
    #[inline]
    pub(super) fn key_type(&self, n: &Node<'a>, key: &'a str) -> (&'a str, &'a str, bool) {
        if n.path.is_empty() {
            return ("", "", true);
        }
        if let Some(d) = self.model.child(n.path, key) {
            if !d.choice {
                let ty = d.types.first().map(String::as_str).unwrap_or("");
                let prim = d.inline_path.is_none()
                    && (self.model.is_primitive(ty) || ty.starts_with("System."));
                return (ty, d.inline_path.unwrap_or(ty), prim);
            }
        }
        // choice: find the split point "value" + "Quantity"
        for (i, c) in key.char_indices().skip(1) {
            if c.is_ascii_uppercase() {
                let (base, suffix) = key.split_at(i);
                if let Some(d) = self.model.child(n.path, base) {
                    if d.choice {
                        if let Some(t) = d.types.iter().find(|t| suffix_names_type(suffix, t)) {
                            let prim = self.model.is_primitive(t);
                            return (t.as_str(), t.as_str(), prim);
                        }
                    }
                }
            }
        }
        ("", "", true)
    }

    /// All child nodes of an item (`children()`).
    pub(crate) fn children_of(&self, item: &Item<'a>, out: &mut Collection<'a>) {
        let Item::Node(n) = item else {
            return;
        };
        let obj = match n.value {
            Some(Json::Object(o)) => o,
            _ => {
                if let Some(Json::Object(e)) = n.ext {
                    push_values(member(e, "id"), None, "System.String", "System.String", out);
                    push_values(member(e, "extension"), None, "Extension", "Extension", out);
                }
                return;
            }
        };
        for (k, v) in obj {
            if k == "resourceType" {
                continue;
            }
            if let Some(base) = k.strip_prefix('_') {
                if member(obj, base).is_some() {
                    continue;
                }
                let (ty, path, _) = self.key_type(n, base);
                push_values(None, Some(v), ty, path, out);
                continue;
            }
            let (ty, path, prim) = self.key_type(n, k);
            let e = if prim { ext_lookup(obj, k) } else { None };
            push_values(Some(v), e, ty, path, out);
        }
    }

    /// All descendants in document order (`descendants()`).
    pub(crate) fn descendants_of(&self, input: &[Item<'a>]) -> Collection<'a> {
        let mut out = Vec::new();
        let mut stack: Vec<(Item<'a>, bool)> =
            input.iter().rev().map(|i| (i.clone(), false)).collect();
        let mut buf = Vec::new();
        while let Some((item, emit)) = stack.pop() {
            buf.clear();
            self.children_of(&item, &mut buf);
            if emit {
                out.push(item);
            }
            for c in buf.drain(..).rev() {
                stack.push((c, true));
            }
        }
        out
    }
}
