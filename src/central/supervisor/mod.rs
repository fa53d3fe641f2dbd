//! `ctiphone supervisor`: a terminal table of the central log's agents — live status (the
//! latest status change) and for how long, the current call, today's counts — kept up to
//! date by PostgreSQL's notifications (LISTEN `ctiphone_agents`), never by polling: a
//! burst of notifications is one query at most every [`DEBOUNCE`]; a 1 s tick only redraws
//! the clocks. When PostgreSQL goes away the table stays, the status line says so, and it
//! reconnects by itself (1 s, doubling to 30 s).
//!
//! The state ([`Board`]) and its drawing ([`view`]) need no terminal; [`feed`] (the
//! database side) and [`run`] (the terminal side) talk through a channel of [`Update`]s.

pub mod view;

use std::time::Duration;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::report::{self, AgentCounts};
use super::schema::CHANNEL;
use super::target::{Target, describe};

/// The least time between two queries.
pub const DEBOUNCE: Duration = Duration::from_millis(200);
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(30);

/// A call an agent is on (an `open` row).
#[derive(Clone, Debug, PartialEq)]
pub struct CurrentCall {
    /// `in` or `out`.
    pub direction: String,
    pub tel: String,
    /// The CRM's name, else the phonebook's.
    pub name: String,
    /// When it rang (seconds since the epoch, the server's clock).
    pub ring_at: f64,
    /// When it was answered, if it was.
    pub answer_at: Option<f64>,
}

/// One agent's line.
#[derive(Clone, Debug, PartialEq)]
pub struct Agent {
    pub id: String,
    /// `ready`, `not_ready`, `after_call` (another value is shown as it is); `None` = no
    /// status change in the log.
    pub status: Option<String>,
    pub reason: String,
    /// When the status was set (seconds since the epoch, the server's clock).
    pub status_at: Option<f64>,
    pub call: Option<CurrentCall>,
    /// Today's counts (zero when no call today).
    pub today: AgentCounts,
}

/// What the database side tells the screen.
#[derive(Clone, Debug)]
pub enum Update {
    Connecting,
    /// A fresh read: the agents and the server's clock when it was taken.
    Agents {
        agents: Vec<Agent>,
        server_now: f64,
    },
    Lost {
        error: String,
        retry_in: Duration,
    },
}

/// The connection's state, for the status line.
#[derive(Clone, Debug, PartialEq)]
pub enum Link {
    Connecting,
    /// Live since the last read at this local time (seconds since the epoch).
    Live {
        updated: f64,
    },
    /// Lost at this local time; trying again `retry_in` after it.
    Lost {
        error: String,
        at: f64,
        retry_in: Duration,
    },
}

/// The supervisor's screen state.
#[derive(Clone, Debug)]
pub struct Board {
    pub agents: Vec<Agent>,
    /// The selected line.
    pub selected: usize,
    pub link: Link,
    /// Where the database is, for the status line.
    pub shown: String,
    /// The server's clock minus ours (seconds), so "for how long" is right whatever the
    /// two clocks say.
    offset: f64,
}

/// The order of statuses in the table: who can take a call first.
fn status_rank(status: Option<&str>) -> u8 {
    match status {
        Some("ready") => 0,
        Some("after_call") => 1,
        Some("not_ready") => 2,
        Some(_) => 3,
        None => 4,
    }
}

/// Seconds since the epoch, now, on this machine's clock.
pub fn epoch_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl Board {
    pub fn new(shown: &str) -> Board {
        Board {
            agents: Vec::new(),
            selected: 0,
            link: Link::Connecting,
            shown: shown.to_owned(),
            offset: 0.0,
        }
    }

    /// Takes an update read at local time `now`.
    pub fn apply(&mut self, update: Update, now: f64) {
        match update {
            Update::Connecting => self.link = Link::Connecting,
            Update::Lost { error, retry_in } => {
                self.link = Link::Lost {
                    error,
                    at: now,
                    retry_in,
                }
            }
            Update::Agents { agents, server_now } => {
                self.set_agents(agents);
                if server_now.is_finite() {
                    self.offset = server_now - now;
                }
                self.link = Link::Live { updated: now };
            }
        }
    }

    /// Replaces the agents, sorted by status then id; the selection stays on its agent.
    pub fn set_agents(&mut self, mut agents: Vec<Agent>) {
        let was = self.agents.get(self.selected).map(|a| a.id.clone());
        agents.sort_by(|a, b| {
            status_rank(a.status.as_deref())
                .cmp(&status_rank(b.status.as_deref()))
                .then_with(|| a.id.cmp(&b.id))
        });
        self.agents = agents;
        self.selected = was
            .and_then(|id| self.agents.iter().position(|a| a.id == id))
            .unwrap_or(self.selected)
            .min(self.agents.len().saturating_sub(1));
    }

    /// Whole seconds from `at` (the server's clock) to local time `now`; never negative.
    pub fn elapsed(&self, at: f64, now: f64) -> u64 {
        let s = now + self.offset - at;
        if s.is_finite() && s > 0.0 { s as u64 } else { 0 }
    }

    /// A key; `true` when it quits.
    pub fn on_key(&mut self, key: KeyEvent) -> bool {
        match key.code {
            KeyCode::Char('q') | KeyCode::Esc => return true,
            KeyCode::Char('c') if key.modifiers.contains(KeyModifiers::CONTROL) => return true,
            KeyCode::Down | KeyCode::Char('j') => {
                self.selected = (self.selected + 1).min(self.agents.len().saturating_sub(1));
            }
            KeyCode::Up | KeyCode::Char('k') => self.selected = self.selected.saturating_sub(1),
            KeyCode::Home | KeyCode::Char('g') => self.selected = 0,
            KeyCode::End | KeyCode::Char('G') => self.selected = self.agents.len().saturating_sub(1),
            _ => {}
        }
        false
    }
}

/// Each agent's latest status and open call (a call left open for more than 12 hours is a
/// phone that died mid-call, not a call), and the server's clock. The agents are found by a
/// skip scan of the status changes' primary key (agent, seq) and each one's latest change by
/// one probe of it: with a million status changes of 100 agents this takes about 10 ms
/// where a `DISTINCT ON` over the table took 2 s.
const LIVE: &str = "
WITH RECURSIVE agents AS (
    (SELECT agent FROM ctiphone.status_changes ORDER BY agent LIMIT 1)
    UNION ALL
    SELECT (SELECT s.agent FROM ctiphone.status_changes s WHERE s.agent > a.agent
            ORDER BY s.agent LIMIT 1)
    FROM agents a WHERE a.agent IS NOT NULL
), latest AS (
    SELECT l.* FROM agents a CROSS JOIN LATERAL (
        SELECT s.agent, s.status, s.reason, extract(epoch FROM s.at)::float8 AS at
        FROM ctiphone.status_changes s WHERE s.agent = a.agent ORDER BY s.seq DESC LIMIT 1
    ) l
), current AS (
    SELECT DISTINCT ON (agent) agent, direction, tel,
        CASE WHEN name <> '' THEN name ELSE telname END AS name,
        extract(epoch FROM ring_at)::float8 AS ring_at,
        extract(epoch FROM answer_at)::float8 AS answer_at
    FROM ctiphone.calls
    WHERE state = 'open' AND ring_at >= now() - interval '12 hours'
    ORDER BY agent, ring_at DESC
)
SELECT coalesce(l.agent, c.agent), l.status, l.reason, l.at,
    c.direction, c.tel, c.name, c.ring_at, c.answer_at, extract(epoch FROM now())::float8
FROM latest l FULL JOIN current c ON c.agent = l.agent";

fn zero(agent: &str) -> AgentCounts {
    AgentCounts {
        agent: agent.to_owned(),
        offered: 0,
        answered: 0,
        missed: 0,
        outgoing: 0,
        avg_handle_s: None,
        avg_wrapup_s: None,
        crm_failures: 0,
    }
}

/// Reads every agent: live state, and today's counts (since local midnight).
pub async fn read(client: &tokio_postgres::Client) -> Result<(Vec<Agent>, f64), String> {
    let since = report::parse_since(None, chrono::Local::now())?;
    let counts = report::fetch(client, &since).await?;
    let rows = client
        .query(LIVE, &[])
        .await
        .map_err(|e| report::query_error(&e))?;
    let mut server_now = f64::NAN;
    let mut agents: std::collections::BTreeMap<String, Agent> = std::collections::BTreeMap::new();
    let row = |r: &tokio_postgres::Row| -> Result<(Agent, f64), tokio_postgres::Error> {
        let id: String = r.try_get(0)?;
        let call = match (
            r.try_get::<_, Option<String>>(4)?,
            r.try_get::<_, Option<f64>>(7)?,
        ) {
            (Some(direction), Some(ring_at)) => Some(CurrentCall {
                direction,
                tel: r.try_get::<_, Option<String>>(5)?.unwrap_or_default(),
                name: r.try_get::<_, Option<String>>(6)?.unwrap_or_default(),
                ring_at,
                answer_at: r.try_get(8)?,
            }),
            _ => None,
        };
        let agent = Agent {
            today: zero(&id),
            id,
            status: r.try_get(1)?,
            reason: r.try_get::<_, Option<String>>(2)?.unwrap_or_default(),
            status_at: r.try_get(3)?,
            call,
        };
        Ok((agent, r.try_get(9)?))
    };
    for r in &rows {
        let (agent, now) = row(r).map_err(|e| format!("the central log's agents: {}", describe(&e)))?;
        server_now = now;
        agents.insert(agent.id.clone(), agent);
    }
    for c in counts {
        match agents.get_mut(&c.agent) {
            Some(a) => a.today = c,
            None => {
                agents.insert(
                    c.agent.clone(),
                    Agent {
                        id: c.agent.clone(),
                        status: None,
                        reason: String::new(),
                        status_at: None,
                        call: None,
                        today: c,
                    },
                );
            }
        }
    }
    Ok((agents.into_values().collect(), server_now))
}

/// The database side: connects, listens, reads after each burst of notifications, and
/// reconnects when the connection is lost. Ends when the screen side is gone.
pub async fn feed(target: Target, tx: mpsc::Sender<Update>) {
    let mut retry = RETRY_FIRST;
    loop {
        if tx.send(Update::Connecting).await.is_err() {
            return;
        }
        let (error, was_live) = match session(&target, &tx).await {
            Ok(()) => return,
            Err(e) => e,
        };
        if was_live {
            retry = RETRY_FIRST;
        }
        let lost = Update::Lost {
            error,
            retry_in: retry,
        };
        if tx.send(lost).await.is_err() {
            return;
        }
        tokio::time::sleep(retry).await;
        retry = (retry * 2).min(RETRY_MAX);
    }
}

/// One connection's life: `Ok` when the screen side is gone, else the error that ended it
/// and whether it had been read from.
async fn session(target: &Target, tx: &mpsc::Sender<Update>) -> Result<(), (String, bool)> {
    let (client, mut notes) = target.listen(CHANNEL).await.map_err(|e| (e, false))?;
    let mut live = false;
    loop {
        let (agents, server_now) = read(&client).await.map_err(|e| (e, live))?;
        live = true;
        if tx.send(Update::Agents { agents, server_now }).await.is_err() {
            return Ok(());
        }
        let last = Instant::now();
        if notes.recv().await.is_none() {
            // The connection's task ended: say why if the client can tell.
            let why = match client.simple_query("SELECT 1").await {
                Err(e) => describe(&e),
                Ok(_) => "the connection to PostgreSQL ended".into(),
            };
            return Err((why, live));
        }
        // A burst: wait out the rest of the debounce, then one read for all of it.
        tokio::time::sleep_until(last + DEBOUNCE).await;
        while notes.try_recv().is_ok() {}
    }
}

/// The terminal side: draws the board, on each update, key and 1 s tick. Returns the exit
/// code.
pub async fn run(target: Target, look: &crate::ui::view::Look<'_>) -> u8 {
    use crate::ui::term::{self, Input};
    let mut terminal = match term::Terminal::enter() {
        Ok(t) => t,
        Err(e) => {
            term::restore();
            eprintln!("ctiphone supervisor: the terminal: {e}");
            return 2;
        }
    };
    let mut keys = term::key_events();
    let mut quit = term::quit_signals();
    let (tx, mut rx) = mpsc::channel(4);
    let mut board = Board::new(&target.shown);
    let feeding = tokio::spawn(feed(target, tx));
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let now = epoch_now();
        if let Err(e) = terminal.draw(|f| view::draw(f, &board, now, look)) {
            tracing::warn!("supervisor: drawing: {e}");
        }
        tokio::select! {
            key = keys.recv() => match key {
                Some(Input::Key(k)) => {
                    if board.on_key(k) {
                        break;
                    }
                }
                Some(_) => {}
                None => break,
            },
            update = rx.recv() => match update {
                Some(u) => board.apply(u, epoch_now()),
                None => break,
            },
            _ = tick.tick() => {}
            _ = quit.recv() => break,
        }
    }
    feeding.abort();
    drop(terminal);
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(id: &str, status: Option<&str>) -> Agent {
        Agent {
            id: id.into(),
            status: status.map(str::to_owned),
            reason: String::new(),
            status_at: Some(100.0),
            call: None,
            today: zero(id),
        }
    }

    #[test]
    fn sorted_by_status_then_agent_and_the_selection_follows_its_agent() {
        let mut b = Board::new("postgresql://x@h/d");
        b.set_agents(vec![
            agent("b", Some("not_ready")),
            agent("a", Some("not_ready")),
            agent("z", Some("ready")),
            agent("m", None),
            agent("c", Some("after_call")),
        ]);
        let ids: Vec<&str> = b.agents.iter().map(|a| a.id.as_str()).collect();
        assert_eq!(ids, ["z", "c", "a", "b", "m"]);
        let down = KeyEvent::new(KeyCode::Down, KeyModifiers::NONE);
        assert!(!b.on_key(down));
        assert!(!b.on_key(KeyEvent::new(KeyCode::Char('j'), KeyModifiers::NONE)));
        assert_eq!(b.agents[b.selected].id, "a");
        // "a" becomes ready: it moves up, the selection with it.
        b.set_agents(vec![agent("a", Some("ready")), agent("z", Some("ready"))]);
        assert_eq!(b.agents[b.selected].id, "a");
        // Gone: the selection stays in range.
        b.selected = 1;
        b.set_agents(vec![agent("a", Some("ready"))]);
        assert_eq!(b.selected, 0);
        for _ in 0..5 {
            b.on_key(KeyEvent::new(KeyCode::Char('k'), KeyModifiers::NONE));
        }
        assert_eq!(b.selected, 0);
        assert!(b.on_key(KeyEvent::new(KeyCode::Char('q'), KeyModifiers::NONE)));
        assert!(b.on_key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)));
    }

    #[test]
    fn elapsed_uses_the_server_clock() {
        let mut b = Board::new("u");
        // The server is 30 s ahead of us.
        b.apply(
            Update::Agents {
                agents: vec![],
                server_now: 1030.0,
            },
            1000.0,
        );
        assert_eq!(b.elapsed(1000.0, 1005.0), 35);
        assert_eq!(b.elapsed(2000.0, 1005.0), 0, "a time ahead is no negative");
        assert_eq!(b.elapsed(f64::NAN, 1005.0), 0);
        b.apply(
            Update::Lost {
                error: "gone".into(),
                retry_in: Duration::from_secs(2),
            },
            1006.0,
        );
        assert!(matches!(b.link, Link::Lost { .. }));
    }
}
