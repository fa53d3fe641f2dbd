//! The CTI engine: a subscriber of the call-event bus that decides whether a call is a target,
//! keeps the CRM session (auth, CUS-1/2, BAS-3), searches the caller (CUS-3/4), runs the access
//! of each event (ring, answer after its delay, hangup, click, outgoing, recorded) and
//! publishes what happened back on the bus. Nothing here blocks the caller: each event runs in
//! its own task, bounded by the integration timeout.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::NaiveDateTime;
use serde::Serialize;
use tokio::task::{AbortHandle, JoinHandle};

use crate::app::{
    ActionReport, Bus, CallEvent, CallEventKind, CallParams, CallResult, CtiEvent, Event, Logged,
};
use crate::config::Config;

use super::exec::{BrowserEnv, Outcome, Runner};
use super::filter::Filter;
use super::plan::{Access, Plan};
use super::template::MASK;
use super::vars::{Identity, Vars};

/// CRM values every search reports, captured or not.
const CRM_VALUES: [&str; 3] = ["COMPANY", "NAME", "EXT_ID"];
/// Per-call state is forgotten this long after the call was last seen.
const CALL_STATE_TTL: Duration = Duration::from_secs(3600);

/// What the engine did for one event (the JSON that `ctiphone cti fire` prints).
#[derive(Clone, Debug, Default, Serialize)]
pub struct FireReport {
    pub event: String,
    pub skipped: Option<String>,
    pub actions: Vec<ActionReport>,
    pub vars: BTreeMap<String, String>,
}

impl FireReport {
    /// Every action succeeded.
    pub fn ok(&self) -> bool {
        self.actions.iter().all(|a| a.ok)
    }
}

type Clock = Box<dyn Fn() -> NaiveDateTime + Send + Sync>;

struct Session {
    vars: BTreeMap<String, String>,
    at: Instant,
}

#[derive(Default)]
struct CallState {
    decision: Option<Result<(), String>>,
    search: Option<BTreeMap<String, String>>,
    answer_task: Option<AbortHandle>,
    ended: bool,
    seen: Option<Instant>,
}

struct Inner {
    plan: Plan,
    filter: Filter,
    identity: Identity,
    runner: Runner,
    keep: Duration,
    session: tokio::sync::Mutex<Option<Session>>,
    calls: Mutex<HashMap<String, CallState>>,
    bus: Option<Bus>,
    clock: Clock,
}

/// The CTI engine. Cloning shares it.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("accesses", &self.inner.plan.accesses.keys())
            .finish()
    }
}

/// Builder options beyond the configuration.
pub struct Options {
    pub bus: Option<Bus>,
    pub browser: BrowserEnv,
    pub clock: Clock,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            bus: None,
            browser: BrowserEnv::from_env(),
            clock: Box::new(|| chrono::Local::now().naive_local()),
        }
    }
}

impl Engine {
    /// An engine for a checked configuration and its compiled plan.
    pub fn new(config: &Config, plan: Plan, options: Options) -> Self {
        let timeout = Duration::from_secs_f64(config.cti.timeout_seconds.clamp(0.001, 3600.0));
        let keep = Duration::from_secs_f64((config.cti.session_keep_minutes * 60.0).clamp(0.0, 1.0e9));
        Self {
            inner: Arc::new(Inner {
                plan,
                filter: Filter::from_config(config),
                identity: Identity::from_config(config),
                runner: Runner::new(timeout, options.browser, config.cti.form_listen),
                keep,
                session: tokio::sync::Mutex::new(None),
                calls: Mutex::new(HashMap::new()),
                bus: options.bus,
                clock: options.clock,
            }),
        }
    }

    /// Subscribes to the bus (as `cti`) and handles every call event until the bus closes.
    pub fn subscribe(&self, bus: &Bus) -> JoinHandle<()> {
        let mut rx = bus.subscribe_as("cti");
        let engine = self.clone();
        tokio::spawn(async move {
            while let Some(ev) = rx.recv().await {
                if let Event::Call(ev) = ev {
                    engine.dispatch(ev);
                }
            }
        })
    }

    /// Waits until the browser_post pages were fetched or expired, then stops their server.
    pub async fn shutdown(&self) {
        self.inner.runner.shutdown().await;
    }

    /// Handles one call event in the background. The bookkeeping that orders events (the
    /// target decision, the answer delay, cancelling it on hangup) happens before this returns,
    /// so events dispatched in order are handled in order.
    pub fn dispatch(&self, event: CallEvent) -> JoinHandle<FireReport> {
        // Before the log line and the target decision: a flood of refused calls leaves no
        // per-call state here.
        if let CallEventKind::Refused { result } = event.kind {
            return refused(&event.params.id, result);
        }
        let inner = self.inner.clone();
        let name = event.kind.name().to_owned();
        let params = event.params;
        // Caller values go into the log escaped, one line per event (`Logged`).
        tracing::info!(
            call = %Logged(&params.id),
            tel = %Logged(&params.tel),
            telname = %Logged(&params.telname),
            called = %Logged(&params.called),
            "CTI {name}"
        );
        let decision = inner.decide(&event.kind, &params);
        let skipped = |why: String| {
            inner.publish(CtiEvent::Skipped {
                call_id: params.id.clone(),
                event: name.clone(),
                why: why.clone(),
            });
            let report = FireReport {
                event: name.clone(),
                skipped: Some(why),
                ..Default::default()
            };
            tokio::spawn(async move { report })
        };
        if let Err(why) = decision {
            if matches!(event.kind, CallEventKind::Hangup { .. }) {
                inner.end_call(&params.id);
            }
            return skipped(why);
        }
        match event.kind {
            CallEventKind::Refused { result } => refused(&params.id, result),
            CallEventKind::Ring => tokio::spawn(async move { inner.ring_like("ring", &params, name).await }),
            CallEventKind::Outgoing => {
                tokio::spawn(async move { inner.ring_like("outgoing", &params, name).await })
            }
            CallEventKind::Click => tokio::spawn(async move { inner.simple("click", &params, name).await }),
            // A new party on the call: the popup shows the CRM's record of the new number.
            CallEventKind::Identity => tokio::spawn(async move {
                let mut actions = Vec::new();
                let found = inner.search(&params, &mut actions).await;
                inner.finish(name, actions, found).await
            }),
            CallEventKind::Reclick { stored } => {
                tokio::spawn(async move { inner.simple_with("click", &params, name, Some(stored)).await })
            }
            CallEventKind::Recorded { path } => {
                let mut params = params;
                params
                    .extra
                    .insert("REC_PATH".to_owned(), path.display().to_string());
                let file = path
                    .file_name()
                    .map(|f| f.to_string_lossy().into_owned())
                    .unwrap_or_default();
                params.extra.insert("REC_FILE".to_owned(), file);
                tokio::spawn(async move { inner.simple("recorded", &params, name).await })
            }
            CallEventKind::Hangup { answered, wrapup } => {
                inner.end_call(&params.id);
                let only = inner.plan.get("hangup").is_some_and(|a| a.only_if_answered);
                if only && !answered {
                    return skipped("the call was not answered (only_if_answered)".to_owned());
                }
                if wrapup {
                    // AGT-3: run with the wrap-up code, when the after-call work ends.
                    return tokio::spawn(async move {
                        FireReport {
                            event: name,
                            ..Default::default()
                        }
                    });
                }
                tokio::spawn(async move { inner.simple("hangup", &params, name).await })
            }
            // The hangup access held back for after-call work, with {WRAPUP} now.
            CallEventKind::WrapUp { .. } => {
                tokio::spawn(async move { inner.simple("hangup", &params, name).await })
            }
            // The agent's status: the last call's parameters, none of its CRM values (no search
            // is run for it, and a captured STATUS of the CRM's cannot hide the agent's).
            CallEventKind::Status { .. } => tokio::spawn(async move {
                inner
                    .simple_with("status", &params, name, Some(BTreeMap::new()))
                    .await
            }),
            CallEventKind::Answer => {
                let Some(delay) = inner.plan.get("answer").map(|a| a.delay) else {
                    return tokio::spawn(async move {
                        FireReport {
                            event: name,
                            ..Default::default()
                        }
                    });
                };
                let task = {
                    let inner = inner.clone();
                    let params = params.clone();
                    let name = name.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(delay).await;
                        inner.simple("answer", &params, name).await
                    })
                };
                inner.with_call(&params.id, |c| c.answer_task = Some(task.abort_handle()));
                tokio::spawn(async move {
                    match task.await {
                        Ok(report) => report,
                        Err(_) => {
                            let why = "the call ended before the answer delay".to_owned();
                            inner.publish(CtiEvent::Skipped {
                                call_id: params.id.clone(),
                                event: name.clone(),
                                why: why.clone(),
                            });
                            FireReport {
                                event: name,
                                skipped: Some(why),
                                ..Default::default()
                            }
                        }
                    }
                })
            }
        }
    }
}

/// A call refused without ringing (busy) never reached the agent: the spec's accesses are for
/// a call that rings (the CUS-3 search and the CUS-6 ring access when it arrives, then answer
/// and hangup), and a flood of refused calls must not become a flood of CRM requests. The
/// history keeps the call (HIS-1); here nothing is run, published or remembered.
fn refused(call: &str, result: CallResult) -> JoinHandle<FireReport> {
    tracing::debug!(call = %Logged(call), "CTI: a call refused ({result}) runs no access");
    let report = FireReport {
        event: "refused".to_owned(),
        skipped: Some(format!("refused without ringing ({result}): no CTI access")),
        ..Default::default()
    };
    tokio::spawn(async move { report })
}

impl Inner {
    fn publish(&self, e: CtiEvent) {
        if let Some(bus) = &self.bus {
            bus.publish(Event::Cti(e));
        }
    }

    fn with_call<R>(&self, id: &str, f: impl FnOnce(&mut CallState) -> R) -> R {
        let mut calls = self.calls.lock().unwrap_or_else(|p| p.into_inner());
        if calls.len() > 64 {
            calls.retain(|_, c| c.seen.is_some_and(|s| s.elapsed() < CALL_STATE_TTL));
        }
        let state = calls.entry(id.to_owned()).or_default();
        state.seen = Some(Instant::now());
        f(state)
    }

    /// Ring and outgoing decide for the whole call; later events follow that decision.
    fn decide(&self, kind: &CallEventKind, params: &CallParams) -> Result<(), String> {
        match kind {
            // The agent's status is not about one call: only the integration's switch counts.
            CallEventKind::Status { .. } => match self.filter.target {
                crate::config::Target::None => Err("integration target is `none`".to_owned()),
                crate::config::Target::Custom => Ok(()),
            },
            CallEventKind::Ring | CallEventKind::Outgoing => {
                let d = self.filter.check(params);
                self.with_call(&params.id, |c| c.decision = Some(d.clone()));
                d
            }
            _ => {
                let stored = self.with_call(&params.id, |c| c.decision.clone());
                stored.unwrap_or_else(|| self.filter.check(params))
            }
        }
    }

    fn end_call(&self, id: &str) {
        self.with_call(id, |c| {
            c.ended = true;
            if let Some(t) = c.answer_task.take() {
                t.abort();
            }
        });
    }

    /// The session's auth values, running the auth access first when the session is missing
    /// or older than the keep time. Concurrent callers wait for the one auth in progress.
    async fn session(
        &self,
        params: &CallParams,
        actions: &mut Vec<ActionReport>,
    ) -> Result<BTreeMap<String, String>, String> {
        let Some(auth) = self.plan.get("auth") else {
            return Ok(BTreeMap::new());
        };
        let mut guard = self.session.lock().await;
        if let Some(s) = guard.as_ref()
            && s.at.elapsed() < self.keep
        {
            return Ok(s.vars.clone());
        }
        let vars = Vars::new(&self.identity, params, (self.clock)());
        let out = self.runner.run(auth, &vars).await;
        self.report(&params.id, "auth", &out.report);
        actions.push(out.report.clone());
        if out.report.ok {
            *guard = Some(Session {
                vars: out.captured.clone(),
                at: Instant::now(),
            });
            Ok(out.captured)
        } else {
            *guard = None;
            Err(format!("auth failed: {}", out.report.error.unwrap_or_default()))
        }
    }

    fn report(&self, call_id: &str, event: &str, report: &ActionReport) {
        if !report.ok {
            let error = report.error.as_deref().unwrap_or_default();
            tracing::warn!(access = %report.access, error = %Logged(error), "CTI access failed");
        }
        self.publish(CtiEvent::Action {
            call_id: call_id.to_owned(),
            event: event.to_owned(),
            report: report.clone(),
        });
    }

    fn needs_session(&self, access: &Access) -> bool {
        access.name == "search" || access.params().iter().any(|p| self.plan.auth_vars.contains(*p))
    }

    fn needs_search(&self, access: &Access) -> bool {
        access
            .params()
            .iter()
            .any(|p| CRM_VALUES.contains(p) || self.plan.search_vars.contains(*p))
    }

    /// Runs one access with the call's values, the session and the search results.
    async fn run(
        &self,
        access: &Access,
        params: &CallParams,
        search: &BTreeMap<String, String>,
        event: &str,
        actions: &mut Vec<ActionReport>,
    ) -> Outcome {
        let session = if self.needs_session(access) {
            match self.session(params, actions).await {
                Ok(s) => s,
                Err(e) => {
                    let report = ActionReport {
                        access: access.name.to_owned(),
                        method: access.method.name().to_owned(),
                        target: serde_json::Value::Null,
                        ok: false,
                        status: None,
                        ms: 0,
                        error: Some(format!("not run: {e}")),
                        link: None,
                    };
                    self.report(&params.id, event, &report);
                    actions.push(report.clone());
                    return Outcome {
                        report,
                        captured: BTreeMap::new(),
                    };
                }
            }
        } else {
            BTreeMap::new()
        };
        let mut vars = Vars::new(&self.identity, params, (self.clock)());
        vars.extend(&session, true);
        vars.extend(search, false);
        let out = self.runner.run(access, &vars).await;
        self.report(&params.id, event, &out.report);
        actions.push(out.report.clone());
        out
    }

    /// Runs the search access for a call and remembers what it found.
    async fn search(&self, params: &CallParams, actions: &mut Vec<ActionReport>) -> BTreeMap<String, String> {
        let Some(search) = self.plan.get("search") else {
            return BTreeMap::new();
        };
        self.publish(CtiEvent::Searching {
            call_id: params.id.clone(),
        });
        let out = self
            .run(search, params, &BTreeMap::new(), "search", actions)
            .await;
        let mut found = out.captured;
        for k in CRM_VALUES {
            found.entry(k.to_owned()).or_default();
        }
        if out.report.ok {
            self.publish(CtiEvent::SearchResult {
                call_id: params.id.clone(),
                vars: found.clone(),
            });
        } else {
            self.publish(CtiEvent::SearchFailed {
                call_id: params.id.clone(),
                error: out.report.error.clone().unwrap_or_default(),
            });
        }
        self.with_call(&params.id, |c| c.search = Some(found.clone()));
        found
    }

    /// Ring and outgoing: search the CRM and run the event's access; the access waits for the
    /// search only when its template uses what the search finds.
    async fn ring_like(&self, access: &str, params: &CallParams, event: String) -> FireReport {
        let mut actions = Vec::new();
        let acc = self.plan.get(access);
        let found = match acc {
            Some(a) if !self.needs_search(a) => {
                let mut a_actions = Vec::new();
                let empty = BTreeMap::new();
                let (found, _) = tokio::join!(
                    self.search(params, &mut actions),
                    self.run(a, params, &empty, &event, &mut a_actions)
                );
                actions.extend(a_actions);
                found
            }
            Some(a) => {
                let found = self.search(params, &mut actions).await;
                self.run(a, params, &found, &event, &mut actions).await;
                found
            }
            None => self.search(params, &mut actions).await,
        };
        self.finish(event, actions, found).await
    }

    /// Click, answer, hangup, recorded: the access with the call's search results (searching
    /// first when the template needs them and the call has none yet).
    async fn simple(&self, access: &str, params: &CallParams, event: String) -> FireReport {
        self.simple_with(access, params, event, None).await
    }

    /// As [`Self::simple`], with the search results given (a past call's stored values).
    async fn simple_with(
        &self,
        access: &str,
        params: &CallParams,
        event: String,
        given: Option<BTreeMap<String, String>>,
    ) -> FireReport {
        let mut actions = Vec::new();
        let Some(acc) = self.plan.get(access) else {
            return FireReport {
                event,
                ..Default::default()
            };
        };
        let stored = given.or_else(|| self.with_call(&params.id, |c| c.search.clone()));
        let found = match stored {
            Some(f) => f,
            None if self.needs_search(acc) => self.search(params, &mut actions).await,
            None => BTreeMap::new(),
        };
        self.run(acc, params, &found, &event, &mut actions).await;
        self.finish(event, actions, found).await
    }

    async fn finish(
        &self,
        event: String,
        actions: Vec<ActionReport>,
        found: BTreeMap<String, String>,
    ) -> FireReport {
        let mut vars = found;
        if let Some(s) = self.session.lock().await.as_ref() {
            for k in s.vars.keys() {
                vars.insert(k.clone(), MASK.to_owned());
            }
        }
        FireReport {
            event,
            skipped: None,
            actions,
            vars,
        }
    }
}
