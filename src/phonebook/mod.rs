//! The phonebook (PAR-2, PAR-4): names for numbers, for {TELNAME} and {CALLEDNAME}, the
//! popup and the call list. A local phonebook lives in the history database (added, edited
//! and deleted from the TUI or `ctiphone phonebook`); a shared one is a CSV or vCard file
//! (a path or an https URL) fetched every `refresh_minutes` and kept in a cached copy, so
//! names still resolve when its server is down. Numbers match after normalisation
//! ([`number`]); the local entry wins over the shared one.

pub mod cli;
pub mod formats;
pub mod number;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use sha2::Digest;

pub use formats::Entry;
pub use number::Numbering;

use crate::app::{Bus, Event, PhoneEvent};
use crate::config::PhonebookConfig;

/// The largest shared phonebook fetched or read.
const MAX_SHARED_BYTES: usize = 64 * 1024 * 1024;
/// How long a fetch of the shared phonebook may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(30);

/// Where a name came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    Local,
    Shared,
}

/// A phonebook entry as listed or found.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Contact {
    /// The local entry's id; `None` for a shared entry.
    pub id: Option<i64>,
    pub name: String,
    pub number: String,
    pub company: String,
    pub origin: Origin,
}

#[derive(Default)]
struct Shared {
    entries: Vec<Entry>,
    /// Normalised number → index of its first entry.
    by_number: HashMap<String, usize>,
}

/// The phonebook: local entries in SQLite, the shared copy in memory.
pub struct Phonebook {
    db: Mutex<Connection>,
    numbering: Numbering,
    shared: RwLock<Shared>,
    source: String,
    cache: PathBuf,
    refresh: Option<Duration>,
}

impl std::fmt::Debug for Phonebook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Phonebook")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

/// A shared entry as listed or found.
fn shared_contact(e: &Entry) -> Contact {
    Contact {
        id: None,
        name: e.name.clone(),
        number: e.number.clone(),
        company: e.company.clone(),
        origin: Origin::Shared,
    }
}

/// The local entry for a normalized number (a database error is logged, and no entry).
fn local(db: &Connection, norm: &str) -> Option<Contact> {
    db.query_row(
        "SELECT id, name, number, company FROM contacts WHERE norm = ?1 ORDER BY id LIMIT 1",
        [norm],
        local_contact,
    )
    .optional()
    .unwrap_or_else(|e| {
        tracing::warn!("phonebook: {e}");
        None
    })
}

/// The shared phonebook's entry for a normalized number.
fn shared_entry(shared: &Shared, norm: &str) -> Option<Contact> {
    let e = shared.entries.get(*shared.by_number.get(norm)?)?;
    Some(shared_contact(e))
}

/// The name a contact gives a call: its name, else its company; none when both are empty.
fn display_name(c: Contact) -> Option<String> {
    Some(if c.name.is_empty() { c.company } else { c.name }).filter(|n| !n.is_empty())
}

/// A local entry from a `SELECT id, name, number, company` row.
fn local_contact(r: &rusqlite::Row<'_>) -> rusqlite::Result<Contact> {
    Ok(Contact {
        id: Some(r.get(0)?),
        name: r.get(1)?,
        number: r.get(2)?,
        company: r.get(3)?,
        origin: Origin::Local,
    })
}

fn db_err(e: rusqlite::Error) -> String {
    e.to_string()
}

impl Phonebook {
    /// Opens the phonebook in the history database at `db_path`, with the shared copy cached
    /// beside it. Numbers are normalised again when the numbering plan changed.
    pub fn open(db_path: &Path, cfg: &PhonebookConfig) -> Result<Arc<Phonebook>, String> {
        let db = crate::history::open_db(db_path)?;
        let numbering = Numbering::from_config(cfg);
        let plan = format!(
            "{}|{}|{}",
            numbering.country_code, numbering.international_prefix, numbering.trunk_prefix
        );
        let stored: Option<String> = db
            .query_row("SELECT value FROM meta WHERE key = 'numbering'", [], |r| r.get(0))
            .optional()
            .map_err(db_err)?;
        if stored.as_deref() != Some(plan.as_str()) {
            renormalize(&db, &numbering).map_err(db_err)?;
            db.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('numbering', ?1)",
                [&plan],
            )
            .map_err(db_err)?;
        }
        let source = cfg.shared.trim().to_owned();
        let digest = sha2::Sha256::digest(source.as_bytes());
        let cache = db_path.with_file_name(format!(
            "phonebook-shared-{}.cache",
            crate::cti::template::upper_hex(&digest[..8]).to_lowercase()
        ));
        let pb = Phonebook {
            db: Mutex::new(db),
            numbering,
            shared: RwLock::new(Shared::default()),
            source,
            cache,
            refresh: (cfg.refresh_minutes > 0)
                .then(|| Duration::from_secs(u64::from(cfg.refresh_minutes) * 60)),
        };
        if !pb.source.is_empty() {
            // The last good copy, until the source answers.
            if let Ok(bytes) = std::fs::read(&pb.cache)
                && let Ok(p) = formats::parse(&bytes)
            {
                pb.set_shared(p.entries);
            }
        }
        Ok(Arc::new(pb))
    }

    /// Opens the phonebook of the default data directory.
    pub fn open_default(cfg: &PhonebookConfig) -> Result<Arc<Phonebook>, String> {
        Self::open(&crate::history::default_path(), cfg)
    }

    fn db(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave the connection half-changed (SQLite
        // statements are atomic): go on with it.
        self.db.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The number as matched.
    pub fn normalize(&self, number: &str) -> String {
        self.numbering.normalize(number)
    }

    /// The entry for a number: the local one, else the shared one.
    pub fn lookup(&self, number: &str) -> Option<Contact> {
        let norm = self.normalize(number);
        if norm.is_empty() {
            return None;
        }
        local(&self.db(), &norm)
            .or_else(|| shared_entry(&self.shared.read().unwrap_or_else(|p| p.into_inner()), &norm))
    }

    /// The name for a number ({TELNAME}, {CALLEDNAME}), if the phonebook has one.
    pub fn name_for(&self, number: &str) -> Option<String> {
        self.lookup(number).and_then(display_name)
    }

    /// [`Phonebook::name_for`] if nothing else holds the phonebook (an edit, an import, a
    /// refresh, another lookup): `None` then, and nothing waited for. A read of the database
    /// in WAL mode does not wait for the history's writer either.
    pub fn try_name_for(&self, number: &str) -> Option<Option<String>> {
        let norm = self.normalize(number);
        if norm.is_empty() {
            return Some(None);
        }
        let found = {
            let db = match self.db.try_lock() {
                Ok(db) => db,
                Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
                Err(std::sync::TryLockError::WouldBlock) => return None,
            };
            local(&db, &norm)
        };
        let found = match found {
            Some(c) => Some(c),
            None => match self.shared.try_read() {
                Ok(s) => shared_entry(&s, &norm),
                Err(std::sync::TryLockError::Poisoned(p)) => shared_entry(&p.into_inner(), &norm),
                Err(std::sync::TryLockError::WouldBlock) => return None,
            },
        };
        Some(found.and_then(display_name))
    }

    /// Adds a local entry; returns its id.
    pub fn add(&self, e: &Entry) -> Result<i64, String> {
        check(e)?;
        let db = self.db();
        db.execute(
            "INSERT INTO contacts (name, number, norm, company) VALUES (?1, ?2, ?3, ?4)",
            params![
                e.name.trim(),
                e.number.trim(),
                self.normalize(&e.number),
                e.company.trim()
            ],
        )
        .map_err(db_err)?;
        Ok(db.last_insert_rowid())
    }

    /// Changes a local entry.
    pub fn update(&self, id: i64, e: &Entry) -> Result<(), String> {
        check(e)?;
        let n = self
            .db()
            .execute(
                "UPDATE contacts SET name = ?2, number = ?3, norm = ?4, company = ?5 WHERE id = ?1",
                params![
                    id,
                    e.name.trim(),
                    e.number.trim(),
                    self.normalize(&e.number),
                    e.company.trim()
                ],
            )
            .map_err(db_err)?;
        if n == 0 {
            return Err(format!("no local contact {id}"));
        }
        Ok(())
    }

    /// Deletes a local entry; false when there was none.
    pub fn delete(&self, id: i64) -> Result<bool, String> {
        self.db()
            .execute("DELETE FROM contacts WHERE id = ?1", [id])
            .map(|n| n > 0)
            .map_err(db_err)
    }

    /// Adds every entry of a CSV or vCard file's bytes; returns (added, skipped).
    pub fn import(&self, bytes: &[u8]) -> Result<(usize, usize), String> {
        let parsed = formats::parse(bytes)?;
        let mut db = self.db();
        let tx = db.transaction().map_err(db_err)?;
        let mut added = 0;
        let mut skipped = parsed.skipped;
        {
            let mut ins = tx
                .prepare("INSERT INTO contacts (name, number, norm, company) VALUES (?1, ?2, ?3, ?4)")
                .map_err(db_err)?;
            for e in &parsed.entries {
                if check(e).is_err() {
                    skipped += 1;
                    continue;
                }
                ins.execute(params![e.name, e.number, self.normalize(&e.number), e.company])
                    .map_err(db_err)?;
                added += 1;
            }
        }
        tx.commit().map_err(db_err)?;
        Ok((added, skipped))
    }

    /// Every local entry, by name.
    pub fn local_entries(&self) -> Result<Vec<Entry>, String> {
        Ok(self
            .search_local("", usize::MAX)?
            .into_iter()
            .map(|c| Entry {
                name: c.name,
                number: c.number,
                company: c.company,
            })
            .collect())
    }

    pub(crate) fn search_local(&self, query: &str, limit: usize) -> Result<Vec<Contact>, String> {
        let q = query.trim();
        let norm = self.normalize(q);
        let like = format!("%{}%", escape_like(&q.to_lowercase()));
        let nlike = format!("{}%", escape_like(&norm));
        let db = self.db();
        let mut st = db
            .prepare_cached(
                "SELECT id, name, number, company FROM contacts
                 WHERE ?1 = '' OR lower(name) LIKE ?2 ESCAPE '\\' OR lower(company) LIKE ?2 ESCAPE '\\'
                       OR (?3 != '' AND norm LIKE ?3 ESCAPE '\\')
                 ORDER BY name COLLATE NOCASE, id LIMIT ?4",
            )
            .map_err(db_err)?;
        let rows = st
            .query_map(
                params![
                    q,
                    like,
                    if norm.is_empty() { String::new() } else { nlike },
                    i64::try_from(limit).unwrap_or(i64::MAX)
                ],
                local_contact,
            )
            .map_err(db_err)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(db_err)
    }

    /// Entries whose name or company contains `query` (any case), or whose number starts
    /// with it (normalised): local ones first, then shared ones, at most `limit`.
    pub fn search(&self, query: &str, limit: usize) -> Result<Vec<Contact>, String> {
        let mut out = self.search_local(query, limit)?;
        let q = query.trim().to_lowercase();
        let norm = self.normalize(query);
        let shared = self.shared.read().unwrap_or_else(|p| p.into_inner());
        for e in &shared.entries {
            if out.len() >= limit {
                break;
            }
            let hit = q.is_empty()
                || e.name.to_lowercase().contains(&q)
                || e.company.to_lowercase().contains(&q)
                || (!norm.is_empty() && self.normalize(&e.number).starts_with(&norm));
            if hit {
                out.push(shared_contact(e));
            }
        }
        Ok(out)
    }

    fn set_shared(&self, entries: Vec<Entry>) -> usize {
        let mut by_number = HashMap::with_capacity(entries.len());
        for (i, e) in entries.iter().enumerate() {
            by_number.entry(self.normalize(&e.number)).or_insert(i);
        }
        let n = entries.len();
        *self.shared.write().unwrap_or_else(|p| p.into_inner()) = Shared { entries, by_number };
        n
    }

    /// How many shared entries are held now.
    pub fn shared_len(&self) -> usize {
        self.shared
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .entries
            .len()
    }

    /// Fetches the shared phonebook again. On success it replaces the copy in memory and the
    /// cached file; on failure the last copy stays. Returns the number of entries.
    pub async fn refresh(&self) -> Result<usize, String> {
        if self.source.is_empty() {
            return Ok(0);
        }
        let bytes = fetch(&self.source).await?;
        let parsed = formats::parse(&bytes)?;
        if parsed.entries.is_empty() && !bytes.is_empty() {
            return Err("no entries in it (a name and a number per row or card)".into());
        }
        // Write the copy atomically: a crash mid-write never leaves half a phonebook.
        let tmp = self.cache.with_extension("part");
        if let Err(e) = crate::private::write(&tmp, &bytes).and_then(|()| std::fs::rename(&tmp, &self.cache))
        {
            tracing::warn!(
                "shared phonebook: cannot keep a copy in {}: {e}",
                self.cache.display()
            );
        }
        Ok(self.set_shared(parsed.entries))
    }

    /// Fetches the shared phonebook now and then every `refresh_minutes`; each failure is a
    /// warning on the bus, and the last copy stays in use.
    pub fn spawn_refresh(self: &Arc<Self>, bus: Bus) -> Option<tokio::task::JoinHandle<()>> {
        if self.source.is_empty() {
            return None;
        }
        let pb = Arc::clone(self);
        Some(tokio::spawn(async move {
            loop {
                match pb.refresh().await {
                    Ok(n) => tracing::info!("shared phonebook: {n} entries"),
                    Err(e) => {
                        let kept = pb.shared_len();
                        bus.publish(Event::Phone(PhoneEvent::Warning {
                            message: format!("shared phonebook: {e}; using the last copy ({kept} entries)"),
                        }));
                    }
                }
                let Some(every) = pb.refresh else { break };
                tokio::time::sleep(every).await;
            }
        }))
    }
}

/// A local entry needs a number and a name or company, each a single line.
fn check(e: &Entry) -> Result<(), String> {
    if e.number.trim().is_empty() {
        return Err("a contact needs a number".into());
    }
    if e.name.trim().is_empty() && e.company.trim().is_empty() {
        return Err("a contact needs a name or a company".into());
    }
    for (what, v) in [("name", &e.name), ("number", &e.number), ("company", &e.company)] {
        if v.chars().count() > 256 {
            return Err(format!("the {what} is longer than 256 characters"));
        }
        if v.contains('\0') {
            return Err(format!("the {what} holds a NUL byte"));
        }
    }
    Ok(())
}

fn escape_like(s: &str) -> String {
    s.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")
}

fn renormalize(db: &Connection, numbering: &Numbering) -> rusqlite::Result<()> {
    let rows: Vec<(i64, String)> = db
        .prepare("SELECT id, number FROM contacts")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    let tx = db.unchecked_transaction()?;
    for (id, number) in rows {
        tx.execute(
            "UPDATE contacts SET norm = ?2 WHERE id = ?1",
            params![id, numbering.normalize(&number)],
        )?;
    }
    tx.commit()
}

/// The bytes of a shared phonebook: a file, or an http(s) URL.
async fn fetch(source: &str) -> Result<Vec<u8>, String> {
    let is_url = source
        .split_once("://")
        .is_some_and(|(s, _)| s.eq_ignore_ascii_case("http") || s.eq_ignore_ascii_case("https"));
    if !is_url {
        let path = source.strip_prefix("file://").unwrap_or(source);
        let meta = tokio::fs::metadata(path)
            .await
            .map_err(|e| format!("{path}: {e}"))?;
        if meta.len() > MAX_SHARED_BYTES as u64 {
            return Err(format!("{path}: larger than {} MiB", MAX_SHARED_BYTES >> 20));
        }
        return tokio::fs::read(path).await.map_err(|e| format!("{path}: {e}"));
    }
    let client = crate::http_client::builder()
        .user_agent(concat!("ctiphone/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::limited(5))
        .connect_timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| e.to_string())?;
    let work = async {
        // Errors never carry the URL: it may hold a token.
        let mut resp = client
            .get(source)
            .send()
            .await
            .map_err(|e| crate::cti::exec::error_chain(&e.without_url()))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(format!("HTTP {status}"));
        }
        let mut buf = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| crate::cti::exec::error_chain(&e.without_url()))?
        {
            if buf.len() + chunk.len() > MAX_SHARED_BYTES {
                return Err(format!("larger than {} MiB", MAX_SHARED_BYTES >> 20));
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(buf)
    };
    tokio::time::timeout(FETCH_TIMEOUT, work)
        .await
        .map_err(|_| format!("no answer in {} s", FETCH_TIMEOUT.as_secs()))?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn japan(shared: &str) -> PhonebookConfig {
        PhonebookConfig {
            shared: shared.into(),
            country_code: "81".into(),
            international_prefix: "010".into(),
            ..PhonebookConfig::default()
        }
    }

    fn entry(name: &str, number: &str) -> Entry {
        Entry {
            name: name.into(),
            number: number.into(),
            company: String::new(),
        }
    }

    #[test]
    fn local_entries_are_found_by_either_form_and_edited() {
        let dir = tempfile::tempdir().unwrap();
        let pb = Phonebook::open(&dir.path().join("h.db"), &japan("")).unwrap();
        let id = pb.add(&entry("山田 太郎", "+81 3-1234-5678")).unwrap();
        assert_eq!(pb.name_for("0312345678").as_deref(), Some("山田 太郎"));
        assert_eq!(pb.name_for("+81312345678").as_deref(), Some("山田 太郎"));
        assert_eq!(pb.name_for("0312345679"), None);
        assert_eq!(pb.name_for(""), None);
        pb.update(id, &entry("Yamada", "03-1234-5678")).unwrap();
        assert_eq!(pb.name_for("+81 3 1234 5678").as_deref(), Some("Yamada"));
        assert_eq!(pb.search("yam", 10).unwrap().len(), 1);
        assert_eq!(pb.search("0312", 10).unwrap().len(), 1);
        assert_eq!(pb.search("%", 10).unwrap().len(), 0, "LIKE wildcards are literal");
        assert!(pb.add(&entry("", "1")).is_err());
        assert!(pb.add(&entry("x", " ")).is_err());
        assert!(pb.delete(id).unwrap());
        assert!(!pb.delete(id).unwrap());
        assert_eq!(pb.name_for("0312345678"), None);
    }

    #[test]
    fn a_new_country_code_renormalises_stored_numbers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.db");
        Phonebook::open(&path, &PhonebookConfig::default())
            .unwrap()
            .add(&entry("Tokyo office", "+81 3-1234-5678"))
            .unwrap();
        let pb = Phonebook::open(&path, &japan("")).unwrap();
        assert_eq!(pb.name_for("03-1234-5678").as_deref(), Some("Tokyo office"));
    }

    #[tokio::test]
    async fn the_local_entry_wins_and_the_shared_copy_outlives_its_source() {
        let dir = tempfile::tempdir().unwrap();
        let book = dir.path().join("shared.csv");
        std::fs::write(
            &book,
            "name,number\nShared Yamada,03-1234-5678\nShared Only,1002\n",
        )
        .unwrap();
        let db = dir.path().join("h.db");
        let cfg = japan(book.to_str().unwrap());
        let pb = Phonebook::open(&db, &cfg).unwrap();
        assert_eq!(pb.name_for("1002"), None, "nothing before the first fetch");
        assert_eq!(pb.refresh().await.unwrap(), 2);
        assert_eq!(pb.name_for("+81 3-1234-5678").as_deref(), Some("Shared Yamada"));
        pb.add(&entry("Local Yamada", "0312345678")).unwrap();
        assert_eq!(pb.name_for("+81 3-1234-5678").as_deref(), Some("Local Yamada"));
        assert_eq!(pb.lookup("1002").unwrap().origin, Origin::Shared);
        // The source goes away: the copy in memory and the cached file stay.
        std::fs::remove_file(&book).unwrap();
        assert!(pb.refresh().await.is_err());
        assert_eq!(pb.name_for("1002").as_deref(), Some("Shared Only"));
        drop(pb);
        let again = Phonebook::open(&db, &cfg).unwrap();
        assert_eq!(again.name_for("1002").as_deref(), Some("Shared Only"));
        assert_eq!(again.search("shared", 10).unwrap().len(), 2);
    }

    #[test]
    fn import_then_export_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let pb = Phonebook::open(&dir.path().join("h.db"), &japan("")).unwrap();
        let vcf = "BEGIN:VCARD\r\nVERSION:3.0\r\nFN:A\r\nTEL:1001\r\nTEL:1002\r\nEND:VCARD\r\nBEGIN:VCARD\r\nVERSION:3.0\r\nFN:B\r\nEND:VCARD\r\n";
        assert_eq!(pb.import(vcf.as_bytes()).unwrap(), (2, 1));
        let mut out = Vec::new();
        formats::write_csv(&pb.local_entries().unwrap(), &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "name,number,company\nA,1001,\nA,1002,\n"
        );
    }
}
