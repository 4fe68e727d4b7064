//! Reading a `POST /jobs` body in one pass, without building a JSON tree, into the fields
//! the handler checks one by one.

use crate::error::{AppError, AppResult, Code};
use crate::jobs::Entry;
use serde::Deserialize;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::cell::Cell;
use std::fmt;

/// Reads a `POST /jobs` body into typed fields in one pass, without building a JSON tree.
///
/// `domains` stops at `max` + 1 entries with TOO_MANY_DOMAINS, so an oversized job costs no
/// more than a legal one. Syntax errors are INVALID_JSON; a body that is not an object is
/// INVALID_INPUT; wrong field types are reported by the caller, field by field.
pub(super) fn parse_job_body(body: &[u8], max: usize) -> AppResult<JobBody> {
    let too_many = Cell::new(false);
    let mut reader = serde_json::Deserializer::from_slice(body);
    let parsed = BodySeed {
        max,
        too_many: &too_many,
    }
    .deserialize(&mut reader)
    .and_then(|fields| reader.end().map(|()| fields));
    match parsed {
        Ok(fields) => Ok(fields),
        Err(_) if too_many.get() => Err(AppError::bad_request(
            Code::TooManyDomains,
            format!("a job may hold at most {max} domains; this request has more"),
        )),
        Err(e) if e.is_data() => Err(AppError::bad_request(
            Code::InvalidInput,
            "the body must be a JSON object with client_id and domains",
        )),
        Err(e) => Err(AppError::bad_request(
            Code::InvalidJson,
            format!("the body is not valid JSON: {e}"),
        )),
    }
}

/// The fields of a `POST /jobs` body, each as the JSON type it arrived in.
#[derive(Default)]
pub(super) struct JobBody {
    pub(super) client_id: Scalar,
    pub(super) domains: Domains,
    pub(super) max_age_seconds: Scalar,
    pub(super) priority: Scalar,
}

/// One JSON value, kept only when it is a string or a whole number; anything else is read
/// past and named by its type.
#[derive(Default)]
pub(super) enum Scalar {
    /// The field was absent.
    #[default]
    Missing,
    /// `null`.
    Null,
    /// A string.
    Text(String),
    /// A whole number that fits an `i64`.
    Int(i64),
    /// Another JSON type, named for messages.
    Other(&'static str),
}

/// The `domains` field: a list of entries (at most the limit), or why it is not one.
#[derive(Default)]
pub(super) enum Domains {
    /// The field was absent.
    #[default]
    Missing,
    /// `null`.
    Null,
    /// The entries, in order.
    List(Vec<Scalar>),
    /// Not an array.
    WrongType,
}

/// Reads the body object; carries the domain limit down to the `domains` field.
struct BodySeed<'a> {
    max: usize,
    too_many: &'a Cell<bool>,
}

impl<'de> DeserializeSeed<'de> for BodySeed<'_> {
    type Value = JobBody;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<JobBody, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for BodySeed<'_> {
    type Value = JobBody;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object with client_id and domains")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<JobBody, A::Error> {
        let mut body = JobBody::default();
        // A repeated key replaces the earlier value, as a JSON object read into a map would.
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "client_id" => body.client_id = map.next_value()?,
                "max_age_seconds" => body.max_age_seconds = map.next_value()?,
                "priority" => body.priority = map.next_value()?,
                "domains" => {
                    body.domains = map.next_value_seed(DomainsSeed {
                        max: self.max,
                        too_many: self.too_many,
                    })?;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(body)
    }
}

impl Scalar {
    /// A `domains` entry: a string to parse, or the JSON type it is instead.
    pub(super) fn entry(&self) -> Entry<'_> {
        match self {
            Scalar::Text(s) => Entry::Text(s),
            Scalar::Missing | Scalar::Null => Entry::NotText("null"),
            Scalar::Int(_) => Entry::NotText("number"),
            Scalar::Other(kind) => Entry::NotText(kind),
        }
    }
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ScalarVisitor)
    }
}

struct ScalarVisitor;

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Scalar;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_unit<E>(self) -> Result<Scalar, E> {
        Ok(Scalar::Null)
    }
    fn visit_none<E>(self) -> Result<Scalar, E> {
        Ok(Scalar::Null)
    }
    fn visit_bool<E>(self, _: bool) -> Result<Scalar, E> {
        Ok(Scalar::Other("boolean"))
    }
    fn visit_i64<E>(self, n: i64) -> Result<Scalar, E> {
        Ok(Scalar::Int(n))
    }
    fn visit_u64<E>(self, n: u64) -> Result<Scalar, E> {
        Ok(i64::try_from(n).map_or(Scalar::Other("number"), Scalar::Int))
    }
    fn visit_f64<E>(self, _: f64) -> Result<Scalar, E> {
        Ok(Scalar::Other("number"))
    }
    fn visit_str<E>(self, s: &str) -> Result<Scalar, E> {
        Ok(Scalar::Text(s.to_owned()))
    }
    fn visit_string<E>(self, s: String) -> Result<Scalar, E> {
        Ok(Scalar::Text(s))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Scalar, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Scalar::Other("array"))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Scalar, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Scalar::Other("object"))
    }
}

/// Reads `domains`, failing (and flagging `too_many`) at the first entry over `max`.
struct DomainsSeed<'a> {
    max: usize,
    too_many: &'a Cell<bool>,
}

impl<'de> DeserializeSeed<'de> for DomainsSeed<'_> {
    type Value = Domains;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Domains, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for DomainsSeed<'_> {
    type Value = Domains;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of domain names")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Domains, A::Error> {
        // Never trust a size hint for the allocation: grow as entries really arrive.
        let mut entries = Vec::new();
        while let Some(entry) = seq.next_element::<Scalar>()? {
            if entries.len() == self.max {
                self.too_many.set(true);
                return Err(serde::de::Error::custom("too many domains"));
            }
            entries.push(entry);
        }
        Ok(Domains::List(entries))
    }
    fn visit_unit<E>(self) -> Result<Domains, E> {
        Ok(Domains::Null)
    }
    fn visit_none<E>(self) -> Result<Domains, E> {
        Ok(Domains::Null)
    }
    fn visit_bool<E>(self, _: bool) -> Result<Domains, E> {
        Ok(Domains::WrongType)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Domains, E> {
        Ok(Domains::WrongType)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Domains, E> {
        Ok(Domains::WrongType)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Domains, E> {
        Ok(Domains::WrongType)
    }
    fn visit_str<E>(self, _: &str) -> Result<Domains, E> {
        Ok(Domains::WrongType)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Domains, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Domains::WrongType)
    }
}
