//! The central log's schema in PostgreSQL (schema `ctiphone`), created and migrated by the
//! phones themselves: numbered migrations applied in one transaction under an advisory lock,
//! so 200 phones starting at once migrate it exactly once (the others wait for the lock, then
//! find it done). A database already at a newer version than this phone knows is used as it
//! is when the tables this phone writes are unchanged (migrations only add), and said in the
//! log.
//!
//! Tables:
//! - `ctiphone.calls`: one row per agent and Call-ID, the phone's local row as last
//!   delivered; `seq` is the phone's update sequence, so an older update delivered again
//!   never overwrites a newer one (at-least-once delivery, idempotent).
//! - `ctiphone.status_changes`: one row per agent status change (`agent`, `seq` unique).
//!
//! Both notify `ctiphone_agents` (payload: the agent) on every change, which
//! `ctiphone supervisor` listens to.

/// The advisory lock key of migrations ("ctiphone" in ASCII, truncated).
pub const LOCK_KEY: i64 = 0x6374_6970_686f_6e65;

/// The notification channel of changes (payload: the agent id).
pub const CHANNEL: &str = "ctiphone_agents";

/// Migrations, in order; `ctiphone.schema_version` holds how many are applied.
pub const MIGRATIONS: &[&str] = &[
    // 1: calls and status changes.
    "CREATE TABLE ctiphone.calls (
        agent TEXT NOT NULL,
        call_id TEXT NOT NULL,
        seq BIGINT NOT NULL,
        direction TEXT NOT NULL,
        tel TEXT NOT NULL,
        telname TEXT NOT NULL,
        called TEXT NOT NULL,
        calledname TEXT NOT NULL,
        anonymous BOOLEAN NOT NULL,
        ring_at TIMESTAMPTZ NOT NULL,
        answer_at TIMESTAMPTZ,
        end_at TIMESTAMPTZ,
        duration_s DOUBLE PRECISION,
        result TEXT,
        company TEXT NOT NULL DEFAULT '',
        name TEXT NOT NULL DEFAULT '',
        ext_id TEXT NOT NULL DEFAULT '',
        vars JSONB NOT NULL DEFAULT '{}',
        recording TEXT,
        state TEXT NOT NULL,
        wrapup TEXT NOT NULL DEFAULT '',
        received_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        PRIMARY KEY (agent, call_id)
    );
    CREATE INDEX calls_ring_at ON ctiphone.calls (ring_at);
    CREATE TABLE ctiphone.status_changes (
        agent TEXT NOT NULL,
        seq BIGINT NOT NULL,
        at TIMESTAMPTZ NOT NULL,
        status TEXT NOT NULL,
        reason TEXT NOT NULL DEFAULT '',
        PRIMARY KEY (agent, seq)
    );",
    // 2: the CRM search's failure and the wrap-up's end (for reports), and notifications for
    // the supervisor's view.
    "ALTER TABLE ctiphone.calls ADD COLUMN crm_error TEXT NOT NULL DEFAULT '';
    ALTER TABLE ctiphone.calls ADD COLUMN wrapup_at TIMESTAMPTZ;
    CREATE FUNCTION ctiphone.notify_change() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM pg_notify('ctiphone_agents', NEW.agent);
        RETURN NULL;
    END $$;
    CREATE TRIGGER calls_changed AFTER INSERT OR UPDATE ON ctiphone.calls
        FOR EACH ROW EXECUTE FUNCTION ctiphone.notify_change();
    CREATE TRIGGER status_changed AFTER INSERT ON ctiphone.status_changes
        FOR EACH ROW EXECUTE FUNCTION ctiphone.notify_change();",
];

/// Brings the schema up to `target` migrations (normally all of them): creates the schema
/// and its version table, takes the advisory lock, applies what is missing. Returns the
/// version found before.
pub async fn migrate_to(client: &mut tokio_postgres::Client, target: usize) -> Result<i64, String> {
    let tx = client
        .transaction()
        .await
        .map_err(|e| format!("migration: {e}"))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_KEY])
        .await
        .map_err(|e| format!("migration lock: {e}"))?;
    tx.batch_execute(
        "CREATE SCHEMA IF NOT EXISTS ctiphone;
         CREATE TABLE IF NOT EXISTS ctiphone.schema_version (version BIGINT NOT NULL);",
    )
    .await
    .map_err(|e| format!("migration: {e}"))?;
    let found: i64 = tx
        .query_opt("SELECT version FROM ctiphone.schema_version", &[])
        .await
        .map_err(|e| format!("migration: {e}"))?
        .map_or(0, |r| r.get(0));
    let applied = usize::try_from(found).unwrap_or(0);
    if applied > MIGRATIONS.len() {
        tracing::warn!(
            "central log: schema version {found} is newer than this phone's ({}); used as it is",
            MIGRATIONS.len()
        );
    }
    for (i, m) in MIGRATIONS.iter().enumerate().take(target).skip(applied) {
        tx.batch_execute(m)
            .await
            .map_err(|e| format!("migration {}: {e}", i + 1))?;
    }
    if applied < target {
        tx.execute("DELETE FROM ctiphone.schema_version", &[])
            .await
            .map_err(|e| format!("migration: {e}"))?;
        tx.execute(
            "INSERT INTO ctiphone.schema_version (version) VALUES ($1)",
            &[&(target as i64)],
        )
        .await
        .map_err(|e| format!("migration: {e}"))?;
    }
    tx.commit().await.map_err(|e| format!("migration: {e}"))?;
    Ok(found)
}

/// Brings the schema to this phone's version.
pub async fn migrate(client: &mut tokio_postgres::Client) -> Result<i64, String> {
    migrate_to(client, MIGRATIONS.len()).await
}
