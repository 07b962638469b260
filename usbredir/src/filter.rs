//! Device filters (filter_filter packets): the string form usbredir uses,
//! `class,vendor,product,version,allow` per rule, rules separated by `|`, each
//! number in C `strtol(.., 0)` syntax (decimal, `0x` hex, leading `0` octal) or
//! `-1` for "any". Empty rules (as between `||` or after a trailing `|`) are skipped,
//! as strtok does in the C parser.

use crate::Error;

/// One filter rule; `None` matches any value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FilterRule {
    pub device_class: Option<u8>,
    pub vendor_id: Option<u16>,
    pub product_id: Option<u16>,
    pub device_version_bcd: Option<u16>,
    pub allow: bool,
}

/// The most rules we accept from a peer: a filter string is at most one packet,
/// but a packet of `|` separators must not cost a rule allocation each.
pub const MAX_RULES: usize = 1024;

impl FilterRule {
    fn matches(&self, class: u8, vendor: u16, product: u16, version: u16) -> bool {
        self.device_class.is_none_or(|c| c == class)
            && self.vendor_id.is_none_or(|v| v == vendor)
            && self.product_id.is_none_or(|p| p == product)
            && self.device_version_bcd.is_none_or(|v| v == version)
    }
}

/// The first matching rule decides; without a match, `default_allow`.
pub fn check(
    rules: &[FilterRule],
    class: u8,
    vendor: u16,
    product: u16,
    version: u16,
    default_allow: bool,
) -> bool {
    rules
        .iter()
        .find(|r| r.matches(class, vendor, product, version))
        .map_or(default_allow, |r| r.allow)
}

/// C `strtol(s, &end, 0)` with `*end == 0` required, limited to `i64`.
fn parse_c_integer(token: &str) -> Option<i64> {
    let token = token.trim_start();
    let (negative, digits) = match token.as_bytes().first() {
        Some(b'-') => (true, &token[1..]),
        Some(b'+') => (false, &token[1..]),
        _ => (false, token),
    };
    let (radix, body) = if let Some(hex) = digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        (16, hex)
    } else if digits.len() > 1 && digits.starts_with('0') {
        (8, &digits[1..])
    } else {
        (10, digits)
    };
    if body.is_empty() || !body.bytes().all(|b| (b as char).is_digit(radix)) {
        return None;
    }
    let magnitude = i64::from_str_radix(body, radix).ok()?;
    Some(if negative { -magnitude } else { magnitude })
}

fn field<T: TryFrom<i64>>(token: &str) -> Result<Option<T>, Error> {
    let value =
        parse_c_integer(token).ok_or_else(|| Error::Filter(format!("bad number {token:?}")))?;
    if value == -1 {
        return Ok(None);
    }
    T::try_from(value)
        .map(Some)
        .map_err(|_| Error::Filter(format!("{value} out of range")))
}

/// Parses a filter string (without its NUL terminator).
pub fn parse_rules(text: &str) -> Result<Vec<FilterRule>, Error> {
    let mut rules = Vec::new();
    for rule in text.split('|').filter(|r| !r.is_empty()) {
        if rules.len() == MAX_RULES {
            return Err(Error::Filter(format!("more than {MAX_RULES} rules")));
        }
        let tokens: Vec<&str> = rule.split(',').filter(|t| !t.is_empty()).collect();
        let [class, vendor, product, version, allow] = tokens[..] else {
            return Err(Error::Filter(format!("rule {rule:?} has not 5 fields")));
        };
        let allow =
            parse_c_integer(allow).ok_or_else(|| Error::Filter(format!("bad allow {allow:?}")))?;
        rules.push(FilterRule {
            device_class: field(class)?,
            vendor_id: field(vendor)?,
            product_id: field(product)?,
            device_version_bcd: field(version)?,
            allow: allow != 0,
        });
    }
    Ok(rules)
}

/// The string form usbredir writes: hex fields, `-1` for any, a `|` after each rule.
pub fn rules_to_string(rules: &[FilterRule]) -> String {
    let mut out = String::new();
    for rule in rules {
        match rule.device_class {
            Some(c) => out.push_str(&format!("0x{c:02x},")),
            None => out.push_str("-1,"),
        }
        for value in [rule.vendor_id, rule.product_id, rule.device_version_bcd] {
            match value {
                Some(v) => out.push_str(&format!("0x{v:04x},")),
                None => out.push_str("-1,"),
            }
        }
        out.push_str(if rule.allow { "1|" } else { "0|" });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_spice_gtk_default_filter() {
        // spice-gtk's default auto-connect filter: no HID (class 3), allow the rest.
        let rules = parse_rules("0x03,-1,-1,-1,0|-1,-1,-1,-1,1").unwrap();
        assert_eq!(rules.len(), 2);
        assert_eq!(rules[0].device_class, Some(3));
        assert!(!rules[0].allow);
        assert_eq!(rules[1].vendor_id, None);
        assert!(!check(&rules, 0x03, 1, 2, 3, true));
        assert!(check(&rules, 0x08, 1, 2, 3, false));
    }

    #[test]
    fn roundtrips_the_c_string_form() {
        let rules = vec![FilterRule {
            device_class: Some(8),
            vendor_id: Some(0x46f4),
            product_id: None,
            device_version_bcd: Some(0x0100),
            allow: true,
        }];
        let text = rules_to_string(&rules);
        assert_eq!(text, "0x08,0x46f4,-1,0x0100,1|");
        assert_eq!(parse_rules(&text).unwrap(), rules);
    }

    #[test]
    fn c_number_syntax() {
        assert_eq!(parse_c_integer("010"), Some(8));
        assert_eq!(parse_c_integer("0"), Some(0));
        assert_eq!(parse_c_integer("-1"), Some(-1));
        assert_eq!(parse_c_integer("0x"), None);
        assert_eq!(parse_c_integer("12a"), None);
        assert_eq!(parse_c_integer("99999999999999999999999"), None);
    }

    #[test]
    fn rejects_malformed_rules() {
        assert!(parse_rules("1,2,3,4").is_err());
        assert!(parse_rules("1,2,3,4,1,6").is_err());
        assert!(parse_rules("256,-1,-1,-1,1").is_err());
        assert!(parse_rules("-2,-1,-1,-1,1").is_err());
        assert!(parse_rules("1,0x10000,-1,-1,1").is_err());
        assert!(parse_rules("x,-1,-1,-1,1").is_err());
        assert!(parse_rules(&"-1,-1,-1,-1,1|".repeat(MAX_RULES + 1)).is_err());
        // Empty rules are skipped, like strtok.
        assert_eq!(parse_rules("||").unwrap(), vec![]);
    }
}
