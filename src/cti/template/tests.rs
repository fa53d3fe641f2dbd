use std::collections::HashMap;

use super::*;

struct Map(HashMap<&'static str, (&'static str, bool)>);

impl Lookup for Map {
    fn lookup(&self, name: &str) -> Piece {
        match self.0.get(name) {
            Some((v, secret)) if name == "SVADDR" => Piece {
                secret: *secret,
                ..Piece::structural(*v)
            },
            Some((v, secret)) => Piece::value(*v, *secret),
            None => Piece::value("", false),
        }
    }
}

fn vars() -> Map {
    Map(HashMap::from([
        ("TEL", ("+81 3-1234&x=1", false)),
        ("AID", ("agent7", false)),
        ("APW", ("s3cret", true)),
        ("SVADDR", ("https://crm.example:8000/", false)),
        ("DATE-YYYY", ("2026", false)),
        ("DATE-MM", ("11", false)),
        ("DATE-DD", ("25", false)),
    ]))
}

fn any(_: &str) -> bool {
    true
}

fn parse(s: &str) -> Template {
    Template::parse(s, &any).expect("valid template")
}

fn errs(s: &str) -> Vec<TemplateError> {
    Template::parse(s, &|n: &str| n != "NOPE").expect_err("invalid template")
}

#[test]
fn hash_check_values_from_the_spec() {
    let v = vars();
    assert_eq!(
        raw(&parse("SHA256(abc)").pieces(&v), false),
        "BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD"
    );
    assert_eq!(
        raw(&parse("MD5(abc)").pieces(&v), false),
        "900150983CD24FB0D6963F7D28E17F72"
    );
    assert_eq!(
        raw(&parse("LOWERCASE(AbC)UPPERCASE(dEf)").pieces(&v), false),
        "abcDEF"
    );
}

#[test]
fn functions_nest_and_mix_parameters_and_literals() {
    let v = vars();
    let t = parse("MD5(UPPERCASE({AID}){DATE-YYYY}{DATE-MM}{DATE-DD})");
    let expect = upper_hex(&Md5::digest(b"AGENT720261125"));
    assert_eq!(raw(&t.pieces(&v), false), expect);
    let t = parse("x=LOWERCASE(SHA256(a(b)c))");
    assert_eq!(
        raw(&t.pieces(&v), false),
        format!("x={}", upper_hex(&Sha256::digest(b"a(b)c")).to_lowercase())
    );
}

#[test]
fn the_google_example_encodes_the_number_as_one_query_value() {
    let v = vars();
    let t = parse("https://www.google.com/search?q={TEL}");
    assert_eq!(
        url(&t.pieces(&v), false).unwrap(),
        "https://www.google.com/search?q=%2B81%203-1234%26x%3D1"
    );
}

#[test]
fn path_values_cannot_add_segments_or_climb() {
    let v = Map(HashMap::from([
        ("TEL", ("../admin", false)),
        ("X", ("..", false)),
        ("D", (".", false)),
    ]));
    let t = parse("https://h/c/{TEL}/x");
    assert_eq!(url(&t.pieces(&v), false).unwrap(), "https://h/c/..%2Fadmin/x");
    assert!(url(&parse("https://h/c/{X}/x").pieces(&v), false).is_err());
    assert!(url(&parse("https://h/c/{D}").pieces(&v), false).is_err());
    // `..` inside a query value is harmless.
    assert_eq!(
        url(&parse("https://h/c?q={X}").pieces(&v), false).unwrap(),
        "https://h/c?q=.."
    );
}

#[test]
fn structural_server_address_is_not_encoded() {
    let v = vars();
    let t = parse("{SVADDR}api/search?tel={TEL}");
    assert_eq!(
        url(&t.pieces(&v), false).unwrap(),
        "https://crm.example:8000/api/search?tel=%2B81%203-1234%26x%3D1"
    );
}

#[test]
fn secrets_are_masked_and_hashes_of_secrets_too() {
    let v = vars();
    let t = parse("https://h/login?id={AID}&pw={APW}&sig=MD5({APW})");
    assert_eq!(
        url(&t.pieces(&v), true).unwrap(),
        "https://h/login?id=agent7&pw=***&sig=***"
    );
    assert!(url(&t.pieces(&v), false).unwrap().contains("pw=s3cret"));
    assert_eq!(
        raw(&t.pieces(&v), true),
        "https://h/login?id=agent7&pw=***&sig=***"
    );
}

#[test]
fn post_query_becomes_a_form_body() {
    let v = vars();
    let t = parse("https://h/search?tel={TEL}&who=a b#frag");
    let (before, after) = split_query(&t.pieces(&v));
    assert_eq!(url(&before, false).unwrap(), "https://h/search");
    assert_eq!(form_body(&after, false), "tel=%2B81+3-1234%26x%3D1&who=a b");
}

#[test]
fn literal_braces_are_doubled() {
    let v = vars();
    let t = parse("{{\"aid\":\"{AID}\"}}");
    assert_eq!(raw(&t.pieces(&v), false), "{\"aid\":\"agent7\"}");
}

#[test]
fn errors_are_located() {
    let e = errs("https://h/?q={TEL");
    assert_eq!(e[0].offset, 13);
    assert!(e[0].message.contains("unbalanced `{`"), "{e:?}");
    let e = errs("MD5({TEL}");
    assert_eq!(e[0].offset, 3);
    assert!(e[0].message.contains("MD5("), "{e:?}");
    let e = errs("a)b");
    assert_eq!(e[0].offset, 1);
    let e = errs("x={NOPE}&y=FOO(1)");
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(e[0].message.contains("unknown parameter `{NOPE}` at position 3"));
    assert!(e[1].message.contains("unknown function `FOO`"));
    let e = errs("a}b");
    assert!(e[0].message.contains("unbalanced `}`"));
    let e = errs("{bad name}");
    assert!(e[0].message.contains("invalid parameter name"));
}

#[test]
fn lower_case_words_before_parentheses_are_literal() {
    let v = vars();
    let t = parse("https://en.wikipedia.org/wiki/Foo_(bar)?q=Md5(x)");
    assert_eq!(
        raw(&t.pieces(&v), false),
        "https://en.wikipedia.org/wiki/Foo_(bar)?q=Md5(x)"
    );
}

#[test]
fn params_lists_every_parameter_used() {
    let t = parse("{TEL}MD5({AID}UPPERCASE({EXT}))");
    assert_eq!(t.params(), vec!["TEL", "AID", "EXT"]);
}
