//! `ctiphone phonebook …`: list, look up, add, edit, delete, import, export and refresh.
//! Caller-controlled text printed as a table is escaped: no control byte reaches the
//! terminal.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

use super::{Entry, Phonebook, formats};
use crate::config::Config;

// The subcommands of `ctiphone phonebook`, parsed by `cli` (their doc comments are the help).
#[derive(Debug, Subcommand)]
pub enum PhonebookCommand {
    /// Local and shared entries whose name or company holds QUERY, or whose number starts
    /// with it; all without QUERY.
    List {
        query: Option<String>,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// The name the phone would show for NUMBER, and where it comes from.
    Lookup { number: String },
    /// Add a local entry.
    Add {
        name: String,
        number: String,
        #[arg(long, default_value = "")]
        company: String,
    },
    /// Change a local entry (its id from `list`).
    Edit {
        id: i64,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        number: Option<String>,
        #[arg(long)]
        company: Option<String>,
    },
    /// Delete a local entry (its id from `list`).
    Delete { id: i64 },
    /// Add every entry of a CSV or vCard file to the local phonebook.
    Import { file: PathBuf },
    /// Write the local phonebook to FILE: vCard when it ends in .vcf or .vcard, else CSV.
    Export { file: PathBuf },
    /// Fetch the shared phonebook now and keep its copy.
    Refresh,
}

/// Runs one phonebook command; exit 0, or 2 with the reason on stderr.
pub fn run(config: &Config, cmd: PhonebookCommand) -> ExitCode {
    match Phonebook::open_default(&config.phonebook).and_then(|pb| one(&pb, cmd)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ctiphone: phonebook: {e}");
            ExitCode::from(2)
        }
    }
}

fn esc(s: &str) -> String {
    s.escape_debug().to_string()
}

fn one(pb: &Phonebook, cmd: PhonebookCommand) -> Result<(), String> {
    match cmd {
        PhonebookCommand::List { query, json, limit } => {
            for c in pb.search(query.as_deref().unwrap_or(""), limit)? {
                if json {
                    println!("{}", serde_json::to_string(&c).map_err(|e| e.to_string())?);
                } else {
                    let id = c.id.map_or_else(|| "shared".to_owned(), |i| i.to_string());
                    println!(
                        "{id:>7}  {:24}  {}  {}",
                        esc(&c.number),
                        esc(&c.name),
                        esc(&c.company)
                    );
                }
            }
        }
        PhonebookCommand::Lookup { number } => match pb.lookup(&number) {
            Some(c) => println!(
                "{}  ({}; matched as {})",
                esc(if c.name.is_empty() { &c.company } else { &c.name }),
                serde_json::to_value(c.origin)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
                esc(&pb.normalize(&number))
            ),
            None => {
                return Err(format!(
                    "no entry for {} (matched as {})",
                    esc(&number),
                    esc(&pb.normalize(&number))
                ));
            }
        },
        PhonebookCommand::Add {
            name,
            number,
            company,
        } => {
            let id = pb.add(&Entry {
                name,
                number,
                company,
            })?;
            println!("added {id}");
        }
        PhonebookCommand::Edit {
            id,
            name,
            number,
            company,
        } => {
            let old = pb
                .search_local("", usize::MAX)?
                .into_iter()
                .find(|c| c.id == Some(id))
                .ok_or_else(|| format!("no local contact {id}"))?;
            pb.update(
                id,
                &Entry {
                    name: name.unwrap_or(old.name),
                    number: number.unwrap_or(old.number),
                    company: company.unwrap_or(old.company),
                },
            )?;
            println!("changed {id}");
        }
        PhonebookCommand::Delete { id } => {
            if !pb.delete(id)? {
                return Err(format!("no local contact {id}"));
            }
            println!("deleted {id}");
        }
        PhonebookCommand::Import { file } => {
            let bytes = std::fs::read(&file).map_err(|e| format!("{}: {e}", file.display()))?;
            let (added, skipped) = pb.import(&bytes)?;
            println!("{added} entries added, {skipped} skipped (no number, or no name and no company)");
        }
        PhonebookCommand::Export { file } => {
            let entries = pb.local_entries()?;
            let f =
                crate::private::create_file(&file, false).map_err(|e| format!("{}: {e}", file.display()))?;
            let w = std::io::BufWriter::new(f);
            let vcard = file
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| e.eq_ignore_ascii_case("vcf") || e.eq_ignore_ascii_case("vcard"));
            if vcard {
                formats::write_vcard(&entries, w)?;
            } else {
                formats::write_csv(&entries, w)?;
            }
            println!("{} entries written to {}", entries.len(), file.display());
        }
        PhonebookCommand::Refresh => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            let n = rt.block_on(pb.refresh())?;
            println!("{n} shared entries");
        }
    }
    Ok(())
}
