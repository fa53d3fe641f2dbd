use super::*;

fn problems(text: &str) -> Vec<String> {
    let (_, p) = Config::parse_partial(text, Some(PathBuf::from("c.toml")));
    p.iter().map(|d| d.render("c.toml", text)).collect()
}

#[test]
fn the_example_file_loads() {
    let text = include_str!("../../config.example.toml");
    let config = Config::parse(text, Some(PathBuf::from("config.example.toml"))).expect("example is valid");
    assert_eq!(config.cti.target, Target::Custom);
    assert_eq!(
        config.cti.accesses.len(),
        ACCESS_NAMES.len(),
        "the example shows every access"
    );
    assert!(!config.media.symmetric_rtp);
    assert_eq!(config.media.rtp_timeout_seconds, 30);
}

#[test]
fn an_empty_file_means_the_documented_defaults() {
    let c = Config::parse("", None).unwrap();
    assert_eq!(c.cti.target, Target::None);
    assert_eq!(c.cti.session_keep_minutes, 30.0);
    assert_eq!(c.cti.timeout_seconds, 5.0);
    assert_eq!(c.cti.system_number, "9999");
    assert!(c.cti.internal_pattern.is_match("12345") && !c.cti.internal_pattern.is_match("123456"));
    assert_eq!(c.popup.size, PopupSize::Medium);
    assert_eq!(c.account.transport, Transport::Udp);
    assert!(!c.media.symmetric_rtp);
    assert_eq!(c.media.rtp_timeout(), Some(std::time::Duration::from_secs(30)));
    assert_eq!(c.recording.name, DEFAULT_RECORDING_NAME);
}

#[test]
fn every_problem_is_reported_with_line_and_column() {
    let text = "[account]\nusername = 5\nbogus = 1\ntransport = \"sctp\"\n[cti]\nsession_keep_minutes = \"x\"\n[zzz]\n";
    let p = problems(text);
    assert_eq!(p.len(), 5, "{p:#?}");
    assert_eq!(p[0], "c.toml:2:12: invalid type: integer `5`, expected a string");
    assert!(
        p[1].starts_with("c.toml:3:1: unknown field `bogus`, expected one of"),
        "{}",
        p[1]
    );
    assert!(
        p[2].starts_with("c.toml:4:13: unknown variant `sctp`, expected one of `udp`, `tcp`, `tls`"),
        "{}",
        p[2]
    );
    assert_eq!(p[3], "c.toml:6:24: invalid type: string \"x\", expected a number");
    assert_eq!(
        p[4],
        "c.toml:7:2: unknown section `zzz`, expected one of `account`, `agent`, `audio`, `blf`, `calls`, `cti`, `history`, `keys`, `media`, `phonebook`, `popup`, `recording`, `ui`"
    );
}

#[test]
fn form_listen_is_a_loopback_address_and_port() {
    assert_eq!(Config::parse("", None).unwrap().cti.form_listen, None);
    for (text, addr) in [
        ("127.0.0.1:8765", "127.0.0.1:8765"),
        ("127.1.2.3:0", "127.1.2.3:0"),
        ("[::1]:8765", "[::1]:8765"),
    ] {
        let c = Config::parse(&format!("[cti]\nform_listen = \"{text}\"\n"), None).unwrap();
        assert_eq!(c.cti.form_listen, Some(addr.parse().unwrap()));
    }
    let p = problems("[cti]\ntarget = \"custom\"\nform_listen = \"0.0.0.0:8765\"\n");
    assert_eq!(
        p,
        [
            "c.toml:3:15: `form_listen` must be a loopback address (127.0.0.0/8 or ::1), not 0.0.0.0: the form pages carry the agent's CRM values"
        ]
    );
    let p = problems("[cti]\nform_listen = \"[::]:1\"\n");
    assert!(
        p[0].starts_with("c.toml:2:15: `form_listen` must be a loopback address"),
        "{p:?}"
    );
    let p = problems("[cti]\nform_listen = \"localhost:8765\"\n");
    assert_eq!(
        p,
        [
            "c.toml:2:15: `form_listen` is not an address and port: `localhost:8765`, expected e.g. \"127.0.0.1:8765\" or \"[::1]:8765\""
        ]
    );
    let p = problems("[cti]\nform_listen = \"127.0.0.1\"\n");
    assert!(
        p[0].starts_with("c.toml:2:15: `form_listen` is not an address and port"),
        "{p:?}"
    );
    let p = problems("[cti]\nform_listen = 8765\n");
    assert!(
        p[0].starts_with("c.toml:2:15: invalid type: integer `8765`, expected a string"),
        "{p:?}"
    );
}

#[test]
fn bad_toml_is_located() {
    let p = problems("[cti]\ntarget = \n");
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(p[0].starts_with("c.toml:2:"), "{}", p[0]);
    assert!(p[0].contains("invalid TOML"), "{}", p[0]);
}

#[test]
fn access_keys_and_methods_are_checked() {
    let text = "[cti.search]\nmethod = \"browser_post\"\ntemplate = \"https://h/\"\nonly_if_answered = true\n\
                [cti.ring]\nmethod = \"fax\"\ntemplate = \"x\"\n";
    let p = problems(text);
    assert!(
        p.iter()
            .any(|l| l.starts_with("c.toml:2:10: method `browser_post` is not allowed for `[cti.search]`")),
        "{p:#?}"
    );
    assert!(
        p.iter()
            .any(|l| l.starts_with("c.toml:4:20: `only_if_answered` belongs to `[cti.hangup]`")),
        "{p:#?}"
    );
    assert!(
        p.iter()
            .any(|l| l.starts_with("c.toml:6:10: unknown variant `fax`")),
        "{p:#?}"
    );
}

#[test]
fn both_password_forms_are_refused() {
    let p = problems("[account]\npassword = \"a\"\npassword_command = \"pass x\"\n");
    assert_eq!(
        p,
        vec!["c.toml:3:20: `[account]` has both `password` and `password_command`, expected one of them"]
    );
}

#[test]
fn keepalive_seconds_defaults_to_25_and_is_checked() {
    assert_eq!(Config::default().account.keepalive_seconds, 25);
    let c = Config::parse("[account]\nkeepalive_seconds = 0\n", None).unwrap();
    assert_eq!(c.account.keepalive_seconds, 0);
    let c = Config::parse("[account]\nkeepalive_seconds = 3600\n", None).unwrap();
    assert_eq!(c.account.keepalive_seconds, 3600);
    assert_eq!(
        problems("[account]\nregistrar = \"pbx.example\"\nkeepalive_seconds = 3601\n"),
        vec!["c.toml:3:21: `[account] keepalive_seconds` is 3601, expected 0 (off) to 3600 seconds"]
    );
    let p = problems("[account]\nkeepalive_seconds = -1\n");
    assert_eq!(p.len(), 1, "{p:#?}");
    assert!(p[0].starts_with("c.toml:2:21: "), "{}", p[0]);
}

#[test]
fn stun_server_is_off_by_default_and_checked() {
    assert_eq!(Config::default().account.stun_server, "");
    let c = Config::parse("[account]\nstun_server = \"stun:192.0.2.1:3479\"\n", None).unwrap();
    assert_eq!(c.account.stun_server, "stun:192.0.2.1:3479");
    assert_eq!(
        problems("[account]\nregistrar = \"pbx.example\"\nstun_server = \"stun.example:0\"\n"),
        vec![
            "c.toml:3:15: `[account] stun_server` is `stun.example:0`: expected `host[:port]` or `stun:host[:port]`"
        ]
    );
}

#[test]
fn media_settings_are_checked() {
    let c = Config::parse("[media]\nsymmetric_rtp = true\nrtp_timeout_seconds = 0\n", None).unwrap();
    assert!(c.media.symmetric_rtp);
    assert_eq!(c.media.rtp_timeout(), None);
    let c = Config::parse("[media]\nrtp_timeout_seconds = 3600\n", None).unwrap();
    assert_eq!(c.media.rtp_timeout(), Some(std::time::Duration::from_secs(3600)));
    let p = problems("[media]\nsymmetric_rtp = \"yes\"\nrtp_timeout_seconds = -5\nlatch = true\n");
    assert_eq!(p.len(), 3, "{p:#?}");
    assert!(
        p[0].starts_with("c.toml:2:17: invalid type: string \"yes\", expected true or false"),
        "{}",
        p[0]
    );
    assert!(p[1].starts_with("c.toml:3:23: "), "{}", p[1]);
    assert!(
        p[2].starts_with(
            "c.toml:4:1: unknown field `latch`, expected one of `symmetric_rtp`, `rtp_timeout_seconds`, `srtp`, `srtp_over_udp`"
        ),
        "{}",
        p[2]
    );
    let text = "[media]\nsymmetric_rtp = false\nrtp_timeout_seconds = 86400\n";
    assert_eq!(
        problems(text),
        vec!["c.toml:3:23: `[media] rtp_timeout_seconds` is 86400, expected 0 (off) to 3600 seconds"]
    );
}

#[test]
fn srtp_settings_are_checked() {
    use crate::call::sdes::SrtpMode;
    let c = Config::parse(
        "[account]\ntransport = \"tls\"\n[media]\nsrtp = \"mandatory\"\n",
        None,
    )
    .unwrap();
    assert_eq!(
        (c.media.srtp, c.media.srtp_over_udp),
        (SrtpMode::Mandatory, false)
    );
    let c = Config::parse("[media]\nsrtp = \"optional\"\n", None).unwrap();
    assert_eq!(c.media.srtp, SrtpMode::Optional);
    let c = Config::parse("[media]\nsrtp = \"mandatory\"\nsrtp_over_udp = true\n", None).unwrap();
    assert!(c.media.srtp_over_udp);
    // Mandatory SRTP with its keys in clear signalling: refused where it is written.
    assert_eq!(
        problems("[account]\ntransport = \"tcp\"\n[media]\nsrtp = \"mandatory\"\n"),
        vec![
            "c.toml:4:8: `[media] srtp = \"mandatory\"` with `[account] transport = \"tcp\"`: the keys travel in the SDP, expected transport = \"tls\" (or `[media] srtp_over_udp = true` to send them in clear)"
        ]
    );
    let p = problems("[media]\nsrtp = \"always\"\n");
    assert!(
        p[0].starts_with(
            "c.toml:2:8: unknown variant `always`, expected one of `off`, `optional`, `mandatory`"
        ),
        "{p:?}"
    );
}

#[test]
fn phonebook_settings_are_checked() {
    let text = "[phonebook]\nshared = \"ftp://x/book.csv\"\ncountry_code = \"+81\"\nrefresh_minutes = -1\n";
    let p = problems(text);
    assert!(p.iter().any(|m| m.starts_with("c.toml:4:19:")), "{p:?}");
    let text = "[phonebook]\nshared = \"ftp://x/book.csv\"\ncountry_code = \"+81\"\n";
    let p = problems(text);
    assert_eq!(
        p,
        vec![
            "c.toml:1:1: `[phonebook] country_code` is `+81`, expected up to 4 digits".to_owned(),
            "c.toml:1:1: `[phonebook] shared` has the scheme `ftp`, expected a file path or an https:// URL"
                .to_owned(),
        ]
    );
    let ok = Config::parse(
        "[phonebook]\nshared = \"https://crm.example/book.vcf\"\ncountry_code = \"81\"\n",
        None,
    )
    .unwrap();
    assert_eq!(ok.phonebook.refresh_minutes, 60);
}

#[test]
fn agent_status_keys_are_checked() {
    let text = "[account]\nuri = \"sip:1@h\"\n[agent]\nafter_call_seconds = 7200\n\
                not_ready_reasons = [\"Break\", \"Break\", \"\"]\nwrapup_codes = [\"a\\u0007b\"]\n\
                ready_code = \"*4a\"\nnot_ready_code = \"*46\"\n";
    let p = problems(text);
    let want = [
        "c.toml:4:22: `[agent] after_call_seconds` is 7200, expected 0 (none) to 3600",
        "c.toml:5:21: `[agent] not_ready_reasons` has `Break` twice",
        "c.toml:5:21: `[agent] not_ready_reasons` entry 3 is \"\", expected a name of 1 to 64 printable characters",
        "c.toml:6:16: `[agent] wrapup_codes` entry 1 is \"a\\u{7}b\", expected a name of 1 to 64 printable characters",
        "c.toml:7:14: `[agent] ready_code` is `*4a`, expected a feature code of digits, * and # (e.g. \"*45\")",
    ];
    assert_eq!(p.len(), want.len(), "{p:#?}");
    for w in want {
        assert!(p.iter().any(|l| l == w), "{w} not in {p:#?}");
    }
    // Good values load.
    let ok = "[agent]\nafter_call_seconds = 30\nnot_ready_reasons = [\"Break\"]\nready_code = \"*45#\"\n";
    assert!(problems(ok).is_empty(), "{:?}", problems(ok));
}

#[test]
fn the_pulse_server_is_checked_where_it_is_written() {
    let c = Config::parse("[audio]\npulse_server = \"tcp:127.0.0.1:4713\"\n", None).unwrap();
    assert_eq!(c.audio.pulse_server, "tcp:127.0.0.1:4713");
    assert_eq!(Config::parse("", None).unwrap().audio.pulse_server, "");
    let p = problems("[audio]\nring = true\npulse_server = \"tcp:host:0\"\n");
    assert_eq!(p.len(), 1, "{p:#?}");
    assert!(
        p[0].starts_with("c.toml:3:16: `[audio] pulse_server`: `tcp:host:0`: the port"),
        "{}",
        p[0]
    );
    let p = problems("[audio]\npulse_server = \"tcp:a\\u001b[2J\"\n");
    assert_eq!(p.len(), 1, "{p:#?}");
    assert!(
        p[0].starts_with("c.toml:2:16: ") && p[0].contains("control character"),
        "{}",
        p[0]
    );
    assert!(!p[0].contains('\u{1b}'), "no raw escape in the message: {}", p[0]);
}
