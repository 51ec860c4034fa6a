//! The schema, one step per release that changed it.

/// Each entry moves the schema one version forward; never edit a released entry.
pub(crate) const MIGRATIONS: &[&str] = &[
    // 1: streams, events, key/value metadata
    "CREATE TABLE streams (
        id TEXT PRIMARY KEY,
        spec TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        updated_ms INTEGER NOT NULL
     );
     CREATE TABLE events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        ts_ms INTEGER NOT NULL,
        stream_id TEXT,
        kind TEXT NOT NULL,
        message TEXT NOT NULL
     );
     CREATE INDEX events_ts ON events(ts_ms);
     CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);",
    // 2: winning tickets and their redemption
    "CREATE TABLE winning_tickets (
        ticket_hash TEXT PRIMARY KEY,
        recipient TEXT NOT NULL,
        sender TEXT NOT NULL,
        face_value TEXT NOT NULL,
        win_prob TEXT NOT NULL,
        sender_nonce INTEGER NOT NULL,
        recipient_rand_hash TEXT NOT NULL,
        creation_round INTEGER NOT NULL,
        creation_round_block_hash TEXT NOT NULL,
        sig BLOB NOT NULL,
        recipient_rand TEXT NOT NULL,
        params_expiration_block TEXT NOT NULL,
        state TEXT NOT NULL,
        tx_hash TEXT,
        amount TEXT,
        reason TEXT,
        attempts INTEGER NOT NULL DEFAULT 0,
        created_ms INTEGER NOT NULL,
        updated_ms INTEGER NOT NULL
     );
     CREATE INDEX winning_tickets_state ON winning_tickets(state);
     CREATE TABLE ticket_counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);",
    // 3: the block a redemption was sent at, where crash recovery looks for its transaction
    "ALTER TABLE winning_tickets ADD COLUMN submitted_block INTEGER;",
    // 4: operators, their sessions and API tokens (secrets stored only as hashes), and the
    // results of fleet commands by request id
    "CREATE TABLE users (
        name TEXT PRIMARY KEY,
        password_hash TEXT NOT NULL,
        role TEXT NOT NULL,
        created_ms INTEGER NOT NULL
     );
     CREATE TABLE sessions (
        id_hash TEXT PRIMARY KEY,
        user TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
        csrf TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        expires_ms INTEGER NOT NULL
     );
     CREATE TABLE api_tokens (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        role TEXT NOT NULL,
        token_hash TEXT NOT NULL UNIQUE,
        created_ms INTEGER NOT NULL,
        last_used_ms INTEGER
     );
     CREATE TABLE command_results (
        request_id TEXT PRIMARY KEY,
        command TEXT NOT NULL,
        result TEXT NOT NULL,
        created_ms INTEGER NOT NULL
     );
     CREATE INDEX command_results_created ON command_results(created_ms);",
    // 5: fleet-command results in one b-tree keyed by request id: a claim and a result are
    // each one page write on the command path (pruning scans, off that path)
    "CREATE TABLE command_results_by_id (
        request_id TEXT PRIMARY KEY,
        command TEXT NOT NULL,
        result TEXT NOT NULL,
        created_ms INTEGER NOT NULL
     ) WITHOUT ROWID;
     INSERT INTO command_results_by_id SELECT request_id, command, result, created_ms
        FROM command_results;
     DROP TABLE command_results;
     ALTER TABLE command_results_by_id RENAME TO command_results;",
    // 6: API tokens belong to a user and die with it; tokens made before owners existed go
    // to the first admin
    "ALTER TABLE api_tokens ADD COLUMN owner TEXT REFERENCES users(name) ON DELETE CASCADE;
     UPDATE api_tokens SET owner =
        (SELECT name FROM users WHERE role = 'admin' ORDER BY created_ms, name LIMIT 1);",
    // 7: a ticket that must wait (a transient revert, gas, an inactive recipient) is not
    // looked at again before its next attempt
    "ALTER TABLE winning_tickets ADD COLUMN next_attempt_ms INTEGER NOT NULL DEFAULT 0;",
    // 8: objects the AI plane followed, one row each, updated as they move and end
    "CREATE TABLE detections (
        id TEXT PRIMARY KEY,
        stream_id TEXT NOT NULL,
        label TEXT NOT NULL,
        score REAL NOT NULL,
        x1 REAL NOT NULL, y1 REAL NOT NULL, x2 REAL NOT NULL, y2 REAL NOT NULL,
        zones TEXT NOT NULL,
        started_ms INTEGER NOT NULL,
        updated_ms INTEGER NOT NULL,
        ended_ms INTEGER,
        snapshot INTEGER NOT NULL DEFAULT 0
     );
     CREATE INDEX detections_started ON detections(started_ms);
     CREATE INDEX detections_stream ON detections(stream_id, started_ms);",
    // 9: an operator's acknowledgement of an alert
    "ALTER TABLE events ADD COLUMN acknowledged_ms INTEGER;
     ALTER TABLE events ADD COLUMN acknowledged_by TEXT;",
];
