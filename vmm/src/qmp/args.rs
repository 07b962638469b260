//! Command arguments checked the way QEMU's QAPI input visitor checks them, with
//! its messages: a missing member, a wrong type, an enum value it does not know,
//! and (at `finish`) a member nobody asked for.

use serde_json::{Map, Value};

use super::protocol::QmpError;

pub struct Args {
    members: Map<String, Value>,
    /// Where these members sit, for names like `keys[0].data`.
    path: String,
}

fn type_error(name: &str, expected: &str) -> QmpError {
    QmpError::generic(format!(
        "Invalid parameter type for '{name}', expected: {expected}"
    ))
}

impl Args {
    pub fn new(members: Map<String, Value>) -> Self {
        Args {
            members,
            path: String::new(),
        }
    }

    /// The members of `v`, an object found at `path` (e.g. `events[2]`).
    pub fn nested(v: Value, path: String) -> Result<Self, QmpError> {
        match v {
            Value::Object(members) => Ok(Args { members, path }),
            _ => Err(type_error(&path, "object")),
        }
    }

    pub fn name(&self, member: &str) -> String {
        if self.path.is_empty() {
            member.to_string()
        } else {
            format!("{}.{member}", self.path)
        }
    }

    fn take(&mut self, member: &str) -> Option<Value> {
        self.members.remove(member)
    }

    fn required(&mut self, member: &str) -> Result<Value, QmpError> {
        self.take(member).ok_or_else(|| {
            QmpError::generic(format!("Parameter '{}' is missing", self.name(member)))
        })
    }

    /// A required member of any type, for the caller to check.
    pub fn take_value(&mut self, member: &str) -> Result<Value, QmpError> {
        self.required(member)
    }

    pub fn opt_str(&mut self, member: &str) -> Result<Option<String>, QmpError> {
        match self.take(member) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(type_error(&self.name(member), "string")),
        }
    }

    pub fn str(&mut self, member: &str) -> Result<String, QmpError> {
        match self.required(member)? {
            Value::String(s) => Ok(s),
            _ => Err(type_error(&self.name(member), "string")),
        }
    }

    pub fn opt_int(&mut self, member: &str) -> Result<Option<i64>, QmpError> {
        match self.take(member) {
            None => Ok(None),
            Some(v) => v
                .as_i64()
                .map(Some)
                .ok_or_else(|| type_error(&self.name(member), "integer")),
        }
    }

    pub fn int(&mut self, member: &str) -> Result<i64, QmpError> {
        let v = self.required(member)?;
        v.as_i64()
            .ok_or_else(|| type_error(&self.name(member), "integer"))
    }

    pub fn bool(&mut self, member: &str) -> Result<bool, QmpError> {
        match self.required(member)? {
            Value::Bool(b) => Ok(b),
            _ => Err(type_error(&self.name(member), "boolean")),
        }
    }

    pub fn list(&mut self, member: &str) -> Result<Vec<Value>, QmpError> {
        match self.required(member)? {
            Value::Array(a) => Ok(a),
            _ => Err(type_error(&self.name(member), "array")),
        }
    }

    pub fn opt_list(&mut self, member: &str) -> Result<Option<Vec<Value>>, QmpError> {
        match self.take(member) {
            None => Ok(None),
            Some(Value::Array(a)) => Ok(Some(a)),
            Some(_) => Err(type_error(&self.name(member), "array")),
        }
    }

    /// A required enum member: one of `values`' names.
    pub fn enumeration<T: Copy>(
        &mut self,
        member: &str,
        values: &[(&str, T)],
    ) -> Result<T, QmpError> {
        let s = self.str(member)?;
        lookup(&self.name(member), &s, values)
    }

    pub fn opt_enumeration<T: Copy>(
        &mut self,
        member: &str,
        values: &[(&str, T)],
    ) -> Result<Option<T>, QmpError> {
        match self.opt_str(member)? {
            None => Ok(None),
            Some(s) => lookup(&self.name(member), &s, values).map(Some),
        }
    }

    /// Every member must have been taken.
    pub fn finish(self) -> Result<(), QmpError> {
        match self.members.keys().next() {
            None => Ok(()),
            Some(k) => Err(QmpError::generic(format!(
                "Parameter '{}' is unexpected",
                self.name(k)
            ))),
        }
    }
}

pub fn lookup<T: Copy>(name: &str, s: &str, values: &[(&str, T)]) -> Result<T, QmpError> {
    values
        .iter()
        .find(|(n, _)| *n == s)
        .map(|(_, v)| *v)
        .ok_or_else(|| QmpError::generic(format!("Parameter '{name}' does not accept value '{s}'")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn args(v: Value) -> Args {
        Args::new(v.as_object().unwrap().clone())
    }

    #[test]
    fn qemu_messages() {
        let mut a = args(json!({"f": 1, "n": "x", "extra": true}));
        assert_eq!(
            a.str("f").unwrap_err().desc,
            "Invalid parameter type for 'f', expected: string"
        );
        assert_eq!(
            a.int("n").unwrap_err().desc,
            "Invalid parameter type for 'n', expected: integer"
        );
        assert_eq!(
            a.str("missing").unwrap_err().desc,
            "Parameter 'missing' is missing"
        );
        assert_eq!(
            a.finish().unwrap_err().desc,
            "Parameter 'extra' is unexpected"
        );
        let mut a = Args::nested(json!({"type": "bogus"}), "keys[0]".into()).unwrap();
        assert_eq!(
            a.enumeration("type", &[("qcode", 1)]).unwrap_err().desc,
            "Parameter 'keys[0].type' does not accept value 'bogus'"
        );
        assert_eq!(
            Args::nested(json!(3), "events[1]".into())
                .err()
                .unwrap()
                .desc,
            "Invalid parameter type for 'events[1]', expected: object"
        );
        let mut a = args(json!({"b": "yes"}));
        assert!(a.bool("b").unwrap_err().desc.ends_with("expected: boolean"));
        let mut a = args(json!({"l": {}}));
        assert!(a.list("l").unwrap_err().desc.ends_with("expected: array"));
    }
}
