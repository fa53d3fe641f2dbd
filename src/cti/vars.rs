//! The parameter values of one CTI event (spec §5): the call's parameters, the agent and
//! account settings, the date fields, the session's auth captures and the call's search
//! captures, each marked secret or not (SAF-3).

use std::collections::{BTreeMap, HashMap};

use chrono::{Datelike, NaiveDateTime, Timelike};

use crate::app::CallParams;
use crate::config::Config;

use super::template::{Lookup, Piece};

/// Settings the templates and filters read, taken from the configuration once.
#[derive(Clone, Debug, Default)]
pub struct Identity {
    pub aid: String,
    pub apw: String,
    pub ext: String,
    pub svaddr: String,
}

impl Identity {
    pub fn from_config(config: &Config) -> Self {
        let svaddr = if config.cti.server_address.is_empty() {
            registrar_host(&config.account.registrar)
                .map_or_else(String::new, |h| format!("https://{h}:8000/"))
        } else {
            config.cti.server_address.clone()
        };
        Self {
            aid: config.agent.id.clone(),
            apw: config.agent.password.clone(),
            ext: config.account.extension.clone(),
            svaddr,
        }
    }
}

/// The host part of a registrar written as `host`, `host:port`, `sip:host;transport=tcp`,
/// or `[v6]:port`.
pub fn registrar_host(registrar: &str) -> Option<String> {
    let r = registrar.trim();
    let r = r
        .strip_prefix("sips:")
        .or_else(|| r.strip_prefix("sip:"))
        .unwrap_or(r);
    let r = r.rsplit('@').next().unwrap_or(r);
    let host = if let Some(rest) = r.strip_prefix('[') {
        format!("[{}]", rest.split(']').next()?)
    } else {
        r.split([':', ';', '/']).next()?.to_owned()
    };
    (!host.is_empty() && host != "[]").then_some(host)
}

/// Parameter values for one expansion.
#[derive(Clone, Debug, Default)]
pub struct Vars {
    map: HashMap<String, (String, bool)>,
}

impl Vars {
    /// The values of a call event at `now` (local time).
    pub fn new(id: &Identity, params: &CallParams, now: NaiveDateTime) -> Self {
        let mut v = Self::default();
        v.set("TEL", &params.tel, false);
        v.set("TELNAME", &params.telname, false);
        v.set("CALLED", &params.called, false);
        v.set("CALLEDNAME", &params.calledname, false);
        v.set("ID", &params.id, false);
        v.set("SVADDR", &id.svaddr, false);
        v.set("AID", &id.aid, false);
        v.set("APW", &id.apw, true);
        v.set("EXT", &id.ext, false);
        for sf in ["SFID", "SFSID", "SFAPI"] {
            v.set(sf, "", false);
        }
        v.set("DATE-YYYY", &format!("{:04}", now.year()), false);
        v.set("DATE-MM", &format!("{:02}", now.month()), false);
        v.set("DATE-DD", &format!("{:02}", now.day()), false);
        v.set("DATE-HH", &format!("{:02}", now.hour()), false);
        v.set("DATE-II", &format!("{:02}", now.minute()), false);
        v.set("DATE-SS", &format!("{:02}", now.second()), false);
        for (k, val) in &params.extra {
            v.set(k, val, false);
        }
        v
    }

    pub fn set(&mut self, name: &str, value: &str, secret: bool) {
        self.map.insert(name.to_owned(), (value.to_owned(), secret));
    }

    /// Adds captured values.
    pub fn extend(&mut self, values: &BTreeMap<String, String>, secret: bool) {
        for (k, v) in values {
            self.set(k, v, secret);
        }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.map.get(name).map(|(v, _)| v.as_str())
    }
}

impl Lookup for Vars {
    fn lookup(&self, name: &str) -> Piece {
        match self.map.get(name) {
            // The server address is configuration that forms the URL's start.
            Some((v, secret)) if name == "SVADDR" => Piece {
                secret: *secret,
                ..Piece::structural(v.clone())
            },
            Some((v, secret)) => Piece::value(v.clone(), *secret),
            None => Piece::value(String::new(), false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cti::template::{Template, raw};

    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> NaiveDateTime {
        chrono::NaiveDate::from_ymd_opt(y, mo, d)
            .unwrap()
            .and_hms_opt(h, mi, s)
            .unwrap()
    }

    #[test]
    fn every_date_field_is_zero_padded() {
        let id = Identity::default();
        let p = CallParams::incoming("c", "1", "2");
        let v = Vars::new(&id, &p, at(2026, 3, 7, 8, 5, 9));
        let t = Template::parse(
            "{DATE-YYYY}-{DATE-MM}-{DATE-DD} {DATE-HH}:{DATE-II}:{DATE-SS}",
            &|_| true,
        )
        .unwrap();
        assert_eq!(raw(&t.pieces(&v), false), "2026-03-07 08:05:09");
    }

    #[test]
    fn salesforce_params_expand_empty_and_secrets_are_marked() {
        let id = Identity {
            aid: "a1".into(),
            apw: "pw".into(),
            ext: "201".into(),
            svaddr: "https://s/".into(),
        };
        let p = CallParams::incoming("c", "1", "2");
        let v = Vars::new(&id, &p, at(2026, 1, 1, 0, 0, 0));
        let t = Template::parse("[{SFID}{SFSID}{SFAPI}]{AID}/{APW}/{EXT}", &|_| true).unwrap();
        assert_eq!(raw(&t.pieces(&v), false), "[]a1/pw/201");
        assert_eq!(raw(&t.pieces(&v), true), "[]a1/***/201");
    }

    #[test]
    fn server_address_defaults_from_the_registrar_host() {
        assert_eq!(
            registrar_host("sip:pbx.example:5060;transport=tcp").as_deref(),
            Some("pbx.example")
        );
        assert_eq!(registrar_host("127.0.0.1:5070").as_deref(), Some("127.0.0.1"));
        assert_eq!(registrar_host("[::1]:5060").as_deref(), Some("[::1]"));
        assert_eq!(registrar_host(""), None);
    }
}
