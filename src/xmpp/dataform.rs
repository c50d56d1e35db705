//! XEP-0004: data forms — reading a submitted form and writing a form, generically.
//!
//! Reading is strict where XEP-0004 is (a known `type`, unique `var`s, one value in a boolean)
//! and lenient where it leaves room (field types are not checked: a submitting entity may
//! omit them, §3.2).

use crate::xml::Element;

/// The `jabber:x:data` namespace.
pub const NS: &str = "jabber:x:data";

/// A form's type attribute.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FormType {
    /// `form`.
    Form,
    /// `submit`.
    Submit,
    /// `cancel`.
    Cancel,
    /// `result`.
    Result,
}

/// A form read from an `<x xmlns='jabber:x:data'/>` element: its type and fields in order,
/// each `var` with its values (`<value/>` children, text; an empty `<value/>` is "").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Form {
    /// The form's type.
    pub ty: FormType,
    /// The FORM_TYPE hidden field's value, if any (not repeated in `fields`).
    pub form_type: Option<String>,
    /// (var, values) in document order; fields without `var` are skipped.
    pub fields: Vec<(String, Vec<String>)>,
}

/// Why an element is not a readable form (or a field not a readable value); the text says
/// which, for the error sent back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FormParseError(pub String);

impl FormType {
    /// The wire value of the `type` attribute.
    pub fn as_str(self) -> &'static str {
        match self {
            FormType::Form => "form",
            FormType::Submit => "submit",
            FormType::Cancel => "cancel",
            FormType::Result => "result",
        }
    }

    /// Parses the `type` attribute (case-sensitive, as in the schema).
    pub fn parse(s: &str) -> Option<FormType> {
        match s {
            "form" => Some(FormType::Form),
            "submit" => Some(FormType::Submit),
            "cancel" => Some(FormType::Cancel),
            "result" => Some(FormType::Result),
            _ => None,
        }
    }
}

impl Form {
    /// Reads `x`, which must be `<x xmlns='jabber:x:data'>` with a known `type`.
    ///
    /// Only direct `<field/>` children in the `jabber:x:data` namespace are read (a result
    /// form's `<reported/>` and `<item/>` are skipped); a field's values are the texts of its
    /// `<value/>` children in that namespace. The field with `var='FORM_TYPE'` goes to
    /// [`Form::form_type`] (its first value, "" when it has none) whatever its `type`, since
    /// submitting entities may omit field types. A `var` used twice is an error: XEP-0004 §3.2
    /// says it identifies the field uniquely, and taking either copy would be a guess.
    pub fn parse(x: &Element) -> Result<Form, FormParseError> {
        if !x.is("x", NS) {
            return Err(FormParseError(format!(
                "expected <x xmlns='{NS}'>, got <{}> in '{}'",
                x.name, x.ns
            )));
        }
        let ty = match x.attr("type") {
            Some(t) => FormType::parse(t)
                .ok_or_else(|| FormParseError(format!("unknown form type '{t}'")))?,
            None => return Err(FormParseError("form without a type".into())),
        };
        let mut form = Form {
            ty,
            form_type: None,
            fields: Vec::new(),
        };
        for field in x.elements().filter(|e| e.is("field", NS)) {
            let Some(var) = field.attr("var") else {
                continue;
            };
            let values: Vec<String> = field
                .elements()
                .filter(|e| e.is("value", NS))
                .map(Element::text)
                .collect();
            let duplicate = if var == "FORM_TYPE" {
                form.form_type.is_some()
            } else {
                form.fields.iter().any(|(v, _)| v == var)
            };
            if duplicate {
                return Err(FormParseError(format!("field '{var}' appears twice")));
            }
            if var == "FORM_TYPE" {
                form.form_type = Some(values.into_iter().next().unwrap_or_default());
            } else {
                form.fields.push((var.to_owned(), values));
            }
        }
        Ok(form)
    }

    /// The values of field `var` (None when absent; an empty slice when present without
    /// values). FORM_TYPE is not a field here: see [`Form::form_type`].
    pub fn values(&self, var: &str) -> Option<&[String]> {
        self.fields
            .iter()
            .find(|(v, _)| v == var)
            .map(|(_, values)| values.as_slice())
    }

    /// The single value of field `var` (the first; None when absent or without values).
    pub fn value(&self, var: &str) -> Option<&str> {
        self.values(var)?.first().map(String::as_str)
    }

    /// A boolean field (`1`/`true`, `0`/`false`): None when absent, Err when not boolean.
    ///
    /// Surrounding XML whitespace is ignored (xs:boolean collapses whitespace); a field with no
    /// value is `false`, the type's default (XEP-0004 §3.3); more than one value is an error
    /// (§3.2: only multi-valued types may repeat `<value/>`).
    pub fn boolean(&self, var: &str) -> Result<Option<bool>, FormParseError> {
        let Some(values) = self.values(var) else {
            return Ok(None);
        };
        match values {
            [] => Ok(Some(false)),
            [v] => match v.trim_matches(|c| matches!(c, ' ' | '\t' | '\n' | '\r')) {
                "1" | "true" => Ok(Some(true)),
                "0" | "false" => Ok(Some(false)),
                other => Err(FormParseError(format!(
                    "field '{var}': '{other}' is not a boolean"
                ))),
            },
            _ => Err(FormParseError(format!(
                "field '{var}': more than one boolean value"
            ))),
        }
    }
}

/// A field to write in a form. An empty `label` is not written.
#[derive(Clone, Debug)]
pub enum Field<'a> {
    /// `type='hidden'` with var FORM_TYPE.
    FormType(&'a str),
    /// `text-single`.
    Text {
        var: &'a str,
        label: &'a str,
        value: &'a str,
    },
    /// `text-private`.
    Private {
        var: &'a str,
        label: &'a str,
        value: &'a str,
    },
    /// `text-multi` (one `<value/>` per line, `\n` or `\r\n`; an empty text has no
    /// `<value/>`, and a final line end is not kept).
    Multi {
        var: &'a str,
        label: &'a str,
        value: &'a str,
    },
    /// `boolean` (`1`/`0`).
    Boolean {
        var: &'a str,
        label: &'a str,
        value: bool,
    },
    /// `list-single` with (label, value) options.
    ListSingle {
        var: &'a str,
        label: &'a str,
        value: &'a str,
        options: &'a [(&'a str, &'a str)],
    },
    /// `list-multi` with (label, value) options.
    ListMulti {
        var: &'a str,
        label: &'a str,
        values: &'a [&'a str],
        options: &'a [(&'a str, &'a str)],
    },
    /// `jid-multi`.
    JidMulti {
        var: &'a str,
        label: &'a str,
        values: &'a [&'a str],
    },
    /// A field in a `result` form: var and values, no type or label.
    Value { var: &'a str, values: &'a [&'a str] },
}

/// Writes `<x xmlns='jabber:x:data' type=ty>` with an optional title and the fields, in order.
pub fn write(ty: FormType, title: Option<&str>, fields: &[Field<'_>]) -> Element {
    let mut x = Element::new("x", NS).with_attr("type", ty.as_str());
    if let Some(title) = title {
        x.push_child(Element::new("title", NS).with_text(title));
    }
    for field in fields {
        x.push_child(write_field(field));
    }
    x
}

/// One `<field/>`.
fn write_field(field: &Field<'_>) -> Element {
    match *field {
        Field::FormType(value) => typed("FORM_TYPE", "hidden", "").with_child(value_element(value)),
        Field::Text { var, label, value } => {
            typed(var, "text-single", label).with_child(value_element(value))
        }
        Field::Private { var, label, value } => {
            typed(var, "text-private", label).with_child(value_element(value))
        }
        Field::Multi { var, label, value } => {
            let mut f = typed(var, "text-multi", label);
            // XEP-0004 §3.3: text-multi data is sent as one <value/> per line, not with newlines.
            for line in value.lines() {
                f.push_child(value_element(line));
            }
            f
        }
        Field::Boolean { var, label, value } => {
            typed(var, "boolean", label).with_child(value_element(if value { "1" } else { "0" }))
        }
        Field::ListSingle {
            var,
            label,
            value,
            options,
        } => {
            let f = typed(var, "list-single", label).with_child(value_element(value));
            with_options(f, options)
        }
        Field::ListMulti {
            var,
            label,
            values,
            options,
        } => with_options(
            with_values(typed(var, "list-multi", label), values),
            options,
        ),
        Field::JidMulti { var, label, values } => {
            with_values(typed(var, "jid-multi", label), values)
        }
        Field::Value { var, values } => {
            with_values(Element::new("field", NS).with_attr("var", var), values)
        }
    }
}

/// `<field type=.. label=.. var=..>` (no label when empty).
fn typed(var: &str, ty: &str, label: &str) -> Element {
    let mut f = Element::new("field", NS).with_attr("type", ty);
    if !label.is_empty() {
        f.set_attr("label", label);
    }
    f.with_attr("var", var)
}

fn value_element(value: &str) -> Element {
    Element::new("value", NS).with_text(value)
}

fn with_values(mut f: Element, values: &[&str]) -> Element {
    for v in values {
        f.push_child(value_element(v));
    }
    f
}

fn with_options(mut f: Element, options: &[(&str, &str)]) -> Element {
    for (label, value) in options {
        let mut option = Element::new("option", NS);
        if !label.is_empty() {
            option.set_attr("label", *label);
        }
        f.push_child(option.with_child(value_element(value)));
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml::{parse_element, Limits, StreamNs};

    fn xml(s: &str) -> Element {
        parse_element(
            s.as_bytes(),
            &StreamNs::new("jabber:client"),
            &Limits::default(),
        )
        .expect("well-formed")
    }

    fn parse_str(s: &str) -> Result<Form, FormParseError> {
        Form::parse(&xml(s))
    }

    /// Writes, serializes, parses the XML back and reads the form.
    fn through_wire(e: &Element) -> Form {
        let s = e.to_string_in("jabber:client");
        Form::parse(&xml(&s)).expect("a written form reads back")
    }

    #[test]
    fn form_type_names_round_trip() {
        for ty in [
            FormType::Form,
            FormType::Submit,
            FormType::Cancel,
            FormType::Result,
        ] {
            assert_eq!(FormType::parse(ty.as_str()), Some(ty));
        }
        assert_eq!(FormType::parse("Submit"), None);
        assert_eq!(FormType::parse("error"), None);
        assert_eq!(FormType::parse(""), None);
    }

    #[test]
    fn parse_submit_form() {
        let f = parse_str(
            "<x xmlns='jabber:x:data' type='submit'>\
             <field var='FORM_TYPE' type='hidden'><value>urn:t</value></field>\
             <field var='a'><value>1</value></field>\
             <field var='m' type='text-multi'><value>l1</value><value/><value>l3</value></field>\
             <field var='empty'/>\
             <field type='fixed'><value>no var: skipped</value></field>\
             <field var='other-ns'><value xmlns='urn:x'>ignored</value><value>kept</value></field>\
             <field xmlns='urn:x' var='foreign'><value>skipped</value></field>\
             <title>not a field</title>\
             </x>",
        )
        .expect("valid");
        assert_eq!(f.ty, FormType::Submit);
        assert_eq!(f.form_type.as_deref(), Some("urn:t"));
        let vars: Vec<&str> = f.fields.iter().map(|(v, _)| v.as_str()).collect();
        assert_eq!(vars, ["a", "m", "empty", "other-ns"]);
        assert_eq!(
            f.values("m"),
            Some(&["l1".to_owned(), String::new(), "l3".to_owned()][..])
        );
        assert_eq!(f.value("m"), Some("l1"));
        assert_eq!(f.value("a"), Some("1"));
        assert_eq!(f.values("empty"), Some(&[][..]));
        assert_eq!(f.value("empty"), None);
        assert_eq!(f.value("other-ns"), Some("kept"));
        assert_eq!(f.values("missing"), None);
        assert_eq!(f.value("missing"), None);
        assert_eq!(f.values("FORM_TYPE"), None, "FORM_TYPE is not in fields");
        assert_eq!(f.values("foreign"), None);
    }

    #[test]
    fn parse_every_type_and_form_type_variants() {
        for (t, ty) in [
            ("form", FormType::Form),
            ("submit", FormType::Submit),
            ("cancel", FormType::Cancel),
            ("result", FormType::Result),
        ] {
            let f = parse_str(&format!("<x xmlns='jabber:x:data' type='{t}'/>")).expect(t);
            assert_eq!(
                f,
                Form {
                    ty,
                    form_type: None,
                    fields: vec![]
                }
            );
        }
        // FORM_TYPE without type='hidden' (submitters may omit types), and without a value.
        let f = parse_str(
            "<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>u</value>\
             </field></x>",
        )
        .expect("valid");
        assert_eq!(f.form_type.as_deref(), Some("u"));
        let f = parse_str("<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'/></x>")
            .expect("valid");
        assert_eq!(f.form_type.as_deref(), Some(""));
        assert!(f.fields.is_empty());
    }

    #[test]
    fn parse_errors() {
        for bad in [
            "<x xmlns='urn:other' type='submit'/>",
            "<y xmlns='jabber:x:data' type='submit'/>",
            "<x xmlns='jabber:x:data'/>",
            "<x xmlns='jabber:x:data' type='Submit'/>",
            "<x xmlns='jabber:x:data' type='error'/>",
            "<x xmlns='jabber:x:data' type=''/>",
            "<x xmlns='jabber:x:data' type='submit'><field var='a'/><field var='a'/></x>",
            "<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>a</value>\
             </field><field var='FORM_TYPE'><value>a</value></field></x>",
        ] {
            assert!(parse_str(bad).is_err(), "{bad}");
        }
        // The message names the problem.
        let e = parse_str("<x xmlns='jabber:x:data' type='bogus'/>").unwrap_err();
        assert!(e.0.contains("bogus"), "{e:?}");
        let e = parse_str(
            "<x xmlns='jabber:x:data' type='submit'><field var='dup'/><field var='dup'/></x>",
        )
        .unwrap_err();
        assert!(e.0.contains("dup"), "{e:?}");
    }

    #[test]
    fn boolean_values() {
        let f = parse_str(
            "<x xmlns='jabber:x:data' type='submit'>\
             <field var='t1'><value>1</value></field>\
             <field var='t2'><value>true</value></field>\
             <field var='t3'><value> true\n</value></field>\
             <field var='f1'><value>0</value></field>\
             <field var='f2'><value>false</value></field>\
             <field var='none'/>\
             <field var='yes'><value>yes</value></field>\
             <field var='upper'><value>TRUE</value></field>\
             <field var='blank'><value/></field>\
             <field var='two'><value>1</value><value>1</value></field>\
             </x>",
        )
        .expect("valid");
        assert_eq!(f.boolean("t1"), Ok(Some(true)));
        assert_eq!(f.boolean("t2"), Ok(Some(true)));
        assert_eq!(f.boolean("t3"), Ok(Some(true)));
        assert_eq!(f.boolean("f1"), Ok(Some(false)));
        assert_eq!(f.boolean("f2"), Ok(Some(false)));
        assert_eq!(f.boolean("none"), Ok(Some(false)), "the type's default");
        assert_eq!(f.boolean("absent"), Ok(None));
        for bad in ["yes", "upper", "blank", "two"] {
            assert!(f.boolean(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn write_shapes() {
        let opts = [("Ten", "10"), ("", "none")];
        let x = write(
            FormType::Form,
            Some("T <&>"),
            &[
                Field::FormType("urn:t"),
                Field::Text {
                    var: "t",
                    label: "Text",
                    value: "v",
                },
                Field::Boolean {
                    var: "b",
                    label: "",
                    value: true,
                },
                Field::ListSingle {
                    var: "l",
                    label: "L",
                    value: "10",
                    options: &opts,
                },
                Field::Value {
                    var: "r",
                    values: &["x"],
                },
            ],
        );
        assert_eq!(
            x.to_string_in("jabber:client"),
            "<x xmlns='jabber:x:data' type='form'><title>T &lt;&amp;&gt;</title>\
             <field type='hidden' var='FORM_TYPE'><value>urn:t</value></field>\
             <field type='text-single' label='Text' var='t'><value>v</value></field>\
             <field type='boolean' var='b'><value>1</value></field>\
             <field type='list-single' label='L' var='l'><value>10</value>\
             <option label='Ten'><value>10</value></option><option><value>none</value></option>\
             </field>\
             <field var='r'><value>x</value></field></x>"
        );
        let x = write(FormType::Submit, None, &[]);
        assert_eq!(
            x.to_string_in("jabber:client"),
            "<x xmlns='jabber:x:data' type='submit'/>"
        );
    }

    #[test]
    fn write_multi_splits_lines() {
        let x = write(
            FormType::Form,
            None,
            &[
                Field::Multi {
                    var: "m",
                    label: "M",
                    value: "one\r\ntwo\n\nfour",
                },
                Field::Multi {
                    var: "e",
                    label: "E",
                    value: "",
                },
            ],
        );
        let f = through_wire(&x);
        assert_eq!(
            f.values("m"),
            Some(&["one".to_owned(), "two".into(), String::new(), "four".into()][..])
        );
        assert_eq!(f.values("e"), Some(&[][..]));
        let field = x.elements().next().expect("field");
        assert_eq!(field.attr("type"), Some("text-multi"));
        assert_eq!(field.elements().count(), 4);
    }

    #[test]
    fn write_then_parse_round_trips() {
        let opts = [("A", "a"), ("B", "b"), ("C", "c")];
        for ty in [
            FormType::Form,
            FormType::Submit,
            FormType::Cancel,
            FormType::Result,
        ] {
            let x = write(
                ty,
                Some("Title"),
                &[
                    Field::FormType("urn:xmppd:test"),
                    Field::Text {
                        var: "text",
                        label: "Text",
                        value: "héllo ☃ <&>'\"",
                    },
                    Field::Text {
                        var: "empty",
                        label: "",
                        value: "",
                    },
                    Field::Private {
                        var: "secret",
                        label: "Secret",
                        value: "s3cr3t",
                    },
                    Field::Multi {
                        var: "multi",
                        label: "Multi",
                        value: "l1\nl2",
                    },
                    Field::Boolean {
                        var: "yes",
                        label: "Yes",
                        value: true,
                    },
                    Field::Boolean {
                        var: "no",
                        label: "No",
                        value: false,
                    },
                    Field::ListSingle {
                        var: "single",
                        label: "Single",
                        value: "b",
                        options: &opts,
                    },
                    Field::ListMulti {
                        var: "multi-list",
                        label: "Multi",
                        values: &["a", "c"],
                        options: &opts,
                    },
                    Field::JidMulti {
                        var: "jids",
                        label: "JIDs",
                        values: &["a@b", "c@d"],
                    },
                    Field::JidMulti {
                        var: "nojids",
                        label: "None",
                        values: &[],
                    },
                    Field::Value {
                        var: "value",
                        values: &["1", "2"],
                    },
                ],
            );
            // Both the tree itself and its serialization read back.
            let direct = Form::parse(&x).expect("valid");
            let f = through_wire(&x);
            assert_eq!(direct, f);
            let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
            assert_eq!(
                f,
                Form {
                    ty,
                    form_type: Some("urn:xmppd:test".into()),
                    fields: vec![
                        ("text".into(), s(&["héllo ☃ <&>'\""])),
                        ("empty".into(), s(&[""])),
                        ("secret".into(), s(&["s3cr3t"])),
                        ("multi".into(), s(&["l1", "l2"])),
                        ("yes".into(), s(&["1"])),
                        ("no".into(), s(&["0"])),
                        ("single".into(), s(&["b"])),
                        ("multi-list".into(), s(&["a", "c"])),
                        ("jids".into(), s(&["a@b", "c@d"])),
                        ("nojids".into(), vec![]),
                        ("value".into(), s(&["1", "2"])),
                    ],
                }
            );
            assert_eq!(f.boolean("yes"), Ok(Some(true)));
            assert_eq!(f.boolean("no"), Ok(Some(false)));
            // Option values are not field values.
            assert_eq!(f.values("single").map(<[String]>::len), Some(1));
            let title = x.child("title", NS).map(Element::text);
            assert_eq!(title.as_deref(), Some("Title"));
        }
    }
}
