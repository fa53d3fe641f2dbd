//! Phonebook files: CSV (with or without a header row; English or Japanese column names)
//! and vCard 2.1 / 3.0 / 4.0 (every TEL of a card is one entry), read and written. What is
//! read is untrusted: bounded, and a bad row is skipped and counted, never fatal.

use vcard::prop::VcardProp;
use vcard::tree::cst::VcardCst;
use vcard::vcard::Vcard;
use vcard::version::VcardVersion;

/// One name for one number, as read from or written to a file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub number: String,
    pub company: String,
}

/// What a file held: the entries, and how many rows or cards were skipped.
#[derive(Debug, Default)]
pub struct Parsed {
    pub entries: Vec<Entry>,
    pub skipped: usize,
}

/// The most entries one file may give (a shared phonebook of a large company fits).
pub const MAX_ENTRIES: usize = 1_000_000;
/// The longest name, number or company kept, in characters.
const MAX_FIELD: usize = 256;

fn field(s: &str) -> String {
    s.trim().chars().take(MAX_FIELD).collect()
}

/// Reads CSV or vCard text, told apart by the content (a vCard file starts with
/// `BEGIN:VCARD`).
pub fn parse(bytes: &[u8]) -> Result<Parsed, String> {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim_start_matches('\u{feff}');
    if text
        .trim_start()
        .get(..11)
        .is_some_and(|h| h.eq_ignore_ascii_case("BEGIN:VCARD"))
    {
        parse_vcard(text)
    } else {
        parse_csv(text)
    }
}

#[derive(Clone, Copy)]
enum Col {
    Name,
    Number,
    Company,
}

fn column(header: &str) -> Option<Col> {
    let h = header.trim().to_lowercase();
    match h.as_str() {
        "name" | "display name" | "full name" | "fn" | "名前" | "氏名" | "表示名" => Some(Col::Name),
        "number" | "tel" | "phone" | "telephone" | "phone number" | "電話番号" | "番号" => {
            Some(Col::Number)
        }
        "company" | "org" | "organization" | "organisation" | "会社" | "会社名" => Some(Col::Company),
        _ => None,
    }
}

/// CSV: a header row naming the columns (`name`, `number`, `company`, or their usual
/// synonyms), else the columns name, number, company in that order.
pub fn parse_csv(text: &str) -> Result<Parsed, String> {
    let mut rd = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_bytes());
    let mut out = Parsed::default();
    let mut cols: Vec<Option<Col>> = vec![Some(Col::Name), Some(Col::Number), Some(Col::Company)];
    for (i, rec) in rd.records().enumerate() {
        let Ok(rec) = rec else {
            out.skipped += 1;
            continue;
        };
        if i == 0 {
            let named: Vec<Option<Col>> = rec.iter().map(column).collect();
            if named.iter().any(|c| matches!(c, Some(Col::Number))) {
                cols = named;
                continue;
            }
        }
        let mut e = Entry::default();
        for (c, v) in cols.iter().zip(rec.iter()) {
            // Our own export's defused cells ('=…, '+81…) read back as written.
            let v = match v.strip_prefix('\'') {
                Some(rest) if rest.starts_with(['=', '+', '-', '@', '\t', '\r']) => rest,
                _ => v,
            };
            match c {
                Some(Col::Name) => e.name = field(v),
                Some(Col::Number) => e.number = field(v),
                Some(Col::Company) => e.company = field(v),
                None => {}
            }
        }
        if e.number.is_empty() || e.name.is_empty() && e.company.is_empty() {
            out.skipped += 1;
            continue;
        }
        if out.entries.len() >= MAX_ENTRIES {
            return Err(format!("more than {MAX_ENTRIES} entries"));
        }
        out.entries.push(e);
    }
    Ok(out)
}

/// vCard: FN (else N) as the name, the first part of ORG as the company, one entry per TEL.
pub fn parse_vcard(text: &str) -> Result<Parsed, String> {
    let mut out = Parsed::default();
    for card in VcardCst::parse_many(text) {
        let card = match card {
            Ok(c) => c,
            Err(e) => {
                // A malformed card leaves no boundary to go on from: keep what was read.
                if out.entries.is_empty() {
                    return Err(format!("not a vCard file: {e}"));
                }
                out.skipped += 1;
                break;
            }
        };
        let mut name = String::new();
        let mut structured = String::new();
        let mut company = String::new();
        let mut tels = Vec::new();
        for line in &card.props {
            let n = line.name.get();
            if n.eq_ignore_ascii_case("FN") {
                name = field(&line.value.decode());
            } else if n.eq_ignore_ascii_case("N") {
                // Family;Given;Additional;Prefix;Suffix → "Family Given".
                let parts: Vec<String> = (0..2)
                    .map(|i| line.value.decode_component(i).trim().to_owned())
                    .filter(|p| !p.is_empty())
                    .collect();
                structured = field(&parts.join(" "));
            } else if n.eq_ignore_ascii_case("ORG") {
                company = field(&line.value.decode_component(0));
            } else if n.eq_ignore_ascii_case("TEL") {
                tels.push(field(&line.value.decode()));
            }
        }
        if name.is_empty() {
            name = structured;
        }
        if tels.is_empty() || name.is_empty() && company.is_empty() {
            out.skipped += 1;
            continue;
        }
        for number in tels.into_iter().filter(|t| !t.is_empty()) {
            if out.entries.len() >= MAX_ENTRIES {
                return Err(format!("more than {MAX_ENTRIES} entries"));
            }
            out.entries.push(Entry {
                name: name.clone(),
                number,
                company: company.clone(),
            });
        }
    }
    Ok(out)
}

/// Writes CSV with a header row. Cells that a spreadsheet would run as a formula get a
/// leading `'` (a number's own `+` too: `'+81…` reads back as the same number).
pub fn write_csv(entries: &[Entry], out: impl std::io::Write) -> Result<(), String> {
    let mut w = csv::Writer::from_writer(out);
    w.write_record(["name", "number", "company"])
        .map_err(|e| e.to_string())?;
    for e in entries {
        w.write_record([
            crate::history::defuse(&e.name),
            crate::history::defuse(&e.number),
            crate::history::defuse(&e.company),
        ])
        .map_err(|e| e.to_string())?;
    }
    w.flush().map_err(|e| e.to_string())
}

/// Writes vCard 3.0, one card per entry.
pub fn write_vcard(entries: &[Entry], mut out: impl std::io::Write) -> Result<(), String> {
    for e in entries {
        let mut props = vec![
            VcardProp::text("FN", vec![], e.name.as_str()),
            VcardProp::text("TEL", vec![], e.number.as_str()),
        ];
        if !e.company.is_empty() {
            props.push(VcardProp::text("ORG", vec![], e.company.as_str()));
        }
        let card = Vcard {
            version: VcardVersion::V3_0,
            properties: props,
        };
        write!(out, "{card}").map_err(|e| e.to_string())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_with_a_header_in_any_order_and_without_one() {
        let p = parse("\u{feff}会社名,電話番号,氏名\nACME,03-1234-5678,山田 太郎\n,,\n".as_bytes()).unwrap();
        assert_eq!(
            p.entries,
            vec![Entry {
                name: "山田 太郎".into(),
                number: "03-1234-5678".into(),
                company: "ACME".into()
            }]
        );
        assert_eq!(p.skipped, 1);
        let p = parse(b"Alice,+1 555 0100\nBob,1002,Example Inc.\n").unwrap();
        assert_eq!(p.entries.len(), 2);
        assert_eq!(p.entries[1].company, "Example Inc.");
    }

    #[test]
    fn vcards_of_every_version_one_entry_per_number() {
        let text = concat!(
            "BEGIN:VCARD\r\nVERSION:2.1\r\nN:Doe;John;;;\r\nTEL;WORK;VOICE:+81 3-1111-2222\r\nTEL;CELL:090-1111-2222\r\nEND:VCARD\r\n",
            "BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Jane Roe\r\nORG:Example Inc.;Sales\r\nTEL;TYPE=WORK:1002\r\nEND:VCARD\r\n",
            "BEGIN:VCARD\r\nVERSION:4.0\r\nFN:No Number\r\nEND:VCARD\r\n",
            "BEGIN:VCARD\r\nVERSION:4.0\r\nFN:Uri\r\nTEL;VALUE=uri:tel:+1-555-0100\r\nEND:VCARD\r\n",
        );
        let p = parse(text.as_bytes()).unwrap();
        let got: Vec<(&str, &str, &str)> = p
            .entries
            .iter()
            .map(|e| (e.name.as_str(), e.number.as_str(), e.company.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("Doe John", "+81 3-1111-2222", ""),
                ("Doe John", "090-1111-2222", ""),
                ("Jane Roe", "1002", "Example Inc."),
                ("Uri", "tel:+1-555-0100", ""),
            ]
        );
        assert_eq!(p.skipped, 1);
    }

    #[test]
    fn written_files_read_back_the_same() {
        let entries = vec![
            Entry {
                name: "Smith, \"Al\"; Jr.\\".into(),
                number: "+81 3-1234-5678".into(),
                company: "=cmd|' /C calc'!A0".into(),
            },
            Entry {
                name: "山田 太郎".into(),
                number: "1001".into(),
                company: String::new(),
            },
        ];
        let mut v = Vec::new();
        write_vcard(&entries, &mut v).unwrap();
        assert_eq!(parse(&v).unwrap().entries, entries);
        let mut c = Vec::new();
        write_csv(&entries, &mut c).unwrap();
        let text = String::from_utf8(c).unwrap();
        assert!(text.contains("'=cmd"), "{text}");
        let back = parse(text.as_bytes()).unwrap().entries;
        assert_eq!(back[1], entries[1]);
        assert_eq!(back[0].name, entries[0].name);
    }

    #[test]
    fn garbage_is_an_error_or_nothing_never_a_panic() {
        assert!(
            parse(b"BEGIN:VCARD\r\nFN:x\r\n").is_err()
                || parse(b"BEGIN:VCARD\r\nFN:x\r\n").unwrap().entries.is_empty()
        );
        assert!(parse(&[0xff, 0xfe, 0, 1, 2]).unwrap().entries.is_empty());
        assert!(parse(b"").unwrap().entries.is_empty());
    }
}
